//! Maximum likelihood on log-parameters (so every parameter stays positive): Newton steps where
//! the model writes out its Hessian, BFGS on exact gradients otherwise; then standard errors
//! from the Hessian of the log-likelihood.

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
/// How far, in log space, a parameter may move from its start: a factor 10⁶ either way. The
/// starts are scaled to the data, so a real estimate is far inside; a parameter that reaches
/// the edge is running off to a limit of the model (a gamma or beta mixing distribution
/// collapsing to a point, a rate going to zero), where the likelihood is flat and each
/// evaluation of the series slows down. The fit stops there and says so ([`Fit::at_boundary`]).
const LOG_RANGE: f64 = 13.815_510_557_964_274;
/// How close to the edge, in log space, a parameter counts as at it: 1 %.
const EDGE_TOLERANCE: f64 = 0.01;

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
    /// The value, gradient and Hessian in the natural parameters, for a model that writes its
    /// second derivatives out: the optimizer then takes Newton steps (a handful where BFGS
    /// needs twenty) and reads the standard errors off the last Hessian. `None` by default.
    fn value_gradient_hessian(&self, _params: &[f64; N]) -> Option<SecondOrder<N>> {
        None
    }
}

/// A log-likelihood with its first and second derivatives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SecondOrder<const N: usize> {
    pub value: f64,
    pub gradient: [f64; N],
    pub hessian: [[f64; N]; N],
}

impl<const N: usize> SecondOrder<N> {
    pub fn zero() -> Self {
        SecondOrder {
            value: 0.0,
            gradient: [0.0; N],
            hessian: [[0.0; N]; N],
        }
    }

    pub fn add(&mut self, other: &SecondOrder<N>) {
        self.value += other.value;
        for i in 0..N {
            self.gradient[i] += other.gradient[i];
            for j in 0..N {
                self.hessian[i][j] += other.hessian[i][j];
            }
        }
    }

    /// Copies the upper triangle onto the lower, for sums that fill only i ≤ j.
    pub fn symmetrize_upper(&mut self) {
        for i in 0..N {
            for j in 0..i {
                self.hessian[i][j] = self.hessian[j][i];
            }
        }
    }
}

/// The outcome of a fit. `converged` false means the optimizer stopped for `status`; the
/// estimates are then not a maximum and must not be reported as one.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit<const N: usize> {
    pub params: [f64; N],
    /// Standard errors from the inverse Hessian; `None` when the Hessian is not negative definite.
    pub standard_errors: Option<[f64; N]>,
    /// The estimate's covariance in the natural parameters, (−H)⁻¹: what the delta method
    /// propagates to predictions. `None` exactly when `standard_errors` is.
    pub covariance: Option<[[f64; N]; N]>,
    pub log_likelihood: f64,
    pub iterations: usize,
    /// Evaluations of the likelihood and its gradient by the optimizer (iterations plus line
    /// search steps), the unit of a fit's cost.
    pub evaluations: usize,
    pub converged: bool,
    pub status: String,
    /// Which parameters ended at the edge of the searched range (a factor 10⁶ from the start):
    /// the data cannot pin them down, and they are reported as found there, not estimated.
    pub at_boundary: [bool; N],
}

