//! The RFM summary as SQL, for the engine that holds the data.
//!
//! A transaction log of billions of rows need not leave its warehouse: the predictive CLV
//! models need only one row per customer, and that summary is a `GROUP BY` any SQL engine runs
//! at scale. [`rfm_query`] writes the query that computes exactly what Mittari's own summary
//! (`mittari_models::rfm::summarize`) computes, in the dialect of PostgreSQL, DataFusion,
//! Spark or BigQuery:
//!
//! - instants become UTC microseconds since 1970 first (a `timestamp` or `date` without a zone
//!   is taken as UTC, as Mittari reads it), so the session's time zone and daylight saving
//!   never move a purchase to another day;
//! - periods are days, or Monday-to-Sunday weeks, counted with floor division on integers
//!   (exact for any instant, also before 1970);
//! - transactions after the observation end are ignored; with a holdout, the calibration part
//!   is before its start, T is measured to it, and the holdout's distinct periods are counted;
//! - frequency counts the distinct periods after the first, recency and T are in whole periods,
//!   and monetary_value is the mean of the repeat periods' totals, divided in floating point
//!   as Mittari does (0 without repeats).
//!
//! The query aggregates twice and joins nothing: each customer's periods, then each customer
//! (the first period's total taken with the dialect's "value at the minimum" aggregate), so it
//! costs about two `GROUP BY`s of the log; the end of observation, when not given, is the
//! latest period of any customer. DataFusion, whose order-sensitive aggregates cost more than
//! a join, gets the periods joined back to each customer's first instead (`joined_query`). Amounts are summed as doubles, as Mittari sums them, and the
//! repeat periods' total is the customer's total less the first period's: with amounts that
//! are not exact binary fractions (cents), monetary_value may differ from Mittari's by a few
//! units in the last place of the customer's total, as any two sums in another order may.

use std::fmt::Write as _;

use mittari_models::rfm::TimeUnit;
use mittari_sdk::{MetricDescriptor, ParamValue};

/// The SQL engines the summary is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlDialect {
    Postgres,
    DataFusion,
    Spark,
    BigQuery,
}

impl SqlDialect {
    pub const NAMES: &'static str = "postgres, datafusion, spark, bigquery";

    fn quote(self, name: &str) -> String {
        match self {
            SqlDialect::Postgres | SqlDialect::DataFusion => crate::pg::quote_identifier(name),
            SqlDialect::Spark | SqlDialect::BigQuery => format!("`{}`", name.replace('`', "\\`")),
        }
    }

    /// A possibly qualified table name, each part quoted.
    fn table(self, name: &str) -> String {
        name.split('.')
            .map(|part| self.quote(part))
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The expression for a column's instant as UTC microseconds since 1970 (a BIGINT).
    fn micros(self, column: &str) -> String {
        match self {
            // EXTRACT(EPOCH …) is exact numeric (PostgreSQL 14 and later) and, for `timestamp`
            // and `date`, the nominal seconds: the value read as UTC.
            SqlDialect::Postgres => {
                format!("CAST(EXTRACT(EPOCH FROM {column}) * 1000000 AS BIGINT)")
            }
            SqlDialect::DataFusion => {
                format!("CAST(CAST({column} AS TIMESTAMP(6)) AS BIGINT)")
            }
            // With the session in UTC (the query sets it), dates and TIMESTAMP_NTZ are cast at
            // midnight UTC.
            SqlDialect::Spark => format!("unix_micros(CAST({column} AS TIMESTAMP))"),
            // DATE and DATETIME cast to TIMESTAMP in UTC, BigQuery's default zone.
            SqlDialect::BigQuery => format!("UNIX_MICROS(CAST({column} AS TIMESTAMP))"),
        }
    }

    /// `a mod b` for a positive `b`, in the dialect (the sign of `a` where it is negative).
    fn modulo(self, a: &str, b: i64) -> String {
        match self {
            SqlDialect::BigQuery => format!("MOD({a}, {b})"),
            _ => format!("({a}) % {b}"),
        }
    }

    /// Integer division of an exact multiple.
    fn exact_div(self, a: &str, b: i64) -> String {
        match self {
            SqlDialect::BigQuery => format!("DIV({a}, {b})"),
            SqlDialect::Spark => format!("({a}) div {b}"),
            _ => format!("({a}) / {b}"),
        }
    }

    /// ⌊a / b⌋ for a positive `b`, exact for negative `a` too: (a − ((a mod b) + b) mod b) / b.
    fn floor_div(self, a: &str, b: i64) -> String {
        let remainder = self.modulo(&format!("{} + {b}", self.modulo(a, b)), b);
        self.exact_div(&format!("{a} - {remainder}"), b)
    }

    fn double(self) -> &'static str {
        match self {
            SqlDialect::Postgres => "DOUBLE PRECISION",
            SqlDialect::BigQuery => "FLOAT64",
            SqlDialect::DataFusion | SqlDialect::Spark => "DOUBLE",
        }
    }
}

