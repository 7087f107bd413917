use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{RecordBatch, UInt32Array};
use mittari_sdk::grouped::{GroupedBuilder, GroupedOutput};
use mittari_sdk::{
    ConfidenceInterval, MetricDescriptor, MetricError, Output, OutputSpec, ParamValue, Scalar,
    Warning,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{EngineError, Field, StartupError, Violation};
use crate::group::{self, PartitionError};
use crate::grouped::{self, GroupedResults};
use crate::plugin::{PluginLibrary, PluginMetric};
use crate::staging::Staged;
use crate::validate;

/// Plugin libraries are files named `<dll prefix>mittari_plugin_<name><dll suffix>`, for
/// example `libmittari_plugin_nps.so`: what cargo produces for a crate `mittari-plugin-<name>`.
/// Discovery loads only such files, so other libraries in the directory (test fixtures,
/// unrelated code) are never loaded and their initializers never run.
pub const PLUGIN_FILE_PREFIX: &str = "mittari_plugin_";

/// A configuration value as the admin wrote it; converted to the parameter's declared type
/// when the engine starts.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ConfigValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

/// What the engine needs from the server's configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where plugin libraries are.
    pub plugin_dir: PathBuf,
    /// More directories whose plugin libraries are loaded too (with `libraries` unset): one's
    /// own plugins kept apart from the build output the bundled ones are in.
    pub extra_plugin_dirs: Vec<PathBuf>,
    /// Libraries to load (file names, or names without the platform prefix and suffix such as
    /// `mittari_plugin_nps`); `None` loads every plugin library in `plugin_dir`.
    pub libraries: Option<Vec<String>>,
    /// Let `libraries` name files outside `plugin_dir` (paths); off, a name with a path
    /// separator or `..` is refused.
    pub allow_libraries_outside_dir: bool,
    /// Metrics to serve; `None` serves every metric loaded.
    pub enabled_metrics: Option<Vec<String>>,
    /// The admin's run-time choices (metric → enabled), applied after `enabled_metrics`.
    pub metric_choices: BTreeMap<String, bool>,
    /// Per-metric parameter defaults, overriding the metric's own.
    pub metric_defaults: BTreeMap<String, BTreeMap<String, ConfigValue>>,
    /// Computations running at once; more wait in a queue.
    pub max_concurrent_computations: usize,
    /// Computations waiting at once; more are refused as overload.
    pub max_queued_computations: usize,
    /// A request of at most this many rows to a metric not declared expensive is light: it
    /// runs in its own lane, so heavy computations never delay it.
    pub light_request_max_rows: usize,
    /// Groups one request may form with group-by; more are refused before any is computed.
    pub max_groups: usize,
    /// Rows one request may have.
    pub max_rows: usize,
    /// Bytes of string data (all string cells together) one request may have.
    pub max_string_bytes: usize,
}

/// One computation to run.
#[derive(Debug, Clone)]
pub struct ComputeRequest {
    pub metric: String,
    pub params: BTreeMap<String, ParamValue>,
    pub input: RecordBatch,
    /// Tables sent beside the input, by name ([`mittari_sdk::TableInputSpec`]).
    pub tables: Vec<(String, RecordBatch)>,
    pub group_by: Vec<String>,
    /// Set it to stop the computation: the engine checks it between groups and passes it to
    /// the plugin, which checks it between units of work. [`Engine::compute`] sets it itself
    /// when its future is dropped (the client gave up).
    pub cancel: Arc<AtomicBool>,
    /// The largest result the caller can send on (a server's message limit). Results whose
    /// encoding certainly exceeds it ([`MetricResults::wire_bytes_lower_bound`]) are refused
    /// as they accumulate, without computing the remaining groups.
    pub max_result_bytes: Option<usize>,
    /// Compute (the default), fit a model to store, or score with a stored one.
    pub mode: Mode,
}

/// What a request asks of its metric.
#[derive(Debug, Clone, Default)]
pub enum Mode {
    /// Compute the metric from the input.
    #[default]
    Compute,
    /// Fit the metric's model to the input ([`mittari_sdk::Metric::fit`]): the outcome
    /// carries the state to store ([`ComputeOutcome::fitted`]) beside the fit's results.
    Fit,
    /// Score the input with a stored fit ([`mittari_sdk::Metric::score`]).
    Score(Arc<StoredFit>),
}

/// A stored fit handed back for scoring.
#[derive(Debug, Clone)]
pub struct StoredFit {
    /// How callers name it (`clv-eu@3`), for errors.
    pub reference: String,
    /// The state `fit` returned.
    pub state: Vec<u8>,
    /// The fit's parameters; those the descriptor's `fitting` lists are fixed for scoring.
    pub params: BTreeMap<String, ParamValue>,
}

/// What a fit hands its caller to store, beside its results.
#[derive(Debug, Clone, PartialEq)]
pub struct FittedState {
    pub state: Vec<u8>,
    /// The metric's version and the library that fitted it.
    pub metric_version: String,
    pub abi_version: u32,
    pub library_sha256: String,
    /// Every parameter the fit ran with, defaults included.
    pub params: BTreeMap<String, ParamValue>,
    /// What it was fitted on: the plugin's fingerprint with the input's rows.
    pub fingerprint: serde_json::Map<String, serde_json::Value>,
}

impl ComputeRequest {
    /// A request that nothing has cancelled yet.
    pub fn new(
        metric: impl Into<String>,
        params: BTreeMap<String, ParamValue>,
        input: RecordBatch,
        group_by: Vec<String>,
    ) -> Self {
        ComputeRequest {
            metric: metric.into(),
            params,
            input,
            tables: Vec::new(),
            group_by,
            cancel: Arc::default(),
            max_result_bytes: None,
            mode: Mode::Compute,
        }
    }
}

/// Which lane a computation runs in: light requests have slots of their own, so a few heavy
/// computations cannot starve them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Light,
    Heavy,
}

/// A scalar result with its unit, checked finite.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultScalar {
    pub name: String,
    pub unit: String,
    pub value: Option<f64>,
    pub confidence_interval: Option<ConfidenceInterval>,
    pub undefined_reason: Option<String>,
}

/// The least bytes a result table takes on the wire: its column names, 8 bytes per double
/// and at least 1 per other value.
pub(crate) fn table_bytes_lower_bound(table: &RecordBatch) -> usize {
    let rows = table.num_rows();
    table
        .schema()
        .fields()
        .iter()
        .zip(table.columns())
        .map(|(field, column)| {
            field.name().len()
                + match column.data_type() {
                    arrow_schema::DataType::Float64 => 8 * rows,
                    arrow_schema::DataType::Utf8 => {
                        column.as_string::<i32>().value_data().len() + rows
                    }
                    _ => rows,
                }
        })
        .sum()
}

/// What a metric returned for one set of rows.
#[derive(Debug, Clone, Default)]
pub struct MetricResults {
    pub scalars: Vec<ResultScalar>,
    pub tables: Vec<(String, RecordBatch)>,
    pub warnings: Vec<Warning>,
}

