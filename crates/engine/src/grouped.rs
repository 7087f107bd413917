//! Group-by results as the engine returns them: the SDK's columns ([`GroupedOutput`]) with the
//! groups' keys and row counts, checked against the metric's descriptor.

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef};
use mittari_sdk::MetricDescriptor;
use mittari_sdk::grouped::{GroupTable, GroupedOutput, GroupedWarning, ScalarColumn};

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
