//! Retention forecast for contractual businesses: fits the shifted-beta-geometric model
//! (Fader & Hardie 2007) to a cohort's active counts and projects its survival and retention
//! rates, expected lifetime and discounted expected residual lifetime.
#![forbid(unsafe_code)]

use std::sync::Arc;

use mittari_models::FitError;
use mittari_models::identification::{self, Support};
use mittari_models::sbg::{self, Cohort, CohortError};
use mittari_sdk::arrow_array::{Array as _, ArrayRef, BooleanArray, Float64Array, Int64Array};
use mittari_sdk::prelude::*;

mod covariates;

struct RetentionForecast;

/// The cohort's active counts by period, from rows in any order; errors name the row.
fn counts(periods: &[i64], active: &[i64]) -> Result<Vec<f64>, MetricError> {
    let rows: Vec<usize> = (0..periods.len()).collect();
    counts_of(periods, active, &rows)
}

/// [`counts`] of the cohort whose rows are `rows`; errors name the input's row.
pub(crate) fn counts_of(
    all_periods: &[i64],
    all_active: &[i64],
    rows: &[usize],
) -> Result<Vec<f64>, MetricError> {
    let periods: Vec<i64> = rows.iter().map(|&r| all_periods[r]).collect();
    let active: Vec<i64> = rows.iter().map(|&r| all_active[r]).collect();
    let at = |row: usize| rows[row];
    let Some(&last) = periods.iter().max() else {
        return Err(MetricError::invalid_input(
            "the input has no rows; give the cohort's active customers at periods 0, 1, 2, …",
        ));
    };
    // Every period from 0 to the last needs a row, so with n rows only periods below n can
    // be complete; a later one means one of 0..n is missing, which is reported below. The
    // table is sized by the rows, never by a period value, however large.
    let mut by_period: Vec<Option<(usize, i64)>> = vec![None; periods.len()];
    for (row, (&period, &count)) in periods.iter().zip(&active).enumerate() {
        let Some(slot) = usize::try_from(period)
            .ok()
            .and_then(|p| by_period.get_mut(p))
        else {
            continue;
        };
        if let Some((first, _)) = slot {
            return Err(MetricError::invalid_value(
                "period",
                at(row),
                format!(
                    "period {period} appears again (first at row {}); give one row per period",
                    at(*first)
                ),
            ));
        }
        *slot = Some((row, count));
    }
    if let Some(missing) = by_period.iter().position(Option::is_none) {
        return Err(MetricError::invalid_column(
            "period",
            format!(
                "period {missing} is missing; give every period from 0 (the cohort's size) to {last}"
            ),
        ));
    }
    let ordered: Vec<(usize, i64)> = by_period
        .into_iter()
        .flatten()
        .map(|(row, count)| (at(row), count))
        .collect();
    let values: Vec<f64> = ordered.iter().map(|&(_, c)| c as f64).collect();
    Cohort::new(values.clone()).map_err(|e| match e {
        CohortError::Increasing { period, .. } => {
            MetricError::invalid_value("active", ordered[period].0, e.to_string())
        }
        CohortError::TooShort => MetricError::invalid_column("period", e.to_string()),
        CohortError::Empty => MetricError::invalid_value("active", ordered[0].0, e.to_string()),
        CohortError::NoChurn => MetricError::invalid_column("active", e.to_string()),
    })?;
    Ok(values)
}

