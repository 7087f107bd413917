//! Stored models: a purchase model (BG/NBD, MBG/NBD or Pareto/NBD) and its Gamma-Gamma spend
//! model fitted once, then scoring any customers without fitting again.
//!
//! The state is what the computation would otherwise fit ([`predictive::Fits`]): the fits'
//! estimates and covariances, and what was counted of the data they were fitted on (customers,
//! repeat buyers, the frequency–spend correlation), so a stored model is judged identified or
//! not by its own data, never by the few customers it scores. Scoring runs the computation's
//! own code with these fits in place of new ones: the fit's customers scored with the stored
//! model get the fit's predictions bit for bit (floats are stored so that they read back to the
//! same bits).

use mittari_models::Fit;
use mittari_models::covariates::{CovariateFit, CovariateModel};
use mittari_models::optimize::FreeFit;
use mittari_sdk::covariates::ColumnEncoding;
use mittari_sdk::prelude::*;
use serde::{Deserialize, Serialize};

use crate::covariates;
use crate::predictive::{self, Fits, SpendFit};

/// The parameters a stored model fixes: the model and what it was fitted with. The others (a
/// horizon, an interval level, a discount rate…) are the scoring request's.
pub(crate) const MODEL_PARAMETERS: &[&str] = &[
    "model",
    "spend_model",
    "time_unit",
    "covariates",
    "purchase_covariates",
    "attrition_covariates",
    "spend_covariates",
    "dynamic_covariates",
    "covariate_penalty",
    "equal_covariates",
];

/// What the stored state holds, for `describe`.
pub(crate) const DESCRIPTION: &str = "the purchase model's (bgnbd, mbgnbd, pareto_nbd) and the Gamma-Gamma spend model's estimates, standard errors and covariances, with the customers and repeat buyers they were fitted to, and with covariates their coefficients and each covariate's encoding (text levels, the reference first)";

/// A stored CLV model.
#[derive(Debug, Serialize, Deserialize)]
struct ClvState {
    /// bgnbd, mbgnbd or pareto_nbd.
    model: String,
    purchase: StoredFit,
    /// Customers and repeat buyers of the fit's data.
    customers: f64,
    repeat_buyers: f64,
    spend: Option<StoredSpend>,
    /// The covariates' encoding and fits, where the model has covariates (format 2 on).
    #[serde(default)]
    covariates: Option<StoredCovariates>,
}

impl Fitted for ClvState {
    /// 2: covariates. Format 1 states (no covariates) read as they were.
    const FORMAT: u32 = 2;

    fn reads(format: u32) -> bool {
        matches!(format, 1 | 2)
    }
}

/// A model's covariates: how the fit encoded each column (its text levels, the reference
/// first), and the purchase and spend fits with coefficients.
#[derive(Debug, Serialize, Deserialize)]
struct StoredCovariates {
    encoding: Vec<ColumnEncoding>,
    purchase: Option<StoredCovariateFit>,
    spend: Option<StoredCovariateFit>,
}

/// A [`CovariateFit`] as stored.
#[derive(Debug, Serialize, Deserialize)]
struct StoredCovariateFit {
    base: Vec<f64>,
    purchase: Vec<f64>,
    attrition: Vec<f64>,
    log_likelihood: f64,
    standard_errors: Option<Vec<f64>>,
    free_params: Vec<f64>,
    free_covariance: Option<Vec<Vec<f64>>>,
    free_log_likelihood: f64,
    largest_gradient: f64,
    iterations: usize,
    evaluations: usize,
    converged: bool,
    status: String,
    at_boundary: Vec<bool>,
}

impl<const N: usize> From<&CovariateFit<N>> for StoredCovariateFit {
    fn from(fit: &CovariateFit<N>) -> Self {
        StoredCovariateFit {
            base: fit.base.to_vec(),
            purchase: fit.purchase.clone(),
            attrition: fit.attrition.clone(),
            log_likelihood: fit.log_likelihood,
            standard_errors: fit.standard_errors.clone(),
            free_params: fit.fit.params.clone(),
            free_covariance: fit.fit.covariance.clone(),
            free_log_likelihood: fit.fit.log_likelihood,
            largest_gradient: fit.fit.largest_gradient,
            iterations: fit.fit.iterations,
            evaluations: fit.fit.evaluations,
            converged: fit.fit.converged,
            status: fit.fit.status.clone(),
            at_boundary: fit.fit.at_boundary.clone(),
        }
    }
}

