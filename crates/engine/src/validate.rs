//! Checks a request against its metric's descriptor before any plugin code runs, and
//! prepares what the plugin receives: the declared columns in their declared types, and the
//! complete parameter set.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, ArrayRef, Float64Array, RecordBatch, RecordBatchOptions, TimestampMicrosecondArray,
};
use arrow_schema::{DataType as Arrow, Field as ArrowField, Schema, TimeUnit};
use mittari_sdk::scan::{count_refused, first_refused};
use mittari_sdk::{ColumnSpec, DataType, MetricDescriptor, ParamValue, Params, time};

use crate::error::{Field, Violation};

/// At most this many violations are reported for one request: enough to fix several
/// problems per round trip, few enough to read.
const MAX_VIOLATIONS: usize = 20;

/// The type a column of the request has, in the engine's terms; `None` for an Arrow type the
/// engine does not accept.
pub(crate) fn column_type(data_type: &Arrow) -> Option<DataType> {
    match data_type {
        Arrow::Int64 => Some(DataType::Int64),
        Arrow::Float64 => Some(DataType::Double),
        Arrow::Utf8 => Some(DataType::String),
        Arrow::Boolean => Some(DataType::Bool),
        Arrow::Timestamp(TimeUnit::Microsecond, _) => Some(DataType::Timestamp),
        _ => None,
    }
}

/// Completes the parameters: request values, then `defaults` (descriptor defaults with the
/// admin's configuration applied). Unknown, mistyped, out-of-range and missing required
/// parameters are violations.
pub(crate) fn params(
    descriptor: &MetricDescriptor,
    given: BTreeMap<String, ParamValue>,
    violations: &mut Vec<Violation>,
) -> Params {
    let mut params = Params::new();
    for (name, value) in given {
        let field = Field::Parameter { name: name.clone() };
        match descriptor.parameter_spec(&name) {
            None => {
                let known: Vec<&str> = descriptor
                    .parameters
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect();
                let hint = if known.is_empty() {
                    format!("metric {} takes no parameters", descriptor.name)
                } else {
                    format!("metric {} takes: {}", descriptor.name, known.join(", "))
                };
                violations.push(Violation::new(
                    field,
                    format!("unknown parameter {name}; {hint}"),
                ));
            }
            Some(spec) => match value.conform_to(spec) {
                Ok(value) => params.insert(name, value),
                Err(reason) => violations.push(Violation::new(field, reason)),
            },
        }
    }
    for spec in &descriptor.parameters {
        if params.get(&spec.name).is_some() {
            continue;
        }
        match &spec.default {
            Some(default) => params.insert(spec.name.clone(), default.clone()),
            None if !spec.required => {}
            None if violations.iter().all(|v| {
                v.field
                    != Field::Parameter {
                        name: spec.name.clone(),
                    }
            }) =>
            {
                violations.push(Violation::new(
                    Field::Parameter {
                        name: spec.name.clone(),
                    },
                    format!(
                        "required parameter {} is missing: {}",
                        spec.name, spec.description
                    ),
                ));
            }
            None => {}
        }
    }
    params
}

/// Checks the group-by columns exist, are named once and are groupable.
pub(crate) fn group_by(batch: &RecordBatch, columns: &[String], violations: &mut Vec<Violation>) {
    // Linear in the names: a request naming many columns costs no more than reading them.
    let mut seen = std::collections::HashSet::with_capacity(columns.len());
    for name in columns {
        let field = Field::GroupBy { name: name.clone() };
        if !seen.insert(name.as_str()) {
            violations.push(Violation::new(
                field,
                format!("column {name} is named twice in group_by"),
            ));
            continue;
        }
        match batch.schema().field_with_name(name).map(|f| column_type(f.data_type())) {
            Err(_) => violations.push(Violation::new(
                field,
                format!("column {name} is not in the input; the input has: {}", column_names(batch)),
            )),
            Ok(Some(DataType::Double)) => violations.push(Violation::new(
                field,
                format!("cannot group by double column {name}; group by a string, int64, bool or timestamp column"),
            )),
            Ok(_) => {}
        }
    }
}

