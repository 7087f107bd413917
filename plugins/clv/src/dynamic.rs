//! `dynamic_covariates=…`: Pareto/NBD with covariates that change over time (seasons,
//! campaigns, marketing contacts), read from the table input `covariates_over_time`, one row
//! per customer and period (CLVTools' `pnbd` with dynamic covariates; Bachmann, Meierer & Näf
//! 2021). The fit and the predictions are `mittari_models::dynamic`'s; this module prepares the
//! data as CLVTools does and presents the results as the other models' are.
//!
//! Preparation: time runs continuously from each customer's first purchase, in time units of
//! `time_unit`'s length (a week is 7 days; a month 30.44); purchases on the same day (the same
//! hour with `time_unit=hour`) are one purchase, as CLVTools aggregates them. A covariate row
//! holds from its `period_start` for one period, the interval between consecutive starts,
//! which must be the same throughout the table. A purchase takes the covariates of the period
//! it falls in.

use std::collections::HashMap;
use std::sync::Arc;

use mittari_models::Histories;
use mittari_models::dynamic::{
    DynamicCustomer, DynamicData, DynamicFit, DynamicForecast, Segment, fit_dynamic,
};
use mittari_models::gamma_gamma::{self, GammaGamma};
use mittari_models::pareto_nbd;
use mittari_models::rfm::TimeUnit;
use mittari_models::uncertainty::{FreeCovariance, LogCovariance, Scale, interval};
use mittari_sdk::arrow_array::cast::AsArray;
use mittari_sdk::arrow_array::types::{Float64Type, Int64Type};
use mittari_sdk::arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray};
use mittari_sdk::prelude::*;

use crate::covariates;
use crate::intervals::{Bounds, Level};
use crate::predictive::{self, DiscountSteps};
use mittari_sdk::covariates::Coefficient;

/// The table input dynamic covariates are read from.
pub(crate) const TABLE: &str = "covariates_over_time";

const MICROS_PER_DAY: i64 = 86_400_000_000;
const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// One customer's purchases: the start of the first purchase's day (or hour), the later
/// purchase moments, each with its value, in order.
struct Customer<'a> {
    id: &'a str,
    first: i64,
    repeats: Vec<(i64, f64)>,
    /// Purchase moments in the holdout.
    holdout: f64,
}