impl Metric for RetentionForecast {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new(
            "retention_forecast",
            env!("CARGO_PKG_VERSION"),
            "contractual retention forecast: the shifted-beta-geometric model fitted to a cohort",
        )
        .expensive()
        .description(
            "One row per period: the cohort's customers still active at period 0 (its size), 1, 2, …. Each customer \
             leaves at the end of a period with a probability theta that is constant for them and varies across \
             customers as Beta(alpha, beta) (Fader & Hardie 2007, How to project customer retention). Fitted by maximum \
             likelihood with exact gradients; standard errors from the Hessian. Survival S(t) = S(t-1) (beta + t - 1) / \
             (alpha + beta + t - 1); the retention rate (beta + t - 1) / (alpha + beta + t - 1) rises with t as the \
             loyal customers remain. expected_lifetime = (alpha + beta - 1) / (alpha - 1) periods (infinite when alpha \
             <= 1); derl = sum over t >= 1 of S(t) / (1 + discount_rate)^(t-1), the discounted expected residual \
             lifetime of a new customer in periods (Fader & Hardie 2010): multiply by the margin per period to value \
             a customer. Several cohorts: put them in one table and use group_by on the cohort column, or fit them \
             together with covariates=… (columns constant per cohort: plan, channel, acquisition quarter), which \
             scales each cohort's alpha and beta by exp(coefficient x value) and reports the coefficients, a \
             likelihood-ratio test and each cohort's forecast; the headline outputs are then over all cohorts, \
             weighted by their sizes, and alpha and beta those of the reference (every covariate 0, text at its \
             first level).",
        )
        .input(ColumnSpec::int64("period", "periods since acquisition: 0, 1, 2, … (0 is the cohort's size)").required().min(0.0))
        .input(ColumnSpec::int64("active", "customers of the cohort still active at that period").required().min(0.0))
        .input(ColumnSpec::string("cohort", "the cohort the row counts, when the input holds several: fitted together with covariates, else one by one with group_by cohort"))
        .parameter(ParameterSpec::columns("covariates", "input columns constant per cohort whose effect on churn is estimated, comma-separated: each scales alpha and beta by exp(coefficient x value); numbers as given, text one 0/1 column per level but the first"))
        .parameter(ParameterSpec::int64("horizon", 12, "periods to project beyond the last observed one").range(0.0, 1000.0))
        .parameter(ParameterSpec::double("discount_rate", 0.1, "discount rate per period for derl").range(0.0, 1.0))
        .output(OutputSpec::new("alpha", "parameter", "alpha of the Beta distribution of churn probabilities"))
        .output(OutputSpec::new("beta", "parameter", "beta of the Beta distribution of churn probabilities"))
        .output(OutputSpec::new("alpha_se", "parameter", "standard error of alpha"))
        .output(OutputSpec::new("beta_se", "parameter", "standard error of beta"))
        .output(OutputSpec::new("log_likelihood", "log-likelihood", "maximized log-likelihood"))
        .output(OutputSpec::new("iterations", "count", "optimizer iterations"))
        .output(OutputSpec::new("cohort_size", "count", "customers at period 0"))
        .output(OutputSpec::new("periods_observed", "count", "last observed period"))
        .output(OutputSpec::new("mean_churn_probability", "%", "alpha / (alpha + beta) * 100: the churn probability of a new customer"))
        .output(OutputSpec::new("next_retention_rate", "%", "fitted retention rate of the first unobserved period"))
        .output(OutputSpec::new("projected_survival", "%", "fitted share of the cohort active at the end of the horizon"))
        .output(OutputSpec::new("expected_lifetime", "periods", "mean number of periods a customer stays"))
        .output(OutputSpec::new("derl", "periods", "discounted expected residual lifetime of a new customer"))
        .output(OutputSpec::new("cohorts", "count", "cohorts fitted together (with covariates)"))
        .output(OutputSpec::new("log_likelihood_without_covariates", "log-likelihood", "the cohorts fitted with one alpha and beta (with covariates)"))
        .output(OutputSpec::new("covariates_lr_statistic", "statistic", "likelihood-ratio statistic of the covariates: 2 x (log_likelihood - log_likelihood_without_covariates)"))
        .output(OutputSpec::new("covariates_lr_df", "count", "its degrees of freedom: the number of coefficients"))
        .output(OutputSpec::new("covariates_lr_p_value", "probability", "P(chi-square at least this large) if the covariates explained nothing"))
        .table(
            "curve",
            "per period to the end of the horizon: observed and fitted survival %, observed and fitted retention rate %, whether projected (with covariates, per cohort)",
        )
        .table_with_columns("coefficients", "with covariates: each covariate's coefficient on alpha and on beta", [
            OutputSpec::new("process", "id", "alpha or beta: the Beta distribution parameter the covariate scales (a higher beta, or lower alpha, means less churn)"),
            OutputSpec::new("covariate", "id", "the input column, or column=level for a level of a text column (against the first level)"),
            OutputSpec::new("coefficient", "parameter", "the estimate"),
            OutputSpec::new("standard_error", "parameter", "its standard error, from the Hessian of the log-likelihood; empty at the edge of the searched range, where the coefficient is not an estimate"),
            OutputSpec::new("z", "statistic", "coefficient / standard_error"),
            OutputSpec::new("p_value", "probability", "two-sided Wald p-value"),
            OutputSpec::new("multiplier", "ratio", "exp(coefficient): the factor one unit multiplies alpha or beta by"),
            OutputSpec::new("at_boundary", "id", "true where the coefficient ran to the edge of the searched range: not an estimate"),
        ])
        .table_with_columns("cohorts", "with covariates: each cohort's parameters and forecast", [
            OutputSpec::new("cohort", "id", "the cohort"),
            OutputSpec::new("cohort_size", "count", "customers at period 0"),
            OutputSpec::new("periods_observed", "count", "last observed period"),
            OutputSpec::new("alpha", "parameter", "the cohort's alpha"),
            OutputSpec::new("beta", "parameter", "the cohort's beta"),
            OutputSpec::new("mean_churn_probability", "%", "alpha / (alpha + beta) * 100"),
            OutputSpec::new("next_retention_rate", "%", "fitted retention rate of the cohort's first unobserved period"),
            OutputSpec::new("projected_survival", "%", "fitted share of the cohort active horizon periods after its last observed one"),
            OutputSpec::new("expected_lifetime", "periods", "mean number of periods a customer stays (empty when alpha <= 1)"),
            OutputSpec::new("derl", "periods", "discounted expected residual lifetime of a new customer"),
        ])
    }

    fn compute(&self, input: &Input<'_>, params: &Params) -> Result<Output, MetricError> {
        let periods = input.int64("period")?;
        let active = input.int64("active")?;
        if params.get("covariates").is_some() {
            return covariates::compute(input, params);
        }
        if let Some(cohorts) = input.optional_string("cohort")?
            && let Some(row) = (1..cohorts.len()).find(|&r| cohorts.value(r) != cohorts.value(0))
        {
            return Err(MetricError::invalid_value(
                "cohort",
                row,
                format!(
                    "the input holds several cohorts ({:?} and {:?}); forecast them one by one with group_by cohort, or together with covariates=…",
                    cohorts.value(0),
                    cohorts.value(row)
                ),
            ));
        }
        let observed = counts(periods.values(), active.values())?;
        let cohort =
            Cohort::new(observed.clone()).map_err(|e| MetricError::invalid_input(e.to_string()))?;
        let fit = sbg::fit_cohort(&cohort, input.cancellation()).map_err(|e| match e {
            FitError::Cancelled => MetricError::Cancelled,
            e => MetricError::invalid_input(format!("the sBG model cannot be fitted: {e}")),
        })?;
        // A fit that stopped at the edge of its range is the model's limiting case (no
        // heterogeneity): kept, and flagged below as not identified.
        if !fit.converged && !fit.reached_boundary() {
            return Err(MetricError::invalid_input(format!(
                "the sBG fit did not converge ({}); the cohort may not follow the model",
                fit.status
            )));
        }
        let [alpha, beta] = fit.params;
        let last = cohort.periods();
        let horizon = usize::try_from(params.i64("horizon")?).unwrap_or(0);
        let discount_rate = params.f64("discount_rate")?;
        let fitted = sbg::survival(alpha, beta, last + horizon);
        let support = [
            Support::per_parameter("customers at the start", observed[0], 10.0, 2),
            Support::per_parameter("observed periods after the start", last as f64, 1.0, 2),
        ];
        let mut output = Output::new();
        let intervals = identification::intervals_95(&fit);
        for (i, name) in ["alpha", "beta"].into_iter().enumerate() {
            let estimate = Scalar::new(name, fit.params[i]);
            output = output.scalar(match intervals[i] {
                Some((lower, upper)) => estimate.with_interval(lower, upper, 0.95),
                None => estimate,
            });
        }
        if let Some(message) = identification::message("sBG", &fit, ["alpha", "beta"], &support) {
            output = output.warning("fit_not_identified", message);
        }
        output = match fit.standard_errors {
            Some([alpha_se, beta_se]) => output
                .scalar(Scalar::new("alpha_se", alpha_se))
                .scalar(Scalar::new("beta_se", beta_se)),
            None => {
                let reason = "the Hessian at the estimate is not negative definite";
                output
                    .scalar(Scalar::undefined("alpha_se", reason))
                    .scalar(Scalar::undefined("beta_se", reason))
            }
        };
        output = output
            .scalar(Scalar::new("log_likelihood", fit.log_likelihood))
            .scalar(Scalar::new("iterations", fit.iterations as f64))
            .scalar(Scalar::new("cohort_size", observed[0]))
            .scalar(Scalar::new("periods_observed", last as f64))
            .scalar(Scalar::new("mean_churn_probability", 100.0 * alpha / (alpha + beta)))
            .scalar(Scalar::new("next_retention_rate", 100.0 * sbg::retention_rate(alpha, beta, last + 1)))
            .scalar(Scalar::new("projected_survival", 100.0 * fitted[last + horizon]))
            .scalar(match sbg::expected_lifetime(alpha, beta) {
                Some(lifetime) => Scalar::new("expected_lifetime", lifetime),
                None => Scalar::undefined(
                    "expected_lifetime",
                    format!("alpha {alpha:.4} <= 1: the lifetime distribution's tail is too heavy for a finite mean"),
                ),
            })
            .scalar(match sbg::derl(alpha, beta, discount_rate) {
                Some(derl) => Scalar::new("derl", derl),
                None => Scalar::undefined("derl", "the discounted sum does not converge; use a discount_rate above 0"),
            });
        if observed.len() < 5 {
            output = output.warning(
                "few_periods",
                format!("only {last} observed periods after period 0: alpha and beta are weakly identified (see alpha_se, beta_se); projections are uncertain"),
            );
        }
        Ok(output.table("curve", curve_table(&observed, &fitted, alpha, beta)?))
    }
}

