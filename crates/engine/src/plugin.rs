//! Loading plugin libraries and calling through their C ABI. All of the engine's `unsafe`
//! lives here.

use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi, to_ffi};
use arrow_array::{Array, RecordBatch, StructArray};
use mittari_sdk::abi::{
    self, ABI_VERSION_SYMBOL, AbiVersionFn, ComputeMeta, ENTRY_SYMBOL, EntryFn, FitMeta,
    GroupedMeta, InputTable, OwnedBytes, OwnedTables, PluginVTable, STATUS_ERROR, STATUS_OK,
};
use mittari_sdk::grouped::GroupedOutput;
use mittari_sdk::{ABI_VERSION, MetricDescriptor, MetricError, Output};

use crate::staging::Staged;

/// What a fit says it was fitted on ([`mittari_sdk::state::FittedModel::fingerprint`]).
pub(crate) type Fingerprint = serde_json::Map<String, serde_json::Value>;

/// A metric's descriptor, or why it could not be read.
pub(crate) type DescribeResult = Result<MetricDescriptor, String>;

/// A loaded plugin library.
///
/// The library is never unloaded (`ManuallyDrop`): arrays a plugin returns carry release
/// callbacks into its code and may outlive any handle the engine keeps, and Rust cdylibs do
/// not reliably support `dlclose` (thread-local destructors). Every [`PluginMetric`] also holds
/// an `Arc` to its library, so the ownership is visible in the types.
#[derive(Debug)]
pub(crate) struct PluginLibrary {
    /// The admin's file.
    path: PathBuf,
    /// SHA-256 of the contents loaded.
    sha256: String,
    vtable: VTable,
    _library: ManuallyDrop<libloading::Library>,
}