pub(crate) fn compute(input: &Input<'_>, params: &Params) -> Result<Output, MetricError> {
    let model = params.str("model")?;
    if model != "pareto_nbd" {
        return Err(MetricError::invalid_parameter(
            "model",
            format!(
                "dynamic_covariates needs model=pareto_nbd, the model with a time-varying form (as in CLVTools); got {model}"
            ),
        ));
    }
    if ["covariates", "purchase_covariates", "attrition_covariates"]
        .iter()
        .any(|name| params.get(name).is_some())
    {
        return Err(MetricError::invalid_parameter(
            "dynamic_covariates",
            "give static covariates as columns of covariates_over_time too (constant over a customer's periods), not beside dynamic ones",
        ));
    }
    let names: Vec<String> = params
        .str("dynamic_covariates")?
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        return Err(MetricError::invalid_parameter(
            "dynamic_covariates",
            "name at least one column of covariates_over_time",
        ));
    }
    let Some(table) = input.table(TABLE) else {
        return Err(MetricError::invalid_parameter(
            "dynamic_covariates",
            "dynamic covariates come from the table input covariates_over_time (customer_id, period_start and the covariates), which the request did not send (CLI: --table-input covariates_over_time=FILE)",
        ));
    };
    let unit = predictive::time_unit(params)?;
    let unit_micros = unit.days() * MICROS_PER_DAY as f64;
    let moment = if unit == TimeUnit::Hour {
        MICROS_PER_HOUR
    } else {
        MICROS_PER_DAY
    };
    let columns = crate::transactions(input, model)?;
    let (observation_end, holdout_start) = predictive::observation_window(params, &columns)?;
    let calibration_end = holdout_start.unwrap_or(observation_end);
    let customers = purchases(
        &columns,
        moment,
        calibration_end,
        holdout_start,
        observation_end,
    );
    if customers.is_empty() {
        return Err(MetricError::invalid_input(
            "no customer made a first purchase before the end of calibration",
        ));
    }
    let time = |at: i64, first: i64| (at - first) as f64 / unit_micros;
    let horizon = params.f64("horizon")?;
    let window = match params.get("churn_window") {
        Some(_) => params.f64("churn_window")?,
        None => horizon,
    };
    let holdout_length = holdout_start.map(|start| time(observation_end, start));
    let spend_model = params.str("spend_model")?;
    let discount_steps = DiscountSteps::new(horizon, unit, params.f64("discount_rate")?);
    let mut horizons: Vec<f64> = vec![horizon];
    if spend_model == "gamma_gamma" {
        horizons.extend(discount_steps.ends());
    }
    horizons.extend(holdout_length);
    horizons.sort_by(f64::total_cmp);
    horizons.dedup();
    let future_length = horizons.iter().copied().fold(window, f64::max);

    let periods = Periods::read(table, &names, &customers, calibration_end)?;
    let mut data = DynamicData::default();
    let mut row_of: HashMap<Vec<u64>, u32> = HashMap::new();
    let mut futures = Vec::with_capacity(customers.len());
    for (i, c) in customers.iter().enumerate() {
        let rows = periods.rows_of(i);
        let t = time(calibration_end, c.first);
        let mut segments: Vec<Segment> = Vec::new();
        let mut future: Vec<Segment> = Vec::new();
        let mut purchase_sum = vec![0.0; names.len()];
        let mut repeats = c
            .repeats
            .iter()
            .map(|&(at, _)| time(at, c.first))
            .peekable();
        let mut covered = 0.0;
        for &r in rows {
            let start = time(periods.starts[r], c.first).max(0.0);
            let end = time(periods.starts[r] + periods.length, c.first);
            if end <= 0.0 {
                continue;
            }
            if start > covered + 1e-9 {
                break;
            }
            let values = &periods.values[r];
            let key: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
            let next = row_of.len() as u32;
            let row = *row_of.entry(key).or_insert_with(|| {
                data.purchase.push(values.clone());
                data.attrition.push(values.clone());
                next
            });
            while let Some(&at) = repeats.peek() {
                if at >= end {
                    break;
                }
                purchase_sum
                    .iter_mut()
                    .zip(values)
                    .for_each(|(s, v)| *s += v);
                repeats.next();
            }
            if start < t {
                push(&mut segments, start, end.min(t), row);
            }
            if end > t {
                push(&mut future, start.max(t), end, row);
            }
            covered = end;
        }
        let uncovered = |at: f64| {
            let micros = c.first + (at * unit_micros) as i64;
            MetricError::invalid_input(format!(
                "covariates_over_time covers customer {:?} only until {}; it needs periods from the first purchase ({}) to {} (the end of calibration plus the horizon, churn window or holdout): add the customer's periods, including future ones for the predictions",
                c.id,
                mittari_sdk::time::format_timestamp(c.first + (covered * unit_micros) as i64),
                mittari_sdk::time::format_timestamp(c.first),
                mittari_sdk::time::format_timestamp(micros),
            ))
        };
        if covered < t + future_length - 1e-9 || repeats.peek().is_some() {
            return Err(uncovered(t + future_length));
        }
        let t_x = c.repeats.last().map_or(0.0, |&(at, _)| time(at, c.first));
        data.customers.push(DynamicCustomer {
            x: c.repeats.len() as f64,
            t_x,
            t,
            purchase_sum,
            segments,
        });
        futures.push(future);
    }
    input.check_cancelled()?;

    // The fit without covariates on the same data: the start, and the likelihood-ratio test's
    // null model.
    let histories = Histories::compress(data.customers.iter().map(|c| (c.x, c.t_x, c.t, 1.0)));
    let (plain, plain_fit) = pareto_nbd::fit_histories(&histories, input.cancellation())
        .map_err(|e| predictive::fit_error("Pareto/NBD", e))?;
    predictive::check_converged("Pareto/NBD", &plain_fit)?;
    let fitted = fit_dynamic(
        &data,
        [plain.r, plain.alpha, plain.s, plain.beta],
        &[],
        input.cancellation(),
    )
    .map_err(|e| match e {
        mittari_models::dynamic::DynamicError::Fit(e) => predictive::fit_error("Pareto/NBD", e),
        other => MetricError::failed(other.to_string()),
    })?;
    if !fitted.fit.converged {
        return Err(MetricError::invalid_input(format!(
            "the Pareto/NBD fit with dynamic covariates did not converge ({}); the data may not follow the model",
            fitted.fit.status
        )));
    }
    let predicted = data
        .predict(&fitted, &futures, &horizons, window)
        .ok_or_else(|| {
            MetricError::failed("a customer's future periods did not cover the horizon")
        })?;
    let at = |h: f64| horizons.iter().position(|&x| x == h).unwrap_or(0);
    let level = Level::of(params)?;
    // Discounted purchases to the horizon, from the expectations at the monthly steps' ends.
    let discounted_of = |e: &[f64]| -> f64 {
        let cumulative: Vec<f64> = discount_steps.ends().iter().map(|&h| e[at(h)]).collect();
        discount_steps.discount(&cumulative).1
    };

    let n = customers.len();
    let mut output = Output::new();
    let base = [
        ("r", fitted.r),
        ("alpha", fitted.alpha),
        ("s", fitted.s),
        ("beta", fitted.beta),
    ];
    let mut unidentified = Vec::new();
    for (i, (name, value)) in base.iter().enumerate() {
        output = output.scalar(Scalar::new(name, *value));
        match fitted.standard_errors.as_ref().map(|se| se[i]) {
            Some(se) => {
                output = output.scalar(Scalar::new(&format!("{name}_se"), se));
                if se > *value || fitted.fit.at_boundary[i] {
                    unidentified.push(*name);
                }
            }
            None => unidentified.push(*name),
        }
    }
    if !unidentified.is_empty() {
        output = output.warning(
            "fit_not_identified",
            format!(
                "the data do not determine {} of the Pareto/NBD fit with dynamic covariates (standard error larger than the estimate, or the estimate at the edge of the searched range): read its predictions as the model's limiting case, not as findings",
                unidentified.join(", ")
            ),
        );
    }
    let expected: Vec<f64> = predicted.iter().map(|f| f.expected[at(horizon)]).collect();
    let p_alive: Vec<f64> = predicted.iter().map(|f| f.prediction.p_alive).collect();
    let p_no_purchase: Vec<f64> = predicted
        .iter()
        .map(|f| f.prediction.p_no_purchase)
        .collect();
    let alive_at_end: Vec<f64> = predicted
        .iter()
        .map(|f| f.prediction.p_alive_at_window_end)
        .collect();
    // Spend: Gamma-Gamma on the repeat purchases' mean value, as for the other models.
    let margin = params.f64("margin")?;
    let monetary: Vec<f64> = customers
        .iter()
        .map(|c| {
            if c.repeats.is_empty() {
                0.0
            } else {
                c.repeats.iter().map(|&(_, v)| v).sum::<f64>() / c.repeats.len() as f64
            }
        })
        .collect();
    let spend_fit = if spend_model == "gamma_gamma" {
        let (gg, gg_fit, _) = gamma_gamma::fit_spend(
            data.customers
                .iter()
                .zip(&monetary)
                .map(|(c, &m)| (c.x, m, 1.0)),
            input.cancellation(),
        )
        .map_err(|e| match e {
            gamma_gamma::SpendError::Fit(e) => predictive::fit_error("Gamma-Gamma", e),
            other => MetricError::invalid_input(other.to_string()),
        })?;
        predictive::check_converged("Gamma-Gamma", &gg_fit)?;
        let spend: Vec<f64> = data
            .customers
            .iter()
            .zip(&monetary)
            .map(|(c, &m)| gg.expected_mean_value(c.x, m))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                MetricError::invalid_input(format!(
                    "the Gamma-Gamma fit has q = {:.4} <= 1, so mean spend has no finite expectation; the spend data may not follow the model",
                    gg.q
                ))
            })?;
        Some((gg, gg_fit, spend))
    } else {
        None
    };
    let discounted: Vec<f64> = predicted
        .iter()
        .map(|f| discounted_of(&f.expected))
        .collect();
    // Purchases over the horizon lost to churn: what each customer would buy if they never
    // left, less what they are expected to buy (as for the other models).
    let lost_of =
        |f: &DynamicForecast| (f.if_no_churn[at(horizon)] - f.expected[at(horizon)]).max(0.0);
    let lost: Vec<f64> = predicted.iter().map(lost_of).collect();
    // What the intervals are of, from one customer's prediction (see `Spread`).
    let fields = |f: &DynamicForecast| {
        [
            f.prediction.p_alive,
            f.expected[at(horizon)],
            f.prediction.p_no_purchase,
            f.prediction.p_alive_at_window_end,
            discounted_of(&f.expected),
            lost_of(f),
        ]
    };
    let spread = match level {
        Some(_) => Some(spread(
            &data,
            &fitted,
            &predicted,
            (&futures, &horizons, window),
            &fields,
            spend_fit
                .as_ref()
                .map(|(_, _, spend)| spend.iter().map(|s| s * margin).collect::<Vec<f64>>())
                .as_deref(),
        )?),
        None => None,
    };
    let sum = |v: &[f64]| v.iter().sum::<f64>();
    // A total with its interval, where there is one.
    // uncertainty=bootstrap: percentiles of refits on resampled customers, in place of the
    // delta method's intervals.
    let boot = match level {
        Some(level) if params.str("uncertainty")? == "bootstrap" => {
            let draws = usize::try_from(params.i64("bootstrap_draws")?).unwrap_or(0);
            Some(bootstrap(
                (&data, &fitted),
                (&futures, &horizons, window),
                &fields,
                spend_fit.as_ref().map(|_| (monetary.as_slice(), margin)),
                (draws, level),
                input,
            )?)
        }
        _ => None,
    };
    // Prediction intervals of what each customer will buy over the horizon, and of its value
    // with a spend model: quantiles of (1 − P(alive))·1{n=0} + P(alive)·P(n | alive), for the
    // rows the table shows.
    let ranges: Option<(Bounds, Option<Bounds>)> = match level {
        Some(level) => {
            let top = usize::try_from(params.i64("top")?).unwrap_or(0);
            let rank: Vec<f64> = match &spend_fit {
                Some((_, _, spend)) => discounted
                    .iter()
                    .zip(spend)
                    .map(|(d, s)| d * s * margin)
                    .collect(),
                None => predicted.iter().map(|f| f.expected[at(horizon)]).collect(),
            };
            let mut shown = vec![false; n];
            for c in shown_rows(&rank, top) {
                shown[c] = true;
            }
            let (low, high) = ((1.0 - level.level) / 2.0, (1.0 + level.level) / 2.0);
            // The whole distribution where spend is valued (the value's tail comes from every
            // count), else to the upper quantile.
            let until = if spend_fit.is_some() {
                1.0 - 1e-9
            } else {
                high
            };
            let quantile = |pmf: &[f64], p_alive: f64, q: f64| -> Option<f64> {
                let mut cumulative = 1.0 - p_alive;
                for (count, p) in pmf.iter().enumerate() {
                    cumulative += p_alive * p;
                    if cumulative >= q - 1e-12 {
                        return Some(count as f64);
                    }
                }
                None
            };
            use rayon::prelude::*;
            let per_customer: Vec<(Ends, Ends)> = (0..n)
                .into_par_iter()
                .map(|c| {
                    let none = ((None, None), (None, None));
                    if !shown[c] {
                        return none;
                    }
                    let Some(pmf) = data.purchase_distribution_if_alive(
                        &fitted,
                        c,
                        &futures[c],
                        horizon,
                        (until, 100_000),
                    ) else {
                        return none;
                    };
                    let p_alive = predicted[c].prediction.p_alive;
                    let purchases = (quantile(&pmf, p_alive, low), quantile(&pmf, p_alive, high));
                    let value = match &spend_fit {
                        Some((gg, ..)) => {
                            let [lower, upper] = predictive::value_quantiles(
                                &pmf,
                                p_alive,
                                *gg,
                                (data.customers[c].x, monetary[c]),
                                margin,
                                [low, high],
                            );
                            (
                                Some(lower).filter(|v| v.is_finite()),
                                Some(upper).filter(|v| v.is_finite()),
                            )
                        }
                        None => (None, None),
                    };
                    (purchases, value)
                })
                .collect();
            let (purchases, values): (Vec<_>, Vec<_>) = per_customer.into_iter().unzip();
            let purchases: Bounds = purchases.into_iter().unzip();
            let values: Bounds = values.into_iter().unzip();
            Some((purchases, spend_fit.as_ref().map(|_| values)))
        }
        None => None,
    };
    let with = |scalar: Scalar, quantity: Quantity| match (level, &spread, &boot) {
        (Some(level), _, Some(boot)) => {
            let (lower, upper) = boot.totals[quantity.boot_total()];
            scalar.with_interval(lower, upper, level.level)
        }
        (Some(level), Some(spread), None) => level.scalar(
            scalar,
            Some(spread.totals[quantity as usize]),
            Scale::Positive,
        ),
        _ => scalar,
    };
    output = output
        .scalar(Scalar::new("log_likelihood", fitted.fit.log_likelihood))
        .scalar(Scalar::new("iterations", fitted.fit.iterations as f64))
        .scalar(Scalar::new("customers", n as f64))
        .scalar(with(
            Scalar::new("expected_purchases", sum(&expected)),
            Quantity::Expected,
        ))
        .scalar(with(
            Scalar::new("expected_active", sum(&p_alive)),
            Quantity::PAlive,
        ))
        .scalar(with(
            Scalar::new("expected_lapsing", sum(&p_no_purchase)),
            Quantity::NoPurchase,
        ))
        .scalar(with(
            Scalar::new("expected_dropouts", sum(&p_alive) - sum(&alive_at_end)),
            Quantity::Dropouts,
        ))
        .scalar(with(
            Scalar::new("expected_purchases_lost", sum(&lost)),
            Quantity::Lost,
        ))
        .scalar(Scalar::new(
            "log_likelihood_without_covariates",
            plain_fit.log_likelihood,
        ));
    let k = names.len();
    output = predictive::likelihood_ratio(
        output,
        "covariates_lr",
        plain_fit.log_likelihood,
        fitted.fit.log_likelihood,
        2 * k,
    );

    let mut value_columns: Option<(Vec<f64>, Vec<f64>)> = None;
    let mut value_bounds: Option<[Bounds; 2]> = None;
    if let Some((gg, gg_fit, spend)) = spend_fit {
        let GammaGamma { p, q, gamma } = gg;
        let clv: Vec<f64> = discounted
            .iter()
            .zip(&spend)
            .map(|(d, s)| d * s * margin)
            .collect();
        let clv_total = sum(&clv);
        // The spend side of the intervals: each customer's expected spend at the Gamma-Gamma
        // fit's shifted log-parameters.
        let spend_spread = match (level, &spread) {
            (Some(_), Some(_)) => LogCovariance::of(&gg_fit).map(|log| {
                let covariance = FreeCovariance::of_log(&log);
                let moved: Vec<GammaGamma> = covariance
                    .shifted()
                    .iter()
                    .map(|f| GammaGamma {
                        p: f[0].exp(),
                        q: f[1].exp(),
                        gamma: f[2].exp(),
                    })
                    .collect();
                let (mut mean, mut valued, mut lost_valued) =
                    (vec![0.0; 3], vec![0.0; 3], vec![0.0; 3]);
                let variances: Vec<f64> = (0..spend.len())
                    .map(|c| {
                        let (x, m) = (data.customers[c].x, monetary[c]);
                        let at: Vec<f64> = moved
                            .iter()
                            .map(|g| g.expected_mean_value(x, m).unwrap_or(f64::NAN))
                            .collect();
                        let gradient = FreeCovariance::gradient(spend[c], &at);
                        for j in 0..3 {
                            mean[j] += gradient[j];
                            valued[j] += margin * discounted[c] * gradient[j];
                            lost_valued[j] += margin * lost[c] * gradient[j];
                        }
                        covariance.variance(&gradient)
                    })
                    .collect();
                (
                    variances,
                    covariance.variance(&mean),
                    covariance.variance(&valued),
                    covariance.variance(&lost_valued),
                )
            }),
            _ => None,
        };
        if level.is_some() && spend_spread.is_none() {
            output = output.warning(
                "interval_unavailable",
                "the Gamma-Gamma fit has no covariance, so expected spend and the values have no interval",
            );
        }
        let nf = n as f64;
        let (spend_mean_variance, clv_variance, churn_cost_variance) =
            match (&spend_spread, &spread) {
                (Some((_, mean, valued, lost_valued)), Some(spread)) => (
                    Some(mean / (nf * nf)),
                    Some(spread.totals[4] + valued),
                    Some(spread.totals[6] + lost_valued),
                ),
                _ => (None, None, None),
            };
        // The bootstrap's ends where it ran (totals 4 to 6: mean spend, clv, clv_total).
        let with_variance =
            |scalar: Scalar, variance: Option<f64>, total: usize| match (level, &boot) {
                (Some(level), Some(boot)) => {
                    let (lower, upper) = boot.totals[total];
                    scalar.with_interval(lower, upper, level.level)
                }
                (Some(level), None) => level.scalar(scalar, variance, Scale::Positive),
                (None, _) => scalar,
            };
        output = output
            .scalar(Scalar::new("p", p))
            .scalar(Scalar::new("q", q))
            .scalar(Scalar::new("gamma", gamma))
            .scalar(Scalar::new("spend_log_likelihood", gg_fit.log_likelihood))
            .scalar(with_variance(
                Scalar::new("expected_spend", sum(&spend) / nf),
                spend_mean_variance,
                4,
            ))
            .scalar(with_variance(
                Scalar::new("clv", clv_total / nf),
                clv_variance.map(|v| v / (nf * nf)),
                5,
            ))
            .scalar(with_variance(
                Scalar::new("clv_total", clv_total),
                clv_variance,
                6,
            ))
            .scalar(with_variance(
                Scalar::new(
                    "churn_cost",
                    lost.iter()
                        .zip(&spend)
                        .map(|(l, s)| l * s * margin)
                        .sum::<f64>(),
                ),
                churn_cost_variance,
                8,
            ));
        if let Some(boot) = &boot {
            value_bounds = Some([boot.customers[4].clone(), boot.customers[5].clone()]);
        } else if let (Some(level), Some(spread), Some((spend_variances, ..))) =
            (level, &spread, &spend_spread)
        {
            let ends = |value: f64, variance: f64| match interval(
                value,
                variance,
                level.z,
                Scale::Positive,
            ) {
                Some((lower, upper)) => (Some(lower), Some(upper)),
                None => (None, None),
            };
            let spend_ends: Bounds = spend
                .iter()
                .zip(spend_variances)
                .map(|(&s, &v)| ends(s, v))
                .unzip();
            // clv = margin × discounted × spend, the fits independent:
            // var = margin² (S² var(D) + D² var(S)).
            let clv_ends: Bounds = (0..n)
                .map(|c| {
                    let (d, sp) = (discounted[c], spend[c]);
                    let variance = margin
                        * margin
                        * (sp * sp * spread.customers[c][4] + d * d * spend_variances[c]);
                    ends(clv[c], variance)
                })
                .unzip();
            value_bounds = Some([spend_ends, clv_ends]);
        }
        value_columns = Some((spend, clv));
    }
    let holdout = holdout_length.map(|length| {
        let predicted: Vec<f64> = predicted.iter().map(|f| f.expected[at(length)]).collect();
        let actual: Vec<f64> = customers.iter().map(|c| c.holdout).collect();
        (actual, predicted)
    });
    if let Some((actual, predicted)) = &holdout {
        let errors: Vec<f64> = actual.iter().zip(predicted).map(|(a, p)| p - a).collect();
        output = output
            .scalar(Scalar::new("holdout_purchases", sum(actual)))
            .scalar(Scalar::new("predicted_holdout_purchases", sum(predicted)))
            .scalar(Scalar::new(
                "holdout_mae",
                errors.iter().map(|e| e.abs()).sum::<f64>() / n as f64,
            ))
            .scalar(Scalar::new(
                "holdout_rmse",
                (errors.iter().map(|e| e * e).sum::<f64>() / n as f64).sqrt(),
            ));
    }
    let rows: Vec<Coefficient> = ["purchase", "attrition"]
        .into_iter()
        .enumerate()
        .flat_map(|(process, name)| {
            let values = if process == 0 {
                &fitted.purchase
            } else {
                &fitted.attrition
            };
            let fitted = &fitted;
            names
                .iter()
                .zip(values)
                .enumerate()
                .map(move |(l, (covariate, &estimate))| {
                    let index = 4 + process * k + l;
                    Coefficient {
                        process: name,
                        covariate: covariate.clone(),
                        estimate,
                        standard_error: fitted.standard_errors.as_ref().map(|s| s[index]),
                        at_boundary: fitted.fit.at_boundary[index],
                    }
                })
        })
        .collect();
    if let Some(edge) = mittari_sdk::covariates::at_edge(&rows) {
        output = output.warning(
            "covariate_not_identified",
            format!(
                "the coefficient of {edge} ran to the edge of the searched range (a factor 10^6 on the rate): the likelihood keeps rising toward an infinite effect (nobody drops out, or buys, in those periods), so its value and standard error are not estimates"
            ),
        );
    }
    let mut unavailable: Vec<&str> = Vec::new();
    if params.bool("dert")? {
        unavailable.push("dert (it would need the covariates to the end of time)");
    }
    if level.is_some() {
        if fitted.fit.at_boundary.iter().any(|&b| b) {
            output = output.warning(
                "interval_conditional",
                "the intervals hold the coefficients at the edge of the searched range fixed: those are not estimates, and their uncertainty has no finite size",
            );
        }
        if let Some(message) = boot
            .as_ref()
            .and_then(|b| crate::bootstrap::few_draws(b.draws))
        {
            output = output.warning("bootstrap_draws_few", message);
        }
        if let Some(boot) = boot.as_ref().filter(|b| b.fitted < b.draws) {
            output = output.warning(
                "bootstrap_draws_failed",
                format!(
                    "{} of {} bootstrap draws could not be fitted and are left out; the intervals come from the other {}",
                    boot.draws - boot.fitted,
                    boot.draws,
                    boot.fitted
                ),
            );
        }
    }
    unavailable.push("the repeat-purchase histogram with its chi-square, and the purchase curve and distribution of a new customer (whose covariates over time are unknown)");
    output = output.warning(
        "not_computed",
        format!(
            "not computed with dynamic covariates yet: {}",
            unavailable.join("; ")
        ),
    );
    let top = usize::try_from(params.i64("top")?).unwrap_or(0);
    let bounds: Option<[Bounds; 4]> = match (level, &spread, &boot) {
        (Some(_), _, Some(boot)) => Some(std::array::from_fn(|q| boot.customers[q].clone())),
        (Some(level), Some(spread), None) => Some(std::array::from_fn(|q| {
            let (values, scale) = match q {
                0 => (&p_alive, Scale::Probability),
                1 => (&expected, Scale::Positive),
                2 => (&p_no_purchase, Scale::Probability),
                _ => (&alive_at_end, Scale::Probability),
            };
            values
                .iter()
                .zip(&spread.customers)
                .map(
                    |(&value, variances)| match interval(value, variances[q], level.z, scale) {
                        Some((lower, upper)) => (Some(lower), Some(upper)),
                        None => (None, None),
                    },
                )
                .unzip()
        })),
        _ => None,
    };
    let table = customer_table(
        (&customers, &data, &monetary),
        (&p_alive, &expected, &p_no_purchase, &alive_at_end),
        value_columns.as_ref(),
        holdout.as_ref(),
        (bounds.as_ref(), value_bounds.as_ref()),
        ranges.as_ref(),
        top,
    )?;
    Ok(output
        .table("customers", table)
        .table("coefficients", covariates::coefficients_table(&rows)?))
}

