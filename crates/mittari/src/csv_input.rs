//! Reads a CSV file into an Arrow batch, typing each column by the metric's descriptor.
//!
//! Columns the metric declares are parsed as their declared type; group-by columns the metric
//! does not declare are int64 when every cell is an integer, string otherwise; other columns are
//! not sent. An empty cell is null. A bad cell is an error naming the file, line and column.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, RecordBatchOptions, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{Field, Schema};
use mittari_engine::{DataType, MetricDescriptor, ParamValue};

/// A CSV file as a batch, with the file line of every row for error messages.
#[derive(Debug)]
pub(crate) struct CsvInput {
    pub(crate) batch: RecordBatch,
    /// `lines[row]` is the 1-based line of the file that row came from.
    pub(crate) lines: Vec<u64>,
}

pub(crate) fn read(
    path: &Path,
    descriptor: &MetricDescriptor,
    group_by: &[String],
) -> anyhow::Result<CsvInput> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open input file {}", path.display()))?;
    read_from(file, &path.display().to_string(), descriptor, group_by)
}

fn read_from(
    reader: impl std::io::Read,
    source: &str,
    descriptor: &MetricDescriptor,
    group_by: &[String],
) -> anyhow::Result<CsvInput> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(reader);
    let headers = reader
        .headers()
        .with_context(|| format!("{source}: cannot read the header line"))?
        .clone();
    for (i, name) in headers.iter().enumerate() {
        if headers.iter().take(i).any(|h| h == name) {
            bail!("{source}: line 1: column {name} appears twice in the header");
        }
    }
    // (index in the file, name, cells typed as declared, or strings for an inferred group column)
    let mut selected: Vec<(usize, String, Cells)> = Vec::new();
    for (index, name) in headers.iter().enumerate() {
        if let Some(spec) = descriptor.input_column(name) {
            selected.push((index, name.to_owned(), Cells::new(spec.data_type)));
        } else if group_by.iter().any(|g| g == name) {
            selected.push((index, name.to_owned(), Cells::new(DataType::String)));
        }
    }
    let inferred: Vec<bool> = headers
        .iter()
        .map(|h| descriptor.input_column(h).is_none())
        .collect();
    let mut lines = Vec::new();
    // One record, reused: a row costs no allocation beyond its string cells.
    let mut record = csv::StringRecord::new();
    while reader
        .read_record(&mut record)
        .with_context(|| format!("{source}: cannot read the file as CSV"))?
    {
        let line = record.position().map_or(0, |p| p.line());
        lines.push(line);
        for (index, name, cells) in &mut selected {
            let cell = record.get(*index).filter(|c| !c.is_empty());
            cells
                .push(cell)
                .map_err(|why| anyhow::anyhow!("{source}: line {line}: column {name}: {why}"))?;
        }
    }
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (index, name, cells) in selected {
        let cells = if inferred[index] {
            cells.infer_integers()
        } else {
            cells
        };
        fields.push(Field::new(&name, cells.data_type().arrow_type(), true));
        arrays.push(cells.into_array());
    }
    let options = RecordBatchOptions::new().with_row_count(Some(lines.len()));
    let batch = RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
        .with_context(|| format!("{source}: cannot assemble the table"))?;
    Ok(CsvInput { batch, lines })
}

/// A column's cells, parsed as its type while the file is read.
enum Cells {
    Int64(Vec<Option<i64>>),
    Double(Vec<Option<f64>>),
    String(Vec<Option<String>>),
    Bool(Vec<Option<bool>>),
    Timestamp(Vec<Option<i64>>),
}

impl Cells {
    fn new(data_type: DataType) -> Cells {
        match data_type {
            DataType::Int64 => Cells::Int64(Vec::new()),
            DataType::Double => Cells::Double(Vec::new()),
            DataType::String => Cells::String(Vec::new()),
            DataType::Bool => Cells::Bool(Vec::new()),
            DataType::Timestamp => Cells::Timestamp(Vec::new()),
        }
    }

    fn data_type(&self) -> DataType {
        match self {
            Cells::Int64(_) => DataType::Int64,
            Cells::Double(_) => DataType::Double,
            Cells::String(_) => DataType::String,
            Cells::Bool(_) => DataType::Bool,
            Cells::Timestamp(_) => DataType::Timestamp,
        }
    }

