//! Parquet, Arrow IPC and JSON Lines: batches from the arrow-rs readers, conformed to the
//! types the metric declares.
//!
//! A column whose type already is (or widens without loss to) the declared one is cast; a
//! text column is parsed cell by cell in the reader's dialect, as CSV is; anything else is
//! refused with the column's type in the file. A value that does not convert is an error
//! naming its row.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use arrow_array::cast::AsArray as _;
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_cast::CastOptions;
use arrow_schema::{DataType as Arrow, Field, Schema, SchemaRef, TimeUnit};
use mittari_sdk::{DataType, MetricDescriptor};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::ChunkReader;
use rayon::prelude::*;

use crate::cells::{Cells, Dialect};
use crate::columns::{ColumnMapping, Selected, select};
use crate::error::{Location, ReadError};

/// Rows per batch asked of the readers.
const BATCH_ROWS: usize = 64 * 1024;
/// Records a JSON Lines input's column types are inferred from.
const JSON_INFER_RECORDS: usize = 1000;

/// What is read from a columnar input, and how its text cells are parsed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted<'a> {
    /// The input's name in errors.
    pub(crate) source: &'a str,
    pub(crate) descriptor: &'a MetricDescriptor,
    pub(crate) group_by: &'a [String],
    pub(crate) mappings: &'a [ColumnMapping],
    /// (parameter, column) for the columns the request's parameters name.
    pub(crate) named: &'a [(String, String)],
    pub(crate) dialect: &'a Dialect,
}

/// Turns an input's batches into batches of the read columns, named and typed for the metric.
#[derive(Debug)]
pub(crate) struct Conformer<'a> {
    source: &'a str,
    /// Each read column's name in the input, and what it becomes.
    columns: Vec<(String, Selected)>,
    schema: SchemaRef,
    dialect: &'a Dialect,
}

impl<'a> Conformer<'a> {
    pub(crate) fn new(wanted: Wanted<'a>, input: &Schema) -> Result<Conformer<'a>, ReadError> {
        let Wanted {
            source,
            descriptor,
            group_by,
            mappings,
            named,
            dialect,
        } = wanted;
        let header: Vec<String> = input.fields().iter().map(|f| f.name().clone()).collect();
        let selected = select(&header, descriptor, group_by, mappings, named)
            .map_err(|message| ReadError::input(source, message))?;
        let mut fields = Vec::with_capacity(selected.len());
        for column in &selected {
            let from = input.field(column.index).data_type();
            let to = target_type(from, column.data_type).ok_or_else(|| {
                ReadError::input(
                    source,
                    format!(
                        "column {} is {from} in the input; {}",
                        header[column.index],
                        match column.data_type {
                            Some(t) => format!(
                                "{} needs {} ({}): store it as such, or as text",
                                descriptor.name,
                                t.name(),
                                t.arrow_type()
                            ),
                            None =>
                                "a group-by column must be text, an integer, a boolean or a date"
                                    .to_owned(),
                        }
                    ),
                )
            })?;
            fields.push(Field::new(&column.name, to, true));
        }
        Ok(Conformer {
            source,
            columns: selected
                .into_iter()
                .map(|s| (header[s.index].clone(), s))
                .collect(),
            schema: Arc::new(Schema::new(fields)),
            dialect,
        })
    }

    /// The input's names of the read columns.
    fn source_names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|(name, _)| name.as_str())
    }

    pub(crate) fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// One batch of the input, whose first row is row `first_row` (1-based) of the input.
    pub(crate) fn conform(
        &self,
        batch: &RecordBatch,
        first_row: u64,
    ) -> Result<RecordBatch, ReadError> {
        let mut arrays = Vec::with_capacity(self.columns.len());
        for ((source_name, column), field) in self.columns.iter().zip(self.schema.fields()) {
            let array = batch.column_by_name(source_name).ok_or_else(|| {
                ReadError::input(
                    self.source,
                    format!("column {source_name} is missing from a later batch"),
                )
            })?;
            let converted = convert(array, column.data_type, field.data_type(), self.dialect)
                .map_err(|(row, message)| {
                    ReadError::cell(
                        self.source,
                        Location::Row(first_row + row as u64),
                        &column.name,
                        message,
                    )
                })?;
            arrays.push(converted);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)
            .map_err(|e| ReadError::input(self.source, format!("cannot assemble the table: {e}")))
    }
}

