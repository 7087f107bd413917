//! The Mittari metric engine: it loads metric plugins and runs every computation through one
//! path, so the guarantees hold for bundled and third-party metrics alike.
//!
//! - **Loading** ([`Engine::load`]): plugin libraries from a directory (only files named
//!   `*mittari_plugin_*`, or the ones the admin lists), ABI-version checked before anything
//!   else is called. A library that fails any check is refused and logged; the engine starts
//!   with the rest. Libraries are never unloaded.
//! - **Validation**: every request is checked against the metric's descriptor (columns,
//!   types, nulls, ranges, parameters) before plugin code runs; the plugin receives only its
//!   declared columns, in their declared types, and a complete parameter set.
//! - **Group-by**: implemented here, once: rows are partitioned by the group columns and the
//!   metric runs per group, in parallel runs of consecutive groups (one plugin call per run
//!   for ABI-3 plugins), so every metric gets per-segment results. They come back as columns
//!   ([`GroupedResults`]), which keeps a million groups to a few hundred MB.
//! - **Dispatch**: CPU-bound work runs on blocking threads, at most a configured number at
//!   once, behind a bounded queue; results are checked against the descriptor (declared
//!   outputs only, never NaN or infinity) before they leave the engine.
//!
//! The engine knows nothing of gRPC: errors are [`EngineError`]s, which the server maps to
//! status codes in one place.

mod engine;
mod error;
mod group;
mod grouped;
mod plugin;
pub mod probe;
mod staging;
mod validate;

pub use engine::{
    ComputeOutcome, ComputeRequest, ConfigValue, Engine, EngineConfig, FittedState, Lane,
    LibraryRecord, LibraryStatus, Load, MetricResults, Mode, PLUGIN_FILE_PREFIX, ResultScalar,
    StoredFit, Timings,
};
pub use error::{EngineError, Field, StartupError, Violation};
pub use grouped::GroupedResults;
pub use mittari_sdk::abi::panic_message;
pub use mittari_sdk::grouped::{ConfidenceIntervals, GroupTable, GroupedWarning, ScalarColumn};
pub use mittari_sdk::{
    ColumnSpec, ConfidenceInterval, DataType, FittingSpec, MetricDescriptor, OutputSpec,
    ParamValue, ParameterSpec, Range, RfmSummaryInput, TableInputSpec, TableSpec, Warning,
};
pub use validate::check_part;