impl MetricResults {
    /// Bytes the results take at the least in any encoding that writes every name, text and
    /// value (a double as 8 bytes, any other value as at least 1; interval bounds of zero may
    /// be left out); the protobuf response is larger still, by its tags and lengths.
    pub fn wire_bytes_lower_bound(&self) -> usize {
        let scalars: usize = self
            .scalars
            .iter()
            .map(|s| {
                s.name.len()
                    + s.unit.len()
                    + s.value.map_or(0, |_| 8)
                    + s.confidence_interval.map_or(0, |ci| {
                        // Zero bounds may be left out of an encoding.
                        [ci.lower, ci.upper, ci.level]
                            .iter()
                            .filter(|v| **v != 0.0)
                            .count()
                            * 8
                    })
                    + s.undefined_reason.as_ref().map_or(0, String::len)
            })
            .sum();
        let warnings: usize = self
            .warnings
            .iter()
            .map(|w| w.code.len() + w.message.len())
            .sum();
        let tables: usize = self
            .tables
            .iter()
            .map(|(name, table)| name.len() + table_bytes_lower_bound(table))
            .sum();
        scalars + warnings + tables
    }
}

/// The outcome of a computation: `results` without group-by, `grouped` with it.
#[derive(Debug, Clone)]
pub struct ComputeOutcome {
    pub metric: String,
    pub rows: usize,
    pub results: Option<MetricResults>,
    pub grouped: Option<GroupedResults>,
    /// The state to store, for a fit ([`Mode::Fit`]).
    pub fitted: Option<FittedState>,
    /// Where the time went, for the server's telemetry.
    pub timings: Timings,
}

/// How long a computation waited for a slot, and then ran.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    pub queued: std::time::Duration,
    pub computing: std::time::Duration,
}

/// Computations running and waiting right now, over both lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub running: usize,
    pub queued: usize,
}

/// A library the engine loaded, or refused.
#[derive(Debug, Clone, PartialEq)]
pub enum LibraryStatus {
    /// Loaded from a private copy of contents with this SHA-256 (hex).
    Loaded {
        metrics: Vec<String>,
        sha256: String,
        abi_version: u32,
    },
    Refused {
        reason: String,
    },
}

/// A library file the engine considered, and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct LibraryRecord {
    /// The admin's file.
    pub path: PathBuf,
    pub status: LibraryStatus,
    /// When these contents were first loaded by this process (a reload that finds the same
    /// contents keeps the time).
    pub loaded_at: SystemTime,
}

#[derive(Debug, Clone)]
struct MetricEntry {
    /// The plugin's descriptor with the admin's defaults applied.
    descriptor: MetricDescriptor,
    plugin: PluginMetric,
    /// Whether this metric's small computations may run in place (see [`InPlace`]).
    in_place: Arc<InPlace>,
}

/// Whether a metric's small, light computations run on the calling (async) thread.
///
/// A 10-row NPS takes a few microseconds, and handing it to a blocking thread and back (two
/// futex wake-ups and context switches) cost more than the computation: measured with h2load,
/// the hand-off was a third of the server's time per call (BENCHMARKS.md, Step 12). So a light
/// request of at most [`IN_PLACE_MAX_CELLS`] input cells runs in place while the metric's
/// computations in place stay quick. One taking longer than [`IN_PLACE_STALL`], or
/// [`IN_PLACE_STRIKES`] in a row taking longer than [`IN_PLACE_SLOW`] (wall time, so a run
/// preempted once by other work is not taken for slow), sends the metric's computations back
/// to blocking threads for [`IN_PLACE_PAUSE`]: a metric that asks for much work on few rows
/// (a parameter, or a plugin's bug) stalls the runtime's thread a few times per pause at most.
#[derive(Debug, Default)]
struct InPlace {
    /// Until when (µs since [`InPlace::epoch`]) computations run on blocking threads; 0: none.
    paused_until: AtomicU64,
    /// Slow computations in place in a row.
    strikes: AtomicU32,
}

/// Input cells (rows × columns, table inputs included) of the largest computation run in place.
const IN_PLACE_MAX_CELLS: usize = 4 * 1024;
/// A computation in place taking longer is a strike against running the metric in place.
const IN_PLACE_SLOW: Duration = Duration::from_millis(1);
/// Strikes in a row that pause running the metric in place.
const IN_PLACE_STRIKES: u32 = 3;
/// A computation in place taking longer pauses running the metric in place at once.
const IN_PLACE_STALL: Duration = Duration::from_millis(20);
/// How long a pause sends the metric to blocking threads.
const IN_PLACE_PAUSE: Duration = Duration::from_secs(30);

impl InPlace {
    /// The instant the pause deadlines count from.
    fn epoch() -> Instant {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *EPOCH.get_or_init(Instant::now)
    }

    fn now() -> u64 {
        Self::epoch().elapsed().as_micros() as u64
    }

    fn allowed(&self) -> bool {
        let until = self.paused_until.load(Ordering::Relaxed);
        until == 0 || Self::now() >= until
    }

    /// Notes how long a computation in place took; see the type's docs.
    fn took(&self, metric: &str, elapsed: Duration) {
        if elapsed <= IN_PLACE_SLOW {
            if self.strikes.load(Ordering::Relaxed) != 0 {
                self.strikes.store(0, Ordering::Relaxed);
            }
            return;
        }
        let strikes = self.strikes.fetch_add(1, Ordering::Relaxed) + 1;
        if elapsed > IN_PLACE_STALL || strikes >= IN_PLACE_STRIKES {
            self.strikes.store(0, Ordering::Relaxed);
            let until = Self::now() + IN_PLACE_PAUSE.as_micros() as u64;
            self.paused_until.store(until, Ordering::Relaxed);
            tracing::info!(
                metric,
                elapsed_ms = elapsed.as_secs_f64() * 1e3,
                strikes,
                pause_s = IN_PLACE_PAUSE.as_secs(),
                "small computations of this metric took long; they run on blocking threads for a while"
            );
        }
    }
}

/// What every generation of the engine shares: the computation slots (a reload must not let
/// old and new requests together run more than the configured number) and the staging
/// directory of library copies.
#[derive(Debug)]
struct Shared {
    limiter: Limiter,
    /// Private copies of the loaded libraries (see `staging`). The files are removed when the
    /// last engine is dropped; the mappings of loaded libraries outlive them.
    staging: crate::staging::StagingDir,
}

/// Per-request bounds, from the configuration.
#[derive(Debug, Clone, Copy)]
struct RequestBounds {
    light_request_max_rows: usize,
    max_groups: usize,
    max_rows: usize,
    max_string_bytes: usize,
}

/// The metric engine: the loaded plugins, and the one path every computation takes
/// (validation, group-by, dispatch, result checks).
///
/// An engine is immutable. Run-time changes (a reload, a metric enabled or disabled) build a
/// new engine that shares the computation slots and loaded libraries with this one; the
/// server swaps it in for new requests while requests in flight finish on the old one.
#[derive(Debug, Clone)]
pub struct Engine {
    /// Every metric loaded, enabled or not.
    metrics: BTreeMap<String, MetricEntry>,
    enabled: BTreeSet<String>,
    libraries: Vec<LibraryRecord>,
    shared: Arc<Shared>,
    bounds: RequestBounds,
}

