//! The predictive CLV models: BG/NBD, MBG/NBD or Pareto/NBD for purchases, Gamma-Gamma for
//! their value.

use std::sync::Arc;

use mittari_models::bgnbd::{self, Variant};
use mittari_models::gamma_gamma::{self, GammaGamma};
use mittari_models::rfm::{self, TimeUnit};
use mittari_models::{Fit, FitError, Histories, PurchaseModel, pareto_nbd};
use mittari_sdk::arrow_array::{Array as _, ArrayRef, Float64Array, Int64Array, StringArray};
use mittari_sdk::prelude::*;
use rayon::prelude::*;

/// Days in a year and in a month, for discounting.
const DAYS_PER_YEAR: f64 = 365.25;
const DAYS_PER_MONTH: f64 = DAYS_PER_YEAR / 12.0;
/// |correlation| of frequency and spend above which the Gamma-Gamma assumption is doubtful.
const CORRELATION_WARNING: f64 = 0.3;
/// Points of the purchase curve at most.
const CURVE_POINTS: f64 = 200.0;

/// One customer's history, from either input form.
#[derive(Debug, Clone, PartialEq)]
struct Customer {
    /// The input row that names the customer: its first transaction, or its summary row.
    row: usize,
    x: f64,
    t_x: f64,
    t: f64,
    monetary_value: Option<f64>,
    weight: f64,
    holdout_frequency: Option<f64>,
}

/// The customers, their names (the input's customer_id column, read by `Customer::row`, so
/// ids are not copied per customer), and the holdout length in time units when there is a
/// holdout.
struct History<'a> {
    customers: Vec<Customer>,
    ids: Option<&'a StringArray>,
    holdout_length: Option<f64>,
}

fn time_unit(params: &Params) -> Result<TimeUnit, MetricError> {
    Ok(if params.str("time_unit")? == "day" {
        TimeUnit::Day
    } else {
        TimeUnit::Week
    })
}

fn is_summary(input: &Input<'_>) -> bool {
    ["frequency", "recency", "T"]
        .iter()
        .all(|c| input.has_column(c))
}

fn from_summary<'a>(input: &Input<'a>, params: &Params) -> Result<History<'a>, MetricError> {
    if params.get("holdout_start").is_some() {
        return Err(MetricError::invalid_parameter(
            "holdout_start",
            "a holdout needs a transaction log; a summary has no transactions to split",
        ));
    }
    if params.get("observation_end").is_some() {
        return Err(MetricError::invalid_parameter(
            "observation_end",
            "a summary is already measured to its end of observation (its T column); observation_end applies to a transaction log",
        ));
    }
    crate::no_empty_cells(input, &["frequency", "recency", "T"])?;
    let (x, t_x, t) = (
        input.double("frequency")?,
        input.double("recency")?,
        input.double("T")?,
    );
    let monetary = input.optional_double("monetary_value")?;
    let weight = input.optional_double("weight")?;
    let ids = input.optional_string("customer_id")?;
    let mut customers = Vec::with_capacity(input.num_rows());
    for row in 0..input.num_rows() {
        let (x, t_x, t) = (x.value(row), t_x.value(row), t.value(row));
        if x.fract() != 0.0 {
            return Err(MetricError::invalid_value(
                "frequency",
                row,
                format!("frequency {x} is not a whole number of repeat purchases"),
            ));
        }
        if t_x > t {
            return Err(MetricError::invalid_value(
                "recency",
                row,
                format!(
                    "recency {t_x} exceeds T {t}; the last purchase cannot be after the end of observation"
                ),
            ));
        }
        if x == 0.0 && t_x != 0.0 {
            return Err(MetricError::invalid_value(
                "recency",
                row,
                format!(
                    "recency is {t_x} but frequency is 0; without repeat purchases recency is 0"
                ),
            ));
        }
        let weight = weight
            .filter(|w| w.is_valid(row))
            .map_or(1.0, |w| w.value(row));
        if weight == 0.0 {
            continue;
        }
        customers.push(Customer {
            row,
            x,
            t_x,
            t,
            monetary_value: monetary.filter(|m| m.is_valid(row)).map(|m| m.value(row)),
            weight,
            holdout_frequency: None,
        });
    }
    Ok(History {
        customers,
        ids,
        holdout_length: None,
    })
}

