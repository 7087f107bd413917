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
