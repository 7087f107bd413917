//! `mittari`: the Mittari gRPC server and command-line interface.
//!
//! - `mittari serve` runs the gRPC server (the `mittari-server` crate).
//! - `mittari metrics [NAME]` lists the metrics, or describes one.
//! - `mittari compute METRIC --input FILE` computes a metric over CSV, Parquet, Arrow IPC or
//!   JSON Lines (read by the `mittari-io` crate), with the engine embedded in
//!   this process, or on a server with `--server`. Both paths build the same
//!   `mittari.v1.ComputeResponse` and print it the same way.
//! - `mittari admin …` administers a running server; `mittari token new` makes a token.
//!
//! Each command is a module of `commands/`; this file parses the command line, dispatches, and
//! holds what the commands share.

/// The server's large buffers on huge pages, reused across requests: far fewer page faults
/// for its uploads (`mittari_server::HugePages`). Other commands use the system allocator.
#[global_allocator]
static ALLOCATOR: mittari_server::HugePages = mittari_server::HugePages;

mod commands;
mod lake;
mod output;
mod progress;
mod render;

use commands::admin::AdminCommand;
use commands::plugin::PluginCommand;
use commands::sql::SqlCommand;
use commands::token::TokenCommand;

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow_array::RecordBatch;
use clap::{Parser, Subcommand, ValueEnum};
use mittari_engine::{
    ComputeRequest, Engine, FittedState, MetricDescriptor, Mode, ParamValue, StoredFit,
};
use mittari_proto::admin::v1 as admin_pb;
use mittari_proto::admin::v1::admin_service_client::AdminServiceClient;
use mittari_proto::v1 as pb;
use mittari_proto::v1::metric_service_client::MetricServiceClient;
use mittari_proto::v1::model_service_client::ModelServiceClient;
use mittari_server::{Overrides, Scope, ServiceError, Settings, convert, to_status};
use tonic::Status;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_types::StatusExt;

/// After the shutdown grace period, how long cancelled computations get to return before the
/// process exits anyway.
const SHUTDOWN_LEFTOVER_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Threads for blocking work (see `runtime`).
const BLOCKING_THREADS: usize = 64;

/// Largest response the CLI accepts from a server.
const CLIENT_MAX_MESSAGE_BYTES: usize = 1024 * 1024 * 1024;

#[derive(Debug, Parser)]
#[command(
    name = "mittari",
    version,
    about = "Customer-experience metrics: CLV, retention, NPS, price gap and more, as a gRPC service and a CLI"
)]
struct Cli {
    /// Configuration file (default: ./mittari.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log line format, on standard error. Set the level with RUST_LOG (for example RUST_LOG=debug).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// What `compute` does with a row that has an empty cell in a column the metric reads.
#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
enum OnMissing {
    /// Refuse the input, naming the first such cell (the metric decides; the default).
    Error,
    /// Leave such rows out and say how many in the result (warning rows_skipped).
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
}

/// How to reach a server. A token, if the server needs one, is read from MITTARI_TOKEN.
#[derive(Debug, Clone, clap::Args)]
struct ServerArgs {
    /// The server, e.g. http://127.0.0.1:50051, or https://… for TLS.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    #[command(flatten)]
    tls: TlsArgs,
}

/// The server to administer, with a token of the admin scope in MITTARI_TOKEN when the server
/// has tokens.
#[derive(Debug, Clone, clap::Args)]
struct AdminTarget {
    /// The server, e.g. http://127.0.0.1:50051, or https://… for TLS.
    #[arg(long, value_name = "URL")]
    server: String,
    #[command(flatten)]
    tls: TlsArgs,
}

/// TLS options for an https:// server.
#[derive(Debug, Clone, clap::Args)]
struct TlsArgs {
    /// With https://: the CA certificate (PEM) that signed the server's certificate; default:
    /// the system's trusted roots.
    #[arg(long, value_name = "FILE", requires = "server")]
    ca_cert: Option<PathBuf>,
    /// With https:// and a server that requires client certificates: this client's
    /// certificate (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["server", "client_key"])]
    client_cert: Option<PathBuf>,
    /// The private key (PEM) of --client-cert.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,
}

/// An instant as clv's timestamp parameters take it, in µs since 1970 (UTC).
fn parse_instant(text: &str) -> Result<i64, String> {
    mittari_sdk::time::parse_timestamp(text)
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gRPC server until SIGTERM or Ctrl-C.
    Serve(commands::serve::ServeArgs),
    /// List the metrics, or describe one.
    Metrics(commands::metrics::MetricsArgs),
    /// Compute a metric over a CSV, Parquet, Arrow IPC or JSON Lines file, or a PostgreSQL
    /// query.
    Compute(commands::compute::ComputeCommand),
    /// Write one self-contained HTML page with the numbers and charts of every metric the
    /// input's columns allow: retention cohorts and forecasts, CLV, NPS and CSAT by segment and
    /// month, what discounts cost, the value of experience.
    Report(commands::report::ReportArgs),
    /// Write the monthly CX scorecard: NPS and CSAT with whether they really changed, customer
    /// service against its SLAs, customers and revenue lost, what discounts cost, what drives
    /// the score; each figure with its interval, one HTML page.
    Scorecard(commands::scorecard::ScorecardArgs),
    /// Print SQL that computes in a database or warehouse what Mittari computes in process.
    Sql {
        #[command(subcommand)]
        command: SqlCommand,
    },
    /// For plugin authors: start a plugin crate, or check a plugin library before a server
    /// loads it.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// The fitted models in the model store: list, show, delete, alias, export, import.
    Model(commands::model::ModelArgs),
    /// Manage the bearer tokens a server admits.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Administer a running server: plugins, reload, enable, disable, config. A server with
    /// tokens needs one of the admin scope in MITTARI_TOKEN.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

/// An input batch as a wire table in Arrow IPC.
fn arrow_table(batch: &RecordBatch) -> Result<pb::Table, Status> {
    let arrow_ipc = convert::batch_to_ipc(batch)
        .map_err(|e| Status::internal(format!("cannot encode the input as Arrow IPC: {e}")))?;
    Ok(pb::Table {
        arrow_ipc,
        ..Default::default()
    })
}

/// Where a metric's input comes from and how it is read.
#[derive(Debug, clap::Args)]
struct InputArgs {
    /// The input: a .csv (.tsv, .txt), .parquet, .arrow (Arrow IPC file or stream), .arrows or
    /// .jsonl file, - for standard input, a pattern of Parquet files read by DataFusion
    /// ('orders/*.parquet', quoted), or a PostgreSQL database (postgres://user@host:port/db,
    /// with --query or --table; the password from PGPASSWORD). Columns are typed by the
    /// metric's descriptor.
    #[arg(long, value_name = "FILE|URL")]
    input: PathBuf,
    /// The query whose rows are the input, with a postgres:// input.
    #[arg(long, value_name = "SQL", conflicts_with = "table")]
    query: Option<String>,
    /// The table or view (schema.name) to read, with a postgres:// input.
    #[arg(long, value_name = "NAME")]
    table: Option<String>,
    /// With a postgres:// input or a Parquet pattern and a metric that reads an RFM summary
    /// (clv's predictive models): where the summary is computed. always: in the database or
    /// DataFusion; never: the rows are read and summarized here; auto: in a database on
    /// another machine, here for one on this machine or a Parquet pattern (reading the rows is
    /// faster where no network is crossed).
    #[arg(long, value_enum, default_value_t = Pushdown::Auto)]
    pushdown: Pushdown,
    /// The same as --pushdown never.
    #[arg(long, conflicts_with = "pushdown")]
    no_pushdown: bool,
    /// With a metric that reads an RFM summary (clv's predictive models) and a transaction
    /// log read here: auto reads the log a part at a time (CSV about 32 MiB of text, Parquet a
    /// row group, …) into each customer's running summary, so a log larger than memory can be
    /// summarized; the result is the one reading it whole gives. It needs each customer's
    /// rows in time order (as a log sorted by time has them); a log that is not is read whole
    /// instead (standard input only while its first 512 MiB are kept). never: read it whole.
    #[arg(long, value_enum, default_value_t = InChunks::Auto)]
    in_chunks: InChunks,
    /// With a Parquet pattern: the memory, in MiB, DataFusion's summary of the log may hold;
    /// beyond it the query spills to the temporary directory (slower: it sorts to join).
    /// Default: no limit.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(16..=(1 << 30)))]
    lake_memory_mib: Option<u64>,
    #[command(flatten)]
    reading: ReadingArgs,
}

/// Whether a transaction log is summarized as it is read (`--in-chunks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum InChunks {
    Auto,
    Never,
}

/// Where an RFM summary is computed (`--pushdown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Pushdown {
    Auto,
    Always,
    Never,
}

