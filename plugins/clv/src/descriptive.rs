//! The descriptive CLV models over a transaction log: `historic`, `simple` and `retention`.

use std::collections::HashMap;
use std::sync::Arc;

use mittari_sdk::arrow_array::{
    Array as _, ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use mittari_sdk::prelude::*;
use mittari_sdk::stats::quantile_sorted;
use mittari_sdk::time::MICROS_PER_DAY;

/// Days in a year, for turning the observed time span into years.
const DAYS_PER_YEAR: f64 = 365.25;

/// One customer's transactions, summarized.
#[derive(Debug, Clone, PartialEq)]
struct CustomerValue {
    id: String,
    orders: u64,
    revenue: f64,
    /// Margin earned: Σ amount × margin.
    value: f64,
    first: i64,
    last: i64,
}

/// The transaction log, summarized per customer, with totals.
#[derive(Debug, Clone, PartialEq)]
struct Summary {
    /// Highest value first; ties by id.
    customers: Vec<CustomerValue>,
    orders: u64,
    revenue: f64,
    value: f64,
    /// Time from the first to the last transaction, in years.
    span_years: f64,
}

#[derive(Debug, Clone, Copy)]
struct Transaction<'a> {
    customer: &'a str,
    timestamp: i64,
    amount: f64,
    margin: f64,
}

fn summarize<'a>(transactions: impl Iterator<Item = Transaction<'a>>) -> Option<Summary> {
    let mut by_customer: HashMap<&str, CustomerValue> = HashMap::new();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for t in transactions {
        first = first.min(t.timestamp);
        last = last.max(t.timestamp);
        let c = by_customer
            .entry(t.customer)
            .or_insert_with(|| CustomerValue {
                id: t.customer.to_owned(),
                orders: 0,
                revenue: 0.0,
                value: 0.0,
                first: t.timestamp,
                last: t.timestamp,
            });
        c.orders += 1;
        c.revenue += t.amount;
        c.value += t.amount * t.margin;
        c.first = c.first.min(t.timestamp);
        c.last = c.last.max(t.timestamp);
    }
    if by_customer.is_empty() {
        return None;
    }
    let mut customers: Vec<CustomerValue> = by_customer.into_values().collect();
    customers.sort_by(|a, b| b.value.total_cmp(&a.value).then_with(|| a.id.cmp(&b.id)));
    Some(Summary {
        orders: customers.iter().map(|c| c.orders).sum(),
        revenue: customers.iter().map(|c| c.revenue).sum(),
        value: customers.iter().map(|c| c.value).sum(),
        span_years: (last - first) as f64 / MICROS_PER_DAY as f64 / DAYS_PER_YEAR,
        customers,
    })
}

impl Summary {
    fn n(&self) -> f64 {
        self.customers.len() as f64
    }

    /// The share of all value earned by the top 10 % of customers (at least one customer).
    fn top_decile_share(&self) -> Option<f64> {
        let top = self.customers.len().div_ceil(10);
        let value: f64 = self.customers[..top].iter().map(|c| c.value).sum();
        (self.value > 0.0).then(|| 100.0 * value / self.value)
    }

    fn median_value(&self) -> Option<f64> {
        let mut values: Vec<f64> = self.customers.iter().map(|c| c.value).collect();
        values.sort_by(f64::total_cmp);
        quantile_sorted(&values, 0.5)
    }

    fn customer_table(&self) -> Result<RecordBatch, MetricError> {
        let c = &self.customers;
        let timestamps = |f: fn(&CustomerValue) -> i64| {
            Arc::new(
                c.iter()
                    .map(|c| Some(f(c)))
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone("UTC"),
            ) as ArrayRef
        };
        let columns: Vec<(&str, ArrayRef)> = vec![
            (
                "customer_id",
                Arc::new(
                    c.iter()
                        .map(|c| Some(c.id.as_str()))
                        .collect::<StringArray>(),
                ),
            ),
            (
                "orders",
                Arc::new(c.iter().map(|c| c.orders as i64).collect::<Int64Array>()),
            ),
            (
                "revenue",
                Arc::new(c.iter().map(|c| c.revenue).collect::<Float64Array>()),
            ),
            (
                "value",
                Arc::new(c.iter().map(|c| c.value).collect::<Float64Array>()),
            ),
            ("first_purchase", timestamps(|c| c.first)),
            ("last_purchase", timestamps(|c| c.last)),
        ];
        result_table("customers", columns)
    }
}

