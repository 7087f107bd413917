//! Test fixture: a plugin built for ABI version 2, which has no `compute_groups`. Hosts of
//! version 3 still load it and call it once per group. The version-2 vtable is the SDK's
//! version-3 vtable without its last function.

use mittari_sdk::abi::{self, PluginMetrics};
use mittari_sdk::prelude::*;

struct Rows;

impl Metric for Rows {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new(
            "test_v2_rows",
            "0.0.0",
            "counts rows (ABI version 2 fixture)",
        )
        .input(ColumnSpec::int64("value", "any integer"))
        .output(OutputSpec::new("rows", "count", "rows in the input"))
        .output(OutputSpec::new("sum", "count", "sum of the values"))
    }
    fn compute(&self, input: &Input<'_>, _params: &Params) -> Result<Output, MetricError> {
        let values = input.int64("value")?;
        let sum: i64 = values.iter().flatten().sum();
        Ok(Output::new()
            .scalar(Scalar::new("rows", input.num_rows() as f64))
            .scalar(Scalar::new("sum", sum as f64)))
    }
}

struct Metrics;

impl PluginMetrics for Metrics {
    fn metrics() -> &'static [Box<dyn Metric>] {
        static METRICS: std::sync::OnceLock<Vec<Box<dyn Metric>>> = std::sync::OnceLock::new();
        METRICS.get_or_init(|| vec![Box::new(Rows)])
    }
}

const V3: abi::PluginVTable = abi::vtable::<Metrics>();

static VTABLE: abi::v2::PluginVTable = abi::v2::PluginVTable {
    abi_version: abi::v2::ABI_VERSION,
    metric_count: V3.metric_count,
    describe: V3.describe,
    compute: V3.compute,
    free_bytes: V3.free_bytes,
    free_tables: V3.free_tables,
};

#[unsafe(no_mangle)]
pub extern "C" fn mittari_plugin_abi_version() -> u32 {
    abi::v2::ABI_VERSION
}

#[unsafe(no_mangle)]
pub extern "C" fn mittari_plugin_entry() -> *const abi::v2::PluginVTable {
    abi::install_panic_hook();
    &VTABLE
}