impl std::str::FromStr for SqlDialect {
    type Err = String;

    fn from_str(name: &str) -> Result<SqlDialect, String> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => SqlDialect::Postgres,
            "datafusion" => SqlDialect::DataFusion,
            "spark" | "sparksql" => SqlDialect::Spark,
            "bigquery" => SqlDialect::BigQuery,
            _ => {
                return Err(format!(
                    "{name:?} is not a SQL dialect; use one of {}",
                    SqlDialect::NAMES
                ));
            }
        })
    }
}

/// Microseconds in a day.
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Microseconds in an hour.
const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// The calendar month (from January 1970) of a day expression (days since 1970-01-01), as
/// `mittari_models::rfm::month_of_day` computes it: Hinnant's `civil_from_days` in whole
/// numbers. Only the era may be negative (days before the year 0); the rest are
/// non-negative, where SQL's truncating division is the floor.
fn month_of_day(dialect: SqlDialect, day: &str) -> String {
    let div = |a: &str, b: i64| dialect.exact_div(a, b);
    let z = format!("({day} + 719468)");
    let era = format!("({})", dialect.floor_div(&z, 146_097));
    let doe = format!("({z} - {era} * 146097)");
    let yoe = format!(
        "({})",
        div(
            &format!(
                "{doe} - {} + {} - {}",
                div(&doe, 1460),
                div(&doe, 36_524),
                div(&doe, 146_096)
            ),
            365
        )
    );
    let doy = format!(
        "({doe} - (365 * {yoe} + {} - {}))",
        div(&yoe, 4),
        div(&yoe, 100)
    );
    let month_from_march = div(&format!("5 * {doy} + 2"), 153);
    format!("(12 * ({yoe} + 400 * {era}) + {month_from_march} + 2 - 23640)")
}

/// Where a transaction log is read from.
#[derive(Debug, Clone, Copy)]
pub enum Relation<'a> {
    /// A table (or view), optionally qualified: `sales.orders`, `project.dataset.orders`.
    Table(&'a str),
    /// A query, read as a subquery.
    Query(&'a str),
}

/// How a log is summarized: the clv metric's `time_unit`, `observation_end` and
/// `holdout_start`.
#[derive(Debug, Clone, Copy)]
pub struct RfmPeriods {
    pub unit: TimeUnit,
    /// µs since 1970, UTC; by default the latest transaction.
    pub observation_end: Option<i64>,
    /// µs since 1970, UTC.
    pub holdout_start: Option<i64>,
}

impl RfmPeriods {
    /// How a request summarizes its log, when `descriptor` reads an RFM summary in place of
    /// the log for the request's parameters (`param` looks one up; absent ones take the
    /// descriptor's defaults); `None` when the metric needs the log itself.
    pub fn of_request(
        descriptor: &MetricDescriptor,
        param: impl Fn(&str) -> Option<ParamValue>,
    ) -> Result<Option<RfmPeriods>, String> {
        let Some(summary) = &descriptor.rfm_summary else {
            return Ok(None);
        };
        let value =
            |name: &str| param(name).or_else(|| descriptor.parameter_spec(name)?.default.clone());
        match value(&summary.parameter) {
            Some(ParamValue::String(choice)) if summary.applies_to(&choice) => {}
            _ => return Ok(None),
        }
        let instant = |name: &str| match value(name) {
            None => Ok(None),
            Some(ParamValue::Timestamp(micros)) => Ok(Some(micros)),
            Some(other) => Err(format!(
                "{name} must be a timestamp, not a {}",
                other.data_type()
            )),
        };
        let unit = match value("time_unit") {
            None => TimeUnit::Week,
            Some(ParamValue::String(name)) => name.parse()?,
            Some(other) => {
                return Err(format!(
                    "time_unit must be the name of a time unit, not a {}",
                    other.data_type()
                ));
            }
        };
        Ok(Some(RfmPeriods {
            unit,
            observation_end: instant("observation_end")?,
            holdout_start: instant("holdout_start")?,
        }))
    }
}

/// What the summary is computed from and how.
#[derive(Debug, Clone)]
pub struct RfmQuery<'a> {
    pub from: Relation<'a>,
    /// The source columns holding the customer, the instant and the amount.
    pub customer_id: &'a str,
    pub timestamp: &'a str,
    pub amount: &'a str,
    pub periods: RfmPeriods,
}

