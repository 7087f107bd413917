//! `--output FILE`: one result table of a response, every row, as CSV, Parquet, Arrow IPC or
//! JSON Lines (written by `mittari-io`). The printed report stays short; the file is what
//! analysts load into their next tool.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use mittari_io::OutputFormat;
use mittari_proto::v1 as pb;

use mittari_server::convert;

fn file_format(path: &Path) -> anyhow::Result<OutputFormat> {
    OutputFormat::from_path(path).map_err(|why| anyhow::anyhow!("--output {why}"))
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
    mittari_io::write_batch(&batch, path, format)
        .with_context(|| format!("cannot write {}", path.display()))?;
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