/// The bootstrap's intervals: per customer, the ends of the four purchase predictions, expected
/// spend and CLV (the last two empty without a spend model); and of the totals, in the order of
/// [`Quantity`] (active, expected purchases, lapsing, dropouts), then mean spend, mean CLV, the
/// CLV total, the purchases lost to churn and their value.
struct Boot {
    customers: [Bounds; 6],
    totals: [(f64, f64); 9],
    fitted: usize,
    draws: usize,
}

/// One bootstrap draw: each customer's six predictions (as [`Boot::customers`]) and the nine
/// totals.
type Draw = (Vec<[f32; 6]>, [f64; 9]);

/// Bytes the draws' per-customer values may take.
const MAX_BOOT_BYTES: usize = 1 << 30;

/// Resamples the customers with replacement, refits the dynamic model (from the estimate) and
/// the spend model on each draw, predicts every customer of the input under it, and takes the
/// percentiles (Efron & Tibshirani 1993, ch. 13; as `uncertainty=bootstrap` does for the other
/// models). A draw whose fit does not converge is left out and counted.
fn bootstrap(
    (data, fitted): (&DynamicData, &DynamicFit),
    (futures, horizons, window): (&[Vec<Segment>], &[f64], f64),
    fields: &Fields<'_>,
    spend: Option<(&[f64], f64)>,
    (draws, level): (usize, Level),
    input: &Input<'_>,
) -> Result<Boot, MetricError> {
    use rand::rngs::SmallRng;
    use rand::{Rng as _, SeedableRng};
    use rayon::prelude::*;
    let n = data.customers.len();
    if n * draws * 6 * 4 > MAX_BOOT_BYTES {
        return Err(MetricError::invalid_parameter(
            "bootstrap_draws",
            format!(
                "{draws} draws for {n} customers would keep more than 1 GiB of predictions; ask for fewer draws, or uncertainty=delta"
            ),
        ));
    }
    let start = [fitted.r, fitted.alpha, fitted.s, fitted.beta];
    let coefficients: Vec<f64> = fitted
        .purchase
        .iter()
        .chain(&fitted.attrition)
        .copied()
        .collect();
    let results: Vec<Option<Draw>> = (0..draws)
        .into_par_iter()
        .map(|b| -> Result<_, MetricError> {
            input.check_cancelled()?;
            let mut rng = SmallRng::seed_from_u64(
                0x6479_6e61_6d69_6321 ^ (b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
            let mut counts = vec![0u32; n];
            for _ in 0..n {
                counts[rng.random_range(0..n)] += 1;
            }
            let resampled = DynamicData {
                purchase: data.purchase.clone(),
                attrition: data.attrition.clone(),
                customers: data
                    .customers
                    .iter()
                    .zip(&counts)
                    .flat_map(|(c, &k)| std::iter::repeat_n(c, k as usize).cloned())
                    .collect(),
            };
            let Ok(refit) = fit_dynamic(&resampled, start, &coefficients, input.cancellation())
            else {
                input.check_cancelled()?;
                return Ok(None);
            };
            if !refit.fit.converged {
                return Ok(None);
            }
            let Some(predicted) = data.predict(&refit, futures, horizons, window) else {
                return Ok(None);
            };
            let gg = match spend {
                Some((monetary, _)) => {
                    let rows = data
                        .customers
                        .iter()
                        .zip(monetary)
                        .zip(&counts)
                        .map(|((c, &m), &k)| (c.x, m, f64::from(k)));
                    match gamma_gamma::fit_spend(rows, input.cancellation()) {
                        Ok((gg, fit, _))
                            if fit.converged && gg.expected_mean_value(0.0, 0.0).is_some() =>
                        {
                            Some(gg)
                        }
                        _ => return Ok(None),
                    }
                }
                None => None,
            };
            let margin = spend.map_or(1.0, |(_, m)| m);
            let mut totals = [0.0; 9];
            let per_customer: Vec<[f32; 6]> = predicted
                .iter()
                .enumerate()
                .map(|(c, p)| {
                    let f = fields(p);
                    let s = match (gg, spend) {
                        (Some(gg), Some((monetary, _))) => gg
                            .expected_mean_value(data.customers[c].x, monetary[c])
                            .unwrap_or(0.0),
                        _ => 0.0,
                    };
                    let clv = f[4] * s * margin;
                    totals[0] += f[0];
                    totals[1] += f[1];
                    totals[2] += f[2];
                    totals[3] += f[0] - f[3];
                    totals[4] += s;
                    totals[6] += clv;
                    totals[7] += f[5];
                    totals[8] += f[5] * s * margin;
                    [f[0], f[1], f[2], f[3], s, clv].map(|v| v as f32)
                })
                .collect();
            totals[4] /= n as f64;
            totals[5] = totals[6] / n as f64;
            Ok(Some((per_customer, totals)))
        })
        .collect::<Result<_, MetricError>>()?;
    let kept: Vec<Draw> = results.into_iter().flatten().collect();
    if kept.len() < 2 {
        return Err(MetricError::invalid_input(format!(
            "only {} of {draws} bootstrap draws could be fitted; the data may be too few for the model",
            kept.len()
        )));
    }
    let (low, high) = ((1.0 - level.level) / 2.0, (1.0 + level.level) / 2.0);
    let ends = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        let at = |p: f64| {
            let position = p * (values.len() - 1) as f64;
            let below = position.floor() as usize;
            let next = values.get(below + 1).copied().unwrap_or(values[below]);
            values[below] + position.fract() * (next - values[below])
        };
        (at(low), at(high))
    };
    let customers: [Bounds; 6] = std::array::from_fn(|q| {
        if q >= 4 && spend.is_none() {
            return (vec![None; n], vec![None; n]);
        }
        (0..n)
            .into_par_iter()
            .map(|c| {
                let mut values: Vec<f64> = kept.iter().map(|d| f64::from(d.0[c][q])).collect();
                let (l, u) = ends(&mut values);
                (Some(l), Some(u))
            })
            .unzip()
    });
    let totals: [(f64, f64); 9] = std::array::from_fn(|t| {
        let mut values: Vec<f64> = kept.iter().map(|d| d.1[t]).collect();
        ends(&mut values)
    });
    Ok(Boot {
        customers,
        totals,
        fitted: kept.len(),
        draws,
    })
}

/// One customer's lower and upper ends of an interval.
type Ends = (Option<f64>, Option<f64>);

/// The customers the table shows, highest `rank` first: all, or the `top` ones.
fn shown_rows(rank: &[f64], top: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rank.len()).collect();
    order.sort_by(|&a, &b| rank[b].total_cmp(&rank[a]).then(a.cmp(&b)));
    if top > 0 {
        order.truncate(top);
    }
    order
}

