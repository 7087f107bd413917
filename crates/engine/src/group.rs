//! Group-by, implemented once for every metric: rows are partitioned by the values of the
//! group columns and the metric runs once per partition.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use mittari_sdk::{DataType, ParamValue};

use crate::validate::column_type;

/// One group's key: the value of each group column (`None` for null), in the order given.
pub(crate) type GroupKey = Vec<Option<ParamValue>>;

/// A group's key and the request rows that belong to it, in ascending order.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) key: GroupKey,
    pub(crate) rows: Vec<u32>,
}

/// The hashable form of one key part; strings borrow from the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// Partitions the rows of `batch` by `columns` (all validated to exist and be groupable).
/// Groups are ordered by key: nulls first, then ascending values.
pub(crate) fn partition(batch: &RecordBatch, columns: &[String]) -> Vec<Group> {
    let arrays: Vec<&ArrayRef> = columns
        .iter()
        .filter_map(|c| batch.column_by_name(c))
        .collect();
    let mut groups: HashMap<Vec<Part<'_>>, Vec<u32>> = HashMap::new();
    let mut key = Vec::with_capacity(arrays.len());
    for row in 0..batch.num_rows() {
        key.clear();
        key.extend(arrays.iter().map(|a| part(a, row)));
        match groups.get_mut(key.as_slice()) {
            Some(rows) => rows.push(row as u32),
            None => {
                groups.insert(key.clone(), vec![row as u32]);
            }
        }
    }
    let mut groups: Vec<Group> = groups
        .into_iter()
        .map(|(key, rows)| Group {
            key: key.into_iter().map(Part::to_value).collect(),
            rows,
        })
        .collect();
    groups.sort_by(|a, b| compare_keys(&a.key, &b.key));
    groups
}

fn compare_keys(a: &GroupKey, b: &GroupKey) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    for (x, y) in a.iter().zip(b) {
        let order = match (x, y) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(ParamValue::Int64(x)), Some(ParamValue::Int64(y)))
            | (Some(ParamValue::Timestamp(x)), Some(ParamValue::Timestamp(y))) => x.cmp(y),
            (Some(ParamValue::String(x)), Some(ParamValue::String(y))) => x.cmp(y),
            (Some(ParamValue::Bool(x)), Some(ParamValue::Bool(y))) => x.cmp(y),
            _ => Ordering::Equal,
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
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
        let groups = partition(&batch, &["region".to_owned(), "year".to_owned()]);
        let got: Vec<(GroupKey, Vec<u32>)> = groups.into_iter().map(|g| (g.key, g.rows)).collect();
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
    }
}
