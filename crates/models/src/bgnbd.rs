//! The BG/NBD model of repeat buying (Fader, Hardie & Lee 2005, "Counting your customers the
//! easy way: an alternative to the Pareto/NBD model", Marketing Science 24(2)).
//!
//! While active, a customer buys at Poisson rate λ, λ ~ Gamma(r, α) across customers; after any
//! purchase they become inactive with probability p, p ~ Beta(a, b). A customer's history is
//! (x repeat purchases, the last at t_x, observed for T since the first).

use std::sync::atomic::AtomicBool;

use crate::ad::Real;
use crate::hyp2f1::hyp2f1;
use crate::optimize::{Fit, FitError, LogLikelihood, fit};
use crate::purchase::{Distinct, Histories, PurchaseModel, alive_given_ln_odds, par_sum};
use crate::special::ln_gamma;

/// When a customer can drop out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// BG/NBD: after each repeat purchase, so a customer without one is surely alive.
    Bg,
    /// MBG/NBD (Batislam, Denizel & Filiztekin 2007): also right after the first purchase,
    /// so customers who never came back can be counted as gone.
    Modified,
}

impl Variant {
    /// Dropout opportunities before the (x+1)th survives, less x: 0 for BG/NBD, 1 for MBG/NBD.
    /// Every MBG/NBD formula is the BG/NBD one with b + 1 for b, and a dropout term at x = 0.
    fn shift(self) -> f64 {
        match self {
            Variant::Bg => 0.0,
            Variant::Modified => 1.0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Variant::Bg => "BG/NBD",
            Variant::Modified => "MBG/NBD",
        }
    }
}

/// The likelihood of histories under one variant.
struct Likelihood<'a> {
    histories: &'a Histories,
    variant: Variant,
    x: Distinct,
    /// The distinct t_x and T, where they repeat enough for tables to pay.
    t_x: Option<Distinct>,
    t: Option<Distinct>,
}

impl<'a> Likelihood<'a> {
    fn new(histories: &'a Histories, variant: Variant) -> Likelihood<'a> {
        Likelihood {
            histories,
            variant,
            // Purchase counts repeat in any data: a few hundred distinct values at most.
            x: Distinct::of(&histories.x),
            t_x: Distinct::if_repeated(&histories.t_x),
            t: Distinct::if_repeated(&histories.t),
        }
    }
}

/// ln(α + v) for each row's v: from a table of the distinct values when there is one, else
/// computed for the row.
struct LnAlphaPlus<'a, R> {
    alpha: R,
    column: &'a [f64],
    table: Option<(Vec<R>, &'a [u32])>,
}

impl<'a, R: Real> LnAlphaPlus<'a, R> {
    fn new(alpha: R, column: &'a [f64], distinct: Option<&'a Distinct>) -> Self {
        let table = distinct.map(|d| {
            let logs = d.values.iter().map(|&v| (alpha + v).ln()).collect();
            (logs, d.index.as_slice())
        });
        LnAlphaPlus {
            alpha,
            column,
            table,
        }
    }

    fn at(&self, row: usize) -> R {
        match &self.table {
            Some((logs, index)) => logs[index[row] as usize],
            None => (self.alpha + self.column[row]).ln(),
        }
    }
}

impl LogLikelihood<4> for Likelihood<'_> {
    /// ln L = ln Γ(r+x) − ln Γ(r) + r ln α + ln B(a, b+k+x) − ln B(a, b)
    ///        + ln[(α+T)^−(r+x) + 1{x+k>0} a/(b+k+x−1) (α+t_x)^−(r+x)], in log-sum-exp form,
    /// k = 0 (BG/NBD) or 1 (MBG/NBD). The gamma functions of one x are computed once per
    /// distinct x, and the logarithms of one t_x or T once per distinct value where values
    /// repeat (else per history), leaving one log-sum-exp per history.
    fn log_likelihood<R: Real>(&self, params: &[R; 4]) -> R {
        let [r, alpha, a, b] = *params;
        let h = self.histories;
        let k = self.variant.shift();
        let shared = r.ln_gamma() * -1.0 + r * alpha.ln() + (a + b).ln_gamma() - b.ln_gamma();
        let ln_a = a.ln();
        // Per distinct x: ln Γ(r+x) + ln Γ(b+k+x) − ln Γ(a+b+k+x), and ln(b+k+x−1) where used.
        let per_x: Vec<(R, R)> = self
            .x
            .values
            .iter()
            .map(|&x| {
                let bx = b + (x + k);
                let gammas = (r + x).ln_gamma() + bx.ln_gamma() - (a + bx).ln_gamma();
                let ln_bx_1 = if x + k > 0.0 {
                    (bx - 1.0).ln()
                } else {
                    R::constant(0.0)
                };
                (gammas, ln_bx_1)
            })
            .collect();
        let ln_alpha_t = LnAlphaPlus::new(alpha, &h.t, self.t.as_ref());
        let ln_alpha_t_x = LnAlphaPlus::new(alpha, &h.t_x, self.t_x.as_ref());
        let body = par_sum(h.len(), |range| {
            let mut total = R::constant(0.0);
            for i in range {
                let (x, w) = (h.x[i], h.weight[i]);
                let (gammas, ln_bx_1) = per_x[self.x.index[i] as usize];
                let rx = r + x;
                let alive = -(rx * ln_alpha_t.at(i));
                let ll = gammas
                    + if x + k > 0.0 {
                        alive.log_add_exp(ln_a - ln_bx_1 - rx * ln_alpha_t_x.at(i))
                    } else {
                        alive
                    };
                total = total + ll * w;
            }
            total
        });
        body + shared * h.customers()
    }

