//! Group-by, implemented once for every metric: rows are partitioned by the values of the
//! group columns and the metric runs once per partition.
//!
//! Partitioning is linear in the rows and allocates per group only the key it returns: rows
//! are hashed by their key parts into a table of group numbers (compared against each group's
//! first row, so no key is built to look one up), the groups are ordered by key, and the rows
//! are placed group after group into one index buffer that every group slices.

use std::hash::{BuildHasher, Hash, Hasher};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow_buffer::ScalarBuffer;
use mittari_sdk::{DataType, ParamValue};

use crate::validate::column_type;

/// One group's key: the value of each group column (`None` for null), in the order given.
pub(crate) type GroupKey = Vec<Option<ParamValue>>;

/// A group's key and the request rows that belong to it, in ascending order.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) key: GroupKey,
    /// A slice of the partition's shared index buffer.
    pub(crate) rows: UInt32Array,
}

/// One key part, borrowing strings from the batch. Within one column every non-null part has
/// the same variant, so the derived order is the key order: null first, then ascending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Part<'a> {
    Null,
    Int(i64),
    Str(&'a str),
    Bool(bool),
    Timestamp(i64),
}

impl Part<'_> {
    fn to_value(self) -> Option<ParamValue> {
        match self {
            Part::Null => None,
            Part::Int(v) => Some(ParamValue::Int64(v)),
            Part::Str(v) => Some(ParamValue::String(v.to_owned())),
            Part::Bool(v) => Some(ParamValue::Bool(v)),
            Part::Timestamp(v) => Some(ParamValue::Timestamp(v)),
        }
    }
}

fn part(column: &ArrayRef, row: usize) -> Part<'_> {
    if column.is_null(row) {
        return Part::Null;
    }
    match column_type(column.data_type()) {
        Some(DataType::Int64) => Part::Int(column.as_primitive::<Int64Type>().value(row)),
        Some(DataType::String) => Part::Str(column.as_string::<i32>().value(row)),
        Some(DataType::Bool) => Part::Bool(column.as_boolean().value(row)),
        Some(DataType::Timestamp) => {
            Part::Timestamp(column.as_primitive::<TimestampMicrosecondType>().value(row))
        }
        // Validation refuses other group column types before partitioning.
        Some(DataType::Double) | None => Part::Null,
    }
}

/// More groups than the request may form: partitioning stopped at `limit + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooManyGroups {
    pub(crate) limit: usize,
}

/// Partitions the rows of `batch` by `columns` (all validated to exist and be groupable).
/// Groups are ordered by key: nulls first, then ascending values. Stops as soon as more than
/// `max_groups` groups form, before their keys are built.
pub(crate) fn partition(
    batch: &RecordBatch,
    columns: &[String],
    max_groups: usize,
) -> Result<Vec<Group>, TooManyGroups> {
    let arrays: Vec<&ArrayRef> = columns
        .iter()
        .filter_map(|c| batch.column_by_name(c))
        .collect();
    let parts = |row: usize| arrays.iter().map(move |a| part(a, row));
    let same_key = |a: usize, b: usize| parts(a).eq(parts(b));
    let hasher = foldhash::fast::RandomState::default();
    let hash_of = |row: usize| {
        let mut state = hasher.build_hasher();
        parts(row).for_each(|p| p.hash(&mut state));
        state.finish()
    };
    // The group of each row, and each group's first row (its key's representative).
    let mut group_of_row: Vec<u32> = Vec::with_capacity(batch.num_rows());
    let mut first_rows: Vec<usize> = Vec::new();
    let mut table: hashbrown::HashTable<u32> = hashbrown::HashTable::new();
    for row in 0..batch.num_rows() {
        let hash = hash_of(row);
        let group = match table.find(hash, |&g| same_key(first_rows[g as usize], row)) {
            Some(&group) => group,
            None => {
                if first_rows.len() == max_groups {
                    return Err(TooManyGroups { limit: max_groups });
                }
                let group = first_rows.len() as u32;
                first_rows.push(row);
                table.insert_unique(hash, group, |&g| hash_of(first_rows[g as usize]));
                group
            }
        };
        group_of_row.push(group);
    }
    drop(table);
    // Groups in key order, and each group's position in that order.
    let mut order: Vec<u32> = (0..first_rows.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| {
        let (a, b) = (first_rows[a as usize], first_rows[b as usize]);
        parts(a).cmp(parts(b))
    });
    let mut rank = vec![0u32; order.len()];
    for (position, &group) in order.iter().enumerate() {
        rank[group as usize] = position as u32;
    }
    // Counting sort of the rows by their group's rank; rows stay ascending within a group.
    let mut starts = vec![0usize; order.len() + 1];
    for &group in &group_of_row {
        starts[rank[group as usize] as usize + 1] += 1;
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut next = starts.clone();
    let mut rows = vec![0u32; group_of_row.len()];
    for (row, &group) in group_of_row.iter().enumerate() {
        let slot = &mut next[rank[group as usize] as usize];
        rows[*slot] = row as u32;
        *slot += 1;
    }
    let rows = ScalarBuffer::from(rows);
    Ok(order
        .iter()
        .enumerate()
        .map(|(position, &group)| Group {
            key: parts(first_rows[group as usize])
                .map(Part::to_value)
                .collect(),
            rows: UInt32Array::new(
                rows.slice(starts[position], starts[position + 1] - starts[position]),
                None,
            ),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType as Arrow, Field, Schema};

    use super::*;

    #[test]
    fn partitions_by_several_columns_in_key_order() {
        let schema = Schema::new(vec![
            Field::new("region", Arrow::Utf8, true),
            Field::new("year", Arrow::Int64, false),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec![
                    Some("fi"),
                    Some("se"),
                    Some("fi"),
                    None,
                    Some("fi"),
                ])),
                Arc::new(Int64Array::from(vec![2024, 2024, 2023, 2024, 2024])),
            ],
        )
        .unwrap();
        let columns = ["region".to_owned(), "year".to_owned()];
        let groups = partition(&batch, &columns, 4).unwrap();
        let got: Vec<(GroupKey, Vec<u32>)> = groups
            .into_iter()
            .map(|g| (g.key, g.rows.values().to_vec()))
            .collect();
        let s = |v: &str| Some(ParamValue::String(v.to_owned()));
        let y = |v: i64| Some(ParamValue::Int64(v));
        assert_eq!(
            got,
            vec![
                (vec![None, y(2024)], vec![3]),
                (vec![s("fi"), y(2023)], vec![2]),
                (vec![s("fi"), y(2024)], vec![0, 4]),
                (vec![s("se"), y(2024)], vec![1]),
            ]
        );
        assert_eq!(
            partition(&batch, &columns, 3).unwrap_err(),
            TooManyGroups { limit: 3 }
        );
    }
}
