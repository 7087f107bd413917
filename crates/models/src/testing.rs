//! A small seeded random generator for simulation tests (xorshift64*, Marsaglia-Tsang gamma).

/// Deterministic pseudo-random numbers; not for anything but tests and simulations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform on (0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        (bits as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// Gamma(shape, scale 1), Marsaglia & Tsang (2000).
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            return self.gamma(shape + 1.0) * self.uniform().powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v > 0.0 && self.uniform().ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    pub fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a);
        x / (x + self.gamma(b))
    }
}

/// The CDNOW sample of Fader, Hardie & Lee (2005): 2357 customers, 39-week calibration.
#[cfg(test)]
pub(crate) fn cdnow() -> crate::Histories {
    let text = include_str!("../../../tests/data/cdnow_summary.csv");
    crate::Histories::compress(text.lines().skip(1).map(|line| {
        let f: Vec<f64> = line.split(',').map(|v| v.parse().unwrap()).collect();
        (f[1], f[2], f[3], 1.0)
    }))
}

/// Checks that a model's P(X(t) = n), n ≤ max_n, sums to one and has E[X(t)] as its mean:
/// two formulas derived separately must agree. Returns the distribution.
#[cfg(test)]
pub(crate) fn check_distribution(
    model: &dyn crate::PurchaseModel,
    t: f64,
    max_n: usize,
) -> Vec<f64> {
    let distribution = model.purchase_distribution(t, max_n);
    let total: f64 = distribution.iter().sum();
    assert!((total - 1.0).abs() < 1e-6, "{total}");
    let mean: f64 = distribution
        .iter()
        .enumerate()
        .map(|(n, q)| n as f64 * q)
        .sum();
    let expected = model.population_expected_purchases(t).unwrap();
    assert!((mean - expected).abs() < 1e-4, "{mean} vs {expected}");
    distribution
}

/// A simulated customer followed past the end of calibration T: the history at T, and what
/// happened in the window after it.
#[cfg(test)]
pub(crate) struct Followed {
    pub(crate) x: f64,
    pub(crate) t_x: f64,
    pub(crate) bought_in_window: bool,
    pub(crate) alive_after_window: bool,
    /// Purchases in the window.
    pub(crate) purchases_in_window: usize,
}

/// Checks a model's P(no purchase in (T, T+w]) and P(alive at T+w) against what customers
/// simulated from it did: in each group of customers by x (0, 1–3, 4 or more), the mean
/// prediction is within four standard errors of the share observed. An independent check of
/// both derivations: the simulation follows the model's story, not its formulas.
#[cfg(test)]
pub(crate) fn check_calibration(
    model: &dyn crate::PurchaseModel,
    followed: &[Followed],
    t: f64,
    window: f64,
) {
    type Member = fn(f64) -> bool;
    let groups: [(&str, Member); 3] = [
        ("x = 0", |x| x == 0.0),
        ("x in 1..=3", |x| (1.0..=3.0).contains(&x)),
        ("x >= 4", |x| x >= 4.0),
    ];
    for (name, member) in groups {
        let members: Vec<&Followed> = followed.iter().filter(|f| member(f.x)).collect();
        let n = members.len() as f64;
        assert!(n >= 500.0, "{name}: only {n} simulated customers");
        let check = |what: &str, predicted: f64, observed: f64| {
            let se = (predicted * (1.0 - predicted) / n).sqrt().max(1e-3);
            assert!(
                (predicted - observed).abs() < 4.0 * se,
                "{name}, {what}: predicted {predicted:.4}, observed {observed:.4} (se {se:.4})"
            );
        };
        let mean = |f: &dyn Fn(&Followed) -> f64| members.iter().map(|m| f(m)).sum::<f64>() / n;
        check(
            "P(no purchase in the window)",
            mean(&|m| model.p_no_purchase(window, m.x, m.t_x, t).unwrap()),
            mean(&|m| f64::from(u8::from(!m.bought_in_window))),
        );
        check(
            "P(alive after the window)",
            mean(&|m| model.p_alive_at(window, m.x, m.t_x, t).unwrap()),
            mean(&|m| f64::from(u8::from(m.alive_after_window))),
        );
        // The conditional distribution of purchases in the window: P(X ≤ 1) and P(X ≤ 3),
        // mixed over P(alive), against the shares observed; its mean against E[X].
        for at_most in [1usize, 3] {
            check(
                &format!("P(at most {at_most} purchases in the window)"),
                mean(&|m| {
                    let alive = model.p_alive(m.x, m.t_x, t);
                    let q = model.purchase_distribution_if_alive(window, m.x, t, at_most);
                    1.0 - alive + alive * q.iter().sum::<f64>()
                }),
                mean(&|m| f64::from(u8::from(m.purchases_in_window <= at_most))),
            );
        }
        let m = members[0];
        let q = model.purchase_distribution_if_alive(window, m.x, t, 2000);
        let alive = model.p_alive(m.x, m.t_x, t);
        let mean_purchases: f64 = q.iter().enumerate().map(|(n, p)| n as f64 * p).sum();
        let expected = model.expected_purchases(window, m.x, m.t_x, t).unwrap();
        assert!(
            (alive * mean_purchases - expected).abs() < 1e-6 * expected.max(1e-3),
            "{name}: the distribution's mean {} vs E[X] {expected}",
            alive * mean_purchases
        );
    }
}