fn column_names(batch: &RecordBatch) -> String {
    let schema = batch.schema();
    if schema.fields().is_empty() {
        "no columns".to_owned()
    } else {
        capped_list(schema.fields().iter().map(|f| f.name().as_str()))
    }
}

/// Items listed in one message at most; the rest are counted ("and 99 990 more"), so a request
/// with thousands of columns gets a readable error that fits in gRPC metadata.
pub(crate) const MAX_LISTED: usize = 20;

/// `items` joined with ", ", the first [`MAX_LISTED`] of them and a count of the rest.
pub(crate) fn capped_list<'a>(items: impl ExactSizeIterator<Item = &'a str>) -> String {
    let total = items.len();
    let mut text = items.take(MAX_LISTED).collect::<Vec<_>>().join(", ");
    if total > MAX_LISTED {
        text.push_str(&format!(" and {} more", total - MAX_LISTED));
    }
    text
}

/// Checks the input columns against the descriptor and returns the batch the plugin gets:
/// the declared columns that are present, in declaration order, in their declared types.
pub(crate) fn input(
    descriptor: &MetricDescriptor,
    batch: &RecordBatch,
    params: &Params,
    violations: &mut Vec<Violation>,
) -> Result<RecordBatch, String> {
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for spec in &descriptor.inputs {
        let Some(column) = batch.column_by_name(&spec.name) else {
            if spec.required {
                violations.push(Violation::new(
                    Field::Column {
                        name: spec.name.clone(),
                        row: None,
                    },
                    format!(
                        "required column {} ({}) is missing: {}; the input has: {}",
                        spec.name,
                        spec.data_type,
                        spec.description,
                        column_names(batch)
                    ),
                ));
            }
            continue;
        };
        if let Some(column) = conform_column(spec, column, None, violations) {
            fields.push(ArrowField::new(
                &spec.name,
                spec.data_type.arrow_type(),
                !spec.required,
            ));
            columns.push(column);
        }
    }
    // Columns the parameters name (covariates): passed on in their own type, after the
    // declared ones.
    for (parameter, name) in named_columns(descriptor, params) {
        if descriptor.input_column(&name).is_some() || fields.iter().any(|f| f.name() == &name) {
            continue;
        }
        let field = Field::Column {
            name: name.clone(),
            row: None,
        };
        let Some(column) = batch.column_by_name(&name) else {
            violations.push(Violation::new(
                field,
                format!(
                    "parameter {parameter} names column {name}, which the input lacks; the input has: {}",
                    column_names(batch)
                ),
            ));
            continue;
        };
        match column_type(column.data_type()) {
            Some(data_type) => {
                if let Some(doubles) = column.as_primitive_opt::<Float64Type>() {
                    check_finite(
                        &ColumnSpec::double(&name, "a named column"),
                        doubles,
                        0,
                        violations,
                    );
                }
                // Timestamps in the UTC the SDK documents, as for declared columns.
                let column: ArrayRef = if data_type == DataType::Timestamp {
                    Arc::new(
                        column
                            .as_primitive::<TimestampMicrosecondType>()
                            .clone()
                            .with_timezone("UTC"),
                    )
                } else {
                    Arc::clone(column)
                };
                fields.push(ArrowField::new(&name, column.data_type().clone(), true));
                columns.push(column);
            }
            None => violations.push(Violation::new(
                field,
                format!(
                    "column {name} (named by parameter {parameter}) is {}; it must hold numbers, text, booleans or timestamps",
                    column.data_type()
                ),
            )),
        }
    }
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    // The columns come from one batch, so this cannot fail; if it ever did, the request fails
    // rather than the plugin computing over a different table.
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)
        .map_err(|e| format!("cannot assemble the validated input: {e}"))
}

