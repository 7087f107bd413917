use std::sync::atomic::{AtomicBool, Ordering};

use arrow_array::{
    Array, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};

use crate::MetricError;

/// The flag of a computation nobody can cancel.
static NEVER_CANCELLED: AtomicBool = AtomicBool::new(false);

/// The input table of one computation, as the plugin receives it: exactly the columns the
/// descriptor declares that the request provided, already validated (types, nulls in required
/// columns, declared ranges). With group-by, one group's rows.
///
/// It also carries the computation's cancellation flag, which the host sets when the client
/// gives up (deadline, cancel, disconnect): long-running work checks it with
/// [`Input::check_cancelled`] between steps (iterations, groups, every few thousand rows), so an
/// abandoned request stops using the CPU within a second.
///
/// With table inputs ([`crate::TableInputSpec`]), it also carries the tables the request sent
/// beside its main input, whole (not split by group): [`Input::table`].
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    batch: &'a RecordBatch,
    cancel: &'a AtomicBool,
    tables: &'a [(String, RecordBatch)],
}

impl<'a> Input<'a> {
    /// An input that is never cancelled (tests, and hosts of ABI version 1).
    pub fn new(batch: &'a RecordBatch) -> Self {
        Input {
            batch,
            cancel: &NEVER_CANCELLED,
            tables: &[],
        }
    }
    /// An input whose computation stops when `cancel` is set.
    pub fn cancellable(batch: &'a RecordBatch, cancel: &'a AtomicBool) -> Self {
        Input {
            batch,
            cancel,
            tables: &[],
        }
    }
    /// The same input with the request's table inputs, by name.
    #[must_use]
    pub fn with_tables(self, tables: &'a [(String, RecordBatch)]) -> Self {
        Input { tables, ..self }
    }
    /// The table input `name` ([`crate::TableInputSpec`]), when the request sent it: its
    /// declared columns (validated as the main input's are) and the columns parameters name
    /// in it, every row of it whatever the group.
    pub fn table(&self, name: &str) -> Option<&'a RecordBatch> {
        self.tables.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
    /// Whether the host has given up on this computation.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
    /// `Err(MetricError::Cancelled)` once the host has given up on this computation: return it
    /// with `?` from long-running loops.
    pub fn check_cancelled(&self) -> Result<(), MetricError> {
        if self.is_cancelled() {
            Err(MetricError::Cancelled)
        } else {
            Ok(())
        }
    }
    /// The cancellation flag itself, for code that polls it away from the `Input` (a model
    /// fit's optimizer, say).
    pub fn cancellation(&self) -> &'a AtomicBool {
        self.cancel
    }
    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }
    pub fn batch(&self) -> &'a RecordBatch {
        self.batch
    }
    pub fn has_column(&self, name: &str) -> bool {
        self.batch.column_by_name(name).is_some()
    }

    fn column<T: Array + 'static>(
        &self,
        name: &str,
        type_name: &str,
    ) -> Result<&'a T, MetricError> {
        let column = self.batch.column_by_name(name).ok_or_else(|| {
            MetricError::failed(format!(
                "column {name} is missing from the input; declare it as required in the descriptor"
            ))
        })?;
        column.as_any().downcast_ref::<T>().ok_or_else(|| {
            MetricError::failed(format!(
                "column {name} has arrow type {}, expected {type_name}",
                column.data_type()
            ))
        })
    }
    fn optional<T: Array + 'static>(
        &self,
        name: &str,
        type_name: &str,
    ) -> Result<Option<&'a T>, MetricError> {
        if self.has_column(name) {
            self.column(name, type_name).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn int64(&self, name: &str) -> Result<&'a Int64Array, MetricError> {
        self.column(name, "int64")
    }
    pub fn double(&self, name: &str) -> Result<&'a Float64Array, MetricError> {
        self.column(name, "double")
    }
    pub fn string(&self, name: &str) -> Result<&'a StringArray, MetricError> {
        self.column(name, "string")
    }
    pub fn bool(&self, name: &str) -> Result<&'a BooleanArray, MetricError> {
        self.column(name, "bool")
    }
    /// Microseconds since 1970-01-01T00:00:00Z.
    pub fn timestamp(&self, name: &str) -> Result<&'a TimestampMicrosecondArray, MetricError> {
        self.column(name, "timestamp")
    }
    /// Checks that a string column (say, `customer_id`) names each value once, for inputs of one
    /// row per entity. The error names the repeated row and the first one.
    pub fn check_unique(&self, name: &str) -> Result<(), MetricError> {
        let column = self.string(name)?;
        let mut first_row = std::collections::HashMap::with_capacity(column.len());
        for (row, value) in column.iter().enumerate() {
            let Some(value) = value else { continue };
            if let Some(first) = first_row.insert(value, row) {
                return Err(MetricError::invalid_value(
                    name,
                    row,
                    format!(
                        "{name} {value:?} appears again (first at row {first}); give one row per {name}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// An optional column: `None` when the request did not provide it.
    pub fn optional_int64(&self, name: &str) -> Result<Option<&'a Int64Array>, MetricError> {
        self.optional(name, "int64")
    }
    pub fn optional_double(&self, name: &str) -> Result<Option<&'a Float64Array>, MetricError> {
        self.optional(name, "double")
    }
    pub fn optional_string(&self, name: &str) -> Result<Option<&'a StringArray>, MetricError> {
        self.optional(name, "string")
    }
    pub fn optional_bool(&self, name: &str) -> Result<Option<&'a BooleanArray>, MetricError> {
        self.optional(name, "bool")
    }
    pub fn optional_timestamp(
        &self,
        name: &str,
    ) -> Result<Option<&'a TimestampMicrosecondArray>, MetricError> {
        self.optional(name, "timestamp")
    }
}