/// The Arrow type a column of type `from` is read as: the declared type, or for a group-by
/// column text or int64. `None` when it cannot be.
fn target_type(from: &Arrow, declared: Option<DataType>) -> Option<Arrow> {
    let from = match from {
        Arrow::Dictionary(_, value) => value.as_ref(),
        other => other,
    };
    let text = matches!(from, Arrow::Utf8 | Arrow::LargeUtf8 | Arrow::Utf8View);
    let integer = from.is_integer();
    let number = from.is_numeric();
    let ok = match declared {
        None => {
            return if integer {
                Some(Arrow::Int64)
            } else if text || matches!(from, Arrow::Boolean | Arrow::Date32 | Arrow::Date64) {
                Some(Arrow::Utf8)
            } else {
                None
            };
        }
        Some(DataType::String) => text || integer || matches!(from, Arrow::Boolean),
        Some(DataType::Int64) => text || number,
        Some(DataType::Double) => text || number,
        Some(DataType::Bool) => text || matches!(from, Arrow::Boolean),
        Some(DataType::Timestamp) => {
            text || matches!(from, Arrow::Timestamp(..) | Arrow::Date32 | Arrow::Date64)
        }
    };
    ok.then(|| declared.map_or(Arrow::Utf8, DataType::arrow_type))
}

/// Converts a column; the error is the 0-based row and what is wrong there.
fn convert(
    array: &ArrayRef,
    declared: Option<DataType>,
    to: &Arrow,
    dialect: &Dialect,
) -> Result<ArrayRef, (usize, String)> {
    let from = array.data_type();
    let text = matches!(from, Arrow::Utf8 | Arrow::LargeUtf8 | Arrow::Utf8View)
        || matches!(from, Arrow::Dictionary(_, v) if matches!(v.as_ref(), Arrow::Utf8 | Arrow::LargeUtf8 | Arrow::Utf8View));
    if text && let Some(declared) = declared.filter(|t| *t != DataType::String) {
        return parse_text(array, declared, dialect);
    }
    if from == to {
        return Ok(array.clone());
    }
    if matches!(declared, Some(DataType::Timestamp)) {
        return instants(array);
    }
    if matches!(declared, Some(DataType::Int64))
        && from.is_floating() | matches!(from, Arrow::Decimal128(..) | Arrow::Decimal256(..))
    {
        return integers_from_numbers(array);
    }
    let cast = arrow_cast::cast_with_options(array, to, &CastOptions::default())
        .map_err(|e| (0, format!("cannot convert {from} to {to}: {e}")))?;
    // A lossy cast leaves a null where a value was: that row is the error.
    if cast.null_count() > array.null_count() {
        let row = (0..array.len())
            .find(|&i| array.is_valid(i) && cast.is_null(i))
            .unwrap_or_default();
        return Err((row, format!("the {from} value does not fit in {to}")));
    }
    if let Some(doubles) = cast.as_primitive_opt::<arrow_array::types::Float64Type>()
        && let Some(row) =
            (0..doubles.len()).find(|&i| doubles.is_valid(i) && !doubles.value(i).is_finite())
    {
        return Err((
            row,
            format!("{} is not a finite number", doubles.value(row)),
        ));
    }
    Ok(cast)
}

