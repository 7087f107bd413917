//! Group-by, implemented once for every metric: rows are partitioned by the values of the
//! group columns and the metric runs once per partition.
//!
//! Partitioning is linear in the rows and allocates nothing per group: rows are hashed by
//! their key parts into a table of group numbers (compared against each group's first row, so
//! no key is built to look one up), the groups are ordered by key, and the rows are placed
//! group after group into one index buffer that every group slices. The keys come out as
//! columns, taken from each group's first row.

use std::hash::{BuildHasher, Hash, Hasher};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, ArrayRef, BooleanArray, PrimitiveArray, RecordBatch, StringArray, UInt32Array,
};
use arrow_buffer::ScalarBuffer;
use mittari_sdk::DataType;

use crate::validate::column_type;

/// The groups of a request: each group's rows, in ascending order, and its key.
#[derive(Debug)]
pub(crate) struct Partition {
    /// The rows of every group, group after group.
    rows: ScalarBuffer<u32>,
    /// Group `i`'s rows are `rows[starts[i]..starts[i + 1]]`.
    starts: Vec<usize>,
    /// The key columns: entry `i` is group `i`'s value of each group column, in request order.
    pub(crate) keys: Vec<(String, ArrayRef)>,
}

impl Partition {
    pub(crate) fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// Group `group`'s rows, ascending.
    pub(crate) fn rows(&self, group: usize) -> UInt32Array {
        let (start, end) = (self.starts[group], self.starts[group + 1]);
        UInt32Array::new(self.rows.slice(start, end - start), None)
    }

    /// The rows of the groups in `groups`, group after group, and the offset of each group's
    /// first row in them (one more offset than groups): what `compute_groups` takes.
    pub(crate) fn rows_of(&self, groups: std::ops::Range<usize>) -> (&[u32], Vec<u64>) {
        let first = self.starts[groups.start];
        let starts = self.starts[groups.start..=groups.end]
            .iter()
            .map(|&s| (s - first) as u64)
            .collect();
        (&self.rows[first..self.starts[groups.end]], starts)
    }

    /// The number of rows in each group.
    pub(crate) fn sizes(&self, groups: std::ops::Range<usize>) -> Vec<u64> {
        self.starts[groups.start..=groups.end]
            .windows(2)
            .map(|w| (w[1] - w[0]) as u64)
            .collect()
    }
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

/// A group column, its type resolved once rather than per row.
enum KeyColumn<'a> {
    Int(&'a PrimitiveArray<Int64Type>),
    Str(&'a StringArray),
    Bool(&'a BooleanArray),
    Timestamp(&'a PrimitiveArray<TimestampMicrosecondType>),
    /// Validation refuses other group column types before partitioning.
    Unsupported,
}

impl<'a> KeyColumn<'a> {
    fn new(column: &'a ArrayRef) -> Self {
        match column_type(column.data_type()) {
            Some(DataType::Int64) => KeyColumn::Int(column.as_primitive()),
            Some(DataType::String) => KeyColumn::Str(column.as_string()),
            Some(DataType::Bool) => KeyColumn::Bool(column.as_boolean()),
            Some(DataType::Timestamp) => KeyColumn::Timestamp(column.as_primitive()),
            Some(DataType::Double) | None => KeyColumn::Unsupported,
        }
    }

    fn part(&self, row: usize) -> Part<'a> {
        match self {
            KeyColumn::Int(a) if a.is_valid(row) => Part::Int(a.value(row)),
            KeyColumn::Str(a) if a.is_valid(row) => Part::Str(a.value(row)),
            KeyColumn::Bool(a) if a.is_valid(row) => Part::Bool(a.value(row)),
            KeyColumn::Timestamp(a) if a.is_valid(row) => Part::Timestamp(a.value(row)),
            _ => Part::Null,
        }
    }
}

/// Why rows could not be partitioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PartitionError {
    /// More groups than the request may form: partitioning stopped at `limit + 1`.
    TooManyGroups { limit: usize },
    /// The key columns could not be taken (an Arrow error, which validated columns do not
    /// cause).
    Keys(String),
}

/// Partitions the rows of `batch` by `columns` (all validated to exist and be groupable).
/// Groups are ordered by key: nulls first, then ascending values. Stops as soon as more than
/// `max_groups` groups form, before their keys are built.
pub(crate) fn partition(
    batch: &RecordBatch,
    columns: &[String],
    max_groups: usize,
) -> Result<Partition, PartitionError> {
    let arrays: Vec<&ArrayRef> = columns
        .iter()
        .filter_map(|c| batch.column_by_name(c))
        .collect();
    let key_columns: Vec<KeyColumn<'_>> = arrays.iter().map(|a| KeyColumn::new(a)).collect();
    let parts = |row: usize| key_columns.iter().map(move |c| c.part(row));
    let same_key = |a: usize, b: usize| parts(a).eq(parts(b));
    let hasher = foldhash::fast::RandomState::default();
    // Each row's hash, computed once: growing the table rehashes every group's first row.
    let hashes: Vec<u64> = (0..batch.num_rows())
        .map(|row| {
            let mut state = hasher.build_hasher();
            parts(row).for_each(|p| p.hash(&mut state));
            state.finish()
        })
        .collect();
    // The group of each row, and each group's first row (its key's representative).
    let mut group_of_row: Vec<u32> = Vec::with_capacity(batch.num_rows());
    let mut first_rows: Vec<usize> = Vec::new();
    let mut table: hashbrown::HashTable<u32> = hashbrown::HashTable::new();
    for row in 0..batch.num_rows() {
        let hash = hashes[row];
        let group = match table.find(hash, |&g| same_key(first_rows[g as usize], row)) {
            Some(&group) => group,
            None => {
                if first_rows.len() == max_groups {
                    return Err(PartitionError::TooManyGroups { limit: max_groups });
                }
                let group = first_rows.len() as u32;
                first_rows.push(row);
                table.insert_unique(hash, group, |&g| hashes[first_rows[g as usize]]);
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
    // Each group's key is its first row's: the key columns are those rows, taken in order.
    let first_rows =
        UInt32Array::from_iter_values(order.iter().map(|&g| first_rows[g as usize] as u32));
    let keys = columns
        .iter()
        .zip(&arrays)
        .map(|(name, array)| {
            arrow_select::take::take(array.as_ref(), &first_rows, None)
                .map(|keys| (name.clone(), keys))
        })
        .collect::<Result<_, _>>()
        .map_err(|e| PartitionError::Keys(e.to_string()))?;
    Ok(Partition {
        rows: ScalarBuffer::from(rows),
        starts,
        keys,
    })
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
        let partition = partition(&batch, &columns, 4).unwrap();
        let groups: Vec<Vec<u32>> = (0..partition.len())
            .map(|g| partition.rows(g).values().to_vec())
            .collect();
        assert_eq!(groups, vec![vec![3], vec![2], vec![0, 4], vec![1]]);
        let regions = partition.keys[0].1.as_string::<i32>();
        let years = partition.keys[1].1.as_primitive::<Int64Type>();
        let keys: Vec<(Option<&str>, i64)> = (0..4)
            .map(|g| {
                (
                    regions.is_valid(g).then(|| regions.value(g)),
                    years.value(g),
                )
            })
            .collect();
        assert_eq!(
            keys,
            vec![
                (None, 2024),
                (Some("fi"), 2023),
                (Some("fi"), 2024),
                (Some("se"), 2024)
            ]
        );
        assert_eq!(partition.keys[0].0, "region");
        assert_eq!(
            super::partition(&batch, &columns, 3).unwrap_err(),
            PartitionError::TooManyGroups { limit: 3 }
        );
    }
}