/// One apparel customer as CLVTools prepares it (weekly units, estimation end 2006-12-31,
/// transactions on one day merged): x, t_x, T in weeks and the week (from the customer's first
/// purchase) of each repeat purchase; with gender and channel.
#[cfg(test)]
pub(crate) struct ApparelCustomer {
    pub id: u32,
    pub x: f64,
    pub t_x: f64,
    pub t: f64,
    pub repeat_weeks: Vec<usize>,
    pub first_day: i64,
    pub gender: f64,
    pub channel: f64,
}

/// Days since 1970-01-01 of an ISO date (proleptic Gregorian; Hinnant's days_from_civil).
#[cfg(test)]
pub(crate) fn day_of(date: &str) -> i64 {
    let mut parts = date.split('-').map(|p| p.parse::<i64>().unwrap());
    let (y, m, d) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// CLVTools' apparel data (tests/data/apparel), prepared as its vignette fits it.
#[cfg(test)]
pub(crate) fn apparel() -> Vec<ApparelCustomer> {
    use std::collections::BTreeMap;
    let end = day_of("2006-12-31");
    let mut days: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
    for line in include_str!("../../../tests/data/apparel/transactions.csv")
        .lines()
        .skip(1)
    {
        let f: Vec<&str> = line.split(',').collect();
        days.entry(f[0].parse().unwrap())
            .or_default()
            .push(day_of(f[1]));
    }
    let mut covariates: BTreeMap<u32, (f64, f64)> = BTreeMap::new();
    for line in include_str!("../../../tests/data/apparel/static_covariates.csv")
        .lines()
        .skip(1)
    {
        let f: Vec<&str> = line.split(',').collect();
        covariates.insert(
            f[0].parse().unwrap(),
            (f[1].parse().unwrap(), f[2].parse().unwrap()),
        );
    }
    days.into_iter()
        .map(|(id, mut d)| {
            d.sort_unstable();
            d.dedup();
            let first = d[0];
            let repeats: Vec<i64> = d[1..].iter().copied().filter(|&day| day <= end).collect();
            let last = repeats.last().copied().unwrap_or(first);
            let (gender, channel) = covariates[&id];
            ApparelCustomer {
                id,
                x: repeats.len() as f64,
                t_x: (last - first) as f64 / 7.0,
                t: (end - first) as f64 / 7.0,
                repeat_weeks: repeats
                    .iter()
                    .map(|&day| ((day - first) / 7) as usize)
                    .collect(),
                first_day: first,
                gender,
                channel,
            }
        })
        .collect()
}

/// The high-season flag of each week starting on a Sunday, by the week's first day.
#[cfg(test)]
pub(crate) fn high_season() -> std::collections::BTreeMap<i64, f64> {
    include_str!("../../../tests/data/apparel/high_season.csv")
        .lines()
        .skip(1)
        .map(|line| {
            let (week, flag) = line.split_once(',').unwrap();
            (day_of(week), flag.parse().unwrap())
        })
        .collect()
}

/// Coverage of intervals over simulated bases: `hits[base][quantity]` says whether that base's
/// interval of that quantity held the truth. Returns the share over all quantities and each
/// quantity's share.
pub fn coverage(hits: &[Vec<bool>]) -> (f64, Vec<f64>) {
    let quantities = hits.first().map_or(0, Vec::len);
    let each: Vec<f64> = (0..quantities)
        .map(|k| hits.iter().filter(|h| h[k]).count() as f64 / hits.len() as f64)
        .collect();
    let overall = each.iter().sum::<f64>() / quantities.max(1) as f64;
    (overall, each)
}
