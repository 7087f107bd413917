//! `mittari`: the Mittari gRPC server and command-line interface.
//!
//! - `mittari serve` runs the gRPC server (the `mittari-server` crate).
//! - `mittari metrics [NAME]` lists the metrics, or describes one.
//! - `mittari compute METRIC --input FILE` computes a metric over CSV, Parquet, Arrow IPC or
//!   JSON Lines (read by the `mittari-io` crate), with the engine embedded in
//!   this process, or on a server with `--server`. Both paths build the same
//!   `mittari.v1.ComputeResponse` and print it the same way.
//! - `mittari admin …` administers a running server; `mittari token new` makes a token.

mod lake;
mod output;
mod progress;
mod render;

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow_array::RecordBatch;
use clap::{Parser, Subcommand, ValueEnum};
use mittari_engine::{ComputeRequest, Engine, MetricDescriptor, ParamValue};
use mittari_proto::admin::v1 as admin_pb;
use mittari_proto::admin::v1::admin_service_client::AdminServiceClient;
use mittari_proto::v1 as pb;
use mittari_proto::v1::metric_service_client::MetricServiceClient;
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

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a fresh token, and the configuration block that admits it (holding only its
    /// SHA-256). Clients send it as `authorization: Bearer <token>`; the CLI reads it from the
    /// MITTARI_TOKEN environment variable.
    New {
        /// The token's name, as the server's audit log shows it.
        name: String,
        /// What the token may do, repeatable: compute (list, describe, compute) or admin.
        #[arg(long = "scope", default_values_t = [Scope::Compute])]
        scopes: Vec<Scope>,
    },
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

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// List the plugin libraries: path, SHA-256, ABI version, metrics, enabled, loaded when.
    Plugins {
        #[command(flatten)]
        target: AdminTarget,
        /// Output format (table or json).
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Re-read the configuration file and the plugin directory and swap them in, or refuse
    /// with the reasons and change nothing (same as SIGHUP).
    Reload {
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Serve a metric again, at once and after restarts.
    Enable {
        /// The metric, e.g. nps.
        metric: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Stop serving a metric, at once and after restarts.
    Disable {
        /// The metric, e.g. nps.
        metric: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Forget what enable or disable recorded for a metric: the configuration
    /// (metrics.enabled) decides again, at once.
    Reset {
        /// The metric, e.g. nps.
        metric: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Print the server's effective configuration (token hashes redacted).
    Config {
        #[command(flatten)]
        target: AdminTarget,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Write a plugin crate for metric NAME: a working metric with one input, one parameter
    /// and one output, unit tests, and a README with the commands to build, check and install
    /// it. It builds, passes its tests and loads in a server with no edit.
    New {
        /// The metric's name, lowercase snake_case (e.g. repeat_rate).
        name: String,
        /// Where to write the crate (default: ./mittari-plugin-NAME).
        #[arg(long, value_name = "DIR")]
        path: Option<PathBuf>,
        /// A Mittari checkout's crates/sdk to depend on (default: the one this mittari was
        /// built from, if it is still there; else the SDK's version on crates.io).
        #[arg(long, value_name = "DIR")]
        sdk: Option<PathBuf>,
    },
    /// Load a plugin library in a child process and send its metrics what a server's clients
    /// may send: no rows, one row, null optional columns, one key repeated, 1 000 000 rows
    /// (timed, twice for determinism) and seeded extreme requests. Reports the ABI version,
    /// descriptor problems and every request answered with a panic, an abort, NaN, an
    /// undeclared output or a wrong row index; exits non-zero on any.
    Check {
        /// The plugin library (.so, .dylib or .dll).
        library: PathBuf,
        /// Seed of the generated extreme requests; a failure names its seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Generated extreme requests per metric.
        #[arg(long, value_name = "COUNT", default_value_t = 200)]
        generated: usize,
        /// Rows of the two large requests.
        #[arg(long, value_name = "ROWS", default_value_t = 1_000_000)]
        large_rows: usize,
        /// Seconds one request may take before the plugin is reported as hanging.
        #[arg(long, value_name = "SECONDS", default_value_t = 120)]
        timeout: u64,
        /// Run as the checking child process from this task on (used by the check itself).
        #[arg(long, hide = true, value_name = "INDEX")]
        worker_from: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
enum SqlCommand {
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
        /// Count purchases on distinct days or Monday-to-Sunday weeks (clv's time_unit).
        #[arg(long, default_value = "week", value_parser = clap::value_parser!(mittari_io::PeriodUnit))]
        time_unit: mittari_io::PeriodUnit,
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

/// An instant as clv's timestamp parameters take it, in µs since 1970 (UTC).
fn parse_instant(text: &str) -> Result<i64, String> {
    mittari_sdk::time::parse_timestamp(text)
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gRPC server until SIGTERM or Ctrl-C.
    Serve {
        /// Address to listen on, HOST:PORT (port 0 picks a free port; the log says which).
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<SocketAddr>,
    },
    /// List the metrics, or describe one.
    Metrics {
        /// The metric to describe.
        name: Option<String>,
        /// Ask a server (--server URL) instead of loading the plugins here.
        #[command(flatten)]
        remote: ServerArgs,
        /// Output format (table or json).
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Compute a metric over a CSV, Parquet, Arrow IPC or JSON Lines file, or a PostgreSQL
    /// query.
    Compute {
        /// The metric, e.g. nps.
        metric: String,
        #[command(flatten)]
        input: Box<InputArgs>,
        /// A parameter, repeatable, e.g. --param confidence=0.9.
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Compute per group of this column, repeatable.
        #[arg(long = "group-by", value_name = "COLUMN")]
        group_by: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Compute on a server (--server URL) instead of in this process.
        #[command(flatten)]
        remote: ServerArgs,
        /// With --server: inputs with more rows go through ComputeStream in chunks of this size.
        #[arg(long, value_name = "ROWS", default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
        chunk_rows: u64,
        /// Also write a result table, every row, to FILE.csv or FILE.parquet (e.g. clv's
        /// customers). A `top` parameter then limits only the rows printed.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// The result table --output writes; default: the metric's first.
        #[arg(long, value_name = "NAME", requires = "output")]
        output_table: Option<String>,
        /// Print grouped tables at full width; by default a table wider than the terminal
        /// is split into panels that fit, each repeating the group columns.
        #[arg(long)]
        wide: bool,
        /// Rows with an empty cell in a column the metric reads or groups by: `error` lets
        /// the metric refuse them, `skip` leaves them out and counts them in the result.
        #[arg(long, value_enum, default_value_t = OnMissing::Error)]
        on_missing: OnMissing,
    },
    /// Write one self-contained HTML page with the numbers and charts of every metric the
    /// input's columns allow: retention cohorts and forecasts, CLV, NPS and CSAT by segment and
    /// month, what discounts cost, the value of experience.
    Report {
        #[command(flatten)]
        input: Box<ReportInputArgs>,
        /// A parameter, repeatable, e.g. --param holdout_start=2024-07-01; it goes to every
        /// reported metric that takes it.
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Break NPS, CSAT and retention down by this column, repeatable; default: every
        /// column with 2 to 20 distinct values that the metric does not read.
        #[arg(long = "group-by", value_name = "COLUMN")]
        group_by: Vec<String>,
        /// Report only this metric, repeatable; default: every metric the columns allow.
        #[arg(long = "metric", value_name = "METRIC")]
        metrics: Vec<String>,
        /// The HTML file to write.
        #[arg(long, value_name = "FILE.html")]
        output: PathBuf,
        /// Also write each chart as DIR/NAME.svg, for slides.
        #[arg(long, value_name = "DIR")]
        charts: Option<PathBuf>,
        /// Compute on a server (--server URL) instead of in this process.
        #[command(flatten)]
        remote: ServerArgs,
    },
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
    /// (clv's predictive models), read the rows and summarize them here instead of in the
    /// database or DataFusion.
    #[arg(long)]
    no_pushdown: bool,
    #[command(flatten)]
    reading: ReadingArgs,
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

    /// The pattern of Parquet files (`orders/*.parquet`) the input names, if it is one.
    fn pattern(&self) -> Option<&str> {
        let input = self.input.to_str()?;
        (!mittari_io::is_postgres_url(input) && lake::is_pattern(input)).then_some(input)
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
    let default_level = if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    init_logging(cli.log_format, default_level);
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colours only on a terminal: escape codes in log files and pipes are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
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
        Command::Serve { listen } => {
            mittari_server::return_freed_memory();
            let overrides = Overrides { listen };
            let settings = Settings::load(cli.config.as_deref(), &overrides)?;
            // Loading runs plugin initializers: done before the runtime starts, never on it.
            let engine = Engine::load(&settings.engine_config()?)?;
            let runtime = runtime()?;
            let served = runtime.block_on(serve(settings, overrides, engine));
            // The grace period is over: requests still running were cancelled when the server
            // dropped them, but a computation that does not poll its flag (an ABI version-1
            // plugin) would keep a plain runtime drop waiting for it. The process ends now.
            runtime.shutdown_timeout(SHUTDOWN_LEFTOVER_WAIT);
            served?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            command: TokenCommand::New { name, scopes },
        } => {
            let (token, config) =
                mittari_server::new_token(&name, &scopes).map_err(anyhow::Error::msg)?;
            // The configuration block on standard output, so `>> mittari.toml` appends exactly
            // it; the secret on standard error, where a redirection does not take it along.
            eprintln!(
                "the token (shown once; hand it to the client as a secret, e.g. in MITTARI_TOKEN):\n{token}\n"
            );
            print(&format!(
                "# token {name}, made by `mittari token new`: only its SHA-256 is stored here\n{config}"
            ))
        }
        Command::Admin { command } => admin(command),
        Command::Plugin {
            command: PluginCommand::New { name, path, sdk },
        } => {
            let dir = path.unwrap_or_else(|| PathBuf::from(mittari_kit::crate_name(&name)));
            let (sdk, lockfile) = match sdk {
                Some(sdk) => mittari_kit::sdk_in_checkout(&sdk)
                    .with_context(|| format!("--sdk {}", sdk.display()))?,
                None => mittari_kit::sdk_of_this_build(),
            };
            mittari_kit::new_plugin(&name, &dir, &sdk, lockfile.as_deref())?;
            print(&format!(
                "wrote the plugin crate for metric {name} to {}; see its README.md to build, check and install it\n",
                dir.display()
            ))
        }
        Command::Plugin {
            command:
                PluginCommand::Check {
                    library,
                    seed,
                    generated,
                    large_rows,
                    timeout,
                    worker_from,
                },
        } => {
            let options = mittari_kit::CheckOptions {
                seed,
                generated,
                large_rows,
                timeout: std::time::Duration::from_secs(timeout),
            };
            if let Some(from) = worker_from {
                mittari_kit::run_worker(&library, &options, from, &mut std::io::stdout().lock())?;
                return Ok(ExitCode::SUCCESS);
            }
            let exe = std::env::current_exe().context("cannot find the mittari executable")?;
            let worker = || {
                let mut command = std::process::Command::new(&exe);
                command
                    .args(["plugin", "check"])
                    .arg(&library)
                    .args(["--seed", &seed.to_string()])
                    .args(["--generated", &generated.to_string()])
                    .args(["--large-rows", &large_rows.to_string()])
                    .args(["--timeout", &timeout.to_string()]);
                command
            };
            let summary = mittari_kit::check_library(
                &library,
                &options,
                &worker,
                &mut std::io::stdout().lock(),
            )
            .with_context(|| format!("cannot check {}", library.display()))?;
            Ok(if summary.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Sql {
            command:
                SqlCommand::Rfm {
                    dialect,
                    table,
                    columns,
                    time_unit,
                    observation_end,
                    holdout_start,
                },
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
        Command::Report {
            input,
            params,
            group_by,
            metrics,
            output,
            charts,
            remote,
        } => {
            let path = input.input.as_path();
            let text = path.to_string_lossy();
            if text == "-" || mittari_io::is_postgres_url(&text) || lake::is_pattern(&text) {
                bail!(
                    "--input {}: mittari report reads one file (CSV, Parquet, Arrow IPC or JSON \
                     Lines), once per metric; save standard input, a database query's rows or \
                     a pattern's files to one file first",
                    mittari_io::redact_url(&text)
                );
            }
            if same_file(&output, path) {
                bail!(
                    "--output {} is the input file; writing the report there would destroy the \
                     data: choose another file",
                    output.display()
                );
            }
            let params = params
                .iter()
                .map(|item| match item.split_once('=') {
                    Some((key, value)) => Ok((key.trim().to_owned(), value.to_owned())),
                    None => Err(anyhow::anyhow!("--param {item:?} must look like KEY=VALUE")),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let request = mittari_report::Request {
                input: path.to_owned(),
                options: input.reading.options(),
                params,
                group_by,
                metrics,
            };
            let report = if remote.server.is_some() {
                let runtime = runtime()?;
                // A lazily connecting channel needs the runtime's reactor when it is made.
                let backend = {
                    let _runtime = runtime.enter();
                    Backend::new(cli.config.as_deref(), &remote)?
                };
                let remote = RemoteReport {
                    runtime,
                    backend: std::cell::RefCell::new(backend),
                };
                mittari_report::build(&remote, &request)?
            } else {
                let settings = Settings::load(cli.config.as_deref(), &Overrides::default())?;
                let engine = Engine::load(&settings.engine_config()?)?;
                mittari_report::build(&engine, &request)?
            };
            let written = mittari_report::write(&report, &output, charts.as_deref())?;
            let plural = |n: usize, one: &str, many: &str| {
                format!("{n} {}", if n == 1 { one } else { many })
            };
            eprintln!(
                "wrote {} ({}, {}){}",
                output.display(),
                plural(report.sections.len(), "section", "sections"),
                plural(report.charts().count(), "chart", "charts"),
                match &charts {
                    Some(dir) => format!("; {written} charts as SVG in {}", dir.display()),
                    None => String::new(),
                }
            );
            for (metric, reason) in &report.not_computed {
                eprintln!("not computed: {metric}: {reason}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Metrics {
            name,
            remote,
            format,
        } => {
            let rt = runtime()?;
            // A lazily connecting channel needs the runtime's reactor when it is made.
            let _runtime = rt.enter();
            if format == Format::Csv {
                bail!("--format csv is not available for metrics; use table or json");
            }
            let mut backend = Backend::new(cli.config.as_deref(), &remote)?;
            let text = match name {
                None => {
                    let list = rt.block_on(backend.list())?;
                    if format == Format::Json {
                        render::metric_list_json(&list)
                    } else {
                        render::metric_list(&list)
                    }
                }
                Some(name) => match rt.block_on(backend.describe(&name)) {
                    Ok(d) => {
                        let descriptor = convert::descriptor_from_proto(&d);
                        if format == Format::Json {
                            render::descriptor_json(&descriptor, &d.library)
                        } else {
                            render::descriptor_text(&descriptor, &d.library)
                        }
                    }
                    Err(status) => return Ok(report(&status, None)),
                },
            };
            print(&text)
        }
        Command::Compute {
            metric,
            input,
            params,
            group_by,
            format,
            remote,
            chunk_rows,
            output,
            output_table,
            wide,
            on_missing,
        } => {
            if let Some(path) = &output {
                output::check_path(path)?;
                if same_file(path, &input.input) {
                    bail!(
                        "--output {} is the input file; writing results there would destroy the data: choose another file",
                        path.display()
                    );
                }
            }
            let rt = runtime()?;
            // A lazily connecting channel needs the runtime's reactor when it is made.
            let _runtime = rt.enter();
            let mut backend = Backend::new(cli.config.as_deref(), &remote)?;
            let descriptor = match rt.block_on(backend.describe(&metric)) {
                Ok(d) => convert::descriptor_from_proto(&d),
                Err(status) => return Ok(report(&status, None)),
            };
            let mut params = parse_params(&params, &descriptor)?;
            // --output writes every row, so `top` stops limiting the result and limits the
            // printed table instead.
            let printed_rows = match output {
                Some(_) => take_top(&mut params),
                None => None,
            };
            let source = input.source()?;
            let source_name = source.name();
            let progress = progress::Progress::start(
                std::io::stderr().is_terminal() && format != Format::Json,
                &format!("reading {source_name}"),
            );
            let options = input.options();
            // Where the log is in a database or a data lake, its summary is computed there and
            // only one row per customer travels; per-group summaries are not pushed down.
            // Rows left out for empty cells are left out of the rows read, so a summary
            // computed at the source (which would count them) is not used then.
            let periods =
                if input.no_pushdown || !group_by.is_empty() || on_missing == OnMissing::Skip {
                    None
                } else {
                    mittari_io::RfmPeriods::of_request(&descriptor, |name| {
                        params.get(name).and_then(convert::value_from_proto)
                    })
                    .map_err(|e| anyhow::anyhow!("--param {e}"))?
                };
            let lake = match input.pattern() {
                Some(pattern) => Some(rt.block_on(lake::Lake::open(pattern))?),
                None => None,
            };
            let summary = match (periods, &lake) {
                (None, _) => None,
                (Some(periods), Some(lake)) => {
                    rt.block_on(lake.read_rfm_summary(&descriptor, &options, periods))?
                }
                (Some(periods), None) => {
                    mittari_io::read_rfm_summary(&source, &descriptor, &options, periods)?
                }
            };
            let table = match (summary, &lake) {
                (Some(summary), _) => {
                    // The summary has applied them.
                    params.remove("observation_end");
                    params.remove("holdout_start");
                    summary
                }
                (None, Some(lake)) => rt.block_on(lake.read(&descriptor, &group_by, &options))?,
                (None, None) => mittari_io::read(source, &descriptor, &group_by, &options)?,
            };
            let (table, skipped) = match on_missing {
                OnMissing::Error => (table, None),
                OnMissing::Skip => {
                    let read: Vec<String> = descriptor
                        .inputs
                        .iter()
                        .map(|c| c.name.clone())
                        .chain(group_by.iter().cloned())
                        .collect();
                    let (table, skipped) = table.without_empty_cells(&source_name, &read)?;
                    (table, Some(skipped))
                }
            };
            progress.phase(&match &remote.server {
                Some(url) => format!("computing {metric} on {url}"),
                None => format!("computing {metric}"),
            });
            let response = match rt.block_on(backend.compute(
                &metric,
                params,
                table.batch,
                group_by,
                chunk_rows as usize,
            )) {
                Ok(response) => response,
                Err(status) => {
                    drop(progress);
                    // The file's own columns, for a column the metric found missing: read
                    // again only now, from the header or schema.
                    let file_columns = match input.source() {
                        Ok(mittari_io::Source::Path(path)) => {
                            mittari_io::column_names(path, &options).ok()
                        }
                        _ => None,
                    };
                    return Ok(report(
                        &status,
                        Some((&source_name, &table.origins, file_columns.as_deref())),
                    ));
                }
            };
            let mut response = response;
            if let Some(skipped) = skipped.filter(|s| s.rows > 0) {
                add_warning(&mut response, rows_skipped_warning(&source_name, &skipped));
            }
            let mut written = None;
            if let Some(path) = &output {
                progress.phase(&format!("writing {}", path.display()));
                let (table, rows) = output::write(&response, output_table.as_deref(), path)?;
                drop(progress);
                eprintln!("wrote {rows} rows of {table} to {}", path.display());
                written = Some(table);
            } else {
                drop(progress);
            }
            let limit = written.as_deref().zip(printed_rows);
            match format {
                Format::Table => print(&render::table(
                    &response,
                    limit,
                    (!wide).then(terminal_width).flatten(),
                )),
                Format::Json => print_with(|out| render::write_json(&response, out)),
                Format::Csv => print(&render::csv(&response)),
            }
        }
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
            let location = match (input, row) {
                (Some((name, origins, _)), Some(row)) => origins
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

/// `--param KEY=VALUE` values typed by the descriptor. An unknown key goes to the engine as a
/// string, which refuses it with the list of known parameters.
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

/// `mittari admin …`: one call to the server's admin service, printed.
fn admin(command: AdminCommand) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    // A lazily connecting channel needs the runtime's reactor when it is made.
    let _runtime = rt.enter();
    let target = match &command {
        AdminCommand::Plugins { target, .. }
        | AdminCommand::Reload { target }
        | AdminCommand::Enable { target, .. }
        | AdminCommand::Disable { target, .. }
        | AdminCommand::Reset { target, .. }
        | AdminCommand::Config { target } => target.clone(),
    };
    let url = with_scheme(&target.server)?;
    let mut client = AdminServiceClient::with_interceptor(
        connect(&url, &target.tls)?,
        BearerToken::for_server(&url)?,
    );
    let enable = matches!(command, AdminCommand::Enable { .. });
    let reset = matches!(command, AdminCommand::Reset { .. });
    let result: Result<String, Status> = rt.block_on(async {
        Ok(match command {
            AdminCommand::Plugins { format, .. } => {
                let libraries = client
                    .list_plugins(admin_pb::ListPluginsRequest {})
                    .await?
                    .into_inner()
                    .libraries;
                match format {
                    Format::Json => render::libraries_json(&libraries),
                    _ => render::libraries(&libraries),
                }
            }
            AdminCommand::Reload { .. } => {
                // What was served before, to say what the reload changed.
                let before = client
                    .list_plugins(admin_pb::ListPluginsRequest {})
                    .await?
                    .into_inner()
                    .libraries;
                let reloaded = client
                    .reload(admin_pb::ReloadRequest {})
                    .await?
                    .into_inner();
                let mut text = reload_summary(&before, &reloaded.libraries);
                text.push_str(&render::libraries(&reloaded.libraries));
                if !reloaded.restart_required.is_empty() {
                    text.push_str(&format!(
                        "\nchanged, but applied only at a restart: {}\n",
                        reloaded.restart_required.join(", ")
                    ));
                }
                text
            }
            AdminCommand::Enable { metric, .. }
            | AdminCommand::Disable { metric, .. }
            | AdminCommand::Reset { metric, .. } => {
                let response = client
                    .set_metric_enabled(admin_pb::SetMetricEnabledRequest {
                        name: metric.clone(),
                        enabled: enable,
                        reset,
                    })
                    .await?
                    .into_inner();
                let now = if response.enabled { "enabled" } else { "disabled" };
                let file = response.state_file;
                if reset {
                    format!(
                        "{metric} {now} as the configuration says (its recorded choice removed from {file})\n"
                    )
                } else {
                    format!(
                        "{metric} {now} (recorded in {file}; `mittari admin reset {metric}` lets the configuration decide again)\n"
                    )
                }
            }
            AdminCommand::Config { .. } => {
                let config = client
                    .get_config(admin_pb::GetConfigRequest {})
                    .await?
                    .into_inner();
                let mut text = String::new();
                if !config.file.is_empty() {
                    text.push_str(&format!("# configuration file: {}\n", config.file));
                }
                text.push_str(&format!("# metric state file: {}\n", config.state_file));
                text.push_str(&config.toml);
                text
            }
        })
    });
    match result {
        Ok(text) => print(&text),
        Err(status) => Ok(report(&Backend::connection_error(&url, status), None)),
    }
}

/// What a reload changed, a line each: libraries loaded, replaced (new contents) or gone, and
/// metrics now served or no longer served; "nothing changed" when nothing did.
fn reload_summary(before: &[admin_pb::PluginLibrary], after: &[admin_pb::PluginLibrary]) -> String {
    use std::collections::BTreeMap;
    let libraries = |libraries: &[admin_pb::PluginLibrary]| -> BTreeMap<String, String> {
        libraries
            .iter()
            .map(|l| (l.path.clone(), l.sha256.clone()))
            .collect()
    };
    let served = |libraries: &[admin_pb::PluginLibrary]| -> std::collections::BTreeSet<String> {
        libraries
            .iter()
            .flat_map(|l| &l.metrics)
            .filter(|m| m.enabled)
            .map(|m| m.name.clone())
            .collect()
    };
    let (old, new) = (libraries(before), libraries(after));
    let mut lines = Vec::new();
    for (path, sha) in &new {
        match old.get(path) {
            None => lines.push(format!("library loaded: {path}")),
            Some(previous) if previous != sha => {
                lines.push(format!("library replaced (new contents): {path}"));
            }
            Some(_) => {}
        }
    }
    for path in old.keys().filter(|p| !new.contains_key(*p)) {
        lines.push(format!("library no longer listed: {path}"));
    }
    let (was, is) = (served(before), served(after));
    for metric in is.difference(&was) {
        lines.push(format!("metric now served: {metric}"));
    }
    for metric in was.difference(&is) {
        lines.push(format!("metric no longer served: {metric}"));
    }
    if lines.is_empty() {
        lines.push("nothing changed in the plugins and metrics".to_owned());
    }
    let mut text = lines.join("\n");
    text.push_str("\n\n");
    text
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
        let response = self
            .runtime
            .block_on(self.backend.borrow_mut().compute(
                &request.metric,
                params,
                request.input,
                request.group_by,
                REPORT_CHUNK_ROWS,
            ))
            .map_err(|status| mittari_report::Refusal(status.message().to_owned()))?;
        convert::outcome_from_proto(response)
            .map_err(|e| mittari_report::Refusal(format!("the server's answer: {e}")))
    }
}

enum Backend {
    Embedded(Arc<Engine>),
    Remote(
        Box<MetricServiceClient<InterceptedService<Channel, BearerToken>>>,
        String,
    ),
}

impl Backend {
    fn new(config: Option<&Path>, remote: &ServerArgs) -> anyhow::Result<Backend> {
        match &remote.server {
            Some(url) => {
                let url = &with_scheme(url)?;
                let client = MetricServiceClient::with_interceptor(
                    connect(url, &remote.tls)?,
                    BearerToken::for_server(url)?,
                )
                .max_decoding_message_size(CLIENT_MAX_MESSAGE_BYTES)
                .max_encoding_message_size(CLIENT_MAX_MESSAGE_BYTES);
                Ok(Backend::Remote(Box::new(client), url.to_owned()))
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
            Backend::Remote(client, url) => {
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
            Backend::Remote(client, url) => {
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
        group_by: Vec<String>,
        chunk_rows: usize,
    ) -> Result<pb::ComputeResponse, Status> {
        match self {
            Backend::Embedded(engine) => {
                let params = convert::params_from_proto(&parameters).map_err(|e| to_status(&e))?;
                let request = ComputeRequest::new(metric, params, batch, group_by);
                let outcome = engine
                    .compute(request)
                    .await
                    .map_err(|e| to_status(&ServiceError::Engine(e)))?;
                Ok(convert::outcome_to_proto(
                    outcome,
                    pb::TableEncoding::Columns,
                ))
            }
            // The input goes as Arrow IPC: the server reads the columns without a per-value
            // decode; the results come back as protobuf columns, which the report reads.
            Backend::Remote(client, url) if batch.num_rows() <= chunk_rows => {
                let request = pb::ComputeRequest {
                    metric: metric.to_owned(),
                    parameters,
                    input: Some(arrow_table(&batch)?),
                    group_by,
                    ..Default::default()
                };
                Ok(client
                    .compute(request)
                    .await
                    .map_err(|s| Self::connection_error(url, s))?
                    .into_inner())
            }
            Backend::Remote(client, url) => {
                // No schema in the header: the chunks are Arrow IPC streams, which carry theirs.
                let header = pb::ComputeStreamHeader {
                    metric: metric.to_owned(),
                    parameters,
                    group_by,
                    ..Default::default()
                };
                use pb::compute_stream_request::Message;
                let header = pb::ComputeStreamRequest {
                    message: Some(Message::Header(header)),
                };
                // Chunks are encoded as they are sent, not all before: the input is held once,
                // as Arrow, not a second time encoded. A chunk that cannot be encoded ends the
                // stream, and the error is reported after it.
                let rows = batch.num_rows();
                let failed = Arc::new(std::sync::Mutex::new(None));
                let failure = Arc::clone(&failed);
                let chunks = (0..rows)
                    .step_by(chunk_rows)
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
                    })
                    .map(|table| pb::ComputeStreamRequest {
                        message: Some(Message::Chunk(table)),
                    });
                let messages = std::iter::once(header).chain(chunks);
                let response = client.compute_stream(tokio_stream::iter(messages)).await;
                if let Some(status) = failed.lock().ok().and_then(|mut slot| slot.take()) {
                    return Err(status);
                }
                Ok(response
                    .map_err(|s| Self::connection_error(url, s))?
                    .into_inner())
            }
        }
    }
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
            super::reload_summary(&before, &before),
            "nothing changed in the plugins and metrics\n\n"
        );
        let after = [
            library("a.so", "9", &[("nps", true)]),
            library("c.so", "3", &[("order_share", true)]),
        ];
        assert_eq!(
            super::reload_summary(&before, &after),
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
