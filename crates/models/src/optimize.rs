//! Maximum likelihood: BFGS on log-parameters (so every parameter stays positive) with exact
//! gradients, then standard errors from the Hessian of the log-likelihood.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::ad::{Dual, Real};

/// Stop when every gradient component of the mean negative log-likelihood (with respect to
/// the log-parameters) is below this.
const GRADIENT_TOLERANCE: f64 = 1e-8;
/// A gradient this small counts as converged when rounding stops the objective from
/// decreasing (its floor is about 1e-9 for sums over thousands of customers).
const STALL_GRADIENT_TOLERANCE: f64 = 1e-5;
/// Iterations without a relative decrease above 1e-15 that count as a stall.
const STALL_ITERATIONS: usize = 3;
const MAX_ITERATIONS: usize = 1000;

/// A model's log-likelihood, generic over the number type so one implementation gives values
/// and exact gradients.
pub trait LogLikelihood<const N: usize> {
    /// Σ weightᵢ · ln Lᵢ(params) over the data; params on their natural (positive) scale.
    fn log_likelihood<R: Real>(&self, params: &[R; N]) -> R;
    /// Σ weightᵢ: the number of observations, to scale the objective.
    fn observations(&self) -> f64;
    /// The log-likelihood and its gradient in the natural parameters: by default by dual
    /// numbers through [`Self::log_likelihood`]. A model whose fit time matters writes its
    /// hot loop's derivatives out instead, and tests them against this default.
    fn value_and_gradient(&self, params: &[f64; N]) -> (f64, [f64; N]) {
        let duals: [Dual<N>; N] = std::array::from_fn(|i| Dual::variable(params[i], i));
        let ll = self.log_likelihood(&duals);
        (ll.value, ll.gradient)
    }
}

/// The outcome of a fit. `converged` false means the optimizer stopped for `status`; the
/// estimates are then not a maximum and must not be reported as one.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit<const N: usize> {
    pub params: [f64; N],
    /// Standard errors from the inverse Hessian; `None` when the Hessian is not negative definite.
    pub standard_errors: Option<[f64; N]>,
    pub log_likelihood: f64,
    pub iterations: usize,
    /// Evaluations of the likelihood and its gradient by the optimizer (iterations plus line
    /// search steps), the unit of a fit's cost.
    pub evaluations: usize,
    pub converged: bool,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error(
        "the log-likelihood is not finite at the starting values; the data may not fit this model"
    )]
    NotFiniteAtStart,
    #[error("the model has no observations to fit")]
    NoObservations,
    /// The caller set the cancellation flag; checked before every evaluation of the likelihood.
    #[error("the fit was cancelled")]
    Cancelled,
}

/// Mean negative log-likelihood and its gradient with respect to the log-parameters φ (θ = e^φ).
fn objective<const N: usize>(
    model: &impl LogLikelihood<N>,
    phi: &[f64; N],
    scale: f64,
) -> (f64, [f64; N]) {
    let theta = phi.map(f64::exp);
    let (value, gradient) = model.value_and_gradient(&theta);
    // dθ/dφ = θ.
    (
        -value / scale,
        std::array::from_fn(|i| -gradient[i] * theta[i] / scale),
    )
}

