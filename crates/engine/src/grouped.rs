//! Group-by results as the engine returns them: the SDK's columns ([`GroupedOutput`]) with the
//! groups' keys and row counts, checked against the metric's descriptor.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use mittari_sdk::grouped::{
    ConfidenceIntervals, GroupTable, GroupedOutput, GroupedWarning, ScalarColumn,
};
use mittari_sdk::survey::cell_label;
use mittari_sdk::{GroupComparison, MetricDescriptor};

use crate::engine::MetricResults;

use crate::engine::{check_tables, declared_output, not_finite, table_bytes_lower_bound};

/// The results of every group, column by column: entry `i` of each column belongs to group `i`.
/// Groups are ordered by key, the null value of a key column first.
#[derive(Debug, Clone, Default)]
pub struct GroupedResults {
    /// One column per group-by column, in request order; a null entry is the group of rows
    /// where that column is null.
    pub keys: Vec<(String, ArrayRef)>,
    /// Input rows in each group.
    pub rows: Vec<u64>,
    /// One column per output the metric returned for any group, in the descriptor's order,
    /// each with its declared unit.
    pub scalars: Vec<ScalarColumn>,
    /// Each distinct warning once, with the groups it applies to.
    pub warnings: Vec<GroupedWarning>,
    /// Result tables, each with the group it belongs to, in group order.
    pub tables: Vec<GroupTable>,
}

impl GroupedResults {
    /// Joins the checked output of every group with the groups' keys and row counts.
    pub(crate) fn new(
        descriptor: &MetricDescriptor,
        keys: Vec<(String, ArrayRef)>,
        rows: Vec<u64>,
        mut output: GroupedOutput,
    ) -> Self {
        output.scalars.sort_by_key(|c| {
            descriptor
                .outputs
                .iter()
                .position(|o| o.name == c.name)
                .unwrap_or(usize::MAX)
        });
        GroupedResults {
            keys,
            rows,
            scalars: output.scalars,
            warnings: output.warnings,
            tables: output.tables,
        }
    }

    /// Adds the group comparison's columns (`spec`) from `results`, the metric's result on
    /// the whole input: each group gets the row of the comparison table whose key (its first
    /// column) reads as the group's key. A group the table has no row for gets the columns
    /// undefined, with the reason.
    pub(crate) fn add_comparison(
        &mut self,
        descriptor: &MetricDescriptor,
        spec: &GroupComparison,
        results: &MetricResults,
        level: f64,
    ) -> Result<(), String> {
        let Some((_, table)) = results.tables.iter().find(|(n, _)| *n == spec.table) else {
            return Err(format!(
                "the comparison of the groups returned no {} table",
                spec.table
            ));
        };
        let Some((_, keys)) = self.keys.first() else {
            return Ok(());
        };
        if table.num_columns() == 0 {
            return Err(format!("the {} table has no columns", spec.table));
        }
        let labels: HashMap<String, usize> = (0..table.num_rows())
            .map(|row| (cell_label(table.column(0).as_ref(), row), row))
            .collect();
        let rows: Vec<Option<usize>> = (0..self.len())
            .map(|group| labels.get(&cell_label(keys.as_ref(), group)).copied())
            .collect();
        let table_spec = descriptor.tables.iter().find(|t| t.name == spec.table);
        for (column, output) in &spec.columns {
            let Some(array) = table.column_by_name(column) else {
                continue;
            };
            let values: Vec<Option<f64>> = match array.data_type() {
                DataType::Float64 => {
                    let numbers = array.as_primitive::<Float64Type>();
                    rows.iter()
                        .map(|r| r.filter(|&r| numbers.is_valid(r)).map(|r| numbers.value(r)))
                        .collect()
                }
                DataType::Boolean => {
                    let flags = array.as_boolean();
                    rows.iter()
                        .map(|r| {
                            r.filter(|&r| flags.is_valid(r))
                                .map(|r| f64::from(u8::from(flags.value(r))))
                        })
                        .collect()
                }
                other => {
                    return Err(format!(
                        "column {column} of the {} table is {other}, not a number or true/false",
                        spec.table
                    ));
                }
            };
            let bound = |suffix: &str| {
                table
                    .column_by_name(&format!("{column}{suffix}"))
                    .filter(|a| a.data_type() == &DataType::Float64)
                    .map(|a| a.as_primitive::<Float64Type>().clone())
            };
            let intervals = match (bound("_lower"), bound("_upper")) {
                (Some(lower), Some(upper)) => {
                    let mut out = ConfidenceIntervals::default();
                    for (group, row) in rows.iter().enumerate() {
                        let at = row.filter(|&r| {
                            values[group].is_some() && lower.is_valid(r) && upper.is_valid(r)
                        });
                        out.lower.push(at.map_or(0.0, |r| lower.value(r)));
                        out.upper.push(at.map_or(0.0, |r| upper.value(r)));
                        out.level.push(if at.is_some() { level } else { 0.0 });
                    }
                    Some(out)
                }
                _ => None,
            };
            let reason = format!(
                "not compared: the {} table has no value for this group",
                spec.table
            );
            // A true/false column's 1/0 says so in its unit, which clients show as yes/no.
            let unit = if array.data_type() == &DataType::Boolean {
                "flag".to_owned()
            } else {
                table_spec
                    .and_then(|t| t.column(column))
                    .map_or_else(String::new, |c| c.unit.clone())
            };
            let undefined: Vec<u32> = values.iter().map(|v| u32::from(v.is_none())).collect();
            let any_undefined = undefined.iter().any(|&u| u != 0);
            self.scalars.push(ScalarColumn {
                name: output.clone(),
                unit,
                values: values.iter().map(|v| v.unwrap_or(0.0)).collect(),
                undefined: if any_undefined { undefined } else { Vec::new() },
                undefined_reasons: if any_undefined {
                    vec![reason]
                } else {
                    Vec::new()
                },
                confidence_intervals: intervals,
            });
        }
        Ok(())
    }