/// m × r / (1 + d − r): the value of a customer who yields margin m a year, is retained with
/// probability r each year and whose future margin is discounted at rate d (margin received at
/// the end of each year, first year included).
fn retention_clv(annual_margin: f64, retention: f64, discount_rate: f64) -> f64 {
    annual_margin * retention / (1.0 + discount_rate - retention)
}

/// Average order value × purchases per customer per year × gross margin × lifespan in years.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SimpleClv {
    aov: f64,
    frequency: f64,
    margin: f64,
    clv: f64,
}

fn simple_clv(summary: &Summary, lifespan: f64) -> Result<SimpleClv, MetricError> {
    if summary.span_years <= 0.0 {
        return Err(MetricError::invalid_column(
            "timestamp",
            "all transactions are at the same instant, so no purchase frequency per year can be derived; give transactions spanning a period",
        ));
    }
    if summary.revenue <= 0.0 {
        return Err(MetricError::invalid_column(
            "amount",
            "total revenue is zero, so no gross margin can be derived",
        ));
    }
    let aov = summary.revenue / summary.orders as f64;
    let frequency = summary.orders as f64 / summary.n() / summary.span_years;
    let margin = summary.value / summary.revenue;
    Ok(SimpleClv {
        aov,
        frequency,
        margin,
        clv: aov * frequency * margin * lifespan,
    })
}

/// Computes the descriptive models (`historic`, `simple`, `retention`) from a transaction log.
pub(crate) fn compute(input: &Input<'_>, params: &Params) -> Result<Output, MetricError> {
    let model = params.str("model")?;
    let crate::Transactions {
        customer: ids,
        timestamp: timestamps,
        amount: amounts,
    } = crate::transactions(input, model)?;
    let margins = input.optional_double("margin")?;
    let default_margin = params.f64("margin")?;
    let transactions = (0..input.num_rows()).map(|i| Transaction {
        customer: ids.value(i),
        timestamp: timestamps.value(i),
        amount: amounts.value(i),
        margin: margins
            .filter(|m| m.is_valid(i))
            .map_or(default_margin, |m| m.value(i)),
    });
    let summary = summarize(transactions).ok_or_else(|| {
        MetricError::invalid_input("the input has no transactions; clv needs at least one")
    })?;
    let n = summary.n();
    let common = |output: Output, clv: f64| {
        output
            .scalar(Scalar::new("clv", clv))
            .scalar(Scalar::new("clv_total", clv * n))
            .scalar(Scalar::new("customers", n))
            .scalar(Scalar::new("revenue", summary.revenue))
    };
    match model {
        "simple" => {
            let lifespan = params.optional_f64("lifespan")?.ok_or_else(|| {
                MetricError::invalid_parameter(
                    "lifespan",
                    "model simple needs the expected customer lifespan in years, e.g. lifespan=3",
                )
            })?;
            let simple = simple_clv(&summary, lifespan)?;
            Ok(common(Output::new(), simple.clv)
                .scalar(Scalar::new("aov", simple.aov))
                .scalar(Scalar::new("purchase_frequency", simple.frequency))
                .scalar(Scalar::new("gross_margin", simple.margin)))
        }
        "retention" => {
            let retention = params.optional_f64("retention")?.ok_or_else(|| {
                MetricError::invalid_parameter(
                    "retention",
                    "model retention needs the annual retention probability, e.g. retention=0.8",
                )
            })?;
            let annual_margin = match params.optional_f64("annual_margin")? {
                Some(m) => m,
                None if summary.span_years > 0.0 => summary.value / n / summary.span_years,
                None => {
                    return Err(MetricError::invalid_parameter(
                        "annual_margin",
                        "all transactions are at the same instant, so no annual margin can be derived; give annual_margin",
                    ));
                }
            };
            let clv = retention_clv(annual_margin, retention, params.f64("discount_rate")?);
            Ok(common(Output::new(), clv).scalar(Scalar::new("annual_margin", annual_margin)))
        }
        _ => {
            let top_share = match summary.top_decile_share() {
                Some(share) => Scalar::new("top_decile_share", share),
                None => Scalar::undefined("top_decile_share", "the total value is zero"),
            };
            let median = summary.median_value().unwrap_or(0.0);
            Ok(Output::new()
                .scalar(Scalar::new("clv", summary.value / n))
                .scalar(Scalar::new("clv_total", summary.value))
                .scalar(Scalar::new("clv_median", median))
                .scalar(top_share)
                .scalar(Scalar::new("customers", n))
                .scalar(Scalar::new("revenue", summary.revenue))
                .table("customers", summary.customer_table()?))
        }
    }
}

