//! `covariates=…`: cohorts fitted together, each cohort's α and β the reference's times
//! exp(coefficient × value) (`mittari_models::covariates::fit_sbg`). Cohorts are told apart
//! by the `cohort` column; a covariate must be constant within a cohort.

use std::collections::HashMap;
use std::sync::Arc;

use mittari_models::FitError;
use mittari_models::covariates::{Options, Profile, fit_sbg, likelihood_ratio};
use mittari_models::sbg::{self, Cohort};
use mittari_models::special::gamma_q;
use mittari_sdk::arrow_array::{
    Array as _, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray,
};
use mittari_sdk::covariates::{Coefficient, Entities, coefficients_table, encode};
use mittari_sdk::prelude::*;

pub(crate) fn compute(input: &Input<'_>, params: &Params) -> Result<Output, MetricError> {
    let names: Vec<String> = params
        .str("covariates")?
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    let Some(ids) = input.optional_string("cohort")? else {
        return Err(MetricError::invalid_column(
            "cohort",
            "with covariates, the rows of several cohorts are fitted together: give each row's cohort in a cohort column (map one with --column cohort=NAME)",
        ));
    };
    crate::no_empty(input, "cohort")?;
    let periods = input.int64("period")?.values();
    let active = input.int64("active")?.values();
    // Each cohort's rows, in order of first appearance.
    let mut rows_of: Vec<Vec<usize>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for row in 0..ids.len() {
        let next = rows_of.len();
        let at = *index.entry(ids.value(row)).or_insert(next);
        if at == next {
            rows_of.push(Vec::new());
        }
        rows_of[at].push(row);
    }
    if rows_of.len() < 2 {
        return Err(MetricError::invalid_column(
            "cohort",
            "covariates compare cohorts, and the input holds one; give several cohorts",
        ));
    }
    let cohorts: Vec<Cohort> = rows_of
        .iter()
        .map(|rows| {
            let observed = crate::counts_of(periods, active, rows)?;
            Cohort::new(observed).map_err(|e| MetricError::invalid_input(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let first_rows: Vec<usize> = rows_of.iter().map(|rows| rows[0]).collect();
    let encoded = encode(
        input.batch(),
        &[&names, &names],
        &first_rows,
        Entities {
            ids: Some(ids),
            noun: "cohort",
        },
        "covariates",
        None,
    )?;
    let profiles: Vec<Profile<Cohort>> = cohorts
        .iter()
        .zip(&encoded.profile_of)
        .map(|(cohort, &profile)| {
            let values = &encoded.profiles[profile as usize];
            Profile {
                purchase: values[0].clone(),
                attrition: values[1].clone(),
                data: cohort.clone(),
            }
        })
        .collect();
    let failed = |e: FitError| match e {
        FitError::Cancelled => MetricError::Cancelled,
        e => MetricError::invalid_input(format!("the sBG model cannot be fitted: {e}")),
    };
    let without = sbg::fit_cohorts(&cohorts, input.cancellation()).map_err(failed)?;
    let fit = fit_sbg(
        &profiles,
        without.params,
        Options::default(),
        input.cancellation(),
    )
    .map_err(failed)?;
    if !fit.fit.converged && !fit.reached_boundary() {
        return Err(MetricError::invalid_input(format!(
            "the sBG fit with covariates did not converge ({}); the cohorts may not follow the model",
            fit.fit.status
        )));
    }
    let horizon = usize::try_from(params.i64("horizon")?).unwrap_or(0);
    let discount_rate = params.f64("discount_rate")?;

    // Each cohort's parameters and forecast.
    struct Forecast {
        size: f64,
        last: usize,
        alpha: f64,
        beta: f64,
        survival: Vec<f64>,
        lifetime: Option<f64>,
        derl: Option<f64>,
    }
    let forecasts: Vec<Forecast> = profiles
        .iter()
        .map(|p| {
            let [alpha, beta] = fit.params_for(&p.purchase, &p.attrition);
            let last = p.data.periods();
            Forecast {
                size: p.data.size(),
                last,
                alpha,
                beta,
                survival: sbg::survival(alpha, beta, last + horizon + 1),
                lifetime: sbg::expected_lifetime(alpha, beta),
                derl: sbg::derl(alpha, beta, discount_rate),
            }
        })
        .collect();
    let total: f64 = forecasts.iter().map(|f| f.size).sum();
    let weighted = |value: &dyn Fn(&Forecast) -> f64| -> f64 {
        forecasts.iter().map(|f| f.size * value(f)).sum::<f64>() / total
    };
    let mut output = Output::new();
    let se = fit.standard_errors.as_ref();
    let mut unidentified = Vec::new();
    for (i, name) in ["alpha", "beta"].into_iter().enumerate() {
        output = output.scalar(Scalar::new(name, fit.base[i]));
        match se.map(|s| s[i]) {
            Some(se) => {
                output = output.scalar(Scalar::new(&format!("{name}_se"), se));
                if se > fit.base[i] || fit.fit.at_boundary[i] {
                    unidentified.push(name);
                }
            }
            None => {
                let reason = "the Hessian at the estimate is not negative definite";
                output = output.scalar(Scalar::undefined(&format!("{name}_se"), reason));
                unidentified.push(name);
            }
        }
    }
    if !unidentified.is_empty() {
        output = output.warning(
            "fit_not_identified",
            format!(
                "the data do not determine {} of the reference cohort (standard error larger than the estimate, or no covariance): read its forecast as the model's limiting case",
                unidentified.join(" and ")
            ),
        );
    }
    // The retention of the next period over all cohorts: those still active after it among
    // those active at the end of each one's observation.
    let (after, before) = forecasts.iter().fold((0.0, 0.0), |(a, b), f| {
        (
            a + f.size * f.survival[f.last + 1],
            b + f.size * f.survival[f.last],
        )
    });
    output = output
        .scalar(Scalar::new("log_likelihood", fit.log_likelihood))
        .scalar(Scalar::new("iterations", fit.fit.iterations as f64))
        .scalar(Scalar::new("cohorts", cohorts.len() as f64))
        .scalar(Scalar::new("cohort_size", total))
        .scalar(Scalar::new(
            "periods_observed",
            forecasts.iter().map(|f| f.last).max().unwrap_or(0) as f64,
        ))
        .scalar(Scalar::new(
            "mean_churn_probability",
            100.0 * weighted(&|f| f.alpha / (f.alpha + f.beta)),
        ))
        .scalar(Scalar::new("next_retention_rate", 100.0 * after / before))
        .scalar(Scalar::new(
            "projected_survival",
            100.0 * weighted(&|f| f.survival[f.last + horizon]),
        ))
        .scalar(match forecasts.iter().all(|f| f.lifetime.is_some()) {
            true => Scalar::new("expected_lifetime", weighted(&|f| f.lifetime.unwrap_or(0.0))),
            false => Scalar::undefined(
                "expected_lifetime",
                "a cohort's alpha is at most 1: its lifetime distribution's tail is too heavy for a finite mean",
            ),
        })
        .scalar(match forecasts.iter().all(|f| f.derl.is_some()) {
            true => Scalar::new("derl", weighted(&|f| f.derl.unwrap_or(0.0))),
            false => Scalar::undefined(
                "derl",
                "the discounted sum does not converge; use a discount_rate above 0",
            ),
        })
        .scalar(Scalar::new(
            "log_likelihood_without_covariates",
            without.log_likelihood,
        ));
    let df = fit.purchase.len() + fit.attrition.len();
    if let Some((statistic, p)) = likelihood_ratio(without.log_likelihood, fit.log_likelihood, df) {
        output = output
            .scalar(Scalar::new("covariates_lr_statistic", statistic))
            .scalar(Scalar::new("covariates_lr_df", df as f64))
            .scalar(Scalar::new("covariates_lr_p_value", p));
    }
    let mut rows = Vec::new();
    for (process, coefficients, design, offset) in [
        ("alpha", &fit.purchase, &encoded.names[0], 2),
        (
            "beta",
            &fit.attrition,
            &encoded.names[1],
            2 + fit.purchase.len(),
        ),
    ] {
        for (k, (covariate, &estimate)) in design.iter().zip(coefficients).enumerate() {
            rows.push(Coefficient {
                process,
                covariate: covariate.clone(),
                estimate,
                standard_error: se.map(|s| s[offset + k]),
                at_boundary: fit.fit.at_boundary[offset + k],
            });
        }
    }
    if let Some(edge) = mittari_sdk::covariates::at_edge(&rows) {
        output = output.warning(
            "covariate_not_identified",
            format!(
                "the coefficient of {edge} ran to the edge of the searched range: its value and standard error are not estimates (a level held by one cohort that never churns, or always does, does this)"
            ),
        );
    }
    let cohort_names: Vec<&str> = first_rows.iter().map(|&r| ids.value(r)).collect();
    let forecast_column = |value: &dyn Fn(&Forecast) -> Option<f64>| -> ArrayRef {
        Arc::new(forecasts.iter().map(value).collect::<Float64Array>())
    };
    let cohorts_table = result_table(
        "cohorts",
        vec![
            (
                "cohort",
                Arc::new(StringArray::from(cohort_names.clone())) as ArrayRef,
            ),
            ("cohort_size", forecast_column(&|f| Some(f.size))),
            (
                "periods_observed",
                forecast_column(&|f| Some(f.last as f64)),
            ),
            ("alpha", forecast_column(&|f| Some(f.alpha))),
            ("beta", forecast_column(&|f| Some(f.beta))),
            (
                "mean_churn_probability",
                forecast_column(&|f| Some(100.0 * f.alpha / (f.alpha + f.beta))),
            ),
            (
                "next_retention_rate",
                forecast_column(&|f| {
                    Some(100.0 * sbg::retention_rate(f.alpha, f.beta, f.last + 1))
                }),
            ),
            (
                "projected_survival",
                forecast_column(&|f| Some(100.0 * f.survival[f.last + horizon])),
            ),
            ("expected_lifetime", forecast_column(&|f| f.lifetime)),
            ("derl", forecast_column(&|f| f.derl)),
        ],
    )?;
    // The curves, cohort after cohort, each to its own horizon.
    let (mut cohort, mut period, mut observed_active, mut observed_survival) =
        (vec![], vec![], vec![], vec![]);
    let (mut fitted_survival, mut observed_retention, mut fitted_retention, mut projected) =
        (vec![], vec![], vec![], vec![]);
    for ((name, f), profile) in cohort_names.iter().zip(&forecasts).zip(&profiles) {
        let counts = profile.data.active();
        for t in 0..=f.last + horizon {
            let at = |t: usize| counts.get(t).copied();
            cohort.push(*name);
            period.push(t as i64);
            observed_active.push(at(t).map(|a| a as i64));
            observed_survival.push(at(t).map(|a| 100.0 * a / f.size));
            fitted_survival.push(100.0 * f.survival[t]);
            observed_retention.push(match (t.checked_sub(1).and_then(at), at(t)) {
                (Some(previous), Some(now)) if previous > 0.0 => Some(100.0 * now / previous),
                _ => None,
            });
            fitted_retention.push((t > 0).then(|| 100.0 * sbg::retention_rate(f.alpha, f.beta, t)));
            projected.push(Some(t > f.last));
        }
    }
    let curve = result_table(
        "curve",
        vec![
            ("cohort", Arc::new(StringArray::from(cohort)) as ArrayRef),
            ("period", Arc::new(Int64Array::from(period))),
            (
                "observed_active",
                Arc::new(Int64Array::from(observed_active)),
            ),
            (
                "observed_survival",
                Arc::new(Float64Array::from(observed_survival)),
            ),
            (
                "fitted_survival",
                Arc::new(Float64Array::from(fitted_survival)),
            ),
            (
                "observed_retention",
                Arc::new(Float64Array::from(observed_retention)),
            ),
            (
                "fitted_retention",
                Arc::new(Float64Array::from(fitted_retention)),
            ),
            ("projected", Arc::new(BooleanArray::from(projected))),
        ],
    )?;
    Ok(output
        .table("curve", curve)
        .table(
            "coefficients",
            coefficients_table(&rows, |z| gamma_q(0.5, z * z / 2.0))?,
        )
        .table("cohorts", cohorts_table))
}
