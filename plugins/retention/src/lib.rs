//! Customer retention and churn over a period, the money value of the customers lost, and
//! acquisition cohorts' survival.
//!
//! A customer is active at instant t when start <= t < end (no end: still a customer). With
//! S = active at period_start, E = active at period_end, N = started in (period_start,
//! period_end] and churned = ended in (period_start, period_end], every customer is counted
//! consistently: S - E + N = churned, so churn_rate * S / 100 is exactly the churned count.
//!
//! Where no contract says who left, the input is a purchase log instead and the same figures
//! are predicted by a purchase model ([`purchases`]).
#![forbid(unsafe_code)]

mod purchases;

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

/// The cohorts table has at most this many rows: a century of monthly cohorts fits
/// (1 200 cohorts, 720 600 rows); a start date centuries before period_end does not.
const MAX_COHORT_ROWS: i64 = 1_000_000;

/// Months since year 0: `year * 12 + month - 1` of the month containing `t`.
fn month_index(t: i64) -> i64 {
    let (year, month, _) = date_of(t);
    year * 12 + i64::from(month) - 1
}

/// Midnight UTC on the first day of month `index` (see [`month_index`]).
fn month_start(index: i64) -> i64 {
    date_micros(index.div_euclid(12), index.rem_euclid(12) as u32 + 1, 1)
}

impl CohortPeriod {
    fn months(self) -> i64 {
        match self {
            CohortPeriod::Month => 1,
            CohortPeriod::Quarter => 3,
        }
    }

    /// The month index of the first month of the period containing `t`.
    fn containing(self, t: i64) -> i64 {
        let index = month_index(t);
        index - index.rem_euclid(self.months())
    }

