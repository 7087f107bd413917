//! Customer lifetime value from a transaction log: the fitted purchase model's P(alive) and
//! expected purchases over frequency × recency, calibration against a holdout, the cumulative
//! tracking curve, and how value is spread across customers. Average order value too.

use std::collections::{BTreeMap, HashMap};

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, RecordBatch};
use mittari_engine::{MetricResults, ParamValue, TableSpec};
use mittari_models::PurchaseModel;
use mittari_models::bgnbd::{BgNbd, Variant};
use mittari_models::pareto_nbd::ParetoNbd;
use mittari_models::rfm::TimeUnit;

use crate::chart::{self, Axes, Chart, Series};
use crate::context::{Context, Skip};
use crate::page::{Numbers, Section, format_value, grouped};
use crate::table;

#[cfg(test)]
const DAY_MICROS: i64 = 86_400_000_000;
/// Rows and columns of a frequency × recency matrix at most; wider histories are binned.
const MATRIX_CELLS: usize = 36;
/// Calibration frequencies shown one by one; higher ones are pooled.
const HOLDOUT_BINS: usize = 8;

/// What the values of `model` are, for the section's lead and its card: the predictive models
/// value purchases at `--param margin` (1, revenue, by default) and do not read a margin
/// column; the descriptive ones use the column. A reader must never take revenue for margin.
fn value_basis(model: &str, params: &BTreeMap<String, ParamValue>) -> (String, &'static str) {
    let predictive = matches!(model, "bgnbd" | "mbgnbd" | "pareto_nbd" | "bgbb");
    if !predictive {
        return (
            "margin when the data has a margin column or --param margin is given, otherwise \
             revenue"
                .to_owned(),
            "margin or revenue, see below",
        );
    }
    let discount = match params.get("discount_rate") {
        Some(ParamValue::Double(d)) => *d,
        _ => 0.1,
    };
    let percent = |fraction: f64| {
        let p = 100.0 * fraction;
        if (p - p.round()).abs() < 1e-9 {
            format!("{p:.0}")
        } else {
            format!("{p:.1}")
        }
    };
    let discounted = format!("discounted at {} % a year", percent(discount));
    match params.get("margin") {
        Some(ParamValue::Double(m)) if *m < 1.0 => (
            format!(
                "margin: {} % of each purchase's amount (--param margin), {discounted}",
                percent(*m)
            ),
            "margin",
        ),
        _ => (
            format!(
                "revenue, not margin: the {model} model values purchases at --param margin (1 \
                 by default) and does not read a margin column; pass --param margin=0.3 for \
                 a 30 % margin; {discounted}",
            ),
            "revenue",
        ),
    }
}