/// Appends [start, end) to `segments`, extending the last one where the row is the same.
fn push(segments: &mut Vec<Segment>, start: f64, end: f64, row: u32) {
    match segments.last_mut() {
        Some(last) if last.row == row && (last.end - start).abs() < 1e-9 => last.end = end,
        _ => segments.push(Segment { start, end, row }),
    }
}

/// Each customer's purchase moments (days, or hours), in order of first appearance: those
/// whose first purchase is after the end of calibration are left out, as in the summary.
fn purchases<'a>(
    columns: &crate::Transactions<'a>,
    moment: i64,
    calibration_end: i64,
    holdout_start: Option<i64>,
    observation_end: i64,
) -> Vec<Customer<'a>> {
    let mut by_customer: HashMap<&'a str, Vec<(i64, f64)>> = HashMap::new();
    let mut order: Vec<&'a str> = Vec::new();
    for row in 0..columns.customer.len() {
        let at = columns.timestamp.value(row);
        if at > observation_end {
            continue;
        }
        let id = columns.customer.value(row);
        by_customer
            .entry(id)
            .or_insert_with(|| {
                order.push(id);
                Vec::new()
            })
            .push((at, columns.amount.value(row)));
    }
    order
        .into_iter()
        .filter_map(|id| {
            let mut rows = by_customer.remove(id)?;
            rows.sort_by_key(|&(at, _)| at);
            // One purchase per moment, its value the moment's total.
            let mut moments: Vec<(i64, f64)> = Vec::new();
            for (at, amount) in rows {
                let start = at.div_euclid(moment) * moment;
                match moments.last_mut() {
                    Some(last) if last.0 == start => last.1 += amount,
                    _ => moments.push((start, amount)),
                }
            }
            let first = moments.first()?.0;
            if first > calibration_end {
                return None;
            }
            let holdout = holdout_start.map_or(0, |start| {
                moments.iter().filter(|&&(at, _)| at >= start).count()
            });
            let repeats = moments[1..]
                .iter()
                .copied()
                .filter(|&(at, _)| at <= calibration_end && holdout_start.is_none_or(|s| at < s))
                .collect();
            Some(Customer {
                id,
                first,
                repeats,
                holdout: holdout as f64,
            })
        })
        .collect()
}

