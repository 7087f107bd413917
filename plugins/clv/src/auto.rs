//! `model=auto`: fit every continuous-time model to the data, compare them, and report the one
//! that predicts best — by the holdout's error per customer when there is a holdout (what the
//! predictions are for), else by BIC (the fit penalized for its parameters) — saying which and
//! why in a comparison table.

use std::sync::Arc;

use mittari_sdk::arrow_array::{ArrayRef, BooleanArray, Float64Array, StringArray};
use mittari_sdk::prelude::*;

use crate::predictive;

/// The models compared.
const CANDIDATES: [&str; 3] = ["bgnbd", "mbgnbd", "pareto_nbd"];

/// One candidate's fit, as the comparison table shows it.
struct Candidate {
    model: &'static str,
    /// Why it could not be fitted.
    failed: Option<String>,
    identified: bool,
    log_likelihood: f64,
    parameters: f64,
    aic: f64,
    bic: f64,
    chi_square_p_value: Option<f64>,
    holdout_mae: Option<f64>,
    holdout_rmse: Option<f64>,
    holdout_total_error: Option<f64>,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn scalar(output: &Output, name: &str) -> Option<f64> {
    output
        .scalars
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| s.value)
}

/// The request's parameters with `model` set, and what only the chosen model needs (intervals,
/// DERT, a spend model, every customer's row) left out of the comparison's fits.
fn candidate_params(params: &Params, model: &str, full: bool) -> Params {
    params
        .iter()
        .filter(|(name, _)| {
            full || !matches!(
                name.as_str(),
                "interval" | "dert" | "spend_model" | "spend_covariates" | "top"
            )
        })
        .map(|(name, value)| {
            if name == "model" {
                (name.clone(), ParamValue::String(model.to_owned()))
            } else {
                (name.clone(), value.clone())
            }
        })
        .chain((!full).then(|| ("top".to_owned(), ParamValue::Int64(1))))
        .chain((!full).then(|| {
            (
                "spend_model".to_owned(),
                ParamValue::String("none".to_owned()),
            )
        }))
        .chain((!full).then(|| ("dert".to_owned(), ParamValue::Bool(false))))
        .collect()
}

