//! PostgreSQL in: a query's rows streamed through `COPY … TO STDOUT (FORMAT binary)`.
//!
//! The query is prepared first, so its columns and their types are known before a row moves:
//! a missing column or an unsupported type is refused at once, and only the columns the metric
//! reads are selected (`SELECT "a", "b" FROM (query) AS …`). Binary COPY is the fastest way out
//! of PostgreSQL and keeps values exact: integers, floats, dates and timestamps arrive in their
//! binary form; `numeric` arrives as its exact decimal text (`::text`) and is parsed as a CSV
//! cell would be, so an integer column refuses `1.5` and a wide decimal is rounded once, to the
//! nearest double. Rows are gathered in batches and go through the same conversion to the
//! declared types as every other input.
//!
//! Connections use TLS when the server offers it (`sslmode=prefer`, rust-postgres' default),
//! verified against the system's roots; `sslmode=require` refuses a server without it. The
//! password comes from the URL or `PGPASSWORD`, and never appears in messages: the input is
//! named by its URL without the password.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType as Arrow, Field, Schema, SchemaRef, TimeUnit};
use mittari_sdk::MetricDescriptor;
use postgres::binary_copy::{BinaryCopyOutIter, BinaryCopyOutRow};
use postgres::fallible_iterator::FallibleIterator as _;
use postgres::types::{Kind, Type};

use crate::cells::Dialect;
use crate::columnar::{BatchSink, Batches, Conformer, Wanted};
use crate::columns::{ColumnMapping, select};
use crate::error::{Location, ReadError};
use crate::sql::{Relation, RfmPeriods, RfmQuery, SqlDialect, rfm_query};
use crate::{DecimalSeparator, ReadOptions};

/// Rows gathered before they are converted as one batch.
const BATCH_ROWS: usize = 64 * 1024;
/// How long a connection may take before the read fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What to read from a PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostgresQuery {
    /// A `SELECT` (or any statement returning rows), as given.
    Sql(String),
    /// A table or view, optionally schema-qualified (`sales.orders`).
    Table(String),
}

impl PostgresQuery {
    /// The query as SQL: a table name becomes `SELECT * FROM "schema"."table"`.
    pub fn sql(&self) -> String {
        match self {
            PostgresQuery::Sql(sql) => sql.trim().trim_end_matches(';').trim_end().to_owned(),
            PostgresQuery::Table(table) => format!("SELECT * FROM {}", quote_qualified(table)),
        }
    }
}

/// `sales.orders` as `"sales"."orders"`: each part quoted, so a name is never read as SQL.
pub(crate) fn quote_qualified(name: &str) -> String {
    name.split('.')
        .map(quote_identifier)
        .collect::<Vec<_>>()
        .join(".")
}

/// A SQL identifier in double quotes, inner quotes doubled.
pub(crate) fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether an `--input` is a pattern of files (`orders/*.parquet`, `year=*/part-?.parquet`)
/// rather than one file; `mittari-lake` reads those.
pub fn is_pattern(input: &str) -> bool {
    input.contains(['*', '?', '['])
}

/// Whether an `--input` names a PostgreSQL database rather than a file.
pub fn is_postgres_url(input: &str) -> bool {
    input.starts_with("postgres://") || input.starts_with("postgresql://")
}