/// The vtable of a library, by its ABI version. Every version has the functions of the one
/// before at the same offsets; version 2 added the cancellation flag to `compute`, version 3
/// added `compute_groups`, version 4 the `_with_tables` forms taking table inputs, version 5
/// `fit` and `score`.
#[derive(Debug, Clone, Copy)]
enum VTable {
    V1(&'static abi::v1::PluginVTable),
    V2(&'static abi::v2::PluginVTable),
    V3(&'static abi::v3::PluginVTable),
    V4(&'static abi::v4::PluginVTable),
    V5(&'static PluginVTable),
}

impl VTable {
    fn abi_version(self) -> u32 {
        match self {
            VTable::V1(v) => v.abi_version,
            VTable::V2(v) => v.abi_version,
            VTable::V3(v) => v.abi_version,
            VTable::V4(v) => v.abi_version,
            VTable::V5(v) => v.abi_version,
        }
    }
    fn metric_count(self) -> unsafe extern "C" fn() -> usize {
        match self {
            VTable::V1(v) => v.metric_count,
            VTable::V2(v) => v.metric_count,
            VTable::V3(v) => v.metric_count,
            VTable::V4(v) => v.metric_count,
            VTable::V5(v) => v.metric_count,
        }
    }
    fn describe(self) -> unsafe extern "C" fn(usize, *mut OwnedBytes) -> u32 {
        match self {
            VTable::V1(v) => v.describe,
            VTable::V2(v) => v.describe,
            VTable::V3(v) => v.describe,
            VTable::V4(v) => v.describe,
            VTable::V5(v) => v.describe,
        }
    }
    fn free_bytes(self) -> unsafe extern "C" fn(OwnedBytes) {
        match self {
            VTable::V1(v) => v.free_bytes,
            VTable::V2(v) => v.free_bytes,
            VTable::V3(v) => v.free_bytes,
            VTable::V4(v) => v.free_bytes,
            VTable::V5(v) => v.free_bytes,
        }
    }
    fn free_tables(self) -> unsafe extern "C" fn(OwnedTables) {
        match self {
            VTable::V1(v) => v.free_tables,
            VTable::V2(v) => v.free_tables,
            VTable::V3(v) => v.free_tables,
            VTable::V4(v) => v.free_tables,
            VTable::V5(v) => v.free_tables,
        }
    }
}

impl PluginLibrary {
    /// Loads the library at `path`, checks it is a Mittari plugin of this ABI version and
    /// returns it with the descriptors of its metrics (a metric whose descriptor cannot be
    /// read is returned as an error message instead).
    pub(crate) fn load(
        path: &Path,
        staged: &Staged,
    ) -> Result<(Arc<PluginLibrary>, Vec<DescribeResult>), String> {
        // SAFETY: loading runs the library's initializers. The engine only loads files the
        // admin named or that follow the plugin naming convention in the plugin directory,
        // from the private copy `staging` checked (complete, of this platform's format).
        let library = unsafe { libloading::Library::new(&staged.path) }
            .map_err(|e| format!("cannot load the library: {e}"))?;
        // SAFETY: the symbol, if present, has the documented signature of the ABI.
        let version_fn = unsafe { library.get::<AbiVersionFn>(ABI_VERSION_SYMBOL.as_bytes()) }
            .map_err(|_| {
                format!("not a mittari plugin: it does not export {ABI_VERSION_SYMBOL}")
            })?;
        // SAFETY: as above; the function takes no arguments and returns a u32.
        let version = unsafe { version_fn() };
        if ![
            abi::v1::ABI_VERSION,
            abi::v2::ABI_VERSION,
            abi::v3::ABI_VERSION,
            abi::v4::ABI_VERSION,
            ABI_VERSION,
        ]
        .contains(&version)
        {
            return Err(format!(
                "plugin ABI version {version} is not one this server loads ({}, {}, {}, {}, {ABI_VERSION}); rebuild the plugin against this server's mittari-sdk",
                abi::v1::ABI_VERSION,
                abi::v2::ABI_VERSION,
                abi::v3::ABI_VERSION,
                abi::v4::ABI_VERSION,
            ));
        }
        // SAFETY: a library with the right ABI version exports the entry point with this signature.
        let entry = unsafe { library.get::<EntryFn>(ENTRY_SYMBOL.as_bytes()) }
            .map_err(|_| format!("the plugin does not export {ENTRY_SYMBOL}"))?;
        // SAFETY: the entry point returns a pointer to a static vtable, or null.
        let vtable = unsafe { entry() };
        if vtable.is_null() {
            return Err(format!("{ENTRY_SYMBOL} returned no vtable"));
        }
        // SAFETY: non-null and static in a library that is never unloaded; the vtable has the
        // layout of the version the library declared, which both begin with `abi_version`.
        let vtable = unsafe {
            match version {
                ABI_VERSION => VTable::V5(&*vtable),
                abi::v4::ABI_VERSION => VTable::V4(&*vtable.cast::<abi::v4::PluginVTable>()),
                abi::v3::ABI_VERSION => VTable::V3(&*vtable.cast::<abi::v3::PluginVTable>()),
                abi::v2::ABI_VERSION => VTable::V2(&*vtable.cast::<abi::v2::PluginVTable>()),
                _ => VTable::V1(&*vtable.cast::<abi::v1::PluginVTable>()),
            }
        };
        let vtable_version = vtable.abi_version();
        if vtable_version != version {
            return Err(format!(
                "the plugin's vtable has ABI version {vtable_version}, its version symbol says {version}"
            ));
        }
        if version == abi::v1::ABI_VERSION {
            tracing::warn!(
                library = %path.display(),
                abi_version = version,
                "plugin library of ABI version 1: its computations cannot be cancelled and run once per group; rebuild it against this server's mittari-sdk"
            );
        } else if version == abi::v2::ABI_VERSION {
            tracing::info!(
                library = %path.display(),
                abi_version = version,
                "plugin library of ABI version 2: it runs once per group; rebuild it against this server's mittari-sdk for faster group-by"
            );
        }
        let plugin = Arc::new(PluginLibrary {
            path: path.to_owned(),
            sha256: staged.sha256.clone(),
            vtable,
            _library: ManuallyDrop::new(library),
        });
        // SAFETY: vtable functions catch their own panics and take no pointers here.
        let count = unsafe { (vtable.metric_count())() };
        let descriptors = (0..count).map(|index| plugin.describe(index)).collect();
        Ok((plugin, descriptors))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The plugin ABI version the library implements.
    pub(crate) fn abi_version(&self) -> u32 {
        self.vtable.abi_version()
    }

    /// SHA-256 of the library's contents, hex.
    pub(crate) fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Takes a plugin-allocated buffer, copies it out and frees it in the plugin.
    fn take_bytes(&self, bytes: OwnedBytes) -> Vec<u8> {
        // SAFETY: `bytes` was written by this plugin and is freed right after copying.
        let copy = unsafe { bytes.as_slice() }.to_vec();
        // SAFETY: handed back exactly once to the library that allocated it.
        unsafe { (self.vtable.free_bytes())(bytes) };
        copy
    }

    fn describe(&self, index: usize) -> Result<MetricDescriptor, String> {
        let mut out = OwnedBytes::empty();
        // SAFETY: `out` is a valid out-pointer for the duration of the call.
        let status = unsafe { (self.vtable.describe())(index, &mut out) };
        let bytes = self.take_bytes(out);
        match status {
            STATUS_OK => serde_json::from_slice(&bytes)
                .map_err(|e| format!("metric {index}: cannot decode its descriptor: {e}")),
            _ => Err(format!(
                "metric {index}: describe failed: {}",
                decode_error(&bytes)
            )),
        }
    }
}

/// A computation's result from its meta and tables, checking the meta names every table.
fn output_of(meta: ComputeMeta, tables: Vec<RecordBatch>) -> Result<Output, MetricError> {
    if tables.len() != meta.table_names.len() {
        return Err(MetricError::failed(format!(
            "the plugin returned {} tables but named {}",
            tables.len(),
            meta.table_names.len()
        )));
    }
    Ok(Output {
        scalars: meta.scalars,
        tables: meta.table_names.into_iter().zip(tables).collect(),
        warnings: meta.warnings,
    })
}

fn decode_error(bytes: &[u8]) -> MetricError {
    serde_json::from_slice(bytes).unwrap_or_else(|_| {
        MetricError::failed("the plugin reported an error that could not be decoded")
    })
}

/// One metric of a loaded library.
#[derive(Debug, Clone)]
pub(crate) struct PluginMetric {
    pub(crate) library: Arc<PluginLibrary>,
    pub(crate) index: usize,
}

impl PluginMetric {
    /// Makes one computing call: exports `batch`, lets `call` invoke the plugin with the
    /// exported array and schema and the out-parameters, then takes the result (meta bytes and
    /// tables) out of the plugin's memory and hands its buffers back. The error of a failed
    /// call is decoded here.
    fn call(
        &self,
        batch: &RecordBatch,
        table_inputs: &[(String, RecordBatch)],
        call: impl FnOnce(
            &mut FFI_ArrowArray,
            &FFI_ArrowSchema,
            &mut [InputTable],
            &mut OwnedBytes,
            &mut OwnedTables,
        ) -> u32,
    ) -> Result<(Vec<u8>, Vec<RecordBatch>), MetricError> {
        let input = StructArray::from(batch.clone()).into_data();
        let (mut array, schema) = to_ffi(&input)
            .map_err(|e| MetricError::failed(format!("cannot export the input table: {e}")))?;
        // Each array moves into the plugin; the names and schemas stay borrowed for the call.
        let mut exported: Vec<InputTable> = table_inputs
            .iter()
            .map(|(name, table)| {
                let data = StructArray::from(table.clone()).into_data();
                let (array, schema) = to_ffi(&data).map_err(|e| {
                    MetricError::failed(format!("cannot export table input {name}: {e}"))
                })?;
                Ok(InputTable {
                    name: name.as_ptr(),
                    name_len: name.len(),
                    array,
                    schema,
                })
            })
            .collect::<Result<_, MetricError>>()?;
        let mut meta = OwnedBytes::empty();
        let mut tables = OwnedTables::empty();
        // `array` moves into the plugin (it leaves an empty, released struct behind, which
        // drops as a no-op).
        let status = call(&mut array, &schema, &mut exported, &mut meta, &mut tables);
        let meta = self.library.take_bytes(meta);
        let imported = self.import_tables(&tables);
        // SAFETY: handed back exactly once; arrays we moved out are left empty.
        unsafe { (self.library.vtable.free_tables())(tables) };
        match status {
            STATUS_OK => Ok((meta, imported?)),
            STATUS_ERROR => Err(decode_error(&meta)),
            other => Err(MetricError::failed(format!(
                "the plugin returned unknown status {other}"
            ))),
        }
    }

    /// Calls the plugin's compute: the batch crosses as an Arrow C Data Interface struct array,
    /// the parameters as JSON (encoded once per request by the caller); result tables come
    /// back the same way. A plugin of ABI version 2 or 3 polls `cancel`; one of version 1 runs
    /// to its end.
    pub(crate) fn compute(
        &self,
        batch: &RecordBatch,
        params_json: &[u8],
        table_inputs: &[(String, RecordBatch)],
        cancel: &AtomicBool,
    ) -> Result<Output, MetricError> {
        self.check_takes_tables(table_inputs)?;
        let (meta, tables) = self.call(
            batch,
            table_inputs,
            |array, schema, inputs, meta, tables| {
                // SAFETY: every pointer is valid for the call, `inputs` holds its length.
                unsafe {
                    match self.library.vtable {
                        VTable::V5(PluginVTable {
                            compute_with_tables,
                            ..
                        })
                        | VTable::V4(abi::v4::PluginVTable {
                            compute_with_tables,
                            ..
                        }) if !inputs.is_empty() => compute_with_tables(
                            self.index,
                            params_json.as_ptr(),
                            params_json.len(),
                            array,
                            schema,
                            inputs.as_mut_ptr(),
                            inputs.len(),
                            cancel,
                            meta,
                            tables,
                        ),
                        VTable::V5(PluginVTable { compute, .. })
                        | VTable::V4(abi::v4::PluginVTable { compute, .. })
                        | VTable::V3(abi::v3::PluginVTable { compute, .. })
                        | VTable::V2(abi::v2::PluginVTable { compute, .. }) => compute(
                            self.index,
                            params_json.as_ptr(),
                            params_json.len(),
                            array,
                            schema,
                            cancel,
                            meta,
                            tables,
                        ),
                        VTable::V1(v) => (v.compute)(
                            self.index,
                            params_json.as_ptr(),
                            params_json.len(),
                            array,
                            schema,
                            meta,
                            tables,
                        ),
                    }
                }
            },
        )?;
        let meta: ComputeMeta = serde_json::from_slice(&meta)
            .map_err(|e| MetricError::failed(format!("cannot decode the plugin's result: {e}")))?;
        output_of(meta, tables)
    }

    /// Calls the plugin's `fit` (ABI version 5): the batch and parameters as for `compute`;
    /// returns the state to store, the fit's results and its fingerprint.
    pub(crate) fn fit(
        &self,
        batch: &RecordBatch,
        params_json: &[u8],
        cancel: &AtomicBool,
    ) -> Result<(Vec<u8>, Output, Fingerprint), MetricError> {
        let VTable::V5(vtable) = self.library.vtable else {
            return Err(self.stateless());
        };
        let mut state = OwnedBytes::empty();
        let result = self.call(batch, &[], |array, schema, _, meta, tables| {
            // SAFETY: every pointer is valid for the call.
            unsafe {
                (vtable.fit)(
                    self.index,
                    params_json.as_ptr(),
                    params_json.len(),
                    array,
                    schema,
                    cancel,
                    &mut state,
                    meta,
                    tables,
                )
            }
        });
        // Taken (and freed in the plugin) whatever the outcome.
        let state = self.library.take_bytes(state);
        let (meta, tables) = result?;
        let meta: FitMeta = serde_json::from_slice(&meta)
            .map_err(|e| MetricError::failed(format!("cannot decode the plugin's fit: {e}")))?;
        if state.is_empty() {
            return Err(MetricError::failed("the plugin's fit returned no state"));
        }
        let output = output_of(meta.output, tables)?;
        Ok((state, output, meta.fingerprint))
    }

    /// Calls the plugin's `score` (ABI version 5) with a state its `fit` returned.
    pub(crate) fn score(
        &self,
        state: &[u8],
        batch: &RecordBatch,
        params_json: &[u8],
        cancel: &AtomicBool,
    ) -> Result<Output, MetricError> {
        let VTable::V5(vtable) = self.library.vtable else {
            return Err(self.stateless());
        };
        let (meta, tables) = self.call(batch, &[], |array, schema, _, meta, tables| {
            // SAFETY: every pointer is valid for the call; `state` is borrowed for it.
            unsafe {
                (vtable.score)(
                    self.index,
                    state.as_ptr(),
                    state.len(),
                    params_json.as_ptr(),
                    params_json.len(),
                    array,
                    schema,
                    cancel,
                    meta,
                    tables,
                )
            }
        })?;
        let meta: ComputeMeta = serde_json::from_slice(&meta)
            .map_err(|e| MetricError::failed(format!("cannot decode the plugin's result: {e}")))?;
        output_of(meta, tables)
    }

    /// The error for fitting or scoring with a library that cannot.
    fn stateless(&self) -> MetricError {
        MetricError::IncompatibleState {
            message: format!(
                "the plugin library {} implements ABI version {}, which has no fitted models; rebuild it against this server's mittari-sdk",
                self.library.path.display(),
                self.library.vtable.abi_version()
            ),
        }
    }

    /// Whether the plugin computes many groups in one call (ABI version 3 and later).
    pub(crate) fn computes_groups(&self) -> bool {
        matches!(
            self.library.vtable,
            VTable::V3(_) | VTable::V4(_) | VTable::V5(_)
        )
    }

    /// Table inputs reach only plugins of ABI version 4; the engine sends them only to metrics
    /// whose descriptors declare them, which older plugins cannot, so this is a safeguard.
    fn check_takes_tables(
        &self,
        table_inputs: &[(String, RecordBatch)],
    ) -> Result<(), MetricError> {
        if table_inputs.is_empty() || matches!(self.library.vtable, VTable::V4(_) | VTable::V5(_)) {
            Ok(())
        } else {
            Err(MetricError::failed(format!(
                "the plugin's ABI version {} takes no table inputs; rebuild it against this server's mittari-sdk",
                self.library.vtable.abi_version()
            )))
        }
    }

    /// Calls the plugin's `compute_groups` (ABI version 3): the whole batch crosses once, with
    /// the groups' rows; the results come back as columns. Rows in errors are the batch's.
    pub(crate) fn compute_groups(
        &self,
        batch: &RecordBatch,
        params_json: &[u8],
        table_inputs: &[(String, RecordBatch)],
        group_rows: &[u32],
        group_starts: &[u64],
        cancel: &AtomicBool,
    ) -> Result<GroupedOutput, MetricError> {
        self.check_takes_tables(table_inputs)?;
        let compute_groups = match self.library.vtable {
            VTable::V5(v) => v.compute_groups,
            VTable::V4(v) => v.compute_groups,
            VTable::V3(v) => v.compute_groups,
            _ => {
                return Err(MetricError::failed(
                    "the plugin's ABI version has no compute_groups",
                ));
            }
        };
        let groups = group_starts.len().saturating_sub(1);
        let (meta, tables) = self.call(
            batch,
            table_inputs,
            |array, schema, inputs, meta, tables| {
                // SAFETY: every pointer is valid for the call, the slices hold the lengths passed,
                // and `group_starts` has `groups + 1` entries.
                unsafe {
                    match self.library.vtable {
                        VTable::V5(PluginVTable {
                            compute_groups_with_tables,
                            ..
                        })
                        | VTable::V4(abi::v4::PluginVTable {
                            compute_groups_with_tables,
                            ..
                        }) if !inputs.is_empty() => compute_groups_with_tables(
                            self.index,
                            params_json.as_ptr(),
                            params_json.len(),
                            array,
                            schema,
                            inputs.as_mut_ptr(),
                            inputs.len(),
                            group_rows.as_ptr(),
                            group_rows.len(),
                            group_starts.as_ptr(),
                            groups,
                            cancel,
                            meta,
                            tables,
                        ),
                        _ => compute_groups(
                            self.index,
                            params_json.as_ptr(),
                            params_json.len(),
                            array,
                            schema,
                            group_rows.as_ptr(),
                            group_rows.len(),
                            group_starts.as_ptr(),
                            groups,
                            cancel,
                            meta,
                            tables,
                        ),
                    }
                }
            },
        )?;
        let meta: GroupedMeta = serde_json::from_slice(&meta).map_err(|e| {
            MetricError::failed(format!("cannot decode the plugin's grouped result: {e}"))
        })?;
        if meta.groups != groups {
            return Err(MetricError::failed(format!(
                "the plugin returned results for {} groups, not {groups}",
                meta.groups
            )));
        }
        meta.join(tables)
    }

    fn import_tables(&self, tables: &OwnedTables) -> Result<Vec<RecordBatch>, MetricError> {
        if tables.ptr.is_null() {
            return Ok(Vec::new());
        }
        (0..tables.len)
            .map(|i| {
                // SAFETY: the plugin wrote `len` initialized tables at `ptr`; we move each array
                // out (leaving an empty one) and borrow its schema until free_tables.
                let table = unsafe { &mut *tables.ptr.add(i) };
                let array = unsafe { FFI_ArrowArray::from_raw(&mut table.array) };
                let data = unsafe { from_ffi(array, &table.schema) }.map_err(|e| {
                    MetricError::failed(format!("cannot import result table {i}: {e}"))
                })?;
                let data = StructArray::from(data);
                if data.null_count() > 0 {
                    return Err(MetricError::failed(format!(
                        "result table {i} has null rows"
                    )));
                }
                Ok(RecordBatch::from(data))
            })
            .collect()
    }
}