/// Fits every candidate, picks one, and returns its full output with the `model_comparison`
/// table, and the model chosen.
pub(crate) fn compute(
    input: &Input<'_>,
    params: &Params,
) -> Result<(Output, &'static str), MetricError> {
    if input.has_column("n_periods") {
        return Err(MetricError::invalid_parameter(
            "model",
            "model=auto compares the continuous-time models bgnbd, mbgnbd and pareto_nbd; for transactions at discrete opportunities (n_periods) use model=bgbb",
        ));
    }
    let mut candidates = Vec::new();
    let mut first_error = None;
    // Each candidate's fits, so the chosen one's full computation does not fit it again.
    let mut fits: Vec<predictive::Fits> = Vec::new();
    for model in CANDIDATES {
        input.check_cancelled()?;
        let mut kept = predictive::Fits::default();
        let computed =
            predictive::compute_reusing(input, &candidate_params(params, model, false), &mut kept);
        fits.push(kept);
        match computed {
            Ok(output) => {
                let ll = scalar(&output, "log_likelihood").unwrap_or(f64::NAN);
                let customers = scalar(&output, "customers").unwrap_or(f64::NAN);
                let parameters = 4.0 + scalar(&output, "covariates_lr_df").unwrap_or(0.0);
                let actual = scalar(&output, "holdout_purchases");
                let predicted = scalar(&output, "predicted_holdout_purchases");
                candidates.push(Candidate {
                    model,
                    failed: None,
                    identified: !output.warnings.iter().any(|w| {
                        w.code == "fit_not_identified" || w.code == "covariate_not_identified"
                    }),
                    log_likelihood: ll,
                    parameters,
                    aic: 2.0 * parameters - 2.0 * ll,
                    bic: parameters * customers.ln() - 2.0 * ll,
                    chi_square_p_value: scalar(&output, "chi_square_p_value"),
                    holdout_mae: scalar(&output, "holdout_mae"),
                    holdout_rmse: scalar(&output, "holdout_rmse"),
                    holdout_total_error: predicted.zip(actual).map(|(p, a)| p - a),
                });
            }
            // A wrong input is wrong for every model: say so once, as the model would.
            Err(
                error @ MetricError::InvalidInput {
                    column: Some(_), ..
                },
            )
            | Err(error @ MetricError::InvalidParameter { .. })
            | Err(error @ MetricError::Cancelled) => return Err(error),
            Err(error) => {
                let message = error.to_string();
                first_error.get_or_insert(error);
                candidates.push(Candidate {
                    model,
                    failed: Some(message),
                    identified: false,
                    log_likelihood: f64::NAN,
                    parameters: 4.0,
                    aic: f64::NAN,
                    bic: f64::NAN,
                    chi_square_p_value: None,
                    holdout_mae: None,
                    holdout_rmse: None,
                    holdout_total_error: None,
                });
            }
        }
    }
    let fitted: Vec<&Candidate> = candidates.iter().filter(|c| c.failed.is_none()).collect();
    if fitted.is_empty() {
        return Err(
            first_error.unwrap_or_else(|| MetricError::invalid_input("no model could be fitted"))
        );
    }
    let pool: Vec<&Candidate> = if fitted.iter().any(|c| c.identified) {
        fitted.iter().copied().filter(|c| c.identified).collect()
    } else {
        fitted.clone()
    };
    let by_holdout = pool.iter().all(|c| c.holdout_mae.is_some());
    let key = |c: &Candidate| {
        if by_holdout {
            c.holdout_mae.unwrap_or(f64::INFINITY)
        } else {
            c.bic
        }
    };
    let chosen = pool
        .iter()
        .copied()
        .min_by(|a, b| key(a).total_cmp(&key(b)))
        .ok_or_else(|| MetricError::invalid_input("no model could be fitted"))?;
    let others: Vec<String> = pool
        .iter()
        .filter(|c| c.model != chosen.model)
        .map(|c| format!("{} {:.4}", c.model, key(c)))
        .collect();
    let criterion = if by_holdout {
        "the lowest holdout error of purchases per customer (MAE)"
    } else {
        "the lowest BIC (no holdout to validate on: give holdout_start to choose by prediction error)"
    };
    let mut why = format!("{}: {criterion}, {:.4}", chosen.model, key(chosen));
    if !others.is_empty() {
        why.push_str(&format!(" against {}", others.join(", ")));
    }
    if !chosen.identified {
        why.push_str("; no model identifies its parameters on this data");
    }
    let chosen_model = chosen.model;
    let at = CANDIDATES
        .iter()
        .position(|&m| m == chosen_model)
        .unwrap_or(0);
    let output = predictive::compute_reusing(
        input,
        &candidate_params(params, chosen_model, true),
        &mut fits[at],
    )?;
    let notes: Vec<Option<String>> = candidates
        .iter()
        .map(|c| match (&c.failed, c.model == chosen_model) {
            (Some(failed), _) => Some(format!("not fitted: {failed}")),
            (None, true) => Some(format!("chosen: {criterion}")),
            (None, false) if !c.identified => Some("does not identify its parameters".to_owned()),
            (None, false) => None,
        })
        .collect();
    let column = |f: fn(&Candidate) -> Option<f64>| -> ArrayRef {
        Arc::new(candidates.iter().map(f).collect::<Float64Array>())
    };
    let table = result_table(
        "model_comparison",
        vec![
            (
                "model",
                Arc::new(
                    candidates
                        .iter()
                        .map(|c| Some(c.model))
                        .collect::<StringArray>(),
                ) as ArrayRef,
            ),
            (
                "chosen",
                Arc::new(
                    candidates
                        .iter()
                        .map(|c| Some(c.model == chosen_model))
                        .collect::<BooleanArray>(),
                ),
            ),
            (
                "identified",
                Arc::new(
                    candidates
                        .iter()
                        .map(|c| Some(c.identified))
                        .collect::<BooleanArray>(),
                ),
            ),
            ("log_likelihood", column(|c| finite(c.log_likelihood))),
            ("parameters", column(|c| Some(c.parameters))),
            ("aic", column(|c| finite(c.aic))),
            ("bic", column(|c| finite(c.bic))),
            ("chi_square_p_value", column(|c| c.chi_square_p_value)),
            ("holdout_mae", column(|c| c.holdout_mae)),
            ("holdout_rmse", column(|c| c.holdout_rmse)),
            ("holdout_total_error", column(|c| c.holdout_total_error)),
            (
                "note",
                Arc::new(notes.iter().map(|n| n.as_deref()).collect::<StringArray>()),
            ),
        ],
    )?;
    Ok((
        output
            .table("model_comparison", table)
            .warning("model_chosen", format!("model=auto chose {why}")),
        chosen_model,
    ))
}
