//! BG/BB: repeat transactions at discrete opportunities (Fader, Hardie & Shang 2010), from a
//! summary with one row per customer or per group of identical customers.

use std::sync::Arc;

use mittari_models::bgbb::{self, Opportunities};
use mittari_sdk::arrow_array::{Array as _, ArrayRef, Float64Array, Int64Array};
use mittari_sdk::prelude::*;
use rayon::prelude::*;

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
    let per_history: Vec<[f64; 4]> = (0..data.len())
        .into_par_iter()
        .map(|h| {
            let (x, t_x, n) = (data.x[h], data.t_x[h], data.n[h]);
            [
                model.p_alive(x, t_x, n),
                model.expected_transactions(future, x, t_x, n),
                model.p_no_purchase(window, x, t_x, n),
                model.p_alive_at(window, x, t_x, n),
            ]
        })
        .collect();
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
    .scalar(Scalar::new("expected_purchases", total))
    .scalar(Scalar::new("expected_active", weighted(&alive)))
    .scalar(Scalar::new("expected_lapsing", weighted(&no_purchase)))
    .scalar(Scalar::new(
        "expected_dropouts",
        weighted(&alive) - weighted(&alive_at_end),
    ))
    .table("customers", table)
    .table("purchase_curve", curve))
}