impl<const N: usize> Fit<N> {
    /// Whether any parameter ended at the edge of the searched range.
    pub fn reached_boundary(&self) -> bool {
        self.at_boundary.iter().any(|&b| b)
    }
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

/// The objective at one point: the mean negative log-likelihood and its gradient with respect
/// to the log-parameters φ (θ = e^φ), and the Hessians where the model gives them.
struct Point<const N: usize> {
    f: f64,
    g: [f64; N],
    /// ∇²f in φ, for Newton steps.
    hessian: Option<[[f64; N]; N]>,
    /// ∇² ln L in θ, for the standard errors.
    natural_hessian: Option<[[f64; N]; N]>,
}

impl<const N: usize> Point<N> {
    fn is_finite(&self) -> bool {
        self.f.is_finite() && self.g.iter().all(|x| x.is_finite())
    }
}

fn objective<const N: usize>(
    model: &impl LogLikelihood<N>,
    phi: &[f64; N],
    scale: f64,
) -> Point<N> {
    let theta = phi.map(f64::exp);
    let (value, gradient, natural_hessian) = match model.value_gradient_hessian(&theta) {
        Some(all) => (all.value, all.gradient, Some(all.hessian)),
        None => {
            let (value, gradient) = model.value_and_gradient(&theta);
            (value, gradient, None)
        }
    };
    // dθ/dφ = θ, so ∂f/∂φᵢ = θᵢ ∂f/∂θᵢ and ∂²f/∂φᵢ∂φⱼ = θᵢθⱼ ∂²f/∂θᵢ∂θⱼ + δᵢⱼ θᵢ ∂f/∂θᵢ.
    let hessian = natural_hessian.map(|h| {
        std::array::from_fn(|i| {
            std::array::from_fn(|j| {
                let diagonal = if i == j { theta[i] * gradient[i] } else { 0.0 };
                -(theta[i] * theta[j] * h[i][j] + diagonal) / scale
            })
        })
    });
    Point {
        f: -value / scale,
        g: std::array::from_fn(|i| -gradient[i] * theta[i] / scale),
        hessian,
        natural_hessian,
    }
}

/// The Newton direction −H⁻¹g, with H damped toward the identity (H + μI, μ growing) until it
/// is positive definite and the step descends: far from the maximum the likelihood need not
/// be concave.
fn newton_direction<const N: usize>(hessian: &[[f64; N]; N], g: &[f64; N]) -> Option<[f64; N]> {
    let scale = (0..N)
        .fold(0.0f64, |m, i| m.max(hessian[i][i].abs()))
        .max(1e-12);
    let mut damping = 0.0;
    for _ in 0..40 {
        let mut damped = *hessian;
        (0..N).for_each(|i| damped[i][i] += damping);
        if let Some(direction) = solve_positive_definite(damped, g.map(|x| -x))
            && dot(&direction, g) < 0.0
        {
            return Some(direction);
        }
        damping = if damping == 0.0 {
            1e-8 * scale
        } else {
            damping * 10.0
        };
    }
    None
}

/// Solves A x = b for a symmetric positive definite A by Cholesky; `None` when A is not.
fn solve_positive_definite<const N: usize>(a: [[f64; N]; N], b: [f64; N]) -> Option<[f64; N]> {
    let mut l = [[0.0; N]; N];
    for i in 0..N {
        for j in 0..=i {
            let sum: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let d = a[i][i] - sum;
                if d.is_nan() || d <= 0.0 || d.is_infinite() {
                    return None;
                }
                l[i][i] = d.sqrt();
            } else {
                l[i][j] = (a[i][j] - sum) / l[j][j];
            }
        }
    }
    let mut y = [0.0; N];
    for i in 0..N {
        y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
    }
    let mut x = [0.0; N];
    for i in (0..N).rev() {
        x[i] = (y[i] - (i + 1..N).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    Some(x)
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
    let lower = phi.map(|p| p - LOG_RANGE);
    let upper = phi.map(|p| p + LOG_RANGE);
    // A coordinate at an edge whose gradient pushes it further out is held there: it takes no
    // part in the step or in the test for convergence (a projected gradient).
    let held = |phi: &[f64; N], g: &[f64; N]| -> [bool; N] {
        std::array::from_fn(|i| {
            (phi[i] >= upper[i] && g[i] < 0.0) || (phi[i] <= lower[i] && g[i] > 0.0)
        })
    };
    let mut evaluations = 1;
    let mut point = objective(model, &phi, scale);
    if !point.is_finite() {
        return Err(FitError::NotFiniteAtStart);
    }
    // BFGS' inverse Hessian approximation, starting from the identity: the direction where
    // there is no Hessian, or where a damped Newton step does not descend.
    let identity = || {
        let mut h = [[0.0; N]; N];
        (0..N).for_each(|i| h[i][i] = 1.0);
        h
    };
    let mut inverse = identity();
    let mut status = format!("stopped after {MAX_ITERATIONS} iterations without converging");
    let mut converged = false;
    let mut iterations = 0;
    let mut stalled = 0;
    for iteration in 1..=MAX_ITERATIONS {
        iterations = iteration;
        if cancelled() {
            return Err(FitError::Cancelled);
        }
        let fixed = held(&phi, &point.g);
        let g: [f64; N] = std::array::from_fn(|i| if fixed[i] { 0.0 } else { point.g[i] });
        if g.iter().all(|x| x.abs() < GRADIENT_TOLERANCE) {
            converged = true;
            status = "converged: gradient below tolerance".to_owned();
            iterations = iteration - 1;
            break;
        }
        let newton = point.hessian.as_ref().and_then(|h| newton_direction(h, &g));
        let mut direction =
            newton.unwrap_or_else(|| std::array::from_fn(|i| -dot(&inverse[i], &g)));
        (0..N)
            .filter(|&i| fixed[i])
            .for_each(|i| direction[i] = 0.0);
        if dot(&direction, &g) >= 0.0 {
            // Not a descent direction: restart from steepest descent.
            inverse = identity();
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
            // A decrease smaller than the objective's rounding cannot be seen: halving further
            // only spends evaluations (near the maximum, where the gradient is at its noise floor).
            if (step * slope).abs() < 1e-15 * point.f.abs() {
                break;
            }
            let candidate: [f64; N] =
                std::array::from_fn(|i| (phi[i] + step * direction[i]).clamp(lower[i], upper[i]));
            evaluations += 1;
            let next = objective(model, &candidate, scale);
            // The decrease expected of the step actually taken, which an edge may have shortened.
            let moved: [f64; N] = std::array::from_fn(|i| candidate[i] - phi[i]);
            if next.is_finite() && next.f <= point.f + 1e-4 * dot(&moved, &g) {
                accepted = Some((candidate, next));
                break;
            }
            step *= 0.5;
        }
        let Some((next_phi, next)) = accepted else {
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
        let s: [f64; N] = std::array::from_fn(|i| next_phi[i] - phi[i]);
        let y: [f64; N] = std::array::from_fn(|i| next.g[i] - point.g[i]);
        let sy = dot(&s, &y);
        if sy > 1e-12 {
            // BFGS update of the inverse Hessian.
            let hy: [f64; N] = std::array::from_fn(|i| dot(&inverse[i], &y));
            let yhy = dot(&y, &hy);
            for i in 0..N {
                for j in 0..N {
                    inverse[i][j] +=
                        (sy + yhy) * s[i] * s[j] / (sy * sy) - (hy[i] * s[j] + s[i] * hy[j]) / sy;
                }
            }
        }
        stalled = if point.f - next.f <= 1e-15 * point.f.abs() {
            stalled + 1
        } else {
            0
        };
        phi = next_phi;
        point = next;
        if stalled >= STALL_ITERATIONS {
            let fixed = held(&phi, &point.g);
            let largest = (0..N)
                .filter(|&i| !fixed[i])
                .fold(0.0f64, |m, i| m.max(point.g[i].abs()));
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
    // Within 1 % of an edge counts as at it: a flat likelihood lets the optimizer stop just
    // short of where it was heading.
    let at_boundary = std::array::from_fn(|i| {
        phi[i] <= lower[i] + EDGE_TOLERANCE || phi[i] >= upper[i] - EDGE_TOLERANCE
    });
    let covariance = match point.natural_hessian {
        Some(hessian) => covariance_from_hessian(hessian),
        None => covariance(model, &params),
    };
    Ok(Fit {
        standard_errors: covariance.map(|c| std::array::from_fn(|i| c[i][i].sqrt())),
        covariance,
        params,
        log_likelihood: -point.f * scale,
        iterations,
        evaluations,
        converged,
        status,
        at_boundary,
    })
}

/// Gradient of the log-likelihood with respect to the natural parameters.
fn gradient<const N: usize>(model: &impl LogLikelihood<N>, params: &[f64; N]) -> [f64; N] {
    model.value_and_gradient(params).1
}

/// (−H)⁻¹, with H the Hessian of the log-likelihood in the natural parameters, by central
/// differences of the exact gradient.
fn covariance<const N: usize>(
    model: &impl LogLikelihood<N>,
    params: &[f64; N],
) -> Option<[[f64; N]; N]> {
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
    covariance_from_hessian(hessian)
}

/// (−H)⁻¹ for the Hessian H of the log-likelihood in the natural parameters, symmetrized;
/// `None` unless −H is positive definite (every variance positive and finite).
fn covariance_from_hessian<const N: usize>(hessian: [[f64; N]; N]) -> Option<[[f64; N]; N]> {
    // Symmetrize, negate: the observed information matrix.
    let mut information = [[0.0; N]; N];
    for i in 0..N {
        for j in 0..N {
            information[i][j] = -(hessian[i][j] + hessian[j][i]) / 2.0;
        }
    }
    let inverse = invert(information)?;
    if (0..N).any(|i| !inverse[i][i].is_finite() || inverse[i][i] <= 0.0) {
        return None;
    }
    Some(std::array::from_fn(|i| {
        std::array::from_fn(|j| (inverse[i][j] + inverse[j][i]) / 2.0)
    }))
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

/// The outcome of [`maximize`]: a fit whose number of parameters is known only at run time
/// (covariate models), in the free parameters the objective was given.
#[derive(Debug, Clone, PartialEq)]
pub struct FreeFit {
    pub params: Vec<f64>,
    /// (−H)⁻¹ of the log-likelihood in the free parameters, by central differences of the
    /// exact gradient; `None` when −H is not positive definite (no maximum there).
    pub covariance: Option<Vec<Vec<f64>>>,
    pub log_likelihood: f64,
    /// The largest gradient component of the mean log-likelihood at the end: the first-order
    /// check, reported so a reader can see it.
    pub largest_gradient: f64,
    pub iterations: usize,
    pub evaluations: usize,
    /// The gradient is below tolerance and the Hessian negative definite: both the first- and
    /// the second-order conditions of a maximum hold.
    pub converged: bool,
    pub status: String,
    pub at_boundary: Vec<bool>,
}

/// A log-likelihood at one point of a [`maximize`] run: its value, gradient and, where the
/// model writes its second derivatives out, its Hessian.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    pub value: f64,
    pub gradient: Vec<f64>,
    pub hessian: Option<Vec<Vec<f64>>>,
}

/// Maximizes `log_likelihood(θ)` (`None` where it cannot be evaluated) over free parameters θ
/// within `[lower, upper]`, as [`fit`] does for a fixed number of parameters: damped Newton
/// steps where it gives its Hessian, BFGS otherwise, with a backtracking line search; then
/// checks the second-order condition with the Hessian (by central differences of the gradient
/// where there is none). `observations` scales the objective to a mean, so the tolerances
/// mean the same for 600 customers as for a million.
pub fn maximize(
    log_likelihood: impl Fn(&[f64]) -> Option<Evaluated>,
    start: Vec<f64>,
    bounds: (Vec<f64>, Vec<f64>),
    observations: f64,
    cancel: &AtomicBool,
) -> Result<FreeFit, FitError> {
    let n = start.len();
    let (lower, upper) = bounds;
    if observations.is_nan() || observations <= 0.0 {
        return Err(FitError::NoObservations);
    }
    let cancelled = || cancel.load(Ordering::Relaxed);
    // The mean negative log-likelihood, its gradient and Hessian.
    type Point = (f64, Vec<f64>, Option<Vec<Vec<f64>>>);
    let objective = |theta: &[f64]| -> Option<Point> {
        let Evaluated {
            value,
            gradient,
            hessian,
        } = log_likelihood(theta)?;
        let g: Vec<f64> = gradient.iter().map(|g| -g / observations).collect();
        let h = hessian.map(|h| {
            h.iter()
                .map(|row| row.iter().map(|v| -v / observations).collect())
                .collect()
        });
        (value.is_finite() && g.iter().all(|x| x.is_finite())).then_some((
            -value / observations,
            g,
            h,
        ))
    };
    let dotv = |a: &[f64], b: &[f64]| -> f64 { a.iter().zip(b).map(|(x, y)| x * y).sum() };
    let held = |theta: &[f64], g: &[f64]| -> Vec<bool> {
        (0..n)
            .map(|i| (theta[i] >= upper[i] && g[i] < 0.0) || (theta[i] <= lower[i] && g[i] > 0.0))
            .collect()
    };
    let mut theta = start;
    let mut evaluations = 1;
    let (mut f, mut g, mut h) = objective(&theta).ok_or(FitError::NotFiniteAtStart)?;
    let identity = || {
        (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| f64::from(u8::from(i == j)))
                    .collect::<Vec<f64>>()
            })
            .collect::<Vec<_>>()
    };
    let mut inverse = identity();
    let mut status = format!("stopped after {MAX_ITERATIONS} iterations without converging");
    let mut first_order = false;
    let mut iterations = 0;
    let mut stalled = 0;
    for iteration in 1..=MAX_ITERATIONS {
        iterations = iteration;
        if cancelled() {
            return Err(FitError::Cancelled);
        }
        let fixed = held(&theta, &g);
        let free_g: Vec<f64> = (0..n).map(|i| if fixed[i] { 0.0 } else { g[i] }).collect();
        if free_g.iter().all(|x| x.abs() < GRADIENT_TOLERANCE) {
            first_order = true;
            status = "gradient below tolerance".to_owned();
            iterations = iteration - 1;
            break;
        }
        let newton = h
            .as_ref()
            .and_then(|h| newton_direction_free(h, &free_g, &fixed));
        let mut direction: Vec<f64> = newton.unwrap_or_else(|| {
            (0..n)
                .map(|i| {
                    if fixed[i] {
                        0.0
                    } else {
                        -dotv(&inverse[i], &free_g)
                    }
                })
                .collect()
        });
        if dotv(&direction, &free_g) >= 0.0 {
            inverse = identity();
            direction = free_g.iter().map(|x| -x).collect();
        }
        let longest = direction.iter().fold(0.0f64, |m, d| m.max(d.abs()));
        let mut step = if longest > 5.0 { 5.0 / longest } else { 1.0 };
        let slope = dotv(&direction, &free_g);
        let mut accepted = None;
        for _ in 0..60 {
            if cancelled() {
                return Err(FitError::Cancelled);
            }
            if (step * slope).abs() < 1e-15 * f.abs() {
                break;
            }
            let candidate: Vec<f64> = (0..n)
                .map(|i| (theta[i] + step * direction[i]).clamp(lower[i], upper[i]))
                .collect();
            evaluations += 1;
            if let Some((next_f, next_g, next_h)) = objective(&candidate) {
                let moved: Vec<f64> = (0..n).map(|i| candidate[i] - theta[i]).collect();
                if next_f <= f + 1e-4 * dotv(&moved, &free_g) {
                    accepted = Some((candidate, next_f, next_g, next_h));
                    break;
                }
            }
            step *= 0.5;
        }
        let Some((next_theta, next_f, next_g, next_h)) = accepted else {
            first_order = free_g.iter().all(|x| x.abs() < STALL_GRADIENT_TOLERANCE);
            status = if first_order {
                "no further decrease possible (gradient small)".to_owned()
            } else {
                "the line search failed: the likelihood surface may be flat or the model a poor fit"
                    .to_owned()
            };
            break;
        };
        let s: Vec<f64> = (0..n).map(|i| next_theta[i] - theta[i]).collect();
        let y: Vec<f64> = (0..n).map(|i| next_g[i] - g[i]).collect();
        let sy = dotv(&s, &y);
        if sy > 1e-12 {
            let hy: Vec<f64> = (0..n).map(|i| dotv(&inverse[i], &y)).collect();
            let yhy = dotv(&y, &hy);
            for i in 0..n {
                for j in 0..n {
                    inverse[i][j] +=
                        (sy + yhy) * s[i] * s[j] / (sy * sy) - (hy[i] * s[j] + s[i] * hy[j]) / sy;
                }
            }
        }
        stalled = if f - next_f <= 1e-15 * f.abs() {
            stalled + 1
        } else {
            0
        };
        theta = next_theta;
        f = next_f;
        g = next_g;
        h = next_h;
        if stalled >= STALL_ITERATIONS {
            let fixed = held(&theta, &g);
            let largest = (0..n)
                .filter(|&i| !fixed[i])
                .fold(0.0f64, |m, i| m.max(g[i].abs()));
            first_order = largest < STALL_GRADIENT_TOLERANCE;
            status = if first_order {
                "the likelihood stopped improving at machine precision".to_owned()
            } else {
                format!(
                    "stalled: the likelihood stopped improving with the gradient still at {largest:.2e}"
                )
            };
            break;
        }
    }
    let fixed = held(&theta, &g);
    let largest_gradient = (0..n)
        .filter(|&i| !fixed[i])
        .fold(0.0f64, |m, i| m.max(g[i].abs()));
    // The second-order check: −H of the log-likelihood by central differences of its exact
    // gradient, which must be positive definite at a maximum.
    let mut information = vec![vec![0.0; n]; n];
    let mut hessian_ok = true;
    if let Some(h) = &h {
        for i in 0..n {
            for j in 0..n {
                information[i][j] = h[i][j] * observations;
            }
        }
    } else {
        for j in 0..n {
            if cancelled() {
                return Err(FitError::Cancelled);
            }
            let step = 1e-5 * theta[j].abs().max(1.0);
            let mut up = theta.clone();
            let mut down = theta.clone();
            up[j] += step;
            down[j] -= step;
            evaluations += 2;
            match (objective(&up), objective(&down)) {
                (Some((_, gu, _)), Some((_, gd, _))) => {
                    for i in 0..n {
                        information[i][j] = (gu[i] - gd[i]) / (2.0 * step) * observations;
                    }
                }
                _ => hessian_ok = false,
            }
        }
    }
    // A maximum at the edge of the range in some coordinates (the likelihood still rising, or
    // flat, outward) needs the Hessian negative definite in the others only: the edge ones'
    // curvature is that of a slope, near zero. Their rows and columns of the covariance are
    // then zero (they are not estimates; `at_boundary` says so).
    let at_boundary: Vec<bool> = (0..n)
        .map(|i| theta[i] <= lower[i] + EDGE_TOLERANCE || theta[i] >= upper[i] - EDGE_TOLERANCE)
        .collect();
    let covariance = if !hessian_ok {
        None
    } else {
        invert_symmetric(&information).or_else(|| {
            let free: Vec<usize> = (0..n).filter(|&i| !at_boundary[i]).collect();
            if free.len() == n {
                return None;
            }
            let block: Vec<Vec<f64>> = free
                .iter()
                .map(|&i| free.iter().map(|&j| information[i][j]).collect())
                .collect();
            let inverse = invert_symmetric(&block)?;
            let mut covariance = vec![vec![0.0; n]; n];
            for (a, &i) in free.iter().enumerate() {
                for (b, &j) in free.iter().enumerate() {
                    covariance[i][j] = inverse[a][b];
                }
            }
            Some(covariance)
        })
    };
    let converged = first_order && covariance.is_some();
    let status = match (first_order, covariance.is_some()) {
        (true, true) => format!("converged: {status}, Hessian negative definite"),
        (true, false) => {
            format!("not a maximum: {status}, but the Hessian is not negative definite")
        }
        _ => status,
    };
    Ok(FreeFit {
        params: theta,
        covariance,
        log_likelihood: -f * observations,
        largest_gradient,
        iterations,
        evaluations,
        converged,
        status,
        at_boundary,
    })
}

/// The Newton direction −H⁻¹g over the coordinates not `fixed`, with H damped toward the
/// identity until it is positive definite and the step descends (as [`newton_direction`]).
fn newton_direction_free(hessian: &[Vec<f64>], g: &[f64], fixed: &[bool]) -> Option<Vec<f64>> {
    let free: Vec<usize> = (0..g.len()).filter(|&i| !fixed[i]).collect();
    let scale = free
        .iter()
        .fold(0.0f64, |m, &i| m.max(hessian[i][i].abs()))
        .max(1e-12);
    let mut damping = 0.0;
    for _ in 0..40 {
        let a: Vec<Vec<f64>> = free
            .iter()
            .map(|&i| {
                free.iter()
                    .map(|&j| hessian[i][j] + if i == j { damping } else { 0.0 })
                    .collect()
            })
            .collect();
        if let Some(inverse) = invert_symmetric(&a) {
            let mut direction = vec![0.0; g.len()];
            for (row, &i) in free.iter().enumerate() {
                direction[i] = -free
                    .iter()
                    .enumerate()
                    .map(|(col, &j)| inverse[row][col] * g[j])
                    .sum::<f64>();
            }
            if direction.iter().zip(g).map(|(d, g)| d * g).sum::<f64>() < 0.0 {
                return Some(direction);
            }
        }
        damping = if damping == 0.0 {
            1e-8 * scale
        } else {
            damping * 10.0
        };
    }
    None
}

/// The inverse of a symmetric positive definite matrix (symmetrized first) by Cholesky; `None`
/// unless it is positive definite with a finite, positive diagonal in the inverse.
pub fn invert_symmetric(a: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = a.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let sum: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            let aij = (a[i][j] + a[j][i]) / 2.0;
            if i == j {
                let d = aij - sum;
                if !(d > 0.0 && d.is_finite()) {
                    return None;
                }
                l[i][i] = d.sqrt();
            } else {
                l[i][j] = (aij - sum) / l[j][j];
            }
        }
    }
    // Columns of the inverse: solve L Lᵀ x = eₖ.
    let mut inverse = vec![vec![0.0; n]; n];
    for k in 0..n {
        let mut y = vec![0.0; n];
        for i in 0..n {
            let b = f64::from(u8::from(i == k));
            y[i] = (b - (0..i).map(|m| l[i][m] * y[m]).sum::<f64>()) / l[i][i];
        }
        let mut x = vec![0.0; n];
        for i in (0..n).rev() {
            x[i] = (y[i] - (i + 1..n).map(|m| l[m][i] * x[m]).sum::<f64>()) / l[i][i];
        }
        for (row, value) in inverse.iter_mut().zip(x) {
            row[k] = value;
        }
    }
    (0..n)
        .all(|i| inverse[i][i].is_finite() && inverse[i][i] > 0.0)
        .then_some(inverse)
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

    /// Draws that are all equal: the gamma's MLE is at k → ∞ (no spread), with λ = k / 2.
    /// The fit must stop at the edge of its range, say so, and keep the mean right.
    #[test]
    fn a_maximum_at_infinity_stops_at_the_edge() {
        let model = Gamma {
            n: 100.0,
            sum: 200.0,
            sum_ln: 100.0 * 2f64.ln(),
        };
        let fit = fit(&model, [1.0, 1.0], &AtomicBool::new(false)).unwrap();
        assert!(fit.at_boundary[0], "{fit:?}");
        assert!(fit.reached_boundary());
        assert!((fit.params[0] - 1e6).abs() < 1e-3, "{fit:?}");
        assert!(
            (fit.params[0] / fit.params[1] - 2.0).abs() < 1e-3,
            "{fit:?}"
        );
        assert!(fit.iterations < 100, "{fit:?}");
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
