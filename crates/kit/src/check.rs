//! `mittari plugin check`: a parent that reports and a worker child that runs the plugin.
//!
//! The worker loads the library with the engine (the server's own loading, validation and
//! result checks) and runs a fixed, seeded list of tasks, writing one JSON line per task
//! start and end. The parent reads them; when the worker dies or stops answering, the task
//! it was on is the culprit, and a new worker resumes after it. Both sides build the same
//! task list from the same options, so a task is named by its index.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mittari_engine::probe::{ProbeCase, SHAPES, extreme_cases, shaped_cases};
use mittari_engine::{
    ComputeRequest, Engine, EngineConfig, EngineError, Field, LibraryStatus, MetricDescriptor,
    Mode, ParamValue, StoredFit,
};
use serde::{Deserialize, Serialize};

/// Marks the worker's protocol lines, so what a plugin prints on standard output is ignored.
const MARK: &str = "\u{1}mittari-check ";

/// What to send and how long to wait.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Seed of the generated extreme requests.
    pub seed: u64,
    /// Generated extreme requests per metric.
    pub generated: usize,
    /// Rows of the two large requests, which are also timed.
    pub large_rows: usize,
    /// How long one request may take before the plugin is reported as hanging.
    pub timeout: Duration,
    /// Data a fittable metric can fit (CSV, Parquet, Arrow or JSON Lines), fitted and scored
    /// again with each allowed value of the parameters a fit fixes: generated requests seldom
    /// hold data a model fits.
    pub fit_input: Option<std::path::PathBuf>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            seed: 1,
            generated: 200,
            large_rows: 1_000_000,
            timeout: Duration::from_secs(120),
            fit_input: None,
        }
    }
}

/// What the check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckSummary {
    pub passed: usize,
    pub failed: usize,
}

