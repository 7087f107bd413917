//! The Pareto/NBD model of repeat buying (Schmittlein, Morrison & Colombo 1987, "Counting your
//! customers: who are they and what will they do next?", Management Science 33(1)), in the
//! likelihood form of Fader, Hardie & Lee (2005), "A note on deriving the Pareto/NBD model
//! and related expressions".
//!
//! While active, a customer buys at Poisson rate λ, λ ~ Gamma(r, α); their unobserved lifetime
//! is exponential with rate μ, μ ~ Gamma(s, β). Unlike BG/NBD, a customer can drop out at any
//! time, not only right after a purchase.

use std::sync::atomic::AtomicBool;

use crate::ad::Real;
use crate::hyp2f1::ln_hyp2f1_c_is_a_plus_1;
use crate::optimize::{Fit, FitError, LogLikelihood, fit};
use crate::purchase::{Histories, PurchaseModel, alive_given_ln_odds, par_sum};

/// Fitted Pareto/NBD parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParetoNbd {
    pub r: f64,
    pub alpha: f64,
    pub s: f64,
    pub beta: f64,
}

/// ln A₀ (FHL 2005 note, eq. 19–20): A₀ = ∫ over the possible dropout times between t_x and
/// T, written with ₂F₁(r+s+x, b; r+s+x+1; ·), b = s+1 when α ≥ β and r+x otherwise, as
/// ₂F₁(…; |α−β|/(max+t_x)) / (max+t_x)^(r+s+x) − ₂F₁(…; |α−β|/(max+T)) / (max+T)^(r+s+x).
/// Both terms are taken in log space and subtracted by log-sub-exp. `Some(None)` when A₀ is
/// zero (t_x = T: no time to drop out unseen) or negligible (rounding leaves the two terms
/// equal); `None` when a series did not converge.
#[allow(clippy::option_option)]
fn ln_a0<R: Real>(r: R, alpha: R, s: R, beta: R, x: f64, t_x: f64, t: f64) -> Option<Option<R>> {
    if t_x >= t {
        return Some(None);
    }
    let (max, gap, b) = if alpha.value() >= beta.value() {
        (alpha, alpha - beta, s + 1.0)
    } else {
        (beta, beta - alpha, r + x)
    };
    let k = r + s + x;
    let term = |time: f64| -> Option<R> {
        let base = max + time;
        Some(ln_hyp2f1_c_is_a_plus_1(k, b, gap / base)? - k * base.ln())
    };
    let (early, late) = (term(t_x)?, term(t)?);
    Some((early.value() > late.value()).then(|| early.log_sub_exp(late)))
}

struct Likelihood<'a>(&'a Histories);

impl LogLikelihood<4> for Likelihood<'_> {
    /// ln L = ln Γ(r+x) − ln Γ(r) + r ln α + s ln β
    ///        + ln[(α+T)^−(r+x) (β+T)^−s + s/(r+s+x) A₀] (FHL 2005 note, eq. 22).
    fn log_likelihood<R: Real>(&self, params: &[R; 4]) -> R {
        let [r, alpha, s, beta] = *params;
        let h = self.0;
        let shared = r.ln_gamma() * -1.0 + r * alpha.ln() + s * beta.ln();
        let ln_s = s.ln();
        let body = par_sum(h.len(), |range| {
            let mut total = R::constant(0.0);
            for i in range {
                let (x, t_x, t, w) = (h.x[i], h.t_x[i], h.t[i], h.weight[i]);
                let rx = r + x;
                let alive = -(rx * (alpha + t).ln()) - s * (beta + t).ln();
                let tail = match ln_a0(r, alpha, s, beta, x, t_x, t) {
                    Some(Some(a0)) => alive.log_add_exp(ln_s - (rx + s).ln() + a0),
                    Some(None) => alive,
                    // A series that does not converge makes the point unacceptable to the
                    // line search, never a wrong number.
                    None => R::constant(f64::NAN),
                };
                total = total + (rx.ln_gamma() + tail) * w;
            }
            total
        });
        body + shared * h.customers()
    }

    fn observations(&self) -> f64 {
        self.0.customers()
    }
}