    /// Appends a cell (`None` when empty), parsed as the column's type.
    fn push(&mut self, cell: Option<&str>) -> Result<(), String> {
        if let Cells::String(values) = self {
            values.push(cell.map(str::to_owned));
            return Ok(());
        }
        let value = cell
            .map(|c| ParamValue::parse(c, self.data_type()))
            .transpose()?;
        match (self, value) {
            (Cells::Int64(v), Some(ParamValue::Int64(x)))
            | (Cells::Timestamp(v), Some(ParamValue::Timestamp(x))) => v.push(Some(x)),
            (Cells::Double(v), Some(ParamValue::Double(x))) => v.push(Some(x)),
            (Cells::Bool(v), Some(ParamValue::Bool(x))) => v.push(Some(x)),
            (Cells::Int64(v) | Cells::Timestamp(v), _) => v.push(None),
            (Cells::Double(v), _) => v.push(None),
            (Cells::Bool(v), _) => v.push(None),
            (Cells::String(_), _) => {}
        }
        Ok(())
    }

    /// A group-by column the metric does not declare: int64 when every cell is an integer.
    fn infer_integers(self) -> Cells {
        match self {
            Cells::String(values) if values.iter().flatten().all(|c| c.parse::<i64>().is_ok()) => {
                Cells::Int64(
                    values
                        .iter()
                        .map(|c| c.as_deref().and_then(|c| c.parse().ok()))
                        .collect(),
                )
            }
            other => other,
        }
    }

    fn into_array(self) -> ArrayRef {
        match self {
            Cells::Int64(v) => Arc::new(Int64Array::from(v)),
            Cells::Double(v) => Arc::new(Float64Array::from(v)),
            Cells::String(v) => Arc::new(StringArray::from(v)),
            Cells::Bool(v) => Arc::new(BooleanArray::from(v)),
            Cells::Timestamp(v) => {
                Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use mittari_engine::ColumnSpec;

    use super::*;

    fn descriptor() -> MetricDescriptor {
        MetricDescriptor::new("m", "1", "test")
            .input(ColumnSpec::int64("score", "").required())
            .input(ColumnSpec::timestamp("at", ""))
    }

    fn check(csv: &str, group_by: &[&str], expect: Result<&[(&str, DataType, usize)], &str>) {
        let group_by: Vec<String> = group_by.iter().map(|s| (*s).to_owned()).collect();
        match (
            read_from(csv.as_bytes(), "in.csv", &descriptor(), &group_by),
            expect,
        ) {
            (Ok(input), Ok(columns)) => {
                let got: Vec<(String, arrow_schema::DataType, usize)> = input
                    .batch
                    .schema()
                    .fields()
                    .iter()
                    .zip(input.batch.columns())
                    .map(|(f, c)| (f.name().clone(), f.data_type().clone(), c.null_count()))
                    .collect();
                let want: Vec<(String, arrow_schema::DataType, usize)> = columns
                    .iter()
                    .map(|(n, t, nulls)| ((*n).to_owned(), t.arrow_type(), *nulls))
                    .collect();
                assert_eq!(got, want);
            }
            (Err(error), Err(expect)) => {
                assert!(error.to_string().contains(expect), "{error} lacks {expect}")
            }
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn types_columns_by_descriptor_and_group_by() {
        check(
            "score,region,year,note,at\n9,fi,2024,x,2024-01-31\n,se,2023,y,\n",
            &["region", "year"],
            Ok(&[
                ("score", DataType::Int64, 1),
                ("region", DataType::String, 0),
                ("year", DataType::Int64, 0),
                ("at", DataType::Timestamp, 1),
            ]),
        );
        check(
            "score\n9\nten\n",
            &[],
            Err("in.csv: line 3: column score: \"ten\" is not an integer"),
        );
        check(
            "score,at\n9,31.1.2024\n",
            &[],
            Err("in.csv: line 2: column at:"),
        );
        check("score,score\n1,2\n", &[], Err("column score appears twice"));
    }
}
