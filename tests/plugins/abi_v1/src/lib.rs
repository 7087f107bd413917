//! Test fixture: a plugin built for ABI version 1, whose `compute` takes no cancellation flag.
//! Hosts of version 3 still load it; its computations just cannot be cancelled. The version-1
//! vtable wraps the SDK's version-3 functions, passing "never cancelled".

use mittari_sdk::abi::{self, OwnedBytes, OwnedTables, PluginMetrics};
use mittari_sdk::arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use mittari_sdk::prelude::*;

struct Rows;

impl Metric for Rows {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new(
            "test_v1_rows",
            "0.0.0",
            "counts rows (ABI version 1 fixture)",
        )
        .input(ColumnSpec::int64("value", "any integer"))
        .output(OutputSpec::new("rows", "count", "rows in the input"))
    }
    fn compute(&self, input: &Input<'_>, _params: &Params) -> Result<Output, MetricError> {
        Ok(Output::new().scalar(Scalar::new("rows", input.num_rows() as f64)))
    }
}

/// Sleeps without looking at any cancellation flag, as a version-1 plugin must.
struct Sleeps;

impl Metric for Sleeps {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new(
            "test_v1_sleeps",
            "0.0.0",
            "sleeps, uncancellable (ABI version 1 fixture)",
        )
        .expensive()
        .input(ColumnSpec::int64("value", "any integer"))
        .parameter(ParameterSpec::int64("millis", 1000, "how long to sleep").range(0.0, 600_000.0))
        .output(OutputSpec::new("rows", "count", "rows in the input"))
    }
    fn compute(&self, input: &Input<'_>, params: &Params) -> Result<Output, MetricError> {
        let millis = params.i64("millis")?.unsigned_abs();
        std::thread::sleep(std::time::Duration::from_millis(millis));
        Ok(Output::new().scalar(Scalar::new("rows", input.num_rows() as f64)))
    }
}

struct Metrics;

impl PluginMetrics for Metrics {
    fn metrics() -> &'static [Box<dyn Metric>] {
        static METRICS: std::sync::OnceLock<Vec<Box<dyn Metric>>> = std::sync::OnceLock::new();
        METRICS.get_or_init(|| vec![Box::new(Rows), Box::new(Sleeps)])
    }
}

const V3: abi::PluginVTable = abi::vtable::<Metrics>();

/// Version 1's compute: the current one without the flag.
unsafe extern "C" fn compute_v1(
    index: usize,
    params: *const u8,
    params_len: usize,
    input_array: *mut FFI_ArrowArray,
    input_schema: *const FFI_ArrowSchema,
    out_meta: *mut OwnedBytes,
    out_tables: *mut OwnedTables,
) -> u32 {
    // SAFETY: the arguments are the host's, passed on unchanged; null means never cancelled.
    unsafe {
        (V3.compute)(
            index,
            params,
            params_len,
            input_array,
            input_schema,
            std::ptr::null(),
            out_meta,
            out_tables,
        )
    }
}

static VTABLE: abi::v1::PluginVTable = abi::v1::PluginVTable {
    abi_version: abi::v1::ABI_VERSION,
    metric_count: V3.metric_count,
    describe: V3.describe,
    compute: compute_v1,
    free_bytes: V3.free_bytes,
    free_tables: V3.free_tables,
};

#[unsafe(no_mangle)]
pub extern "C" fn mittari_plugin_abi_version() -> u32 {
    abi::v1::ABI_VERSION
}

#[unsafe(no_mangle)]
pub extern "C" fn mittari_plugin_entry() -> *const abi::v1::PluginVTable {
    &VTABLE
}