pub(crate) fn clv(cx: &Context<'_>) -> Result<Vec<Section>, Skip> {
    let descriptor = cx.descriptor("clv", &["customer_id", "timestamp", "amount"])?;
    let defaults = [
        ("model", "bgnbd".to_owned()),
        ("spend_model", "gamma_gamma".to_owned()),
    ];
    // Every customer's value goes into the distribution, whatever --param top says.
    let params = cx.params(descriptor, &defaults, &["top"])?;
    let log = cx.read(descriptor, &[])?;
    let outcome = cx.compute("clv", &params, log.clone(), &[])?;
    let results = outcome.results.ok_or(Skip::NotApplicable)?;
    let mut model_name = match params.get("model") {
        Some(ParamValue::String(name)) => name.clone(),
        _ => "historic".to_owned(),
    };
    // model=auto: the results are the chosen model's.
    if let Some(comparison) = table::result_table(&results, "model_comparison") {
        let models = table::texts(comparison, "model");
        let chosen = table::texts(comparison, "chosen");
        if let Some(i) = chosen.iter().position(|c| c == "true") {
            model_name = models[i].clone();
        }
    }
    // With covariates every profile of customers has its own parameters, and the ones
    // reported are the reference profile's: charts drawn from them alone would describe
    // nobody in particular, so the model-based charts are left out.
    let with_covariates = table::result_table(&results, "coefficients").is_some();
    let model = if with_covariates {
        None
    } else {
        fitted_model(&model_name, &results)
    };
    let unit = match params.get("time_unit") {
        Some(ParamValue::String(unit)) => TimeUnit::from_name(unit).unwrap_or(TimeUnit::Week),
        _ => TimeUnit::Week,
    };
    let instant = |key: &str| match params.get(key) {
        Some(ParamValue::Timestamp(at)) => Some(*at),
        _ => None,
    };
    let holdout_start = instant("holdout_start");
    let customers = table::result_table(&results, "customers");
    let (basis, card) = value_basis(&model_name, &params);
    let mut section = Section::new(
        "clv",
        "Customer lifetime value",
        format!(
            "Customer lifetime value by the {model_name} model{spend}: each customer's \
             purchases so far (how many, and how recent the last) tell how likely they are to \
             still be a customer and how much they will buy, and so what they are worth. \
             Values are {basis}.",
            spend = match params.get("spend_model") {
                Some(ParamValue::String(s)) if s == "gamma_gamma" => " with Gamma-Gamma spend",
                _ => "",
            }
        ),
    );
    // The lead already says what the values are.
    for warning in results
        .warnings
        .iter()
        .filter(|w| w.code != "clv_is_revenue")
    {
        section.warn(&warning.message);
    }
    // A fit that does not identify its parameters gives numbers but no finding: its table
    // is shown with the warning, and nothing that follows from it is drawn or put among the
    // key figures. The purchase model's predictions stand without the spend model; values
    // need both.
    let warned = |code: &str| results.warnings.iter().any(|w| w.code == code);
    let identified = !warned("fit_not_identified");
    let valued = identified && !warned("spend_fit_not_identified");
    if valued {
        section.headline(
            &format!("lifetime value of all customers ({card})"),
            table::scalar(&results, "clv_total"),
            "currency",
        );
    }
    section.numbers(Numbers::outputs(
        match cx.user_param("holdout_start") {
            Some(start) => format!(
                "{} transactions, model {model_name} fitted on the purchases before {start}",
                outcome.rows
            ),
            None => format!("{} transactions, model {model_name}", outcome.rows),
        },
        descriptor,
        &results,
        &[
            "customers",
            "clv_total",
            "clv",
            "expected_purchases",
            "expected_spend",
            "residual_value_total",
            "dert_total",
            "expected_active",
            "expected_lapsing",
            "expected_dropouts",
            "expected_purchases_lost",
            "churn_cost",
            "holdout_purchases",
            "predicted_holdout_purchases",
            "r",
            "alpha",
            "a",
            "b",
            "s",
            "beta",
            "p",
            "q",
            "gamma",
        ],
    ));
    if !identified {
        return Ok(vec![section]);
    }
    if let Some(customers) = customers.filter(|_| valued) {
        section.numbers(top_customers(customers, descriptor.table_spec("customers")));
        if let Some(chart) = top_interval_chart(customers, &params, card)? {
            section.chart(chart);
        }
    }
    if let Some(coefficients) = table::result_table(&results, "coefficients") {
        section.numbers(coefficient_numbers(
            coefficients,
            &results,
            params.contains_key("dynamic_covariates"),
        ));
    }
    // Without one model's parameters (covariates), the histogram stands alone; with them it
    // follows the P(alive) charts.
    if model.is_none()
        && let Some(chart) = repeat_purchase_chart(&results)?
    {
        section.chart(chart);
    }
    if let (Some(model), Some(customers)) = (&model, customers) {
        let horizon = match params.get("horizon") {
            Some(ParamValue::Double(h)) => *h,
            _ => 52.0,
        };
        for chart in matrices(model.as_ref(), customers, horizon, unit)? {
            section.chart(chart);
        }
        if let Some(chart) = repeat_purchase_chart(&results)? {
            section.chart(chart);
        }
        if holdout_start.is_some()
            && let Some(chart) = holdout_chart(customers)?
        {
            section.chart(chart);
        }
        let end = instant("observation_end").or_else(|| latest(&log));
        if let Some(end) = end {
            let calibration_end = holdout_start.unwrap_or(end + 1);
            if let Some(tracking) = tracking(&log, unit, calibration_end, end, model.as_ref()) {
                section.chart(tracking_chart(&tracking, unit, holdout_start, false)?);
                section.chart(tracking_chart(&tracking, unit, holdout_start, true)?);
            }
        }
    }
    if !valued {
        return Ok(vec![section]);
    }
    if let Some(customers) = customers {
        let values: Vec<f64> = table::numbers(customers, "clv")
            .into_iter()
            .flatten()
            .collect();
        if let Some(spread) = Distribution::of(&values) {
            section.headline(
                "of value with the top 10 % of customers",
                Some(spread.top_decile_share),
                "%",
            );
            section.numbers(Numbers {
                caption: "How value is spread".into(),
                header: vec!["measure".into(), "value".into()],
                rows: vec![
                    vec![
                        "top 10 % of customers' share of value".into(),
                        format_value(Some(spread.top_decile_share), "%"),
                    ],
                    vec!["Gini coefficient".into(), grouped(spread.gini, 3)],
                ],
            });
            section.chart(decile_chart(&spread)?);
            section.chart(lorenz_chart(&spread)?);
        }
    }
    Ok(vec![section])
}

/// The covariates' coefficients, as a reader asks of them: what multiplies what, how sure,
/// and whether the covariates improve the fit at all.
fn coefficient_numbers(
    coefficients: &RecordBatch,
    results: &MetricResults,
    over_time: bool,
) -> Numbers {
    let process = table::texts(coefficients, "process");
    let covariate = table::texts(coefficients, "covariate");
    let multiplier = table::numbers(coefficients, "multiplier");
    let coefficient = table::numbers(coefficients, "coefficient");
    let se = table::numbers(coefficients, "standard_error");
    let p = table::numbers(coefficients, "p_value");
    let edge = table::texts(coefficients, "at_boundary");
    let what = |process: &str| match process {
        "purchase" => "purchase rate",
        "attrition" => "dropout",
        "spend" => "spend per purchase",
        _ => "purchase rate and dropout",
    };
    let rows = (0..coefficients.num_rows())
        .map(|i| {
            vec![
                covariate[i].clone(),
                what(&process[i]).to_owned(),
                if edge[i] == "true" {
                    "not identified (at the edge of the range)".to_owned()
                } else {
                    format!("× {}", grouped(multiplier[i].unwrap_or(f64::NAN), 3))
                },
                format!(
                    "{} ± {}",
                    grouped(coefficient[i].unwrap_or(f64::NAN), 3),
                    se[i].map_or("—".to_owned(), |s| grouped(s, 3))
                ),
                p[i].map_or("—".to_owned(), significant_p),
            ]
        })
        .collect();
    let test = match (
        table::scalar(results, "covariates_lr_statistic"),
        table::scalar(results, "covariates_lr_df"),
        table::scalar(results, "covariates_lr_p_value"),
    ) {
        (Some(statistic), Some(df), Some(p)) => format!(
            "; a likelihood-ratio test of all of them against none: χ² = {} on {} df, p {}",
            grouped(statistic, 2),
            df,
            if p < 0.001 {
                "below 0.001".to_owned()
            } else {
                format!("= {p:.3}")
            }
        ),
        _ => String::new(),
    };
    Numbers {
        caption: format!(
            "Why customers differ: each covariate multiplies a process by exp(coefficient) per unit (a level against the first level){test}. {}, so the charts drawn from one set (P(alive) by history, tracking) are left out",
            if over_time {
                "The covariates change over time (covariates_over_time), and with them each customer's rates"
            } else {
                "Each profile of customers has its own parameters"
            }
        ),
        header: vec![
            "covariate".into(),
            "multiplies".into(),
            "by".into(),
            "coefficient ± standard error".into(),
            "p".into(),
        ],
        rows,
    }
}

