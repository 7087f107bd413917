//! Result tables written as files: CSV (what `--input` reads back), Parquet, Arrow IPC and
//! JSON Lines, the format said by the file's extension.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Schema, TimeUnit};

/// A failure to write a result file.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
}

/// The formats a result table can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Csv,
    Parquet,
    /// An Arrow IPC file (Feather version 2).
    Arrow,
    JsonLines,
}

impl OutputFormat {
    /// The format a path's extension names; the error lists the extensions known.
    pub fn from_path(path: &Path) -> Result<OutputFormat, String> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("csv") => Ok(OutputFormat::Csv),
            Some("parquet" | "pq") => Ok(OutputFormat::Parquet),
            Some("arrow" | "feather" | "ipc") => Ok(OutputFormat::Arrow),
            Some("jsonl" | "ndjson") => Ok(OutputFormat::JsonLines),
            _ => Err(format!(
                "{} must end in .csv, .parquet, .arrow or .jsonl, which says the format to write",
                path.display()
            )),
        }
    }
}

/// Writes `batch` to a new file at `path` in `format`.
pub fn write_batch(
    batch: &RecordBatch,
    path: &Path,
    format: OutputFormat,
) -> Result<(), WriteError> {
    let file = File::create(path)?;
    match format {
        OutputFormat::Csv => write_csv(batch, file),
        OutputFormat::Parquet => write_parquet(batch, file),
        OutputFormat::Arrow => {
            let mut writer =
                arrow_ipc::writer::FileWriter::try_new(BufWriter::new(file), &batch.schema())?;
            writer.write(batch)?;
            writer.finish()?;
            Ok(())
        }
        OutputFormat::JsonLines => {
            let mut writer = arrow_json::LineDelimitedWriter::new(BufWriter::new(file));
            writer.write(batch)?;
            writer.finish()?;
            writer.into_inner().flush()?;
            Ok(())
        }
    }
}

/// Rows formatted per part, in parallel; each part's text is written in order.
const CSV_ROWS_PER_PART: usize = 64 * 1024;

