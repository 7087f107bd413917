//! How sure a prediction is, from how sure the fit is: the delta method.
//!
//! A prediction g(θ) at the estimate θ̂ has, to first order, the variance ∇gᵀ Σ ∇g, Σ the
//! estimate's covariance (Rao 1973, §6a.2; Oehlert 1992, "A note on the delta method", The
//! American Statistician 46(1)). The fit works in φ = ln θ, where the likelihood is closer to
//! quadratic, so the gradient is taken there: by forward differences of the prediction
//! recomputed with each ln θᵢ moved by [`STEP`] (every model's predictions, however they are
//! computed, at N + 1 points), and Σ_φ = D⁻¹ Σ_θ D⁻¹ with D = diag(θ). The interval is then
//! symmetric on a scale that keeps it inside the prediction's range ([`Scale`]) and mapped
//! back: the logit for a probability, the log for a count or an amount.
//!
//! A sum over customers (expected purchases of the whole base, its value) is one function of
//! θ like any other: its gradient is the sum of the customers' gradients, and its interval
//! comes from that, with the customers' errors moving together as they do (they share θ),
//! not from adding per-customer intervals.

use crate::Fit;

/// The step in ln θ of the forward differences: the gradient's truncation error is about
/// this relative, its rounding error about 1e-16 / STEP; both far below what moves an
/// interval.
pub const STEP: f64 = 1e-6;

/// A fit's estimate and its covariance in the log-parameters φ = ln θ.
#[derive(Debug, Clone, PartialEq)]
pub struct LogCovariance<const N: usize> {
    pub params: [f64; N],
    /// Cov(φ̂) = D⁻¹ Cov(θ̂) D⁻¹.
    pub covariance: [[f64; N]; N],
}

impl<const N: usize> LogCovariance<N> {
    /// `None` when the fit has no covariance (its Hessian was not negative definite) or a
    /// parameter is not positive.
    pub fn of(fit: &Fit<N>) -> Option<LogCovariance<N>> {
        let covariance = fit.covariance?;
        if fit.params.iter().any(|&p| !(p > 0.0 && p.is_finite())) {
            return None;
        }
        Some(LogCovariance {
            params: fit.params,
            covariance: std::array::from_fn(|i| {
                std::array::from_fn(|j| covariance[i][j] / (fit.params[i] * fit.params[j]))
            }),
        })
    }

    /// The N parameter vectors at which a prediction is recomputed: θ with ln θᵢ moved by
    /// [`STEP`], one per i.
    pub fn shifted(&self) -> [[f64; N]; N] {
        std::array::from_fn(|i| {
            let mut params = self.params;
            params[i] *= STEP.exp();
            params
        })
    }

    /// ∇_φ g from g at the estimate and at [`Self::shifted`]'s points.
    pub fn gradient(value: f64, shifted: &[f64; N]) -> [f64; N] {
        std::array::from_fn(|i| (shifted[i] - value) / STEP)
    }

    /// ∇gᵀ Cov(φ̂) ∇g.
    pub fn variance(&self, gradient: &[f64; N]) -> f64 {
        let mut variance = 0.0;
        for i in 0..N {
            for j in 0..N {
                variance += gradient[i] * self.covariance[i][j] * gradient[j];
            }
        }
        variance.max(0.0)
    }
}

/// The scale on which an interval is symmetric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// A probability: the logit, so the interval stays within (0, 1).
    Probability,
    /// A count or an amount: the log, so the interval stays positive.
    Positive,
}