/// Customers the top table lists.
const TOP_CUSTOMERS: usize = 10;

/// The most valuable customers, with what the model says of them, each column in the unit
/// the metric declares for it.
fn top_customers(customers: &RecordBatch, spec: Option<&TableSpec>) -> Numbers {
    let ids = table::texts(customers, "customer_id");
    let clv = table::numbers(customers, "clv");
    let mut order: Vec<usize> = (0..customers.num_rows())
        .filter(|&i| clv[i].is_some())
        .collect();
    order.sort_by(|&a, &b| clv[b].unwrap_or(0.0).total_cmp(&clv[a].unwrap_or(0.0)));
    order.truncate(TOP_CUSTOMERS);
    let columns: Vec<(&str, &str)> = [
        "frequency",
        "recency",
        "T",
        "p_alive",
        "p_no_purchase",
        "expected_purchases",
        "clv",
        "residual_value",
    ]
    .into_iter()
    .filter(|name| customers.column_by_name(name).is_some())
    .map(|name| {
        let unit = spec
            .and_then(|spec| spec.column(name))
            .map_or("", |column| column.unit.as_str());
        (name, unit)
    })
    .collect();
    let values: Vec<Vec<Option<f64>>> = columns
        .iter()
        .map(|(name, _)| table::numbers(customers, name))
        .collect();
    let mut header = vec!["customer".to_owned()];
    header.extend(columns.iter().map(|(name, _)| (*name).to_owned()));
    Numbers {
        caption: format!("The {} most valuable customers", order.len()),
        header,
        rows: order
            .iter()
            .map(|&i| {
                let mut row = vec![ids.get(i).cloned().unwrap_or_default()];
                row.extend(
                    columns
                        .iter()
                        .zip(&values)
                        .map(|((_, unit), column)| format_value(column[i], unit)),
                );
                row
            })
            .collect(),
    }
}

/// The most valuable customers' CLV with its confidence interval (with `interval`), and the
/// prediction interval of the value of the purchases they will actually make where the
/// customers table has it: how sure each value is, drawn.
fn top_interval_chart(
    customers: &RecordBatch,
    params: &BTreeMap<String, ParamValue>,
    card: &str,
) -> Result<Option<Chart>, Skip> {
    let (Some(ParamValue::Double(level)), true) = (
        params.get("interval"),
        customers.column_by_name("clv_lower").is_some(),
    ) else {
        return Ok(None);
    };
    let ids = table::texts(customers, "customer_id");
    let clv = table::numbers(customers, "clv");
    let (lower, upper) = (
        table::numbers(customers, "clv_lower"),
        table::numbers(customers, "clv_upper"),
    );
    let mut order: Vec<usize> = (0..customers.num_rows())
        .filter(|&i| clv[i].is_some() && lower[i].is_some() && upper[i].is_some())
        .collect();
    order.sort_by(|&a, &b| clv[b].unwrap_or(0.0).total_cmp(&clv[a].unwrap_or(0.0)));
    order.truncate(TOP_CUSTOMERS);
    if order.is_empty() {
        return Ok(None);
    }
    let labels: Vec<String> = order.iter().map(|&i| ids[i].clone()).collect();
    let points: Vec<(f64, f64, f64)> = order
        .iter()
        .map(|&i| {
            (
                lower[i].unwrap_or(0.0),
                clv[i].unwrap_or(0.0),
                upper[i].unwrap_or(0.0),
            )
        })
        .collect();
    let method = match params.get("uncertainty") {
        Some(ParamValue::String(m)) if m == "bootstrap" => {
            "the percentiles of refits on resampled customers (bootstrap)"
        }
        _ => "the delta method on the fits' covariance",
    };
    let id = "clv-top-intervals";
    Ok(Some(Chart {
        svg: chart::intervals(id, ("customer", "lifetime value"), &labels, &points)?,
        id: id.into(),
        title: format!(
            "How sure the top values are: {:.0} % intervals",
            100.0 * level
        ),
        caption: format!(
            "The {} most valuable customers' lifetime value ({card}) with its {:.0} % \
             confidence interval, from {method}: the range the expected value lies in given \
             how precisely the model's parameters are known. What a customer will actually \
             spend varies far more (purchase_value_lower and _upper in the customers table).",
            order.len(),
            100.0 * level
        ),
    }))
}

/// The purchase model the plugin fitted, rebuilt from its parameters.
fn fitted_model(name: &str, results: &MetricResults) -> Option<Box<dyn PurchaseModel>> {
    let get = |key: &str| table::scalar(results, key);
    match name {
        "bgnbd" | "mbgnbd" => Some(Box::new(BgNbd {
            r: get("r")?,
            alpha: get("alpha")?,
            a: get("a")?,
            b: get("b")?,
            variant: if name == "bgnbd" {
                Variant::Bg
            } else {
                Variant::Modified
            },
        })),
        "pareto_nbd" => Some(Box::new(ParetoNbd {
            r: get("r")?,
            alpha: get("alpha")?,
            s: get("s")?,
            beta: get("beta")?,
        })),
        _ => None,
    }
}