/// Whether every host `url` names is this machine: a Unix socket, `localhost` or a loopback
/// address. There reading a log's rows costs no network, and is faster than summarizing it
/// in the database (BENCHMARKS.md, Step 12), so `--pushdown auto` reads them.
pub fn is_local_database(url: &str) -> bool {
    let Ok(config) = url.parse::<postgres::Config>() else {
        return false;
    };
    let hosts = config.get_hosts();
    !hosts.is_empty()
        && hosts.iter().all(|host| match host {
            postgres::config::Host::Tcp(name) => {
                name.eq_ignore_ascii_case("localhost")
                    || name
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            #[cfg(unix)]
            postgres::config::Host::Unix(_) => true,
        })
}

/// The URL without its password, as errors and logs name the input.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// Connects to the database `url` names (`postgres://user[:password]@host[:port]/db`, or the
/// key=value form), taking the password from `PGPASSWORD` and the user from `PGUSER` (else
/// `USER`) when the URL has none, with TLS where the server offers it (the system's root
/// certificates). Errors are messages without the URL, for the caller to name it (redacted).
/// Shared by every reader of PostgreSQL and the model store.
pub fn postgres_client(url: &str) -> Result<postgres::Client, String> {
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e| format!("not a PostgreSQL connection string: {e}"))?;
    if config.get_password().is_none()
        && let Ok(password) = std::env::var("PGPASSWORD")
    {
        config.password(password);
    }
    if config.get_user().is_none()
        && let Ok(user) = std::env::var("PGUSER").or_else(|_| std::env::var("USER"))
    {
        config.user(&user);
    }
    config
        .application_name("mittari")
        .connect_timeout(CONNECT_TIMEOUT);
    let tls = tls_connector()?;
    config
        .connect(tls)
        .map_err(|e| format!("cannot connect: {}", describe(&e)))
}