/// Checks the request's table inputs against the descriptor's ([`mittari_sdk::TableInputSpec`]) as
/// [`input`] checks the main input, and returns what the plugin gets, in the descriptor's
/// order. Violations point into the table (`tables.NAME.column[row]`).
pub(crate) fn table_inputs(
    descriptor: &MetricDescriptor,
    tables: &[(String, RecordBatch)],
    params: &Params,
    violations: &mut Vec<Violation>,
) -> Result<Vec<(String, RecordBatch)>, String> {
    let table_field = |table: &str| Field::Table {
        table: table.to_owned(),
        column: None,
        row: None,
    };
    for (i, (name, _)) in tables.iter().enumerate() {
        if descriptor.table_input_spec(name).is_none() {
            let declared: Vec<&str> = descriptor
                .table_inputs
                .iter()
                .map(|t| t.name.as_str())
                .collect();
            let hint = if declared.is_empty() {
                format!("metric {} reads no table inputs", descriptor.name)
            } else {
                format!("metric {} reads: {}", descriptor.name, declared.join(", "))
            };
            violations.push(Violation::new(
                table_field(name),
                format!("unknown table input {name}; {hint}"),
            ));
        } else if tables[..i].iter().any(|(n, _)| n == name) {
            violations.push(Violation::new(
                table_field(name),
                format!("table input {name} is sent twice; send it once"),
            ));
        }
    }
    let mut validated = Vec::new();
    for spec in &descriptor.table_inputs {
        let Some((_, batch)) = tables.iter().find(|(n, _)| *n == spec.name) else {
            if spec.required {
                violations.push(Violation::new(
                    table_field(&spec.name),
                    format!(
                        "required table input {} is missing: {}",
                        spec.name, spec.description
                    ),
                ));
            }
            continue;
        };
        // The table checked as a main input of its own: its declared columns, and the
        // columns the parameters name in it.
        let Some(as_input) = descriptor.table_as_input(&spec.name) else {
            continue;
        };
        let before = violations.len();
        let table = input(&as_input, batch, params, violations)?;
        for violation in &mut violations[before..] {
            let (column, row) = match &violation.field {
                Field::Column { name, row } => (Some(name.clone()), *row),
                _ => (None, None),
            };
            violation.field = Field::Table {
                table: spec.name.clone(),
                column,
                row,
            };
            violation.description = violation
                .description
                .replace("the input", &format!("table input {}", spec.name));
        }
        validated.push((spec.name.clone(), table));
    }
    Ok(validated)
}

/// (parameter, column) for every column the request's parameters name.
pub(crate) fn named_columns(
    descriptor: &MetricDescriptor,
    params: &Params,
) -> Vec<(String, String)> {
    descriptor.columns_named_by(params.iter().filter_map(|(parameter, value)| match value {
        ParamValue::String(value) => Some((parameter.as_str(), value.as_str())),
        _ => None,
    }))
}

/// Checks the columns `columns` of a part of an input read in chunks, `rows_before` rows into
/// it, as a whole input's are checked: their type, empty cells where a value is required,
/// finite numbers, timestamps, ranges. Rows are numbered over the whole input (0-based).
pub fn check_part(
    descriptor: &MetricDescriptor,
    batch: &RecordBatch,
    columns: &[&str],
    rows_before: u64,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    for spec in descriptor
        .inputs
        .iter()
        .filter(|spec| columns.contains(&spec.name.as_str()))
    {
        if let Some(column) = batch.column_by_name(&spec.name) {
            conform_column(spec, column, Some(rows_before), &mut violations);
        }
    }
    violations
}