/// The start of period `period` of `unit` as a reader names it: `2024-03-04` for a day or
/// a week (its Monday), `2024-03-04 13:00` for an hour, `2024-03` for a month, `2024 Q1`, `2024`.
fn period_label(unit: TimeUnit, period: f64) -> String {
    let period = period.round() as i64;
    let date = |day: i64, format: &str| {
        chrono::DateTime::from_timestamp(day * 86_400, 0)
            .map(|d| d.format(format).to_string())
            .unwrap_or_default()
    };
    let year_and_month = |month: i64| (1970 + month.div_euclid(12), month.rem_euclid(12) + 1);
    match unit {
        TimeUnit::Hour => chrono::DateTime::from_timestamp(period * 3600, 0)
            .map(|d| d.format("%Y-%m-%d %H:00").to_string())
            .unwrap_or_default(),
        TimeUnit::Day => date(period, "%Y-%m-%d"),
        // 1970-01-01 was a Thursday: week w starts on day 7w − 3, a Monday.
        TimeUnit::Week => date(7 * period - 3, "%Y-%m-%d"),
        TimeUnit::Month => {
            let (year, month) = year_and_month(period);
            format!("{year}-{month:02}")
        }
        TimeUnit::Quarter => {
            let (year, month) = year_and_month(3 * period);
            format!("{year} Q{}", (month - 1) / 3 + 1)
        }
        TimeUnit::Year => format!("{}", 1970 + period),
    }
}

/// The latest timestamp of the log.
fn latest(log: &RecordBatch) -> Option<i64> {
    log.column_by_name("timestamp")?
        .as_primitive::<TimestampMicrosecondType>()
        .iter()
        .flatten()
        .max()
}

/// Steps that cover `0..=max` in at most [`MATRIX_CELLS`] values.
fn axis_steps(max: f64) -> Vec<f64> {
    let max = max.max(0.0).ceil();
    let step = (max / (MATRIX_CELLS - 1) as f64).ceil().max(1.0);
    let mut steps = Vec::new();
    let mut v = 0.0;
    while v <= max {
        steps.push(v);
        v += step;
    }
    steps
}

/// P(alive) and expected purchases over a grid of frequency × recency, for a customer
/// observed as long as the longest-observed one (T = the largest T). Impossible histories
/// (more repeat periods than periods of recency) are blank.
fn matrices(
    model: &dyn PurchaseModel,
    customers: &RecordBatch,
    horizon: f64,
    unit: TimeUnit,
) -> Result<Vec<Chart>, Skip> {
    let t = table::numbers(customers, "T")
        .into_iter()
        .flatten()
        .fold(0.0, f64::max);
    let max_frequency = table::numbers(customers, "frequency")
        .into_iter()
        .flatten()
        .fold(0.0, f64::max);
    if t <= 0.0 {
        return Ok(Vec::new());
    }
    let recencies = axis_steps(t);
    // Highest frequency at the top.
    let frequencies: Vec<f64> = axis_steps(max_frequency).into_iter().rev().collect();
    let possible = |x: f64, t_x: f64| t_x >= x && (x > 0.0 || t_x == 0.0);
    let grid = |f: &dyn Fn(f64, f64) -> Option<f64>| -> Vec<Vec<Option<f64>>> {
        frequencies
            .iter()
            .map(|&x| {
                recencies
                    .iter()
                    .map(|&t_x| if possible(x, t_x) { f(x, t_x) } else { None })
                    .collect()
            })
            .collect()
    };
    let alive = grid(&|x, t_x| Some(model.p_alive(x, t_x, t)).filter(|p| p.is_finite()));
    let expected = grid(&|x, t_x| {
        model
            .expected_purchases(horizon, x, t_x, t)
            .filter(|e| e.is_finite())
    });
    let x_labels: Vec<String> = recencies.iter().map(|v| format!("{v}")).collect();
    let y_labels: Vec<String> = frequencies.iter().map(|v| format!("{v}")).collect();
    let unit = unit.name();
    let axes_x = format!("recency: {unit}s from first to last purchase");
    let axes = (axes_x.as_str(), "frequency: repeat purchases");
    Ok(vec![
        Chart {
            svg: chart::heatmap(
                "clv-p-alive",
                axes,
                &x_labels,
                &y_labels,
                &alive,
                ("P(alive)", Some((0.0, 1.0))),
            )?,
            id: "clv-p-alive".into(),
            title: "Probability a customer is still active".into(),
            caption: format!(
                "P(alive) for a customer first seen {t} {unit}s ago, by how often (up) and how \
                 recently (right) they bought. Frequent buyers who have not bought for a long \
                 time (upper left) have most likely left. Blank cells are histories that cannot \
                 happen."
            ),
        },
        Chart {
            svg: chart::heatmap(
                "clv-expected-purchases",
                axes,
                &x_labels,
                &y_labels,
                &expected,
                ("purchases", None),
            )?,
            id: "clv-expected-purchases".into(),
            title: format!("Expected purchases in the next {horizon} {unit}s"),
            caption: format!(
                "The purchases the model expects in the next {horizon} {unit}s from a customer \
                 first seen {t} {unit}s ago, by frequency and recency: the best customers \
                 bought often and recently (upper right)."
            ),
        },
    ])
}