    fn label(self, first_month: i64) -> String {
        let (year, month) = (first_month.div_euclid(12), first_month.rem_euclid(12) + 1);
        match self {
            CohortPeriod::Month => format!("{year:04}-{month:02}"),
            CohortPeriod::Quarter => format!("{year:04}-Q{}", (month - 1) / 3 + 1),
        }
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
///
/// A member of a cohort starting at month m is active at the boundary of age k ≥ 1 (the start
/// of month m + k·p) exactly when it has no end or ends after that boundary, so each member
/// is active for a prefix of ages: counting members by their last active age and summing from
/// the oldest age down costs one pass over the members and one over the ages, whatever the span.
fn cohorts(
    customers: &[Customer],
    period_end: i64,
    period: CohortPeriod,
) -> Result<Vec<CohortRow>, MetricError> {
    let months = period.months();
    // The boundary at month index b lies at or before period_end exactly when b <= last_month.
    let last_month = month_index(period_end);
    let mut by_cohort: BTreeMap<i64, (usize, Vec<&Customer>)> = BTreeMap::new();
    for (row, c) in customers.iter().enumerate() {
        if c.start <= period_end {
            let entry = by_cohort
                .entry(period.containing(c.start))
                .or_insert_with(|| (row, Vec::new()));
            entry.1.push(c);
        }
    }
    let ages_of = |first_month: i64| (last_month - first_month) / months;
    let total: i64 = by_cohort.keys().map(|&first| ages_of(first)).sum();
    if total > MAX_COHORT_ROWS
        && let Some((&first, &(row, _))) = by_cohort.first_key_value()
    {
        return Err(MetricError::invalid_value(
            "start",
            row,
            format!(
                "the cohorts table would have {total} rows, more than {MAX_COHORT_ROWS}: the earliest cohort, {}, \
                 is {} periods before period_end {}; check this start date, or use cohort_period=quarter",
                period.label(first),
                ages_of(first),
                format_timestamp(period_end)
            ),
        ));
    }
    let mut rows = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for (first, (_, members)) in by_cohort {
        let ages = ages_of(first);
        // last_active[a]: members whose last active age is a (0: not active at any age).
        let mut last_active = vec![0u64; usize::try_from(ages).unwrap_or(0) + 1];
        for c in &members {
            let last = match c.end {
                None => ages,
                Some(end) => {
                    // The last month whose start is strictly before `end`.
                    let month = month_index(end);
                    let before = if month_start(month) < end {
                        month
                    } else {
                        month - 1
                    };
                    (before - first).div_euclid(months).clamp(0, ages)
                }
            };
            last_active[last as usize] += 1;
        }
        let mut active_rows = Vec::with_capacity(last_active.len().saturating_sub(1));
        let mut active = 0;
        for age in (1..last_active.len()).rev() {
            active += last_active[age];
            active_rows.push((age, active));
        }
        let cohort = period.label(first);
        let cohort_start = month_start(first);
        rows.extend(
            active_rows
                .into_iter()
                .rev()
                .map(|(age, active)| CohortRow {
                    cohort: cohort.clone(),
                    cohort_start,
                    age: age as u32,
                    customers: members.len() as u64,
                    active,
                }),
        );
    }
    Ok(rows)
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
                "One row per customer (contractual: start and end say who left), or one row per purchase (a purchase \
                 log: customer_id, timestamp, amount; churn is then predicted). A customer is active at instant t when \
                 start <= t < end (no end: still a customer). S = customers active at period_start, E = active at \
                 period_end, N = customers who started in (period_start, period_end]. retention_rate = (E - N) / S * 100; \
                 churn_rate = 100 - retention_rate. churned_customers = customers whose end is in (period_start, \
                 period_end], new customers lost in the period included, so that churn_rate * S / 100 = \
                 churned_customers exactly; churned_revenue sums their revenue. A date means midnight UTC: for the \
                 whole of 2024 use period_start 2024-01-01 and period_end 2025-01-01. The cohorts table groups \
                 customers by the month or quarter they started in and gives the share active 1, 2, ... periods after \
                 the start of that month or quarter, up to period_end. From a purchase log, a purchase model (model) \
                 fitted to the log up to observation_end gives each customer's probability of being active at \
                 period_start and period_end, looking back at a past period or forecasting one, and S, E and \
                 churned_customers are their expected counts, with intervals that cover the realized counts (interval); \
                 N counts the customers whose first purchase is in the period.",
            )
            .input(ColumnSpec::string("customer_id", "the customer; one row each (contractual), or one row per purchase (purchase log)").required())
            .input(ColumnSpec::timestamp("start", "when the customer relationship began (contractual)"))
            .input(ColumnSpec::timestamp("end", "when it ended; empty while still a customer (contractual)"))
            .input(ColumnSpec::quantity("revenue", "the customer's revenue, used to value churn (contractual)"))
            .input(ColumnSpec::timestamp("timestamp", "when the purchase happened (purchase log)"))
            .input(ColumnSpec::quantity("amount", "the purchase's value; a customer's amounts up to observation_end are their revenue, used to value churn (purchase log)"))
            .parameter(ParameterSpec::new("period_start", DataType::Timestamp, "start of the period (ISO 8601)"))
            .parameter(ParameterSpec::new("period_end", DataType::Timestamp, "end of the period (ISO 8601), after period_start"))
            .parameter(ParameterSpec::string("cohort_period", "month", "acquisition period of the cohorts table (contractual)").allowed_values(&["month", "quarter"]))
            .parameter(
                ParameterSpec::string("model", "pareto_nbd", "purchase model that predicts who is still active (purchase log): pareto_nbd (dropout at any time), bgnbd or mbgnbd (dropout only right after a purchase)")
                    .allowed_values(&purchases::MODELS),
            )
            .parameter(
                ParameterSpec::string("time_unit", "week", "grain at which the model counts purchases and time (purchase log): hour, day, week (Monday to Sunday), month, quarter or year, UTC; the period's boundaries count from the start of the unit containing them").allowed_values(&["hour", "day", "week", "month", "quarter", "year"]),
            )
            .parameter(
                ParameterSpec::new("observation_end", DataType::Timestamp, "end of observation of the purchase log, which the model is fitted to; default: its last timestamp (purchase log)")
                    .optional(),
            )
            .parameter(
                ParameterSpec::new("interval", DataType::Double, "confidence level of intervals on the predicted counts, rates and revenue: the fit's uncertainty and each customer's own (purchase log)")
                    .optional()
                    .range(0.5, 0.999),
            )
            .output(OutputSpec::new("customers_at_start", "count", "S: customers active at period_start (expected, from a purchase log)"))
            .output(OutputSpec::new("customers_at_end", "count", "E: customers active at period_end (expected, from a purchase log)"))
            .output(OutputSpec::new("new_customers", "count", "N: customers who started during the period (first purchase, from a purchase log)"))
            .output(OutputSpec::new("retention_rate", "%", "(E - N) / S * 100"))
            .output(OutputSpec::new("churn_rate", "%", "100 - retention_rate"))
            .output(OutputSpec::new("churned_customers", "count", "customers lost during the period (expected, from a purchase log)"))
            .output(OutputSpec::new("churned_revenue", "currency", "revenue of the customers lost during the period (from a purchase log: each customer's purchases up to observation_end, weighted by the probability they left in the period)"))
            .output(OutputSpec::new("net_change", "count", "E - S"))
            .table("cohorts", "per acquisition cohort and age in periods: cohort size, customers active, retained share % (contractual)")
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
        let setting = Setting::of(input)?;
        let ignored = ignored_parameters(setting, params);
        let output = match setting {
            Setting::Contractual => contractual(input, params, period_start, period_end)?,
            Setting::PurchaseLog => purchases::compute(input, params, period_start, period_end)?,
        };
        Ok(ignored.into_iter().fold(output, |output, (name, why)| {
            output.warning(
                "parameter_ignored",
                format!("{name} has no effect here: {why}"),
            )
        }))
    }
}

