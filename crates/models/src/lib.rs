//! Customer-base models from Fader & Hardie's papers, fitted by maximum likelihood.
//!
//! Each model's log-likelihood is written once, generic over [`ad::Real`]: evaluated in `f64`
//! it gives values, in [`ad::Dual`] its exact gradient (forward-mode automatic
//! differentiation, no finite differences). Where fit time matters (BG/NBD and Pareto/NBD on
//! millions of distinct histories) a model also writes out its gradient (BG/NBD also its
//! Hessian) over SIMD lanes ([`vmath`]), tested against the dual numbers. [`optimize::fit`] maximizes on
//! log-parameters, so every parameter stays positive: Newton steps where the model gives its
//! Hessian, BFGS otherwise. It reports standard errors, the log-likelihood, iterations,
//! evaluations and whether it converged. Metric plugins use this crate; it depends on nothing
//! of Mittari's.

pub mod ad;
pub mod bgbb;
pub mod bgnbd;
pub mod covariates;
pub mod discount;
pub mod dynamic;
pub mod gamma_gamma;
pub mod goodness;
mod hash;
pub mod hyp2f1;
pub mod identification;
pub mod means;
pub mod optimize;
pub mod pareto_nbd;
pub mod purchase;
pub mod rfm;
pub mod sbg;
pub mod special;
#[doc(hidden)]
pub mod testing;
pub mod uncertainty;
pub mod vmath;

pub use discount::Discounting;
pub use identification::Support;
pub use optimize::{Fit, FitError, LogLikelihood, fit};
pub use purchase::{Histories, PurchaseModel};