impl Engine {
    /// Loads the plugins and validates the configuration against them. Libraries that cannot
    /// be used are refused (logged, and listed in [`Engine::libraries`]); the engine starts
    /// with the rest, unless none provides a metric.
    pub fn load(config: &EngineConfig) -> Result<Engine, StartupError> {
        if config.max_concurrent_computations == 0 {
            return Err(StartupError::config(
                "server.max_concurrent_computations",
                "must be at least 1",
            ));
        }
        let staging = crate::staging::StagingDir::create()
            .map_err(|source| StartupError::Staging { source })?;
        let shared = Arc::new(Shared {
            limiter: Limiter::new(
                config.max_concurrent_computations,
                config.max_queued_computations,
            ),
            staging,
        });
        let engine = Self::load_into(config, Arc::clone(&shared), &[]);
        shared.staging.trim_cache();
        engine
    }

    /// A new engine from `config`, for a reload: the plugin directory is read again, new and
    /// changed libraries are loaded (a changed file has other contents, so it is loaded from
    /// another copy, beside the old version), and the metric settings are applied again.
    ///
    /// Unlike [`Engine::load`], any library that cannot be loaded refuses the whole reload, so
    /// the running engine stays exactly as it is. The computation slots are this engine's:
    /// `max_concurrent_computations` and `max_queued_computations` change only at a restart.
    pub fn reload(&self, config: &EngineConfig) -> Result<Engine, StartupError> {
        let engine = Self::load_into(config, Arc::clone(&self.shared), &self.libraries)?;
        let refused: Vec<String> = engine
            .libraries
            .iter()
            .filter_map(|record| match &record.status {
                LibraryStatus::Refused { reason } => {
                    Some(format!("{}: {reason}", record.path.display()))
                }
                LibraryStatus::Loaded { .. } => None,
            })
            .collect();
        if !refused.is_empty() {
            return Err(StartupError::RefusedLibraries {
                count: refused.len(),
                detail: refused.join("; "),
            });
        }
        Ok(engine)
    }

