//! The BG/NBD model of repeat buying (Fader, Hardie & Lee 2005, "Counting your customers the
//! easy way: an alternative to the Pareto/NBD model", Marketing Science 24(2)).
//!
//! While active, a customer buys at Poisson rate λ, λ ~ Gamma(r, α) across customers; after any
//! purchase they become inactive with probability p, p ~ Beta(a, b). A customer's history is
//! (x repeat purchases, the last at t_x, observed for T since the first).

use rayon::prelude::*;

use crate::ad::Real;
use crate::hyp2f1::hyp2f1;
use crate::optimize::{Fit, FitError, LogLikelihood, fit};

/// Customer histories (x, t_x, T), identical ones merged with a weight.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histories {
    pub x: Vec<f64>,
    pub t_x: Vec<f64>,
    pub t: Vec<f64>,
    pub weight: Vec<f64>,
}

impl Histories {
    /// Merges identical (x, t_x, T) into one row with the summed weight: fitting cost then
    /// grows with the number of distinct histories, not customers.
    pub fn compress(rows: impl Iterator<Item = (f64, f64, f64, f64)>) -> Histories {
        let mut index: std::collections::HashMap<[u64; 3], usize> =
            std::collections::HashMap::new();
        let mut out = Histories::default();
        for (x, t_x, t, w) in rows {
            let key = [x.to_bits(), t_x.to_bits(), t.to_bits()];
            match index.get(&key) {
                Some(&i) => out.weight[i] += w,
                None => {
                    index.insert(key, out.x.len());
                    out.x.push(x);
                    out.t_x.push(t_x);
                    out.t.push(t);
                    out.weight.push(w);
                }
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.x.len()
    }

    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }
}

/// Rows per parallel task.
const CHUNK: usize = 4096;

impl LogLikelihood<4> for Histories {
    /// ln L = ln Γ(r+x) − ln Γ(r) + r ln α + ln B(a, b+x) − ln B(a, b)
    ///        + ln[(α+T)^−(r+x) + 1{x>0} a/(b+x−1) (α+t_x)^−(r+x)], in log-sum-exp form.
    fn log_likelihood<R: Real>(&self, params: &[R; 4]) -> R {
        let [r, alpha, a, b] = *params;
        let shared = r.ln_gamma() * -1.0 + r * alpha.ln() + (a + b).ln_gamma() - b.ln_gamma();
        let ln_a = a.ln();
        let sum = |range: std::ops::Range<usize>| {
            let mut total = R::constant(0.0);
            for i in range {
                let (x, t_x, t, w) = (self.x[i], self.t_x[i], self.t[i], self.weight[i]);
                let rx = r + x;
                let mut ll = rx.ln_gamma() + (b + x).ln_gamma() - (a + b + x).ln_gamma();
                let alive = -(rx * (alpha + t).ln());
                ll = ll
                    + if x > 0.0 {
                        alive.log_add_exp(ln_a - (b + (x - 1.0)).ln() - rx * (alpha + t_x).ln())
                    } else {
                        alive
                    };
                total = total + ll * w;
            }
            total
        };
        let rows = self.len();
        let body = if rows <= CHUNK {
            sum(0..rows)
        } else {
            (0..rows.div_ceil(CHUNK))
                .into_par_iter()
                .map(|c| sum(c * CHUNK..((c + 1) * CHUNK).min(rows)))
                .reduce(|| R::constant(0.0), |p, q| p + q)
        };
        body + shared * self.weight.iter().sum::<f64>()
    }

    fn observations(&self) -> f64 {
        self.weight.iter().sum()
    }
}

/// Fitted BG/NBD parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// Fits the BG/NBD model. Starting values: r = 1, α = mean T (so λ starts near one purchase
/// per observation span), a = b = 1.
pub fn fit_histories(histories: &Histories) -> Result<(BgNbd, Fit<4>), FitError> {
    let total: f64 = histories.weight.iter().sum();
    let mean_t = histories
        .t
        .iter()
        .zip(&histories.weight)
        .map(|(t, w)| t * w)
        .sum::<f64>()
        / total.max(1.0);
    let fit = fit(histories, [1.0, mean_t.max(1e-3), 1.0, 1.0])?;
    let [r, alpha, a, b] = fit.params;
    Ok((BgNbd { r, alpha, a, b }, fit))
}

impl BgNbd {
    /// ln of a/(b+x−1) · ((α+T)/(α+t_x))^(r+x): the odds that the customer is inactive.
    fn ln_dropout_odds(&self, x: f64, t_x: f64, t: f64) -> Option<f64> {
        (x > 0.0).then(|| {
            self.a.ln() - (self.b + x - 1.0).ln()
                + (self.r + x) * ((self.alpha + t).ln() - (self.alpha + t_x).ln())
        })
    }

