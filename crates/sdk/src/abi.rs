//! The C ABI between the host and a plugin library, specified in `docs/plugin-abi.md`.
//!
//! Plugin authors never use this module directly: [`crate::export_plugin!`] generates the two
//! exported symbols and a vtable whose functions are the generic implementations below. The
//! host (`mittari-engine`) uses the type definitions to call them.
//!
//! Ownership rules, all of which the functions here follow:
//! - Bytes and tables a plugin hands out were allocated by the plugin and are freed by the
//!   plugin (`free_bytes`, `free_tables`): host and plugin may use different allocators.
//! - The input array moves into the plugin (C Data Interface move semantics); its release
//!   callback belongs to the host, which stays loaded. Output arrays move into the host; their
//!   release callbacks point into the plugin, which is why the host never unloads a library.
//! - No panic unwinds across the boundary: each function body runs under `catch_unwind` and a
//!   panic comes back as an error naming the panic message.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::AtomicBool;

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi, to_ffi};
use arrow_array::types::{Float64Type, UInt32Type};
use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, StructArray, UInt32Array};
use serde::{Deserialize, Serialize};

use crate::grouped::{
    ConfidenceIntervals, GroupTable, GroupedBuilder, GroupedOutput, GroupedWarning, ScalarColumn,
};
use crate::{Input, Metric, MetricError, Params, Scalar, Warning};

/// `extern "C" fn() -> u32`: the ABI version the library implements. The host calls it before
/// touching anything else in the library.
pub const ABI_VERSION_SYMBOL: &str = "mittari_plugin_abi_version";
/// `extern "C" fn() -> *const PluginVTable`: the entry point, called once after the version check.
pub const ENTRY_SYMBOL: &str = "mittari_plugin_entry";

pub type AbiVersionFn = unsafe extern "C" fn() -> u32;
pub type EntryFn = unsafe extern "C" fn() -> *const PluginVTable;

/// The call succeeded; the out-parameters hold the result.
pub const STATUS_OK: u32 = 0;
/// The call failed; the `out` bytes hold a JSON-encoded [`MetricError`].
pub const STATUS_ERROR: u32 = 1;
/// The host passed a null out-pointer; nothing was written.
pub const STATUS_BAD_CALL: u32 = 2;

/// A byte buffer allocated by the plugin. The host reads it, then hands it back to
/// [`PluginVTable::free_bytes`].
#[repr(C)]
#[derive(Debug)]
pub struct OwnedBytes {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
}

impl OwnedBytes {
    pub const fn empty() -> Self {
        OwnedBytes {
            ptr: std::ptr::null_mut(),
            len: 0,
            cap: 0,
        }
    }

    fn from_vec(bytes: Vec<u8>) -> Self {
        let mut bytes = std::mem::ManuallyDrop::new(bytes);
        OwnedBytes {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len(),
            cap: bytes.capacity(),
        }
    }