/// The covariates_over_time table: its periods' starts and covariate values, each customer's
/// rows in order, and the period length.
struct Periods {
    starts: Vec<i64>,
    values: Vec<Vec<f64>>,
    length: i64,
    of_customer: Vec<Vec<usize>>,
    /// Without a customer_id column: one calendar, every customer's rows.
    shared: Option<Vec<usize>>,
}

impl Periods {
    /// Customer `c`'s rows, in order of their starts.
    fn rows_of(&self, c: usize) -> &[usize] {
        match &self.shared {
            Some(rows) => rows,
            None => &self.of_customer[c],
        }
    }
}

impl Periods {
    fn read(
        table: &RecordBatch,
        names: &[String],
        customers: &[Customer<'_>],
        calibration_end: i64,
    ) -> Result<Periods, MetricError> {
        // A metric error's row is a row of the main input, so a fault in this table names
        // its row in the message.
        let bad = |column: &str, row: usize, message: String| {
            MetricError::invalid_input(format!("{TABLE} row {}, {column}: {message}", row + 1))
        };
        // Without customer_id the table is a calendar every customer shares (a season flag).
        let ids = match table.column_by_name("customer_id") {
            Some(column) => Some(column.as_string_opt::<i32>().ok_or_else(|| {
                MetricError::failed("covariates_over_time's customer_id is not text")
            })?),
            None => None,
        };
        let starts = table
            .column_by_name("period_start")
            .and_then(|c| {
                c.as_primitive_opt::<mittari_sdk::arrow_array::types::TimestampMicrosecondType>()
            })
            .ok_or_else(|| MetricError::failed("covariates_over_time has no period_start"))?;
        let mut value_columns: Vec<Vec<f64>> = Vec::with_capacity(names.len());
        for name in names {
            let column: &ArrayRef = table.column_by_name(name).ok_or_else(|| {
                MetricError::invalid_parameter(
                    "dynamic_covariates",
                    format!("covariates_over_time has no column {name}"),
                )
            })?;
            let values: Vec<Option<f64>> = if let Some(v) = column.as_primitive_opt::<Float64Type>()
            {
                v.iter().collect()
            } else if let Some(v) = column.as_primitive_opt::<Int64Type>() {
                v.iter().map(|v| v.map(|v| v as f64)).collect()
            } else if let Some(v) = column.as_boolean_opt() {
                v.iter()
                    .map(|v| v.map(|b| f64::from(u8::from(b))))
                    .collect()
            } else {
                return Err(MetricError::invalid_parameter(
                    "dynamic_covariates",
                    format!(
                        "covariate {name} of covariates_over_time is {}; dynamic covariates must be numbers or booleans (give a text column's levels as 0/1 columns)",
                        match column.data_type() {
                            mittari_sdk::arrow_schema::DataType::Utf8 => "text".to_owned(),
                            other => other.to_string(),
                        }
                    ),
                ));
            };
            if let Some(row) = values.iter().position(Option::is_none) {
                return Err(bad(
                    name,
                    row,
                    format!("{name} is empty; give every period a value"),
                ));
            }
            value_columns.push(values.into_iter().map(|v| v.unwrap_or(0.0)).collect());
        }
        let wanted: HashMap<&str, usize> = customers
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id, i))
            .collect();
        let (mut of_customer, mut shared): (Vec<Vec<usize>>, Option<Vec<usize>>) = match ids {
            Some(ids) => {
                let mut of_customer = vec![Vec::new(); customers.len()];
                for row in 0..table.num_rows() {
                    if let Some(&i) = wanted.get(ids.value(row)) {
                        of_customer[i].push(row);
                    }
                }
                (of_customer, None)
            }
            None => (
                vec![Vec::new(); customers.len()],
                Some((0..table.num_rows()).collect()),
            ),
        };
        // Who a fault belongs to: the customer, or the shared calendar.
        let owner = |i: usize| match ids {
            Some(_) => format!("customer {:?}", customers[i].id),
            None => "the calendar (no customer_id column)".to_owned(),
        };
        // The period: the smallest step between a customer's consecutive starts, which every
        // step must equal.
        let starts_of = |row: usize| starts.value(row);
        let mut length: Option<i64> = None;
        let lists: Vec<(usize, &mut Vec<usize>)> = match &mut shared {
            Some(rows) => vec![(0, rows)],
            None => of_customer.iter_mut().enumerate().collect(),
        };
        for (i, rows) in lists {
            rows.sort_by_key(|&r| starts_of(r));
            for pair in rows.windows(2) {
                let step = starts_of(pair[1]) - starts_of(pair[0]);
                if step == 0 {
                    return Err(bad(
                        "period_start",
                        pair[1],
                        format!(
                            "{} has two rows for the period starting {}; give one row per customer and period",
                            owner(i),
                            mittari_sdk::time::format_timestamp(starts_of(pair[1]))
                        ),
                    ));
                }
                length = Some(length.map_or(step, |l: i64| l.min(step)));
            }
        }
        let Some(length) = length else {
            return Err(MetricError::invalid_input(
                "covariates_over_time has at most one period per customer; dynamic covariates need their values period by period",
            ));
        };
        let lists: Vec<(usize, &Vec<usize>)> = match &shared {
            Some(rows) => vec![(0, rows)],
            None => of_customer.iter().enumerate().collect(),
        };
        for (i, rows) in lists {
            for pair in rows.windows(2) {
                let step = starts_of(pair[1]) - starts_of(pair[0]);
                if step != length {
                    return Err(bad(
                        "period_start",
                        pair[1],
                        format!(
                            "{}: the period starting {} follows one starting {}; periods must be equally long ({} days here) and without gaps",
                            owner(i),
                            mittari_sdk::time::format_timestamp(starts_of(pair[1])),
                            mittari_sdk::time::format_timestamp(starts_of(pair[0])),
                            length as f64 / MICROS_PER_DAY as f64
                        ),
                    ));
                }
            }
        }
        for (i, c) in customers.iter().enumerate() {
            let rows = match &shared {
                Some(rows) => rows,
                None => &of_customer[i],
            };
            let covers_first = rows.first().is_some_and(|&r| starts_of(r) <= c.first);
            if !covers_first {
                return Err(MetricError::invalid_input(format!(
                    "covariates_over_time has no period of customer {:?} that contains the first purchase ({}); give every customer's periods from their first purchase to the end of the predictions (calibration ends {})",
                    c.id,
                    mittari_sdk::time::format_timestamp(c.first),
                    mittari_sdk::time::format_timestamp(calibration_end)
                )));
            }
        }
        let values = (0..table.num_rows())
            .map(|row| value_columns.iter().map(|c| c[row]).collect())
            .collect();
        Ok(Periods {
            starts: starts.values().to_vec(),
            values,
            length,
            of_customer,
            shared,
        })
    }
}