/// Timestamps of any unit and zone, and dates, as UTC microseconds. Arrow stores every
/// timestamp as an instant since the epoch in UTC (the zone only says how to show it), so this
/// is a change of unit; nanoseconds are rounded down to the microsecond. Microseconds keep
/// their buffer: only the zone's label changes, once every value is checked in range.
fn instants(array: &ArrayRef) -> Result<ArrayRef, (usize, String)> {
    use arrow_array::types::*;
    match array.data_type() {
        Arrow::Timestamp(TimeUnit::Microsecond, _) => {
            let micros = array.as_primitive::<TimestampMicrosecondType>();
            in_range(micros, Some)?;
            Ok(Arc::new(micros.clone().with_timezone("UTC")))
        }
        Arrow::Timestamp(TimeUnit::Second, _) => {
            scaled(array.as_primitive::<TimestampSecondType>(), |s| {
                s.checked_mul(1_000_000)
            })
        }
        Arrow::Timestamp(TimeUnit::Millisecond, _) => {
            scaled(array.as_primitive::<TimestampMillisecondType>(), |ms| {
                ms.checked_mul(1_000)
            })
        }
        Arrow::Timestamp(TimeUnit::Nanosecond, _) => {
            scaled(array.as_primitive::<TimestampNanosecondType>(), |ns| {
                Some(ns.div_euclid(1_000))
            })
        }
        Arrow::Date32 => scaled(array.as_primitive::<Date32Type>(), |days| {
            i64::from(days).checked_mul(86_400_000_000)
        }),
        Arrow::Date64 => scaled(array.as_primitive::<Date64Type>(), |ms| {
            ms.checked_mul(1_000)
        }),
        other => Err((0, format!("{other} is not a timestamp or a date"))),
    }
}

/// Checks that every valid value of `array`, through `f` (`None` when it overflows), is a
/// timestamp in range; the error is the first row that is not.
fn in_range<T: arrow_array::types::ArrowPrimitiveType>(
    array: &arrow_array::PrimitiveArray<T>,
    f: impl Fn(T::Native) -> Option<i64>,
) -> Result<(), (usize, String)> {
    let accept = |value: T::Native| f(value).is_some_and(mittari_sdk::time::is_accepted_timestamp);
    match mittari_sdk::scan::first_refused(array.values(), array.nulls(), accept) {
        None => Ok(()),
        Some(row) => Err((
            row,
            match f(array.value(row)) {
                Some(micros) => mittari_sdk::time::check_timestamp(micros)
                    .err()
                    .unwrap_or_default(),
                None => "the timestamp is out of range".to_owned(),
            },
        )),
    }
}

/// Each value of `array` through `f` into UTC microseconds, checked in range, in one pass;
/// nulls stay null (their slots hold 0). The error is the first row out of range.
fn scaled<T: arrow_array::types::ArrowPrimitiveType>(
    array: &arrow_array::PrimitiveArray<T>,
    f: impl Fn(T::Native) -> Option<i64>,
) -> Result<ArrayRef, (usize, String)> {
    let nulls = array.nulls();
    let micros = array
        .values()
        .iter()
        .enumerate()
        .map(|(row, &value)| {
            if nulls.is_some_and(|nulls| nulls.is_null(row)) {
                return Ok(0);
            }
            let micros =
                f(value).ok_or_else(|| (row, "the timestamp is out of range".to_owned()))?;
            mittari_sdk::time::check_timestamp(micros).map_err(|why| (row, why))?;
            Ok(micros)
        })
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(Arc::new(
        arrow_array::TimestampMicrosecondArray::new(micros.into(), nulls.cloned())
            .with_timezone("UTC"),
    ))
}

/// Text cells parsed as `declared`, as CSV cells are: trimmed, empty is null.
fn parse_text(
    array: &ArrayRef,
    declared: DataType,
    dialect: &Dialect,
) -> Result<ArrayRef, (usize, String)> {
    let strings = arrow_cast::cast(array, &Arrow::Utf8).map_err(|e| (0, e.to_string()))?;
    let strings = strings.as_string::<i32>();
    let mut cells = Cells::new(declared, strings.len());
    for (row, cell) in strings.iter().enumerate() {
        let cell = cell.map(str::trim).filter(|c| !c.is_empty());
        cells.push(cell, dialect).map_err(|why| (row, why))?;
    }
    Ok(cells.finish())
}

