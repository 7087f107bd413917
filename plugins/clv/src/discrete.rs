//! BG/BB: repeat transactions at discrete opportunities (Fader, Hardie & Shang 2010), from a
//! summary with one row per customer or per group of identical customers.

use std::sync::Arc;

use mittari_models::bgbb::{self, BgBb, Opportunities};
use mittari_models::uncertainty::{LogCovariance, Scale, interval};
use mittari_sdk::arrow_array::{Array as _, ArrayRef, Float64Array, Int64Array};
use mittari_sdk::prelude::*;
use rayon::prelude::*;

use crate::intervals::Level;
use crate::predictive::{
    CUSTOMERS_PER_PARAMETER, REPEATERS_PER_PARAMETER, check_converged, curve_table, fit_error,
    rank, with_errors,
};
use mittari_models::Support;

/// Opportunities a history may span: the likelihood sums over each one after the last
/// transaction, so this bounds the work per customer.
const MAX_PERIODS: f64 = 100_000.0;
/// Terms of one likelihood evaluation over all distinct histories (see
/// `bgbb::likelihood_terms`). A fit at this bound takes seconds on one core (measured: 2.7 CPU-s
/// for 5 histories of 100 000 opportunities, release build); it runs in the heavy lane and
/// stops when cancelled.
const MAX_LIKELIHOOD_TERMS: f64 = 500_000.0;

struct Row {
    x: f64,
    t_x: f64,
    n: f64,
    weight: f64,
    input_row: usize,
}

fn whole(column: &str, row: usize, value: f64) -> Result<(), MetricError> {
    if value.fract() == 0.0 {
        Ok(())
    } else {
        Err(MetricError::invalid_value(
            column,
            row,
            format!("{column} {value} is not a whole number of opportunities"),
        ))
    }
}

fn read(input: &Input<'_>) -> Result<Vec<Row>, MetricError> {
    let missing: Vec<&str> = ["frequency", "recency", "n_periods"]
        .into_iter()
        .filter(|c| !input.has_column(c))
        .collect();
    if !missing.is_empty() {
        return Err(MetricError::invalid_input(format!(
            "model bgbb needs one row per customer with columns frequency, recency (the opportunity of the last transaction, 0 without any) and n_periods (opportunities observed); missing: {}",
            missing.join(", ")
        )));
    }
    crate::no_empty_cells(input, &["frequency", "recency", "n_periods"])?;
    let (x, t_x, n) = (
        input.double("frequency")?,
        input.double("recency")?,
        input.double("n_periods")?,
    );
    let weight = input.optional_double("weight")?;
    let mut rows = Vec::with_capacity(input.num_rows());
    for row in 0..input.num_rows() {
        let (x, t_x, n) = (x.value(row), t_x.value(row), n.value(row));
        whole("frequency", row, x)?;
        whole("recency", row, t_x)?;
        whole("n_periods", row, n)?;
        if n > MAX_PERIODS {
            return Err(MetricError::invalid_value(
                "n_periods",
                row,
                format!(
                    "n_periods {n} is more than {MAX_PERIODS} opportunities; use a continuous-time model (bgnbd, pareto_nbd) for such histories"
                ),
            ));
        }
        if t_x > n {
            return Err(MetricError::invalid_value(
                "recency",
                row,
                format!("recency {t_x} is after the last opportunity observed (n_periods {n})"),
            ));
        }
        if x > t_x {
            return Err(MetricError::invalid_value(
                "frequency",
                row,
                format!(
                    "frequency {x} is more than the {t_x} opportunities up to the last transaction (recency)"
                ),
            ));
        }
        if (x == 0.0) != (t_x == 0.0) {
            return Err(MetricError::invalid_value(
                "recency",
                row,
                format!(
                    "recency is {t_x} with frequency {x}; recency is 0 exactly when there was no transaction"
                ),
            ));
        }
        let weight = weight
            .filter(|w| w.is_valid(row))
            .map_or(1.0, |w| w.value(row));
        if weight > 0.0 {
            rows.push(Row {
                x,
                t_x,
                n,
                weight,
                input_row: row,
            });
        }
    }
    Ok(rows)
}

