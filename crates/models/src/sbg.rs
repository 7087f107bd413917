//! The shifted-beta-geometric (sBG) model of contractual retention (Fader & Hardie 2007,
//! "How to project customer retention", Journal of Interactive Marketing 21(1)).
//!
//! Each customer churns at the end of any period with probability θ, constant for the customer;
//! θ varies across customers as Beta(α, β). With T the period in which a customer churns:
//! P(T = 1) = α / (α + β), P(T = t) = P(T = t − 1) · (β + t − 2) / (α + β + t − 1), and the
//! survival S(t) = P(T > t) = S(t − 1) · (β + t − 1) / (α + β + t − 1), S(0) = 1. The retention
//! rate S(t) / S(t − 1) rises with t: heterogeneity, not learning, as the low-θ customers remain.

use std::sync::atomic::AtomicBool;

use crate::ad::Real;
use crate::optimize::{Fit, FitError, LogLikelihood, fit};

/// A cohort's active counts at periods 0, 1, …, k (period 0: the cohort's size).
#[derive(Debug, Clone, PartialEq)]
pub struct Cohort {
    active: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CohortError {
    #[error(
        "the cohort needs its size at period 0 and at least two later periods: one period identifies only the mean churn probability, not alpha and beta"
    )]
    TooShort,
    #[error("period {period} has {active} active customers, more than the {previous} of period {}; the sBG model assumes customers who leave never return", period - 1)]
    Increasing {
        period: usize,
        active: f64,
        previous: f64,
    },
    #[error("the cohort has no customers at period 0")]
    Empty,
    #[error("every customer is still active at the last period, so there is no churn to fit")]
    NoChurn,
}

impl Cohort {
    /// `active[t]` customers active at period t, for t = 0..=k, never increasing.
    pub fn new(active: Vec<f64>) -> Result<Cohort, CohortError> {
        if active.len() < 3 {
            return Err(CohortError::TooShort);
        }
        if active[0].is_nan() || active[0] <= 0.0 {
            return Err(CohortError::Empty);
        }
        for period in 1..active.len() {
            if active[period] > active[period - 1] {
                return Err(CohortError::Increasing {
                    period,
                    active: active[period],
                    previous: active[period - 1],
                });
            }
        }
        if active[active.len() - 1] == active[0] {
            return Err(CohortError::NoChurn);
        }
        Ok(Cohort { active })
    }

    pub fn periods(&self) -> usize {
        self.active.len() - 1
    }

    /// The active counts at periods 0, 1, …, k.
    pub fn active(&self) -> &[f64] {
        &self.active
    }

    /// Customers at period 0.
    pub fn size(&self) -> f64 {
        self.active[0]
    }
}

impl LogLikelihood<2> for &Cohort {
    fn log_likelihood<R: Real>(&self, params: &[R; 2]) -> R {
        (*self).log_likelihood(params)
    }

    fn observations(&self) -> f64 {
        (*self).observations()
    }
}

impl LogLikelihood<2> for Cohort {
    /// Σₜ (nₜ₋₁ − nₜ) ln P(T = t) + n_k ln S(k).
    fn log_likelihood<R: Real>(&self, params: &[R; 2]) -> R {
        let [alpha, beta] = *params;
        let mut ll = R::constant(0.0);
        // ln S(t − 1), starting at ln S(0) = 0.
        let mut ln_survival = R::constant(0.0);
        for t in 1..self.active.len() {
            let denominator = (alpha + beta + (t as f64 - 1.0)).ln();
            let churned = self.active[t - 1] - self.active[t];
            if churned > 0.0 {
                ll = ll + (alpha.ln() - denominator + ln_survival) * churned;
            }
            ln_survival = ln_survival + (beta + (t as f64 - 1.0)).ln() - denominator;
        }
        ll + ln_survival * self.active[self.active.len() - 1]
    }

    fn observations(&self) -> f64 {
        self.active[0]
    }
}

/// Fits α and β to a cohort.
pub fn fit_cohort(cohort: &Cohort, cancel: &AtomicBool) -> Result<Fit<2>, FitError> {
    fit(cohort, [1.0, 1.0], cancel)
}

/// Fits one α and β to several cohorts (the sBG model without covariates, the baseline of
/// [`crate::covariates::fit_sbg`]).
pub fn fit_cohorts(cohorts: &[Cohort], cancel: &AtomicBool) -> Result<Fit<2>, FitError> {
    fit(&Pooled(cohorts), [1.0, 1.0], cancel)
}