    /// # Safety
    /// `self` must have been written by a plugin function and not yet freed.
    pub unsafe fn as_slice(&self) -> &[u8] {
        if self.ptr.is_null() {
            &[]
        } else {
            // SAFETY: the plugin wrote ptr/len from a live Vec<u8> that is freed only by free_bytes.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// One result table, as an Arrow C Data Interface struct array and its schema.
#[repr(C)]
#[derive(Debug)]
pub struct OwnedTable {
    pub array: FFI_ArrowArray,
    pub schema: FFI_ArrowSchema,
}

/// The result tables of one computation, allocated by the plugin. The host moves each array and
/// schema out (leaving released, empty structs behind), then hands the list back to
/// [`PluginVTable::free_tables`].
#[repr(C)]
#[derive(Debug)]
pub struct OwnedTables {
    pub ptr: *mut OwnedTable,
    pub len: usize,
    pub cap: usize,
}

impl OwnedTables {
    pub const fn empty() -> Self {
        OwnedTables {
            ptr: std::ptr::null_mut(),
            len: 0,
            cap: 0,
        }
    }
}

/// One table input of a computation (ABI version 4): its name (borrowed UTF-8 bytes) and its
/// columns as an Arrow C Data Interface struct array, which moves into the plugin (the host
/// leaves a released, empty struct behind), and its schema, borrowed.
#[repr(C)]
#[derive(Debug)]
pub struct InputTable {
    pub name: *const u8,
    pub name_len: usize,
    pub array: FFI_ArrowArray,
    pub schema: FFI_ArrowSchema,
}

/// The functions a plugin library provides. Returned by the entry point; lives as long as the
/// library is loaded.
#[repr(C)]
#[derive(Debug)]
pub struct PluginVTable {
    /// Equal to the value of the ABI-version symbol.
    pub abi_version: u32,
    /// How many metrics the library provides; they are addressed by index `0..count`.
    pub metric_count: unsafe extern "C" fn() -> usize,
    /// Writes metric `index`'s descriptor as JSON ([`crate::MetricDescriptor`]) into `out`.
    pub describe: unsafe extern "C" fn(index: usize, out: *mut OwnedBytes) -> u32,
    /// Computes metric `index`.
    /// - `params`/`params_len`: borrowed JSON ([`Params`]).
    /// - `input_array`/`input_schema`: a struct array whose fields are the input columns; the
    ///   array moves into the plugin, the schema stays borrowed.
    /// - `cancel`: a one-byte flag (C11 `atomic_bool`), valid for the call, that the host sets
    ///   from another thread when the client gives up; the plugin reads it with relaxed loads
    ///   between units of work and may return early with [`MetricError::Cancelled`]. Null means
    ///   never cancelled.
    /// - on [`STATUS_OK`]: `out_meta` holds JSON ([`ComputeMeta`]) and `out_tables` the tables
    ///   named in it, in order; on [`STATUS_ERROR`]: `out_meta` holds a JSON [`MetricError`].
    pub compute: unsafe extern "C" fn(
        index: usize,
        params: *const u8,
        params_len: usize,
        input_array: *mut FFI_ArrowArray,
        input_schema: *const FFI_ArrowSchema,
        cancel: *const AtomicBool,
        out_meta: *mut OwnedBytes,
        out_tables: *mut OwnedTables,
    ) -> u32,
    /// Frees bytes this library handed out.
    pub free_bytes: unsafe extern "C" fn(bytes: OwnedBytes),
    /// Frees a table list this library handed out, releasing any array still in it.
    pub free_tables: unsafe extern "C" fn(tables: OwnedTables),
    /// Computes metric `index` once per group, in one call (ABI version 3): a request with a
    /// million groups makes a few hundred calls rather than a million.
    /// - `params`, `input_array`, `input_schema`, `cancel`: as for `compute`; the input holds
    ///   the rows of every group.
    /// - `group_rows`/`group_rows_len`: row indices into the input, group after group;
    ///   `group_starts` has `groups + 1` offsets into them: group `g`'s rows are
    ///   `group_rows[group_starts[g]..group_starts[g + 1]]`. Both borrowed for the call.
    /// - on [`STATUS_OK`]: `out_meta` holds JSON ([`GroupedMeta`]) and `out_tables` the scalar
    ///   columns as one table (when the meta has any), then the result tables it names; on
    ///   [`STATUS_ERROR`]: a JSON [`MetricError`] whose row, if any, is a row of the input
    ///   (not of the group).
    pub compute_groups: unsafe extern "C" fn(
        index: usize,
        params: *const u8,
        params_len: usize,
        input_array: *mut FFI_ArrowArray,
        input_schema: *const FFI_ArrowSchema,
        group_rows: *const u32,
        group_rows_len: usize,
        group_starts: *const u64,
        groups: usize,
        cancel: *const AtomicBool,
        out_meta: *mut OwnedBytes,
        out_tables: *mut OwnedTables,
    ) -> u32,
    /// `compute` with the request's table inputs (ABI version 4): `tables`/`tables_len`, an
    /// array of [`InputTable`] borrowed for the call whose arrays move into the plugin. The
    /// host calls it only for a request that sent table inputs.
    pub compute_with_tables: unsafe extern "C" fn(
        index: usize,
        params: *const u8,
        params_len: usize,
        input_array: *mut FFI_ArrowArray,
        input_schema: *const FFI_ArrowSchema,
        tables: *mut InputTable,
        tables_len: usize,
        cancel: *const AtomicBool,
        out_meta: *mut OwnedBytes,
        out_tables: *mut OwnedTables,
    ) -> u32,
    /// `compute_groups` with the request's table inputs (ABI version 4), passed as to
    /// `compute_with_tables`; every group's computation sees the whole tables.
    pub compute_groups_with_tables: unsafe extern "C" fn(
        index: usize,
        params: *const u8,
        params_len: usize,
        input_array: *mut FFI_ArrowArray,
        input_schema: *const FFI_ArrowSchema,
        tables: *mut InputTable,
        tables_len: usize,
        group_rows: *const u32,
        group_rows_len: usize,
        group_starts: *const u64,
        groups: usize,
        cancel: *const AtomicBool,
        out_meta: *mut OwnedBytes,
        out_tables: *mut OwnedTables,
    ) -> u32,
    /// Fits metric `index` (ABI version 5) for a metric whose descriptor declares `fitting`.
    /// Arguments as for `compute`; on [`STATUS_OK`]: `out_state` holds the state to store
    /// (opaque bytes the plugin reads back in `score`), `out_meta` JSON ([`FitMeta`]) and
    /// `out_tables` the tables it names; on [`STATUS_ERROR`]: `out_meta` holds a JSON
    /// [`MetricError`] and `out_state` is empty.
    pub fit: unsafe extern "C" fn(
        index: usize,
        params: *const u8,
        params_len: usize,
        input_array: *mut FFI_ArrowArray,
        input_schema: *const FFI_ArrowSchema,
        cancel: *const AtomicBool,
        out_state: *mut OwnedBytes,
        out_meta: *mut OwnedBytes,
        out_tables: *mut OwnedTables,
    ) -> u32,
    /// Scores with a stored fit (ABI version 5): `state`/`state_len`, borrowed for the call,
    /// are bytes a `fit` of this metric returned (possibly by an older version of the
    /// plugin); the other arguments and the result as for `compute`. A state the plugin
    /// cannot read is an [`MetricError::IncompatibleState`].
    pub score: unsafe extern "C" fn(
        index: usize,
        state: *const u8,
        state_len: usize,
        params: *const u8,
        params_len: usize,
        input_array: *mut FFI_ArrowArray,
        input_schema: *const FFI_ArrowSchema,
        cancel: *const AtomicBool,
        out_meta: *mut OwnedBytes,
        out_tables: *mut OwnedTables,
    ) -> u32,
}

/// ABI version 4, which hosts still load: the vtable without fitted state, a prefix of
/// [`super::PluginVTable`].
pub mod v4 {
    use std::sync::atomic::AtomicBool;

    use super::{FFI_ArrowArray, FFI_ArrowSchema, InputTable, OwnedBytes, OwnedTables};

    /// `mittari_plugin_abi_version` of a version-4 library.
    pub const ABI_VERSION: u32 = 4;

    /// The vtable of a version-4 library: [`super::PluginVTable`] up to
    /// `compute_groups_with_tables`.
    #[repr(C)]
    #[derive(Debug)]
    #[allow(clippy::type_complexity)]
    pub struct PluginVTable {
        pub abi_version: u32,
        pub metric_count: unsafe extern "C" fn() -> usize,
        pub describe: unsafe extern "C" fn(index: usize, out: *mut OwnedBytes) -> u32,
        pub compute: unsafe extern "C" fn(
            index: usize,
            params: *const u8,
            params_len: usize,
            input_array: *mut FFI_ArrowArray,
            input_schema: *const FFI_ArrowSchema,
            cancel: *const AtomicBool,
            out_meta: *mut OwnedBytes,
            out_tables: *mut OwnedTables,
        ) -> u32,
        pub free_bytes: unsafe extern "C" fn(bytes: OwnedBytes),
        pub free_tables: unsafe extern "C" fn(tables: OwnedTables),
        pub compute_groups: unsafe extern "C" fn(
            index: usize,
            params: *const u8,
            params_len: usize,
            input_array: *mut FFI_ArrowArray,
            input_schema: *const FFI_ArrowSchema,
            group_rows: *const u32,
            group_rows_len: usize,
            group_starts: *const u64,
            groups: usize,
            cancel: *const AtomicBool,
            out_meta: *mut OwnedBytes,
            out_tables: *mut OwnedTables,
        ) -> u32,
        pub compute_with_tables: unsafe extern "C" fn(
            index: usize,
            params: *const u8,
            params_len: usize,
            input_array: *mut FFI_ArrowArray,
            input_schema: *const FFI_ArrowSchema,
            tables: *mut InputTable,
            tables_len: usize,
            cancel: *const AtomicBool,
            out_meta: *mut OwnedBytes,
            out_tables: *mut OwnedTables,
        ) -> u32,
        pub compute_groups_with_tables: unsafe extern "C" fn(
            index: usize,
            params: *const u8,
            params_len: usize,
            input_array: *mut FFI_ArrowArray,
            input_schema: *const FFI_ArrowSchema,
            tables: *mut InputTable,
            tables_len: usize,
            group_rows: *const u32,
            group_rows_len: usize,
            group_starts: *const u64,
            groups: usize,
            cancel: *const AtomicBool,
            out_meta: *mut OwnedBytes,
            out_tables: *mut OwnedTables,
        ) -> u32,
    }
}

/// ABI version 3, which hosts still load: the vtable without table inputs, a prefix of
/// [`super::PluginVTable`].
pub mod v3 {
    use std::sync::atomic::AtomicBool;

    use super::{FFI_ArrowArray, FFI_ArrowSchema, OwnedBytes, OwnedTables};

    /// `mittari_plugin_abi_version` of a version-3 library.
    pub const ABI_VERSION: u32 = 3;

    /// The vtable of a version-3 library: [`super::PluginVTable`] up to `compute_groups`.
    #[repr(C)]
    #[derive(Debug)]
    pub struct PluginVTable {
        pub abi_version: u32,
        pub metric_count: unsafe extern "C" fn() -> usize,
        pub describe: unsafe extern "C" fn(index: usize, out: *mut OwnedBytes) -> u32,
        pub compute: unsafe extern "C" fn(
            index: usize,
            params: *const u8,
            params_len: usize,
            input_array: *mut FFI_ArrowArray,
            input_schema: *const FFI_ArrowSchema,
            cancel: *const AtomicBool,
            out_meta: *mut OwnedBytes,
            out_tables: *mut OwnedTables,
        ) -> u32,
        pub free_bytes: unsafe extern "C" fn(bytes: OwnedBytes),
        pub free_tables: unsafe extern "C" fn(tables: OwnedTables),
        #[allow(clippy::type_complexity)]
        pub compute_groups: unsafe extern "C" fn(
            index: usize,
            params: *const u8,
            params_len: usize,
            input_array: *mut FFI_ArrowArray,
            input_schema: *const FFI_ArrowSchema,
            group_rows: *const u32,
            group_rows_len: usize,
            group_starts: *const u64,
            groups: usize,
            cancel: *const AtomicBool,
            out_meta: *mut OwnedBytes,
            out_tables: *mut OwnedTables,
        ) -> u32,
    }
}

/// ABI version 2, which hosts still load: the vtable without `compute_groups`. The host calls
/// such a plugin once per group.
pub mod v2 {
    use std::sync::atomic::AtomicBool;

    use super::{FFI_ArrowArray, FFI_ArrowSchema, OwnedBytes, OwnedTables};

    /// `mittari_plugin_abi_version` of a version-2 library.
    pub const ABI_VERSION: u32 = 2;

    /// The vtable of a version-2 library: [`super::PluginVTable`] up to `free_tables`.
    #[repr(C)]
    #[derive(Debug)]
    pub struct PluginVTable {
        pub abi_version: u32,
        pub metric_count: unsafe extern "C" fn() -> usize,
        pub describe: unsafe extern "C" fn(index: usize, out: *mut OwnedBytes) -> u32,
        pub compute: unsafe extern "C" fn(
            index: usize,
            params: *const u8,
            params_len: usize,
            input_array: *mut FFI_ArrowArray,
            input_schema: *const FFI_ArrowSchema,
            cancel: *const AtomicBool,
            out_meta: *mut OwnedBytes,
            out_tables: *mut OwnedTables,
        ) -> u32,
        pub free_bytes: unsafe extern "C" fn(bytes: OwnedBytes),
        pub free_tables: unsafe extern "C" fn(tables: OwnedTables),
    }
}

/// ABI version 1, which hosts still load: the same vtable but for a `compute` without the
/// cancellation flag. Such a plugin runs every computation to its end.
pub mod v1 {
    use super::{FFI_ArrowArray, FFI_ArrowSchema, OwnedBytes, OwnedTables};

    /// `mittari_plugin_abi_version` of a version-1 library.
    pub const ABI_VERSION: u32 = 1;

    /// The vtable of a version-1 library: [`super::PluginVTable`] with the old `compute`.
    #[repr(C)]
    #[derive(Debug)]
    pub struct PluginVTable {
        pub abi_version: u32,
        pub metric_count: unsafe extern "C" fn() -> usize,
        pub describe: unsafe extern "C" fn(index: usize, out: *mut OwnedBytes) -> u32,
        pub compute: unsafe extern "C" fn(
            index: usize,
            params: *const u8,
            params_len: usize,
            input_array: *mut FFI_ArrowArray,
            input_schema: *const FFI_ArrowSchema,
            out_meta: *mut OwnedBytes,
            out_tables: *mut OwnedTables,
        ) -> u32,
        pub free_bytes: unsafe extern "C" fn(bytes: OwnedBytes),
        pub free_tables: unsafe extern "C" fn(tables: OwnedTables),
    }
}

/// The non-table part of a computation's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputeMeta {
    pub scalars: Vec<Scalar>,
    pub warnings: Vec<Warning>,
    /// Names of the tables in `out_tables`, in the same order.
    pub table_names: Vec<String>,
}

/// The non-table part of a `fit` result: the fit's results as `compute` returns them, and
/// what the model was fitted on ([`crate::state::FittedModel::fingerprint`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitMeta {
    #[serde(flatten)]
    pub output: ComputeMeta,
    pub fingerprint: serde_json::Map<String, serde_json::Value>,
}

/// The non-table part of a `compute_groups` result. The scalar columns travel as one table of
/// float64 and uint32 columns, for each scalar column in order: its values; its `undefined`
/// entries, if `undefined`; and its interval `lower`, `upper` and `level`, if `intervals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupedMeta {
    pub groups: usize,
    pub columns: Vec<ColumnMeta>,
    pub warnings: Vec<GroupedWarning>,
    /// The group and name of each result table after the scalar table, in order.
    pub table_groups: Vec<u32>,
    pub table_names: Vec<String>,
}