/// `mittari report`'s input: one file.
#[derive(Debug, clap::Args)]
struct ReportInputArgs {
    /// The input: a .csv (.tsv, .txt), .parquet, .arrow (Arrow IPC file or stream), .arrows or
    /// .jsonl file, read once per metric. Columns are typed by each metric's descriptor.
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    #[command(flatten)]
    reading: ReadingArgs,
}

/// How a file's cells are read: its format, names, delimiter, decimal separator and dates.
#[derive(Debug, clap::Args)]
struct ReadingArgs {
    /// The input's format, when its extension does not say it (standard input is recognized
    /// by its first bytes otherwise): csv, parquet, arrow, arrows or jsonl.
    #[arg(long, value_name = "FORMAT")]
    input_format: Option<mittari_io::Format>,
    /// Read the input's column SOURCE as the metric's column NAME, e.g.
    /// --column customer_id=asiakasnro; repeatable.
    #[arg(long = "column", value_name = "NAME=SOURCE")]
    columns: Vec<mittari_io::ColumnMapping>,
    /// The CSV delimiter: one character, or tab; default: the one the header line uses most of
    /// , ; tab |.
    #[arg(long, value_name = "CHAR", value_parser = parse_delimiter)]
    delimiter: Option<u8>,
    /// Numbers are written with a decimal comma (12,50 or 1.234,50); the default when the
    /// delimiter is ;.
    #[arg(long, conflicts_with = "decimal_point")]
    decimal_comma: bool,
    /// Numbers are written with a decimal point, also in a file delimited by ;.
    #[arg(long)]
    decimal_point: bool,
    /// The format of dates and timestamps written as text, in chrono's strftime syntax, e.g.
    /// %d.%m.%Y or "%d/%m/%Y %H:%M"; default: ISO 8601. Times without an offset are UTC.
    #[arg(long, value_name = "FORMAT", value_parser = mittari_io::DateFormat::new)]
    date_format: Option<mittari_io::DateFormat>,
}

impl InputArgs {
    fn source(&self) -> anyhow::Result<mittari_io::Source<'_>> {
        let url = self
            .input
            .to_str()
            .filter(|s| mittari_io::is_postgres_url(s));
        let query = match (&self.query, &self.table) {
            (Some(sql), _) => Some(mittari_io::PostgresQuery::Sql(sql.clone())),
            (None, Some(table)) => Some(mittari_io::PostgresQuery::Table(table.clone())),
            (None, None) => None,
        };
        Ok(match (url, query) {
            (Some(url), Some(query)) => mittari_io::Source::Postgres { url, query },
            (Some(url), None) => bail!(
                "--input {}: a database input needs --query \"SELECT …\" or --table NAME",
                mittari_io::redact_url(url)
            ),
            (None, Some(_)) => bail!(
                "--query and --table read from a database: give --input postgres://user@host/db"
            ),
            (None, None) if self.input.as_os_str() == "-" => mittari_io::Source::Stdin,
            (None, None) => mittari_io::Source::Path(&self.input),
        })
    }

    /// DataFusion's memory limit in bytes (`--lake-memory-mib`).
    fn lake_memory_limit(&self) -> Option<usize> {
        self.lake_memory_mib
            .map(|mib| usize::try_from(mib << 20).unwrap_or(usize::MAX))
    }

    /// The pattern of Parquet files (`orders/*.parquet`) the input names, if it is one.
    fn pattern(&self) -> Option<&str> {
        let input = self.input.to_str()?;
        (!mittari_io::is_postgres_url(input) && mittari_io::is_pattern(input)).then_some(input)
    }

    fn options(&self) -> mittari_io::ReadOptions {
        self.reading.options()
    }
}