/// Cohorts sharing their parameters.
struct Pooled<'a>(&'a [Cohort]);

impl LogLikelihood<2> for Pooled<'_> {
    fn log_likelihood<R: Real>(&self, params: &[R; 2]) -> R {
        self.0
            .iter()
            .map(|c| c.log_likelihood(params))
            .fold(R::constant(0.0), |a, b| a + b)
    }

    fn observations(&self) -> f64 {
        self.0.iter().map(Cohort::size).sum()
    }
}

/// S(0), S(1), …, S(periods).
pub fn survival(alpha: f64, beta: f64, periods: usize) -> Vec<f64> {
    let mut curve = Vec::with_capacity(periods + 1);
    let mut s = 1.0;
    curve.push(s);
    for t in 1..=periods {
        s *= (beta + t as f64 - 1.0) / (alpha + beta + t as f64 - 1.0);
        curve.push(s);
    }
    curve
}

/// The retention rate S(t) / S(t − 1) = (β + t − 1) / (α + β + t − 1), for t ≥ 1.
pub fn retention_rate(alpha: f64, beta: f64, t: usize) -> f64 {
    (beta + t as f64 - 1.0) / (alpha + beta + t as f64 - 1.0)
}

/// E[T] = (α + β − 1) / (α − 1), the mean number of periods a customer stays (counting the
/// period in which they leave); infinite, so `None`, when α ≤ 1.
pub fn expected_lifetime(alpha: f64, beta: f64) -> Option<f64> {
    (alpha > 1.0).then(|| (alpha + beta - 1.0) / (alpha - 1.0))
}