/// `rows_before`: the rows of the input before `column`'s when it is a part of it read in
/// chunks (then counts of further faults are not given: they would be the part's only).
fn conform_column(
    spec: &ColumnSpec,
    column: &ArrayRef,
    rows_before: Option<u64>,
    violations: &mut Vec<Violation>,
) -> Option<ArrayRef> {
    let offset = rows_before.unwrap_or(0);
    let field = |row: Option<usize>| Field::Column {
        name: spec.name.clone(),
        row: row.map(|r| r as u64 + offset),
    };
    let actual = column_type(column.data_type());
    let column: ArrayRef = match (spec.data_type, actual) {
        (expected, Some(actual)) if expected == actual => match expected {
            // Normalize any timestamp time zone to the UTC the SDK documents.
            DataType::Timestamp => Arc::new(
                column
                    .as_primitive::<TimestampMicrosecondType>()
                    .clone()
                    .with_timezone("UTC"),
            ),
            _ => Arc::clone(column),
        },
        // Widening int64 to double is lossless for any realistic value.
        (DataType::Double, Some(DataType::Int64)) => Arc::new(
            column
                .as_primitive::<Int64Type>()
                .unary::<_, Float64Type>(|v| v as f64),
        ),
        (expected, actual) => {
            let actual =
                actual.map_or_else(|| column.data_type().to_string(), |t| t.name().to_owned());
            violations.push(Violation::new(
                field(None),
                format!(
                    "column {} must be {expected}, got {actual}: {}",
                    spec.name, spec.description
                ),
            ));
            return None;
        }
    };
    if spec.required && column.null_count() > 0 {
        let first = (0..column.len()).find(|&i| column.is_null(i)).unwrap_or(0);
        let in_all = match rows_before {
            None => format!(" ({} empty rows in all)", column.null_count()),
            Some(_) => String::new(),
        };
        violations.push(Violation::new(
            field(Some(first)),
            format!(
                "column {} is required but row {} is empty{in_all}; give every row a value",
                spec.name,
                first as u64 + offset
            ),
        ));
        return None;
    }
    if let Some(doubles) = column.as_primitive_opt::<Float64Type>() {
        check_finite(spec, doubles, offset, violations);
    }
    if let Some(timestamps) = column.as_primitive_opt::<TimestampMicrosecondType>() {
        check_timestamps(spec, timestamps, offset, violations);
    }
    if let (Some(range), true) = (spec.range, spec.data_type.is_numeric()) {
        // Values that are not finite are reported by check_finite, not as outside the range.
        let (min, max) = (
            range.min.unwrap_or(f64::NEG_INFINITY),
            range.max.unwrap_or(f64::INFINITY),
        );
        let inside = |v: f64| !v.is_finite() || (v >= min && v <= max);
        // The first row outside and how many more are (counted when the whole column is here).
        fn first_and_more<T: Copy>(
            values: &[T],
            nulls: Option<&arrow_buffer::NullBuffer>,
            inside: impl Fn(T) -> bool + Copy,
            count_more: bool,
        ) -> Option<(usize, usize)> {
            let row = first_refused(values, nulls, inside)?;
            let more = if count_more {
                count_refused(values, nulls, row + 1, inside)
            } else {
                0
            };
            Some((row, more))
        }
        let count_more = rows_before.is_none();
        let found = match column.as_primitive_opt::<Int64Type>() {
            Some(ints) => first_and_more(
                ints.values(),
                ints.nulls(),
                |v| inside(v as f64),
                count_more,
            )
            .map(|(row, more)| (row, ints.value(row) as f64, more)),
            None => {
                let doubles = column.as_primitive::<Float64Type>();
                first_and_more(doubles.values(), doubles.nulls(), inside, count_more)
                    .map(|(row, more)| (row, doubles.value(row), more))
            }
        };
        if let Some((row, value, more)) = found {
            let also = if more > 0 {
                format!(" ({more} more rows are outside it too)")
            } else {
                String::new()
            };
            violations.push(Violation::new(
                field(Some(row)),
                format!(
                    "{} {value} at row {} is outside the allowed range {range}{also}; {}",
                    spec.name,
                    row as u64 + offset,
                    spec.description
                ),
            ));
        }
    }
    Some(column)
}