fn write_csv(batch: &RecordBatch, file: File) -> Result<(), WriteError> {
    use rayon::prelude::*;
    let columns: Vec<CsvColumn<'_>> = batch
        .columns()
        .iter()
        .map(|c| CsvColumn::new(c.as_ref()))
        .collect::<Result<_, WriteError>>()?;
    let mut out = BufWriter::new(file);
    let mut header = Vec::new();
    for (i, field) in batch.schema().fields().iter().enumerate() {
        let name = field.name();
        if i > 0 {
            header.push(b',');
        }
        push_csv_text(&mut header, name, columns.len() == 1);
    }
    header.push(b'\n');
    out.write_all(&header)?;
    let starts: Vec<usize> = (0..batch.num_rows()).step_by(CSV_ROWS_PER_PART).collect();
    // Two parts in flight per core at most: formatted text is held only until written.
    for window in starts.chunks(2 * rayon::current_num_threads()) {
        let parts: Vec<Vec<u8>> = window
            .par_iter()
            .map(|&start| {
                let end = (start + CSV_ROWS_PER_PART).min(batch.num_rows());
                let mut text = Vec::with_capacity((end - start) * 16 * columns.len());
                for row in start..end {
                    for (i, column) in columns.iter().enumerate() {
                        if i > 0 {
                            text.push(b',');
                        }
                        column.push(&mut text, row, columns.len() == 1);
                    }
                    text.push(b'\n');
                }
                text
            })
            .collect();
        for part in parts {
            out.write_all(&part)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Appends `text` as a CSV field: quoted when it holds a delimiter, quote or line break, or
/// when it is empty and the only field of its record (an empty line would be no record).
fn push_csv_text(out: &mut Vec<u8>, text: &str, only_field: bool) {
    if text.contains([',', '"', '\n', '\r']) || (only_field && text.is_empty()) {
        out.push(b'"');
        out.extend_from_slice(text.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

/// A result column, its type resolved once, written as CSV text: empty for null, floats in
/// Rust's shortest round-trip form, timestamps in ISO 8601 (what `--input` reads back).
enum CsvColumn<'a> {
    Double(&'a Float64Array),
    Int(&'a Int64Array),
    Text(&'a StringArray),
    Bool(&'a BooleanArray),
    Timestamp(&'a TimestampMicrosecondArray),
}

impl<'a> CsvColumn<'a> {
    fn new(column: &'a dyn Array) -> Result<Self, WriteError> {
        let any = column.as_any();
        if let Some(a) = any.downcast_ref::<Float64Array>() {
            return Ok(CsvColumn::Double(a));
        }
        if let Some(a) = any.downcast_ref::<Int64Array>() {
            return Ok(CsvColumn::Int(a));
        }
        if let Some(a) = any.downcast_ref::<StringArray>() {
            return Ok(CsvColumn::Text(a));
        }
        if let Some(a) = any.downcast_ref::<BooleanArray>() {
            return Ok(CsvColumn::Bool(a));
        }
        if let Some(a) = any.downcast_ref::<TimestampMicrosecondArray>() {
            return Ok(CsvColumn::Timestamp(a));
        }
        Err(WriteError::Unsupported(format!(
            "a column of type {} cannot be written as CSV",
            column.data_type()
        )))
    }

    fn push(&self, out: &mut Vec<u8>, row: usize, only_field: bool) {
        use std::io::Write as _;
        let null = match self {
            CsvColumn::Double(a) => a.is_null(row),
            CsvColumn::Int(a) => a.is_null(row),
            CsvColumn::Text(a) => a.is_null(row),
            CsvColumn::Bool(a) => a.is_null(row),
            CsvColumn::Timestamp(a) => a.is_null(row),
        };
        if null {
            if only_field {
                out.extend_from_slice(b"\"\"");
            }
            return;
        }
        // Writing into a Vec cannot fail.
        let _ = match self {
            CsvColumn::Double(a) => write!(out, "{}", a.value(row)),
            CsvColumn::Int(a) => {
                out.extend_from_slice(itoa::Buffer::new().format(a.value(row)).as_bytes());
                Ok(())
            }
            CsvColumn::Text(a) => {
                push_csv_text(out, a.value(row), only_field);
                Ok(())
            }
            CsvColumn::Bool(a) => write!(out, "{}", a.value(row)),
            CsvColumn::Timestamp(a) => {
                out.extend_from_slice(mittari_sdk::time::format_timestamp(a.value(row)).as_bytes());
                Ok(())
            }
        };
    }
}

fn write_parquet(batch: &RecordBatch, file: File) -> Result<(), WriteError> {
    use parquet::arrow::ArrowWriter;
    use parquet::basic::Compression;
    use parquet::file::properties::WriterProperties;
    // Timestamps are written as UTC instants, which is what the wire type means.
    let schema = Arc::new(Schema::new(
        batch
            .schema()
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Timestamp(TimeUnit::Microsecond, None) => {
                    f.as_ref().clone().with_data_type(DataType::Timestamp(
                        TimeUnit::Microsecond,
                        Some("UTC".into()),
                    ))
                }
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        batch
            .columns()
            .iter()
            .map(
                |c| match c.as_any().downcast_ref::<TimestampMicrosecondArray>() {
                    Some(t) => Arc::new(t.clone().with_timezone("UTC")) as ArrayRef,
                    None => c.clone(),
                },
            )
            .collect(),
    )?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(file, schema, Some(properties))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(columns: Vec<(&str, ArrayRef)>, expect: &str) {
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        write_csv(&batch, File::create(&path).unwrap()).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), expect);
    }

    /// Timestamps as `--input` reads them back: a date alone at midnight.
    #[test]
    fn csv_cells_are_typed_quoted_and_empty_for_null() {
        check(
            vec![
                (
                    "id",
                    Arc::new(StringArray::from(vec![
                        Some("a,b"),
                        Some("say \"hi\""),
                        None,
                    ])) as ArrayRef,
                ),
                (
                    "n",
                    Arc::new(Int64Array::from(vec![Some(-3), None, Some(7)])),
                ),
                (
                    "x",
                    Arc::new(Float64Array::from(vec![Some(0.1), Some(1e-7), Some(2.0)])),
                ),
                (
                    "ok",
                    Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
                ),
                (
                    "at",
                    Arc::new(TimestampMicrosecondArray::from(vec![
                        Some(1_000_000),
                        None,
                        Some(86_400_000_000),
                    ])),
                ),
            ],
            "id,n,x,ok,at\n\
             \"a,b\",-3,0.1,true,1970-01-01T00:00:01Z\n\
             \"say \"\"hi\"\"\",,0.0000001,false,\n\
             ,7,2,,1970-01-02\n",
        );
    }

    /// A lone empty field is quoted, or the record would read back as no record.
    #[test]
    fn csv_of_one_column_quotes_empty_cells() {
        check(
            vec![(
                "id",
                Arc::new(StringArray::from(vec![Some(""), None, Some("x")])) as ArrayRef,
            )],
            "id\n\"\"\n\"\"\nx\n",
        );
    }
}