    /// P(active at T | x, t_x, T).
    pub fn p_alive(&self, x: f64, t_x: f64, t: f64) -> f64 {
        match self.ln_dropout_odds(x, t_x, t) {
            None => 1.0,
            // 1 / (1 + e^L), without overflow for large L.
            Some(l) if l > 0.0 => (-l).exp() / (1.0 + (-l).exp()),
            Some(l) => 1.0 / (1.0 + l.exp()),
        }
    }

    /// E[purchases in (T, T + horizon] | x, t_x, T] (FHL 2005, eq. 10), with the ₂F₁ taken by
    /// Euler's transformation: ₂F₁(r+x, b+x; a+b+x−1; z) (1−z)^(r+x) = (1−z)^(a−1) ·
    /// ₂F₁(a+b−r−1, a−1; a+b+x−1; z), z = horizon/(α+T+horizon), a series with small
    /// numerators that stays finite for any number of purchases.
    pub fn expected_purchases(&self, horizon: f64, x: f64, t_x: f64, t: f64) -> Option<f64> {
        let BgNbd { r, alpha, a, b } = *self;
        if horizon <= 0.0 {
            return Some(0.0);
        }
        // a = 1 exactly is a removable singularity; step off it.
        let a = if (a - 1.0).abs() < 1e-9 {
            1.0 + 1e-9
        } else {
            a
        };
        let z = horizon / (alpha + t + horizon);
        let series = hyp2f1(a + b - r - 1.0, a - 1.0, a + b + x - 1.0, z)?;
        let bracket = 1.0 - (1.0 - z).powf(a - 1.0) * series;
        let numerator = (a + b + x - 1.0) / (a - 1.0) * bracket;
        let value = numerator * self.p_alive(x, t_x, t);
        value.is_finite().then_some(value.max(0.0))
    }

    /// E[X(t)]: expected purchases of a randomly chosen customer in (0, t] (FHL 2005, eq. 7),
    /// the same formula with no history.
    pub fn population_expected_purchases(&self, t: f64) -> Option<f64> {
        self.expected_purchases(t, 0.0, 0.0, 0.0)
    }

    /// P(X(t) = n) for a randomly chosen customer (FHL 2005, eq. 8), for n = 0..=max_n.
    pub fn purchase_distribution(&self, t: f64, max_n: usize) -> Vec<f64> {
        use crate::special::ln_gamma;
        let BgNbd { r, alpha, a, b } = *self;
        let ln_beta = |p: f64, q: f64| ln_gamma(p) + ln_gamma(q) - ln_gamma(p + q);
        let ln_ab = ln_beta(a, b);
        let ln_stay = r * (alpha / (alpha + t)).ln();
        let ln_z = (t / (alpha + t)).ln();
        // ln of Γ(r+j)/(Γ(r) j!) (t/(α+t))^j (α/(α+t))^r: the NBD probability of j purchases.
        let ln_nbd =
            |j: f64| ln_gamma(r + j) - ln_gamma(r) - ln_gamma(j + 1.0) + ln_stay + j * ln_z;
        let mut nbd_cdf = 0.0;
        (0..=max_n)
            .map(|n| {
                let n_f = n as f64;
                let mut p = (ln_beta(a, b + n_f) - ln_ab + ln_nbd(n_f)).exp();
                if n > 0 {
                    p += (ln_beta(a + 1.0, b + n_f - 1.0) - ln_ab).exp() * (1.0 - nbd_cdf);
                }
                nbd_cdf += ln_nbd(n_f).exp();
                p
            })
            .collect()
    }