/// Mean holdout purchases by calibration frequency, observed against predicted.
fn holdout_chart(customers: &RecordBatch) -> Result<Option<Chart>, Skip> {
    let frequency = table::numbers(customers, "frequency");
    let actual = table::numbers(customers, "holdout_purchases");
    let predicted = table::numbers(customers, "predicted_holdout_purchases");
    let Some(bins) = holdout_bins(&frequency, &actual, &predicted) else {
        return Ok(None);
    };
    let labels = open_bin_labels(bins.len());
    let id = "clv-holdout";
    Ok(Some(Chart {
        svg: chart::bars(
            id,
            (
                "purchases in the calibration period",
                "mean purchases in the holdout",
            ),
            &labels,
            &[
                ("observed".into(), bins.iter().map(|b| b.0).collect()),
                ("predicted".into(), bins.iter().map(|b| b.1).collect()),
            ],
        )?,
        id: id.into(),
        title: "Calibration against the holdout".into(),
        caption: "Customers grouped by their repeat purchases before the holdout: the purchases \
                  they made in the holdout on average, against the model's prediction made \
                  without seeing them. Bars of equal height mean the model predicts well."
            .into(),
    }))
}

/// Customers by repeat purchases in calibration, observed against the model's expectation,
/// with the χ² test in the caption; `None` without the `repeat_purchases` table.
fn repeat_purchase_chart(results: &MetricResults) -> Result<Option<Chart>, Skip> {
    let Some(table) = table::result_table(results, "repeat_purchases") else {
        return Ok(None);
    };
    let (observed, expected) = (
        table::numbers(table, "observed"),
        table::numbers(table, "expected"),
    );
    let labels = open_bin_labels(observed.len());
    let test = match (
        table::scalar(results, "chi_square"),
        table::scalar(results, "chi_square_df"),
        table::scalar(results, "chi_square_p_value"),
    ) {
        (Some(statistic), Some(df), Some(p)) => format!(
            " Pearson's χ² = {} on {df} degrees of freedom, p = {}: {}",
            grouped(statistic, 2),
            significant_p(p),
            if p < 0.05 {
                "the model does not reproduce how often these customers buy (p below 0.05)."
            } else {
                "no evidence that the model misses how often these customers buy."
            }
        ),
        _ => " Too few customers for the χ² test.".to_owned(),
    };
    let id = "clv-repeat-purchases";
    Ok(Some(Chart {
        svg: chart::bars(
            id,
            ("repeat purchases in the calibration period", "customers"),
            &labels,
            &[
                (
                    "observed".into(),
                    observed.iter().map(|v| v.unwrap_or(0.0)).collect(),
                ),
                (
                    "expected".into(),
                    expected.iter().map(|v| v.unwrap_or(0.0)).collect(),
                ),
            ],
        )?,
        id: id.into(),
        title: "How well the model fits: repeat purchases".into(),
        caption: format!(
            "Customers by their number of repeat purchases in the data the model was fitted to, \
             against the number the fitted model expects (each customer over their own time \
             observed).{test}"
        ),
    }))
}

/// Labels of purchase-count bins 0, 1, …, the last open: "0", "1", …, "7+".
fn open_bin_labels(bins: usize) -> Vec<String> {
    (0..bins)
        .map(|i| {
            if i + 1 == bins {
                format!("{i}+")
            } else {
                i.to_string()
            }
        })
        .collect()
}

/// A p-value as a reader takes it: three decimals, or "below 0.001".
fn significant_p(p: f64) -> String {
    if p < 0.001 {
        "below 0.001".to_owned()
    } else {
        format!("{p:.3}")
    }
}

/// (mean observed, mean predicted) holdout purchases per calibration frequency 0, 1, …, with
/// the last bin pooling [`HOLDOUT_BINS`] − 1 and more; `None` without holdout columns.
fn holdout_bins(
    frequency: &[Option<f64>],
    actual: &[Option<f64>],
    predicted: &[Option<f64>],
) -> Option<Vec<(f64, f64)>> {
    let mut sums = [(0.0, 0.0, 0usize); HOLDOUT_BINS];
    for ((x, a), p) in frequency.iter().zip(actual).zip(predicted) {
        let (Some(x), Some(a), Some(p)) = (x, a, p) else {
            continue;
        };
        let bin = (*x as usize).min(HOLDOUT_BINS - 1);
        sums[bin].0 += a;
        sums[bin].1 += p;
        sums[bin].2 += 1;
    }
    let last = sums.iter().rposition(|s| s.2 > 0)?;
    Some(
        sums[..=last]
            .iter()
            .map(|&(a, p, n)| {
                if n == 0 {
                    (0.0, 0.0)
                } else {
                    (a / n as f64, p / n as f64)
                }
            })
            .collect(),
    )
}

/// Cumulative repeat purchases by period: observed, and what the model expects of the same
/// customers joining when they did.
#[derive(Debug, Clone, PartialEq)]
struct Tracking {
    periods: Vec<i64>,
    observed: Vec<f64>,
    expected: Vec<f64>,
}