/// Which input the request has: one row per customer with start (and end), or a purchase log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    Contractual,
    PurchaseLog,
}

impl Setting {
    fn of(input: &Input<'_>) -> Result<Setting, MetricError> {
        let contractual = ["start", "end", "revenue"]
            .into_iter()
            .find(|c| input.has_column(c));
        let log = ["timestamp", "amount"]
            .into_iter()
            .find(|c| input.has_column(c));
        match (contractual, log) {
            (Some(_), None) if input.has_column("start") => Ok(Setting::Contractual),
            (None, Some(_)) if input.has_column("timestamp") => Ok(Setting::PurchaseLog),
            (Some(c), Some(l)) => Err(MetricError::invalid_column(
                l,
                format!(
                    "the input has both {c} (one row per customer, contractual) and {l} (a purchase log); \
                     give one kind of input"
                ),
            )),
            (None, Some(_)) => Err(MetricError::invalid_column(
                "timestamp",
                "a purchase log needs a timestamp column, when each purchase happened",
            )),
            _ => Err(MetricError::invalid_column(
                "start",
                "give start (one row per customer: when the relationship began, with end when it ended) \
                 or timestamp (one row per purchase: churn predicted from the purchase log)",
            )),
        }
    }
}

/// [`Params::given`] against this metric's descriptor, built once.
fn given(params: &Params, name: &str) -> Option<String> {
    static DESCRIPTOR: std::sync::OnceLock<MetricDescriptor> = std::sync::OnceLock::new();
    params.given(name, DESCRIPTOR.get_or_init(|| Retention.descriptor()))
}

/// The parameters given that change nothing for this kind of input, each with why.
fn ignored_parameters(setting: Setting, params: &Params) -> Vec<(String, String)> {
    let (only_log, only_contractual) = match setting {
        Setting::Contractual => (
            ["model", "time_unit", "observation_end", "interval"].as_slice(),
            [].as_slice(),
        ),
        Setting::PurchaseLog => ([].as_slice(), ["cohort_period"].as_slice()),
    };
    let mut ignored = Vec::new();
    for name in only_log {
        if let Some(shown) = given(params, name) {
            ignored.push((
                shown,
                "it applies to a purchase log (timestamp column), and this input has one row per customer".to_owned(),
            ));
        }
    }
    for name in only_contractual {
        if let Some(shown) = given(params, name) {
            ignored.push((
                shown,
                "a purchase log has no cohorts table; it applies to one row per customer with start".to_owned(),
            ));
        }
    }
    ignored
}

fn contractual(
    input: &Input<'_>,
    params: &Params,
    period_start: i64,
    period_end: i64,
) -> Result<Output, MetricError> {
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
            cohort_table(&cohorts(&customers, period_end, cohort_period)?)?,
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
        let rows = cohorts(&customers, t("2024-03-01"), CohortPeriod::Month).unwrap();
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

        let rows = cohorts(&customers, t("2024-07-01"), CohortPeriod::Quarter).unwrap();
        let got: Vec<(&str, u32, u64, u64)> = rows
            .iter()
            .map(|r| (r.cohort.as_str(), r.age, r.customers, r.active))
            .collect();
        assert_eq!(got, [("2024-Q1", 1, 3, 1), ("2024-Q1", 2, 3, 1)]);
    }

    #[test]
    fn cohorts_table_size_is_bounded_before_it_is_built() {
        // Two cohorts eight millennia apart: 215 676 rows, each computed.
        let customers = [
            customer("2024-01-10", None, 0.0),
            customer("0001-01-01", None, 0.0),
        ];
        let rows = cohorts(&customers, t("9999-01-01"), CohortPeriod::Month).unwrap();
        assert_eq!(rows.len(), 119_976 + 95_700);
        assert!(rows.iter().all(|r| r.active == 1 && r.customers == 1));
        // A cohort every month of the first century: billions of rows, refused at the
        // earliest cohort's row.
        let mut customers = vec![customer("2024-01-10", None, 0.0)];
        for year in 1..=100 {
            for month in 1..=12 {
                customers.push(customer(&format!("{year:04}-{month:02}-01"), None, 0.0));
            }
        }
        let error = cohorts(&customers, t("9999-01-01"), CohortPeriod::Month).unwrap_err();
        let MetricError::InvalidInput {
            column,
            row,
            message,
        } = error
        else {
            panic!("{error:?}");
        };
        assert_eq!((column.as_deref(), row), (Some("start"), Some(1)));
        assert!(message.contains("0001-01"), "{message}");
    }
}