    fn observations(&self) -> f64 {
        self.histories.customers()
    }
}

/// Fitted BG/NBD or MBG/NBD parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
    pub variant: Variant,
}

/// Fits the BG/NBD or MBG/NBD model. Starting values: r = 1, α = mean T (so λ starts near one
/// purchase per observation span), a = b = 1.
pub fn fit_histories(
    histories: &Histories,
    variant: Variant,
    cancel: &AtomicBool,
) -> Result<(BgNbd, Fit<4>), FitError> {
    let likelihood = Likelihood::new(histories, variant);
    let fit = fit(
        &likelihood,
        [1.0, histories.mean_t().max(1e-3), 1.0, 1.0],
        cancel,
    )?;
    let [r, alpha, a, b] = fit.params;
    Ok((
        BgNbd {
            r,
            alpha,
            a,
            b,
            variant,
        },
        fit,
    ))
}

impl BgNbd {
    /// ln of a/(b+k+x−1) · ((α+T)/(α+t_x))^(r+x): the odds that the customer is inactive.
    fn ln_dropout_odds(&self, x: f64, t_x: f64, t: f64) -> Option<f64> {
        let k = self.variant.shift();
        (x + k > 0.0).then(|| {
            self.a.ln() - (self.b + k + x - 1.0).ln()
                + (self.r + x) * ((self.alpha + t).ln() - (self.alpha + t_x).ln())
        })
    }
}

impl PurchaseModel for BgNbd {
    fn p_alive(&self, x: f64, t_x: f64, t: f64) -> f64 {
        self.ln_dropout_odds(x, t_x, t)
            .map_or(1.0, alive_given_ln_odds)
    }