/// The tracking curve of the customers who joined before `calibration_end`, up to `end`.
/// Repeat purchases count distinct periods after a customer's first, as the model does.
fn tracking(
    log: &RecordBatch,
    unit: TimeUnit,
    calibration_end: i64,
    end: i64,
    model: &dyn PurchaseModel,
) -> Option<Tracking> {
    let ids = log.column_by_name("customer_id")?.as_string_opt::<i32>()?;
    let times = log
        .column_by_name("timestamp")?
        .as_primitive::<TimestampMicrosecondType>();
    // One hashing pass numbers the customers; the rest works on numbers.
    let mut index: HashMap<&str, u32> = HashMap::new();
    let mut first: Vec<i64> = Vec::new();
    let mut rows: Vec<(u32, i64)> = Vec::with_capacity(log.num_rows());
    for row in 0..log.num_rows() {
        if ids.is_null(row) || times.is_null(row) || times.value(row) > end {
            continue;
        }
        let at = times.value(row);
        let next = first.len() as u32;
        let customer = *index.entry(ids.value(row)).or_insert(next);
        if customer == next {
            first.push(at);
        }
        first[customer as usize] = first[customer as usize].min(at);
        rows.push((customer, at));
    }
    // (customer, period) of each purchase of a customer who joined in calibration, once.
    let mut purchases: Vec<(u32, i64)> = rows
        .into_iter()
        .filter(|&(customer, _)| first[customer as usize] < calibration_end)
        .map(|(customer, at)| (customer, unit.period(at)))
        .collect();
    purchases.sort_unstable();
    purchases.dedup();
    let start = purchases.iter().map(|p| p.1).min()?;
    let last = unit.period(end);
    let span = usize::try_from(last - start + 1).ok()?;
    let mut births = vec![0.0f64; span];
    let mut repeats = vec![0.0f64; span];
    for (i, &(customer, period)) in purchases.iter().enumerate() {
        // Sorted by customer, then period: a customer's first row is their first period.
        let slot = if i == 0 || purchases[i - 1].0 != customer {
            &mut births
        } else {
            &mut repeats
        };
        slot[(period - start) as usize] += 1.0;
    }
    // E[X(t)] of a new customer, t = 0..span.
    let curve: Vec<f64> = (0..span)
        .map(|t| model.population_expected_purchases(t as f64))
        .collect::<Option<Vec<f64>>>()?;
    let mut observed = Vec::with_capacity(span);
    let mut expected = Vec::with_capacity(span);
    let mut total = 0.0;
    for p in 0..span {
        total += repeats[p];
        observed.push(total);
        expected.push((0..=p).map(|b| births[b] * curve[p - b]).sum());
    }
    Some(Tracking {
        periods: (start..=last).collect(),
        observed,
        expected,
    })
}

/// The tracking chart: cumulative repeat purchases, or with `incremental` those of each
/// period (the same numbers differenced), where a season or a holdout's drift shows that the
/// cumulative curve smooths over.
fn tracking_chart(
    tracking: &Tracking,
    unit: TimeUnit,
    holdout_start: Option<i64>,
    incremental: bool,
) -> Result<Chart, Skip> {
    let per_period = |values: &[f64]| -> Vec<f64> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| if i == 0 { v } else { v - values[i - 1] })
            .collect()
    };
    let (observed, expected) = if incremental {
        (
            per_period(&tracking.observed),
            per_period(&tracking.expected),
        )
    } else {
        (tracking.observed.clone(), tracking.expected.clone())
    };
    let points = |values: &[f64]| -> Vec<(f64, f64)> {
        tracking
            .periods
            .iter()
            .zip(values)
            .map(|(&p, &v)| (p as f64, v))
            .collect()
    };
    let series = [
        Series {
            name: "observed".into(),
            points: points(&observed),
            color: 0,
            dashed: false,
            dots: false,
        },
        Series {
            name: "model".into(),
            points: points(&expected),
            color: 1,
            dashed: true,
            dots: false,
        },
    ];
    let top = observed
        .iter()
        .chain(&expected)
        .fold(0.0f64, |a, &b| a.max(b));
    let label = |v: f64| period_label(unit, v);
    let rule = holdout_start.map(|at| (unit.period(at) as f64, " holdout"));
    let id = if incremental {
        "clv-tracking-incremental"
    } else {
        "clv-tracking"
    };
    let y = if incremental {
        format!("repeat purchases per {}", unit.name())
    } else {
        "cumulative repeat purchases".to_owned()
    };
    Ok(Chart {
        svg: chart::lines(
            id,
            &Axes {
                x: unit.name(),
                y: &y,
                rule,
                x_label: Some(&label),
                legend_left: true,
            },
            &series,
            0.0..top * 1.05 + 1.0,
        )?,
        id: id.into(),
        title: if incremental {
            format!("Tracking: repeat purchases per {}", unit.name())
        } else {
            "Tracking: repeat purchases over time".into()
        },
        caption: format!(
            "{} repeat purchases ({}s with a purchase after a customer's first) of the \
             customers who joined {}: observed, and what the model expects of customers joining \
             when they did.{}{}",
            if incremental {
                "Each period's"
            } else {
                "Cumulative"
            },
            unit.name(),
            if holdout_start.is_some() {
                "before the holdout"
            } else {
                "in the data"
            },
            if holdout_start.is_some() {
                " Right of the rule the model has not seen the purchases it predicts."
            } else {
                ""
            },
            if incremental {
                " The last period ends where the data do, so it may be a partial one."
            } else {
                ""
            }
        ),
    })
}

/// How value is spread over customers.
#[derive(Debug, Clone, PartialEq)]
struct Distribution {
    /// Share of the total (%) of each tenth of customers, the most valuable first.
    deciles: Vec<f64>,
    /// (share of customers, share of value) from the least valuable up, both in %.
    lorenz: Vec<(f64, f64)>,
    top_decile_share: f64,
    gini: f64,
}

/// Points a Lorenz curve is drawn with at most.
const LORENZ_POINTS: usize = 200;