/// The query returning one row per customer: `customer_id`, `frequency`, `recency`, `T`,
/// `monetary_value` and, with a holdout, `frequency_holdout` (its distinct periods) and
/// `duration_holdout` (its length in periods), as Python's lifetimes names them; ordered by
/// customer. It is the summary the clv metric reads in place of the log.
pub fn rfm_query(dialect: SqlDialect, query: &RfmQuery<'_>) -> Result<String, String> {
    let RfmPeriods {
        unit,
        observation_end,
        holdout_start,
    } = query.periods;
    if let (Some(end), Some(start)) = (observation_end, holdout_start)
        && start >= end
    {
        return Err("the holdout must start before the end of observation".to_owned());
    }
    let q = |name: &str| dialect.quote(name);
    // An instant's period, from its microseconds and its day: the exact whole-number
    // arithmetic of `TimeUnit::period`, so the summary equals the in-process one.
    let period = |micros: &str, day: &str| match unit {
        TimeUnit::Hour => dialect.floor_div(micros, MICROS_PER_HOUR),
        TimeUnit::Day => day.to_owned(),
        // 1970-01-01 was a Thursday: day + 3 puts Mondays at multiples of 7.
        TimeUnit::Week => dialect.floor_div(&format!("{day} + 3"), 7),
        TimeUnit::Month => month_of_day(dialect, day),
        TimeUnit::Quarter => dialect.floor_div(&month_of_day(dialect, day), 3),
        TimeUnit::Year => dialect.floor_div(&month_of_day(dialect, day), 12),
    };
    let period_of_micros = |micros: i64| unit.period(micros);
    let double = dialect.double();
    // The repeat periods' total: the customer's total less the first calibration period's,
    // taken with the dialect's "value at the least (in_holdout, period)" aggregate.
    // DataFusion's order-sensitive FIRST_VALUE costs more than the whole summary joined back
    // (22 s against 3.3 s on 5M rows), so DataFusion gets the joined form.
    let first_amount = match dialect {
        // An array's minimum is its lexicographic one; periods are exact as doubles.
        SqlDialect::Postgres => format!(
            "(MIN(ARRAY[CASE WHEN in_holdout THEN 1 ELSE 0 END, CAST(period AS {double}), amount]))[3]"
        ),
        SqlDialect::Spark => format!(
            "min_by(amount, CASE WHEN in_holdout THEN {} ELSE period END)",
            i64::MAX
        ),
        SqlDialect::BigQuery => {
            "ARRAY_AGG(amount ORDER BY CASE WHEN in_holdout THEN 1 ELSE 0 END, period LIMIT 1)[OFFSET(0)]"
                .to_owned()
        }
        SqlDialect::DataFusion => return Ok(joined_query(dialect, query, &period)),
    };
    // Two aggregations and no join: the customer's periods (distinct periods are what the
    // models count), then the customer. Amounts are summed as doubles, as Mittari sums them
    // (an engine's exact decimal sums cost several times more per group).
    let mut sql = preamble(dialect, query, Some(double));
    let in_holdout = match holdout_start {
        Some(start) => format!("micros >= {start}"),
        None => "FALSE".to_owned(),
    };
    let until = observation_end.map_or(String::new(), |end| format!("\n  WHERE micros <= {end}"));
    let _ = writeln!(
        sql,
        "timed AS (\n  SELECT customer_id, {} AS period, {in_holdout} AS in_holdout, amount\n  FROM (SELECT customer_id, micros, {} AS day, amount FROM tx) d{until}\n),",
        period("micros", "day"),
        dialect.floor_div("micros", MICROS_PER_DAY),
    );
    let _ = writeln!(
        sql,
        "periods AS (\n  SELECT customer_id, period, in_holdout, COALESCE(SUM(amount), 0) AS amount\n  FROM timed\n  GROUP BY customer_id, period, in_holdout\n),"
    );
    let calibrated = |value: &str| format!("CASE WHEN in_holdout THEN NULL ELSE {value} END");
    let _ = writeln!(
        sql,
        "customers AS (\n  SELECT customer_id,\n    MIN({}) AS first_period,\n    MAX({}) AS last_period,\n    SUM(CASE WHEN in_holdout THEN 0 ELSE 1 END) AS periods,\n    SUM(CASE WHEN in_holdout THEN 0 ELSE amount END) AS total,\n    {first_amount} AS first_amount,\n    SUM(CASE WHEN in_holdout THEN 1 ELSE 0 END) AS holdout_periods,\n    MAX(period) AS max_period\n  FROM periods\n  GROUP BY customer_id\n),",
        calibrated("period"),
        calibrated("period"),
    );
    // T is measured to the holdout's start, or to the end of observation: given, or the
    // latest transaction, whose period is the latest of any customer's. The holdout lasts
    // from its start's period to the end's.
    let bounds = match (observation_end, holdout_start) {
        (Some(end), start) => {
            let (end_period, duration) = given_bounds(unit, end, start);
            format!("SELECT CAST({end_period} AS BIGINT) AS end_period{duration}")
        }
        (None, Some(start)) => {
            let start_period = period_of_micros(start);
            format!(
                "SELECT CAST({start_period} AS BIGINT) AS end_period, MAX(max_period) - {start_period} AS duration_holdout FROM customers"
            )
        }
        (None, None) => "SELECT MAX(max_period) AS end_period FROM customers".to_owned(),
    };
    let _ = writeln!(sql, "bounds AS (\n  {bounds}\n)");
    let holdout = if holdout_start.is_some() {
        ",\n  c.holdout_periods AS frequency_holdout, b.duration_holdout"
    } else {
        ""
    };
    // Customers whose first purchase is in the holdout have no calibration period: left out.
    let _ = write!(
        sql,
        "SELECT c.customer_id,\n  c.periods - 1 AS frequency,\n  c.last_period - c.first_period AS recency,\n  b.end_period - c.first_period AS {t},\n  CASE WHEN c.periods > 1\n    THEN CAST(c.total - c.first_amount AS {double}) / (c.periods - 1)\n    ELSE CAST(0 AS {double}) END AS monetary_value{holdout}\nFROM customers c CROSS JOIN bounds b\nWHERE c.periods > 0\nORDER BY c.customer_id\n",
        t = q("T"),
    );
    Ok(sql)
}

