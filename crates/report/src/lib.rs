//! `mittari report`: the metrics an input allows, with their numbers and charts, as one
//! self-contained HTML page a manager can read without help.
//!
//! Analysts and managers want to look, not read tables: a cohort heatmap, a retention curve,
//! who is still alive, what discounts cost by product. The report picks the metrics whose
//! required columns the input has (or the ones asked for) and computes them through a
//! [`Backend`]: the same [`Engine`] as `mittari compute`, or a server. It lays each out as a
//! section: a sentence on what it means, tables of numbers, and charts drawn by plotters as
//! inline SVG, with the key figures of every section at the top. The page needs no network
//! and no script to view; every chart is also available on its own (`--charts DIR`) for
//! slides.
//!
//! Invariants:
//! - Every number in the report comes from a plugin's result, or from a model the plugin
//!   fitted, evaluated with `mittari-models` at the parameters the plugin returned (P(alive)
//!   matrices, the tracking curve); the report re-derives only shares, sums and orderings of
//!   result rows.
//! - A metric the report has no layout of its own for (a third party's plugin), named with
//!   `--metric` or, by default, whose required columns the input has, gets a generic section from its descriptor: its scalars with units and
//!   intervals, each result table, and a chart of each table with a label column and a numeric
//!   one.
//! - A metric chosen automatically that the backend refuses is listed under "Not computed"
//!   with the refusal; one named with `--metric` that is refused is an error. Data that
//!   cannot be read is always an error, with its file, line and column.

mod chart;
mod clv;
mod context;
mod cx;
mod drivers;
mod generic;
mod page;
mod pricing;
mod retention;
mod scorecard;
mod service;
mod survey;
mod table;

use std::path::{Path, PathBuf};

pub use chart::{Chart, ChartError};
use mittari_engine::{ComputeOutcome, ComputeRequest, Engine, MetricDescriptor};
pub use page::{Block, Numbers, Section};
pub use scorecard::{ScorecardRequest, scorecard};

/// What to report on.
#[derive(Debug, Clone)]
pub struct Request {
    /// A CSV, Parquet, Arrow IPC or JSON Lines file (read once per metric).
    pub input: PathBuf,
    pub options: mittari_io::ReadOptions,
    /// `KEY=VALUE` parameters; each goes to every reported metric that declares it.
    pub params: Vec<(String, String)>,
    /// Segments to break NPS, CSAT and retention down by; by default every column with 2 to
    /// 20 distinct values that the metric does not read itself.
    pub group_by: Vec<String>,
    /// Metrics to report; by default every metric the input's columns allow.
    pub metrics: Vec<String>,
    /// Table inputs (name, file) sent beside the input to every metric that declares them
    /// (clv's `covariates_over_time`), and their column mappings (table, mapping).
    pub tables: Vec<(String, PathBuf)>,
    pub table_columns: Vec<(String, mittari_io::ColumnMapping)>,
    /// A stored model that scores the input in place of a fit (`mittari report --model`):
    /// its metric's section is the input scored with it.
    pub model: Option<ScoringModel>,
}

/// A stored model a report scores with.
#[derive(Debug, Clone)]
pub struct ScoringModel {
    /// The metric that fitted it (clv).
    pub metric: String,
    /// Its reference, state and the parameters it was fitted with.
    pub fit: std::sync::Arc<mittari_engine::StoredFit>,
}

/// A report: sections in a fixed order, and the metrics left out with why.
#[derive(Debug, Clone)]
pub struct Report {
    /// The page's heading: "Customer metrics report", or the scorecard's.
    pub title: String,
    pub input: String,
    pub rows: usize,
    pub sections: Vec<Section>,
    pub not_computed: Vec<(String, String)>,
}

impl Report {
    /// The page: one HTML file with its style and charts inline.
    pub fn html(&self) -> String {
        page::html(self)
    }

    /// Every chart of the report, in page order.
    pub fn charts(&self) -> impl Iterator<Item = &Chart> {
        self.sections.iter().flat_map(Section::charts)
    }
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Read(#[from] mittari_io::ReadError),
    /// The refusal's message is part of this one, not a separate source, so it prints once.
    #[error("{metric}: {reason}")]
    Metric { metric: String, reason: Refusal },
    #[error("{0}")]
    Backend(Refusal),
    #[error("--param {key}: {message}")]
    Param { key: String, message: String },
    #[error("--table-input {name}: no metric in this report reads it")]
    UnusedTable { name: String },
    #[error("--metric {metric}: {message}")]
    UnknownMetric { metric: String, message: String },
    #[error(
        "{input}: none of its columns ({columns}) is what a metric reads; name them with --column NAME=SOURCE, e.g. --column customer_id=asiakasnro"
    )]
    NothingToReport { input: String, columns: String },
    #[error(transparent)]
    Chart(#[from] ChartError),
    #[error("{path}: {error}")]
    Write { path: String, error: std::io::Error },
}