/// Discounted expected residual lifetime of a customer at the start of their first period
/// (Fader & Hardie 2010): Σ_{t≥1} S(t) / (1 + d)^(t−1), which equals
/// β/(α+β) · ₂F₁(1, β+1; α+β+1; 1/(1+d)). For d > 0 it is summed term by term in the series'
/// own recursion (geometric convergence); for d = 0 the sum is β / (α − 1), infinite when
/// α ≤ 1. `None` when it diverges or (for d below about 1e-6) does not converge in 10⁷ terms.
pub fn derl(alpha: f64, beta: f64, discount_rate: f64) -> Option<f64> {
    if discount_rate == 0.0 {
        return (alpha > 1.0).then(|| beta / (alpha - 1.0));
    }
    let z = 1.0 / (1.0 + discount_rate);
    let mut term = beta / (alpha + beta); // S(1)
    let mut sum = term;
    for t in 2..10_000_000u64 {
        term *= retention_rate(alpha, beta, t as usize) * z;
        sum += term;
        if term < 1e-15 * sum {
            return Some(sum);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fader & Hardie (2007), Table 1: customers of 1000 active at the end of years 0–12 in the
    /// "regular" and "high end" segments.
    const REGULAR: [f64; 13] = [
        1000.0, 631.0, 468.0, 382.0, 326.0, 289.0, 262.0, 241.0, 223.0, 207.0, 194.0, 183.0, 173.0,
    ];
    const HIGH_END: [f64; 13] = [
        1000.0, 869.0, 743.0, 653.0, 593.0, 551.0, 517.0, 491.0, 468.0, 445.0, 427.0, 409.0, 394.0,
    ];

    /// The paper fits the first seven years: regular α̂ = 0.704, β̂ = 1.182; high end
    /// α̂ = 0.668, β̂ = 3.806 (to the three decimals published).
    #[test]
    fn reproduces_the_published_estimates() {
        for (data, alpha, beta) in [(&REGULAR, 0.704, 1.182), (&HIGH_END, 0.668, 3.806)] {
            let cohort = Cohort::new(data[..8].to_vec()).unwrap();
            let fit = fit_cohort(&cohort, &AtomicBool::new(false)).unwrap();
            assert!(fit.converged, "{}", fit.status);
            assert!(
                (fit.params[0] - alpha).abs() < 0.0005,
                "alpha {} vs {alpha}",
                fit.params[0]
            );
            assert!(
                (fit.params[1] - beta).abs() < 0.0005,
                "beta {} vs {beta}",
                fit.params[1]
            );
            assert!(fit.standard_errors.is_some());
        }
    }

    /// Projections from the seven-year fit track the five held-out years, as the paper's
    /// Figure 3 shows (within 2 percentage points of survival).
    #[test]
    fn projects_the_held_out_years() {
        for data in [&REGULAR, &HIGH_END] {
            let fit = fit_cohort(
                &Cohort::new(data[..8].to_vec()).unwrap(),
                &AtomicBool::new(false),
            )
            .unwrap();
            let curve = survival(fit.params[0], fit.params[1], 12);
            for t in 8..=12 {
                let observed = data[t] / 1000.0;
                assert!(
                    (curve[t] - observed).abs() < 0.02,
                    "year {t}: {} vs {observed}",
                    curve[t]
                );
            }
        }
    }

    /// Parameter recovery: the expected counts of a known (α, β) fit back to (α, β) exactly,
    /// and a simulated cohort of 20 000 recovers them within sampling error.
    #[test]
    fn recovers_known_parameters() {
        let (alpha, beta) = (1.3, 2.5);
        let expected: Vec<f64> = survival(alpha, beta, 10).iter().map(|s| s * 1e6).collect();
        let fit = fit_cohort(&Cohort::new(expected).unwrap(), &AtomicBool::new(false)).unwrap();
        assert!(
            (fit.params[0] - alpha).abs() < 1e-6 && (fit.params[1] - beta).abs() < 1e-6,
            "{:?}",
            fit.params
        );

        // Simulate: θ ~ Beta(α, β) as X/(X+Y) with gamma draws, then a geometric lifetime.
        let mut rng = crate::testing::Rng::new(7);
        let n = 20_000;
        let mut active = vec![0.0; 11];
        for _ in 0..n {
            let theta = rng.beta(alpha, beta);
            let mut t = 0;
            while t < 10 {
                active[t] += 1.0;
                if rng.uniform() < theta {
                    break;
                }
                t += 1;
            }
            if t == 10 {
                active[10] += 1.0;
            }
        }
        let fit = fit_cohort(&Cohort::new(active).unwrap(), &AtomicBool::new(false)).unwrap();
        let se = fit.standard_errors.unwrap();
        // Within four standard errors (a 1-in-15 000 chance of failing for a correct fit).
        assert!(
            (fit.params[0] - alpha).abs() < 4.0 * se[0],
            "alpha {} ± {}",
            fit.params[0],
            se[0]
        );
        assert!(
            (fit.params[1] - beta).abs() < 4.0 * se[1],
            "beta {} ± {}",
            fit.params[1],
            se[1]
        );
    }

    #[test]
    fn lifetime_and_derl() {
        // α = 2, β = 3: E[T] = 4 / 1 = 4.
        assert_eq!(expected_lifetime(2.0, 3.0), Some(4.0));
        assert_eq!(expected_lifetime(0.7, 1.2), None);
        // With d = 0 and α > 1: Σ_{t≥1} S(t) = E[T] − S(0) = 3, and the series agrees as d → 0.
        assert_eq!(derl(2.0, 3.0, 0.0), Some(3.0));
        // S(t) ≈ 12 t⁻² here, so discounting at d removes about 12 d ln(1/d) ≈ 0.011 of it.
        let near = derl(2.0, 3.0, 1e-4).unwrap();
        assert!(
            near < 3.0 && near > 3.0 - 2.0 * 12.0 * 1e-4 * (1e4f64).ln(),
            "{near}"
        );
        // A homogeneous-like cohort (α, β large, θ = 0.2): S(t) = 0.8^t, so
        // DERL = Σ 0.8^t / 1.1^(t−1) = 0.8 / (1 − 0.8/1.1) = 2.9333…
        let d = derl(2e6, 8e6, 0.1).unwrap();
        assert!((d - 0.8 / (1.0 - 0.8 / 1.1)).abs() < 1e-4, "{d}");
        assert_eq!(derl(0.7, 1.2, 0.0), None);
    }

    #[test]
    fn refuses_unusable_cohorts() {
        assert_eq!(Cohort::new(vec![100.0, 80.0]), Err(CohortError::TooShort));
        assert_eq!(Cohort::new(vec![0.0, 0.0, 0.0]), Err(CohortError::Empty));
        assert!(matches!(
            Cohort::new(vec![100.0, 80.0, 90.0]),
            Err(CohortError::Increasing { period: 2, .. })
        ));
        assert_eq!(
            Cohort::new(vec![100.0, 100.0, 100.0]),
            Err(CohortError::NoChurn)
        );
    }
}