/// One scalar column of a [`GroupedMeta`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnMeta {
    pub name: String,
    pub undefined_reasons: Vec<String>,
    pub undefined: bool,
    pub intervals: bool,
}

impl GroupedMeta {
    /// Splits grouped results into what crosses the boundary: the meta, the scalar table (when
    /// there are scalar columns) and the result tables.
    pub fn split(output: GroupedOutput) -> (GroupedMeta, Option<RecordBatch>, Vec<RecordBatch>) {
        let mut columns = Vec::with_capacity(output.scalars.len());
        let mut arrays: Vec<(String, ArrayRef)> = Vec::new();
        for (i, c) in output.scalars.into_iter().enumerate() {
            columns.push(ColumnMeta {
                name: c.name,
                undefined_reasons: c.undefined_reasons,
                undefined: !c.undefined.is_empty(),
                intervals: c.confidence_intervals.is_some(),
            });
            arrays.push((format!("{i}"), Arc::new(Float64Array::from(c.values))));
            if !c.undefined.is_empty() {
                arrays.push((
                    format!("{i}.undefined"),
                    Arc::new(UInt32Array::from(c.undefined)),
                ));
            }
            if let Some(ci) = c.confidence_intervals {
                for (bound, values) in [
                    ("lower", ci.lower),
                    ("upper", ci.upper),
                    ("level", ci.level),
                ] {
                    arrays.push((format!("{i}.{bound}"), Arc::new(Float64Array::from(values))));
                }
            }
        }
        let scalars = if arrays.is_empty() {
            None
        } else {
            // Columns of equal length, of names made unique above: cannot fail.
            RecordBatch::try_from_iter(arrays).ok()
        };
        let (table_groups, (table_names, tables)): (Vec<u32>, (Vec<String>, Vec<RecordBatch>)) =
            output
                .tables
                .into_iter()
                .map(|t| (t.group, (t.name, t.table)))
                .unzip();
        let meta = GroupedMeta {
            groups: output.groups,
            columns,
            warnings: output.warnings,
            table_groups,
            table_names,
        };
        (meta, scalars, tables)
    }