/// Floats or decimals that must be whole numbers to be read as int64.
fn integers_from_numbers(array: &ArrayRef) -> Result<ArrayRef, (usize, String)> {
    let doubles = arrow_cast::cast(array, &Arrow::Float64).map_err(|e| (0, e.to_string()))?;
    let doubles = doubles.as_primitive::<arrow_array::types::Float64Type>();
    let mut integers = arrow_array::builder::Int64Builder::with_capacity(doubles.len());
    for (row, value) in doubles.iter().enumerate() {
        match value {
            None => integers.append_null(),
            // 2⁶³ is exact in f64, so the comparison is too.
            Some(x) if x.fract() == 0.0 && x >= -(2f64.powi(63)) && x < 2f64.powi(63) => {
                integers.append_value(x as i64)
            }
            Some(x) => return Err((row, format!("{x} is not an integer"))),
        }
    }
    Ok(Arc::new(integers.finish()))
}

/// The conformed batches of a whole input and their schema.
pub(crate) struct Batches {
    pub(crate) schema: SchemaRef,
    pub(crate) batches: Vec<RecordBatch>,
}

/// A reader's conformed batches, each with its first row (1-based) in the input.
pub(crate) type BatchSink<'s> = dyn FnMut(RecordBatch, u64) -> Result<(), ReadError> + 's;

impl Batches {
    /// Runs a reader that hands its batches to a sink, keeping them all.
    pub(crate) fn collect(
        read: impl FnOnce(&mut BatchSink<'_>) -> Result<SchemaRef, ReadError>,
    ) -> Result<Batches, ReadError> {
        let mut batches = Vec::new();
        let schema = read(&mut |batch, _| {
            batches.push(batch);
            Ok(())
        })?;
        Ok(Batches { schema, batches })
    }
}

/// Reads a Parquet file (opened once per row group), only the read columns, as many row
/// groups at a time as there are threads, in parallel, handing `sink` their batches in file
/// order; `done_bytes` is told each row group's compressed size once it is read. Returns the
/// conformed schema.
pub(crate) fn read_parquet<T: ChunkReader + 'static>(
    open: impl Fn() -> Result<T, ReadError> + Sync,
    wanted: Wanted<'_>,
    done_bytes: &(dyn Fn(u64) + Sync),
    sink: &mut BatchSink<'_>,
) -> Result<SchemaRef, ReadError> {
    let source = wanted.source;
    let fail = |e: parquet::errors::ParquetError| {
        ReadError::input(source, format!("cannot read the file as Parquet: {e}"))
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(open()?).map_err(fail)?;
    let conformer = Conformer::new(wanted, builder.schema())?;
    let roots: Vec<usize> = conformer
        .source_names()
        .filter_map(|name| builder.schema().index_of(name).ok())
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let metadata = builder.metadata().clone();
    let mut first_rows = Vec::with_capacity(metadata.num_row_groups());
    let mut rows = 1u64;
    for group in metadata.row_groups() {
        first_rows.push(rows);
        rows += group.num_rows().max(0) as u64;
    }
    let groups: Vec<(usize, u64)> = first_rows.into_iter().enumerate().collect();
    for window in groups.chunks(rayon::current_num_threads().max(1)) {
        let parts: Vec<Result<Vec<(RecordBatch, u64)>, ReadError>> = window
            .par_iter()
            .map(|&(group, first_row)| {
                let reader = ParquetRecordBatchReaderBuilder::try_new(open()?)
                    .map_err(fail)?
                    .with_row_groups(vec![group])
                    .with_projection(mask.clone())
                    .with_batch_size(BATCH_ROWS)
                    .build()
                    .map_err(fail)?;
                let mut row = first_row;
                let mut batches = Vec::new();
                for batch in reader {
                    let batch = batch.map_err(|e| {
                        ReadError::input(source, format!("cannot read row group {group}: {e}"))
                    })?;
                    batches.push((conformer.conform(&batch, row)?, row));
                    row += batch.num_rows() as u64;
                }
                done_bytes(metadata.row_group(group).compressed_size().max(0) as u64);
                Ok(batches)
            })
            .collect();
        for part in parts {
            for (batch, row) in part? {
                sink(batch, row)?;
            }
        }
    }
    Ok(conformer.schema())
}

/// Reads an Arrow IPC file (random access, `ARROW1` magic) or stream.
pub(crate) fn read_ipc(
    reader: impl Read,
    file: bool,
    wanted: Wanted<'_>,
    sink: &mut BatchSink<'_>,
) -> Result<SchemaRef, ReadError> {
    let source = wanted.source;
    let fail = |e: arrow_schema::ArrowError| {
        ReadError::input(source, format!("cannot read the input as Arrow IPC: {e}"))
    };
    let reader: Box<dyn arrow_array::RecordBatchReader> = if file {
        // The file reader seeks to the footer: read whole (it is the input the metric holds).
        let mut bytes = Vec::new();
        BufReader::new(reader)
            .read_to_end(&mut bytes)
            .map_err(|e| ReadError::io(source, "cannot read the file", e))?;
        Box::new(
            arrow_ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)
                .map_err(fail)?,
        )
    } else {
        Box::new(
            arrow_ipc::reader::StreamReader::try_new(BufReader::new(reader), None).map_err(fail)?,
        )
    };
    let schema = reader.schema();
    let conformer = Conformer::new(wanted, &schema)?;
    let mut row = 1;
    for batch in reader {
        let batch = batch.map_err(fail)?;
        sink(conformer.conform(&batch, row)?, row)?;
        row += batch.num_rows() as u64;
    }
    Ok(conformer.schema())
}