/// An open connection, with the name errors give it.
pub(crate) struct Connection {
    client: postgres::Client,
    name: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects to the database `url` names (`postgres://user[:password]@host[:port]/db`,
    /// or the key=value form), taking the password from `PGPASSWORD` when the URL has none.
    pub(crate) fn open(url: &str) -> Result<Connection, ReadError> {
        let name = redact_url(url);
        let client = postgres_client(url).map_err(|message| ReadError::input(&name, message))?;
        Ok(Connection { client, name })
    }

    fn prepare(&mut self, sql: &str) -> Result<postgres::Statement, ReadError> {
        self.client
            .prepare(sql)
            .map_err(|e| ReadError::input(&self.name, format!("the query fails: {}", describe(&e))))
    }

    /// Streams the `columns` of `source` through binary COPY, `BATCH_ROWS` rows at a time,
    /// to `each(batch, first_row)` (1-based).
    fn copy_out(
        &mut self,
        source: &str,
        columns: &[ReadColumn],
        mut each: impl FnMut(RecordBatch, u64) -> Result<(), ReadError>,
    ) -> Result<(), ReadError> {
        let name = self.name.clone();
        let selected: Vec<String> = columns.iter().map(ReadColumn::select_expression).collect();
        let copy = format!(
            "COPY (SELECT {} FROM ({source}) AS mittari_source) TO STDOUT (FORMAT binary)",
            selected.join(", ")
        );
        let reader = self
            .client
            .copy_out(copy.as_str())
            .map_err(|e| ReadError::input(&name, format!("the query fails: {}", describe(&e))))?;
        let types: Vec<Type> = columns.iter().map(|c| c.wire_type.clone()).collect();
        let mut rows = BinaryCopyOutIter::new(reader, &types);
        let schema = schema_of(columns);
        let mut builders = Builders::new(columns);
        let mut first_row = 1u64;
        let mut row_number = 0u64;
        loop {
            let row = rows.next().map_err(|e| {
                ReadError::at(
                    &name,
                    Location::Row(row_number + 1),
                    format!("cannot read the row: {}", describe(&e)),
                )
            })?;
            let Some(row) = row else { break };
            row_number += 1;
            builders.push(&row, columns).map_err(|(column, message)| {
                ReadError::cell(&name, Location::Row(row_number), column, message)
            })?;
            if builders.rows == BATCH_ROWS {
                each(builders.finish(&schema, &name)?, first_row)?;
                first_row = row_number + 1;
            }
        }
        if builders.rows > 0 || row_number == 0 {
            each(builders.finish(&schema, &name)?, first_row)?;
        }
        Ok(())
    }
}

/// Reads `query` from the database `url` names into batches of the columns `descriptor`
/// declares and `group_by` names, handing them to `sink` as COPY streams them.
pub(crate) fn read(
    url: &str,
    query: &PostgresQuery,
    descriptor: &MetricDescriptor,
    group_by: &[String],
    options: &ReadOptions,
    sink: &mut BatchSink<'_>,
) -> Result<SchemaRef, ReadError> {
    let mut connection = Connection::open(url)?;
    let source = query.sql();
    let statement = connection.prepare(&source)?;
    read_statement(
        &mut connection,
        &source,
        &statement,
        descriptor,
        group_by,
        &options.columns,
        &options.named_columns,
        sink,
    )
}

/// Computes the RFM summary of the transaction log `query` returns in the database and reads
/// it, as the columns of `descriptor`'s summary input; `None` when the query's columns are not
/// a log (no customer_id, timestamp and amount under `options.columns`' names).
pub(crate) fn read_rfm_summary(
    url: &str,
    query: &PostgresQuery,
    descriptor: &MetricDescriptor,
    options: &ReadOptions,
    periods: RfmPeriods,
) -> Result<Option<Batches>, ReadError> {
    let mut connection = Connection::open(url)?;
    let source = query.sql();
    let header = column_names(&connection.prepare(&source)?);
    // A query the metric cannot read is read as rows, which says why.
    let Ok(selected) = select(&header, descriptor, &[], &options.columns, &[]) else {
        return Ok(None);
    };
    let source_of = |name: &str| {
        selected
            .iter()
            .find(|s| s.name == name)
            .map(|s| header[s.index].as_str())
    };
    let (Some(customer_id), Some(timestamp), Some(amount)) = (
        source_of("customer_id"),
        source_of("timestamp"),
        source_of("amount"),
    ) else {
        return Ok(None);
    };
    let summary = rfm_query(
        SqlDialect::Postgres,
        &RfmQuery {
            from: Relation::Query(&source),
            customer_id,
            timestamp,
            amount,
            periods,
        },
    )
    .map_err(|message| ReadError::input(&connection.name, message))?;
    tracing::info!(
        input = %connection.name,
        time_unit = ?periods.unit,
        "summarizing the transaction log in the database"
    );
    let statement = connection
        .prepare(&summary)
        .map_err(|e| e.with_hint(PUSHDOWN_HINT))?;
    Batches::collect(|sink| {
        read_statement(
            &mut connection,
            &summary,
            &statement,
            descriptor,
            &[],
            &[],
            &[],
            sink,
        )
    })
    .map(Some)
    .map_err(|e| e.with_hint(PUSHDOWN_HINT))
}

/// What to do when the database cannot summarize a log.
const PUSHDOWN_HINT: &str =
    "the RFM summary runs in the database; --no-pushdown reads the rows and summarizes them here";

fn column_names(statement: &postgres::Statement) -> Vec<String> {
    statement
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect()
}

/// Streams the rows of the prepared `source` as batches of the columns `descriptor` declares
/// and `group_by` names, renamed by `mappings`.
#[allow(clippy::too_many_arguments)] // the statement, what to read of it, and where to
fn read_statement(
    connection: &mut Connection,
    source: &str,
    statement: &postgres::Statement,
    descriptor: &MetricDescriptor,
    group_by: &[String],
    mappings: &[ColumnMapping],
    named: &[(String, String)],
    sink: &mut BatchSink<'_>,
) -> Result<SchemaRef, ReadError> {
    let name = connection.name.clone();
    let header = column_names(statement);
    let wanted_columns = select(&header, descriptor, group_by, mappings, named)
        .map_err(|message| ReadError::input(&name, message))?;
    let wanted_indices: Vec<usize> = wanted_columns.iter().map(|c| c.index).collect();
    let columns = plan(&name, statement.columns().iter(), |index| {
        wanted_indices.contains(&index)
    })?;
    // PostgreSQL's text forms (numeric, enums) use a decimal point and ISO dates whatever
    // the client asked of files.
    let dialect = Dialect {
        decimal: DecimalSeparator::Point,
        date_format: None,
    };
    let wanted = Wanted {
        source: &name,
        descriptor,
        group_by,
        mappings,
        named,
        dialect: &dialect,
    };
    let conformer = Conformer::new(wanted, &schema_of(&columns))?;
    connection.copy_out(source, &columns, |batch, first_row| {
        sink(conformer.conform(&batch, first_row)?, first_row)
    })?;
    Ok(conformer.schema())
}

/// A column as it is read: its name, the type it crosses the wire as, and its Arrow type.
#[derive(Debug)]
struct ReadColumn {
    name: String,
    /// The column's own type, named in errors.
    declared: Type,
    /// The type COPY sends: the declared one, or the one it is cast to (`text` for numeric,
    /// a domain's base type).
    wire_type: Type,
    arrow: Arrow,
}

impl ReadColumn {
    fn select_expression(&self) -> String {
        let column = quote_identifier(&self.name);
        if self.wire_type == self.declared {
            column
        } else {
            format!("{column}::{} AS {column}", self.wire_type.name())
        }
    }
}

/// The columns at the indices `keep` accepts, with how each is read; an unsupported type is
/// an error that says how to cast it.
fn plan<'c>(
    name: &str,
    columns: impl Iterator<Item = &'c postgres::Column>,
    keep: impl Fn(usize) -> bool,
) -> Result<Vec<ReadColumn>, ReadError> {
    let mut read = Vec::new();
    for (index, column) in columns.enumerate() {
        if !keep(index) {
            continue;
        }
        let declared = column.type_().clone();
        let (wire_type, arrow) = match wire(&declared) {
            Some(mapped) => mapped,
            None => {
                return Err(ReadError::input(
                    name,
                    format!(
                        "column {} is {} in PostgreSQL, which mittari does not read; cast it in --query (for example {}::text or {}::float8)",
                        column.name(),
                        declared.name(),
                        column.name(),
                        column.name()
                    ),
                ));
            }
        };
        read.push(ReadColumn {
            name: column.name().to_owned(),
            declared,
            wire_type,
            arrow,
        });
    }
    Ok(read)
}