type Predictions<'a> = (&'a [f64], &'a [f64], &'a [f64], &'a [f64]);

const LOWER: [&str; 4] = [
    "p_alive_lower",
    "expected_purchases_lower",
    "p_no_purchase_lower",
    "p_alive_at_window_end_lower",
];
const UPPER: [&str; 4] = [
    "p_alive_upper",
    "expected_purchases_upper",
    "p_no_purchase_upper",
    "p_alive_at_window_end_upper",
];

/// The predictions that get intervals, in the order of [`Spread::customers`]' entries.
#[derive(Debug, Clone, Copy)]
enum Quantity {
    PAlive = 0,
    Expected = 1,
    NoPurchase = 2,
    /// Per customer P(alive at the window's end); as a total, the dropouts (active now less
    /// active then).
    Dropouts = 3,
    /// Purchases lost to churn (totals only).
    Lost = 5,
}

impl Quantity {
    /// The total's position among [`Boot::totals`].
    fn boot_total(self) -> usize {
        match self {
            Quantity::Lost => 7,
            other => other as usize,
        }
    }
}

/// The delta method's variances: per customer, of P(alive), expected purchases to the horizon,
/// P(no purchase), P(alive at the window's end), the discounted purchases and the purchases
/// lost to churn; and of their sums (the fourth as the dropouts, the fifth weighted by each
/// customer's value per purchase: the purchase side of the CLV total's variance), and a
/// seventh: the lost purchases so weighted, the purchase side of the churn cost's.
struct Spread {
    customers: Vec<[f64; 6]>,
    totals: [f64; 7],
}