impl StoredCovariateFit {
    fn to_fit<const N: usize>(&self, kind: CovariateModel) -> Result<CovariateFit<N>, MetricError> {
        let base: [f64; N] = self.base.as_slice().try_into().map_err(|_| {
            MetricError::IncompatibleState {
                message: format!(
                    "the stored covariate fit has {} base parameters, not the {N} of its model; the model is damaged",
                    self.base.len()
                ),
            }
        })?;
        let free = N + self.purchase.len() + self.attrition.len();
        if self.free_params.len() > free || self.at_boundary.len() != self.free_params.len() {
            return Err(MetricError::IncompatibleState {
                message: "the stored covariate fit's parameters do not match its coefficients; the model is damaged".to_owned(),
            });
        }
        Ok(CovariateFit::from_parts(
            kind,
            base,
            (self.purchase.clone(), self.attrition.clone()),
            self.log_likelihood,
            self.standard_errors.clone(),
            FreeFit {
                params: self.free_params.clone(),
                covariance: self.free_covariance.clone(),
                log_likelihood: self.free_log_likelihood,
                largest_gradient: self.largest_gradient,
                iterations: self.iterations,
                evaluations: self.evaluations,
                converged: self.converged,
                status: self.status.clone(),
                at_boundary: self.at_boundary.clone(),
            },
        ))
    }
}