/// How a PostgreSQL type is read: the type COPY sends it as, and its Arrow type.
fn wire(declared: &Type) -> Option<(Type, Arrow)> {
    let same = |arrow: Arrow| Some((declared.clone(), arrow));
    match *declared {
        Type::BOOL => same(Arrow::Boolean),
        Type::INT2 | Type::INT4 | Type::INT8 => same(Arrow::Int64),
        Type::FLOAT4 | Type::FLOAT8 => same(Arrow::Float64),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => same(Arrow::Utf8),
        Type::DATE => same(Arrow::Date32),
        Type::TIMESTAMP => same(Arrow::Timestamp(TimeUnit::Microsecond, None)),
        Type::TIMESTAMPTZ => same(Arrow::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))),
        // Exact as text; parsed like a CSV cell.
        Type::NUMERIC | Type::UUID => Some((Type::TEXT, Arrow::Utf8)),
        _ => match declared.kind() {
            Kind::Enum(_) => Some((Type::TEXT, Arrow::Utf8)),
            // Cast to its base type (or to text, as the base type is read).
            Kind::Domain(base) => wire(base),
            _ => None,
        },
    }
}

fn schema_of(columns: &[ReadColumn]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.arrow.clone(), true))
            .collect::<Vec<_>>(),
    ))
}

/// One Arrow builder per read column.
struct Builders {
    columns: Vec<Builder>,
    rows: usize,
}

enum Builder {
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Text(StringBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder, Option<Arc<str>>),
}

/// Days from 0001-01-01 (chrono's day 1) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