/// The interval value ± z·sd on `scale`, for a prediction `value` whose variance (on its own
/// scale) is `variance`: by the delta method again, var(h(g)) = h′(g)² var(g). A value at
/// the edge of its range (a probability of exactly 0 or 1, an amount of 0) has no spread on
/// that scale and its interval is the value itself. `None` for a value outside its range or
/// a variance that is not finite.
pub fn interval(value: f64, variance: f64, z: f64, scale: Scale) -> Option<(f64, f64)> {
    if !(variance.is_finite() && variance >= 0.0 && value.is_finite()) {
        return None;
    }
    match scale {
        Scale::Probability => {
            if !(0.0..=1.0).contains(&value) {
                return None;
            }
            if value == 0.0 || value == 1.0 {
                return Some((value, value));
            }
            let slope = 1.0 / (value * (1.0 - value));
            let half = z * variance.sqrt() * slope;
            let logit = (value / (1.0 - value)).ln();
            let logistic = |l: f64| 1.0 / (1.0 + (-l).exp());
            Some((logistic(logit - half), logistic(logit + half)))
        }
        Scale::Positive => {
            if value < 0.0 {
                return None;
            }
            if value == 0.0 {
                return Some((0.0, 0.0));
            }
            let half = z * variance.sqrt() / value;
            let (lower, upper) = (value * (-half).exp(), value * half.exp());
            upper.is_finite().then_some((lower, upper))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(params: [f64; 2], covariance: [[f64; 2]; 2]) -> Fit<2> {
        Fit {
            params,
            standard_errors: Some([covariance[0][0].sqrt(), covariance[1][1].sqrt()]),
            covariance: Some(covariance),
            log_likelihood: 0.0,
            iterations: 1,
            evaluations: 1,
            converged: true,
            status: String::new(),
            at_boundary: [false; 2],
        }
    }

    /// g(θ) = θ₀ θ₁: in logs a sum, so its variance in φ is the sum of Cov(φ)'s entries, and
    /// the forward differences find the exact gradient (θ₀θ₁, θ₀θ₁) to about STEP.
    #[test]
    fn a_product_of_parameters() {
        let covariance = LogCovariance::of(&fit([2.0, 5.0], [[0.04, 0.01], [0.01, 0.25]])).unwrap();
        // Cov(φ) = [[0.01, 0.001], [0.001, 0.01]].
        assert!((covariance.covariance[0][1] - 0.001).abs() < 1e-15);
        let g = |p: [f64; 2]| p[0] * p[1];
        let shifted = covariance.shifted().map(g);
        let gradient = LogCovariance::<2>::gradient(g(covariance.params), &shifted);
        for d in gradient {
            assert!((d - 10.0).abs() < 1e-4, "{gradient:?}");
        }
        let variance = covariance.variance(&gradient);
        let want = 100.0 * (0.01 + 2.0 * 0.001 + 0.01);
        assert!(
            (variance - want).abs() < 1e-3 * want,
            "{variance} vs {want}"
        );
        // On the log scale, ln g = φ₀ + φ₁ has sd √0.022: the interval is g · e^(± z √0.022).
        let (lower, upper) = interval(10.0, variance, 1.645, Scale::Positive).unwrap();
        assert!((upper / 10.0 - (1.645 * 0.022f64.sqrt()).exp()).abs() < 1e-3);
        assert!((lower * upper - 100.0).abs() < 1e-9);
    }

    #[test]
    fn probabilities_stay_inside_their_range() {
        let (lower, upper) = interval(0.98, 0.01, 1.96, Scale::Probability).unwrap();
        assert!(0.0 < lower && lower < 0.98 && 0.98 < upper && upper < 1.0);
        // Symmetric in the logit.
        let logit = |p: f64| (p / (1.0 - p)).ln();
        assert!((logit(upper) - logit(0.98) - (logit(0.98) - logit(lower))).abs() < 1e-8);
        assert_eq!(
            interval(1.0, 0.0, 1.96, Scale::Probability),
            Some((1.0, 1.0))
        );
        assert_eq!(interval(1.2, 0.0, 1.96, Scale::Probability), None);
        assert_eq!(interval(3.0, f64::NAN, 1.96, Scale::Positive), None);
        assert_eq!(interval(0.0, 1.0, 1.96, Scale::Positive), Some((0.0, 0.0)));
    }
}