/// How a purchase model's coefficients scale its parameters.
fn covariate_model(model: &str) -> CovariateModel {
    match model {
        "pareto_nbd" => CovariateModel::ParetoNbd,
        _ => CovariateModel::BgNbd,
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredSpend {
    fit: StoredFit,
    correlation: Option<f64>,
    repeat_buyers: f64,
}

/// A [`Fit`] as stored: its arrays as lists (serde has no arrays of any length).
#[derive(Debug, Serialize, Deserialize)]
struct StoredFit {
    params: Vec<f64>,
    standard_errors: Option<Vec<f64>>,
    covariance: Option<Vec<Vec<f64>>>,
    log_likelihood: f64,
    iterations: usize,
    evaluations: usize,
    converged: bool,
    status: String,
    at_boundary: Vec<bool>,
}

impl<const N: usize> From<&Fit<N>> for StoredFit {
    fn from(fit: &Fit<N>) -> Self {
        StoredFit {
            params: fit.params.to_vec(),
            standard_errors: fit.standard_errors.map(|s| s.to_vec()),
            covariance: fit
                .covariance
                .map(|c| c.iter().map(|row| row.to_vec()).collect()),
            log_likelihood: fit.log_likelihood,
            iterations: fit.iterations,
            evaluations: fit.evaluations,
            converged: fit.converged,
            status: fit.status.clone(),
            at_boundary: fit.at_boundary.to_vec(),
        }
    }
}

impl StoredFit {
    fn to_fit<const N: usize>(&self) -> Result<Fit<N>, MetricError> {
        let malformed = || MetricError::IncompatibleState {
            message: format!(
                "the stored fit has {} parameters, not the {N} of its model; the model is damaged",
                self.params.len()
            ),
        };
        let array = |values: &[f64]| -> Result<[f64; N], MetricError> {
            values.try_into().map_err(|_| malformed())
        };
        Ok(Fit {
            params: array(&self.params)?,
            standard_errors: self.standard_errors.as_deref().map(array).transpose()?,
            covariance: match &self.covariance {
                Some(rows) => {
                    let rows: Vec<[f64; N]> =
                        rows.iter().map(|r| array(r)).collect::<Result<_, _>>()?;
                    Some(rows.try_into().map_err(|_| malformed())?)
                }
                None => None,
            },
            log_likelihood: self.log_likelihood,
            iterations: self.iterations,
            evaluations: self.evaluations,
            converged: self.converged,
            status: self.status.clone(),
            at_boundary: self
                .at_boundary
                .as_slice()
                .try_into()
                .map_err(|_| malformed())?,
        })
    }
}

/// Refuses what a stored model cannot hold, before fitting: the caller learns it now rather
/// than from a model that scores differently from its fit.
fn check_storable(params: &Params) -> Result<&'static str, MetricError> {
    let model = params.str("model")?;
    let model = match model {
        "bgnbd" => "bgnbd",
        "mbgnbd" => "mbgnbd",
        "pareto_nbd" => "pareto_nbd",
        "auto" => {
            return Err(MetricError::invalid_parameter(
                "model",
                "model=auto compares models on the data; compute it to see which model it chooses, then fit that one (bgnbd, mbgnbd or pareto_nbd)",
            ));
        }
        "bgbb" => {
            return Err(MetricError::invalid_parameter(
                "model",
                "stored models are bgnbd, mbgnbd and pareto_nbd; the BG/BB model is computed, not stored",
            ));
        }
        other => {
            return Err(MetricError::invalid_parameter(
                "model",
                format!(
                    "model={other} is a formula with nothing to fit; stored models are bgnbd, mbgnbd and pareto_nbd"
                ),
            ));
        }
    };
    if params.get("dynamic_covariates").is_some() {
        return Err(MetricError::invalid_parameter(
            "dynamic_covariates",
            "stored models hold covariates that are constant per customer (covariates, purchase_covariates, attrition_covariates, spend_covariates), not ones that change over time; compute with dynamic_covariates instead",
        ));
    }
    Ok(model)
}

/// Fits the model, returning its state with exactly the output `compute` gives.
pub(crate) fn fit(input: &Input<'_>, params: &Params) -> Result<FittedModel, MetricError> {
    let model = check_storable(params)?;
    let mut fits = Fits {
        wants_fingerprint: true,
        ..Fits::default()
    };
    let output = crate::finish(model, input, params, |input, params| {
        predictive::compute_reusing(input, params, &mut fits)
    })?;
    let (Some(purchase), Some((customers, repeat_buyers)), Some(fingerprint)) = (
        fits.purchase.as_ref(),
        fits.purchase_support,
        fits.fingerprint.take(),
    ) else {
        return Err(MetricError::failed("the fit kept no purchase model"));
    };
    let state = ClvState {
        model: model.to_owned(),
        purchase: purchase.into(),
        customers,
        repeat_buyers,
        spend: fits.spend.as_ref().map(|s| StoredSpend {
            fit: (&s.fit).into(),
            correlation: s.correlation,
            repeat_buyers: s.repeat_buyers,
        }),
        covariates: fits.encoding.take().map(|encoding| StoredCovariates {
            encoding,
            purchase: fits.covariates.as_ref().map(StoredCovariateFit::from),
            spend: fits.spend_covariates.as_ref().map(StoredCovariateFit::from),
        }),
    };
    let mut fitted = FittedModel::new(&state, output)?
        .fingerprint("customers", customers)
        .fingerprint("repeat_buyers", repeat_buyers)
        .fingerprint("summary_sha256", fingerprint.summary_sha256);
    if let Some((first, last)) = fingerprint.span {
        fitted = fitted
            .fingerprint("first_transaction", first)
            .fingerprint("last_transaction", last);
    }
    Ok(fitted)
}

/// Scores `input` with a stored model.
pub(crate) fn score(
    state: &StoredState<'_>,
    input: &Input<'_>,
    params: &Params,
) -> Result<Output, MetricError> {
    let state: ClvState = state.decode()?;
    let model = check_storable(params)?;
    if model != state.model {
        return Err(MetricError::IncompatibleState {
            message: format!(
                "the stored state is a {} model, its parameters say {model}; the model is damaged",
                state.model
            ),
        });
    }
    if params.get("interval").is_some() && params.str("uncertainty")? == "bootstrap" {
        return Err(MetricError::invalid_parameter(
            "uncertainty",
            "bootstrap intervals refit the model to resampled customers, and a stored model keeps its estimates, not its customers: score with uncertainty=delta, or compute with uncertainty=bootstrap",
        ));
    }
    let mut fits = Fits {
        purchase: Some(state.purchase.to_fit()?),
        purchase_support: Some((state.customers, state.repeat_buyers)),
        spend: match &state.spend {
            Some(spend) => Some(SpendFit {
                fit: spend.fit.to_fit()?,
                correlation: spend.correlation,
                repeat_buyers: spend.repeat_buyers,
            }),
            None => None,
        },
        ..Fits::default()
    };
    if let Some(covariates) = &state.covariates {
        fits.encoding = Some(covariates.encoding.clone());
        fits.covariates = match &covariates.purchase {
            Some(fit) => Some(fit.to_fit(covariate_model(&state.model))?),
            None => None,
        };
        fits.spend_covariates = match &covariates.spend {
            Some(fit) => Some(fit.to_fit(CovariateModel::GammaGamma)?),
            None => None,
        };
    }
    if state.covariates.is_none() && covariates::request(params)?.is_some() {
        return Err(MetricError::IncompatibleState {
            message:
                "the stored model has no covariates, its parameters name some; the model is damaged"
                    .to_owned(),
        });
    }
    if fits.spend.is_none() && params.str("spend_model")? == "gamma_gamma" {
        return Err(MetricError::IncompatibleState {
            message: "the stored model has no spend model, its parameters say gamma_gamma; the model is damaged".to_owned(),
        });
    }
    crate::finish(model, input, params, |input, params| {
        predictive::compute_reusing(input, params, &mut fits)
    })
}
