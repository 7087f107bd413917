//! Test fixture: metrics with the bugs a server must survive and `mittari plugin check` must
//! name. A panic, a NaN result, a slow computation (for overload, deadline and
//! graceful-shutdown tests), an error message that names a file on the server (which only
//! admins may see), an abort, an undeclared output, an error naming a row the request does
//! not have, a result that differs between equal requests, and a run-on description. The
//! abort is only ever called by `plugin check`, which runs it in a child process.
#![forbid(unsafe_code)]

use mittari_sdk::prelude::*;

struct Panics;

impl Metric for Panics {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new(
            "test_panics",
            "0.0.0",
            "panics on every compute (test fixture)",
        )
        .input(ColumnSpec::int64("value", "any integer"))
        .output(OutputSpec::new("never", "count", "never returned"))
    }
    fn compute(&self, _input: &Input<'_>, _params: &Params) -> Result<Output, MetricError> {
        panic!("deliberate panic in test_panics")
    }
}

struct ReturnsNan;

impl Metric for ReturnsNan {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new("test_returns_nan", "0.0.0", "returns NaN (test fixture)")
            .input(ColumnSpec::int64("value", "any integer"))
            .output(OutputSpec::new("value", "count", "always NaN"))
    }
    fn compute(&self, _input: &Input<'_>, _params: &Params) -> Result<Output, MetricError> {
        Ok(Output::new().scalar(Scalar::new("value", f64::NAN)))
    }
}

struct Sleeps;

impl Metric for Sleeps {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new(
            "test_sleeps",
            "0.0.0",
            "sleeps, then counts rows; stops early when cancelled (test fixture)",
        )
        .expensive()
        .input(ColumnSpec::int64("value", "any integer"))
        .parameter(ParameterSpec::int64("millis", 1000, "how long to sleep").range(0.0, 60_000.0))
        .output(OutputSpec::new("rows", "count", "rows in the input"))
    }
    fn compute(&self, input: &Input<'_>, params: &Params) -> Result<Output, MetricError> {
        let until = std::time::Instant::now()
            + std::time::Duration::from_millis(params.i64("millis")?.unsigned_abs());
        while std::time::Instant::now() < until {
            input.check_cancelled()?;
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Ok(Output::new().scalar(Scalar::new("rows", input.num_rows() as f64)))
    }
}

struct LeaksPath;

impl Metric for LeaksPath {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new(
            "test_leaks_path",
            "0.0.0",
            "fails with a message naming a server file (test fixture)",
        )
        .input(ColumnSpec::int64("value", "any integer"))
        .output(OutputSpec::new("never", "count", "never returned"))
    }

    fn compute(&self, _input: &Input<'_>, _params: &Params) -> Result<Output, MetricError> {
        Err(MetricError::failed(
            "cannot open /srv/mittari/secret/lookup.csv: no such file",
        ))
    }
}

struct Aborts;

impl Metric for Aborts {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new("test_aborts", "0.0.0", "aborts the process (test fixture)")
            .description("Calls std::process::abort, which no unwinding can catch.")
            .input(ColumnSpec::int64("value", "any integer"))
            .output(OutputSpec::new("never", "count", "never returned"))
    }

    fn compute(&self, _input: &Input<'_>, _params: &Params) -> Result<Output, MetricError> {
        std::process::abort()
    }
}

struct UndeclaredOutput;

impl Metric for UndeclaredOutput {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new(
            "test_undeclared_output",
            "0.0.0",
            "returns an output it does not declare (test fixture)",
        )
        .description("Declares rows but returns row_count.")
        .input(ColumnSpec::int64("value", "any integer"))
        .output(OutputSpec::new("rows", "count", "rows in the input"))
    }

    fn compute(&self, input: &Input<'_>, _params: &Params) -> Result<Output, MetricError> {
        Ok(Output::new().scalar(Scalar::new("row_count", input.num_rows() as f64)))
    }
}

struct WrongRow;

impl Metric for WrongRow {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new(
            "test_wrong_row",
            "0.0.0",
            "blames a row past the end of the input (test fixture)",
        )
        .description("Reports an invalid value one row beyond the last.")
        .input(ColumnSpec::int64("value", "any integer"))
        .output(OutputSpec::new("rows", "count", "never returned"))
    }

    fn compute(&self, input: &Input<'_>, _params: &Params) -> Result<Output, MetricError> {
        Err(MetricError::invalid_value(
            "value",
            input.num_rows(),
            "is not allowed",
        ))
    }
}

struct Nondeterministic;

static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Metric for Nondeterministic {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new(
            "test_nondeterministic",
            "0.0.0",
            "counts its own calls (test fixture)",
        )
        .description("Returns how often it has been called, so equal requests differ.")
        .input(ColumnSpec::int64("value", "any integer"))
        .output(OutputSpec::new("calls", "count", "calls so far"))
    }

    fn compute(&self, _input: &Input<'_>, _params: &Params) -> Result<Output, MetricError> {
        let calls = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        Ok(Output::new().scalar(Scalar::new("calls", calls as f64)))
    }
}

struct RunOnDescription;

impl Metric for RunOnDescription {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new("test_run_on", "0.0.0", "counts rows (test fixture)")
            .description(
                "Counts the rows of the input,                  a description broken across lines.",
            )
            .input(ColumnSpec::int64("value", "any integer"))
            .output(OutputSpec::new("rows", "items", "rows in the input"))
    }

    fn compute(&self, input: &Input<'_>, _params: &Params) -> Result<Output, MetricError> {
        Ok(Output::new().scalar(Scalar::new("rows", input.num_rows() as f64)))
    }
}

mittari_sdk::export_plugin!(
    Panics,
    ReturnsNan,
    Sleeps,
    LeaksPath,
    Aborts,
    UndeclaredOutput,
    WrongRow,
    Nondeterministic,
    RunOnDescription
);