/// The query's comment, Spark's session zone and the `tx` CTE: each row's customer, instant in
/// UTC microseconds and amount (cast to `amount_type` where given), timestamps that are null
/// left out.
fn preamble(dialect: SqlDialect, query: &RfmQuery<'_>, amount_type: Option<&str>) -> String {
    let q = |name: &str| dialect.quote(name);
    let (described, from) = match query.from {
        Relation::Table(table) => (table, dialect.table(table)),
        Relation::Query(sql) => ("a query", format!("(\n{sql}\n  ) AS mittari_log")),
    };
    let mut sql = String::new();
    let _ = writeln!(
        sql,
        "-- Mittari's RFM summary of {described} by {}: one row per customer, as the clv metric's transaction log summary.",
        query.periods.unit.name(),
    );
    if dialect == SqlDialect::Spark {
        sql.push_str("SET spark.sql.session.timeZone = UTC;\n");
    }
    let amount = match amount_type {
        Some(kind) => format!("CAST({} AS {kind})", q(query.amount)),
        None => q(query.amount),
    };
    let _ = writeln!(
        sql,
        "WITH tx AS (\n  SELECT {} AS customer_id, {} AS micros, {amount} AS amount\n  FROM {from}\n  WHERE {} IS NOT NULL\n),",
        q(query.customer_id),
        dialect.micros(&q(query.timestamp)),
        q(query.timestamp),
    );
    sql
}