/// The quantities [`Spread`] takes the variances of, from one customer's prediction.
type Fields<'a> = dyn Fn(&DynamicForecast) -> [f64; 6] + Sync + 'a;

/// Recomputes every customer's predictions at the fit's free parameters (ln r, ln α, ln s,
/// ln β, the coefficients) each moved by a step, and takes the gradients' variances under the
/// fit's covariance (its Hessian's inverse), as for the other models.
fn spread(
    data: &DynamicData,
    fitted: &DynamicFit,
    predicted: &[DynamicForecast],
    (futures, horizons, window): (&[Vec<Segment>], &[f64], f64),
    fields: &Fields<'_>,
    value_weight: Option<&[f64]>,
) -> Result<Spread, MetricError> {
    let covariance = fitted
        .fit
        .covariance
        .clone()
        .and_then(|c| FreeCovariance::new(fitted.fit.params.clone(), c))
        .map(|c| c.holding(&fitted.fit.at_boundary))
        .ok_or_else(|| {
            MetricError::invalid_input(
                "the fit with dynamic covariates has no covariance (its Hessian is not negative definite), so nothing it predicts has an interval; leave interval out",
            )
        })?;
    let k = fitted.purchase.len();
    let moved: Vec<Vec<[f64; 6]>> = covariance
        .shifted()
        .iter()
        .map(|free| {
            let mut at = fitted.clone();
            at.r = free[0].exp();
            at.alpha = free[1].exp();
            at.s = free[2].exp();
            at.beta = free[3].exp();
            at.purchase = free[4..4 + k].to_vec();
            at.attrition = free[4 + k..].to_vec();
            data.predict(&at, futures, horizons, window)
                .map(|p| p.iter().map(fields).collect())
                .ok_or_else(|| {
                    MetricError::failed("a shifted prediction did not cover the horizon")
                })
        })
        .collect::<Result<_, _>>()?;
    let n = covariance.len();
    let mut sums: [Vec<f64>; 7] = std::array::from_fn(|_| vec![0.0; n]);
    let customers = predicted
        .iter()
        .enumerate()
        .map(|(c, p)| {
            let base = fields(p);
            std::array::from_fn(|q| {
                let at: Vec<f64> = moved.iter().map(|m| m[c][q]).collect();
                let gradient = FreeCovariance::gradient(base[q], &at);
                // The dropouts' sum: P(alive) less P(alive at the window's end); the
                // discounted purchases weighted by the customer's value per purchase.
                let weight = match q {
                    3 => -1.0,
                    4 => value_weight.map_or(0.0, |w| w[c]),
                    _ => 1.0,
                };
                for (s, g) in sums[q].iter_mut().zip(&gradient) {
                    *s += weight * g;
                }
                if q == 5 {
                    let value = value_weight.map_or(0.0, |w| w[c]);
                    for (s, g) in sums[6].iter_mut().zip(&gradient) {
                        *s += value * g;
                    }
                }
                covariance.variance(&gradient)
            })
        })
        .collect();
    // Dropouts: Σ P(alive) − Σ P(alive at the window's end), one gradient.
    let mut dropouts = sums[0].clone();
    dropouts.iter_mut().zip(&sums[3]).for_each(|(d, s)| *d += s);
    Ok(Spread {
        customers,
        totals: [
            covariance.variance(&sums[0]),
            covariance.variance(&sums[1]),
            covariance.variance(&sums[2]),
            covariance.variance(&dropouts),
            covariance.variance(&sums[4]),
            covariance.variance(&sums[5]),
            covariance.variance(&sums[6]),
        ],
    })
}

