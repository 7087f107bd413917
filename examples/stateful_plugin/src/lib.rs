//! Example: a third-party metric with a stored model, through the same path as Mittari's own
//! CLV models (`mittari model fit`, `mittari model score`, the gRPC ModelService).
//!
//! `order_baseline` learns what an ordinary order is worth (the percentiles of order amounts)
//! and then says, for any later orders, where each falls against that baseline. Fitted once on
//! last year's orders, it scores this week's without seeing last year's again; a computation
//! (`mittari compute order_baseline`) fits and scores the same input.
//!
//! What makes a metric fittable:
//! 1. the descriptor says so: [`MetricDescriptor::fitted`], with the parameters a fit fixes
//!    (none here) and what the state holds;
//! 2. the state is a serde type implementing [`Fitted`], with a format version the plugin
//!    raises when the state's meaning changes (a server then refuses to score an old model with
//!    FAILED_PRECONDITION, naming both versions, instead of misreading it);
//! 3. [`Metric::fit`] returns the state and the fit's own results; [`Metric::score`] decodes
//!    a stored state ([`StoredState::decode`]) and computes from it. Scoring the fit's own input
//!    must give the fit's results: `mittari plugin check --fit-input FILE` checks it.
#![forbid(unsafe_code)]

use std::sync::Arc;

use mittari_sdk::arrow_array::{ArrayRef, Float64Array};
use mittari_sdk::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug)]
pub struct OrderBaseline;

/// The stored model: the 1st to 99th percentiles of the fit's order amounts.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub percentiles: Vec<f64>,
    pub orders: u64,
}

impl Fitted for Baseline {
    const FORMAT: u32 = 1;
}

