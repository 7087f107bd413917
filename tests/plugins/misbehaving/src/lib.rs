//! Test fixture: metrics with the bugs a server must survive. A panic, a NaN result, a slow
//! computation (for overload, deadline and graceful-shutdown tests), and an error message
//! that names a file on the server (which only admins may see).
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

mittari_sdk::export_plugin!(Panics, ReturnsNan, Sleeps, LeaksPath);
