//! `--output FILE`: one result table of a response, every row, as CSV or Parquet. The printed
//! report stays short; the file is what analysts load into their next tool.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use mittari_proto::v1 as pb;

use mittari_server::convert;

#[derive(Debug, Clone, Copy, PartialEq)]
enum FileFormat {
    Csv,
    Parquet,
}

fn file_format(path: &Path) -> anyhow::Result<FileFormat> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("csv") => Ok(FileFormat::Csv),
        Some("parquet" | "pq") => Ok(FileFormat::Parquet),
        _ => bail!(
            "--output {} must end in .csv or .parquet, which says the format to write",
            path.display()
        ),
    }
}

/// Checks `--output` before any work is done, so a typo does not cost a long fit.
pub(crate) fn check_path(path: &Path) -> anyhow::Result<()> {
    file_format(path).map(|_| ())
}

/// Writes the result table `name` (default: the first) to `path`, with a group's key columns
/// in front of its rows when the response is grouped. Returns the table's name and rows.
pub(crate) fn write(
    response: &pb::ComputeResponse,
    name: Option<&str>,
    path: &Path,
) -> anyhow::Result<(String, usize)> {
    let format = file_format(path)?;
    // Each result table with its group's key as text (none without group-by).
    let whole = response
        .results
        .iter()
        .flat_map(|r| r.tables.iter().cloned())
        .map(|table| (None, Vec::new(), table));
    let groups = response.grouped.iter().flat_map(|grouped| {
        crate::render::group_views(grouped)
            .enumerate()
            .flat_map(|(index, group)| {
                let key: Vec<(String, String)> = group
                    .key
                    .into_iter()
                    .map(|(column, value)| (column, crate::render::value_text(value.as_ref())))
                    .collect();
                group
                    .results
                    .tables
                    .into_iter()
                    .map(move |table| (Some(index), key.clone(), table))
            })
    });
    let mut parts: Vec<(Vec<(String, String)>, pb::ResultTable)> = Vec::new();
    let mut available: Vec<String> = Vec::new();
    let mut first_of_group = true;
    let mut last_group = None;
    for (group, key, table) in whole.chain(groups) {
        // Without a name, the first table of each group (or of the whole input) is taken.
        if last_group != Some(group) {
            first_of_group = true;
            last_group = Some(group);
        }
        available.push(table.name.clone());
        let chosen = match name {
            Some(name) => table.name == name,
            None => std::mem::replace(&mut first_of_group, false),
        };
        if chosen {
            parts.push((key, table));
        }
    }
    let Some(table_name) = parts.first().map(|(_, t)| t.name.clone()) else {
        available.sort_unstable();
        available.dedup();
        // Without a name the first table is taken, so only a missing name can leave tables.
        if available.is_empty() {
            bail!(
                "{} returned no result table to write to --output",
                response.metric
            );
        }
        bail!(
            "{} returned no table {}; --output-table can be {}",
            response.metric,
            name.unwrap_or_default(),
            available.join(", ")
        );
    };
    let mut batches = Vec::with_capacity(parts.len());
    for (key, table) in parts {
        let batch = convert::table_to_batch(table.table.unwrap_or_default())
            .map_err(|e| anyhow::anyhow!("result table {table_name} is malformed: {e}"))?;
        batches.push(with_key(batch, &key)?);
    }
    let schema = batches[0].schema();
    if let Some(other) = batches.iter().find(|b| b.schema() != schema) {
        bail!(
            "the groups' {table_name} tables have different columns ({:?} and {:?}); write one group at a time",
            column_names(&schema),
            column_names(&other.schema())
        );
    }
    let batch = arrow_select::concat::concat_batches(&schema, &batches)
        .context("cannot join the groups' tables")?;
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let written = match format {
        FileFormat::Csv => write_csv(&batch, file),
        FileFormat::Parquet => write_parquet(&batch, file),
    };
    written.with_context(|| format!("cannot write {}", path.display()))?;
    Ok((table_name, batch.num_rows()))
}

fn column_names(schema: &Schema) -> Vec<&str> {
    schema.fields().iter().map(|f| f.name().as_str()).collect()
}

/// The group key as leading text columns, the same value on every row.
fn with_key(batch: RecordBatch, key: &[(String, String)]) -> anyhow::Result<RecordBatch> {
    if key.is_empty() {
        return Ok(batch);
    }
    let rows = batch.num_rows();
    let mut fields: Vec<Field> = key
        .iter()
        .map(|(column, _)| Field::new(column, DataType::Utf8, true))
        .collect();
    let mut columns: Vec<ArrayRef> = key
        .iter()
        .map(|(_, value)| Arc::new(StringArray::from(vec![value.as_str(); rows])) as ArrayRef)
        .collect();
    fields.extend(batch.schema().fields().iter().map(|f| f.as_ref().clone()));
    columns.extend(batch.columns().iter().cloned());
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .context("a group key column has the name of a table column")
}

/// Rows formatted per part, in parallel; each part's text is written in order.
const CSV_ROWS_PER_PART: usize = 64 * 1024;

fn write_csv(batch: &RecordBatch, file: File) -> anyhow::Result<()> {
    use rayon::prelude::*;
    let columns: Vec<CsvColumn<'_>> = batch
        .columns()
        .iter()
        .map(|c| CsvColumn::new(c.as_ref()))
        .collect::<anyhow::Result<_>>()?;
    let mut out = BufWriter::new(file);
    let mut header = Vec::new();
    for (i, name) in column_names(&batch.schema()).into_iter().enumerate() {
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
    fn new(column: &'a dyn Array) -> anyhow::Result<Self> {
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
        bail!(
            "a column of type {} cannot be written as CSV",
            column.data_type()
        )
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

fn write_parquet(batch: &RecordBatch, file: File) -> anyhow::Result<()> {
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