impl Distribution {
    /// `None` for fewer than 10 customers or no positive total.
    fn of(values: &[f64]) -> Option<Distribution> {
        let n = values.len();
        let total: f64 = values.iter().sum();
        if n < 10 || total <= 0.0 || !total.is_finite() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        // Tenths as equal as can be: the first n % 10 have one customer more.
        let mut deciles = Vec::with_capacity(10);
        let mut at = 0;
        for d in 0..10 {
            let len = n / 10 + usize::from(d < n % 10);
            deciles.push(100.0 * sorted[at..at + len].iter().sum::<f64>() / total);
            at += len;
        }
        sorted.reverse();
        let mut lorenz = vec![(0.0, 0.0)];
        let mut cumulative = 0.0;
        let mut area = 0.0;
        let step = n.div_ceil(LORENZ_POINTS).max(1);
        for (i, v) in sorted.iter().enumerate() {
            let before = cumulative;
            cumulative += v;
            // Trapezoids under the curve, in shares.
            area += (before + cumulative) / (2.0 * total * n as f64);
            if (i + 1) % step == 0 || i + 1 == n {
                lorenz.push((
                    100.0 * (i + 1) as f64 / n as f64,
                    100.0 * cumulative / total,
                ));
            }
        }
        Some(Distribution {
            top_decile_share: deciles[0],
            deciles,
            lorenz,
            gini: 1.0 - 2.0 * area,
        })
    }
}

fn decile_chart(spread: &Distribution) -> Result<Chart, Skip> {
    let labels: Vec<String> = (1..=10).map(|d| format!("{}", d * 10)).collect();
    let id = "clv-deciles";
    Ok(Chart {
        svg: chart::bars(
            id,
            (
                "customers by lifetime value, most valuable tenth first (top %)",
                "share of total value (%)",
            ),
            &labels,
            &[("share".into(), spread.deciles.clone())],
        )?,
        id: id.into(),
        title: "Value by decile of customers".into(),
        caption: format!(
            "Customers ranked by lifetime value and cut into tenths, the most valuable first \
             (10 = the top 10 %): the share of all value each tenth holds. The top tenth holds \
             {}.",
            format_value(Some(spread.top_decile_share), "%")
        ),
    })
}

fn lorenz_chart(spread: &Distribution) -> Result<Chart, Skip> {
    let series = [
        Series {
            name: "customers".into(),
            points: spread.lorenz.clone(),
            color: 0,
            dashed: false,
            dots: false,
        },
        Series {
            name: "equal value".into(),
            points: vec![(0.0, 0.0), (100.0, 100.0)],
            color: 7,
            dashed: true,
            dots: false,
        },
    ];
    let id = "clv-lorenz";
    Ok(Chart {
        svg: chart::lines(
            id,
            &Axes {
                x: "share of customers, least valuable first (%)",
                y: "share of value (%)",
                legend_left: true,
                ..Axes::default()
            },
            &series,
            0.0..100.0,
        )?,
        id: id.into(),
        title: "Lorenz curve of lifetime value".into(),
        caption: format!(
            "How unequal value is: the curve's height at x is the share of value held by the \
             least valuable x % of customers. The further it sags below the diagonal, the more \
             value sits with few customers (Gini coefficient {}).",
            grouped(spread.gini, 3)
        ),
    })
}