pub(crate) fn compute(input: &Input<'_>, params: &Params) -> Result<Output, MetricError> {
    if params.str("spend_model")? != "none" {
        return Err(MetricError::invalid_parameter(
            "spend_model",
            "model bgbb predicts transactions only; value them with the mean amount per transaction, or use bgnbd with gamma_gamma",
        ));
    }
    let rows = read(input)?;
    if rows.is_empty() {
        return Err(MetricError::invalid_input(
            "the input has no customers to fit",
        ));
    }
    let (data, history_of) =
        Opportunities::compress_indexed(rows.iter().map(|r| (r.x, r.t_x, r.n, r.weight)));
    let terms = bgbb::likelihood_terms(&data);
    if terms > MAX_LIKELIHOOD_TERMS {
        return Err(MetricError::invalid_column(
            "n_periods",
            format!(
                "the {} distinct histories span {terms} opportunities after their last transactions, more than \
                 the {MAX_LIKELIHOOD_TERMS} a BG/BB fit handles; BG/BB is for few opportunities (years, quarters): \
                 count coarser opportunities, or use a continuous-time model (bgnbd, pareto_nbd)",
                data.len()
            ),
        ));
    }
    let (model, fit) =
        bgbb::fit_opportunities(&data, input.cancellation()).map_err(|e| fit_error("BG/BB", e))?;
    check_converged("BG/BB", &fit)?;
    let future = params.f64("horizon")?;
    let window = match params.get("churn_window") {
        Some(_) => params.f64("churn_window")?,
        None => future,
    };
    // Predictions depend on the history alone: once per distinct history (few, for few
    // opportunities), then looked up per row.
    let predict = |model: &BgBb, h: usize| -> [f64; 4] {
        let (x, t_x, n) = (data.x[h], data.t_x[h], data.n[h]);
        [
            model.p_alive(x, t_x, n),
            model.expected_transactions(future, x, t_x, n),
            model.p_no_purchase(window, x, t_x, n),
            model.p_alive_at(window, x, t_x, n),
        ]
    };
    let per_history: Vec<[f64; 4]> = (0..data.len())
        .into_par_iter()
        .map(|h| predict(&model, h))
        .collect();
    // Intervals: the delta method on the fit's covariance, each distinct history's four
    // predictions recomputed at four shifted parameter vectors; and each customer's
    // prediction interval of transactions from their distribution.
    let level = Level::of(params)?;
    let mut unavailable = None;
    let covariance = match level {
        Some(_) => {
            let covariance = LogCovariance::of(&fit);
            if covariance.is_none() {
                unavailable = Some("the BG/BB fit has no covariance (its Hessian is not negative definite), so nothing it predicts has an interval".to_owned());
            }
            covariance
        }
        None => None,
    };
    // Per distinct history, each prediction's gradient in the log-parameters.
    let gradients: Option<Vec<[[f64; 4]; 4]>> = covariance.as_ref().map(|covariance| {
        let shifted: Vec<BgBb> = covariance.shifted().map(BgBb::from).to_vec();
        (0..data.len())
            .into_par_iter()
            .map(|h| {
                let moved: Vec<[f64; 4]> = shifted.iter().map(|m| predict(m, h)).collect();
                std::array::from_fn(|f| {
                    LogCovariance::<4>::gradient(
                        per_history[h][f],
                        &std::array::from_fn(|i| moved[i][f]),
                    )
                })
            })
            .collect()
    });
    let purchase_range: Option<Vec<(f64, f64)>> = level.map(|level| {
        let (low, high) = ((1.0 - level.level) / 2.0, (1.0 + level.level) / 2.0);
        (0..data.len())
            .into_par_iter()
            .map(|h| {
                let (x, n) = (data.x[h], data.n[h]);
                let alive = per_history[h][0];
                let distribution = model.purchase_distribution_if_alive(
                    future,
                    x,
                    n,
                    future.floor().max(0.0) as usize,
                );
                let quantile = |q: f64| -> f64 {
                    let mut cumulative = 1.0 - alive;
                    for (k, p) in distribution.iter().enumerate() {
                        cumulative += alive * p;
                        if cumulative >= q - 1e-12 {
                            return k as f64;
                        }
                    }
                    (distribution.len() - 1) as f64
                };
                (quantile(low), quantile(high))
            })
            .collect()
    });
    let column = |k: usize| -> Vec<f64> {
        history_of
            .iter()
            .map(|&h| per_history[h as usize][k])
            .collect()
    };
    let (alive, expected, no_purchase, alive_at_end) = (column(0), column(1), column(2), column(3));
    let customers: f64 = rows.iter().map(|r| r.weight).sum();
    let weighted =
        |values: &[f64]| -> f64 { rows.iter().zip(values).map(|(r, v)| r.weight * v).sum() };
    let total = weighted(&expected);

    let top = usize::try_from(params.i64("top")?).unwrap_or(0);
    let order: Vec<usize> = rank(&expected, top)
        .into_iter()
        .map(|i| i as usize)
        .collect();
    let float = |f: &dyn Fn(usize) -> f64| {
        Arc::new(order.iter().map(|&i| f(i)).collect::<Float64Array>()) as ArrayRef
    };
    let table = result_table(
        "customers",
        vec![
            (
                "row",
                Arc::new(
                    order
                        .iter()
                        .map(|&i| rows[i].input_row as i64)
                        .collect::<Int64Array>(),
                ),
            ),
            ("frequency", float(&|i| rows[i].x)),
            ("recency", float(&|i| rows[i].t_x)),
            ("n_periods", float(&|i| rows[i].n)),
            ("weight", float(&|i| rows[i].weight)),
            ("p_alive", float(&|i| alive[i])),
            ("expected_purchases", float(&|i| expected[i])),
            ("p_no_purchase", float(&|i| no_purchase[i])),
            ("p_alive_at_window_end", float(&|i| alive_at_end[i])),
        ],
    )?;
    // With intervals: each prediction's ends after it, and the transactions' range.
    let table = match (level, &covariance, &gradients) {
        (Some(level), Some(covariance), Some(gradients)) => {
            let ends = |f: usize, values: &[f64], scale: Scale, upper: bool| -> ArrayRef {
                Arc::new(
                    order
                        .iter()
                        .map(|&i| {
                            let h = history_of[i] as usize;
                            let variance = covariance.variance(&gradients[h][f]);
                            interval(values[i], variance, level.z, scale)
                                .map(|(l, u)| if upper { u } else { l })
                        })
                        .collect::<Float64Array>(),
                )
            };
            let ranges = purchase_range.as_deref().unwrap_or(&[]);
            let range = |upper: bool| -> ArrayRef {
                Arc::new(
                    order
                        .iter()
                        .map(|&i| {
                            ranges
                                .get(history_of[i] as usize)
                                .map(|&(l, u)| if upper { u } else { l })
                        })
                        .collect::<Float64Array>(),
                )
            };
            let mut columns: Vec<(String, ArrayRef)> = table
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .zip(table.columns().iter().cloned())
                .collect();
            let mut with_ends = Vec::new();
            for (name, column) in columns.drain(..) {
                let field = match name.as_str() {
                    "p_alive" => Some((0, alive.as_slice(), Scale::Probability)),
                    "expected_purchases" => Some((1, expected.as_slice(), Scale::Positive)),
                    "p_no_purchase" => Some((2, no_purchase.as_slice(), Scale::Probability)),
                    "p_alive_at_window_end" => {
                        Some((3, alive_at_end.as_slice(), Scale::Probability))
                    }
                    _ => None,
                };
                with_ends.push((name.clone(), column));
                if let Some((f, values, scale)) = field {
                    with_ends.push((format!("{name}_lower"), ends(f, values, scale, false)));
                    with_ends.push((format!("{name}_upper"), ends(f, values, scale, true)));
                    if name == "expected_purchases" {
                        with_ends.push(("purchases_lower".to_owned(), range(false)));
                        with_ends.push(("purchases_upper".to_owned(), range(true)));
                    }
                }
            }
            result_table(
                "customers",
                with_ends
                    .iter()
                    .map(|(name, column)| (name.as_str(), Arc::clone(column)))
                    .collect(),
            )?
        }
        _ => table,
    };
    // A total's variance from the summed gradients: the customers' errors move together.
    let total_variance = |f: &dyn Fn(&[[f64; 4]; 4]) -> [f64; 4]| -> Option<f64> {
        let (covariance, gradients) = (covariance.as_ref()?, gradients.as_ref()?);
        let mut sum = [0.0; 4];
        for (h, g) in gradients.iter().enumerate() {
            let g = f(g);
            for (s, v) in sum.iter_mut().zip(g) {
                *s += data.weight[h] * v;
            }
        }
        Some(covariance.variance(&sum))
    };
    let with = |scalar: Scalar, variance: Option<f64>| match level {
        Some(level) => level.scalar(scalar, variance, Scale::Positive),
        None => scalar,
    };
    // E[X(n)] of a new customer over as many opportunities as the longest history plus the
    // horizon (at most about 200 points): the curve the model fits and projects.
    let longest = rows.iter().map(|r| r.n).fold(0.0, f64::max) + future;
    let step = (longest / 200.0).ceil().max(1.0);
    let mut points: Vec<f64> = (0..)
        .map(|i| i as f64 * step)
        .take_while(|&n| n < longest)
        .collect();
    points.push(longest);
    let curve: Vec<f64> = points
        .iter()
        .map(|&n| model.population_expected_transactions(n))
        .collect();
    let curve = curve_table(points, curve, customers)?;
    let repeat_buyers: f64 = rows.iter().filter(|r| r.x > 0.0).map(|r| r.weight).sum();
    let support = [
        Support::per_parameter("customers", customers, CUSTOMERS_PER_PARAMETER, 4),
        Support::per_parameter(
            "customers with a transaction",
            repeat_buyers,
            REPEATERS_PER_PARAMETER,
            4,
        ),
    ];
    Ok(with_errors(
        Output::new(),
        ("BG/BB", ["alpha", "beta", "gamma", "delta"]),
        &fit,
        &support,
    )
    .scalar(Scalar::new("log_likelihood", fit.log_likelihood))
    .scalar(Scalar::new("iterations", fit.iterations as f64))
    .scalar(Scalar::new("customers", customers))
    .scalar(with(
        Scalar::new("expected_purchases", total),
        total_variance(&|g| g[1]),
    ))
    .scalar(with(
        Scalar::new("expected_active", weighted(&alive)),
        total_variance(&|g| g[0]),
    ))
    .scalar(with(
        Scalar::new("expected_lapsing", weighted(&no_purchase)),
        total_variance(&|g| g[2]),
    ))
    .scalar(with(
        Scalar::new(
            "expected_dropouts",
            weighted(&alive) - weighted(&alive_at_end),
        ),
        total_variance(&|g| std::array::from_fn(|i| g[0][i] - g[3][i])),
    ))
    .table("customers", table)
    .table("purchase_curve", curve))
    .map(|output| match unavailable {
        Some(reason) => output.warning("interval_unavailable", reason),
        None => output,
    })
}