/// Whether an opened file is an Arrow IPC file (its `ARROW1` magic), read from the start
/// without moving the file's own position.
pub(crate) fn is_ipc_file(file: &File) -> bool {
    use std::os::unix::fs::FileExt as _;
    let mut head = [0u8; 6];
    file.read_exact_at(&mut head, 0).is_ok() && &head == b"ARROW1"
}

/// Reads an Arrow IPC file a batch at a time (it is seekable: its footer says where each
/// batch is), handing `sink` each; `done_bytes` is told the bytes of each batch read.
pub(crate) fn read_ipc_file(
    file: File,
    wanted: Wanted<'_>,
    done_bytes: &dyn Fn(u64),
    sink: &mut BatchSink<'_>,
) -> Result<SchemaRef, ReadError> {
    let source = wanted.source;
    let fail = |e: arrow_schema::ArrowError| {
        ReadError::input(source, format!("cannot read the input as Arrow IPC: {e}"))
    };
    let reader =
        arrow_ipc::reader::FileReader::try_new(BufReader::new(file), None).map_err(fail)?;
    let conformer = Conformer::new(wanted, &reader.schema())?;
    let mut row = 1;
    for batch in reader {
        let batch = batch.map_err(fail)?;
        done_bytes(batch.get_array_memory_size() as u64);
        sink(conformer.conform(&batch, row)?, row)?;
        row += batch.num_rows() as u64;
    }
    Ok(conformer.schema())
}

