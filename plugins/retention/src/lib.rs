//! Customer retention and churn over a period, the money value of the customers lost, and
//! acquisition cohorts' survival.
//!
//! A customer is active at instant t when start <= t < end (no end: still a customer). With
//! S = active at period_start, E = active at period_end, N = started in (period_start,
//! period_end] and churned = ended in (period_start, period_end], every customer is counted
//! consistently: S - E + N = churned, so churn_rate * S / 100 is exactly the churned count.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use mittari_sdk::arrow_array::{
    Array as _, ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use mittari_sdk::prelude::*;
use mittari_sdk::time::{date_micros, date_of, format_timestamp};

struct Retention;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Customer {
    start: i64,
    end: Option<i64>,
    revenue: Option<f64>,
}

impl Customer {
    fn active_at(&self, t: i64) -> bool {
        self.start <= t && self.end.is_none_or(|end| end > t)
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct PeriodCounts {
    at_start: u64,
    at_end: u64,
    new: u64,
    churned: u64,
    churned_revenue: f64,
    /// Churned customers without a revenue value.
    churned_without_revenue: u64,
}

fn count(customers: &[Customer], period_start: i64, period_end: i64) -> PeriodCounts {
    let in_period = |t: i64| period_start < t && t <= period_end;
    let mut counts = PeriodCounts::default();
    for c in customers {
        counts.at_start += u64::from(c.active_at(period_start));
        counts.at_end += u64::from(c.active_at(period_end));
        counts.new += u64::from(in_period(c.start));
        if c.end.is_some_and(in_period) {
            counts.churned += 1;
            match c.revenue {
                Some(revenue) => counts.churned_revenue += revenue,
                None => counts.churned_without_revenue += 1,
            }
        }
    }
    counts
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CohortPeriod {
    Month,
    Quarter,
}

impl CohortPeriod {
    fn months(self) -> u32 {
        match self {
            CohortPeriod::Month => 1,
            CohortPeriod::Quarter => 3,
        }
    }

    /// The (year, first month) of the period containing `t`.
    fn containing(self, t: i64) -> (i64, u32) {
        let (year, month, _) = date_of(t);
        (year, month - (month - 1) % self.months())
    }

    fn label(self, (year, month): (i64, u32)) -> String {
        match self {
            CohortPeriod::Month => format!("{year:04}-{month:02}"),
            CohortPeriod::Quarter => format!("{year:04}-Q{}", (month - 1) / 3 + 1),
        }
    }

    /// The start of the period `k` periods after the one starting at (year, month).
    fn boundary(self, (year, month): (i64, u32), k: u32) -> i64 {
        date_micros(year, month + k * self.months(), 1)
    }
}

#[derive(Debug, Clone, PartialEq)]
struct CohortRow {
    cohort: String,
    cohort_start: i64,
    age: u32,
    customers: u64,
    active: u64,
}

/// For every acquisition period up to `period_end`, the customers acquired in it and how many
/// are active k = 1, 2, … periods after its start, while that instant is at or before
/// `period_end`.
fn cohorts(customers: &[Customer], period_end: i64, period: CohortPeriod) -> Vec<CohortRow> {
    let mut by_cohort: BTreeMap<(i64, u32), Vec<&Customer>> = BTreeMap::new();
    for c in customers.iter().filter(|c| c.start <= period_end) {
        by_cohort
            .entry(period.containing(c.start))
            .or_default()
            .push(c);
    }
    let mut rows = Vec::new();
    for (key, members) in by_cohort {
        let mut age = 1;
        loop {
            let at = period.boundary(key, age);
            if at > period_end {
                break;
            }
            rows.push(CohortRow {
                cohort: period.label(key),
                cohort_start: period.boundary(key, 0),
                age,
                customers: members.len() as u64,
                active: members.iter().filter(|c| c.active_at(at)).count() as u64,
            });
            age += 1;
        }
    }
    rows
}

fn cohort_table(rows: &[CohortRow]) -> Result<RecordBatch, MetricError> {
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "cohort",
            Arc::new(
                rows.iter()
                    .map(|r| Some(r.cohort.as_str()))
                    .collect::<StringArray>(),
            ),
        ),
        (
            "cohort_start",
            Arc::new(
                rows.iter()
                    .map(|r| Some(r.cohort_start))
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone("UTC"),
            ),
        ),
        (
            "age",
            Arc::new(
                rows.iter()
                    .map(|r| i64::from(r.age))
                    .collect::<Int64Array>(),
            ),
        ),
        (
            "customers",
            Arc::new(
                rows.iter()
                    .map(|r| r.customers as i64)
                    .collect::<Int64Array>(),
            ),
        ),
        (
            "active",
            Arc::new(rows.iter().map(|r| r.active as i64).collect::<Int64Array>()),
        ),
        (
            "retained_share",
            Arc::new(
                rows.iter()
                    .map(|r| 100.0 * r.active as f64 / r.customers as f64)
                    .collect::<Float64Array>(),
            ),
        ),
    ];
    result_table("cohorts", columns)
}

impl Metric for Retention {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new("retention", env!("CARGO_PKG_VERSION"), "customer retention and churn over a period, and the revenue lost")
            .description(
                "One row per customer. A customer is active at instant t when start <= t < end (no end: still a customer). \
                 S = customers active at period_start, E = active at period_end, N = customers who started in \
                 (period_start, period_end]. retention_rate = (E - N) / S * 100; churn_rate = 100 - retention_rate. \
                 churned_customers = customers whose end is in (period_start, period_end], new customers lost in the \
                 period included, so that churn_rate * S / 100 = churned_customers exactly; churned_revenue sums their \
                 revenue. A date means midnight UTC: for the whole of 2024 use period_start 2024-01-01 and period_end \
                 2025-01-01. The cohorts table groups customers by the month or quarter they started in and gives the \
                 share active 1, 2, ... periods after the start of that month or quarter, up to period_end.",
            )
            .input(ColumnSpec::string("customer_id", "the customer; one row each").required())
            .input(ColumnSpec::timestamp("start", "when the customer relationship began").required())
            .input(ColumnSpec::timestamp("end", "when it ended; empty while still a customer"))
            .input(ColumnSpec::double("revenue", "the customer's revenue, used to value churn").min(0.0))
            .parameter(ParameterSpec::new("period_start", DataType::Timestamp, "start of the period (ISO 8601)"))
            .parameter(ParameterSpec::new("period_end", DataType::Timestamp, "end of the period (ISO 8601), after period_start"))
            .parameter(ParameterSpec::string("cohort_period", "month", "acquisition period of the cohorts table").allowed_values(&["month", "quarter"]))
            .output(OutputSpec::new("customers_at_start", "count", "S: customers active at period_start"))
            .output(OutputSpec::new("customers_at_end", "count", "E: customers active at period_end"))
            .output(OutputSpec::new("new_customers", "count", "N: customers who started during the period"))
            .output(OutputSpec::new("retention_rate", "%", "(E - N) / S * 100"))
            .output(OutputSpec::new("churn_rate", "%", "100 - retention_rate"))
            .output(OutputSpec::new("churned_customers", "count", "customers lost during the period"))
            .output(OutputSpec::new("churned_revenue", "currency", "revenue of the customers lost during the period"))
            .output(OutputSpec::new("net_change", "count", "E - S"))
            .table("cohorts", "per acquisition cohort and age in periods: cohort size, customers active, retained share %")
    }