fn check_finite(
    spec: &ColumnSpec,
    column: &Float64Array,
    offset: u64,
    violations: &mut Vec<Violation>,
) {
    if let Some(row) = first_refused(column.values(), column.nulls(), f64::is_finite) {
        let value = column.value(row);
        let row = row as u64 + offset;
        violations.push(Violation::new(
            Field::Column {
                name: spec.name.clone(),
                row: Some(row),
            },
            format!(
                "{} is {value} at row {row}; every value must be a finite number",
                spec.name
            ),
        ));
    }
}

/// Timestamps outside years 1 to 9999 are refused, so that no metric meets calendar arithmetic
/// that overflows (see `mittari_sdk::time::MIN_TIMESTAMP`).
fn check_timestamps(
    spec: &ColumnSpec,
    column: &TimestampMicrosecondArray,
    offset: u64,
    violations: &mut Vec<Violation>,
) {
    let bad = first_refused(column.values(), column.nulls(), time::is_accepted_timestamp);
    if let Some(row) = bad {
        let why = time::check_timestamp(column.value(row))
            .err()
            .unwrap_or_default();
        let row = row as u64 + offset;
        violations.push(Violation::new(
            Field::Column {
                name: spec.name.clone(),
                row: Some(row),
            },
            format!("{} at row {row}: {why}", spec.name),
        ));
    }
}

/// Trims a violation list to what is reported.
pub(crate) fn truncate(violations: &mut Vec<Violation>) {
    violations.truncate(MAX_VIOLATIONS);
}

#[cfg(test)]
mod tests {
    use arrow_array::{Int64Array, StringArray};
    use mittari_sdk::ParameterSpec;

    use super::*;

    /// What a check expects: the result's items, or violations as (field path, fragment).
    type Expect<T> = Result<Vec<T>, Vec<(&'static str, &'static str)>>;