impl Baseline {
    fn fit(amounts: &[f64]) -> Result<Baseline, MetricError> {
        if amounts.is_empty() {
            return Err(MetricError::invalid_input(
                "no orders to learn a baseline from",
            ));
        }
        let mut sorted = amounts.to_vec();
        sorted.sort_by(f64::total_cmp);
        let percentiles = (1..=99)
            .map(|p| {
                mittari_sdk::stats::quantile_sorted(&sorted, f64::from(p) / 100.0)
                    .ok_or_else(|| MetricError::failed("a percentile of the orders is undefined"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Baseline {
            percentiles,
            orders: amounts.len() as u64,
        })
    }

    /// Where `amount` falls, 0 to 100: the baseline's percentiles below it, interpolated
    /// between neighbours; 0 below the 1st percentile, 100 above the 99th.
    fn percentile(&self, amount: f64) -> f64 {
        let below = self.percentiles.partition_point(|&p| p < amount);
        match below {
            0 => 0.0,
            n if n == self.percentiles.len() => 100.0,
            n => {
                let (low, high) = (self.percentiles[n - 1], self.percentiles[n]);
                let within = if high > low {
                    (amount - low) / (high - low)
                } else {
                    0.0
                };
                n as f64 + within
            }
        }
    }

    fn score(&self, amounts: &[f64]) -> Result<Output, MetricError> {
        let percentiles: Vec<f64> = amounts.iter().map(|&a| self.percentile(a)).collect();
        let p90 = self.percentiles[89];
        let above = amounts.iter().filter(|&&a| a > p90).count();
        let mut sorted = percentiles.clone();
        sorted.sort_by(f64::total_cmp);
        let median = match mittari_sdk::stats::quantile_sorted(&sorted, 0.5) {
            Some(median) => Scalar::new("median_percentile", median),
            None => Scalar::undefined("median_percentile", "no orders to score"),
        };
        let table = result_table(
            "orders",
            vec![
                (
                    "amount",
                    Arc::new(Float64Array::from(amounts.to_vec())) as ArrayRef,
                ),
                ("percentile", Arc::new(Float64Array::from(percentiles))),
            ],
        )?;
        Ok(Output::new()
            .scalar(Scalar::new("orders", amounts.len() as f64))
            .scalar(Scalar::new("baseline_orders", self.orders as f64))
            .scalar(Scalar::percent(
                "share_above_p90",
                above as f64,
                amounts.len() as f64,
                "no orders to score",
            ))
            .scalar(median)
            .table("orders", table))
    }
}

impl Metric for OrderBaseline {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new(
            "order_baseline",
            env!("CARGO_PKG_VERSION"),
            "where orders fall against a baseline of ordinary orders",
        )
        .description(concat!(
            "Fits the 1st to 99th percentiles of order amounts, then places each scored order ",
            "among them (0 to 100, interpolated). share_above_p90 = orders above the baseline's ",
            "90th percentile / orders * 100: 10 % when the scored orders are like the baseline's.",
        ))
        .fitted(
            &[],
            "the 1st to 99th percentiles of the fit's order amounts and its order count",
        )
        .input(ColumnSpec::quantity("amount", "the order's value").required())
        .output(OutputSpec::new("orders", "count", "orders scored"))
        .output(OutputSpec::new(
            "baseline_orders",
            "count",
            "orders the baseline was fitted on",
        ))
        .output(OutputSpec::new(
            "share_above_p90",
            "%",
            "orders above the baseline's 90th percentile, as a percentage of the orders scored",
        ))
        .output(OutputSpec::new(
            "median_percentile",
            "%",
            "the median scored order's place in the baseline, 0 to 100",
        ))
        .table_with_columns(
            "orders",
            "each scored order and its place in the baseline",
            [
                OutputSpec::new("amount", "currency", "the order's value"),
                OutputSpec::new("percentile", "%", "its place in the baseline, 0 to 100"),
            ],
        )
    }

    fn compute(&self, input: &Input<'_>, _params: &Params) -> Result<Output, MetricError> {
        let amounts = input.double("amount")?.values();
        Baseline::fit(amounts)?.score(amounts)
    }

    fn fit(&self, input: &Input<'_>, _params: &Params) -> Result<FittedModel, MetricError> {
        let amounts = input.double("amount")?.values();
        let baseline = Baseline::fit(amounts)?;
        let output = baseline.score(amounts)?;
        Ok(FittedModel::new(&baseline, output)?.fingerprint("orders", baseline.orders))
    }

    fn score(
        &self,
        state: &StoredState<'_>,
        input: &Input<'_>,
        _params: &Params,
    ) -> Result<Output, MetricError> {
        let baseline: Baseline = state.decode()?;
        baseline.score(input.double("amount")?.values())
    }
}

mittari_sdk::export_plugin!(OrderBaseline);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(baseline: &[f64], amount: f64, expect: f64) {
        let fitted = Baseline::fit(baseline).unwrap();
        let got = fitted.percentile(amount);
        assert!(
            (got - expect).abs() < 1e-9,
            "{amount}: {got}, expected {expect}"
        );
    }

    #[test]
    fn an_order_falls_where_the_baseline_puts_it() {
        // 101 orders of 0..=100: the p-th percentile is p.
        let orders: Vec<f64> = (0..=100).map(f64::from).collect();
        check(&orders, 50.0, 50.0); // 49 percentiles below, and up to p50 itself
        check(&orders, 50.5, 50.5); // halfway from p50 to p51
        check(&orders, 0.5, 0.0); // below p1
        check(&orders, 99.5, 100.0); // above p99
        check(&orders, 1000.0, 100.0);
    }

    #[test]
    fn a_state_reads_back_whole_and_a_newer_format_is_refused() {
        let orders: Vec<f64> = (0..=100).map(f64::from).collect();
        let fitted = FittedModel::new(&Baseline::fit(&orders).unwrap(), Output::new()).unwrap();
        let stored = StoredState {
            metric: "order_baseline",
            metric_version: "0.1.0",
            format: fitted.format,
            reader_version: "0.1.0",
            bytes: &fitted.state,
        };
        assert_eq!(
            stored.decode::<Baseline>().unwrap(),
            Baseline::fit(&orders).unwrap()
        );
        let newer = StoredState {
            format: 2,
            ..stored
        };
        let error = newer.decode::<Baseline>().unwrap_err();
        assert!(
            matches!(error, MetricError::IncompatibleState { .. }),
            "{error}"
        );
    }

    #[test]
    fn the_descriptor_has_no_problem() {
        assert_eq!(OrderBaseline.descriptor().lint(), Vec::<String>::new());
    }
}