impl ReadingArgs {
    fn options(&self) -> mittari_io::ReadOptions {
        mittari_io::ReadOptions {
            format: self.input_format,
            delimiter: self.delimiter,
            decimal: if self.decimal_comma {
                Some(mittari_io::DecimalSeparator::Comma)
            } else if self.decimal_point {
                Some(mittari_io::DecimalSeparator::Point)
            } else {
                None
            },
            date_format: self.date_format.clone(),
            columns: self.columns.clone(),
            named_columns: Vec::new(),
        }
    }
}

fn parse_delimiter(text: &str) -> Result<u8, String> {
    match text {
        "tab" | "\\t" => Ok(b'\t'),
        _ if text.len() == 1 && text.is_ascii() && text != "\"" => Ok(text.as_bytes()[0]),
        _ => Err(format!(
            "{text:?} is not a one-character delimiter (or tab)"
        )),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve { .. });
    // Before any large allocation, which fixes the allocator's way for the process.
    if serving && !mittari_server::HugePages::map_large_blocks() {
        eprintln!("warning: large blocks could not be mapped on their own; memory is reused less");
    }
    let default_level = if serving { "info" } else { "warn" };
    // Held to the end of main: dropping it writes the log lines still queued.
    let _log_writer = init_logging(cli.log_format, default_level);
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up logging to standard error; the returned guard writes what is still queued when
/// dropped.
fn init_logging(
    format: LogFormat,
    default_level: &str,
) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // A server logs a line per call (the audit line): written by a thread of its own, in one
    // write per batch of lines, instead of a write system call on the async runtime per call.
    // Never lossy: when the queue is full a caller waits, as it would for the write.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("mittari-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    // Colours only on a terminal: escape codes in log files and pipes are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    // A panic of the server's own code becomes a log record in the chosen format, not raw
    // text on standard error. (Plugins' panics are caught at the boundary and reported as
    // errors; their own hook records only the location.)
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let message = mittari_engine::panic_message(info.payload());
        tracing::error!(%location, message, "panic");
    }));
    guard
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        // Blocking work is computations (bounded by the lanes) and conversions of one
        // message each: a few dozen threads keep both cores busy, where tokio's default of 512
        // lets a burst of a thousand clients start hundreds of threads whose stacks and
        // allocator arenas stay resident after it.
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => commands::serve::run(cli.config.as_deref(), args),
        Command::Token { command } => commands::token::run(command),
        Command::Model(args) => commands::model::run(cli.config.as_deref(), args),
        Command::Admin { command } => commands::admin::run(command),
        Command::Plugin { command } => commands::plugin::run(command),
        Command::Sql { command } => commands::sql::run(command),
        Command::Report(args) => commands::report::run(cli.config.as_deref(), args),
        Command::Scorecard(args) => commands::scorecard::run(cli.config.as_deref(), args),
        Command::Metrics(args) => commands::metrics::run(cli.config.as_deref(), args),
        Command::Compute(command) => commands::compute::run(
            cli.config.as_deref(),
            Some(&command.metric),
            command.args,
            commands::compute::Purpose::Compute,
        ),
    }
}

/// Whether two paths name one existing file (the same path, a symlink or a hard link to it).
fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(a), Ok(b)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        a.dev() == b.dev() && a.ino() == b.ino()
    }
    #[cfg(not(unix))]
    {
        std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok()
    }
}

/// Removes a positive integer `top` parameter, returning it.
fn take_top(params: &mut HashMap<String, pb::Value>) -> Option<usize> {
    match params.get("top").and_then(|v| v.kind.as_ref()) {
        Some(pb::value::Kind::Int64Value(n)) if *n > 0 => {
            let n = usize::try_from(*n).ok();
            params.remove("top");
            n
        }
        _ => None,
    }
}

async fn serve(settings: Settings, overrides: Overrides, engine: Engine) -> anyhow::Result<()> {
    let listener = mittari_server::bind(&settings).await?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let metrics: Vec<String> = engine.metrics().map(|d| d.name.clone()).collect();
    // What protects the listener, at a glance.
    let tls = match &settings.server.tls {
        None => "off",
        Some(tls) if tls.client_ca.is_some() => "on, client certificates required",
        Some(_) => "on",
    };
    let tokens = settings.auth.tokens.len();
    tracing::info!(%addr, tls, tokens, metrics = ?metrics, "listening");
    mittari_server::serve(
        settings,
        overrides,
        engine,
        listener,
        mittari_server::shutdown_signal(),
    )
    .await?;
    Ok(())
}

/// The warning that `--on-missing skip` left rows out.
fn rows_skipped_warning(source: &str, skipped: &mittari_io::Skipped) -> pb::Warning {
    let first = skipped
        .first
        .as_ref()
        .map(|(at, column)| format!(" (the first: {source} {at}, column {column})"))
        .unwrap_or_default();
    pb::Warning {
        code: "rows_skipped".to_owned(),
        message: format!(
            "{} {} with an empty cell in a column the metric reads or groups by {} left out (--on-missing skip){first}",
            skipped.rows,
            if skipped.rows == 1 { "row" } else { "rows" },
            if skipped.rows == 1 { "was" } else { "were" },
        ),
    }
}

/// Adds a warning about the whole input to a response: to its results, or to every group.
fn add_warning(response: &mut pb::ComputeResponse, warning: pb::Warning) {
    if let Some(results) = response.results.as_mut() {
        results.warnings.push(warning);
    } else if let Some(grouped) = response.grouped.as_mut() {
        let groups = (0..grouped.rows.len() as u32).collect();
        grouped.warnings.push(pb::GroupedWarning {
            warning: Some(warning),
            groups,
        });
    }
}

/// The width to fit printed tables in: `COLUMNS` when set, else the terminal's when standard
/// output is one; `None` (no limit) when writing to a file or a pipe.
fn terminal_width() -> Option<usize> {
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c > 0)
    {
        return Some(columns);
    }
    let stdout = std::io::stdout();
    if !stdout.is_terminal() {
        return None;
    }
    rustix::termios::tcgetwinsize(&stdout)
        .ok()
        .map(|size| usize::from(size.ws_col))
        .filter(|&columns| columns > 0)
}

fn print(text: &str) -> anyhow::Result<ExitCode> {
    print_with(|out| {
        out.write_all(text.as_bytes())?;
        out.flush()
    })
}