/// Fits the Pareto/NBD model. Starting values: r = s = 1, α = β = mean T.
pub fn fit_histories(
    histories: &Histories,
    cancel: &AtomicBool,
) -> Result<(ParetoNbd, Fit<4>), FitError> {
    let scale = histories.mean_t().max(1e-3);
    let fit = fit(&Likelihood(histories), [1.0, scale, 1.0, scale], cancel)?;
    let [r, alpha, s, beta] = fit.params;
    Ok((ParetoNbd { r, alpha, s, beta }, fit))
}

/// 8-point Gauss–Legendre nodes and weights on [−1, 1].
const GAUSS_LEGENDRE_8: [(f64, f64); 8] = [
    (-0.960_289_856_497_536_2, 0.101_228_536_290_376_26),
    (-0.796_666_477_413_626_7, 0.222_381_034_453_374_47),
    (-0.525_532_409_916_329, 0.313_706_645_877_887_3),
    (-0.183_434_642_495_649_8, 0.362_683_783_378_362),
    (0.183_434_642_495_649_8, 0.362_683_783_378_362),
    (0.525_532_409_916_329, 0.313_706_645_877_887_3),
    (0.796_666_477_413_626_7, 0.222_381_034_453_374_47),
    (0.960_289_856_497_536_2, 0.101_228_536_290_376_26),
];
const PANELS: usize = 32;

impl ParetoNbd {
    /// ln of the odds that the customer is inactive: s/(r+s+x) (α+T)^(r+x) (β+T)^s A₀;
    /// `Some(None)` when A₀ is zero (the odds are 0), `None` when a series did not converge.
    #[allow(clippy::option_option)]
    fn ln_dropout_odds(&self, x: f64, t_x: f64, t: f64) -> Option<Option<f64>> {
        let ParetoNbd { r, alpha, s, beta } = *self;
        let a0 = ln_a0(r, alpha, s, beta, x, t_x, t)?;
        Some(a0.map(|a0| {
            s.ln() - (r + s + x).ln() + (r + x) * (alpha + t).ln() + s * (beta + t).ln() + a0
        }))
    }

    /// ln NBD(j; τ) for j = 0..=max_n: the Poisson-Gamma probabilities of j purchases in τ.
    fn ln_nbd(&self, tau: f64, max_n: usize) -> impl Iterator<Item = f64> {
        let (r, alpha) = (self.r, self.alpha);
        let ln_z = (tau / (alpha + tau)).ln();
        let mut ln_p = r * (alpha / (alpha + tau)).ln();
        (0..=max_n).map(move |j| {
            let current = ln_p;
            let j = j as f64;
            ln_p += ((r + j) / (j + 1.0)).ln() + ln_z;
            current
        })
    }

    /// Simulates one customer for `t` time units (for tests and benchmarks): returns (x, t_x).
    #[doc(hidden)]
    pub fn simulate(&self, rng: &mut crate::testing::Rng, t: f64) -> (f64, f64) {
        let lambda = rng.gamma(self.r) / self.alpha;
        let mu = rng.gamma(self.s) / self.beta;
        let end = (-rng.uniform().ln() / mu).min(t);
        let (mut now, mut x, mut t_x) = (0.0, 0.0, 0.0);
        loop {
            now += -rng.uniform().ln() / lambda;
            if now > end {
                return (x, t_x);
            }
            x += 1.0;
            t_x = now;
        }
    }
}

impl PurchaseModel for ParetoNbd {
    fn p_alive(&self, x: f64, t_x: f64, t: f64) -> f64 {
        match self.ln_dropout_odds(x, t_x, t) {
            Some(odds) => odds.map_or(1.0, alive_given_ln_odds),
            // NaN, not a guess: expected_purchases then returns None, and the engine refuses
            // a non-finite table value.
            None => f64::NAN,
        }
    }

    /// (r+x)(β+T) / ((α+T)(s−1)) · [1 − ((β+T)/(β+T+t))^(s−1)] · P(alive) (FHL 2005 note,
    /// eq. 41), the bracket over s − 1 taken by expm1 so s = 1 is no singularity (its limit
    /// is ln((β+T+t)/(β+T))).
    fn expected_purchases(&self, horizon: f64, x: f64, t_x: f64, t: f64) -> Option<f64> {
        let ParetoNbd { r, alpha, s, beta } = *self;
        if horizon <= 0.0 {
            return Some(0.0);
        }
        let span = (horizon / (beta + t)).ln_1p();
        let shape = if (s - 1.0).abs() < 1e-12 {
            span
        } else {
            -(-(s - 1.0) * span).exp_m1() / (s - 1.0)
        };
        let value = (r + x) * (beta + t) / (alpha + t) * shape * self.p_alive(x, t_x, t);
        value.is_finite().then_some(value)
    }