fn from_transactions<'a>(
    input: &Input<'a>,
    params: &Params,
    unit: TimeUnit,
) -> Result<History<'a>, MetricError> {
    let columns = crate::transactions(input, params.str("model")?)?;
    let last = columns
        .timestamp
        .values()
        .iter()
        .copied()
        .max()
        .unwrap_or(0);
    let observation_end = match params.get("observation_end") {
        Some(_) => params.timestamp_micros("observation_end")?,
        None => last,
    };
    let holdout_start = match params.get("holdout_start") {
        Some(_) => {
            let start = params.timestamp_micros("holdout_start")?;
            if start >= observation_end {
                return Err(MetricError::invalid_parameter(
                    "holdout_start",
                    "holdout_start must be before the end of observation (observation_end, or the last transaction)",
                ));
            }
            Some(start)
        }
        None => None,
    };
    let summaries = rfm::summarize(
        |i| columns.customer.value(i),
        columns.timestamp.values(),
        columns.amount.values(),
        unit,
        observation_end,
        holdout_start,
    )
    .map_err(|e| MetricError::invalid_input(e.to_string()))?;
    let customers = summaries
        .into_iter()
        .map(|s| Customer {
            row: s.first_row as usize,
            x: f64::from(s.frequency),
            t_x: f64::from(s.recency),
            t: f64::from(s.t),
            monetary_value: Some(s.monetary_value),
            weight: 1.0,
            holdout_frequency: s.holdout_frequency.map(f64::from),
        })
        .collect();
    let holdout_length =
        holdout_start.map(|start| (unit.period(observation_end) - unit.period(start)) as f64);
    Ok(History {
        customers,
        ids: Some(columns.customer),
        holdout_length,
    })
}

