//! Average order value and the order-size distribution around it.
#![forbid(unsafe_code)]

use std::collections::HashSet;

use mittari_sdk::prelude::*;
use mittari_sdk::stats::quantile_sorted;

struct Aov;

/// Order statistics of a set of order amounts.
#[derive(Debug, Clone, PartialEq)]
struct OrderStats {
    orders: usize,
    revenue: f64,
    aov: f64,
    median: f64,
    p90: f64,
}

impl OrderStats {
    /// `None` for no orders.
    fn of(mut amounts: Vec<f64>) -> Option<OrderStats> {
        amounts.sort_by(f64::total_cmp);
        let revenue: f64 = amounts.iter().sum();
        Some(OrderStats {
            orders: amounts.len(),
            revenue,
            aov: revenue / amounts.len() as f64,
            median: quantile_sorted(&amounts, 0.5)?,
            p90: quantile_sorted(&amounts, 0.9)?,
        })
    }
}

impl Metric for Aov {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new("aov", env!("CARGO_PKG_VERSION"), "average order value, with median, p90 and purchases per customer")
            .description(
                "One row per order. aov = revenue / orders. median_order_value and p90_order_value are quantiles of the \
                 order amounts by linear interpolation between order statistics (type 7, as R's quantile and NumPy's \
                 percentile). orders_per_customer = orders / distinct customers.",
            )
            .input(ColumnSpec::string("customer_id", "the customer who placed the order").required())
            .input(ColumnSpec::timestamp("timestamp", "when the order was placed (not used in the computation; useful for group_by)").required())
            .input(ColumnSpec::quantity("amount", "order value").required())
            .output(OutputSpec::new("aov", "currency", "revenue / orders"))
            .output(OutputSpec::new("median_order_value", "currency", "median order amount"))
            .output(OutputSpec::new("p90_order_value", "currency", "90th percentile of order amounts"))
            .output(OutputSpec::new("orders", "count", "orders (rows)"))
            .output(OutputSpec::new("revenue", "currency", "sum of order amounts"))
            .output(OutputSpec::new("customers", "count", "distinct customers"))
            .output(OutputSpec::new("orders_per_customer", "count", "orders / customers"))
    }

    fn compute(&self, input: &Input<'_>, _params: &Params) -> Result<Output, MetricError> {
        let amounts = input.double("amount")?;
        let customers = input.string("customer_id")?;
        let stats = OrderStats::of(amounts.values().to_vec()).ok_or_else(|| {
            MetricError::invalid_input("the input has no orders; aov needs at least one")
        })?;
        let distinct: HashSet<&str> = customers.iter().flatten().collect();
        Ok(Output::new()
            .scalar(Scalar::new("aov", stats.aov))
            .scalar(Scalar::new("median_order_value", stats.median))
            .scalar(Scalar::new("p90_order_value", stats.p90))
            .scalar(Scalar::new("orders", stats.orders as f64))
            .scalar(Scalar::new("revenue", stats.revenue))
            .scalar(Scalar::new("customers", distinct.len() as f64))
            .scalar(Scalar::new(
                "orders_per_customer",
                stats.orders as f64 / distinct.len() as f64,
            )))
    }
}

mittari_sdk::export_plugin!(Aov);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(amounts: &[f64], expect: Option<(f64, f64, f64, f64)>) {
        let got = OrderStats::of(amounts.to_vec()).map(|s| (s.revenue, s.aov, s.median, s.p90));
        match (got, expect) {
            (Some(g), Some(e)) => {
                assert_eq!((g.0, g.1, g.2), (e.0, e.1, e.2));
                assert!((g.3 - e.3).abs() < 1e-12, "p90 {} vs {}", g.3, e.3);
            }
            (g, e) => assert_eq!(g, e),
        }
    }

    #[test]
    fn order_statistics() {
        // Sorted 10, 20, 30, 40, 100: revenue 200, aov 40, median 30,
        // p90 at position 0.9 * 4 = 3.6: 40 + 0.6 * (100 - 40) = 76.
        check(
            &[100.0, 20.0, 40.0, 10.0, 30.0],
            Some((200.0, 40.0, 30.0, 76.0)),
        );
        // Even count: median halfway between 20 and 30.
        check(&[10.0, 20.0, 30.0, 40.0], Some((100.0, 25.0, 25.0, 37.0)));
        check(&[12.5], Some((12.5, 12.5, 12.5, 12.5)));
        check(&[], None);
    }
}
