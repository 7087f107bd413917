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
    // (index in the file, name, declared type or None for an inferred group column)
    let mut selected: Vec<(usize, String, Option<DataType>)> = Vec::new();
    for (index, name) in headers.iter().enumerate() {
        if let Some(spec) = descriptor.input_column(name) {
            selected.push((index, name.to_owned(), Some(spec.data_type)));
        } else if group_by.iter().any(|g| g == name) {
            selected.push((index, name.to_owned(), None));
        }
    }
    let mut cells: Vec<Vec<Option<String>>> = vec![Vec::new(); selected.len()];
    let mut lines = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("{source}: cannot read the file as CSV"))?;
        lines.push(record.position().map_or(0, |p| p.line()));
        for (column, (index, _, _)) in cells.iter_mut().zip(&selected) {
            let cell = record
                .get(*index)
                .filter(|c| !c.is_empty())
                .map(str::to_owned);
            column.push(cell);
        }
    }
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for ((_, name, declared), column) in selected.iter().zip(cells) {
        let data_type = declared.unwrap_or_else(|| infer(&column));
        let array = parse_column(&column, data_type).map_err(|(row, why)| {
            anyhow::anyhow!(
                "{source}: line {}: column {name}: {why}",
                lines.get(row).copied().unwrap_or(0)
            )
        })?;
        fields.push(Field::new(name, data_type.arrow_type(), true));
        arrays.push(array);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(lines.len()));
    let batch = RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
        .with_context(|| format!("{source}: cannot assemble the table"))?;
    Ok(CsvInput { batch, lines })
}

fn infer(column: &[Option<String>]) -> DataType {
    if column.iter().flatten().all(|c| c.parse::<i64>().is_ok()) {
        DataType::Int64
    } else {
        DataType::String
    }
}

fn parse_column(
    column: &[Option<String>],
    data_type: DataType,
) -> Result<ArrayRef, (usize, String)> {
    let parse =
        |row: usize, cell: &str| ParamValue::parse(cell, data_type).map_err(|why| (row, why));
    let values = column
        .iter()
        .enumerate()
        .map(|(row, cell)| cell.as_deref().map(|c| parse(row, c)).transpose())
        .collect::<Result<Vec<Option<ParamValue>>, _>>()?;
    Ok(match data_type {
        DataType::Int64 => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Some(ParamValue::Int64(x)) => Some(*x),
                    _ => None,
                })
                .collect::<Int64Array>(),
        ),
        DataType::Double => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Some(ParamValue::Double(x)) => Some(*x),
                    _ => None,
                })
                .collect::<Float64Array>(),
        ),
        DataType::Bool => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Some(ParamValue::Bool(x)) => Some(*x),
                    _ => None,
                })
                .collect::<BooleanArray>(),
        ),
        DataType::Timestamp => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Some(ParamValue::Timestamp(x)) => Some(*x),
                    _ => None,
                })
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        ),
        DataType::String => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Some(ParamValue::String(x)) => Some(x.as_str()),
                    _ => None,
                })
                .collect::<StringArray>(),
        ),
    })
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
