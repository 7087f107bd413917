//! The Mittari plugin SDK: everything a metric plugin depends on, and nothing more.
//!
//! A plugin is a `cdylib` that the Mittari server loads at run time, so a team can ship a new
//! metric without rebuilding the server. Plugin authors write safe Rust:
//!
//! 1. implement [`Metric`] for a type: [`Metric::descriptor`] declares the input columns,
//!    parameters and outputs; [`Metric::compute`] computes over an Arrow [`RecordBatch`] that the
//!    engine has already validated against that descriptor;
//! 2. invoke [`export_plugin!`] once with every metric the library provides.
//!
//! ```
//! use mittari_sdk::prelude::*;
//!
//! struct OrderCount;
//!
//! impl Metric for OrderCount {
//!     fn descriptor(&self) -> MetricDescriptor {
//!         MetricDescriptor::new("order_count", env!("CARGO_PKG_VERSION"), "number of orders")
//!             .input(ColumnSpec::double("amount", "order value").required())
//!             .output(OutputSpec::new("orders", "count", "orders in the input"))
//!     }
//!     fn compute(&self, input: &Input<'_>, _params: &Params) -> Result<Output, MetricError> {
//!         Ok(Output::new().scalar(Scalar::new("orders", input.num_rows() as f64)))
//!     }
//! }
//!
//! mittari_sdk::export_plugin!(OrderCount);
//! ```
//!
//! The macro generates the C ABI described in `docs/plugin-abi.md`: an ABI-version symbol the
//! host checks first, and an entry point returning a `#[repr(C)]` vtable. Table data crosses
//! the boundary through the Arrow C Data Interface (zero-copy); the small descriptor,
//! parameters and scalar results cross as JSON, except the scalar results of many groups,
//! which cross as Arrow columns ([`grouped`]). Every exported function catches panics and
//! reports them as errors, so a bug in a metric fails one request, never the server.

pub mod abi;
pub mod covariates;
mod descriptor;
mod error;
pub mod grouped;
mod input;
mod lint;
mod metric;
mod output;
mod params;
pub mod scan;
pub mod state;
pub mod stats;
pub mod survey;
pub mod time;

pub use arrow_array;
pub use arrow_array::RecordBatch;
pub use arrow_schema;
pub use descriptor::{
    ColumnSpec, DataType, FittingSpec, GroupComparison, MAX_QUANTITY, MetricDescriptor, OutputSpec,
    ParameterSpec, Range, RfmSummaryInput, TableInputSpec, TableSpec,
};
pub use error::MetricError;
pub use input::Input;
pub use lint::{KNOWN_UNITS, is_snake_case};
pub use metric::Metric;
pub use output::{ConfidenceInterval, Output, Scalar, Warning, result_table};
pub use params::{ParamValue, Params};

/// The version of the plugin ABI this SDK implements: 5, whose metrics can be fitted once and
/// scored again ([`state`]; `fit` and `score`). The host also loads libraries of version 4
/// ([`abi::v4`], without fitted state), 3 ([`abi::v3`], without table inputs), 2
/// ([`abi::v2`], called once per group) and 1 ([`abi::v1`], which cannot be cancelled
/// either), and refuses any other version.
pub const ABI_VERSION: u32 = 5;

/// Imports for a plugin crate: `use mittari_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::{
        ColumnSpec, ConfidenceInterval, DataType, Input, MAX_QUANTITY, Metric, MetricDescriptor,
        MetricError, OutputSpec, ParamValue, ParameterSpec, Params, Range, RecordBatch, Scalar,
        TableInputSpec, TableSpec, Warning,
        output::Output,
        result_table,
        state::{Fitted, FittedModel, StoredState},
    };
}