fn curve_table(
    observed: &[f64],
    fitted: &[f64],
    alpha: f64,
    beta: f64,
) -> Result<RecordBatch, MetricError> {
    let size = observed[0];
    let observed_at = |t: usize| observed.get(t).copied();
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "period",
            Arc::new((0..fitted.len()).map(|t| t as i64).collect::<Int64Array>()),
        ),
        (
            "observed_active",
            Arc::new(
                (0..fitted.len())
                    .map(|t| observed_at(t).map(|a| a as i64))
                    .collect::<Int64Array>(),
            ),
        ),
        (
            "observed_survival",
            Arc::new(
                (0..fitted.len())
                    .map(|t| observed_at(t).map(|a| 100.0 * a / size))
                    .collect::<Float64Array>(),
            ),
        ),
        (
            "fitted_survival",
            Arc::new(fitted.iter().map(|s| 100.0 * s).collect::<Float64Array>()),
        ),
        (
            "observed_retention",
            Arc::new(
                (0..fitted.len())
                    .map(
                        |t| match (t.checked_sub(1).and_then(observed_at), observed_at(t)) {
                            (Some(previous), Some(now)) if previous > 0.0 => {
                                Some(100.0 * now / previous)
                            }
                            _ => None,
                        },
                    )
                    .collect::<Float64Array>(),
            ),
        ),
        (
            "fitted_retention",
            Arc::new(
                (0..fitted.len())
                    .map(|t| (t > 0).then(|| 100.0 * sbg::retention_rate(alpha, beta, t)))
                    .collect::<Float64Array>(),
            ),
        ),
        (
            "projected",
            Arc::new(
                (0..fitted.len())
                    .map(|t| Some(t >= observed.len()))
                    .collect::<BooleanArray>(),
            ),
        ),
    ];
    result_table("curve", columns)
}