    /// The number of groups.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Bytes the results take at the least in any encoding that writes every name, text and
    /// value once (a double as 8 bytes, any other value as at least 1); the protobuf response
    /// is larger still, by its tags and lengths.
    pub fn wire_bytes_lower_bound(&self) -> usize {
        let texts: usize = self
            .scalars
            .iter()
            .map(|c| {
                c.name.len()
                    + c.unit.len()
                    + c.undefined_reasons.iter().map(String::len).sum::<usize>()
            })
            .sum::<usize>()
            + self
                .warnings
                .iter()
                .map(|w| w.warning.code.len() + w.warning.message.len())
                .sum::<usize>();
        let keys: usize = self
            .keys
            .iter()
            .map(|(name, array)| name.len() + key_bytes(array))
            .sum();
        texts
            + keys
            + self.rows.len()
            + group_bytes_lower_bound(&self.scalars, &self.warnings, &self.tables)
    }
}

/// The part of [`GroupedResults::wire_bytes_lower_bound`] that grows with the groups, without
/// keys and row counts: it adds up over the parts of a computation split by groups.
pub(crate) fn part_bytes_lower_bound(output: &GroupedOutput) -> usize {
    output.groups + group_bytes_lower_bound(&output.scalars, &output.warnings, &output.tables)
}

fn group_bytes_lower_bound(
    scalars: &[ScalarColumn],
    warnings: &[GroupedWarning],
    tables: &[GroupTable],
) -> usize {
    let scalars: usize = scalars
        .iter()
        .map(|c| {
            8 * c.values.len()
                + c.undefined.len()
                + c.confidence_intervals.as_ref().map_or(0, |ci| {
                    8 * (ci.lower.len() + ci.upper.len() + ci.level.len())
                })
        })
        .sum();
    let warnings: usize = warnings.iter().map(|w| w.groups.len()).sum();
    let tables: usize = tables
        .iter()
        .map(|t| 1 + t.name.len() + table_bytes_lower_bound(&t.table))
        .sum();
    scalars + warnings + tables
}

/// The least bytes a key column takes on the wire.
fn key_bytes(array: &ArrayRef) -> usize {
    match array.data_type() {
        arrow_schema::DataType::Utf8 => array.len() + array.as_string::<i32>().value_data().len(),
        arrow_schema::DataType::Float64 => 8 * array.len(),
        _ => array.len(),
    }
}

/// Holds the output of a run of groups to the descriptor, as a single result is held: every
/// scalar column declared and finite, every table declared and finite. Sets each column's
/// declared unit.
pub(crate) fn check(
    descriptor: &MetricDescriptor,
    output: &mut GroupedOutput,
) -> Result<(), String> {
    for column in &mut output.scalars {
        column.unit = declared_output(descriptor, &column.name)?.unit.clone();
        let finite = column.values.iter().all(|v| v.is_finite())
            && column.confidence_intervals.as_ref().is_none_or(|ci| {
                [&ci.lower, &ci.upper, &ci.level]
                    .iter()
                    .all(|bound| bound.iter().all(|v| v.is_finite()))
            });
        if !finite {
            return Err(not_finite(&column.name));
        }
    }
    check_tables(
        descriptor,
        output.tables.iter().map(|t| (t.name.as_str(), &t.table)),
    )
}