fn dot<const N: usize>(a: &[f64; N], b: &[f64; N]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Maximizes the log-likelihood from `start` (natural scale, all positive). Gives up with
/// [`FitError::Cancelled`] soon after `cancel` is set: it is read before every evaluation of
/// the likelihood, the unit of work of a fit.
pub fn fit<const N: usize>(
    model: &impl LogLikelihood<N>,
    start: [f64; N],
    cancel: &AtomicBool,
) -> Result<Fit<N>, FitError> {
    let cancelled = || cancel.load(Ordering::Relaxed);
    let scale = model.observations();
    if scale.is_nan() || scale <= 0.0 {
        return Err(FitError::NoObservations);
    }
    let mut phi = start.map(f64::ln);
    let mut evaluations = 1;
    let (mut f, mut g) = objective(model, &phi, scale);
    if !f.is_finite() || g.iter().any(|x| !x.is_finite()) {
        return Err(FitError::NotFiniteAtStart);
    }
    // Inverse Hessian approximation, starting from the identity.
    let mut h = [[0.0; N]; N];
    (0..N).for_each(|i| h[i][i] = 1.0);
    let mut status = format!("stopped after {MAX_ITERATIONS} iterations without converging");
    let mut converged = false;
    let mut iterations = 0;
    let mut stalled = 0;
    for iteration in 1..=MAX_ITERATIONS {
        iterations = iteration;
        if cancelled() {
            return Err(FitError::Cancelled);
        }
        if g.iter().all(|x| x.abs() < GRADIENT_TOLERANCE) {
            converged = true;
            status = "converged: gradient below tolerance".to_owned();
            iterations = iteration - 1;
            break;
        }
        let mut direction: [f64; N] = std::array::from_fn(|i| -dot(&h[i], &g));
        if dot(&direction, &g) >= 0.0 {
            // Not a descent direction: restart from steepest descent.
            h = [[0.0; N]; N];
            (0..N).for_each(|i| h[i][i] = 1.0);
            direction = g.map(|x| -x);
        }
        // Backtracking line search (Armijo), capping the step in log space at 5 (a factor e^5).
        let longest = direction.iter().fold(0.0f64, |m, d| m.max(d.abs()));
        let mut step = if longest > 5.0 { 5.0 / longest } else { 1.0 };
        let slope = dot(&direction, &g);
        let mut accepted = None;
        for _ in 0..60 {
            if cancelled() {
                return Err(FitError::Cancelled);
            }
            let candidate: [f64; N] = std::array::from_fn(|i| phi[i] + step * direction[i]);
            evaluations += 1;
            let (fc, gc) = objective(model, &candidate, scale);
            if fc.is_finite() && gc.iter().all(|x| x.is_finite()) && fc <= f + 1e-4 * step * slope {
                accepted = Some((candidate, fc, gc));
                break;
            }
            step *= 0.5;
        }
        let Some((next, fn_, gn)) = accepted else {
            // No decrease possible along a descent direction: at a minimum to machine precision
            // when the gradient is small, otherwise stuck.
            if g.iter().all(|x| x.abs() < STALL_GRADIENT_TOLERANCE) {
                converged = true;
                status = "converged: no further decrease possible (gradient small)".to_owned();
            } else {
                status = "the line search failed: the likelihood surface may be flat or the model a poor fit".to_owned();
            }
            break;
        };
        let s: [f64; N] = std::array::from_fn(|i| next[i] - phi[i]);
        let y: [f64; N] = std::array::from_fn(|i| gn[i] - g[i]);
        let sy = dot(&s, &y);
        if sy > 1e-12 {
            // BFGS update of the inverse Hessian.
            let hy: [f64; N] = std::array::from_fn(|i| dot(&h[i], &y));
            let yhy = dot(&y, &hy);
            for i in 0..N {
                for j in 0..N {
                    h[i][j] +=
                        (sy + yhy) * s[i] * s[j] / (sy * sy) - (hy[i] * s[j] + s[i] * hy[j]) / sy;
                }
            }
        }
        stalled = if f - fn_ <= 1e-15 * f.abs() {
            stalled + 1
        } else {
            0
        };
        phi = next;
        f = fn_;
        g = gn;
        if stalled >= STALL_ITERATIONS {
            let largest = g.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            converged = largest < STALL_GRADIENT_TOLERANCE;
            status = if converged {
                "converged: the likelihood stopped improving at machine precision".to_owned()
            } else {
                format!(
                    "stalled: the likelihood stopped improving with the gradient still at {largest:.2e}"
                )
            };
            break;
        }
    }
    let params = phi.map(f64::exp);
    Ok(Fit {
        standard_errors: standard_errors(model, &params),
        params,
        log_likelihood: -f * scale,
        iterations,
        evaluations,
        converged,
        status,
    })
}

/// Gradient of the log-likelihood with respect to the natural parameters.
fn gradient<const N: usize>(model: &impl LogLikelihood<N>, params: &[f64; N]) -> [f64; N] {
    model.value_and_gradient(params).1
}

/// √diag((−H)⁻¹), with H the Hessian of the log-likelihood in the natural parameters, by
/// central differences of the exact gradient.
fn standard_errors<const N: usize>(
    model: &impl LogLikelihood<N>,
    params: &[f64; N],
) -> Option<[f64; N]> {
    let mut hessian = [[0.0; N]; N];
    for j in 0..N {
        let h = 1e-5 * params[j].abs().max(1e-8);
        let mut up = *params;
        let mut down = *params;
        up[j] += h;
        down[j] -= h;
        let (gu, gd) = (gradient(model, &up), gradient(model, &down));
        for i in 0..N {
            hessian[i][j] = (gu[i] - gd[i]) / (2.0 * h);
        }
    }
    // Symmetrize, negate: the observed information matrix.
    let mut information = [[0.0; N]; N];
    for i in 0..N {
        for j in 0..N {
            information[i][j] = -(hessian[i][j] + hessian[j][i]) / 2.0;
        }
    }
    let covariance = invert(information)?;
    let mut errors = [0.0; N];
    for i in 0..N {
        if !covariance[i][i].is_finite() || covariance[i][i] <= 0.0 {
            return None;
        }
        errors[i] = covariance[i][i].sqrt();
    }
    Some(errors)
}

/// Gauss-Jordan inversion with partial pivoting; `None` when singular.
fn invert<const N: usize>(mut a: [[f64; N]; N]) -> Option<[[f64; N]; N]> {
    let mut inverse = [[0.0; N]; N];
    (0..N).for_each(|i| inverse[i][i] = 1.0);
    for col in 0..N {
        let pivot = (col..N).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[pivot][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, pivot);
        inverse.swap(col, pivot);
        let p = a[col][col];
        for k in 0..N {
            a[col][k] /= p;
            inverse[col][k] /= p;
        }
        for row in 0..N {
            if row != col {
                let factor = a[row][col];
                for k in 0..N {
                    a[row][k] -= factor * a[col][k];
                    inverse[row][k] -= factor * inverse[col][k];
                }
            }
        }
    }
    Some(inverse)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// n draws from a gamma(shape k, rate λ) summarized by Σx and Σ ln x: the MLE satisfies
    /// ln k − ψ(k) = ln(mean) − mean(ln x), λ = k / mean.
    struct Gamma {
        n: f64,
        sum: f64,
        sum_ln: f64,
    }

    impl LogLikelihood<2> for Gamma {
        fn log_likelihood<R: Real>(&self, p: &[R; 2]) -> R {
            let [k, rate] = *p;
            (k * rate.ln() - k.ln_gamma()) * self.n + (k - 1.0) * self.sum_ln - rate * self.sum
        }
        fn observations(&self) -> f64 {
            self.n
        }
    }

    #[test]
    fn recovers_the_closed_form_gamma_mle() {
        // Data with mean 2 and mean log 0.5: solve ln k − ψ(k) = ln 2 − 0.5 by bisection.
        let model = Gamma {
            n: 100.0,
            sum: 200.0,
            sum_ln: 50.0,
        };
        let target = 2f64.ln() - 0.5;
        let (mut lo, mut hi) = (1e-3f64, 1e3f64);
        for _ in 0..200 {
            let mid = (lo * hi).sqrt();
            if mid.ln() - crate::special::digamma(mid) > target {
                lo = mid
            } else {
                hi = mid
            }
        }
        let k = (lo * hi).sqrt();
        let fit = fit(&model, [1.0, 1.0], &AtomicBool::new(false)).unwrap();
        assert!(fit.converged, "{}", fit.status);
        assert!(
            (fit.params[0] - k).abs() < 1e-7 * k,
            "{} vs {k}",
            fit.params[0]
        );
        assert!(
            (fit.params[1] - k / 2.0).abs() < 1e-7 * k,
            "{}",
            fit.params[1]
        );
        // The information for k is n·(ψ′(k) − 1/k) after profiling λ; the SE must be near it.
        let se = fit.standard_errors.unwrap();
        let profiled = (100.0 * (crate::special::trigamma(k) - 1.0 / k))
            .recip()
            .sqrt();
        assert!(
            (se[0] - profiled).abs() < 1e-4 * profiled,
            "{} vs {profiled}",
            se[0]
        );
    }

    #[test]
    fn inverts_small_matrices() {
        let inverse = invert([[4.0, 7.0], [2.0, 6.0]]).unwrap();
        let expect = [[0.6, -0.7], [-0.2, 0.4]];
        for i in 0..2 {
            for j in 0..2 {
                assert!((inverse[i][j] - expect[i][j]).abs() < 1e-12);
            }
        }
        assert_eq!(invert([[1.0, 2.0], [2.0, 4.0]]), None);
    }
}
