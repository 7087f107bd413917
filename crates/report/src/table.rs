//! Reading the engine's results: scalars by name, result-table columns as numbers and text.

use std::collections::BTreeSet;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use mittari_engine::{GroupedResults, MetricResults};

/// The distinct values of `column` as text, sorted, stopping at `limit` of them.
pub(crate) fn distinct_texts(column: &dyn Array, limit: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for text in cell_texts(column).flatten() {
        seen.insert(text);
        if seen.len() >= limit {
            break;
        }
    }
    seen
}

/// Each cell of `column` as text, `None` for a null, formatted by one formatter for the
/// column (making one per cell cost more than the rest of a million-row report).
pub(crate) fn cell_texts(column: &dyn Array) -> impl Iterator<Item = Option<String>> + '_ {
    let formatter = arrow_cast::display::ArrayFormatter::try_new(
        column,
        &arrow_cast::display::FormatOptions::default(),
    )
    .ok();
    (0..column.len()).map(move |row| {
        if column.is_null(row) {
            return None;
        }
        formatter.as_ref().map(|f| f.value(row).to_string())
    })
}

/// A column as text, nulls empty.
pub(crate) fn texts(batch: &RecordBatch, name: &str) -> Vec<String> {
    match batch.column_by_name(name) {
        Some(column) => cell_texts(column.as_ref())
            .map(Option::unwrap_or_default)
            .collect(),
        None => Vec::new(),
    }
}

/// A numeric column as doubles; nulls (and a missing column) as `None`.
pub(crate) fn numbers(batch: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    let Some(column) = batch.column_by_name(name) else {
        return vec![None; batch.num_rows()];
    };
    let value = |row: usize| -> Option<f64> {
        if column.is_null(row) {
            return None;
        }
        match column.data_type() {
            DataType::Float64 => Some(
                column
                    .as_primitive::<arrow_array::types::Float64Type>()
                    .value(row),
            ),
            DataType::Int64 => Some(
                column
                    .as_primitive::<arrow_array::types::Int64Type>()
                    .value(row) as f64,
            ),
            DataType::Int32 => Some(f64::from(
                column
                    .as_primitive::<arrow_array::types::Int32Type>()
                    .value(row),
            )),
            DataType::UInt64 => Some(
                column
                    .as_primitive::<arrow_array::types::UInt64Type>()
                    .value(row) as f64,
            ),
            DataType::Boolean => Some(f64::from(u8::from(column.as_boolean().value(row)))),
            _ => None,
        }
    };
    (0..column.len()).map(value).collect()
}

/// Ungrouped results' scalar `name`.
pub(crate) fn scalar(results: &MetricResults, name: &str) -> Option<f64> {
    results
        .scalars
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| s.value)
}

/// Ungrouped results' scalar `name` with its interval.
pub(crate) fn interval(results: &MetricResults, name: &str) -> Option<(f64, f64, f64)> {
    let s = results.scalars.iter().find(|s| s.name == name)?;
    let ci = s.confidence_interval?;
    Some((ci.lower, s.value?, ci.upper))
}

/// The confidence level of ungrouped results' scalar `name`'s interval, as "95 % interval".
pub(crate) fn interval_header(results: &MetricResults, name: &str) -> String {
    results
        .scalars
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| s.confidence_interval)
        .map_or_else(
            || "interval".to_owned(),
            |ci| format!("{} % interval", crate::page::grouped(100.0 * ci.level, 0)),
        )
}

/// Ungrouped results' table `name`.
pub(crate) fn result_table<'a>(results: &'a MetricResults, name: &str) -> Option<&'a RecordBatch> {
    results
        .tables
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, table)| table)
}

/// The group keys as text (`north`, or `north / web` for two columns), in the results' order.
pub(crate) fn group_labels(grouped: &GroupedResults) -> Vec<String> {
    let keys: Vec<Vec<String>> = grouped
        .keys
        .iter()
        .map(|(_, column)| {
            cell_texts(column.as_ref())
                .map(|text| text.unwrap_or_else(|| "(none)".to_owned()))
                .collect()
        })
        .collect();
    (0..grouped.len())
        .map(|group| {
            keys.iter()
                .map(|key| key[group].as_str())
                .collect::<Vec<_>>()
                .join(" / ")
        })
        .collect()
}

/// Grouped scalar `name` per group.
pub(crate) fn group_values(grouped: &GroupedResults, name: &str) -> Vec<Option<f64>> {
    match grouped.scalars.iter().find(|s| s.name == name) {
        Some(column) => (0..grouped.len()).map(|g| column.value(g)).collect(),
        None => vec![None; grouped.len()],
    }
}

/// Grouped scalar `name` with its interval, per group.
pub(crate) fn group_intervals(
    grouped: &GroupedResults,
    name: &str,
) -> Vec<Option<(f64, f64, f64)>> {
    match grouped.scalars.iter().find(|s| s.name == name) {
        Some(column) => (0..grouped.len())
            .map(|g| {
                let ci = column.confidence_interval(g)?;
                Some((ci.lower, column.value(g)?, ci.upper))
            })
            .collect(),
        None => vec![None; grouped.len()],
    }
}

/// Group `group`'s result table `name`.
pub(crate) fn group_table<'a>(
    grouped: &'a GroupedResults,
    group: usize,
    name: &str,
) -> Option<&'a RecordBatch> {
    grouped
        .tables
        .iter()
        .find(|t| t.group as usize == group && t.name == name)
        .map(|t| &t.table)
}