    fn compute(&self, input: &Input<'_>, params: &Params) -> Result<Output, MetricError> {
        let period_start = params.timestamp_micros("period_start")?;
        let period_end = params.timestamp_micros("period_end")?;
        if period_end <= period_start {
            return Err(MetricError::invalid_parameter(
                "period_end",
                format!(
                    "period_end {} is not after period_start {}; give a period that ends after it starts",
                    format_timestamp(period_end),
                    format_timestamp(period_start)
                ),
            ));
        }
        let cohort_period = match params.str("cohort_period")? {
            "quarter" => CohortPeriod::Quarter,
            _ => CohortPeriod::Month,
        };
        input.check_unique("customer_id")?;
        let start = input.timestamp("start")?;
        let end = input.optional_timestamp("end")?;
        let revenue = input.optional_double("revenue")?;
        let mut customers = Vec::with_capacity(input.num_rows());
        for row in 0..input.num_rows() {
            let customer = Customer {
                start: start.value(row),
                end: end.filter(|e| e.is_valid(row)).map(|e| e.value(row)),
                revenue: revenue.filter(|r| r.is_valid(row)).map(|r| r.value(row)),
            };
            if let Some(end) = customer.end.filter(|&end| end < customer.start) {
                return Err(MetricError::invalid_value(
                    "end",
                    row,
                    format!(
                        "end {} precedes start {}; a customer cannot leave before joining",
                        format_timestamp(end),
                        format_timestamp(customer.start)
                    ),
                ));
            }
            customers.push(customer);
        }
        let counts = count(&customers, period_start, period_end);
        if counts.at_start == 0 {
            return Err(MetricError::invalid_input(format!(
                "no customer was active at period_start {}, so retention is undefined (it divides by that count); \
                 choose a period_start when the customer base is not empty",
                format_timestamp(period_start)
            )));
        }
        let s = counts.at_start as f64;
        let retention = (counts.at_end as f64 - counts.new as f64) / s * 100.0;
        let churned_revenue = match revenue {
            Some(_) => Scalar::new("churned_revenue", counts.churned_revenue),
            None => Scalar::undefined(
                "churned_revenue",
                "the input has no revenue column; add one to value the customers lost",
            ),
        };
        let mut output = Output::new()
            .scalar(Scalar::new("customers_at_start", s))
            .scalar(Scalar::new("customers_at_end", counts.at_end as f64))
            .scalar(Scalar::new("new_customers", counts.new as f64))
            .scalar(Scalar::new("retention_rate", retention))
            .scalar(Scalar::new("churn_rate", 100.0 - retention))
            .scalar(Scalar::new("churned_customers", counts.churned as f64))
            .scalar(churned_revenue)
            .scalar(Scalar::new("net_change", counts.at_end as f64 - s))
            .table(
                "cohorts",
                cohort_table(&cohorts(&customers, period_end, cohort_period))?,
            );
        if revenue.is_some() && counts.churned_without_revenue > 0 {
            output = output.warning(
                "missing_revenue",
                format!(
                    "{} churned customers have no revenue; churned_revenue counts only the {} that do",
                    counts.churned_without_revenue,
                    counts.churned - counts.churned_without_revenue
                ),
            );
        }
        Ok(output)
    }
}