/// Where a report's metrics are computed: the engine in this process, or a server.
pub trait Backend {
    /// The metric's descriptor; `Ok(None)` when the backend has no such metric.
    fn describe(&self, metric: &str) -> Result<Option<MetricDescriptor>, Refusal>;
    /// The names of the metrics the backend serves.
    fn metric_names(&self) -> Result<Vec<String>, Refusal>;
    fn compute(&self, request: ComputeRequest) -> Result<ComputeOutcome, Refusal>;
}

/// Why a backend did not compute: its message, which says what to change.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

impl Backend for Engine {
    fn describe(&self, metric: &str) -> Result<Option<MetricDescriptor>, Refusal> {
        Ok(Engine::describe(self, metric).ok().cloned())
    }

    fn metric_names(&self) -> Result<Vec<String>, Refusal> {
        Ok(self.metrics().map(|d| d.name.clone()).collect())
    }

    fn compute(&self, request: ComputeRequest) -> Result<ComputeOutcome, Refusal> {
        self.compute_blocking(request)
            .map_err(|e| Refusal(e.to_string()))
    }
}

/// Computes every section `request` allows with `backend`.
pub fn build(backend: &dyn Backend, request: &Request) -> Result<Report, ReportError> {
    let cx = context::Context::new(backend, request)?;
    let mut sections = Vec::new();
    let mut not_computed = Vec::new();
    for (metric, make) in SECTIONS {
        if !cx.wanted(metric) {
            continue;
        }
        match make(&cx) {
            Ok(mut made) => sections.append(&mut made),
            Err(context::Skip::NotApplicable) => {}
            Err(context::Skip::Failed(reason)) if cx.named(metric) => {
                return Err(ReportError::Metric {
                    metric: metric.to_owned(),
                    reason,
                });
            }
            Err(context::Skip::Failed(reason)) => {
                not_computed.push((metric.to_owned(), reason.to_string()));
            }
            Err(context::Skip::Error(e)) => return Err(e),
        }
    }
    for metric in cx.plugins() {
        match generic::section(&cx, metric) {
            Ok(section) => sections.push(section),
            Err(context::Skip::Failed(reason)) if cx.named(metric) => {
                return Err(ReportError::Metric {
                    metric: metric.clone(),
                    reason,
                });
            }
            Err(context::Skip::Failed(reason)) => {
                not_computed.push((metric.clone(), reason.to_string()));
            }
            Err(context::Skip::NotApplicable) => {}
            Err(context::Skip::Error(e)) => return Err(e),
        }
    }
    cx.check_params_used()?;
    if sections.is_empty() && not_computed.is_empty() {
        return Err(ReportError::NothingToReport {
            input: cx.input_name(),
            columns: cx.columns().join(", "),
        });
    }
    Ok(Report {
        title: "Customer metrics report".to_owned(),
        input: cx.input_name(),
        rows: cx.rows(),
        sections,
        not_computed,
    })
}

type MakeSections = fn(&context::Context<'_>) -> Result<Vec<Section>, context::Skip>;

/// The metrics a report can show, in page order.
const SECTIONS: [(&str, MakeSections); 11] = [
    ("retention", retention::retention),
    ("retention_forecast", retention::forecast),
    ("clv", clv::clv),
    ("aov", clv::aov),
    ("nps", survey::nps),
    ("csat", survey::csat),
    ("key_drivers", drivers::key_drivers),
    ("service", service::service),
    ("cx_value", cx::cx_value),
    ("cx_outcomes", cx::cx_outcomes),
    ("price_gap", pricing::price_gap),
];

/// The metrics `mittari report` knows how to lay out.
pub fn reportable_metrics() -> impl Iterator<Item = &'static str> {
    SECTIONS.iter().map(|(name, _)| *name)
}

/// Writes the page to `path` and, with `charts`, each chart as `charts/<id>.svg`.
pub fn write(report: &Report, path: &Path, charts: Option<&Path>) -> Result<usize, ReportError> {
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|error| ReportError::Write {
            path: path.display().to_string(),
            error,
        })
    };
    write(path, &report.html())?;
    let Some(dir) = charts else {
        return Ok(0);
    };
    std::fs::create_dir_all(dir).map_err(|error| ReportError::Write {
        path: dir.display().to_string(),
        error,
    })?;
    let mut written = 0;
    for chart in report.charts() {
        write(&dir.join(format!("{}.svg", chart.id)), &chart.svg)?;
        written += 1;
    }
    Ok(written)
}
