//! `mittari sql rfm`: the SQL that computes the RFM summary in a database or warehouse.

use crate::*;

#[derive(Debug, Subcommand)]
pub(crate) enum SqlCommand {
    /// The RFM summary of a transaction log (one row per customer: frequency, recency, T,
    /// monetary_value, and holdout_frequency with --holdout-start), exactly as the clv
    /// metric's predictive models summarize it; feed its result to `compute clv` as a summary.
    Rfm {
        /// postgres, datafusion, spark or bigquery.
        #[arg(long, value_parser = clap::value_parser!(mittari_io::SqlDialect))]
        dialect: mittari_io::SqlDialect,
        /// The table or view, optionally qualified (schema.orders).
        #[arg(long, value_name = "NAME")]
        table: String,
        /// The table's column for customer_id, timestamp or amount, e.g.
        /// --column customer_id=asiakasnro; repeatable.
        #[arg(long = "column", value_name = "NAME=SOURCE")]
        columns: Vec<mittari_io::ColumnMapping>,
        /// Count purchases in distinct periods: hour, day, week (Monday to Sunday), month, quarter
        /// or year, all UTC (clv's time_unit).
        #[arg(long, default_value = "week", value_parser = clap::value_parser!(mittari_io::TimeUnit))]
        time_unit: mittari_io::TimeUnit,
        /// The end of observation (ISO 8601, UTC unless an offset is given); default: the
        /// latest transaction.
        #[arg(long, value_name = "TIMESTAMP", value_parser = parse_instant)]
        observation_end: Option<i64>,
        /// The start of a holdout period: the summary covers the time before it and counts
        /// each customer's purchase periods in it.
        #[arg(long, value_name = "TIMESTAMP", value_parser = parse_instant)]
        holdout_start: Option<i64>,
    },
}

pub(crate) fn run(command: SqlCommand) -> anyhow::Result<ExitCode> {
    match command {
        SqlCommand::Rfm {
            dialect,
            table,
            columns,
            time_unit,
            observation_end,
            holdout_start,
        } => {
            let source = |name: &str| {
                columns
                    .iter()
                    .find(|m| m.name == name)
                    .map_or(name.to_owned(), |m| m.source.clone())
            };
            for mapping in &columns {
                if !["customer_id", "timestamp", "amount"].contains(&mapping.name.as_str()) {
                    bail!(
                        "--column {}: the summary reads customer_id, timestamp and amount",
                        mapping.name
                    );
                }
            }
            let (customer_id, timestamp, amount) =
                (source("customer_id"), source("timestamp"), source("amount"));
            let sql = mittari_io::rfm_query(
                dialect,
                &mittari_io::RfmQuery {
                    from: mittari_io::Relation::Table(&table),
                    customer_id: &customer_id,
                    timestamp: &timestamp,
                    amount: &amount,
                    periods: mittari_io::RfmPeriods {
                        unit: time_unit,
                        observation_end,
                        holdout_start,
                    },
                },
            )
            .map_err(|e| anyhow::anyhow!("--holdout-start: {e}"))?;
            print(&sql)
        }
    }
}