    /// Joins what [`GroupedMeta::split`] split, checking the shapes the meta promises.
    pub fn join(self, mut tables: Vec<RecordBatch>) -> Result<GroupedOutput, MetricError> {
        let bad = |what: String| MetricError::failed(format!("malformed grouped result: {what}"));
        let expected = usize::from(!self.columns.is_empty()) + self.table_names.len();
        if tables.len() != expected || self.table_groups.len() != self.table_names.len() {
            return Err(bad(format!(
                "{} tables for {} scalar columns and {} result tables",
                tables.len(),
                self.columns.len(),
                self.table_names.len()
            )));
        }
        let result_tables = tables.split_off(usize::from(!self.columns.is_empty()));
        let mut arrays = tables
            .first()
            .map(|t| t.columns().to_vec())
            .unwrap_or_default()
            .into_iter();
        let groups = self.groups;
        let next_f64 = |arrays: &mut std::vec::IntoIter<ArrayRef>,
                        what: &str|
         -> Result<Vec<f64>, MetricError> {
            let array = arrays
                .next()
                .ok_or_else(|| bad(format!("no {what} column")))?;
            let values = array
                .as_primitive_opt::<Float64Type>()
                .filter(|a| a.len() == groups && a.null_count() == 0)
                .ok_or_else(|| bad(format!("{what} is not {groups} float64 values")))?;
            Ok(values.values().to_vec())
        };
        let mut scalars = Vec::with_capacity(self.columns.len());
        for column in self.columns {
            let values = next_f64(&mut arrays, &column.name)?;
            let undefined = if column.undefined {
                let array = arrays
                    .next()
                    .ok_or_else(|| bad("no undefined column".into()))?;
                let undefined = array
                    .as_primitive_opt::<UInt32Type>()
                    .filter(|a| a.len() == self.groups && a.null_count() == 0)
                    .ok_or_else(|| bad(format!("undefined of {} is malformed", column.name)))?;
                if undefined
                    .values()
                    .iter()
                    .any(|&r| r as usize > column.undefined_reasons.len())
                {
                    return Err(bad(format!("undefined of {} names no reason", column.name)));
                }
                undefined.values().to_vec()
            } else {
                Vec::new()
            };
            let confidence_intervals = if column.intervals {
                Some(ConfidenceIntervals {
                    lower: next_f64(&mut arrays, "lower")?,
                    upper: next_f64(&mut arrays, "upper")?,
                    level: next_f64(&mut arrays, "level")?,
                })
            } else {
                None
            };
            scalars.push(ScalarColumn {
                name: column.name,
                unit: String::new(),
                values,
                undefined,
                undefined_reasons: column.undefined_reasons,
                confidence_intervals,
            });
        }
        if self
            .warnings
            .iter()
            .flat_map(|w| &w.groups)
            .chain(&self.table_groups)
            .any(|&g| g as usize >= self.groups)
        {
            return Err(bad("a warning or table names a group out of range".into()));
        }
        let tables = self
            .table_groups
            .into_iter()
            .zip(self.table_names)
            .zip(result_tables)
            .map(|((group, name), table)| GroupTable { group, name, table })
            .collect();
        Ok(GroupedOutput {
            groups: self.groups,
            scalars,
            warnings: self.warnings,
            tables,
        })
    }
}

/// The set of metrics a library provides; implemented by [`crate::export_plugin!`].
pub trait PluginMetrics: 'static {
    fn metrics() -> &'static [Box<dyn Metric>];
    /// Metric `index`'s name and version, as its descriptor gives them: what a fitted state
    /// is stamped with. [`crate::export_plugin!`] keeps them after the first call (a
    /// descriptor takes microseconds to build, and scoring one customer not many more).
    fn identity(index: usize) -> Option<(String, String)> {
        Self::metrics().get(index).map(|m| {
            let d = m.descriptor();
            (d.name, d.version)
        })
    }
}