    fn load_into(
        config: &EngineConfig,
        shared: Arc<Shared>,
        previous: &[LibraryRecord],
    ) -> Result<Engine, StartupError> {
        let paths = library_paths(config)?;
        // Staging reads, checks, hashes and copies each file (tens of MB for a release build):
        // on every core. Loading stays in path order, which decides between two libraries
        // that provide a metric of one name.
        let staged: Vec<Result<Staged, String>> = paths
            .par_iter()
            .map(|path| crate::staging::stage(path, &shared.staging))
            .collect();
        let mut metrics = BTreeMap::new();
        let mut libraries = Vec::new();
        for (path, staged) in paths.into_iter().zip(staged) {
            let status = load_library(&path, staged, &mut metrics);
            let known = previous.iter().find(|old| match (&old.status, &status) {
                (
                    LibraryStatus::Loaded { sha256: old, .. },
                    LibraryStatus::Loaded { sha256: new, .. },
                ) => old == new,
                _ => false,
            });
            match &status {
                LibraryStatus::Loaded { .. } if known.is_some() => {}
                LibraryStatus::Loaded {
                    metrics,
                    sha256,
                    abi_version,
                } => {
                    tracing::info!(library = %path.display(), %sha256, abi_version, metrics = ?metrics, "loaded plugin library");
                }
                LibraryStatus::Refused { reason } => {
                    tracing::error!(library = %path.display(), %reason, "refused plugin library");
                }
            }
            libraries.push(LibraryRecord {
                path,
                status,
                loaded_at: known.map_or_else(SystemTime::now, |old| old.loaded_at),
            });
        }
        if metrics.is_empty() {
            let detail = if libraries.is_empty() {
                format!(
                    "no plugin libraries ({}{PLUGIN_FILE_PREFIX}*{}) found",
                    std::env::consts::DLL_PREFIX,
                    std::env::consts::DLL_SUFFIX
                )
            } else {
                libraries
                    .iter()
                    .map(|record| match &record.status {
                        LibraryStatus::Refused { reason } => {
                            format!("{}: {reason}", record.path.display())
                        }
                        LibraryStatus::Loaded { .. } => {
                            format!("{}: provides no metric", record.path.display())
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            return Err(StartupError::NoMetrics {
                dir: config.plugin_dir.clone(),
                detail,
            });
        }
        let mut enabled: BTreeSet<String> = match &config.enabled_metrics {
            Some(names) => {
                if let Some(name) = names.iter().find(|name| !metrics.contains_key(*name)) {
                    return Err(StartupError::config(
                        "metrics.enabled",
                        format!(
                            "metric {name:?} is not provided by any loaded plugin; loaded: {}",
                            join_keys(&metrics)
                        ),
                    ));
                }
                names.iter().cloned().collect()
            }
            None => metrics.keys().cloned().collect(),
        };
        // The admin's run-time choices name metrics of plugins that may since have gone:
        // those are ignored, not fatal.
        for (name, on) in &config.metric_choices {
            if !metrics.contains_key(name) {
                tracing::warn!(metric = %name, "the metric state file names a metric no loaded plugin provides; ignored");
            } else if *on {
                enabled.insert(name.clone());
            } else {
                enabled.remove(name);
            }
        }
        for (metric, defaults) in &config.metric_defaults {
            let Some(entry) = metrics.get_mut(metric) else {
                return Err(StartupError::config(
                    format!("metrics.defaults.{metric}"),
                    format!(
                        "no loaded metric is named {metric:?}; loaded: {}",
                        join_keys(&metrics)
                    ),
                ));
            };
            apply_defaults(&mut entry.descriptor, defaults)?;
        }
        Ok(Engine {
            metrics,
            enabled,
            libraries,
            shared,
            bounds: RequestBounds {
                light_request_max_rows: config.light_request_max_rows,
                max_groups: config.max_groups,
                max_rows: config.max_rows,
                max_string_bytes: config.max_string_bytes,
            },
        })
    }

    /// This engine with one metric enabled or disabled; requests already running keep the
    /// engine they started on.
    pub fn with_metric_enabled(&self, name: &str, enabled: bool) -> Result<Engine, EngineError> {
        if !self.metrics.contains_key(name) {
            return Err(EngineError::UnknownMetric {
                name: name.to_owned(),
                available: self.metrics.keys().cloned().collect(),
            });
        }
        let mut engine = self.clone();
        if enabled {
            engine.enabled.insert(name.to_owned());
        } else {
            engine.enabled.remove(name);
        }
        Ok(engine)
    }

    /// Every loaded metric's descriptor, and whether it is served.
    pub fn all_metrics(&self) -> impl Iterator<Item = (&MetricDescriptor, bool)> {
        self.metrics
            .iter()
            .map(|(name, e)| (&e.descriptor, self.enabled.contains(name)))
    }

    /// Computations running and waiting now, over this engine and every engine it was
    /// reloaded from (they share the slots).
    pub fn current_load(&self) -> Load {
        self.shared.limiter.load()
    }

    /// The served metrics' descriptors, by name.
    pub fn metrics(&self) -> impl Iterator<Item = &MetricDescriptor> {
        self.enabled
            .iter()
            .filter_map(|name| self.metrics.get(name))
            .map(|e| &e.descriptor)
    }

    /// Every library considered and what became of it.
    pub fn libraries(&self) -> &[LibraryRecord] {
        &self.libraries
    }

    pub fn describe(&self, name: &str) -> Result<&MetricDescriptor, EngineError> {
        self.entry(name).map(|e| &e.descriptor)
    }

    /// The file of the library that provides `name`.
    pub fn library_of(&self, name: &str) -> Option<&Path> {
        self.metrics.get(name).map(|e| e.plugin.library.path())
    }

    fn entry(&self, name: &str) -> Result<&MetricEntry, EngineError> {
        let available = || self.enabled.iter().cloned().collect();
        match self.metrics.get(name) {
            Some(entry) if self.enabled.contains(name) => Ok(entry),
            Some(_) => Err(EngineError::MetricDisabled {
                name: name.to_owned(),
                available: available(),
            }),
            None => Err(EngineError::UnknownMetric {
                name: name.to_owned(),
                available: available(),
            }),
        }
    }

    /// Checks what can be checked of a request before its rows arrive (a `ComputeStream`
    /// header): the metric exists, the parameters are valid, and the declared columns have
    /// the metric's types and include the group-by columns. `schema` is the declared input
    /// schema; the rows are checked again, with the same code, when they have arrived.
    pub fn check_header(
        &self,
        metric: &str,
        params: BTreeMap<String, ParamValue>,
        schema: arrow_schema::SchemaRef,
        group_by: &[String],
    ) -> Result<(), EngineError> {
        let descriptor = &self.entry(metric)?.descriptor;
        let empty = RecordBatch::new_empty(schema);
        let mut violations = Vec::new();
        let params = validate::params(descriptor, params, &mut violations);
        validate::group_by(&empty, group_by, &mut violations);
        validate::input(descriptor, &empty, &params, &mut violations).map_err(|message| {
            EngineError::MetricFailed {
                metric: descriptor.name.clone(),
                message,
            }
        })?;
        if violations.is_empty() {
            Ok(())
        } else {
            validate::truncate(&mut violations);
            Err(EngineError::InvalidArgument { violations })
        }
    }

    /// Refuses an input larger than the configured bounds, naming the bound and its key.
    fn check_size(&self, request: &ComputeRequest) -> Result<(), EngineError> {
        let tables = std::iter::once(("the input".to_owned(), Field::Input, &request.input)).chain(
            request.tables.iter().map(|(name, table)| {
                (
                    format!("table input {name}"),
                    Field::Table {
                        table: name.clone(),
                        column: None,
                        row: None,
                    },
                    table,
                )
            }),
        );
        let mut string_bytes = 0;
        for (what, field, table) in tables {
            let rows = table.num_rows();
            if rows > self.bounds.max_rows {
                return Err(EngineError::invalid(
                    field,
                    format!(
                        "{what} has {rows} rows, more than this server computes in one request ({}, server.max_rows); split it, or aggregate first",
                        self.bounds.max_rows
                    ),
                ));
            }
            string_bytes += table
                .columns()
                .iter()
                .filter_map(|c| c.as_string_opt::<i32>())
                .map(|s| s.value_data().len())
                .sum::<usize>();
            if string_bytes > self.bounds.max_string_bytes {
                return Err(EngineError::invalid(
                    field,
                    format!(
                        "the request has {string_bytes} bytes of text, more than this server accepts in one request ({}, server.max_string_bytes); send shorter ids, or split the input",
                        self.bounds.max_string_bytes
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The lane a request runs in: heavy when its metric is declared expensive or its input
    /// has more than `light_request_max_rows` rows.
    pub fn lane(&self, request: &ComputeRequest) -> Result<Lane, EngineError> {
        let entry = self.entry(&request.metric)?;
        // Scoring with a stored fit pays no fit: it is as light as its input is small.
        let expensive = entry.descriptor.expensive && !matches!(request.mode, Mode::Score(_));
        Ok(
            if expensive
                || std::iter::once(&request.input)
                    .chain(request.tables.iter().map(|(_, t)| t))
                    .any(|t| t.num_rows() > self.bounds.light_request_max_rows)
            {
                Lane::Heavy
            } else {
                Lane::Light
            },
        )
    }

    /// Runs a computation on a blocking thread, at most `max_concurrent_computations` at once
    /// in each lane. Refuses with [`EngineError::Overloaded`] when the wait queue is full.
    ///
    /// Dropping the returned future (a client's deadline, cancel or disconnect) sets the
    /// request's cancellation flag, so the computation stops soon after instead of running to
    /// its end for nobody.
    pub async fn compute(
        self: &Arc<Self>,
        request: ComputeRequest,
    ) -> Result<ComputeOutcome, EngineError> {
        // Unknown metrics and oversize inputs are refused before queueing.
        let lane = self.lane(&request)?;
        self.check_size(&request)?;
        let queued_at = Instant::now();
        let permit = self.shared.limiter.acquire(lane).await?;
        let queued = queued_at.elapsed();
        let entry = self.entry(&request.metric)?;
        if lane == Lane::Light
            && !matches!(request.mode, Mode::Fit)
            && input_cells(&request) <= IN_PLACE_MAX_CELLS
            && entry.in_place.allowed()
        {
            let _permit: OwnedSemaphorePermit = permit;
            let started = Instant::now();
            let result = self.compute_blocking_in(request, lane);
            let computing = started.elapsed();
            entry.in_place.took(&entry.descriptor.name, computing);
            return result.map(|mut outcome| {
                outcome.timings = Timings { queued, computing };
                outcome
            });
        }
        let engine = Arc::clone(self);
        // The request's span (its request id) follows the work onto the blocking thread.
        let span = tracing::Span::current();
        let metric = request.metric.clone();
        let abandon = AbandonOnDrop {
            cancel: Some(Arc::clone(&request.cancel)),
            metric: metric.clone(),
            started: Instant::now(),
        };
        let result = tokio::task::spawn_blocking(move || {
            let _permit: OwnedSemaphorePermit = permit;
            let _span = span.enter();
            let started = Instant::now();
            let mut outcome = engine.compute_blocking_in(request, lane)?;
            outcome.timings = Timings {
                queued,
                computing: started.elapsed(),
            };
            Ok(outcome)
        })
        .await
        .unwrap_or_else(|e| {
            Err(EngineError::MetricFailed {
                metric,
                message: format!("the computation task failed: {e}"),
            })
        });
        abandon.finished();
        result
    }

    /// Runs a computation on the calling thread. Group-by fans out over the rayon pool.
    pub fn compute_blocking(&self, request: ComputeRequest) -> Result<ComputeOutcome, EngineError> {
        self.check_size(&request)?;
        self.compute_blocking_in(request, Lane::Heavy)
    }

    /// Runs a computation on the calling thread: the groups of a heavy request in parallel on
    /// the rayon pool, those of a light one in order (they are small, and the pool may be busy
    /// with heavy work).
    fn compute_blocking_in(
        &self,
        request: ComputeRequest,
        lane: Lane,
    ) -> Result<ComputeOutcome, EngineError> {
        let started = Instant::now();
        let cancel: &AtomicBool = &request.cancel;
        let entry = self.entry(&request.metric)?;
        let descriptor = &entry.descriptor;
        let mut violations = Vec::new();
        let request_params = match &request.mode {
            Mode::Compute => request.params,
            Mode::Fit | Mode::Score(_) => {
                check_fittable(descriptor, &request.group_by, &mut violations)?;
                match &request.mode {
                    Mode::Score(stored) => {
                        fixed_params(descriptor, stored, request.params, &mut violations)
                    }
                    _ => request.params,
                }
            }
        };
        let params = validate::params(descriptor, request_params, &mut violations);
        validate::group_by(&request.input, &request.group_by, &mut violations);
        let assembly_failed = |message| EngineError::MetricFailed {
            metric: descriptor.name.clone(),
            message,
        };
        let input = validate::input(descriptor, &request.input, &params, &mut violations)
            .map_err(assembly_failed)?;
        let tables = validate::table_inputs(descriptor, &request.tables, &params, &mut violations)
            .map_err(assembly_failed)?;
        if !violations.is_empty() {
            validate::truncate(&mut violations);
            return Err(EngineError::InvalidArgument { violations });
        }
        let rows = input.num_rows();
        // Encoded once: every group's call takes the same parameters.
        let params_json = serde_json::to_vec(&params).map_err(|e| EngineError::MetricFailed {
            metric: descriptor.name.clone(),
            message: format!("cannot encode parameters: {e}"),
        })?;
        let params_json = params_json.as_slice();
        let failed = |message: String| EngineError::MetricFailed {
            metric: descriptor.name.clone(),
            message,
        };
        match &request.mode {
            Mode::Compute => {}
            Mode::Fit => {
                let (state, output, mut fingerprint) = entry
                    .plugin
                    .fit(&input, params_json, cancel)
                    .map_err(|e| metric_error(&descriptor.name, e, RowsOf::Request))?;
                let results = check_results(descriptor, output).map_err(failed)?;
                fingerprint.insert("rows".to_owned(), rows.into());
                tracing::debug!(
                    metric = %descriptor.name,
                    rows,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "fitted"
                );
                return Ok(ComputeOutcome {
                    metric: descriptor.name.clone(),
                    rows,
                    results: Some(results),
                    grouped: None,
                    fitted: Some(FittedState {
                        state,
                        metric_version: descriptor.version.clone(),
                        abi_version: entry.plugin.library.abi_version(),
                        library_sha256: entry.plugin.library.sha256().to_owned(),
                        params: params.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                        fingerprint,
                    }),
                    timings: Timings::default(),
                });
            }
            Mode::Score(stored) => {
                let output = entry
                    .plugin
                    .score(&stored.state, &input, params_json, cancel)
                    .map_err(
                        |e| match metric_error(&descriptor.name, e, RowsOf::Request) {
                            EngineError::IncompatibleModel { metric, message } => {
                                EngineError::IncompatibleModel {
                                    metric,
                                    message: format!("model {}: {message}", stored.reference),
                                }
                            }
                            other => other,
                        },
                    )?;
                let mut results = check_results(descriptor, output).map_err(failed)?;
                // Said with the results: which of the numbers are the stored fit's.
                results.warnings.insert(
                    0,
                    Warning {
                        code: "stored_model".to_owned(),
                        message: format!(
                            "scored with the stored model {}: its parameters and fit statistics are that fit's, on the data it was fitted to; the predictions are this input's customers'",
                            stored.reference
                        ),
                    },
                );
                count_bytes(request.max_result_bytes, results.wire_bytes_lower_bound())?;
                tracing::debug!(
                    metric = %descriptor.name,
                    model = %stored.reference,
                    rows,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "scored"
                );
                return Ok(ComputeOutcome {
                    metric: descriptor.name.clone(),
                    rows,
                    results: Some(results),
                    grouped: None,
                    fitted: None,
                    timings: Timings::default(),
                });
            }
        }
        // With group-by over one column, a metric that compares its groups (nps, csat) also
        // runs once on the whole input with that column as its comparison, unless the request
        // asked for a comparison of its own.
        let comparison = match (&descriptor.group_comparison, request.group_by.as_slice()) {
            (Some(spec), [column]) if params.get(&spec.parameter).is_none() => {
                let mut with = params.clone();
                with.insert(spec.parameter.clone(), ParamValue::String(column.clone()));
                let mut unexpected = Vec::new();
                let whole = validate::input(descriptor, &request.input, &with, &mut unexpected)
                    .map_err(assembly_failed)?;
                if !unexpected.is_empty() {
                    return Err(EngineError::InvalidArgument {
                        violations: unexpected,
                    });
                }
                let level = match with.get(&spec.level_parameter) {
                    Some(ParamValue::Double(level)) => *level,
                    _ => 0.95,
                };
                let json = serde_json::to_vec(&with).map_err(|e| {
                    failed(format!("cannot encode the comparison's parameters: {e}"))
                })?;
                Some((spec, whole, json, level))
            }
            _ => None,
        };
        let params = params_json;
        let run = |batch: &RecordBatch| -> Result<MetricResults, EngineError> {
            let output = entry
                .plugin
                .compute(batch, params, &tables, cancel)
                .map_err(|e| metric_error(&descriptor.name, e, RowsOf::Request))?;
            check_results(descriptor, output).map_err(|message| EngineError::MetricFailed {
                metric: descriptor.name.clone(),
                message,
            })
        };
        // Bytes of results so far, checked against the caller's limit as they accumulate.
        let result_bytes = AtomicUsize::new(0);
        let count_result_bytes = |bytes: usize| -> Result<(), EngineError> {
            let total = result_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
            match request.max_result_bytes {
                Some(limit) if total > limit => Err(EngineError::ResultTooLarge {
                    at_least: total,
                    limit,
                }),
                _ => Ok(()),
            }
        };
        let outcome = if request.group_by.is_empty() {
            let results = run(&input)?;
            count_result_bytes(results.wire_bytes_lower_bound())?;
            ComputeOutcome {
                metric: descriptor.name.clone(),
                rows,
                results: Some(results),
                grouped: None,
                fitted: None,
                timings: Timings::default(),
            }
        } else {
            let partition =
                group::partition(&request.input, &request.group_by, self.bounds.max_groups)
                    .map_err(|e| match e {
                        PartitionError::TooManyGroups { limit } => EngineError::invalid(
                            Field::GroupBy {
                                name: request.group_by.join(","),
                            },
                            format!(
                                "group_by {} forms more groups than this server computes in one request ({limit}, server.max_groups); group by fewer or coarser columns",
                                request.group_by.join(", "),
                            ),
                        ),
                        PartitionError::Keys(message) => EngineError::MetricFailed {
                            metric: descriptor.name.clone(),
                            message: format!("cannot take the group keys: {message}"),
                        },
                    })?;
            // A run of consecutive groups: one call for a plugin that computes groups (ABI
            // version 3), else one call per group collected into the same columns.
            let run_part = |groups: std::ops::Range<usize>| -> Result<GroupedOutput, EngineError> {
                if cancel.load(Ordering::Relaxed) {
                    return Err(EngineError::Cancelled);
                }
                let failed = |message: String| EngineError::MetricFailed {
                    metric: descriptor.name.clone(),
                    message,
                };
                let mut output = if entry.plugin.computes_groups() {
                    let (rows, starts) = partition.rows_of(groups);
                    entry
                        .plugin
                        .compute_groups(&input, params, &tables, rows, &starts, cancel)
                        .map_err(|e| metric_error(&descriptor.name, e, RowsOf::GroupInRequest))?
                } else {
                    let mut builder = GroupedBuilder::new();
                    for group in groups {
                        if cancel.load(Ordering::Relaxed) {
                            return Err(EngineError::Cancelled);
                        }
                        let rows = partition.rows(group);
                        let batch = arrow_select::take::take_record_batch(&input, &rows)
                            .map_err(|e| failed(format!("cannot select the group's rows: {e}")))?;
                        let output = entry
                            .plugin
                            .compute(&batch, params, &tables, cancel)
                            .map_err(|e| metric_error(&descriptor.name, e, RowsOf::Group(&rows)))?;
                        builder.push(output).map_err(failed)?;
                    }
                    builder.finish()
                };
                grouped::check(descriptor, &mut output).map_err(failed)?;
                count_result_bytes(grouped::part_bytes_lower_bound(&output))?;
                Ok(output)
            };
            let count = partition.len();
            // Small parts for few groups (each may be a model fit), large ones for many; the
            // result's size is checked after each part, so a part bounds the overshoot.
            let part_size = match lane {
                Lane::Heavy => (count / (8 * rayon::current_num_threads())).clamp(1, 1024),
                Lane::Light => 64,
            };
            let parts = (0..count)
                .step_by(part_size)
                .map(|start| start..(start + part_size).min(count));
            // The first error stops the other groups (a result over the caller's limit, a
            // cancellation, a metric failure): no work is done for a request already failed.
            // With several failing groups in parallel, which one is reported may vary.
            let parts: Vec<GroupedOutput> = match lane {
                Lane::Heavy => parts
                    .collect::<Vec<_>>()
                    .into_par_iter()
                    .map(run_part)
                    .collect::<Result<_, _>>()?,
                Lane::Light => parts.map(run_part).collect::<Result<_, _>>()?,
            };
            let mut joined = GroupedBuilder::new();
            for part in parts {
                joined.append(part);
            }
            let sizes = partition.sizes(0..count);
            let mut grouped =
                GroupedResults::new(descriptor, partition.keys, sizes, joined.finish());
            if let Some((spec, whole, json, level)) = &comparison {
                if cancel.load(Ordering::Relaxed) {
                    return Err(EngineError::Cancelled);
                }
                let output = entry
                    .plugin
                    .compute(whole, json, &tables, cancel)
                    .map_err(|e| metric_error(&descriptor.name, e, RowsOf::Request))?;
                let results = check_results(descriptor, output).map_err(failed)?;
                grouped
                    .add_comparison(descriptor, spec, &results, *level)
                    .map_err(failed)?;
            }
            if let Some(limit) = request.max_result_bytes {
                let at_least = grouped.wire_bytes_lower_bound();
                if at_least > limit {
                    return Err(EngineError::ResultTooLarge { at_least, limit });
                }
            }
            ComputeOutcome {
                metric: descriptor.name.clone(),
                rows,
                results: None,
                grouped: Some(grouped),
                fitted: None,
                timings: Timings::default(),
            }
        };
        tracing::debug!(
            metric = %descriptor.name,
            rows,
            groups = outcome.grouped.as_ref().map_or(0, GroupedResults::len),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "computed"
        );
        Ok(outcome)
    }
}

/// A result's size against the caller's limit.
fn count_bytes(limit: Option<usize>, at_least: usize) -> Result<(), EngineError> {
    match limit {
        Some(limit) if at_least > limit => Err(EngineError::ResultTooLarge { at_least, limit }),
        _ => Ok(()),
    }
}

/// Refuses to fit or score with a metric that declares no fitted state, or per group.
fn check_fittable(
    descriptor: &MetricDescriptor,
    group_by: &[String],
    violations: &mut Vec<Violation>,
) -> Result<(), EngineError> {
    if descriptor.fitting.is_none() {
        return Err(EngineError::IncompatibleModel {
            metric: descriptor.name.clone(),
            message: "this metric has no fitted models; compute it instead".to_owned(),
        });
    }
    if !group_by.is_empty() {
        violations.push(Violation::new(
            Field::GroupBy {
                name: group_by.join(","),
            },
            "a model is fitted to, and scores, the whole input; fit one model per segment under its own name",
        ));
    }
    Ok(())
}

/// The parameters of a scoring request: the fit's values of the parameters the fit fixes
/// (a request that gives another value is refused), the request's for the others.
fn fixed_params(
    descriptor: &MetricDescriptor,
    stored: &StoredFit,
    mut params: BTreeMap<String, ParamValue>,
    violations: &mut Vec<Violation>,
) -> BTreeMap<String, ParamValue> {
    let fixed = descriptor.fitting.iter().flat_map(|f| &f.model_parameters);
    for name in fixed {
        let fitted = stored.params.get(name);
        match (params.get(name), fitted) {
            (Some(given), Some(fitted)) if given != fitted => violations.push(Violation::new(
                Field::Parameter { name: name.clone() },
                format!(
                    "model {} was fitted with {name}={fitted}; a stored model scores with the parameters it was fitted with: leave {name} out, or fit a new model",
                    stored.reference
                ),
            )),
            (Some(_), None) => violations.push(Violation::new(
                Field::Parameter { name: name.clone() },
                format!(
                    "model {} was fitted without {name}; leave it out, or fit a new model",
                    stored.reference
                ),
            )),
            _ => {}
        }
        match fitted {
            Some(value) => {
                params.insert(name.clone(), value.clone());
            }
            None => {
                params.remove(name);
            }
        }
    }
    params
}

fn join_keys<V>(map: &BTreeMap<String, V>) -> String {
    map.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// What a row in a plugin's error counts.
#[derive(Clone, Copy)]
enum RowsOf<'a> {
    /// The request's rows (no group-by).
    Request,
    /// The rows of one group, given by their request rows.
    Group(&'a UInt32Array),
    /// The request's rows, reported from within a group.
    GroupInRequest,
}

/// Maps a plugin's error to the engine's, translating a row of the plugin's batch (a group's
/// rows with group-by) back to the request's row.
fn metric_error(metric: &str, error: MetricError, rows_of: RowsOf<'_>) -> EngineError {
    match error {
        MetricError::InvalidInput {
            column,
            row,
            message,
        } => {
            let row = row.map(|r| match rows_of {
                RowsOf::Group(rows) => rows
                    .values()
                    .get(r as usize)
                    .map_or(r, |&request_row| u64::from(request_row)),
                RowsOf::Request | RowsOf::GroupInRequest => r,
            });
            let message = match (rows_of, row) {
                (RowsOf::Group(_) | RowsOf::GroupInRequest, Some(row)) => {
                    format!("{message} (row {row} of the request)")
                }
                _ => message,
            };
            let field = match column {
                Some(name) => Field::Column { name, row },
                None => Field::Input,
            };
            EngineError::InvalidArgument {
                violations: vec![Violation::new(field, message)],
            }
        }
        MetricError::InvalidParameter { name, message } => {
            EngineError::invalid(Field::Parameter { name }, message)
        }
        MetricError::Failed { message } => EngineError::MetricFailed {
            metric: metric.to_owned(),
            message,
        },
        MetricError::Cancelled => EngineError::Cancelled,
        MetricError::IncompatibleState { message } => EngineError::IncompatibleModel {
            metric: metric.to_owned(),
            message,
        },
    }
}

/// The cells of a request's input and table inputs (rows × columns).
fn input_cells(request: &ComputeRequest) -> usize {
    std::iter::once(&request.input)
        .chain(request.tables.iter().map(|(_, t)| t))
        .map(|t| t.num_rows().saturating_mul(t.num_columns()))
        .fold(0, usize::saturating_add)
}

/// Sets a computation's cancellation flag if the future awaiting it is dropped before it
/// finished: the client gave up, so the work stops instead of running on for nobody.
struct AbandonOnDrop {
    cancel: Option<Arc<AtomicBool>>,
    metric: String,
    started: Instant,
}

impl AbandonOnDrop {
    fn finished(mut self) {
        self.cancel = None;
    }
}

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        if let Some(cancel) = self.cancel.take() {
            cancel.store(true, Ordering::Relaxed);
            tracing::info!(
                metric = %self.metric,
                elapsed_ms = self.started.elapsed().as_secs_f64() * 1e3,
                "the client gave up; cancelling its computation"
            );
        }
    }
}

/// Holds plugins to their descriptor: every scalar declared and finite, every table declared
/// and free of NaN and infinity. A plugin that breaks this has a bug; the request fails
/// rather than a wrong number reaching a client.
fn check_results(descriptor: &MetricDescriptor, output: Output) -> Result<MetricResults, String> {
    check_tables(
        descriptor,
        output
            .tables
            .iter()
            .map(|(name, table)| (name.as_str(), table)),
    )?;
    let mut scalars = Vec::with_capacity(output.scalars.len());
    for scalar in output.scalars {
        let unit = check_scalar(descriptor, &scalar)?.unit.clone();
        let undefined_reason = match (scalar.value, scalar.undefined_reason) {
            (None, None) => Some("the metric returned no value".to_owned()),
            (_, reason) => reason,
        };
        scalars.push(ResultScalar {
            name: scalar.name,
            unit,
            value: scalar.value,
            confidence_interval: scalar.confidence_interval,
            undefined_reason,
        });
    }
    Ok(MetricResults {
        scalars,
        tables: output.tables,
        warnings: output.warnings,
    })
}

/// Checks one scalar against the descriptor: declared, and finite. Returns its declaration.
fn check_scalar<'d>(
    descriptor: &'d MetricDescriptor,
    scalar: &Scalar,
) -> Result<&'d OutputSpec, String> {
    let spec = declared_output(descriptor, &scalar.name)?;
    let finite = scalar.value.is_none_or(f64::is_finite)
        && scalar
            .confidence_interval
            .is_none_or(|ci| ci.lower.is_finite() && ci.upper.is_finite() && ci.level.is_finite());
    if !finite {
        return Err(not_finite(&scalar.name));
    }
    Ok(spec)
}

/// The declaration of output `name`, or the error for a plugin that returned it undeclared.
pub(crate) fn declared_output<'d>(
    descriptor: &'d MetricDescriptor,
    name: &str,
) -> Result<&'d OutputSpec, String> {
    descriptor.output_spec(name).ok_or_else(|| {
        format!("the plugin returned output {name:?}, which its descriptor does not declare")
    })
}

/// The error for a plugin that returned a non-finite value for output `name`.
pub(crate) fn not_finite(name: &str) -> String {
    format!("the plugin returned a non-finite value for {name}; this is a bug in the plugin")
}

/// Checks result tables against the descriptor: declared, and free of NaN and infinity.
pub(crate) fn check_tables<'t>(
    descriptor: &MetricDescriptor,
    tables: impl IntoIterator<Item = (&'t str, &'t RecordBatch)>,
) -> Result<(), String> {
    for (name, table) in tables {
        if !descriptor.tables.iter().any(|t| t.name == name) {
            return Err(format!(
                "the plugin returned table {name:?}, which its descriptor does not declare"
            ));
        }
        for (field, column) in table.schema().fields().iter().zip(table.columns()) {
            if let Some(values) = column.as_primitive_opt::<Float64Type>()
                && values.iter().flatten().any(|v| !v.is_finite())
            {
                return Err(format!(
                    "the plugin returned a non-finite value in column {} of table {name}; this is a bug in the plugin",
                    field.name()
                ));
            }
        }
    }
    Ok(())
}

fn library_paths(config: &EngineConfig) -> Result<Vec<PathBuf>, StartupError> {
    let dir = &config.plugin_dir;
    if !dir.is_dir() {
        return Err(StartupError::MissingPluginDir { dir: dir.clone() });
    }
    let (prefix, suffix) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    if let Some(libraries) = &config.libraries {
        return libraries
            .iter()
            .map(|name| {
                let escapes = Path::new(name).components().count() != 1
                    || name.contains(['/', '\\'])
                    || name == "..";
                if escapes && !config.allow_libraries_outside_dir {
                    return Err(StartupError::config(
                        "plugins.libraries",
                        format!(
                            "library {name:?} is a path; list file names in plugins.dir ({}), or set plugins.allow_libraries_outside_dir = true",
                            dir.display()
                        ),
                    ));
                }
                let file = if name.ends_with(suffix) {
                    name.clone()
                } else {
                    format!("{prefix}{name}{suffix}")
                };
                let path = dir.join(file);
                if path.is_file() {
                    Ok(path)
                } else {
                    Err(StartupError::config(
                        "plugins.libraries",
                        format!("library {name:?} not found: no file {}", path.display()),
                    ))
                }
            })
            .collect();
    }
    let mut paths = plugin_files(dir)?;
    for extra in &config.extra_plugin_dirs {
        if !extra.is_dir() {
            return Err(StartupError::MissingPluginDir { dir: extra.clone() });
        }
        paths.extend(plugin_files(extra)?);
    }
    Ok(paths)
}

/// The plugin libraries in `dir` (`*mittari_plugin_*`), in name order.
fn plugin_files(dir: &Path) -> Result<Vec<PathBuf>, StartupError> {
    let (prefix, suffix) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let entries = std::fs::read_dir(dir).map_err(|source| StartupError::UnreadablePluginDir {
        dir: dir.to_owned(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|path| {
            path.is_file()
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|name| {
                        name.starts_with(&format!("{prefix}{PLUGIN_FILE_PREFIX}"))
                            && name.ends_with(suffix)
                    })
        })
        .collect();
    paths.sort();
    Ok(paths)
}

fn load_library(
    path: &Path,
    staged: Result<Staged, String>,
    metrics: &mut BTreeMap<String, MetricEntry>,
) -> LibraryStatus {
    let staged = match staged {
        Ok(staged) => staged,
        Err(reason) => return LibraryStatus::Refused { reason },
    };
    let loaded = PluginLibrary::load(path, &staged);
    crate::staging::release(&staged);
    let (library, descriptors) = match loaded {
        Ok(loaded) => loaded,
        Err(reason) => return LibraryStatus::Refused { reason },
    };
    let mut names = Vec::new();
    for (index, descriptor) in descriptors.into_iter().enumerate() {
        let descriptor = match descriptor.and_then(|d| d.check().map(|()| d)) {
            Ok(d) => d,
            Err(reason) => {
                tracing::error!(library = %path.display(), index, %reason, "refused metric");
                continue;
            }
        };
        if let Some(existing) = metrics.get(&descriptor.name) {
            tracing::error!(
                library = %path.display(),
                metric = %descriptor.name,
                already_from = %existing.plugin.library.path().display(),
                "refused metric: another library already provides a metric of this name"
            );
            continue;
        }
        names.push(descriptor.name.clone());
        let plugin = PluginMetric {
            library: Arc::clone(&library),
            index,
        };
        metrics.insert(
            descriptor.name.clone(),
            MetricEntry {
                descriptor,
                plugin,
                in_place: Arc::default(),
            },
        );
    }
    LibraryStatus::Loaded {
        metrics: names,
        sha256: library.sha256().to_owned(),
        abi_version: library.abi_version(),
    }
}

fn apply_defaults(
    descriptor: &mut MetricDescriptor,
    defaults: &BTreeMap<String, ConfigValue>,
) -> Result<(), StartupError> {
    let metric = descriptor.name.clone();
    for (name, raw) in defaults {
        let key = format!("metrics.defaults.{metric}.{name}");
        let Some(spec) = descriptor.parameters.iter_mut().find(|p| &p.name == name) else {
            let known: Vec<&str> = descriptor
                .parameters
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            return Err(StartupError::config(
                key,
                format!(
                    "metric {metric} has no parameter {name}; it has: {}",
                    known.join(", ")
                ),
            ));
        };
        let value = match raw {
            ConfigValue::Text(text) => ParamValue::parse(text, spec.data_type),
            ConfigValue::Bool(v) => Ok(ParamValue::Bool(*v)),
            ConfigValue::Int(v) => Ok(ParamValue::Int64(*v)),
            ConfigValue::Float(v) => Ok(ParamValue::Double(*v)),
        }
        .and_then(|value| value.conform_to(spec))
        .map_err(|reason| StartupError::config(key, reason))?;
        spec.default = Some(value);
    }
    Ok(())
}

/// Bounds concurrent computations per lane, each with a bounded wait queue of its own: heavy
/// computations queueing up must not use up the places light requests wait in.
#[derive(Debug)]
struct Limiter {
    light: LaneSlots,
    heavy: LaneSlots,
    max_running: usize,
    max_waiting: usize,
}

#[derive(Debug)]
struct LaneSlots {
    running: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl LaneSlots {
    fn new(max_running: usize) -> Self {
        LaneSlots {
            running: Arc::new(Semaphore::new(max_running)),
            waiting: AtomicUsize::new(0),
        }
    }
}

impl Limiter {
    fn new(max_running: usize, max_waiting: usize) -> Self {
        Limiter {
            light: LaneSlots::new(max_running),
            heavy: LaneSlots::new(max_running),
            max_running,
            max_waiting,
        }
    }

    fn load(&self) -> Load {
        let free = self.light.running.available_permits() + self.heavy.running.available_permits();
        Load {
            running: (2 * self.max_running).saturating_sub(free),
            queued: self.light.waiting.load(Ordering::Acquire)
                + self.heavy.waiting.load(Ordering::Acquire),
        }
    }

    async fn acquire(&self, lane: Lane) -> Result<OwnedSemaphorePermit, EngineError> {
        let slots = match lane {
            Lane::Light => &self.light,
            Lane::Heavy => &self.heavy,
        };
        if let Ok(permit) = Arc::clone(&slots.running).try_acquire_owned() {
            return Ok(permit);
        }
        let queued = slots.waiting.fetch_add(1, Ordering::AcqRel);
        // Decrements on every exit, including the caller dropping this future at a deadline.
        let _waiting = WaitingGuard(&slots.waiting);
        if queued >= self.max_waiting {
            return Err(EngineError::Overloaded {
                running: self.max_running - slots.running.available_permits(),
                queued,
            });
        }
        // The semaphore is never closed.
        Arc::clone(&slots.running)
            .acquire_owned()
            .await
            .map_err(|_| EngineError::Overloaded {
                running: self.max_running,
                queued,
            })
    }
}

struct WaitingGuard<'a>(&'a AtomicUsize);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs in place after each of `runs` (milliseconds each computation took, in order).
    fn in_place_after(runs: &[u64]) -> Vec<bool> {
        let in_place = InPlace::default();
        runs.iter()
            .map(|&ms| {
                in_place.took("m", Duration::from_millis(ms));
                in_place.allowed()
            })
            .collect()
    }

    #[test]
    fn slow_computations_in_place_pause_it() {
        // Quick ones never pause; two slow ones in a row do not, a quick one clears them.
        assert_eq!(in_place_after(&[0, 0, 0]), [true, true, true]);
        assert_eq!(in_place_after(&[2, 2, 0, 2, 2]), [true; 5]);
        // Three slow ones in a row do, and the pause holds.
        assert_eq!(in_place_after(&[2, 2, 2, 0]), [true, true, false, false]);
        // One that stalls the thread does at once.
        assert_eq!(in_place_after(&[0, 25, 0]), [true, false, false]);
    }

    #[test]
    fn input_cells_count_every_table() {
        let column = |n: i64| -> arrow_array::ArrayRef {
            Arc::new(arrow_array::Int64Array::from_iter_values(0..n))
        };
        let batch = |rows: i64, columns: usize| {
            let fields: Vec<_> = (0..columns)
                .map(|i| {
                    arrow_schema::Field::new(format!("c{i}"), arrow_schema::DataType::Int64, false)
                })
                .collect();
            RecordBatch::try_new(
                Arc::new(arrow_schema::Schema::new(fields)),
                (0..columns).map(|_| column(rows)).collect(),
            )
            .unwrap()
        };
        let mut request = ComputeRequest::new("m", BTreeMap::new(), batch(10, 3), Vec::new());
        assert_eq!(input_cells(&request), 30);
        request.tables.push(("t".to_owned(), batch(100, 2)));
        assert_eq!(input_cells(&request), 230);
    }

    #[tokio::test]
    async fn limiter_queues_then_refuses() {
        let limiter = Limiter::new(1, 1);
        let running = limiter.acquire(Lane::Heavy).await.unwrap();
        // The light lane has slots of its own.
        assert!(limiter.acquire(Lane::Light).await.is_ok());
        // One may wait...
        let waiting = limiter.acquire(Lane::Heavy);
        let mut waiting = Box::pin(waiting);
        assert!(futures_poll_pending(&mut waiting).await);
        // ...a second waiter is refused.
        assert!(matches!(
            limiter.acquire(Lane::Heavy).await,
            Err(EngineError::Overloaded {
                running: 1,
                queued: 1
            })
        ));
        // The light lane has a queue of its own, which heavy waiters do not use up.
        let light_running = limiter.acquire(Lane::Light).await.unwrap();
        let mut light_waiting = Box::pin(limiter.acquire(Lane::Light));
        assert!(futures_poll_pending(&mut light_waiting).await);
        drop(light_running);
        drop(running);
        assert!(waiting.await.is_ok());
        assert!(light_waiting.await.is_ok());
        assert_eq!(limiter.load().queued, 0);
    }

    /// Polls a future once; true if it is still pending.
    async fn futures_poll_pending<F: std::future::Future + Unpin>(future: &mut F) -> bool {
        tokio::time::timeout(std::time::Duration::from_millis(20), future)
            .await
            .is_err()
    }
}