mittari_sdk::export_plugin!(Retention);

#[cfg(test)]
mod tests {
    use mittari_sdk::time::parse_timestamp;

    use super::*;

    fn t(text: &str) -> i64 {
        parse_timestamp(text).unwrap()
    }

    fn customer(start: &str, end: Option<&str>, revenue: f64) -> Customer {
        Customer {
            start: t(start),
            end: end.map(t),
            revenue: Some(revenue),
        }
    }

    /// The issue's example: S = 1000, E = 900, N = 200 gives retention 70 %, churn 30 %.
    /// 1000 customers at the start of 2024, 300 of them leave during the year, 200 join and stay.
    #[test]
    fn worked_example_from_the_issue() {
        let mut customers = Vec::new();
        for i in 0..1000 {
            let end = (i < 300).then_some("2024-06-30");
            customers.push(customer("2023-01-01", end, 10.0));
        }
        for _ in 0..200 {
            customers.push(customer("2024-03-01", None, 10.0));
        }
        let c = count(&customers, t("2024-01-01"), t("2025-01-01"));
        assert_eq!(
            (c.at_start, c.at_end, c.new, c.churned),
            (1000, 900, 200, 300)
        );
        let retention = (c.at_end as f64 - c.new as f64) / c.at_start as f64 * 100.0;
        assert_eq!(retention, 70.0);
        assert_eq!(100.0 - retention, 30.0);
        assert_eq!(c.churned_revenue, 3000.0);
    }

    /// Each case: customers as (start, end), and the expected (S, E, N, churned) for 2024.
    #[test]
    fn boundaries_and_the_churn_identity() {
        let check = |rows: &[(&str, Option<&str>)], expect: (u64, u64, u64, u64)| {
            let customers: Vec<Customer> = rows.iter().map(|(s, e)| customer(s, *e, 1.0)).collect();
            let c = count(&customers, t("2024-01-01"), t("2025-01-01"));
            assert_eq!((c.at_start, c.at_end, c.new, c.churned), expect, "{rows:?}");
            // S - E + N = churned, always.
            assert_eq!(c.at_start + c.new - c.at_end, c.churned, "{rows:?}");
        };
        // Joined exactly at period_start: already active then, not new.
        check(&[("2024-01-01", None)], (1, 1, 0, 0));
        // Left exactly at period_start: gone before the period, not churned in it.
        check(&[("2023-01-01", Some("2024-01-01"))], (0, 0, 0, 0));
        // Left exactly at period_end: churned in the period, not active at its end.
        check(&[("2023-01-01", Some("2025-01-01"))], (1, 0, 0, 1));
        // Joined and left within the period: new and churned.
        check(&[("2024-02-01", Some("2024-03-01"))], (0, 0, 1, 1));
        // Joined after the period: not counted.
        check(&[("2025-02-01", None)], (0, 0, 0, 0));
        // A zero-length relationship inside the period: new and churned at once.
        check(&[("2024-05-05", Some("2024-05-05"))], (0, 0, 1, 1));
    }

    #[test]
    fn monthly_and_quarterly_cohorts() {
        let customers = [
            customer("2024-01-10", Some("2024-02-15"), 0.0), // Jan cohort, gone before Mar 1
            customer("2024-01-20", None, 0.0),               // Jan cohort, stays
            customer("2024-02-01", Some("2024-03-01"), 0.0), // Feb cohort, leaves exactly at Mar 1
        ];
        let rows = cohorts(&customers, t("2024-03-01"), CohortPeriod::Month);
        let got: Vec<(&str, u32, u64, u64)> = rows
            .iter()
            .map(|r| (r.cohort.as_str(), r.age, r.customers, r.active))
            .collect();
        // Jan: at Feb 1 both active, at Mar 1 one. Feb: at Mar 1 none (end is exclusive).
        assert_eq!(
            got,
            [
                ("2024-01", 1, 2, 2),
                ("2024-01", 2, 2, 1),
                ("2024-02", 1, 1, 0)
            ]
        );
        assert_eq!(rows[0].cohort_start, t("2024-01-01"));

        let rows = cohorts(&customers, t("2024-07-01"), CohortPeriod::Quarter);
        let got: Vec<(&str, u32, u64, u64)> = rows
            .iter()
            .map(|r| (r.cohort.as_str(), r.age, r.customers, r.active))
            .collect();
        assert_eq!(got, [("2024-Q1", 1, 3, 1), ("2024-Q1", 2, 3, 1)]);
    }
}