/// The vtable for a plugin's metric set; used by [`crate::export_plugin!`].
pub const fn vtable<P: PluginMetrics>() -> PluginVTable {
    PluginVTable {
        abi_version: crate::ABI_VERSION,
        metric_count: metric_count::<P>,
        describe: describe::<P>,
        compute: compute::<P>,
        free_bytes,
        free_tables,
        compute_groups: compute_groups::<P>,
        compute_with_tables: compute_with_tables::<P>,
        compute_groups_with_tables: compute_groups_with_tables::<P>,
        fit: fit::<P>,
        score: score::<P>,
    }
}

/// The message of a caught panic, for the error the host reports.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

thread_local! {
    /// Where the last panic on this thread happened, recorded by the plugin's panic hook.
    static PANIC_LOCATION: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Replaces the plugin's panic hook (its own, as a cdylib has its own standard library) with
/// one that prints nothing and records where the panic happened. Every panic in a plugin
/// function is caught and becomes an error naming its message and location, which the host
/// logs as a structured record; the default hook would write raw lines to standard error,
/// past `--log-format json`. Called by the entry point that [`crate::export_plugin!`]
/// generates.
pub fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            PANIC_LOCATION.with(|slot| *slot.borrow_mut() = location);
        }));
    });
}

/// Runs `body`, turning a panic into a `Failed` error with the panic's message and location.
fn guarded<T>(body: impl FnOnce() -> Result<T, MetricError>) -> Result<T, MetricError> {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        let location = PANIC_LOCATION
            .with(|slot| slot.borrow_mut().take())
            .map(|l| format!(" at {l}"))
            .unwrap_or_default();
        Err(MetricError::failed(format!(
            "the plugin panicked{location}: {}",
            panic_message(payload.as_ref())
        )))
    })
}

fn metric<P: PluginMetrics>(index: usize) -> Result<&'static dyn Metric, MetricError> {
    P::metrics()
        .get(index)
        .map(|m| m.as_ref())
        .ok_or_else(|| MetricError::failed(format!("no metric at index {index}")))
}