    /// Simulates one customer for `t` time units (for tests and benchmarks): returns (x, t_x).
    #[doc(hidden)]
    pub fn simulate(&self, rng: &mut crate::testing::Rng, t: f64) -> (f64, f64) {
        let lambda = rng.gamma(self.r) / self.alpha;
        let p = rng.beta(self.a, self.b);
        let (mut now, mut x, mut t_x) = (0.0, 0.0, 0.0);
        loop {
            now += -rng.uniform().ln() / lambda;
            if now > t {
                return (x, t_x);
            }
            x += 1.0;
            t_x = now;
            if rng.uniform() < p {
                return (x, t_x);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CDNOW sample of Fader, Hardie & Lee (2005): 2357 customers, 39-week calibration.
    fn cdnow() -> Histories {
        let text = include_str!("../../../tests/data/cdnow_summary.csv");
        Histories::compress(text.lines().skip(1).map(|line| {
            let f: Vec<f64> = line.split(',').map(|v| v.parse().unwrap()).collect();
            (f[1], f[2], f[3], 1.0)
        }))
    }

    /// FHL (2005) report r = 0.243, α = 4.414, a = 0.793, b = 2.426 and LL = −9582.4.
    #[test]
    fn reproduces_the_published_cdnow_estimates() {
        let (p, fit) = fit_histories(&cdnow()).unwrap();
        assert!(fit.converged, "{}", fit.status);
        for (got, want) in [(p.r, 0.243), (p.alpha, 4.414), (p.a, 0.793), (p.b, 2.426)] {
            assert!((got - want).abs() < 0.0006, "{got} vs {want}: {p:?}");
        }
        assert!(
            (fit.log_likelihood - (-9582.4)).abs() < 0.05,
            "{}",
            fit.log_likelihood
        );
        assert!(fit.standard_errors.is_some());
    }

    /// Hand-checked single-customer predictions at the published parameters, against the
    /// values `lifetimes` 0.11.3 prints for the same inputs.
    #[test]
    fn single_customer_predictions() {
        let p = BgNbd {
            r: 0.243,
            alpha: 4.414,
            a: 0.793,
            b: 2.426,
        };
        // A customer with no repeat purchase is alive for sure in this model.
        assert_eq!(p.p_alive(0.0, 0.0, 38.86), 1.0);
        // x = 2, t_x = 30.43, T = 38.86 (CDNOW customer 1).
        let alive = p.p_alive(2.0, 30.43, 38.86);
        let direct = 1.0
            / (1.0 + 0.793 / (2.426 + 1.0) * ((4.414 + 38.86) / (4.414 + 30.43f64)).powf(2.243));
        assert!((alive - direct).abs() < 1e-15);
        assert!((alive - 0.72657857).abs() < 1e-8, "{alive}");
        let e = p.expected_purchases(39.0, 2.0, 30.43, 38.86).unwrap();
        assert!((e - 1.226028174767135).abs() < 1e-9, "{e}");
        // A heavy buyer (400 repeats, the last at T): the untransformed formula, evaluated by
        // mpmath at 60 digits, gives 342.8843223813223; direct f64 evaluation would overflow.
        let heavy = p.expected_purchases(52.0, 400.0, 38.86, 38.86).unwrap();
        assert!(
            (heavy - 342.884_322_381_322_3).abs() < 1e-9 * 342.9,
            "{heavy}"
        );
        // The same buyer silent for the last 0.86 weeks is probably gone: P(alive) ≈ 0.14.
        let lapsed = p.p_alive(400.0, 38.0, 38.86);
        assert!((lapsed - 0.141).abs() < 1e-3, "{lapsed}");
        // The purchase distribution sums to one and its mean matches E[X(t)].
        let dist = p.purchase_distribution(39.0, 400);
        let total: f64 = dist.iter().sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        let mean: f64 = dist.iter().enumerate().map(|(n, q)| n as f64 * q).sum();
        let expected = p.population_expected_purchases(39.0).unwrap();
        assert!((mean - expected).abs() < 1e-4, "{mean} vs {expected}");
    }

    /// Parameter recovery on 30 000 simulated customers, within 4 standard errors.
    #[test]
    fn recovers_simulated_parameters() {
        let truth = BgNbd {
            r: 0.5,
            alpha: 6.0,
            a: 0.8,
            b: 2.5,
        };
        let mut rng = crate::testing::Rng::new(11);
        let histories = Histories::compress((0..30_000).map(|i| {
            let t = 20.0 + (i % 30) as f64; // staggered acquisition: T from 20 to 49
            let (x, t_x) = truth.simulate(&mut rng, t);
            (x, t_x, t, 1.0)
        }));
        let (p, fit) = fit_histories(&histories).unwrap();
        assert!(fit.converged, "{}", fit.status);
        let se = fit.standard_errors.unwrap();
        for (i, (got, want)) in [
            (p.r, truth.r),
            (p.alpha, truth.alpha),
            (p.a, truth.a),
            (p.b, truth.b),
        ]
        .iter()
        .enumerate()
        {
            assert!(
                (got - want).abs() < 4.0 * se[i],
                "param {i}: {got} vs {want} ± {}",
                se[i]
            );
        }
    }
}
