//! Covariates of the predictive models: which columns, and the profiles of customers who share
//! their values. The encoding is the SDK's (`mittari_sdk::covariates`): numbers (and booleans,
//! as 0/1) used as given, text one 0/1 column per level but the first in sorted order. A
//! covariate is a property of the customer: one whose value changes between a customer's
//! transactions is refused, naming the customer and both values.

use mittari_models::Fit;
use mittari_models::covariates::CovariateFit;
use mittari_models::special::gamma_q;

use mittari_sdk::arrow_array::{RecordBatch, StringArray};
use mittari_sdk::covariates::{Coefficient, ColumnEncoding};
use mittari_sdk::{Input, MetricError, Params};

/// The covariate columns of each process, as the request names them.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Request {
    pub(crate) purchase: Vec<String>,
    pub(crate) attrition: Vec<String>,
    pub(crate) spend: Vec<String>,
    pub(crate) penalty: f64,
    pub(crate) equal: bool,
}

fn list(params: &Params, name: &str) -> Result<Vec<String>, MetricError> {
    Ok(match params.get(name) {
        Some(_) => {
            let mut columns: Vec<String> = Vec::new();
            for column in params.str(name)?.split(',').map(str::trim) {
                if column.is_empty() {
                    continue;
                }
                if columns.iter().any(|c| c == column) {
                    return Err(MetricError::invalid_parameter(
                        name,
                        format!("{column} is named twice"),
                    ));
                }
                columns.push(column.to_owned());
            }
            columns
        }
        None => Vec::new(),
    })
}

/// The request's covariates; `None` when it names none.
pub(crate) fn request(params: &Params) -> Result<Option<Request>, MetricError> {
    let both = list(params, "covariates")?;
    let purchase = list(params, "purchase_covariates")?;
    let attrition = list(params, "attrition_covariates")?;
    let spend = list(params, "spend_covariates")?;
    let separate = !purchase.is_empty() || !attrition.is_empty();
    if !both.is_empty() && separate {
        return Err(MetricError::invalid_parameter(
            "covariates",
            "covariates names the covariates of both processes; give it, or purchase_covariates and attrition_covariates, not both",
        ));
    }
    let (purchase, attrition) = if both.is_empty() {
        (purchase, attrition)
    } else {
        (both.clone(), both)
    };
    let equal = params.bool("equal_covariates")?;
    if equal && purchase != attrition {
        return Err(MetricError::invalid_parameter(
            "equal_covariates",
            "one coefficient per covariate for both processes needs the same covariates in both: use covariates=…",
        ));
    }
    if purchase.is_empty() && attrition.is_empty() && spend.is_empty() {
        return Ok(None);
    }
    Ok(Some(Request {
        purchase,
        attrition,
        spend,
        penalty: params.f64("covariate_penalty")?,
        equal,
    }))
}

/// The encoded covariates: each process's design columns, each profile's values, and each
/// customer's profile.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Design {
    pub(crate) purchase: Vec<String>,
    pub(crate) attrition: Vec<String>,
    pub(crate) spend: Vec<String>,
    pub(crate) profiles: Vec<ProfileValues>,
    pub(crate) profile_of: Vec<u32>,
    /// Each covariate column's encoding: what a stored model encodes new customers with.
    pub(crate) columns: Vec<ColumnEncoding>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ProfileValues {
    pub(crate) purchase: Vec<f64>,
    pub(crate) attrition: Vec<f64>,
    pub(crate) spend: Vec<f64>,
}

/// Encodes the covariates of the customers whose rows are `customer_rows` (each customer's
/// first row, as in the histories) over the input's rows, where `ids` gives each row's
/// customer (for a transaction log; `None` for a summary, one row per customer). `fixed` is
/// a stored fit's encoding, which scoring keeps whatever the scored customers' levels.
pub(crate) fn design(
    input: &Input<'_>,
    request: &Request,
    customer_rows: &[usize],
    ids: Option<&StringArray>,
    fixed: Option<&[ColumnEncoding]>,
) -> Result<Design, MetricError> {
    let encoded = mittari_sdk::covariates::encode(
        input.batch(),
        &[&request.purchase, &request.attrition, &request.spend],
        customer_rows,
        mittari_sdk::covariates::Entities {
            ids,
            noun: "customer",
        },
        "covariates",
        fixed,
    )?;
    let [purchase, attrition, spend]: [Vec<String>; 3] = encoded
        .names
        .try_into()
        .map_err(|_| MetricError::failed("the covariate encoding lost a process"))?;
    Ok(Design {
        purchase,
        attrition,
        spend,
        profiles: encoded
            .profiles
            .into_iter()
            .map(|mut values| ProfileValues {
                spend: values.pop().unwrap_or_default(),
                attrition: values.pop().unwrap_or_default(),
                purchase: values.pop().unwrap_or_default(),
            })
            .collect(),
        profile_of: encoded.profile_of,
        columns: encoded.columns,
    })
}

/// A covariate fit's base parameters as a [`Fit`], for the parameter outputs and the
/// identification check the fit without covariates has: the reference profile's parameters
/// (all covariates zero), their standard errors and covariance in natural units.
pub(crate) fn base_fit<const N: usize>(fit: &CovariateFit<N>) -> Fit<N> {
    let base = fit.base;
    let covariance = fit
        .fit
        .covariance
        .as_ref()
        .map(|c| std::array::from_fn(|i| std::array::from_fn(|j| c[i][j] * base[i] * base[j])));
    Fit {
        params: base,
        standard_errors: covariance.map(|c: [[f64; N]; N]| std::array::from_fn(|i| c[i][i].sqrt())),
        covariance,
        log_likelihood: fit.log_likelihood,
        iterations: fit.fit.iterations,
        evaluations: fit.fit.evaluations,
        converged: fit.fit.converged,
        status: fit.fit.status.clone(),
        at_boundary: std::array::from_fn(|i| fit.fit.at_boundary[i]),
    }
}

/// The coefficients of a covariate fit, in the order of its free parameters after the base
/// ones: purchase (or spend), then attrition unless shared.
pub(crate) fn coefficients<const N: usize>(
    fit: &CovariateFit<N>,
    processes: (&'static str, &'static str),
    names: (&[String], &[String]),
    shared: bool,
) -> Vec<Coefficient> {
    let mut rows = Vec::new();
    let se = |k: usize| fit.standard_errors.as_ref().map(|s| s[k]);
    for (k, (name, &estimate)) in names.0.iter().zip(&fit.purchase).enumerate() {
        rows.push(Coefficient {
            process: if shared { "both" } else { processes.0 },
            covariate: name.clone(),
            estimate,
            standard_error: se(N + k),
            at_boundary: fit.fit.at_boundary[N + k],
        });
    }
    if !shared {
        let at = N + fit.purchase.len();
        for (k, (name, &estimate)) in names.1.iter().zip(&fit.attrition).enumerate() {
            rows.push(Coefficient {
                process: processes.1,
                covariate: name.clone(),
                estimate,
                standard_error: se(at + k),
                at_boundary: fit.fit.at_boundary[at + k],
            });
        }
    }
    rows
}

/// The `coefficients` table ([`mittari_sdk::covariates::coefficients_table`]), with two-sided
/// Wald p-values: P(|Z| ≥ |z|) = P(χ²₁ ≥ z²) = Q(1/2, z²/2).
pub(crate) fn coefficients_table(rows: &[Coefficient]) -> Result<RecordBatch, MetricError> {
    mittari_sdk::covariates::coefficients_table(rows, |z| gamma_q(0.5, z * z / 2.0))
}