/// The customers table: the history as the model sees it (days of purchase, continuous time)
/// and the predictions, highest value first.
fn customer_table(
    (customers, data, monetary): (&[Customer<'_>], &DynamicData, &[f64]),
    (p_alive, expected, p_no_purchase, alive_at_end): Predictions<'_>,
    value: Option<&(Vec<f64>, Vec<f64>)>,
    holdout: Option<&(Vec<f64>, Vec<f64>)>,
    (bounds, value_bounds): (Option<&[Bounds; 4]>, Option<&[Bounds; 2]>),
    ranges: Option<&(Bounds, Option<Bounds>)>,
    top: usize,
) -> Result<RecordBatch, MetricError> {
    let rank: Vec<f64> = value.map_or_else(|| expected.to_vec(), |(_, clv)| clv.clone());
    let order = shown_rows(&rank, top);
    let pick = |v: &[f64]| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(order.iter().map(|&i| v[i])))
    };
    let of = |f: fn(&DynamicCustomer) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(
            order.iter().map(|&i| f(&data.customers[i])),
        ))
    };
    let mut columns: Vec<(&str, ArrayRef)> = vec![
        (
            "customer_id",
            Arc::new(StringArray::from_iter_values(
                order.iter().map(|&i| customers[i].id),
            )),
        ),
        ("frequency", of(|c| c.x)),
        ("recency", of(|c| c.t_x)),
        ("T", of(|c| c.t)),
        ("monetary_value", pick(monetary)),
    ];
    let ends = |bounds: &Bounds, upper: bool| -> ArrayRef {
        let (lower_ends, upper_ends) = bounds;
        let ends = if upper { upper_ends } else { lower_ends };
        Arc::new(order.iter().map(|&i| ends[i]).collect::<Float64Array>())
    };
    if let Some((spend, clv)) = value {
        columns.push(("clv", pick(clv)));
        if let Some([_, clv_bounds]) = value_bounds {
            columns.push(("clv_lower", ends(clv_bounds, false)));
            columns.push(("clv_upper", ends(clv_bounds, true)));
        }
        if let Some((_, Some(value_range))) = ranges {
            columns.push(("purchase_value_lower", ends(value_range, false)));
            columns.push(("purchase_value_upper", ends(value_range, true)));
        }
        columns.push(("expected_spend", pick(spend)));
        if let Some([spend_bounds, _]) = value_bounds {
            columns.push(("expected_spend_lower", ends(spend_bounds, false)));
            columns.push(("expected_spend_upper", ends(spend_bounds, true)));
        }
    }
    for (q, (name, values)) in [
        ("p_alive", p_alive),
        ("expected_purchases", expected),
        ("p_no_purchase", p_no_purchase),
        ("p_alive_at_window_end", alive_at_end),
    ]
    .into_iter()
    .enumerate()
    {
        columns.push((name, pick(values)));
        if let Some(bounds) = bounds {
            columns.push((LOWER[q], ends(&bounds[q], false)));
            columns.push((UPPER[q], ends(&bounds[q], true)));
        }
        if let (1, Some((purchase_range, _))) = (q, ranges) {
            columns.push(("purchases_lower", ends(purchase_range, false)));
            columns.push(("purchases_upper", ends(purchase_range, true)));
        }
    }
    if let Some((actual, predicted)) = holdout {
        columns.push(("holdout_purchases", pick(actual)));
        columns.push(("predicted_holdout_purchases", pick(predicted)));
    }
    result_table("customers", columns)
}