/// Fails on the first empty cell of `column`, naming the row.
pub(crate) fn no_empty(input: &Input<'_>, column: &str) -> Result<(), MetricError> {
    use mittari_sdk::arrow_array::Array as _;
    if let Some(values) = input.batch().column_by_name(column)
        && let Some(row) = (0..values.len()).find(|&i| values.is_null(i))
    {
        return Err(MetricError::invalid_value(
            column,
            row,
            format!("{column} is empty; give every row a value"),
        ));
    }
    Ok(())
}

mittari_sdk::export_plugin!(RetentionForecast);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(periods: &[i64], active: &[i64], expect: Result<Vec<f64>, &str>) {
        match (counts(periods, active), expect) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(error), Err(fragment)) => assert!(error.to_string().contains(fragment), "{error}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn orders_and_checks_the_counts() {
        check(&[2, 0, 1], &[50, 100, 70], Ok(vec![100.0, 70.0, 50.0]));
        check(
            &[0, 1, 1],
            &[100, 70, 60],
            Err("column period, row 2: period 1 appears again (first at row 1)"),
        );
        check(&[0, 2], &[100, 70], Err("period 1 is missing"));
        check(
            &[0, 1, 2],
            &[100, 70, 80],
            Err("column active, row 2: period 2 has 80 active customers, more than the 70"),
        );
        check(&[0, 1, 2], &[100, 100, 100], Err("no churn to fit"));
        check(&[0, 1], &[100, 80], Err("at least two later periods"));
        check(&[], &[], Err("the input has no rows"));
    }
}
