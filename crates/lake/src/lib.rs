//! Parquet data lakes read in process by DataFusion: `--input 'orders/*.parquet'`.
//!
//! A data lake is many Parquet files under one pattern. DataFusion reads them as one table,
//! in parallel, with the columns a query needs and nothing else. For a metric that reads an
//! RFM summary in place of the log (clv's predictive models), the summary is the SQL of
//! `mittari sql rfm --dialect datafusion`, run here, so a log of any size becomes one row per
//! customer before Mittari sees it. The same SQL runs on a cluster (DataFusion's Ballista, or
//! Spark with `--dialect spark`) when one machine is not enough. Other metrics read the rows.
//!
//! Rows and summaries go through `mittari-io`'s conversion, so a lake's cells are typed,
//! renamed (`--column`) and refused with their row as a file's are.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;
use mittari_io::{ReadError, ReadOptions, Relation, RfmPeriods, RfmQuery, SqlDialect, Table};
use mittari_sdk::MetricDescriptor;

/// The name the lake's table has in the queries.
const TABLE: &str = "lake";

/// Whether an `--input` is a pattern of files: `mittari-io` decides, so a binary built without
/// this crate still recognizes one.
pub use mittari_io::is_pattern;

/// A pattern of Parquet files, registered with a DataFusion session as one table.
pub struct Lake {
    pattern: String,
    /// Runs queries on all cores: the summary, whose result is sorted.
    context: SessionContext,
    /// Reads the rows in one partition: the files in path order, each from start to end, the
    /// same order on every run. Partitions read in parallel interleave their batches as they
    /// finish, and row order matters downstream: a summary lists customers in order of first
    /// appearance and a fit's floating-point sums follow it, so the same files would give
    /// results differing in the last bits, and a fit at the edge of converging would converge
    /// on one run and not the next (seen on a 5 000 000-row log). It costs about 0.3 s there
    /// (`bench/pushdown.sh`: 1.7 s became 2.0 s for the whole clv call).
    ordered: SessionContext,
    schema: arrow_schema::SchemaRef,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake")
            .field("pattern", &self.pattern)
            .finish_non_exhaustive()
    }
}

