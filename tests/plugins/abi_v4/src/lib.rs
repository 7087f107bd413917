//! Test fixture: a plugin built for ABI version 4, which has no `fit` or `score`. Hosts of
//! version 5 still load it, compute and group through it, and refuse to fit it. The
//! version-4 vtable is the SDK's version-5 vtable without its last two functions.

use mittari_sdk::abi::{self, PluginMetrics};
use mittari_sdk::prelude::*;

struct Rows;

impl Metric for Rows {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new(
            "test_v4_rows",
            "0.0.0",
            "counts rows (ABI version 4 fixture)",
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

const V5: abi::PluginVTable = abi::vtable::<Metrics>();

static VTABLE: abi::v4::PluginVTable = abi::v4::PluginVTable {
    abi_version: abi::v4::ABI_VERSION,
    metric_count: V5.metric_count,
    describe: V5.describe,
    compute: V5.compute,
    free_bytes: V5.free_bytes,
    free_tables: V5.free_tables,
    compute_groups: V5.compute_groups,
    compute_with_tables: V5.compute_with_tables,
    compute_groups_with_tables: V5.compute_groups_with_tables,
};

#[unsafe(no_mangle)]
pub extern "C" fn mittari_plugin_abi_version() -> u32 {
    abi::v4::ABI_VERSION
}

#[unsafe(no_mangle)]
pub extern "C" fn mittari_plugin_entry() -> *const abi::v4::PluginVTable {
    abi::install_panic_hook();
    &VTABLE
}