    /// E[X(t)] = rβ/(α(s−1)) · [1 − (β/(β+t))^(s−1)]: the conditional expectation with no
    /// history.
    fn population_expected_purchases(&self, t: f64) -> Option<f64> {
        self.expected_purchases(t, 0.0, 0.0, 0.0)
    }

    /// P(X(t) = n) = P(τ > t) NBD(n; t) + ∫₀ᵗ f(τ) NBD(n; τ) dτ over the lifetime τ, whose
    /// marginal is Pareto: P(τ > t) = (β/(β+t))^s. The integral is taken by Gauss–Legendre
    /// quadrature in u = ln(1+τ/β) / ln(1+t/β), where the Pareto density is smooth; this
    /// avoids the closed form's cancellation between a ₂F₁ and a finite sum of them.
    fn purchase_distribution(&self, t: f64, max_n: usize) -> Vec<f64> {
        let (s, beta) = (self.s, self.beta);
        let mut out: Vec<f64> = self
            .ln_nbd(t, max_n)
            .map(|ln_p| (ln_p + s * (beta / (beta + t)).ln()).exp())
            .collect();
        let span = (t / beta).ln_1p();
        let width = 1.0 / PANELS as f64;
        for panel in 0..PANELS {
            for (node, weight) in GAUSS_LEGENDRE_8 {
                let u = (panel as f64 + 0.5 + 0.5 * node) * width;
                let tau = beta * (u * span).exp_m1();
                // f(τ) dτ = s β^s (β+τ)^−(s+1) · (β+τ) span du.
                let ln_density = s.ln() + s * (beta / (beta + tau)).ln() + span.ln();
                let ln_w = (0.5 * width * weight).ln() + ln_density;
                for (p, ln_p) in out.iter_mut().zip(self.ln_nbd(tau, max_n)) {
                    *p += (ln_w + ln_p).exp();
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cdnow, check_distribution};

    const PUBLISHED: ParetoNbd = ParetoNbd {
        r: 0.553,
        alpha: 10.578,
        s: 0.606,
        beta: 11.669,
    };

    /// Fader, Hardie & Lee (2005), "A note on implementing the Pareto/NBD model in MATLAB",
    /// report r = 0.553, α = 10.578, s = 0.606, β = 11.669 and LL = −9595.0 on CDNOW.
    #[test]
    fn reproduces_the_published_cdnow_estimates() {
        let (p, fit) = fit_histories(&cdnow(), &AtomicBool::new(false)).unwrap();
        assert!(fit.converged, "{}", fit.status);
        for (got, want, tolerance) in [
            (p.r, PUBLISHED.r, 0.0006),
            (p.alpha, PUBLISHED.alpha, 0.006),
            (p.s, PUBLISHED.s, 0.0006),
            (p.beta, PUBLISHED.beta, 0.006),
        ] {
            assert!((got - want).abs() < tolerance, "{got} vs {want}: {p:?}");
        }
        assert!(
            (fit.log_likelihood - (-9594.98)).abs() < 0.01,
            "{}",
            fit.log_likelihood
        );
    }

    /// Single-customer predictions at the published parameters, against lifetimes 0.11.3
    /// (P(alive), conditional expectation) and mpmath quadrature (the distribution).
    #[test]
    fn single_customer_predictions() {
        let p = PUBLISHED;
        let alive = p.p_alive(2.0, 30.43, 38.86);
        assert!((alive - 0.869_167_559_153_011_1).abs() < 1e-10, "{alive}");
        let silent = p.p_alive(0.0, 0.0, 38.86);
        assert!((silent - 0.295_286_604_616_894_4).abs() < 1e-10, "{silent}");
        let e = p.expected_purchases(39.0, 2.0, 30.43, 38.86).unwrap();
        assert!((e - 1.455_123_193_257_602).abs() < 1e-10, "{e}");
        let population = p.population_expected_purchases(39.0).unwrap();
        assert!(
            (population - 1.213_002_844_281_015_7).abs() < 1e-10,
            "{population}"
        );
        // A customer seen only at T = 0 has had no time to drop out.
        assert_eq!(p.p_alive(0.0, 0.0, 0.0), 1.0);
        // The distribution sums to one with E[X(t)] as its mean, and matches quadrature.
        let distribution = check_distribution(&p, 39.0, 2000);
        for (n, want) in [
            (0, 0.593_625_031_602_384),
            (2, 0.082_487_184_116_316_59),
            (10, 0.004_193_439_332_080_426),
        ] {
            assert!(
                (distribution[n] - want).abs() < 1e-10,
                "{n}: {}",
                distribution[n]
            );
        }
    }

    /// A last purchase a rounding error before T gives (nearly) the likelihood of one exactly
    /// at T, never NaN: A₀ is then zero or negligible, which is not a failed series.
    #[test]
    fn last_purchase_at_the_end_is_continuous() {
        let p = PUBLISHED;
        let at = |t_x: f64| {
            let h = Histories::compress([(2.0, t_x, 38.86, 1.0)].into_iter());
            Likelihood(&h).log_likelihood(&[p.r, p.alpha, p.s, p.beta])
        };
        for gap in [0.0, 1e-15, 1e-12, 1e-9] {
            let ll = at(38.86 - gap);
            assert!((ll - at(38.86)).abs() < 1e-6, "gap {gap}: {ll}");
            assert!(p.p_alive(2.0, 38.86 - gap, 38.86) > 0.999_999, "gap {gap}");
        }
    }

    /// Heavy buyers, where a direct evaluation of the ₂F₁ terms overflows, against the
    /// formulas evaluated by mpmath at 80 digits: 500 repeat purchases in 100 weeks, the last
    /// just before T or 26 weeks before; 300 purchases over 1000 weeks, the last at T.
    #[test]
    fn extreme_histories_match_high_precision() {
        let p = PUBLISHED;
        for (x, t_x, t, alive, expected) in [
            (
                500.0,
                99.9,
                100.0,
                0.999_313_550_877_694_1,
                208.423_697_806_508_3,
            ),
            (
                500.0,
                74.0,
                100.0,
                3.830_542_804_703_394e-56,
                7.989_243_168_584_912e-54,
            ),
            (300.0, 1000.0, 1000.0, 1.0, 15.230_720_412_501_534),
        ] {
            let got_alive = p.p_alive(x, t_x, t);
            let got = p.expected_purchases(52.0, x, t_x, t).unwrap();
            assert!(
                (got_alive - alive).abs() <= 1e-10 * alive,
                "{x} {t_x} {t}: {got_alive}"
            );
            assert!(
                (got - expected).abs() <= 1e-10 * expected,
                "{x} {t_x} {t}: {got}"
            );
        }
        // Their likelihood is finite too, with a finite gradient.
        let h =
            Histories::compress([(500.0, 99.9, 100.0, 1.0), (500.0, 74.0, 100.0, 1.0)].into_iter());
        let duals: [crate::ad::Dual<4>; 4] =
            std::array::from_fn(|i| crate::ad::Dual::variable([p.r, p.alpha, p.s, p.beta][i], i));
        let ll = Likelihood(&h).log_likelihood(&duals);
        assert!(
            ll.value.is_finite() && ll.gradient.iter().all(|g| g.is_finite()),
            "{ll:?}"
        );
    }

    /// Parameter recovery on 30 000 simulated customers, within 4 standard errors.
    #[test]
    fn recovers_simulated_parameters() {
        let truth = ParetoNbd {
            r: 0.6,
            alpha: 8.0,
            s: 0.8,
            beta: 15.0,
        };
        let mut rng = crate::testing::Rng::new(17);
        let histories = Histories::compress((0..30_000).map(|i| {
            let t = 20.0 + (i % 30) as f64;
            let (x, t_x) = truth.simulate(&mut rng, t);
            (x, t_x, t, 1.0)
        }));
        let (p, fit) = fit_histories(&histories, &AtomicBool::new(false)).unwrap();
        assert!(fit.converged, "{}", fit.status);
        let se = fit.standard_errors.unwrap();
        let got = [p.r, p.alpha, p.s, p.beta];
        let want = [truth.r, truth.alpha, truth.s, truth.beta];
        for i in 0..4 {
            assert!(
                (got[i] - want[i]).abs() < 4.0 * se[i],
                "param {i}: {got:?} vs {want:?} ± {se:?}"
            );
        }
    }
}