    fn descriptor() -> MetricDescriptor {
        MetricDescriptor::new("m", "1", "test")
            .input(
                ColumnSpec::int64("score", "a score")
                    .required()
                    .range(0.0, 10.0),
            )
            .input(ColumnSpec::double("amount", "an amount"))
            .parameter(ParameterSpec::double("level", 0.95, "a level").range(0.5, 0.999))
            .parameter(ParameterSpec::new("since", DataType::Timestamp, "a start"))
            .parameter(ParameterSpec::new("cap", DataType::Double, "a cap").optional())
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).unwrap()
    }

    /// Validates `columns` against the test descriptor and returns the violation paths and
    /// descriptions, or the projected schema's (name, type) pairs when there are none.
    fn check_input(columns: Vec<(&str, ArrayRef)>, expect: Expect<(&str, Arrow)>) {
        let mut violations = Vec::new();
        let projected = input(
            &descriptor(),
            &batch(columns),
            &Params::new(),
            &mut violations,
        )
        .unwrap();
        match expect {
            Ok(schema) => {
                assert_eq!(violations, vec![]);
                let got: Vec<(String, Arrow)> = projected
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), f.data_type().clone()))
                    .collect();
                let want: Vec<(String, Arrow)> =
                    schema.into_iter().map(|(n, t)| (n.to_owned(), t)).collect();
                assert_eq!(got, want);
            }
            Err(expected) => {
                assert_eq!(violations.len(), expected.len(), "{violations:?}");
                for (violation, (path, fragment)) in violations.iter().zip(expected) {
                    assert_eq!(violation.field.path(), path);
                    assert!(
                        violation.description.contains(fragment),
                        "{:?} lacks {fragment:?}",
                        violation.description
                    );
                }
            }
        }
    }

    fn ints(values: Vec<Option<i64>>) -> ArrayRef {
        Arc::new(Int64Array::from(values))
    }

    #[test]
    fn input_columns() {
        // Declared columns only, in declaration order; int64 widened to double.
        check_input(
            vec![
                ("note", Arc::new(StringArray::from(vec!["x"]))),
                ("amount", ints(vec![Some(3)])),
                ("score", ints(vec![Some(7)])),
            ],
            Ok(vec![("score", Arrow::Int64), ("amount", Arrow::Float64)]),
        );
        check_input(
            vec![("amount", ints(vec![Some(3)]))],
            Err(vec![(
                "input.score",
                "required column score (int64) is missing",
            )]),
        );
        check_input(
            vec![("score", Arc::new(StringArray::from(vec!["7"])))],
            Err(vec![(
                "input.score",
                "column score must be int64, got string",
            )]),
        );
        check_input(
            vec![("score", ints(vec![Some(1), None, None]))],
            Err(vec![(
                "input.score[1]",
                "row 1 is empty (2 empty rows in all)",
            )]),
        );
        check_input(
            vec![("score", ints(vec![Some(1), Some(11), Some(-1), Some(12)]))],
            Err(vec![(
                "input.score[1]",
                "score 11 at row 1 is outside the allowed range 0..=10 (2 more rows are outside it too)",
            )]),
        );
        check_input(
            vec![
                ("score", ints(vec![Some(1), Some(2)])),
                (
                    "amount",
                    Arc::new(Float64Array::from(vec![1.0, f64::INFINITY])),
                ),
            ],
            Err(vec![(
                "input.amount[1]",
                "amount is inf at row 1; every value must be a finite number",
            )]),
        );
        // What an empty slot holds means nothing: an infinity under a null is not reported,
        // the next value out of range is.
        let mut amounts = vec![1.0; 3000];
        amounts[1500] = f64::INFINITY;
        let mut valid = vec![true; 3000];
        valid[1500] = false;
        let mut scores = vec![Some(5); 3000];
        scores[2999] = Some(-3);
        check_input(
            vec![
                ("score", ints(scores)),
                (
                    "amount",
                    Arc::new(Float64Array::new(
                        amounts.into(),
                        Some(arrow_buffer::NullBuffer::from(valid)),
                    )),
                ),
            ],
            Err(vec![(
                "input.score[2999]",
                "score -3 at row 2999 is outside the allowed range 0..=10; a score",
            )]),
        );
    }

    fn check_params(given: Vec<(&str, ParamValue)>, expect: Expect<(&str, ParamValue)>) {
        let mut violations = Vec::new();
        let given = given.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let got = params(&descriptor(), given, &mut violations);
        match expect {
            Ok(want) => {
                assert_eq!(violations, vec![]);
                assert_eq!(
                    got,
                    want.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                );
            }
            Err(expected) => {
                let got: Vec<(String, &str)> = violations
                    .iter()
                    .map(|v| (v.field.path(), v.description.as_str()))
                    .collect();
                assert_eq!(got.len(), expected.len(), "{got:?}");
                for ((path, description), (want_path, fragment)) in got.iter().zip(expected) {
                    assert_eq!(path, want_path);
                    assert!(
                        description.contains(fragment),
                        "{description:?} lacks {fragment:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn parameters() {
        // Defaults fill in; strings parse as timestamps; ints widen to doubles.
        check_params(
            vec![("since", ParamValue::String("2024-01-31".into()))],
            Ok(vec![
                ("level", ParamValue::Double(0.95)),
                ("since", ParamValue::Timestamp(1_706_659_200_000_000)),
            ]),
        );
        check_params(
            vec![
                ("since", ParamValue::Timestamp(0)),
                ("level", ParamValue::Double(0.9)),
            ],
            Ok(vec![
                ("level", ParamValue::Double(0.9)),
                ("since", ParamValue::Timestamp(0)),
            ]),
        );
        check_params(
            vec![],
            Err(vec![(
                "parameters.since",
                "required parameter since is missing",
            )]),
        );
        // An optional parameter without a default is absent unless given, then conformed.
        check_params(
            vec![
                ("since", ParamValue::Timestamp(0)),
                ("cap", ParamValue::Int64(3)),
            ],
            Ok(vec![
                ("cap", ParamValue::Double(3.0)),
                ("level", ParamValue::Double(0.95)),
                ("since", ParamValue::Timestamp(0)),
            ]),
        );
        check_params(
            vec![
                ("since", ParamValue::Timestamp(0)),
                ("colour", ParamValue::Bool(true)),
                ("level", ParamValue::Int64(2)),
            ],
            Err(vec![
                (
                    "parameters.colour",
                    "unknown parameter colour; metric m takes: level, since, cap",
                ),
                (
                    "parameters.level",
                    "2 is outside the allowed range 0.5..=0.999",
                ),
            ]),
        );
        check_params(
            vec![("since", ParamValue::String("yesterday".into()))],
            Err(vec![("parameters.since", "not an ISO 8601 date")]),
        );
    }

    mod properties {
        use std::sync::Arc;

        use arrow_array::{BooleanArray, Float64Array, Int64Array, StringArray};
        use proptest::prelude::*;

        use super::*;

        fn column() -> impl Strategy<Value = (String, ArrayRef)> {
            let name = prop_oneof![
                Just("score".to_owned()),
                Just("amount".to_owned()),
                "[a-z]{1,4}"
            ];
            let array = prop_oneof![
                proptest::collection::vec(proptest::option::of(any::<i64>()), 0..12)
                    .prop_map(|v| Arc::new(Int64Array::from(v)) as ArrayRef),
                proptest::collection::vec(proptest::option::of(any::<f64>()), 0..12)
                    .prop_map(|v| Arc::new(Float64Array::from(v)) as ArrayRef),
                proptest::collection::vec(proptest::option::of(".{0,4}"), 0..12)
                    .prop_map(|v| Arc::new(StringArray::from(v)) as ArrayRef),
                proptest::collection::vec(proptest::option::of(any::<bool>()), 0..12)
                    .prop_map(|v| Arc::new(BooleanArray::from(v)) as ArrayRef),
            ];
            (name, array)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Any table, typed or not, with nulls, NaN and infinities anywhere: validation
            /// projects the declared columns or says what is wrong, field by field; it never
            /// panics, and what passes holds no null where a value is required.
            #[test]
            fn arbitrary_tables_validate_or_name_the_fault(
                columns in proptest::collection::vec(column(), 0..4),
                rows in 0usize..12,
            ) {
                let mut seen = std::collections::HashSet::new();
                let columns: Vec<(String, ArrayRef)> = columns
                    .into_iter()
                    .filter(|(name, _)| seen.insert(name.clone()))
                    .map(|(name, array)| {
                        let len = array.len().min(rows);
                        (name, array.slice(0, len))
                    })
                    .collect();
                let Some(len) = columns.iter().map(|(_, a)| a.len()).min() else {
                    return Ok(());
                };
                let columns: Vec<(String, ArrayRef)> = columns
                    .into_iter()
                    .map(|(name, array)| (name, array.slice(0, len)))
                    .collect();
                let batch = RecordBatch::try_from_iter(columns).unwrap();
                let mut violations = Vec::new();
                let projected = input(&descriptor(), &batch, &Params::new(), &mut violations);
                prop_assert!(violations.iter().all(|v| !v.description.is_empty()));
                if let (Ok(projected), true) = (projected, violations.is_empty()) {
                    let score = projected.column_by_name("score");
                    prop_assert!(score.is_some_and(|s| s.null_count() == 0));
                }
            }

            /// Any parameter values: a complete parameter set, or violations naming them.
            #[test]
            fn arbitrary_parameters_validate_or_name_the_fault(
                level in proptest::option::of(any::<f64>()),
                since in proptest::option::of(any::<i64>()),
                extra in proptest::option::of("[a-z]{1,5}"),
            ) {
                let mut given = BTreeMap::new();
                if let Some(level) = level {
                    given.insert("level".to_owned(), ParamValue::Double(level));
                }
                if let Some(since) = since {
                    given.insert("since".to_owned(), ParamValue::Timestamp(since));
                }
                if let Some(extra) = extra {
                    given.insert(extra, ParamValue::Bool(true));
                }
                let mut violations = Vec::new();
                let _ = params(&descriptor(), given, &mut violations);
                prop_assert!(violations.iter().all(|v| v.field.path().starts_with("parameters.")));
            }
        }
    }
}