/// Writes a JSON payload into `out` and returns the status for it.
///
/// # Safety
/// `out` must be null or valid for writes.
unsafe fn write_json(out: *mut OwnedBytes, result: Result<Vec<u8>, MetricError>) -> u32 {
    if out.is_null() {
        return STATUS_BAD_CALL;
    }
    let (status, bytes) = match result {
        Ok(bytes) => (STATUS_OK, bytes),
        Err(error) => (
            STATUS_ERROR,
            // Serializing a MetricError (strings and integers) cannot fail; an empty buffer
            // tells the host the error was lost rather than aborting here.
            serde_json::to_vec(&error).unwrap_or_default(),
        ),
    };
    // SAFETY: checked non-null; the caller guarantees it is valid for writes.
    unsafe { out.write(OwnedBytes::from_vec(bytes)) };
    status
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, MetricError> {
    serde_json::to_vec(value).map_err(|e| MetricError::failed(format!("cannot encode json: {e}")))
}

/// JSON has no NaN or infinity (serde_json writes them as null, which would read back as
/// "undefined"), so a non-finite scalar is refused here, where the bug can still be named.
fn check_finite(scalars: &[Scalar]) -> Result<(), MetricError> {
    for scalar in scalars {
        let interval = scalar
            .confidence_interval
            .is_none_or(|ci| ci.lower.is_finite() && ci.upper.is_finite() && ci.level.is_finite());
        if !scalar.value.is_none_or(f64::is_finite) || !interval {
            return Err(MetricError::failed(format!(
                "the metric returned a non-finite value for {}; return Scalar::undefined with a reason instead",
                scalar.name
            )));
        }
    }
    Ok(())
}

unsafe extern "C" fn metric_count<P: PluginMetrics>() -> usize {
    // A panic while building the metric list means the library provides none.
    catch_unwind(|| P::metrics().len()).unwrap_or(0)
}

unsafe extern "C" fn describe<P: PluginMetrics>(index: usize, out: *mut OwnedBytes) -> u32 {
    let result = guarded(|| to_json(&metric::<P>(index)?.descriptor()));
    // SAFETY: the host passes a valid out-pointer (or null, which write_json refuses).
    unsafe { write_json(out, result) }
}

/// Decodes the host's parameter JSON; null means none.
///
/// # Safety
/// `params..params + len` must be a live byte slice for the call (or `params` null).
unsafe fn decode_params(params: *const u8, len: usize) -> Result<Params, MetricError> {
    if params.is_null() {
        return Ok(Params::new());
    }
    // SAFETY: the host guarantees params..params+len is a live byte slice for the call.
    let bytes = unsafe { std::slice::from_raw_parts(params, len) };
    serde_json::from_slice(bytes)
        .map_err(|e| MetricError::failed(format!("cannot decode parameters: {e}")))
}

/// Imports the host's input table (already moved out of the host's struct).
///
/// # Safety
/// `schema` must be null or the schema of `array`, valid for the call.
unsafe fn import_input(
    array: Option<FFI_ArrowArray>,
    schema: *const FFI_ArrowSchema,
) -> Result<RecordBatch, MetricError> {
    let (Some(array), false) = (array, schema.is_null()) else {
        return Err(MetricError::failed("the host passed no input table"));
    };
    // SAFETY: array and schema come from the host's to_ffi of one struct array.
    let data = unsafe { from_ffi(array, &*schema) }
        .map_err(|e| MetricError::failed(format!("cannot import the input table: {e}")))?;
    Ok(RecordBatch::from(StructArray::from(data)))
}

fn export_tables(
    tables: impl IntoIterator<Item = (String, RecordBatch)>,
) -> Result<Vec<OwnedTable>, MetricError> {
    tables
        .into_iter()
        .map(|(name, table)| {
            let data = StructArray::from(table).into_data();
            let (array, schema) = to_ffi(&data).map_err(|e| {
                MetricError::failed(format!("cannot export result table {name}: {e}"))
            })?;
            Ok(OwnedTable { array, schema })
        })
        .collect()
}

/// Writes a computation's result into the out-parameters and returns its status.
///
/// # Safety
/// Both pointers must be non-null and valid for writes.
unsafe fn write_result(
    result: Result<(Vec<u8>, Vec<OwnedTable>), MetricError>,
    out_meta: *mut OwnedBytes,
    out_tables: *mut OwnedTables,
) -> u32 {
    let meta = match result {
        Ok((meta, tables)) => {
            let mut tables = std::mem::ManuallyDrop::new(tables);
            // SAFETY: the caller guarantees validity for writes.
            unsafe {
                out_tables.write(OwnedTables {
                    ptr: tables.as_mut_ptr(),
                    len: tables.len(),
                    cap: tables.capacity(),
                });
            }
            Ok(meta)
        }
        Err(error) => {
            // SAFETY: as above.
            unsafe { out_tables.write(OwnedTables::empty()) };
            Err(error)
        }
    };
    // SAFETY: as above.
    unsafe { write_json(out_meta, meta) }
}

/// The table inputs the host passed, each array moved out of the host's list. Every array is
/// taken before any can fail, so each is released exactly once.
///
/// # Safety
/// `tables` must be null (with `len` 0) or point to `len` initialized [`InputTable`]s, live
/// for the call, whose arrays move to the plugin and whose names are live UTF-8 slices.
unsafe fn take_tables(
    tables: *mut InputTable,
    len: usize,
) -> Vec<(*const u8, usize, FFI_ArrowArray, *const FFI_ArrowSchema)> {
    if tables.is_null() {
        return Vec::new();
    }
    (0..len)
        .map(|i| {
            // SAFETY: the caller guarantees `len` live tables; the array moves to us, leaving
            // a released struct behind as the C Data Interface's move semantics prescribe.
            let table = unsafe { &mut *tables.add(i) };
            let array = std::mem::replace(&mut table.array, FFI_ArrowArray::empty());
            (table.name, table.name_len, array, &raw const table.schema)
        })
        .collect()
}

/// Imports the tables [`take_tables`] took.
///
/// # Safety
/// As for [`take_tables`]: names and schemas live for the call.
unsafe fn import_tables(
    tables: Vec<(*const u8, usize, FFI_ArrowArray, *const FFI_ArrowSchema)>,
) -> Result<Vec<(String, RecordBatch)>, MetricError> {
    tables
        .into_iter()
        .map(|(name, name_len, array, schema)| {
            let name = if name.is_null() {
                ""
            } else {
                // SAFETY: the host passes a live name slice for the call.
                std::str::from_utf8(unsafe { std::slice::from_raw_parts(name, name_len) })
                    .map_err(|_| MetricError::failed("a table input's name is not UTF-8"))?
            };
            // SAFETY: array and schema come from the host's to_ffi of one struct array.
            let table = unsafe { import_input(Some(array), schema) }.map_err(|e| {
                MetricError::failed(format!("cannot import table input {name}: {e}"))
            })?;
            Ok((name.to_owned(), table))
        })
        .collect()
}

unsafe extern "C" fn compute<P: PluginMetrics>(
    index: usize,
    params: *const u8,
    params_len: usize,
    input_array: *mut FFI_ArrowArray,
    input_schema: *const FFI_ArrowSchema,
    cancel: *const AtomicBool,
    out_meta: *mut OwnedBytes,
    out_tables: *mut OwnedTables,
) -> u32 {
    // SAFETY: passed through from the host, which upholds compute_with_tables' contract.
    unsafe {
        compute_with_tables::<P>(
            index,
            params,
            params_len,
            input_array,
            input_schema,
            std::ptr::null_mut(),
            0,
            cancel,
            out_meta,
            out_tables,
        )
    }
}

#[allow(clippy::too_many_arguments)] // the C ABI's signature
unsafe extern "C" fn compute_with_tables<P: PluginMetrics>(
    index: usize,
    params: *const u8,
    params_len: usize,
    input_array: *mut FFI_ArrowArray,
    input_schema: *const FFI_ArrowSchema,
    tables: *mut InputTable,
    tables_len: usize,
    cancel: *const AtomicBool,
    out_meta: *mut OwnedBytes,
    out_tables: *mut OwnedTables,
) -> u32 {
    // Take ownership of the inputs before anything can fail, so each is released exactly once.
    // SAFETY: the host passes a valid, initialized array that moves to us, or null.
    let array = unsafe { take_input(input_array) };
    // SAFETY: the host passes `tables_len` live tables (or null).
    let taken = unsafe { take_tables(tables, tables_len) };
    if out_meta.is_null() || out_tables.is_null() {
        return STATUS_BAD_CALL;
    }
    let result = guarded(|| {
        let metric = metric::<P>(index)?;
        // SAFETY: the host passes a live parameter slice and the input's schema.
        let params = unsafe { decode_params(params, params_len) }?;
        let batch = unsafe { import_input(array, input_schema) }?;
        // SAFETY: names and schemas live for the call.
        let tables = unsafe { import_tables(taken) }?;
        // SAFETY: the host keeps the flag alive for the call; null means never cancelled.
        let input = match unsafe { cancel.as_ref() } {
            Some(cancel) => Input::cancellable(&batch, cancel),
            None => Input::new(&batch),
        }
        .with_tables(&tables);
        let (meta, tables) = encode_output(metric.compute(&input, &params)?)?;
        Ok((to_json(&meta)?, tables))
    });
    // SAFETY: checked non-null above; the host guarantees validity for writes.
    unsafe { write_result(result, out_meta, out_tables) }
}

/// Takes the host's input array (before anything can fail, so it is released exactly once).
///
/// # Safety
/// `input_array` must be null or a valid, initialized array that moves to the plugin.
unsafe fn take_input(input_array: *mut FFI_ArrowArray) -> Option<FFI_ArrowArray> {
    // SAFETY: the caller passes a valid, initialized array that moves to us.
    (!input_array.is_null()).then(|| unsafe { FFI_ArrowArray::from_raw(input_array) })
}

fn identity<P: PluginMetrics>(index: usize) -> Result<(String, String), MetricError> {
    P::identity(index).ok_or_else(|| MetricError::failed(format!("no metric at index {index}")))
}

/// The encoded output and tables of a computation, as `compute` and `score` return them.
fn encode_output(output: crate::Output) -> Result<(ComputeMeta, Vec<OwnedTable>), MetricError> {
    check_finite(&output.scalars)?;
    let (table_names, tables): (Vec<String>, Vec<RecordBatch>) = output.tables.into_iter().unzip();
    let tables = export_tables(table_names.iter().cloned().zip(tables))?;
    Ok((
        ComputeMeta {
            scalars: output.scalars,
            warnings: output.warnings,
            table_names,
        },
        tables,
    ))
}

#[allow(clippy::too_many_arguments)] // the C ABI's signature
unsafe extern "C" fn fit<P: PluginMetrics>(
    index: usize,
    params: *const u8,
    params_len: usize,
    input_array: *mut FFI_ArrowArray,
    input_schema: *const FFI_ArrowSchema,
    cancel: *const AtomicBool,
    out_state: *mut OwnedBytes,
    out_meta: *mut OwnedBytes,
    out_tables: *mut OwnedTables,
) -> u32 {
    // SAFETY: the host passes a valid array that moves to us, or null.
    let array = unsafe { take_input(input_array) };
    if out_state.is_null() || out_meta.is_null() || out_tables.is_null() {
        return STATUS_BAD_CALL;
    }
    let result = guarded(|| {
        let metric = metric::<P>(index)?;
        let (name, version) = identity::<P>(index)?;
        // SAFETY: the host passes a live parameter slice and the input's schema.
        let params = unsafe { decode_params(params, params_len) }?;
        let batch = unsafe { import_input(array, input_schema) }?;
        // SAFETY: the host keeps the flag alive for the call; null means never cancelled.
        let input = match unsafe { cancel.as_ref() } {
            Some(cancel) => Input::cancellable(&batch, cancel),
            None => Input::new(&batch),
        };
        let fitted = metric.fit(&input, &params)?;
        let state = crate::state::Envelope::wrap(&name, &version, fitted.format, &fitted.state)?;
        let (output, tables) = encode_output(fitted.output)?;
        let meta = to_json(&FitMeta {
            output,
            fingerprint: fitted.fingerprint,
        })?;
        Ok((state, meta, tables))
    });
    let (state, result) = match result {
        Ok((state, meta, tables)) => (state, Ok((meta, tables))),
        Err(error) => (Vec::new(), Err(error)),
    };
    // SAFETY: checked non-null above; the host guarantees validity for writes.
    unsafe {
        out_state.write(OwnedBytes::from_vec(state));
        write_result(result, out_meta, out_tables)
    }
}

#[allow(clippy::too_many_arguments)] // the C ABI's signature
unsafe extern "C" fn score<P: PluginMetrics>(
    index: usize,
    state: *const u8,
    state_len: usize,
    params: *const u8,
    params_len: usize,
    input_array: *mut FFI_ArrowArray,
    input_schema: *const FFI_ArrowSchema,
    cancel: *const AtomicBool,
    out_meta: *mut OwnedBytes,
    out_tables: *mut OwnedTables,
) -> u32 {
    // SAFETY: the host passes a valid array that moves to us, or null.
    let array = unsafe { take_input(input_array) };
    if out_meta.is_null() || out_tables.is_null() {
        return STATUS_BAD_CALL;
    }
    let result = guarded(|| {
        let metric = metric::<P>(index)?;
        let (name, version) = identity::<P>(index)?;
        if state.is_null() {
            return Err(MetricError::failed("the host passed no state"));
        }
        // SAFETY: the host passes a live state slice for the call.
        let bytes = unsafe { std::slice::from_raw_parts(state, state_len) };
        let (envelope, reader_version) = crate::state::Envelope::open(bytes, &name, &version)?;
        let stored = crate::state::StoredState {
            metric: &envelope.metric,
            metric_version: &envelope.metric_version,
            format: envelope.format,
            reader_version,
            bytes: envelope.state.get().as_bytes(),
        };
        // SAFETY: the host passes a live parameter slice and the input's schema.
        let params = unsafe { decode_params(params, params_len) }?;
        let batch = unsafe { import_input(array, input_schema) }?;
        // SAFETY: the host keeps the flag alive for the call; null means never cancelled.
        let input = match unsafe { cancel.as_ref() } {
            Some(cancel) => Input::cancellable(&batch, cancel),
            None => Input::new(&batch),
        };
        let (meta, tables) = encode_output(metric.score(&stored, &input, &params)?)?;
        Ok((to_json(&meta)?, tables))
    });
    // SAFETY: checked non-null above; the host guarantees validity for writes.
    unsafe { write_result(result, out_meta, out_tables) }
}

/// A group's error with its row translated from the group's table to the input's.
fn in_input_rows(error: MetricError, group_rows: &[u32]) -> MetricError {
    match error {
        MetricError::InvalidInput {
            column,
            row: Some(row),
            message,
        } => MetricError::InvalidInput {
            column,
            row: Some(
                group_rows
                    .get(row as usize)
                    .map_or(row, |&input_row| u64::from(input_row)),
            ),
            message,
        },
        other => other,
    }
}

#[allow(clippy::too_many_arguments)] // the C ABI's signature
unsafe extern "C" fn compute_groups<P: PluginMetrics>(
    index: usize,
    params: *const u8,
    params_len: usize,
    input_array: *mut FFI_ArrowArray,
    input_schema: *const FFI_ArrowSchema,
    group_rows: *const u32,
    group_rows_len: usize,
    group_starts: *const u64,
    groups: usize,
    cancel: *const AtomicBool,
    out_meta: *mut OwnedBytes,
    out_tables: *mut OwnedTables,
) -> u32 {
    // SAFETY: passed through from the host, which upholds the contract of
    // compute_groups_with_tables.
    unsafe {
        compute_groups_with_tables::<P>(
            index,
            params,
            params_len,
            input_array,
            input_schema,
            std::ptr::null_mut(),
            0,
            group_rows,
            group_rows_len,
            group_starts,
            groups,
            cancel,
            out_meta,
            out_tables,
        )
    }
}

#[allow(clippy::too_many_arguments)] // the C ABI's signature
unsafe extern "C" fn compute_groups_with_tables<P: PluginMetrics>(
    index: usize,
    params: *const u8,
    params_len: usize,
    input_array: *mut FFI_ArrowArray,
    input_schema: *const FFI_ArrowSchema,
    tables: *mut InputTable,
    tables_len: usize,
    group_rows: *const u32,
    group_rows_len: usize,
    group_starts: *const u64,
    groups: usize,
    cancel: *const AtomicBool,
    out_meta: *mut OwnedBytes,
    out_tables: *mut OwnedTables,
) -> u32 {
    // Take ownership of the inputs before anything can fail, so each is released exactly once.
    // SAFETY: the host passes a valid, initialized array that moves to us, or null.
    let array = unsafe { take_input(input_array) };
    // SAFETY: the host passes `tables_len` live tables (or null).
    let taken = unsafe { take_tables(tables, tables_len) };
    if out_meta.is_null() || out_tables.is_null() {
        return STATUS_BAD_CALL;
    }
    let result = guarded(|| {
        let metric = metric::<P>(index)?;
        // SAFETY: the host passes a live parameter slice and the input's schema.
        let params = unsafe { decode_params(params, params_len) }?;
        let batch = unsafe { import_input(array, input_schema) }?;
        // SAFETY: names and schemas live for the call.
        let tables = unsafe { import_tables(taken) }?;
        if group_starts.is_null() || (group_rows.is_null() && group_rows_len > 0) {
            return Err(MetricError::failed("the host passed no groups"));
        }
        // SAFETY: the host passes `groups + 1` offsets and `group_rows_len` row indices, live
        // for the call; a null `group_rows` only with no rows.
        let starts = unsafe { std::slice::from_raw_parts(group_starts, groups + 1) };
        let rows: &[u32] = if group_rows.is_null() {
            &[]
        } else {
            unsafe { std::slice::from_raw_parts(group_rows, group_rows_len) }
        };
        // SAFETY: the host keeps the flag alive for the call; null means never cancelled.
        let cancel = unsafe { cancel.as_ref() };
        let mut builder = GroupedBuilder::new();
        for group in 0..groups {
            if cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed)) {
                return Err(MetricError::Cancelled);
            }
            let group_rows = usize::try_from(starts[group])
                .ok()
                .zip(usize::try_from(starts[group + 1]).ok())
                .and_then(|(start, end)| rows.get(start..end))
                .ok_or_else(|| {
                    MetricError::failed(format!(
                        "the host passed group {group}'s rows out of range"
                    ))
                })?;
            let indices = UInt32Array::from(group_rows.to_vec());
            let group_batch =
                arrow_select::take::take_record_batch(&batch, &indices).map_err(|e| {
                    MetricError::failed(format!("cannot select group {group}'s rows: {e}"))
                })?;
            let input = match cancel {
                Some(cancel) => Input::cancellable(&group_batch, cancel),
                None => Input::new(&group_batch),
            }
            .with_tables(&tables);
            let output = metric
                .compute(&input, &params)
                .map_err(|e| in_input_rows(e, group_rows))?;
            check_finite(&output.scalars)?;
            builder.push(output).map_err(MetricError::failed)?;
        }
        let (meta, scalars, tables) = GroupedMeta::split(builder.finish());
        let tables = export_tables(
            scalars
                .map(|t| ("scalars".to_owned(), t))
                .into_iter()
                .chain(meta.table_names.iter().cloned().zip(tables)),
        )?;
        Ok((to_json(&meta)?, tables))
    });
    // SAFETY: checked non-null above; the host guarantees validity for writes.
    unsafe { write_result(result, out_meta, out_tables) }
}