/// The summary as two aggregations joined back (each customer's periods against their first
/// period): what DataFusion runs fastest of the forms measured (3.3 s on 5M rows, where the
/// single-pass form took 22 s with FIRST_VALUE … ORDER BY and 38 s with its periods re-read).
fn joined_query(
    dialect: SqlDialect,
    query: &RfmQuery<'_>,
    period: &dyn Fn(&str, &str) -> String,
) -> String {
    let RfmPeriods {
        unit,
        observation_end,
        holdout_start,
    } = query.periods;
    let q = |name: &str| dialect.quote(name);
    let period_of_micros = |micros: i64| unit.period(micros);
    let mut sql = preamble(dialect, query, None);
    let _ = writeln!(
        sql,
        "days AS (\n  SELECT customer_id, micros, {} AS day, amount\n  FROM tx\n),",
        dialect.floor_div("micros", MICROS_PER_DAY),
    );
    // T is measured to the holdout's start, or to the end of observation; the holdout lasts
    // from its start's period to the end's.
    let bounds = match (observation_end, holdout_start) {
        (Some(end), start) => {
            let (end_period, duration) = given_bounds(unit, end, start);
            format!(
                "SELECT CAST({end} AS BIGINT) AS observation_end, CAST({end_period} AS BIGINT) AS end_period{duration}"
            )
        }
        (None, Some(start)) => {
            let start_period = period_of_micros(start);
            format!(
                "SELECT MAX(micros) AS observation_end, CAST({start_period} AS BIGINT) AS end_period, {} - {start_period} AS duration_holdout FROM days",
                period("MAX(micros)", "MAX(day)")
            )
        }
        (None, None) => format!(
            "SELECT MAX(micros) AS observation_end, {} AS end_period FROM days",
            period("MAX(micros)", "MAX(day)")
        ),
    };
    let _ = writeln!(sql, "bounds AS (\n  {bounds}\n),");
    let in_holdout = match holdout_start {
        Some(start) => format!("d.micros >= {start}"),
        None => "FALSE".to_owned(),
    };
    let _ = writeln!(
        sql,
        "timed AS (\n  SELECT d.customer_id, {} AS period, d.amount, {in_holdout} AS in_holdout, bounds.end_period\n  FROM days d CROSS JOIN bounds\n  WHERE d.micros <= bounds.observation_end\n),",
        period("d.micros", "d.day"),
    );
    let _ = writeln!(
        sql,
        "calibration AS (\n  SELECT customer_id, period, SUM(amount) AS amount, MIN(end_period) AS end_period\n  FROM timed\n  WHERE NOT in_holdout\n  GROUP BY customer_id, period\n),"
    );
    let _ = writeln!(
        sql,
        "spans AS (\n  SELECT customer_id, MIN(period) AS first_period, MAX(period) AS last_period, COUNT(*) AS periods, MIN(end_period) AS end_period\n  FROM calibration\n  GROUP BY customer_id\n),"
    );
    let double = dialect.double();
    let _ = write!(
        sql,
        "summary AS (\n  SELECT c.customer_id,\n    s.periods - 1 AS frequency,\n    s.last_period - s.first_period AS recency,\n    s.end_period - s.first_period AS {t},\n    CASE WHEN s.periods > 1\n      THEN CAST(SUM(CASE WHEN c.period > s.first_period THEN c.amount ELSE 0 END) AS {double}) / (s.periods - 1)\n      ELSE CAST(0 AS {double}) END AS monetary_value\n  FROM calibration c JOIN spans s ON c.customer_id = s.customer_id\n  GROUP BY c.customer_id, s.periods, s.first_period, s.last_period, s.end_period\n)",
        t = q("T"),
    );
    match holdout_start {
        None => {
            let _ = write!(
                sql,
                "\nSELECT customer_id, frequency, recency, {t}, monetary_value\nFROM summary\nORDER BY customer_id\n",
                t = q("T")
            );
        }
        Some(_) => {
            let _ = write!(
                sql,
                ",\nholdout AS (\n  SELECT customer_id, COUNT(DISTINCT period) AS frequency_holdout\n  FROM timed\n  WHERE in_holdout\n  GROUP BY customer_id\n)\nSELECT s.customer_id, s.frequency, s.recency, s.{t}, s.monetary_value,\n  COALESCE(h.frequency_holdout, 0) AS frequency_holdout, b.duration_holdout\nFROM summary s CROSS JOIN bounds b LEFT JOIN holdout h ON s.customer_id = h.customer_id\nORDER BY s.customer_id\n",
                t = q("T")
            );
        }
    }
    sql
}

/// With the end of observation given: the period T is measured to (the holdout's start, or
/// the end), and with a holdout its `duration_holdout` column (the periods from its start's to
/// the end's) as the bounds' SELECT lists it, leading comma included.
fn given_bounds(unit: TimeUnit, end: i64, holdout_start: Option<i64>) -> (i64, String) {
    let end_period = unit.period(holdout_start.unwrap_or(end));
    let duration = holdout_start.map_or(String::new(), |_| {
        format!(
            ", CAST({} AS BIGINT) AS duration_holdout",
            unit.period(end) - end_period
        )
    });
    (end_period, duration)
}