/// Why the worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot write to the checking process's parent: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Message {
    /// The library loaded, or did not; the task list follows from `metrics`.
    Library {
        abi_version: Option<u32>,
        metrics: Vec<String>,
        refused: Option<String>,
        tasks: usize,
    },
    Start {
        index: usize,
        metric: String,
        label: String,
    },
    Done {
        index: usize,
        metric: String,
        verdict: Verdict,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
enum Verdict {
    /// The descriptor has no problem.
    Clean,
    /// A result, or a clear error naming the field at fault.
    Passed { clear_error: bool },
    /// A large request: passed, with its cost.
    Measured {
        /// The error's first violation, when the answer was a clear error.
        clear_error: Option<String>,
        seconds: f64,
        peak_bytes: Option<u64>,
    },
    /// A fittable metric's fit and score round trips: requests whose fit, stored and scored
    /// again, gave the fit's own results; requests refused with a clear error.
    RoundTrips { fitted: usize, refused: usize },
    /// The metric declares no fitted state: no round trip to run.
    NotFittable,
    /// `kind` names the misbehaviour (`panics`, `wrong row index`, …); the report groups by it.
    Failed { kind: String, problem: String },
}

impl Verdict {
    fn failed(kind: &str, problem: impl Into<String>) -> Verdict {
        Verdict::Failed {
            kind: kind.to_owned(),
            problem: problem.into(),
        }
    }
}

/// One thing the worker does.
enum Task {
    Lint(MetricDescriptor),
    /// Sent twice: the results must be equal.
    Shaped {
        case: ProbeCase,
        metric: String,
    },
    Generated {
        case: ProbeCase,
        metric: String,
    },
    /// Fit each request, then score its input with the state: the results must be the fit's.
    FitScore {
        cases: Vec<ProbeCase>,
        descriptor: MetricDescriptor,
    },
}

/// Generated requests a fittable metric is fitted with and scored again.
const ROUND_TRIPS: usize = 40;

impl Task {
    fn label(&self) -> &str {
        match self {
            Task::Lint(descriptor) => &descriptor.name,
            Task::Shaped { case, .. } | Task::Generated { case, .. } => &case.label,
            Task::FitScore { .. } => "fit and score",
        }
    }

    fn metric(&self) -> &str {
        match self {
            Task::Lint(descriptor) | Task::FitScore { descriptor, .. } => &descriptor.name,
            Task::Shaped { metric, .. } | Task::Generated { metric, .. } => metric,
        }
    }
}

/// Tasks per metric: the lint, the shaped requests, the generated ones, the fit and score
/// round trips.
fn tasks_per_metric(options: &CheckOptions) -> usize {
    1 + SHAPES + options.generated + 1
}

/// `descriptor`'s tasks, in order. Generating them costs time (two requests of
/// `large_rows`), so a worker resuming after a crash generates only the current metric's.
fn metric_tasks(descriptor: &MetricDescriptor, options: &CheckOptions) -> Vec<Task> {
    let metric = descriptor.name.clone();
    let mut tasks = vec![Task::Lint(descriptor.clone())];
    tasks.extend(
        shaped_cases(descriptor, options.large_rows)
            .into_iter()
            .map(|case| Task::Shaped {
                case,
                metric: metric.clone(),
            }),
    );
    tasks.extend(
        extreme_cases(descriptor, options.seed, options.generated)
            .into_iter()
            .map(|case| Task::Generated {
                case,
                metric: metric.clone(),
            }),
    );
    // The small shaped requests and the first generated ones, fitted and scored again.
    // Each with every allowed value of the parameters a fit fixes (a model choice), so a
    // metric whose default fits nothing (clv's historic) is fitted too.
    let cases = match &descriptor.fitting {
        Some(fitting) => {
            let base: Vec<ProbeCase> = fit_input(descriptor, options)
                .into_iter()
                .chain(
                    shaped_cases(descriptor, 0)
                        .into_iter()
                        .filter(|case| case.input.num_rows() > 0),
                )
                .chain(extreme_cases(descriptor, options.seed, ROUND_TRIPS))
                .collect();
            let choices: Vec<(String, ParamValue)> = fitting
                .model_parameters
                .iter()
                .filter_map(|name| descriptor.parameter_spec(name))
                .flat_map(|spec| {
                    spec.allowed_values
                        .iter()
                        .map(|value| (spec.name.clone(), ParamValue::String(value.clone())))
                })
                .collect();
            let mut cases = base.clone();
            for case in &base {
                for (name, value) in &choices {
                    let mut varied = case.clone();
                    varied.params.insert(name.clone(), value.clone());
                    varied.label = format!("{}, {name}={value}", case.label);
                    cases.push(varied);
                }
            }
            cases
        }
        None => Vec::new(),
    };
    tasks.push(Task::FitScore {
        cases,
        descriptor: descriptor.clone(),
    });
    debug_assert_eq!(tasks.len(), tasks_per_metric(options));
    tasks
}

/// The `--fit-input` file as a request, read as the CLI reads an input for the metric. A file
/// that cannot be read is a request without rows, which the metric refuses as such.
fn fit_input(descriptor: &MetricDescriptor, options: &CheckOptions) -> Option<ProbeCase> {
    let path = options.fit_input.as_deref()?;
    let read = mittari_io::read(
        mittari_io::Source::Path(path),
        descriptor,
        &[],
        &mittari_io::ReadOptions::default(),
    );
    let input = match read {
        Ok(table) => table.batch,
        Err(_) => {
            arrow_array::RecordBatch::new_empty(std::sync::Arc::new(arrow_schema::Schema::empty()))
        }
    };
    Some(ProbeCase {
        label: format!("{}: {}", descriptor.name, path.display()),
        params: BTreeMap::new(),
        input,
        group_by: Vec::new(),
    })
}

/// The engine a check loads `library` into: the server's loading, with limits far above any
/// generated request.
fn engine_config(library: &Path) -> EngineConfig {
    // The engine resolves a relative library against the plugin directory.
    let library = std::fs::canonicalize(library).unwrap_or_else(|_| library.to_owned());
    let library = library.as_path();
    EngineConfig {
        plugin_dir: library.parent().map(Path::to_owned).unwrap_or_default(),
        extra_plugin_dirs: Vec::new(),
        libraries: Some(vec![library.display().to_string()]),
        allow_libraries_outside_dir: true,
        enabled_metrics: None,
        metric_choices: BTreeMap::new(),
        metric_defaults: BTreeMap::new(),
        max_concurrent_computations: 1,
        max_queued_computations: 1,
        light_request_max_rows: 0,
        max_groups: usize::MAX,
        // The --fit-input file's rows, whatever their number.
        max_rows: usize::MAX,
        max_string_bytes: usize::MAX,
    }
}

/// The child's side: loads `library` and runs the tasks from index `from` on, writing one
/// protocol line per event to `out`.
pub fn run_worker(
    library: &Path,
    options: &CheckOptions,
    from: usize,
    out: &mut dyn Write,
) -> Result<(), WorkerError> {
    let mut send = |message: &Message| -> std::io::Result<()> {
        let json = serde_json::to_string(message).map_err(std::io::Error::other)?;
        writeln!(out, "{MARK}{json}")?;
        out.flush()
    };
    let engine = match Engine::load(&engine_config(library)) {
        Ok(engine) => engine,
        Err(error) => {
            send(&Message::Library {
                abi_version: None,
                metrics: Vec::new(),
                // The server's advice (build the bundled plugins) is not for this library.
                refused: Some(match error {
                    mittari_engine::StartupError::NoMetrics { detail, .. } => detail,
                    other => other.to_string(),
                }),
                tasks: 0,
            })?;
            return Ok(());
        }
    };
    let abi_version = engine
        .libraries()
        .iter()
        .find_map(|record| match record.status {
            LibraryStatus::Loaded { abi_version, .. } => Some(abi_version),
            LibraryStatus::Refused { .. } => None,
        });
    let per_metric = tasks_per_metric(options);
    send(&Message::Library {
        abi_version,
        metrics: engine.metrics().map(|d| d.name.clone()).collect(),
        refused: None,
        tasks: engine.metrics().count() * per_metric,
    })?;
    let tasks = engine
        .metrics()
        .enumerate()
        .filter(|(position, _)| (position + 1) * per_metric > from)
        .flat_map(|(position, descriptor)| {
            let first = position * per_metric;
            metric_tasks(descriptor, options)
                .into_iter()
                .enumerate()
                .map(move |(offset, task)| (first + offset, task))
        })
        .skip_while(|(index, _)| *index < from);
    for (index, task) in tasks {
        send(&Message::Start {
            index,
            metric: task.metric().to_owned(),
            label: task.label().to_owned(),
        })?;
        let (metric, verdict) = match task {
            Task::Lint(descriptor) => {
                let problems = descriptor.lint();
                let verdict = if problems.is_empty() {
                    Verdict::Clean
                } else {
                    Verdict::failed("descriptor", problems.join("\n        "))
                };
                (descriptor.name, verdict)
            }
            Task::Shaped { case, metric } => {
                let verdict = run_twice(&engine, &metric, &case, options.large_rows);
                (metric, verdict)
            }
            Task::Generated { case, metric } => {
                let verdict = match compute(&engine, &metric, &case) {
                    Ok((_, clear_error)) => Verdict::Passed {
                        clear_error: clear_error.is_some(),
                    },
                    Err(failed) => failed,
                };
                (metric, verdict)
            }
            Task::FitScore { cases, descriptor } => {
                let verdict = match descriptor.fitting {
                    Some(_) => round_trips(&engine, &descriptor.name, &cases),
                    None => Verdict::NotFittable,
                };
                (descriptor.name, verdict)
            }
        };
        send(&Message::Done {
            index,
            metric,
            verdict,
        })?;
    }
    Ok(())
}

/// Computes `case` twice; a large case is timed and its memory measured on the first run.
fn run_twice(engine: &Engine, metric: &str, case: &ProbeCase, large_rows: usize) -> Verdict {
    let rows = case.input.num_rows();
    let large = rows == large_rows && rows > 1;
    let baseline = large.then(reset_peak_memory).flatten();
    let started = Instant::now();
    let first = compute(engine, metric, case);
    let seconds = started.elapsed().as_secs_f64();
    let peak_bytes = baseline.and_then(|baseline| Some(peak_memory()?.saturating_sub(baseline)));
    let (first, clear_error) = match first {
        Ok(first) => first,
        Err(failed) => return failed,
    };
    match compute(engine, metric, case) {
        Ok((second, _)) if second != first => Verdict::failed(
            "not deterministic",
            format!(
                "the same request gave two different results:\n        {}\n        {}",
                shorten(&first),
                shorten(&second)
            ),
        ),
        Ok(_) if large => Verdict::Measured {
            clear_error,
            seconds,
            peak_bytes,
        },
        Ok(_) => Verdict::Passed {
            clear_error: clear_error.is_some(),
        },
        Err(Verdict::Failed { kind, problem }) => Verdict::failed(
            &format!("not deterministic: {kind}"),
            format!("only the second of two equal requests: {problem}"),
        ),
        Err(other) => other,
    }
}

/// At most 300 characters of `text`.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(300) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// The result or the clear error of one request as text, for comparison, and the error's first
/// violation if it was one; or what is wrong with how the plugin answered.
fn compute(
    engine: &Engine,
    metric: &str,
    case: &ProbeCase,
) -> Result<(String, Option<String>), Verdict> {
    let request = ComputeRequest::new(
        metric,
        case.params.clone(),
        case.input.clone(),
        case.group_by.clone(),
    );
    match engine.compute_blocking(request) {
        Ok(outcome) => Ok((format!("{:?} {:?}", outcome.results, outcome.grouped), None)),
        Err(EngineError::InvalidArgument { violations }) => {
            let rows = case.input.num_rows() as u64;
            for violation in &violations {
                if let Field::Column { name, row } = &violation.field {
                    // A column the request lacks may be named only as missing: one the metric
                    // declares, and no row of it.
                    // Or one a parameter of the request names (a covariate), as missing.
                    let declared = engine.describe(metric).is_ok_and(|d| {
                        d.inputs.iter().any(|c| &c.name == name)
                            || d.named_columns(case.params.iter().filter_map(|(k, v)| match v {
                                ParamValue::String(v) => Some((k.as_str(), v.as_str())),
                                _ => None,
                            }))
                            .contains(name)
                    });
                    if case.input.column_by_name(name).is_none() && (row.is_some() || !declared) {
                        return Err(Verdict::failed(
                            "wrong column",
                            format!(
                                "an error names input column {name:?}, which the request does not have: {}",
                                violation.description
                            ),
                        ));
                    }
                    if let Some(row) = row
                        && *row >= rows
                    {
                        return Err(Verdict::failed(
                            "wrong row index",
                            format!(
                                "an error names row {row} of {name:?}, but the request has {rows} rows: {}",
                                violation.description
                            ),
                        ));
                    }
                }
            }
            let first = violations
                .first()
                .map(|v| format!("{}: {}", v.field.path(), v.description));
            Ok((format!("{violations:?}"), first))
        }
        Err(EngineError::MetricFailed { message, .. }) => {
            let kind = if message.contains("panicked") {
                "panics"
            } else if message.contains("non-finite") {
                "returns NaN or infinity"
            } else if message.contains("does not declare") {
                "undeclared output"
            } else {
                "internal error where a result or a clear error was due"
            };
            Err(Verdict::failed(kind, message))
        }
        Err(other) => Err(Verdict::failed("unexpected error", other.to_string())),
    }
}

/// Fits each case, then scores its input with the fitted state: a fit must give a state its
/// own metric reads, and scoring must give the fit's results (but for the warning that says
/// they come from a stored model). A fit refused with a clear error is no round trip.
fn round_trips(engine: &Engine, metric: &str, cases: &[ProbeCase]) -> Verdict {
    let (mut fitted, mut refused) = (0, 0);
    for case in cases {
        let mut request =
            ComputeRequest::new(metric, case.params.clone(), case.input.clone(), Vec::new());
        request.mode = Mode::Fit;
        let outcome = match engine.compute_blocking(request) {
            Ok(outcome) => outcome,
            Err(EngineError::InvalidArgument { .. }) => {
                refused += 1;
                continue;
            }
            Err(error) => {
                return Verdict::failed(
                    "fit failed where a model or a clear error was due",
                    format!("{}: {error}", case.label),
                );
            }
        };
        let Some(state) = outcome.fitted else {
            return Verdict::failed("fit returned no state", case.label.clone());
        };
        let stored = StoredFit {
            reference: format!("{metric}-check@1"),
            state: state.state,
            params: state.params,
        };
        let mut request =
            ComputeRequest::new(metric, case.params.clone(), case.input.clone(), Vec::new());
        request.mode = Mode::Score(std::sync::Arc::new(stored));
        let scored = match engine.compute_blocking(request) {
            Ok(scored) => scored,
            Err(error) => {
                return Verdict::failed(
                    "cannot score with its own fit",
                    format!("{}: {error}", case.label),
                );
            }
        };
        let mut scored_results = scored.results.unwrap_or_default();
        scored_results.warnings.retain(|w| w.code != "stored_model");
        let fit_results = format!("{:?}", outcome.results.unwrap_or_default());
        if format!("{scored_results:?}") != fit_results {
            return Verdict::failed(
                "scoring differs from the fit",
                format!(
                    "{}: the fit gave\n        {}\n        and scoring its input with the stored state\n        {}",
                    case.label,
                    shorten(&fit_results),
                    shorten(&format!("{scored_results:?}"))
                ),
            );
        }
        fitted += 1;
    }
    Verdict::RoundTrips { fitted, refused }
}

/// Resets the process's peak resident memory (Linux) and returns the current resident size.
fn reset_peak_memory() -> Option<u64> {
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    status_bytes("VmRSS:")
}

fn peak_memory() -> Option<u64> {
    status_bytes("VmHWM:")
}

fn status_bytes(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(key))?;
    let kib: u64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The parent's side: checks `library` in worker processes made by `worker` (a command that
/// ends in a call to [`run_worker`]; the parent appends `--worker-from INDEX`), and writes the
/// report to `out`.
pub fn check_library(
    library: &Path,
    options: &CheckOptions,
    worker: &dyn Fn() -> Command,
    out: &mut dyn Write,
) -> std::io::Result<CheckSummary> {
    let mut report = Report::default();
    if !library.is_file() {
        report.refused = Some(format!(
            "{} is not a file; build the plugin first (cargo build --release)",
            library.display()
        ));
        report.write(library, out)?;
        return Ok(CheckSummary {
            passed: 0,
            failed: 1,
        });
    }
    let mut from = 0;
    while let Some(next) = run_once(library, options, worker, from, &mut report)? {
        from = next;
    }
    report.write(library, out)?;
    Ok(CheckSummary {
        passed: report.passed(),
        failed: report.failed(),
    })
}

/// Everything the workers said.
#[derive(Debug, Default)]
struct Report {
    abi_version: Option<u32>,
    metrics: Vec<String>,
    refused: Option<String>,
    /// Task index → (metric, label, verdict).
    done: BTreeMap<usize, (String, String, Verdict)>,
}

impl Report {
    /// Checks that ran and passed; a check that did not apply (fit and score of a metric
    /// without fitted state) is neither passed nor failed.
    fn passed(&self) -> usize {
        self.done
            .values()
            .filter(|(_, _, v)| !matches!(v, Verdict::Failed { .. } | Verdict::NotFittable))
            .count()
    }

    fn failed(&self) -> usize {
        self.done
            .values()
            .filter(|(_, _, v)| matches!(v, Verdict::Failed { .. }))
            .count()
            + usize::from(self.refused.is_some())
    }

    fn write(&self, library: &Path, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "library {}", library.display())?;
        if let Some(reason) = &self.refused {
            writeln!(out, "  FAIL  refused: {reason}")?;
            return Ok(());
        }
        writeln!(
            out,
            "  ok    ABI version {}, symbols present, metrics: {}",
            self.abi_version.map_or("?".to_owned(), |v| v.to_string()),
            self.metrics.join(", ")
        )?;
        for metric in &self.metrics {
            writeln!(out, "{metric}")?;
            let (mut results, mut errors) = (0, 0);
            // Kind → (requests, the first one's problem and label), in the order first seen.
            let mut failures: Vec<(&str, usize, &str, &str)> = Vec::new();
            for (_, label, verdict) in self.done.values().filter(|(m, _, _)| m == metric) {
                match verdict {
                    Verdict::Clean => writeln!(out, "  ok    descriptor")?,
                    Verdict::Passed { clear_error: true } => errors += 1,
                    Verdict::Passed { clear_error: false } => results += 1,
                    Verdict::Measured {
                        clear_error,
                        seconds,
                        peak_bytes,
                        ..
                    } => writeln!(
                        out,
                        "  ok    {label}: {}, the same twice, in {seconds:.3} s with {}",
                        match clear_error {
                            Some(error) => format!("a clear error ({})", shorten(error)),
                            None => "a result".to_owned(),
                        },
                        peak_bytes.map_or("peak memory not measured".to_owned(), |bytes| {
                            format!(
                                "{:.1} MB of resident memory grown at the peak",
                                bytes as f64 / 1e6
                            )
                        }),
                    )?,
                    Verdict::RoundTrips { fitted, refused } => writeln!(
                        out,
                        "  ok    fit and score: {fitted} requests fitted, stored and scored again gave the fit's results; {refused} refused with a clear error{}",
                        if *fitted == 0 {
                            " (no request could be fitted, so no round trip was run: give --fit-input FILE with data the metric fits)"
                        } else {
                            ""
                        }
                    )?,
                    Verdict::NotFittable => writeln!(
                        out,
                        "  --    fit and score: not run, the metric declares no fitted state"
                    )?,
                    Verdict::Failed { kind, problem } => {
                        match failures.iter_mut().find(|(k, ..)| k == kind) {
                            Some((_, count, ..)) => *count += 1,
                            None => failures.push((kind, 1, problem, label)),
                        }
                    }
                }
            }
            writeln!(
                out,
                "  ok    {results} requests answered with a result, {errors} with a clear error (invalid_value, invalid_input or a refused parameter)"
            )?;
            for (kind, count, problem, first) in failures {
                let requests = if count == 1 {
                    String::new()
                } else {
                    format!(" ({count} requests; the first below)")
                };
                writeln!(
                    out,
                    "  FAIL  {kind}{requests}: {problem}\n        in {first}"
                )?;
            }
        }
        let (passed, failed) = (self.passed(), self.failed());
        writeln!(
            out,
            "{}: {passed} checks passed, {failed} failed",
            if failed == 0 { "passed" } else { "FAILED" }
        )
    }
}