impl Lake {
    /// Finds the files `pattern` matches and reads their schemas (merged: a column missing
    /// from some files is null there). No file is an error.
    ///
    /// With `memory_limit` (bytes), the summary's query holds at most that much and spills
    /// what does not fit to the system's temporary directory: its aggregations and sorts
    /// spill, and its join is a sort-merge join, which does too (a hash join cannot, and
    /// fails at the limit instead). Without one it takes what it needs (about 1 GB for
    /// 5 000 000 rows) and runs faster (BENCHMARKS.md, Step 12).
    pub async fn open(pattern: &str, memory_limit: Option<usize>) -> Result<Lake, ReadError> {
        let error = |message: String| ReadError::Input {
            input: pattern.to_owned(),
            message,
        };
        let url = ListingTableUrl::parse(pattern)
            .map_err(|e| error(format!("not a file pattern: {}", first_line(&e))))?;
        let context = match memory_limit {
            None => SessionContext::new(),
            Some(limit) => {
                let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
                    .with_memory_pool(Arc::new(
                        datafusion::execution::memory_pool::FairSpillPool::new(limit),
                    ))
                    .build_arc()
                    .map_err(|e| {
                        error(format!(
                            "cannot set DataFusion's memory limit: {}",
                            first_line(&e)
                        ))
                    })?;
                let mut config = datafusion::prelude::SessionConfig::new();
                config.options_mut().optimizer.prefer_hash_join = false;
                SessionContext::new_with_config_rt(config, runtime)
            }
        };
        let ordered = SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new().with_target_partitions(1),
        );
        let state = context.state();
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()));
        let no_files = || {
            error(
                "no file matches the pattern; quote it so the shell does not expand it, e.g. --input 'orders/*.parquet'".to_owned(),
            )
        };
        let schema = options.infer_schema(&state, &url).await.map_err(|e| {
            // DataFusion says so in a planning error of its own words.
            if e.to_string().contains("No files found") {
                no_files()
            } else {
                error(format!("cannot read the files' schema: {}", first_line(&e)))
            }
        })?;
        if schema.fields().is_empty() {
            return Err(no_files());
        }
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(Arc::clone(&schema));
        let table = ListingTable::try_new(config)
            .map_err(|e| error(format!("cannot read the files: {}", first_line(&e))))?;
        let table = Arc::new(table);
        for context in [&context, &ordered] {
            context
                .register_table(TABLE, Arc::clone(&table) as _)
                .map_err(|e| error(format!("cannot read the files: {}", first_line(&e))))?;
        }
        Ok(Lake {
            pattern: pattern.to_owned(),
            context,
            ordered,
            schema,
        })
    }

    /// The columns `descriptor` declares and `group_by` names, renamed by `options.columns`,
    /// from every file.
    pub async fn read(
        &self,
        descriptor: &MetricDescriptor,
        group_by: &[String],
        options: &ReadOptions,
    ) -> Result<Table, ReadError> {
        let (schema, batches) = self
            .query(&self.ordered, &format!("SELECT * FROM {TABLE}"))
            .await?;
        mittari_io::read_batches(
            &self.pattern,
            &schema,
            batches,
            descriptor,
            group_by,
            options,
        )
    }

    /// The RFM summary of the log in the files, computed by DataFusion, as the columns of
    /// `descriptor`'s summary input; `None` when the files' columns are not a log (no
    /// customer_id, timestamp and amount under `options.columns`' names).
    pub async fn read_rfm_summary(
        &self,
        descriptor: &MetricDescriptor,
        options: &ReadOptions,
        periods: RfmPeriods,
    ) -> Result<Option<Table>, ReadError> {
        let source = |name: &'static str| -> Option<&str> {
            let source = options
                .columns
                .iter()
                .find(|m| m.name == name)
                .map_or(name, |m| m.source.as_str());
            self.schema
                .field_with_name(source)
                .is_ok()
                .then_some(source)
        };
        let (Some(customer_id), Some(timestamp), Some(amount)) =
            (source("customer_id"), source("timestamp"), source("amount"))
        else {
            return Ok(None);
        };
        let sql = mittari_io::rfm_query(
            SqlDialect::DataFusion,
            &RfmQuery {
                from: Relation::Table(TABLE),
                customer_id,
                timestamp,
                amount,
                periods,
            },
        )
        .map_err(|message| self.error(message))?;
        tracing::info!(
            input = %self.pattern,
            time_unit = ?periods.unit,
            "summarizing the transaction log in DataFusion"
        );
        let (schema, batches) = self.query(&self.context, &sql).await?;
        mittari_io::read_batches(
            &self.pattern,
            &schema,
            batches,
            descriptor,
            &[],
            &ReadOptions::default(),
        )
        .map(Some)
    }

    /// Runs `sql` in `context`; its result's schema and batches.
    async fn query(
        &self,
        context: &SessionContext,
        sql: &str,
    ) -> Result<(Schema, Vec<RecordBatch>), ReadError> {
        let frame = context
            .sql(sql)
            .await
            .map_err(|e| self.error(format!("the query fails: {}", first_line(&e))))?;
        let schema = frame.schema().as_arrow().clone();
        let batches = frame.collect().await.map_err(|e| {
            if matches!(
                e.find_root(),
                datafusion::error::DataFusionError::ResourcesExhausted(_)
            ) || e.to_string().contains("Not enough memory")
            {
                // DataFusion's own words name settings this command does not take.
                tracing::debug!(error = %first_line(&e), "DataFusion ran out of memory");
                self.error(
                    "the query needs more memory than --lake-memory-mib allows, even spilling; raise it (256 MiB summarized 5 000 000 rows in every run measured)"
                        .to_owned(),
                )
            } else {
                self.error(format!("cannot read the files: {}", first_line(&e)))
            }
        })?;
        Ok((schema, batches))
    }

    fn error(&self, message: String) -> ReadError {
        ReadError::Input {
            input: self.pattern.clone(),
            message,
        }
    }
}

/// DataFusion's errors carry a backtrace and context on later lines: the first says what.
fn first_line(error: &impl std::fmt::Display) -> String {
    let text = error.to_string();
    text.lines().next().unwrap_or_default().to_owned()
}