    /// FHL 2005, eq. 10 (b + 1 for b under MBG/NBD), with the ₂F₁ taken by Euler's
    /// transformation: ₂F₁(r+x, b+x; a+b+x−1; z) (1−z)^(r+x) = (1−z)^(a−1) ·
    /// ₂F₁(a+b−r−1, a−1; a+b+x−1; z), z = horizon/(α+T+horizon), a series with small
    /// numerators that stays finite for any number of purchases.
    fn expected_purchases(&self, horizon: f64, x: f64, t_x: f64, t: f64) -> Option<f64> {
        let BgNbd { r, alpha, a, b, .. } = *self;
        let b = b + self.variant.shift();
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

    /// FHL 2005, eq. 7: the conditional expectation with no history (x = t_x = T = 0), which
    /// under MBG/NBD is b/(a−1)·[…] (Batislam et al. 2007, eq. 8).
    fn population_expected_purchases(&self, t: f64) -> Option<f64> {
        self.expected_purchases(t, 0.0, 0.0, 0.0)
    }

    /// P(X(t) = n) (FHL 2005, eq. 8; k = 1 for MBG/NBD): the customer is still active after
    /// n + k dropout chances and bought exactly n times by t, or dropped at chance n + k after
    /// surviving the others, having bought at least n times:
    /// B(a, b+n+k)/B(a, b) NBD(n) + 1{n+k>0} B(a+1, b+n+k−1)/B(a, b) P(NBD ≥ n), with
    /// NBD(j) = Γ(r+j)/(Γ(r) j!) (α/(α+t))^r (t/(α+t))^j.
    fn purchase_distribution(&self, t: f64, max_n: usize) -> Vec<f64> {
        let BgNbd { r, alpha, a, b, .. } = *self;
        let k = self.variant.shift();
        let ln_beta = |p: f64, q: f64| ln_gamma(p) + ln_gamma(q) - ln_gamma(p + q);
        let ln_ab = ln_beta(a, b);
        let ln_stay = r * (alpha / (alpha + t)).ln();
        let ln_z = (t / (alpha + t)).ln();
        let ln_nbd =
            |j: f64| ln_gamma(r + j) - ln_gamma(r) - ln_gamma(j + 1.0) + ln_stay + j * ln_z;
        // P(NBD ≤ n − 1), updated as n grows.
        let mut nbd_cdf = 0.0;
        (0..=max_n)
            .map(|n| {
                let n_f = n as f64;
                let mut p = (ln_beta(a, b + n_f + k) - ln_ab + ln_nbd(n_f)).exp();
                if n_f + k > 0.0 {
                    p += (ln_beta(a + 1.0, b + n_f + k - 1.0) - ln_ab).exp() * (1.0 - nbd_cdf);
                }
                nbd_cdf += ln_nbd(n_f).exp();
                p
            })
            .collect()
    }
}

impl BgNbd {
    /// Simulates one customer for `t` time units (for tests and benchmarks): returns (x, t_x).
    #[doc(hidden)]
    pub fn simulate(&self, rng: &mut crate::testing::Rng, t: f64) -> (f64, f64) {
        let lambda = rng.gamma(self.r) / self.alpha;
        let p = rng.beta(self.a, self.b);
        if self.variant == Variant::Modified && rng.uniform() < p {
            return (0.0, 0.0);
        }
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
    use crate::purchase::PurchaseModel;
    use crate::testing::{cdnow, check_distribution};

    /// FHL (2005) report r = 0.243, α = 4.414, a = 0.793, b = 2.426 and LL = −9582.4.
    #[test]
    fn reproduces_the_published_cdnow_estimates() {
        let (p, fit) = fit_histories(&cdnow(), Variant::Bg, &AtomicBool::new(false)).unwrap();
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
            variant: Variant::Bg,
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
        check_distribution(&p, 39.0, 400);
    }

    /// MBG/NBD on CDNOW, against lifetimes 0.11.3's ModifiedBetaGeoFitter (no paper fits it
    /// to CDNOW): r = 0.5248, α = 6.183, a = 0.8914, b = 1.614.
    #[test]
    fn modified_variant_matches_lifetimes_on_cdnow() {
        let (p, fit) = fit_histories(&cdnow(), Variant::Modified, &AtomicBool::new(false)).unwrap();
        assert!(fit.converged, "{}", fit.status);
        for (got, want) in [(p.r, 0.5248), (p.alpha, 6.183), (p.a, 0.8914), (p.b, 1.614)] {
            assert!((got - want).abs() < 5e-4 * want, "{got} vs {want}: {p:?}");
        }
    }

    #[test]
    fn modified_variant_predictions() {
        let p = BgNbd {
            r: 0.525,
            alpha: 6.183,
            a: 0.891,
            b: 1.614,
            variant: Variant::Modified,
        };
        // lifetimes 0.11.3 at the same parameters.
        let alive = p.p_alive(2.0, 30.43, 38.86);
        assert!((alive - 0.706_202_265_118_487_3).abs() < 1e-10, "{alive}");
        // Unlike BG/NBD, a customer who never came back may be gone.
        let silent = p.p_alive(0.0, 0.0, 38.86);
        assert!((silent - 0.389_735_080_918_762_9).abs() < 1e-10, "{silent}");
        let e = p.expected_purchases(39.0, 2.0, 30.43, 38.86).unwrap();
        assert!((e - 1.262_960_623_267_343_2).abs() < 1e-9, "{e}");
        // E[X(t)] = b/(a−1)·[…] (Batislam et al. 2007), as lifetimes computes it at its own
        // estimates, and the mean of the purchase distribution, derived separately.
        let lifetimes = BgNbd {
            r: 0.524_837_725_567_662_3,
            alpha: 6.182_988_479_133_949,
            a: 0.891_356_280_931_140_3,
            b: 1.614_000_025_672_142_5,
            variant: Variant::Modified,
        };
        let population = lifetimes.population_expected_purchases(39.0).unwrap();
        assert!(
            (population - 1.182_283_795_288_278_8).abs() < 1e-10,
            "{population}"
        );
        check_distribution(&p, 39.0, 400);
    }

    /// Fits simulated customers (T staggered from 20 to 49) and checks every estimate is
    /// within 4 standard errors of the truth.
    fn check_recovery(truth: BgNbd, customers: usize, seed: u64) {
        let mut rng = crate::testing::Rng::new(seed);
        let histories = Histories::compress((0..customers).map(|i| {
            let t = 20.0 + (i % 30) as f64;
            let (x, t_x) = truth.simulate(&mut rng, t);
            (x, t_x, t, 1.0)
        }));
        let (p, fit) = fit_histories(&histories, truth.variant, &AtomicBool::new(false)).unwrap();
        assert!(fit.converged, "{}", fit.status);
        let se = fit.standard_errors.unwrap();
        let got = [p.r, p.alpha, p.a, p.b];
        let want = [truth.r, truth.alpha, truth.a, truth.b];
        for i in 0..4 {
            assert!(
                (got[i] - want[i]).abs() < 4.0 * se[i],
                "{:?} param {i}: {got:?} vs {want:?} ± {se:?}",
                truth.variant
            );
        }
    }

    #[test]
    fn recovers_simulated_parameters() {
        for variant in [Variant::Bg, Variant::Modified] {
            let truth = BgNbd {
                r: 0.5,
                alpha: 6.0,
                a: 0.8,
                b: 2.5,
                variant,
            };
            check_recovery(truth, 30_000, 11);
        }
    }
}