/// Runs one worker from task `from`; returns where the next worker starts, or `None` when
/// every task is done (or the library could not load).
fn run_once(
    library: &Path,
    options: &CheckOptions,
    worker: &dyn Fn() -> Command,
    from: usize,
    report: &mut Report,
) -> std::io::Result<Option<usize>> {
    let mut child = worker()
        .arg("--worker-from")
        .arg(from.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("the checking process has no standard output"))?;
    let (lines, messages) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Some(at) = line.find(MARK) else { continue };
            if let Ok(message) = serde_json::from_str::<Message>(&line[at + MARK.len()..])
                && lines.send(message).is_err()
            {
                break;
            }
        }
    });
    let mut total = None;
    // The task started and not yet done: (index, metric, label).
    let mut running: Option<(usize, String, String)> = None;
    loop {
        match messages.recv_timeout(options.timeout) {
            Ok(Message::Library {
                abi_version,
                metrics,
                refused,
                tasks,
            }) => {
                report.abi_version = abi_version;
                report.metrics = metrics;
                report.refused = refused;
                total = Some(tasks);
            }
            Ok(Message::Start {
                index,
                metric,
                label,
            }) => running = Some((index, metric, label)),
            Ok(Message::Done {
                index,
                metric,
                verdict,
            }) => {
                let label = running
                    .take()
                    .map(|(_, _, label)| label)
                    .unwrap_or_default();
                report.done.insert(index, (metric, label, verdict));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(blame(report, running, total, || {
                    Verdict::failed(
                        "hangs",
                        format!(
                            "no answer after {} s (plugin check --timeout)",
                            options.timeout.as_secs()
                        ),
                    )
                }));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait()?;
                if total.is_none() && running.is_none() {
                    report.refused.get_or_insert_with(|| {
                        format!(
                            "the checking process ended while loading {}: {}",
                            library.display(),
                            describe(status)
                        )
                    });
                    return Ok(None);
                }
                return Ok(blame(report, running, total, || {
                    Verdict::failed("the process died", describe(status))
                }));
            }
        }
    }
}

/// Records the task that was running as failed with `problem`; returns the next task, if any.
fn blame(
    report: &mut Report,
    running: Option<(usize, String, String)>,
    total: Option<usize>,
    verdict: impl FnOnce() -> Verdict,
) -> Option<usize> {
    let (index, metric, label) = running?;
    report.done.insert(index, (metric, label, verdict()));
    (index + 1 < total.unwrap_or(0)).then_some(index + 1)
}

fn describe(status: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = match signal {
                6 => " (SIGABRT: an abort, or a panic that could not unwind)",
                11 => " (SIGSEGV: an invalid memory access)",
                9 => " (SIGKILL: out of memory?)",
                _ => "",
            };
            return format!("killed by signal {signal}{name}");
        }
    }
    match status.code() {
        Some(code) => format!("exited with status {code} in the middle of a request"),
        None => status.to_string(),
    }
}