impl Builders {
    fn new(columns: &[ReadColumn]) -> Builders {
        let columns = columns
            .iter()
            .map(|c| match &c.arrow {
                Arrow::Boolean => Builder::Bool(BooleanBuilder::with_capacity(BATCH_ROWS)),
                Arrow::Int64 => Builder::Int(Int64Builder::with_capacity(BATCH_ROWS)),
                Arrow::Float64 => Builder::Float(Float64Builder::with_capacity(BATCH_ROWS)),
                Arrow::Date32 => Builder::Date(Date32Builder::with_capacity(BATCH_ROWS)),
                Arrow::Timestamp(_, zone) => Builder::Timestamp(
                    TimestampMicrosecondBuilder::with_capacity(BATCH_ROWS),
                    zone.clone(),
                ),
                _ => Builder::Text(StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 16)),
            })
            .collect();
        Builders { columns, rows: 0 }
    }

    /// Appends a row; the error names the column.
    fn push<'c>(
        &mut self,
        row: &BinaryCopyOutRow,
        columns: &'c [ReadColumn],
    ) -> Result<(), (&'c str, String)> {
        for (index, (builder, column)) in self.columns.iter_mut().zip(columns).enumerate() {
            let failed = |e: postgres::Error| (column.name.as_str(), describe(&e));
            match builder {
                Builder::Bool(b) => {
                    b.append_option(row.try_get::<Option<bool>>(index).map_err(failed)?)
                }
                Builder::Int(b) => {
                    let value = match column.wire_type {
                        Type::INT2 => row.try_get::<Option<i16>>(index).map(|v| v.map(i64::from)),
                        Type::INT4 => row.try_get::<Option<i32>>(index).map(|v| v.map(i64::from)),
                        _ => row.try_get::<Option<i64>>(index),
                    };
                    b.append_option(value.map_err(failed)?);
                }
                Builder::Float(b) => {
                    let value = match column.wire_type {
                        Type::FLOAT4 => row.try_get::<Option<f32>>(index).map(|v| v.map(f64::from)),
                        _ => row.try_get::<Option<f64>>(index),
                    };
                    b.append_option(value.map_err(failed)?);
                }
                Builder::Text(b) => {
                    b.append_option(row.try_get::<Option<&str>>(index).map_err(failed)?)
                }
                Builder::Date(b) => {
                    let value = row
                        .try_get::<Option<chrono::NaiveDate>>(index)
                        .map_err(failed)?;
                    b.append_option(
                        value.map(|d| {
                            chrono::Datelike::num_days_from_ce(&d) - UNIX_EPOCH_DAYS_FROM_CE
                        }),
                    );
                }
                Builder::Timestamp(b, zone) => {
                    let micros = if zone.is_some() {
                        row.try_get::<Option<chrono::DateTime<chrono::Utc>>>(index)
                            .map_err(failed)?
                            .map(|t| t.timestamp_micros())
                    } else {
                        row.try_get::<Option<chrono::NaiveDateTime>>(index)
                            .map_err(failed)?
                            .map(|t| t.and_utc().timestamp_micros())
                    };
                    b.append_option(micros);
                }
            }
        }
        self.rows += 1;
        Ok(())
    }

    fn finish(&mut self, schema: &SchemaRef, name: &str) -> Result<RecordBatch, ReadError> {
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|builder| -> ArrayRef {
                match builder {
                    Builder::Bool(b) => Arc::new(b.finish()),
                    Builder::Int(b) => Arc::new(b.finish()),
                    Builder::Float(b) => Arc::new(b.finish()),
                    Builder::Text(b) => Arc::new(b.finish()),
                    Builder::Date(b) => Arc::new(b.finish()),
                    Builder::Timestamp(b, zone) => {
                        Arc::new(b.finish().with_timezone_opt(zone.clone()))
                    }
                }
            })
            .collect();
        self.rows = 0;
        RecordBatch::try_new(schema.clone(), arrays)
            .map_err(|e| ReadError::input(name, format!("cannot assemble the rows: {e}")))
    }
}

/// A PostgreSQL error with the server's message and hint, when it sent them.
fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => match db.hint() {
            Some(hint) => format!("{} (hint: {hint})", db.message()),
            None => db.message().to_owned(),
        },
        None => error.to_string(),
    }
}

/// TLS with the system's root certificates, used when the server offers it.
fn tls_connector() -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    for error in &loaded.errors {
        tracing::debug!(%error, "cannot load a system root certificate");
    }
    let (_added, _ignored) = roots.add_parsable_certificates(loaded.certs);
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("cannot set up TLS: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}