/// A fitted purchase model, with its parameters' names as the papers write them.
struct PurchaseFit {
    model: Box<dyn PurchaseModel>,
    fit: Fit<4>,
    names: [&'static str; 4],
}

fn fit_purchases(name: &str, histories: &Histories) -> Result<PurchaseFit, MetricError> {
    let (model, fit, names, label): (Box<dyn PurchaseModel>, _, _, _) = match name {
        "pareto_nbd" => {
            let (model, fit) =
                pareto_nbd::fit_histories(histories).map_err(|e| fit_error("Pareto/NBD", e))?;
            (
                Box::new(model),
                fit,
                ["r", "alpha", "s", "beta"],
                "Pareto/NBD",
            )
        }
        _ => {
            let variant = if name == "mbgnbd" {
                Variant::Modified
            } else {
                Variant::Bg
            };
            let (model, fit) = bgnbd::fit_histories(histories, variant)
                .map_err(|e| fit_error(variant.name(), e))?;
            (
                Box::new(model),
                fit,
                ["r", "alpha", "a", "b"],
                variant.name(),
            )
        }
    };
    check_converged(label, &fit)?;
    Ok(PurchaseFit { model, fit, names })
}

pub(crate) fn fit_error(model: &str, error: FitError) -> MetricError {
    MetricError::invalid_input(format!(
        "the {model} model cannot be fitted to this input: {error}"
    ))
}

pub(crate) fn check_converged<const N: usize>(
    model: &str,
    fit: &Fit<N>,
) -> Result<(), MetricError> {
    if fit.converged {
        Ok(())
    } else {
        Err(MetricError::invalid_input(format!(
            "the {model} fit did not converge ({}); the data may not follow the model",
            fit.status
        )))
    }
}

pub(crate) fn with_errors<const N: usize>(
    mut output: Output,
    names: [&str; N],
    fit: &Fit<N>,
) -> Output {
    for (i, name) in names.iter().enumerate() {
        output = output.scalar(Scalar::new(name, fit.params[i]));
    }
    for (i, name) in names.iter().enumerate() {
        let se_name = format!("{name}_se");
        output = output.scalar(match fit.standard_errors {
            Some(se) => Scalar::new(&se_name, se[i]),
            None => Scalar::undefined(
                &se_name,
                "the Hessian at the estimate is not negative definite",
            ),
        });
    }
    output
}

/// Per-customer predictions.
#[derive(Debug, Clone, Copy, Default)]
struct Prediction {
    p_alive: f64,
    expected_purchases: f64,
    expected_spend: Option<f64>,
    clv: Option<f64>,
    predicted_holdout: Option<f64>,
}

/// Expected purchases to the horizon, undiscounted and discounted: Σ over monthly steps of the
/// expected purchases in the step, discounted at the annual rate to the end of the step.
fn discounted_purchases(
    model: &dyn PurchaseModel,
    c: &Customer,
    horizon: f64,
    unit: TimeUnit,
    discount_rate: f64,
) -> Option<(f64, f64)> {
    let days_per_unit = match unit {
        TimeUnit::Day => 1.0,
        TimeUnit::Week => 7.0,
    };
    let step = DAYS_PER_MONTH / days_per_unit;
    let mut total = 0.0;
    let mut previous = 0.0;
    let mut at = 0.0;
    while at < horizon {
        at = (at + step).min(horizon);
        let cumulative = model.expected_purchases(at, c.x, c.t_x, c.t)?;
        let years = at * days_per_unit / DAYS_PER_YEAR;
        total += (cumulative - previous) / (1.0 + discount_rate).powf(years);
        previous = cumulative;
    }
    // The last step ends at the horizon: `previous` is the undiscounted expectation there.
    Some((previous, total))
}

pub(crate) fn compute(input: &Input<'_>, params: &Params) -> Result<Output, MetricError> {
    let unit = time_unit(params)?;
    let history = if is_summary(input) {
        from_summary(input, params)?
    } else {
        from_transactions(input, params, unit)?
    };
    if history.customers.is_empty() {
        return Err(MetricError::invalid_input(
            "the input has no customers to fit",
        ));
    }
    let histories = Histories::compress(
        history
            .customers
            .iter()
            .map(|c| (c.x, c.t_x, c.t, c.weight)),
    );
    let spend_model = params.str("spend_model")?;
    // Refuse what cannot work before the fit, which may take a while.
    if spend_model == "gamma_gamma" && history.customers.iter().all(|c| c.monetary_value.is_none())
    {
        return Err(MetricError::invalid_parameter(
            "spend_model",
            "gamma_gamma needs monetary values: a transaction log, or a monetary_value column in the summary",
        ));
    }
    let PurchaseFit { model, fit, names } = fit_purchases(params.str("model")?, &histories)?;
    let model = model.as_ref();

    let spend = match spend_model {
        "gamma_gamma" => {
            // Each summary row weighs in as the number of customers it stands for.
            let rows = history
                .customers
                .iter()
                .filter_map(|c| Some((c.x, c.monetary_value?, c.weight)));
            let (gg, gg_fit, spend) = gamma_gamma::fit_spend(rows).map_err(|e| match e {
                gamma_gamma::SpendError::Fit(e) => fit_error("Gamma-Gamma", e),
                other => MetricError::invalid_input(other.to_string()),
            })?;
            check_converged("Gamma-Gamma", &gg_fit)?;
            Some((gg, gg_fit, gamma_gamma::frequency_value_correlation(&spend)))
        }
        _ => None,
    };

    let horizon = params.f64("horizon")?;
    let margin = params.f64("margin")?;
    let discount_rate = params.f64("discount_rate")?;
    let gg: Option<GammaGamma> = spend.as_ref().map(|(gg, _, _)| *gg);
    let predictions: Vec<Prediction> = history
        .customers
        .par_iter()
        .map(|c| {
            let (expected_purchases, expected_spend, clv) = match gg {
                Some(gg) => {
                    let value = gg.expected_mean_value(c.x, c.monetary_value.unwrap_or(0.0))?;
                    let (expected, discounted) =
                        discounted_purchases(model, c, horizon, unit, discount_rate)?;
                    (expected, Some(value), Some(discounted * value * margin))
                }
                None => (
                    model.expected_purchases(horizon, c.x, c.t_x, c.t)?,
                    None,
                    None,
                ),
            };
            let predicted_holdout = match history.holdout_length {
                Some(length) => Some(model.expected_purchases(length, c.x, c.t_x, c.t)?),
                None => None,
            };
            Some(Prediction {
                p_alive: model.p_alive(c.x, c.t_x, c.t),
                expected_purchases,
                expected_spend,
                clv,
                predicted_holdout,
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            MetricError::failed(
                "a prediction did not converge (hypergeometric series); report this input",
            )
        })?;

    let weights: Vec<f64> = history.customers.iter().map(|c| c.weight).collect();
    let total_weight: f64 = weights.iter().sum();
    let weighted = |f: &dyn Fn(&Prediction) -> Option<f64>| -> Option<f64> {
        predictions
            .iter()
            .zip(&weights)
            .map(|(p, w)| f(p).map(|v| v * w))
            .sum::<Option<f64>>()
    };
    let mut output = with_errors(Output::new(), names, &fit)
        .scalar(Scalar::new("log_likelihood", fit.log_likelihood))
        .scalar(Scalar::new("iterations", fit.iterations as f64))
        .scalar(Scalar::new("customers", total_weight))
        .scalar(Scalar::new(
            "expected_purchases",
            weighted(&|p| Some(p.expected_purchases)).unwrap_or(0.0),
        ));
    match &spend {
        Some((_, gg_fit, correlation)) => {
            output = with_errors(output, ["p", "q", "gamma"], gg_fit)
                .scalar(Scalar::new("spend_log_likelihood", gg_fit.log_likelihood))
                .scalar(Scalar::new(
                    "expected_spend",
                    weighted(&|p| p.expected_spend).unwrap_or(0.0) / total_weight,
                ));
            let clv_total = weighted(&|p| p.clv).unwrap_or(0.0);
            output = output
                .scalar(Scalar::new("clv", clv_total / total_weight))
                .scalar(Scalar::new("clv_total", clv_total));
            if let Some(rho) = correlation.filter(|rho| rho.abs() >= CORRELATION_WARNING) {
                output = output.warning(
                    "frequency_value_correlation",
                    format!(
                        "frequency and monetary value correlate (rho = {rho:.2}) among repeat buyers; the Gamma-Gamma model assumes they are independent, so expected spend may be biased"
                    ),
                );
            }
        }
        None => {
            let reason =
                "no spend model: add spend_model=gamma_gamma to value the expected purchases";
            output = output
                .scalar(Scalar::undefined("clv", reason))
                .scalar(Scalar::undefined("clv_total", reason));
        }
    }
    if history.holdout_length.is_some() {
        let actual: f64 = history
            .customers
            .iter()
            .map(|c| c.holdout_frequency.unwrap_or(0.0) * c.weight)
            .sum();
        output = output
            .scalar(Scalar::new("holdout_purchases", actual))
            .scalar(Scalar::new(
                "predicted_holdout_purchases",
                weighted(&|p| p.predicted_holdout).unwrap_or(0.0),
            ));
    }
    let top = usize::try_from(params.i64("top")?).unwrap_or(0);
    Ok(output
        .table("customers", customer_table(&history, &predictions, top)?)
        .table(
            "purchase_curve",
            purchase_curve(model, horizon, total_weight)?,
        )
        .table(
            "purchase_distribution",
            purchase_distribution(model, horizon)?,
        ))
}

/// Every customer (or the `top` ones), highest CLV first, or most expected purchases without a
/// spend model.
fn customer_table(
    history: &History,
    predictions: &[Prediction],
    top: usize,
) -> Result<RecordBatch, MetricError> {
    let mut order: Vec<usize> = (0..predictions.len()).collect();
    let key = |i: usize| {
        predictions[i]
            .clv
            .unwrap_or(predictions[i].expected_purchases)
    };
    order.sort_by(|&i, &j| key(j).total_cmp(&key(i)).then(i.cmp(&j)));
    if top > 0 {
        order.truncate(top);
    }
    let c = &history.customers;
    let float = |f: &dyn Fn(usize) -> Option<f64>| {
        Arc::new(order.iter().map(|&i| f(i)).collect::<Float64Array>()) as ArrayRef
    };
    let mut columns: Vec<(&str, ArrayRef)> = Vec::new();
    match history.ids {
        Some(ids) => {
            let names = order.iter().map(|&i| {
                let row = c[i].row;
                Some(if ids.is_valid(row) {
                    ids.value(row).to_owned()
                } else {
                    format!("row {row}")
                })
            });
            columns.push(("customer_id", Arc::new(names.collect::<StringArray>())));
        }
        None => {
            let rows = order.iter().map(|&i| c[i].row as i64);
            columns.push(("row", Arc::new(rows.collect::<Int64Array>())));
        }
    }
    columns.push(("frequency", float(&|i| Some(c[i].x))));
    columns.push(("recency", float(&|i| Some(c[i].t_x))));
    columns.push(("T", float(&|i| Some(c[i].t))));
    columns.push(("monetary_value", float(&|i| c[i].monetary_value)));
    columns.push(("p_alive", float(&|i| Some(predictions[i].p_alive))));
    columns.push((
        "expected_purchases",
        float(&|i| Some(predictions[i].expected_purchases)),
    ));
    if predictions.iter().any(|p| p.clv.is_some()) {
        columns.push(("expected_spend", float(&|i| predictions[i].expected_spend)));
        columns.push(("clv", float(&|i| predictions[i].clv)));
    }
    if history.holdout_length.is_some() {
        columns.push(("holdout_purchases", float(&|i| c[i].holdout_frequency)));
        columns.push((
            "predicted_holdout_purchases",
            float(&|i| predictions[i].predicted_holdout),
        ));
    }
    result_table("customers", columns)
}

/// E[X(t)] of one new customer and of as many new customers as the input has, t = 0 to the horizon.
fn purchase_curve(
    model: &dyn PurchaseModel,
    horizon: f64,
    customers: f64,
) -> Result<RecordBatch, MetricError> {
    let step = (horizon / CURVE_POINTS).max(1.0);
    let mut times = Vec::new();
    let mut t = 0.0;
    while t < horizon {
        times.push(t);
        t += step;
    }
    times.push(horizon);
    let per_customer: Vec<f64> = times
        .iter()
        .map(|&t| model.population_expected_purchases(t))
        .collect::<Option<_>>()
        .ok_or_else(|| MetricError::failed("the purchase curve did not converge"))?;
    result_table(
        "purchase_curve",
        vec![
            ("t", Arc::new(Float64Array::from(times))),
            (
                "expected_purchases_per_customer",
                Arc::new(Float64Array::from(per_customer.clone())),
            ),
            (
                "expected_purchases_all",
                Arc::new(
                    per_customer
                        .iter()
                        .map(|e| e * customers)
                        .collect::<Float64Array>(),
                ),
            ),
        ],
    )
}

/// P(X(horizon) = n) for a new customer, n = 0 until the probabilities left are below 1e-6.
fn purchase_distribution(
    model: &dyn PurchaseModel,
    horizon: f64,
) -> Result<RecordBatch, MetricError> {
    let probabilities = model.purchase_distribution(horizon, 1000);
    let mut cumulative = 0.0;
    let kept: Vec<f64> = probabilities
        .into_iter()
        .take_while(|p| {
            let keep = cumulative < 1.0 - 1e-6;
            cumulative += p;
            keep
        })
        .collect();
    result_table(
        "purchase_distribution",
        vec![
            (
                "purchases",
                Arc::new((0..kept.len() as i64).collect::<Int64Array>()),
            ),
            ("probability", Arc::new(Float64Array::from(kept))),
        ],
    )
}