unsafe extern "C" fn free_bytes(bytes: OwnedBytes) {
    if !bytes.ptr.is_null() {
        // SAFETY: ptr/len/cap came from a Vec<u8> this library leaked in OwnedBytes::from_vec.
        let _ =
            catch_unwind(|| drop(unsafe { Vec::from_raw_parts(bytes.ptr, bytes.len, bytes.cap) }));
    }
}

unsafe extern "C" fn free_tables(tables: OwnedTables) {
    if !tables.ptr.is_null() {
        let tables = AssertUnwindSafe(tables);
        // SAFETY: ptr/len/cap came from a Vec<OwnedTable> this library leaked in compute;
        // dropping it releases any array the host did not move out.
        let _ = catch_unwind(move || {
            let tables = tables;
            drop(unsafe { Vec::from_raw_parts(tables.ptr, tables.len, tables.cap) })
        });
    }
}

/// Exports metrics from a plugin library: generates the ABI-version symbol and the entry
/// point. Invoke it once, at the crate root of a `cdylib`, with an expression per metric:
///
/// ```ignore
/// mittari_sdk::export_plugin!(Nps, Csat::default());
/// ```
///
/// Each expression is evaluated once, on first use, and must implement [`crate::Metric`].
#[macro_export]
macro_rules! export_plugin {
    ($($metric:expr),+ $(,)?) => {
        #[doc(hidden)]
        struct __MittariPluginMetrics;

        impl $crate::abi::PluginMetrics for __MittariPluginMetrics {
            fn metrics() -> &'static [::std::boxed::Box<dyn $crate::Metric>] {
                static METRICS: ::std::sync::OnceLock<
                    ::std::vec::Vec<::std::boxed::Box<dyn $crate::Metric>>,
                > = ::std::sync::OnceLock::new();
                METRICS.get_or_init(|| {
                    ::std::vec![$(::std::boxed::Box::new($metric) as ::std::boxed::Box<dyn $crate::Metric>),+]
                })
            }
            fn identity(index: usize) -> ::std::option::Option<(::std::string::String, ::std::string::String)> {
                static IDENTITIES: ::std::sync::OnceLock<
                    ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                > = ::std::sync::OnceLock::new();
                IDENTITIES
                    .get_or_init(|| {
                        Self::metrics()
                            .iter()
                            .map(|m| {
                                let d = m.descriptor();
                                (d.name, d.version)
                            })
                            .collect()
                    })
                    .get(index)
                    .cloned()
            }
        }

        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn mittari_plugin_abi_version() -> u32 {
            $crate::ABI_VERSION
        }

        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn mittari_plugin_entry() -> *const $crate::abi::PluginVTable {
            static VTABLE: $crate::abi::PluginVTable =
                $crate::abi::vtable::<__MittariPluginMetrics>();
            $crate::abi::install_panic_hook();
            &VTABLE
        }
    };
}