/// Reads JSON Lines: one object per line, its column types inferred from the first records
/// and then set to the declared types; a declared column that holds text is parsed.
pub(crate) fn read_json_lines(
    reader: impl Read,
    wanted: Wanted<'_>,
    sink: &mut BatchSink<'_>,
) -> Result<SchemaRef, ReadError> {
    let Wanted {
        source,
        descriptor,
        mappings,
        ..
    } = wanted;
    let mut reader = BufReader::new(reader);
    // The first records are read once for their types and then decoded with the rest.
    let mut prefix = Vec::new();
    let mut records = 0;
    while records < JSON_INFER_RECORDS {
        let read = reader
            .read_until(b'\n', &mut prefix)
            .map_err(|e| ReadError::io(source, "cannot read the file", e))?;
        if read == 0 {
            break;
        }
        records += 1;
    }
    let (inferred, _) = arrow_json::reader::infer_json_schema(std::io::Cursor::new(&prefix), None)
        .map_err(|e| {
            ReadError::input(source, format!("cannot read the input as JSON Lines: {e}"))
        })?;
    // Declared columns are decoded as their type, or as text when the input holds text; the
    // conformer then parses the text.
    let fields: Vec<Field> = inferred
        .fields()
        .iter()
        .map(|field| {
            let name = mappings
                .iter()
                .find(|m| &m.source == field.name())
                .map_or(field.name().as_str(), |m| m.name.as_str());
            let data_type = match descriptor.input_column(name).map(|c| c.data_type) {
                Some(DataType::Timestamp | DataType::String) => Arrow::Utf8,
                Some(_) if field.data_type() == &Arrow::Utf8 => Arrow::Utf8,
                Some(declared) => declared.arrow_type(),
                None => field.data_type().clone(),
            };
            Field::new(field.name(), data_type, true)
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let conformer = Conformer::new(wanted, &schema)?;
    let decoder = arrow_json::ReaderBuilder::new(schema)
        .with_batch_size(BATCH_ROWS)
        .with_coerce_primitive(true)
        .build(BufReader::new(std::io::Cursor::new(prefix).chain(reader)))
        .map_err(|e| {
            ReadError::input(source, format!("cannot read the input as JSON Lines: {e}"))
        })?;
    let mut row = 1;
    for batch in decoder {
        let batch = batch.map_err(|e| {
            ReadError::input(
                source,
                format!("cannot read the records from record {row} on as JSON Lines: {e}"),
            )
        })?;
        sink(conformer.conform(&batch, row)?, row)?;
        row += batch.num_rows() as u64;
    }
    Ok(conformer.schema())
}

/// Opens a file for the columnar readers.
pub(crate) fn open(path: &std::path::Path, source: &str) -> Result<File, ReadError> {
    File::open(path).map_err(|e| ReadError::io(source, "cannot open the file", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::types::*;
    use arrow_array::{Date32Array, PrimitiveArray, TimestampMicrosecondArray};

    /// `instants` of `array`: the UTC microseconds, or the first bad row and its message.
    fn check(array: ArrayRef, expect: Result<&[Option<i64>], (usize, &str)>) {
        let got = instants(&array).map(|converted| {
            assert_eq!(
                converted.data_type(),
                &Arrow::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            );
            converted
                .as_primitive::<TimestampMicrosecondType>()
                .iter()
                .collect::<Vec<_>>()
        });
        match (got, expect) {
            (Ok(got), Ok(expect)) => assert_eq!(got, expect),
            (Err((row, message)), Err((expect_row, expect_message))) => {
                assert_eq!(row, expect_row);
                assert!(message.contains(expect_message), "{message}");
            }
            (got, expect) => panic!("got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn timestamps_of_every_unit_become_utc_microseconds() {
        let day = 86_400_000_000_i64;
        check(
            Arc::new(
                TimestampMicrosecondArray::from(vec![Some(day), None, Some(-1)])
                    .with_timezone("Europe/Helsinki"),
            ),
            Ok(&[Some(day), None, Some(-1)]),
        );
        check(
            Arc::new(PrimitiveArray::<TimestampSecondType>::from(vec![
                Some(86_400),
                None,
            ])),
            Ok(&[Some(day), None]),
        );
        check(
            Arc::new(PrimitiveArray::<TimestampMillisecondType>::from(vec![
                None,
                Some(-1),
            ])),
            Ok(&[None, Some(-1_000)]),
        );
        // Nanoseconds round down, before the epoch too.
        check(
            Arc::new(PrimitiveArray::<TimestampNanosecondType>::from(vec![
                1_999, -1,
            ])),
            Ok(&[Some(1), Some(-1)]),
        );
        check(
            Arc::new(Date32Array::from(vec![Some(1), None])),
            Ok(&[Some(day), None]),
        );
        // Out of years 1 to 9999, or overflowing the unit change: the row is named; a null
        // slot's value is never looked at.
        check(
            Arc::new(TimestampMicrosecondArray::from(vec![0, i64::MAX])),
            Err((1, "outside years 1 to 9999")),
        );
        check(
            Arc::new(PrimitiveArray::<TimestampSecondType>::new(
                vec![0, i64::MAX, i64::MAX].into(),
                Some(vec![true, false, true].into()),
            )),
            Err((2, "out of range")),
        );
        check(
            Arc::new(TimestampMicrosecondArray::new(
                vec![0, i64::MAX].into(),
                Some(vec![true, false].into()),
            )),
            Ok(&[Some(0), None]),
        );
    }
}