/// Average order value: numbers only (its distribution is in the CLV section).
pub(crate) fn aov(cx: &Context<'_>) -> Result<Vec<Section>, Skip> {
    let descriptor = cx.descriptor("aov", &["customer_id", "timestamp", "amount"])?;
    let params = cx.params(descriptor, &[], &[])?;
    let outcome = cx.compute("aov", &params, cx.read(descriptor, &[])?, &[])?;
    let results = outcome.results.ok_or(Skip::NotApplicable)?;
    let mut section = Section::new(
        "aov",
        "Average order value",
        "What an order is worth: the mean, and the median and 90th percentile, which a few \
         very large orders do not move.",
    );
    section.headline(
        "average order value",
        table::scalar(&results, "aov"),
        "currency",
    );
    section.numbers(Numbers::outputs(
        format!("{} orders", outcome.rows),
        descriptor,
        &results,
        &[
            "aov",
            "median_order_value",
            "p90_order_value",
            "orders",
            "customers",
            "orders_per_customer",
            "revenue",
        ],
    ));
    Ok(vec![section])
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, StringArray, TimestampMicrosecondArray};

    use super::*;

    #[test]
    fn deciles_lorenz_and_gini_by_hand() {
        // 20 customers: two worth 45 each, eighteen worth 0.5: total 99.
        let mut values = vec![45.0, 45.0];
        values.extend([0.5; 18]);
        let spread = Distribution::of(&values).unwrap_or_else(|| panic!("a distribution"));
        assert!((spread.top_decile_share - 100.0 * 90.0 / 99.0).abs() < 1e-12);
        assert!((spread.deciles[1] - 100.0 / 99.0).abs() < 1e-12);
        assert!((spread.deciles.iter().sum::<f64>() - 100.0).abs() < 1e-12);
        // Gini of the sorted values by the mean-difference formula:
        // sum over pairs |xi - xj| / (2 n² mean) = 2·2·18·44.5 / (2·400·4.95) = 0.80909…
        assert!((spread.gini - 2.0 * 2.0 * 18.0 * 44.5 / (2.0 * 400.0 * 4.95)).abs() < 1e-12);
        assert_eq!(spread.lorenz.first(), Some(&(0.0, 0.0)));
        assert_eq!(spread.lorenz.last(), Some(&(100.0, 100.0)));
        assert!((spread.lorenz[18].1 - 100.0 * 9.0 / 99.0).abs() < 1e-12);
    }

    #[test]
    fn too_few_or_worthless_customers_have_no_distribution() {
        assert_eq!(Distribution::of(&[1.0; 9]), None);
        assert_eq!(Distribution::of(&[0.0; 20]), None);
    }

    #[test]
    fn tenths_of_uneven_counts_differ_by_one_customer() {
        // 12 customers of value 1: tenths of 2, 2, then eight of 1.
        let spread = Distribution::of(&[1.0; 12]).unwrap_or_else(|| panic!("a distribution"));
        let expect: Vec<f64> = [2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
            .iter()
            .map(|v| 100.0 * v / 12.0)
            .collect();
        assert_eq!(spread.deciles, expect);
        assert!(spread.gini.abs() < 1e-12);
    }

    #[test]
    fn weeks_start_on_monday() {
        let at = |date: &str| {
            chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
                .unwrap_or_else(|e| panic!("{e}"))
                .and_hms_opt(12, 0, 0)
                .unwrap_or_else(|| panic!("noon"))
                .and_utc()
                .timestamp_micros()
        };
        let week = TimeUnit::Week;
        // 2024-03-04 is a Monday, 2024-03-10 the Sunday after.
        assert_eq!(week.period(at("2024-03-04")), week.period(at("2024-03-10")));
        assert_eq!(
            week.period(at("2024-03-04")),
            week.period(at("2024-03-03")) + 1
        );
        let label = |unit: TimeUnit, day: &str| period_label(unit, unit.period(at(day)) as f64);
        assert_eq!(label(week, "2024-03-07"), "2024-03-04");
        assert_eq!(label(TimeUnit::Day, "1969-12-31"), "1969-12-31");
        assert_eq!(label(TimeUnit::Hour, "2024-03-07"), "2024-03-07 12:00");
        assert_eq!(label(TimeUnit::Month, "2024-02-29"), "2024-02");
        assert_eq!(label(TimeUnit::Month, "1969-12-31"), "1969-12");
        assert_eq!(label(TimeUnit::Quarter, "2024-05-07"), "2024 Q2");
        assert_eq!(label(TimeUnit::Year, "2024-12-31"), "2024");
    }

    #[test]
    fn holdout_bins_pool_the_frequent_buyers() {
        let f = [Some(0.0), Some(0.0), Some(1.0), Some(9.0), Some(7.0), None];
        let a = [
            Some(0.0),
            Some(1.0),
            Some(2.0),
            Some(5.0),
            Some(3.0),
            Some(1.0),
        ];
        let p = [
            Some(0.5),
            Some(0.5),
            Some(1.5),
            Some(6.0),
            Some(2.0),
            Some(1.0),
        ];
        let bins = holdout_bins(&f, &a, &p).unwrap_or_else(|| panic!("bins"));
        assert_eq!(bins.len(), HOLDOUT_BINS);
        assert_eq!(bins[0], (0.5, 0.5));
        assert_eq!(bins[1], (2.0, 1.5));
        assert_eq!(bins[2], (0.0, 0.0));
        assert_eq!(bins[7], (4.0, 4.0));
        assert_eq!(holdout_bins(&[None], &[None], &[None]), None);
    }

    /// E[X(t)] = t: a model under which every customer makes one repeat purchase per period.
    struct OnePerPeriod;

    impl PurchaseModel for OnePerPeriod {
        fn p_alive(&self, _: f64, _: f64, _: f64) -> f64 {
            1.0
        }
        fn purchase_rate_if_alive(&self, _: f64, _: f64) -> f64 {
            1.0
        }
        fn expected_purchases_with_p_alive(
            &self,
            _: f64,
            horizon: f64,
            _: f64,
            _: f64,
            _: f64,
        ) -> Option<f64> {
            Some(horizon)
        }
        fn expected_purchases_if_alive_at(
            &self,
            horizons: &[f64],
            _: f64,
            _: f64,
        ) -> Option<Vec<f64>> {
            Some(horizons.to_vec())
        }
        fn p_no_purchase_with_p_alive(
            &self,
            _: f64,
            window: f64,
            _: f64,
            _: f64,
            _: f64,
        ) -> Option<f64> {
            Some((-window).exp())
        }
        fn p_alive_at_with_p_alive(&self, _: f64, _: f64, _: f64, _: f64, _: f64) -> Option<f64> {
            Some(1.0)
        }
        fn p_alive_back_at(&self, _: f64, _: f64, _: f64, _: f64) -> f64 {
            1.0
        }
        fn purchase_distribution_if_alive(&self, _: f64, _: f64, _: f64, _: usize) -> Vec<f64> {
            Vec::new()
        }
        fn population_expected_purchases(&self, t: f64) -> Option<f64> {
            Some(t)
        }
        fn purchase_distribution(&self, _: f64, _: usize) -> Vec<f64> {
            Vec::new()
        }
    }

    #[test]
    fn the_tracking_curve_counts_repeat_days_of_customers_who_joined_in_calibration() {
        let day = |d: i64| 19_723 * DAY_MICROS + d * DAY_MICROS + 3_600_000_000;
        // a joins on day 0 and buys again on days 0 (same day: not a repeat), 2 and 3;
        // b joins on day 1 and buys on day 3; c joins on day 3, after calibration ends.
        let rows = [
            ("a", 0),
            ("a", 0),
            ("b", 1),
            ("a", 2),
            ("a", 3),
            ("b", 3),
            ("c", 3),
        ];
        let log = RecordBatch::try_from_iter([
            (
                "customer_id",
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
            ),
            (
                "timestamp",
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| day(r.1)))
                        .with_timezone("UTC"),
                ) as ArrayRef,
            ),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let tracking = tracking(
            &log,
            TimeUnit::Day,
            day(3) - 7_200_000_000,
            day(3),
            &OnePerPeriod,
        )
        .unwrap_or_else(|| panic!("a curve"));
        assert_eq!(tracking.periods, vec![19_723, 19_724, 19_725, 19_726]);
        assert_eq!(tracking.observed, vec![0.0, 0.0, 1.0, 3.0]);
        // a expects t repeats t days after day 0, b t − 1 after day 1.
        assert_eq!(tracking.expected, vec![0.0, 1.0, 3.0, 5.0]);
    }
}