/// Writes to standard output with `write`, which flushes what it writes.
fn print_with(
    write: impl FnOnce(&mut std::io::StdoutLock<'static>) -> std::io::Result<()>,
) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match write(&mut stdout) {
        // A closed pipe (`| head`) is not an error worth reporting.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to standard output")
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Prints a failed call: the message, then each field violation, with the input's line or row.
/// A failed call's status for a person: the message, or each field violation on its line
/// with the file and line of its row; for a column the metric found missing (`input.NAME`,
/// no row) that the file lacks, the file's columns and how to map one, as the reader says for
/// a required column.
fn report(
    status: &Status,
    input: Option<(&str, &mittari_io::Origins, Option<&[String]>)>,
) -> ExitCode {
    report_with_tables(status, input, &[])
}

/// [`report`] for a request with table inputs: (name, file, where each row came from), so a
/// fault in one (`tables.NAME.column[row]`) names that file's line.
fn report_with_tables(
    status: &Status,
    input: Option<(&str, &mittari_io::Origins, Option<&[String]>)>,
    tables: &[(String, String, mittari_io::Origins)],
) -> ExitCode {
    let bad_request = status
        .get_details_bad_request()
        .filter(|b| !b.field_violations.is_empty());
    let mut text = match &bad_request {
        // The message repeats the violations; listed one per line they read better.
        Some(_) => format!("error: invalid argument ({:?}):\n", status.code()),
        None => format!("error: {} ({:?})\n", status.message(), status.code()),
    };
    if let Some(bad_request) = bad_request {
        for violation in bad_request.field_violations {
            let row = violation
                .field
                .rsplit_once('[')
                .and_then(|(_, r)| r.trim_end_matches(']').parse::<usize>().ok());
            let table = tables.iter().find(|(name, _, _)| {
                violation
                    .field
                    .strip_prefix("tables.")
                    .and_then(|rest| rest.strip_prefix(name.as_str()))
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
            });
            let location = match (table, input, row) {
                (Some((_, file, origins)), _, Some(row)) => origins
                    .of(row)
                    .map_or(String::new(), |at| format!(" ({file} {at})")),
                (None, Some((name, origins, _)), Some(row)) => origins
                    .of(row)
                    .map_or(String::new(), |at| format!(" ({name} {at})")),
                _ => String::new(),
            };
            let missing_column = violation
                .field
                .strip_prefix("input.")
                .filter(|column| !column.contains('['));
            let help = match (input, missing_column) {
                (Some((name, _, Some(columns))), Some(column))
                    if !columns.iter().any(|c| c == column) =>
                {
                    format!(
                        "; {name} has columns {}: if one of them holds {column}, map it with --column {column}=NAME",
                        columns.join(", ")
                    )
                }
                _ => String::new(),
            };
            text.push_str(&format!(
                "  {}{location}: {}{help}\n",
                violation.field, violation.description
            ));
        }
    }
    eprint!("{text}");
    ExitCode::FAILURE
}

/// `--table-input NAME=FILE` and `--table-column TABLE.NAME=SOURCE` values: the (name, file)
/// of each table, once each, and each mapping with its table (one some `--table-input` reads).
/// (name, file) of each `--table-input`, and (table, mapping) of each `--table-column`.
type TableInputArgs = (
    Vec<(String, String)>,
    Vec<(String, mittari_io::ColumnMapping)>,
);

fn parse_table_inputs(
    table_inputs: &[String],
    table_columns: &[String],
) -> anyhow::Result<TableInputArgs> {
    let mut files: Vec<(String, String)> = Vec::new();
    for text in table_inputs {
        let Some((name, file)) = text
            .split_once('=')
            .map(|(n, f)| (n.trim(), f.trim()))
            .filter(|(n, f)| !n.is_empty() && !f.is_empty())
        else {
            bail!(
                "--table-input {text:?} must look like NAME=FILE, e.g. covariates_over_time=weeks.csv"
            );
        };
        if files.iter().any(|(n, _)| n == name) {
            bail!("--table-input {name} is given twice; give each table once");
        }
        files.push((name.to_owned(), file.to_owned()));
    }
    let mut mappings: Vec<(String, mittari_io::ColumnMapping)> = Vec::new();
    for text in table_columns {
        let parsed = text.split_once('.').and_then(|(table, mapping)| {
            Some((
                table.trim().to_owned(),
                mapping.parse::<mittari_io::ColumnMapping>().ok()?,
            ))
        });
        let Some((table, mapping)) = parsed else {
            bail!(
                "--table-column {text:?} must look like TABLE.NAME=SOURCE, e.g. covariates_over_time.period_start=week_start"
            );
        };
        if !files.iter().any(|(n, _)| *n == table) {
            bail!(
                "--table-column {text:?} maps a column of table {table}, which no --table-input reads"
            );
        }
        mappings.push((table, mapping));
    }
    Ok((files, mappings))
}

/// `--param KEY=VALUE` values typed by the descriptor. An unknown key goes to the engine as a
/// string, which refuses it with the list of known parameters.
/// (parameter, column) for every column the parameters name (clv's `covariates`): read
/// beside the metric's declared columns.
fn named_columns(
    descriptor: &MetricDescriptor,
    params: &HashMap<String, pb::Value>,
) -> Vec<(String, String)> {
    let mut texts: Vec<(&str, String)> = params
        .iter()
        .filter_map(
            |(parameter, value)| match convert::value_from_proto(value) {
                Some(mittari_sdk::ParamValue::String(value)) => Some((parameter.as_str(), value)),
                _ => None,
            },
        )
        .collect();
    texts.sort();
    descriptor.columns_named_by(texts.iter().map(|(p, v)| (*p, v.as_str())))
}

/// `--param KEY=VALUE` items as (key, text) pairs, for the commands that give each to every
/// metric that declares it (`report`, `scorecard`).
fn key_values(raw: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    raw.iter()
        .map(|item| match item.split_once('=') {
            Some((key, value)) => Ok((key.trim().to_owned(), value.to_owned())),
            None => Err(anyhow::anyhow!("--param {item:?} must look like KEY=VALUE")),
        })
        .collect()
}

fn parse_params(
    raw: &[String],
    descriptor: &MetricDescriptor,
) -> anyhow::Result<HashMap<String, pb::Value>> {
    raw.iter()
        .map(|item| {
            let Some((key, text)) = item.split_once('=') else {
                bail!("--param {item:?} must look like KEY=VALUE");
            };
            let key = key.trim();
            let value = match descriptor.parameter_spec(key) {
                Some(spec) => ParamValue::parse(text, spec.data_type)
                    .map_err(|why| anyhow::anyhow!("--param {key}: {why}"))?,
                None => ParamValue::String(text.to_owned()),
            };
            Ok((key.to_owned(), convert::value_to_proto(&value)))
        })
        .collect()
}

/// Whether a call failed because its connection broke, rather than with the server's answer.
fn is_broken_connection(status: &Status) -> bool {
    // tonic reports an HTTP/2 protocol error (the TLS server closing on a plain-text preface,
    // say) as INTERNAL, a reset as CANCELLED or UNKNOWN, a refused connection as UNAVAILABLE.
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::Cancelled
            | tonic::Code::Unknown
            | tonic::Code::Internal
    ) && !status.metadata().contains_key("grpc-status")
        && [
            "transport error",
            "operation was canceled",
            "connection reset",
            "broken pipe",
            "connection error",
            "h2 protocol error",
        ]
        .iter()
        .any(|text| status.message().contains(text))
}

/// `url` with its scheme: `HOST:PORT` as the server logs it is taken as `http://HOST:PORT`
/// when the host is loopback (plain text never leaves the machine); elsewhere the user says
/// which.
fn with_scheme(url: &str) -> anyhow::Result<String> {
    if url.contains("://") {
        return Ok(url.to_owned());
    }
    if is_loopback_url(url) {
        return Ok(format!("http://{url}"));
    }
    bail!(
        "--server {url:?} has no scheme: write https://{url} for a server with TLS, or http://{url} for plain text"
    );
}

/// Whether the host of `url` is a loopback address or `localhost`.
fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.strip_prefix('[') {
        // [::1]:50051
        Some(bracketed) => bracketed.split(']').next().unwrap_or(bracketed),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The PEM file of a TLS flag, refused when it holds no block of the kind the flag needs (a
/// key given as --ca-cert, say), which TLS would otherwise report only as an unknown issuer.
fn read_pem(flag: &str, path: &Path, marker: &str) -> anyhow::Result<Vec<u8>> {
    let pem =
        std::fs::read(path).with_context(|| format!("{flag}: cannot read {}", path.display()))?;
    let text = String::from_utf8_lossy(&pem);
    // Keys come as "PRIVATE KEY", "RSA PRIVATE KEY" or "EC PRIVATE KEY" blocks.
    let found = if marker == "PRIVATE KEY" {
        text.contains(" PRIVATE KEY-----")
    } else {
        text.contains(&format!("-----BEGIN {marker}-----"))
    };
    if !found {
        bail!(
            "{flag}: {} holds no PEM {marker} block; {flag} takes {}",
            path.display(),
            if marker == "CERTIFICATE" {
                "a certificate (-----BEGIN CERTIFICATE-----)"
            } else {
                "a private key (-----BEGIN PRIVATE KEY-----)"
            }
        );
    }
    Ok(pem)
}

/// A lazily connecting channel to `--server` (a URL [`with_scheme`] gave): plain for http://,
/// TLS for https:// (trusting --ca-cert, or the system's roots), with a client certificate
/// for mutual TLS.
fn connect(url: &str, remote: &TlsArgs) -> anyhow::Result<Channel> {
    let endpoint = Channel::from_shared(url.to_owned())
        .with_context(|| format!("invalid server url {url:?}"))?;
    let endpoint = if url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        tls = match &remote.ca_cert {
            Some(path) => tls.ca_certificate(Certificate::from_pem(read_pem(
                "--ca-cert",
                path,
                "CERTIFICATE",
            )?)),
            None => tls.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&remote.client_cert, &remote.client_key) {
            tls = tls.identity(Identity::from_pem(
                read_pem("--client-cert", cert, "CERTIFICATE")?,
                read_pem("--client-key", key, "PRIVATE KEY")?,
            ));
        }
        endpoint
            .tls_config(tls)
            .with_context(|| format!("cannot set up TLS for {url}"))?
    } else if url.starts_with("http://") {
        if remote.ca_cert.is_some() || remote.client_cert.is_some() {
            bail!(
                "--ca-cert and --client-cert need an https:// server; {url} would be reached in clear text"
            );
        }
        endpoint
    } else {
        bail!("--server {url:?} must start with http:// or https://");
    };
    Ok(endpoint.connect_lazy())
}

/// Sends `authorization: Bearer $MITTARI_TOKEN` with every call when the variable is set. The
/// token is read from the environment, not a flag, so it does not show in process listings.
#[derive(Clone)]
struct BearerToken(Option<MetadataValue<Ascii>>);

impl BearerToken {
    const VARIABLE: &str = "MITTARI_TOKEN";

    /// The token to send to the server at `url`; refused when it would cross the network in
    /// clear text (an http:// URL whose host is not loopback).
    fn for_server(url: &str) -> anyhow::Result<Self> {
        let Some(token) = std::env::var_os(Self::VARIABLE) else {
            return Ok(BearerToken(None));
        };
        if url.starts_with("http://") && !is_loopback_url(url) {
            bail!(
                "{} would travel in clear text to {url}: use an https:// server URL (the server's [server.tls]), or unset {} to call without a token",
                Self::VARIABLE,
                Self::VARIABLE
            );
        }
        let mut value: MetadataValue<Ascii> = token
            .to_str()
            .and_then(|t| format!("Bearer {}", t.trim()).parse().ok())
            .with_context(|| {
                format!(
                    "{} holds characters a token cannot have; use the token `mittari token new` printed",
                    Self::VARIABLE
                )
            })?;
        value.set_sensitive(true);
        Ok(BearerToken(Some(value)))
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Where the CLI computes: an engine in this process, or a server.
/// `mittari report --server`: the report's computations on a server, one call at a time.
struct RemoteReport {
    runtime: tokio::runtime::Runtime,
    backend: std::cell::RefCell<Backend>,
}

/// Rows per `ComputeStream` chunk for the report's inputs, as `compute`'s default.
const REPORT_CHUNK_ROWS: usize = 50_000;

impl mittari_report::Backend for RemoteReport {
    fn describe(&self, metric: &str) -> Result<Option<MetricDescriptor>, mittari_report::Refusal> {
        match self
            .runtime
            .block_on(self.backend.borrow_mut().describe(metric))
        {
            Ok(descriptor) => Ok(Some(convert::descriptor_from_proto(&descriptor))),
            // Unknown or disabled there: the report leaves it out.
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(mittari_report::Refusal(status.message().to_owned())),
        }
    }

    fn metric_names(&self) -> Result<Vec<String>, mittari_report::Refusal> {
        self.runtime
            .block_on(self.backend.borrow_mut().list())
            .map(|metrics| metrics.into_iter().map(|m| m.name).collect())
            .map_err(|e| mittari_report::Refusal(format!("{e:#}")))
    }

    fn compute(
        &self,
        request: ComputeRequest,
    ) -> Result<mittari_engine::ComputeOutcome, mittari_report::Refusal> {
        let params = request
            .params
            .iter()
            .map(|(key, value)| (key.clone(), convert::value_to_proto(value)))
            .collect();
        let mut backend = self.backend.borrow_mut();
        let response = match &request.mode {
            Mode::Score(model) => self.runtime.block_on(backend.score_remote(
                &model.reference,
                params,
                request.input,
                REPORT_CHUNK_ROWS,
            )),
            _ => self.runtime.block_on(backend.compute(
                &request.metric,
                params,
                request.input,
                request.tables,
                request.group_by,
                REPORT_CHUNK_ROWS,
            )),
        }
        .map_err(|status| mittari_report::Refusal(status.message().to_owned()))?;
        convert::outcome_from_proto(response)
            .map_err(|e| mittari_report::Refusal(format!("the server's answer: {e}")))
    }
}

enum Backend {
    Embedded(Arc<Engine>),
    /// A server's metric service, its URL and its model service.
    Remote(
        Box<MetricServiceClient<InterceptedService<Channel, BearerToken>>>,
        String,
        Box<ModelServiceClient<InterceptedService<Channel, BearerToken>>>,
    ),
}

impl Backend {
    fn new(config: Option<&Path>, remote: &ServerArgs) -> anyhow::Result<Backend> {
        match &remote.server {
            Some(url) => {
                let url = &with_scheme(url)?;
                let channel = connect(url, &remote.tls)?;
                let token = BearerToken::for_server(url)?;
                let client = MetricServiceClient::with_interceptor(channel.clone(), token.clone())
                    .max_decoding_message_size(CLIENT_MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(CLIENT_MAX_MESSAGE_BYTES);
                let models = ModelServiceClient::with_interceptor(channel, token)
                    .max_decoding_message_size(CLIENT_MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(CLIENT_MAX_MESSAGE_BYTES);
                Ok(Backend::Remote(
                    Box::new(client),
                    url.to_owned(),
                    Box::new(models),
                ))
            }
            None => {
                let settings = Settings::load(config, &Overrides::default())?;
                Ok(Backend::Embedded(Arc::new(Engine::load(
                    &settings.engine_config()?,
                )?)))
            }
        }
    }

    fn connection_error(url: &str, status: Status) -> Status {
        // The transport's reasons are in the error's sources, not its message.
        let mut reasons = status.message().to_owned();
        let mut source = std::error::Error::source(&status);
        while let Some(error) = source {
            let text = error.to_string();
            if !reasons.contains(&text) {
                reasons.push_str(&format!(": {text}"));
            }
            source = error.source();
        }
        let refused_certificate = [
            "CertificateRequired",
            "BadCertificate",
            "UnknownCA",
            "certificate required",
            "bad certificate",
            "unknown ca",
        ]
        .iter()
        .any(|reason| reasons.contains(reason));
        if refused_certificate {
            Status::unavailable(format!(
                "the server at {url} refused this client's certificate ({reasons}): pass --client-cert and --client-key with a certificate signed by the CA the server trusts (server.tls.client_ca)"
            ))
        } else if status.code() == tonic::Code::Unavailable && reasons.contains("UnknownIssuer") {
            Status::unavailable(format!(
                "the server at {url} presented a certificate this client does not trust ({reasons}): pass --ca-cert FILE with the CA that signed the server's certificate"
            ))
        } else if status.code() == tonic::Code::Unavailable {
            Status::unavailable(format!(
                "cannot reach the server at {url}: {}; is `mittari serve` running there?",
                status.message()
            ))
        } else if url.starts_with("https://") && is_broken_connection(&status) {
            // With TLS 1.3 a server that refuses the client's certificate says so in an alert
            // the client may read only after its request failed: the reasons then name no
            // certificate, but a refused one is the likely cause.
            Status::new(
                status.code(),
                format!(
                    "the TLS connection to {url} broke before the server answered ({reasons}); if the server requires client certificates (server.tls.client_ca), it refused this client's: pass --client-cert and --client-key with a certificate signed by that CA"
                ),
            )
        } else if url.starts_with("http://") && is_broken_connection(&status) {
            Status::new(
                status.code(),
                format!(
                    "the connection to {url} broke before the server answered ({reasons}); if the server uses TLS (server.tls), use https:// and --ca-cert FILE"
                ),
            )
        } else if status.code() == tonic::Code::Unauthenticated {
            Status::unauthenticated(format!(
                "{}; set MITTARI_TOKEN to a token this server admits (`mittari token new NAME` makes one and the configuration block that admits it)",
                status.message()
            ))
        } else if status.message() == "transport error" {
            // The connection broke: the reasons are the news, not the two words.
            Status::new(
                status.code(),
                format!("the connection to {url} failed ({reasons})"),
            )
        } else {
            status
        }
    }

    async fn list(&mut self) -> anyhow::Result<Vec<pb::MetricSummary>> {
        match self {
            Backend::Embedded(engine) => Ok(engine
                .metrics()
                .map(|d| pb::MetricSummary {
                    name: d.name.clone(),
                    version: d.version.clone(),
                    summary: d.summary.clone(),
                })
                .collect()),
            Backend::Remote(client, url, _) => {
                let response = client
                    .list_metrics(pb::ListMetricsRequest {})
                    .await
                    .map_err(|s| Self::connection_error(url, s));
                Ok(response
                    .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                    .into_inner()
                    .metrics)
            }
        }
    }

    async fn describe(&mut self, name: &str) -> Result<pb::MetricDescriptor, Status> {
        match self {
            Backend::Embedded(engine) => {
                let descriptor = engine
                    .describe(name)
                    .map_err(|e| to_status(&ServiceError::Engine(e)))?;
                let library = engine
                    .library_of(name)
                    .and_then(|p| p.file_name())
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Ok(convert::descriptor_to_proto(descriptor, &library))
            }
            Backend::Remote(client, url, _) => {
                let response = client
                    .describe_metric(pb::DescribeMetricRequest {
                        name: name.to_owned(),
                    })
                    .await;
                let response = response
                    .map_err(|s| Self::connection_error(url, s))?
                    .into_inner();
                response
                    .metric
                    .ok_or_else(|| Status::internal("the server sent an empty descriptor"))
            }
        }
    }

    async fn compute(
        &mut self,
        metric: &str,
        parameters: HashMap<String, pb::Value>,
        batch: RecordBatch,
        tables: Vec<(String, RecordBatch)>,
        group_by: Vec<String>,
        chunk_rows: usize,
    ) -> Result<pb::ComputeResponse, Status> {
        self.run(
            metric,
            parameters,
            batch,
            tables,
            group_by,
            chunk_rows,
            Mode::Compute,
        )
        .await
        .map(|(response, _)| response)
    }

    /// Fits a model to store ([`Mode::Fit`], returning its state beside the fit's results),
    /// scores with a stored one ([`Mode::Score`]), or computes.
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &mut self,
        metric: &str,
        parameters: HashMap<String, pb::Value>,
        batch: RecordBatch,
        tables: Vec<(String, RecordBatch)>,
        group_by: Vec<String>,
        chunk_rows: usize,
        mode: Mode,
    ) -> Result<(pb::ComputeResponse, Option<FittedState>), Status> {
        if matches!(mode, Mode::Fit | Mode::Score(_)) && matches!(self, Backend::Remote(..)) {
            return Err(Status::internal(
                "a stored model is fitted and scored on a server through its model service",
            ));
        }
        // Table inputs travel whole, as Arrow IPC, in the request or the stream's header.
        let table_messages = || -> Result<HashMap<String, pb::Table>, Status> {
            tables
                .iter()
                .map(|(name, table)| Ok((name.clone(), arrow_table(table)?)))
                .collect()
        };
        match self {
            Backend::Embedded(engine) => {
                let params = convert::params_from_proto(&parameters).map_err(|e| to_status(&e))?;
                let mut request = ComputeRequest::new(metric, params, batch, group_by);
                request.tables = tables;
                request.mode = mode;
                let mut outcome = engine
                    .compute(request)
                    .await
                    .map_err(|e| to_status(&ServiceError::Engine(e)))?;
                let fitted = outcome.fitted.take();
                Ok((
                    convert::outcome_to_proto(outcome, pb::TableEncoding::Columns),
                    fitted,
                ))
            }
            // The input goes as Arrow IPC: the server reads the columns without a per-value
            // decode; the results come back as protobuf columns, which the report reads.
            Backend::Remote(client, url, _) if batch.num_rows() <= chunk_rows => {
                let request = pb::ComputeRequest {
                    metric: metric.to_owned(),
                    parameters,
                    input: Some(arrow_table(&batch)?),
                    group_by,
                    tables: table_messages()?,
                    ..Default::default()
                };
                Ok((
                    client
                        .compute(request)
                        .await
                        .map_err(|s| Self::connection_error(url, s))?
                        .into_inner(),
                    None,
                ))
            }
            Backend::Remote(client, url, _) => {
                // No schema in the header: the chunks are Arrow IPC streams, which carry theirs.
                let header = pb::ComputeStreamHeader {
                    metric: metric.to_owned(),
                    parameters,
                    group_by,
                    tables: table_messages()?,
                    ..Default::default()
                };
                use pb::compute_stream_request::Message;
                let header = pb::ComputeStreamRequest {
                    message: Some(Message::Header(header)),
                };
                let response = send_chunked(
                    header,
                    batch,
                    chunk_rows,
                    |table| pb::ComputeStreamRequest {
                        message: Some(Message::Chunk(table)),
                    },
                    |messages| client.compute_stream(messages),
                )
                .await?;
                Ok((
                    response
                        .map_err(|s| Self::connection_error(url, s))?
                        .into_inner(),
                    None,
                ))
            }
        }
    }

    /// The server's model service.
    fn models(
        &self,
    ) -> Result<ModelServiceClient<InterceptedService<Channel, BearerToken>>, Status> {
        match self {
            Backend::Remote(_, _, models) => Ok(models.as_ref().clone()),
            Backend::Embedded(_) => Err(Status::internal("no server to ask")),
        }
    }

    /// Fits a model on the server and stores it there as the next version of `name`.
    async fn fit_remote(
        &mut self,
        name: &str,
        metric: &str,
        parameters: HashMap<String, pb::Value>,
        batch: RecordBatch,
        chunk_rows: usize,
    ) -> Result<pb::FitResponse, Status> {
        let Backend::Remote(_, url, models) = self else {
            return Err(Status::internal("fit_remote without --server"));
        };
        use pb::fit_request::Message;
        let header = pb::FitRequest {
            message: Some(Message::Header(pb::FitHeader {
                name: name.to_owned(),
                input: Some(pb::ComputeStreamHeader {
                    metric: metric.to_owned(),
                    parameters,
                    ..Default::default()
                }),
            })),
        };
        let response = send_chunked(
            header,
            batch,
            chunk_rows,
            |table| pb::FitRequest {
                message: Some(Message::Chunk(table)),
            },
            |messages| models.fit(messages),
        )
        .await?;
        Ok(response
            .map_err(|s| Self::connection_error(url, s))?
            .into_inner())
    }

    /// The stored model `reference` names, on the server.
    async fn model_remote(&mut self, reference: &str) -> Result<pb::ModelInfo, Status> {
        let Backend::Remote(_, url, models) = self else {
            return Err(Status::internal("model_remote without --server"));
        };
        models
            .get_model(pb::GetModelRequest {
                reference: reference.to_owned(),
            })
            .await
            .map_err(|s| Self::connection_error(url, s))?
            .into_inner()
            .model
            .ok_or_else(|| Status::internal("the server sent no model"))
    }

    /// Scores `batch` on the server with its stored model `reference`: in one message when
    /// it fits in `chunk_rows`, else streamed.
    async fn score_remote(
        &mut self,
        reference: &str,
        parameters: HashMap<String, pb::Value>,
        batch: RecordBatch,
        chunk_rows: usize,
    ) -> Result<pb::ComputeResponse, Status> {
        let Backend::Remote(_, url, models) = self else {
            return Err(Status::internal("score_remote without --server"));
        };
        let response = if batch.num_rows() <= chunk_rows {
            models
                .score(pb::ScoreRequest {
                    model: reference.to_owned(),
                    parameters,
                    input: Some(arrow_table(&batch)?),
                    result_encoding: pb::TableEncoding::Columns.into(),
                })
                .await
        } else {
            use pb::score_stream_request::Message;
            let header = pb::ScoreStreamRequest {
                message: Some(Message::Header(pb::ScoreStreamHeader {
                    model: reference.to_owned(),
                    input: Some(pb::ComputeStreamHeader {
                        parameters,
                        ..Default::default()
                    }),
                })),
            };
            send_chunked(
                header,
                batch,
                chunk_rows,
                |table| pb::ScoreStreamRequest {
                    message: Some(Message::Chunk(table)),
                },
                |messages| models.score_stream(messages),
            )
            .await?
        };
        Ok(response
            .map_err(|s| Self::connection_error(url, s))?
            .into_inner())
    }
}

/// The messages of a client-streaming call: `header`, then `batch` in Arrow IPC chunks of
/// `chunk_rows` rows (each wrapped by `chunk`).
type Chunked<M> = tokio_stream::Iter<Box<dyn Iterator<Item = M> + Send>>;

/// Makes a client-streaming call (`call`) with `header` and `batch`'s chunks. A chunk that
/// could not be encoded ends the stream and is the error (the call's own outcome is then
/// moot); otherwise the call's outcome.
async fn send_chunked<M: Send + 'static, R, F>(
    header: M,
    batch: RecordBatch,
    chunk_rows: usize,
    chunk: fn(pb::Table) -> M,
    call: impl FnOnce(Chunked<M>) -> F,
) -> Result<Result<tonic::Response<R>, Status>, Status>
where
    F: std::future::Future<Output = Result<tonic::Response<R>, Status>>,
{
    let (chunks, failed) = arrow_chunks(batch, chunk_rows);
    let messages: Box<dyn Iterator<Item = M> + Send> =
        Box::new(std::iter::once(header).chain(chunks.map(chunk)));
    let response = call(tokio_stream::iter(messages)).await;
    match failed.lock().ok().and_then(|mut slot| slot.take()) {
        Some(status) => Err(status),
        None => Ok(response),
    }
}

/// `batch` in Arrow IPC chunks of `chunk_rows`, encoded as they are sent, not all before: the
/// input is held once, as Arrow, not a second time encoded. A chunk that cannot be encoded ends
/// the chunks, and its error is left in the slot for after the call.
#[allow(clippy::type_complexity)]
fn arrow_chunks(
    batch: RecordBatch,
    chunk_rows: usize,
) -> (
    impl Iterator<Item = pb::Table> + Send + 'static,
    Arc<std::sync::Mutex<Option<Status>>>,
) {
    let rows = batch.num_rows();
    let failed = Arc::new(std::sync::Mutex::new(None));
    let failure = Arc::clone(&failed);
    let chunks = (0..rows)
        .step_by(chunk_rows.max(1))
        .map_while(move |offset| {
            let len = chunk_rows.min(rows - offset);
            match arrow_table(&batch.slice(offset, len)) {
                Ok(table) => Some(table),
                Err(status) => {
                    if let Ok(mut slot) = failure.lock() {
                        *slot = Some(status);
                    }
                    None
                }
            }
        });
    (chunks, failed)
}

#[cfg(test)]
mod tests {
    use super::{is_loopback_url, with_scheme};

    #[test]
    fn loopback_urls_are_told_from_remote_ones() {
        for (url, loopback) in [
            ("http://127.0.0.1:50051", true),
            ("http://127.5.0.1:50051/", true),
            ("http://localhost:50051", true),
            ("http://LOCALHOST", true),
            ("http://[::1]:50051", true),
            ("http://10.0.0.1:50051", false),
            ("http://mittari.internal:50051", false),
            ("http://127.0.0.1.example.com:50051", false),
            ("http://[2001:db8::1]:50051", false),
            ("127.0.0.1:50051", true),
        ] {
            assert_eq!(is_loopback_url(url), loopback, "{url}");
        }
    }

    #[test]
    fn a_reload_says_what_it_changed() {
        use mittari_proto::admin::v1 as admin_pb;
        let library = |path: &str, sha: &str, metrics: &[(&str, bool)]| admin_pb::PluginLibrary {
            path: path.to_owned(),
            sha256: sha.to_owned(),
            metrics: metrics
                .iter()
                .map(|(name, enabled)| admin_pb::PluginMetric {
                    name: (*name).to_owned(),
                    version: "1".to_owned(),
                    enabled: *enabled,
                })
                .collect(),
            ..Default::default()
        };
        let before = [
            library("a.so", "1", &[("nps", true)]),
            library("b.so", "2", &[("csat", true)]),
        ];
        assert_eq!(
            crate::commands::admin::reload_summary(&before, &before),
            "nothing changed in the plugins and metrics\n\n"
        );
        let after = [
            library("a.so", "9", &[("nps", true)]),
            library("c.so", "3", &[("order_share", true)]),
        ];
        assert_eq!(
            crate::commands::admin::reload_summary(&before, &after),
            "library replaced (new contents): a.so\nlibrary loaded: c.so\nlibrary no longer listed: b.so\nmetric now served: order_share\nmetric no longer served: csat\n\n"
        );
    }

    #[test]
    fn a_server_address_without_scheme_is_plain_text_on_loopback_only() {
        assert_eq!(
            with_scheme("127.0.0.1:50051").unwrap(),
            "http://127.0.0.1:50051"
        );
        assert_eq!(
            with_scheme("https://10.0.0.1:50051").unwrap(),
            "https://10.0.0.1:50051"
        );
        let refused = with_scheme("10.0.0.1:50051").unwrap_err().to_string();
        assert!(refused.contains("https://10.0.0.1:50051"), "{refused}");
    }
}