#[cfg(test)]
mod tests {
    use mittari_sdk::time::parse_timestamp;

    use super::*;

    /// The docs' worked example: a buys 100 (2021-01-01) and 300 (2023-06-01), b buys 200
    /// (2022-03-01) and 200 (2025-01-01): 4 orders, revenue 800, over exactly 4 years (1461 days).
    fn example(margin: f64) -> Summary {
        let rows = [
            ("a", "2021-01-01", 100.0),
            ("a", "2023-06-01", 300.0),
            ("b", "2022-03-01", 200.0),
            ("b", "2025-01-01", 200.0),
        ];
        summarize(rows.iter().map(|&(customer, at, amount)| Transaction {
            customer,
            timestamp: parse_timestamp(at).unwrap(),
            amount,
            margin,
        }))
        .unwrap()
    }

    #[test]
    fn historic() {
        let s = example(0.25);
        // Each customer earned 400 * 0.25 = 100: mean 100, median 100, total 200; the top 10%
        // is one customer of two: 50% of the value.
        assert_eq!(
            (s.orders, s.revenue, s.value, s.span_years),
            (4, 800.0, 200.0, 4.0)
        );
        assert_eq!(s.median_value(), Some(100.0));
        assert_eq!(s.top_decile_share(), Some(50.0));
        assert_eq!(
            s.customers
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn simple() {
        // aov 800 / 4 = 200; frequency 4 orders / 2 customers / 4 years = 0.5 a year;
        // margin 0.25; lifespan 10: clv = 200 * 0.5 * 0.25 * 10 = 250.
        let simple = simple_clv(&example(0.25), 10.0).unwrap();
        assert_eq!(
            simple,
            SimpleClv {
                aov: 200.0,
                frequency: 0.5,
                margin: 0.25,
                clv: 250.0
            }
        );
    }

    #[test]
    fn retention_formula() {
        // The example: m = 100, r = 0.8, d = 0.1: 100 * 0.8 / 0.3 = 266.666...
        assert!((retention_clv(100.0, 0.8, 0.1) - 800.0 / 3.0).abs() < 1e-12);
        // No discounting, r = 0.5: m * 0.5 / 0.5 = m (one expected future year).
        assert_eq!(retention_clv(100.0, 0.5, 0.0), 100.0);
        assert_eq!(retention_clv(100.0, 0.0, 0.1), 0.0);
    }

    #[test]
    fn top_decile_takes_at_least_one_customer_and_rounds_up() {
        let summary = |values: &[f64]| {
            let rows: Vec<(String, f64)> = values
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("c{i:02}"), *v))
                .collect();
            summarize(rows.iter().map(|(c, v)| Transaction {
                customer: c,
                timestamp: 0,
                amount: *v,
                margin: 1.0,
            }))
            .unwrap()
        };
        // 11 customers: the top 10% is 2 customers (ceil(1.1)): (50 + 40) / 100.
        let s = summary(&[50.0, 40.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0]);
        assert_eq!(s.top_decile_share(), Some(90.0));
        assert_eq!(summary(&[0.0]).top_decile_share(), None);
    }

    #[test]
    fn simple_needs_a_time_span() {
        let s = summarize(
            [Transaction {
                customer: "a",
                timestamp: 0,
                amount: 10.0,
                margin: 1.0,
            }]
            .into_iter(),
        )
        .unwrap();
        assert!(
            matches!(simple_clv(&s, 3.0), Err(MetricError::InvalidInput { column: Some(c), .. }) if c == "timestamp")
        );
    }
}
