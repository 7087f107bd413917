//! Extreme but type-valid requests for any metric, generated from its descriptor alone.
//!
//! A metric is only as robust as the worst request a client can send it. This generator
//! produces requests a well-behaved client would rarely send but a hostile or buggy one will:
//! the ends of every declared range, the ends of `i64` and `f64`, timestamps near the ends of
//! time, constant and strictly increasing columns, empty and one-row tables, all-null optional
//! columns, duplicate keys, long and odd strings, parameters at and beyond their bounds. Every
//! such request must come back as a result or a clear `INVALID_ARGUMENT`, in bounded time and
//! memory, never a crash, an `INTERNAL` or a NaN. The end-to-end tests send them to a real
//! server; `mittari plugin check` sends them to a plugin under test.
//!
//! Generation is seeded and deterministic: a failing case is reproduced from its seed and
//! index, which [`ProbeCase::label`] names.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{Field, Schema};
use mittari_sdk::{ColumnSpec, DataType, MetricDescriptor, ParamValue, ParameterSpec, Range};

/// Microseconds in a 30-day month: the step of "a month apart" timestamp columns.
const MONTH_MICROS: i64 = 30 * 86_400 * 1_000_000;

/// One generated request.
#[derive(Debug, Clone)]
pub struct ProbeCase {
    /// `metric#index (seed S): what was generated`, for a failure message.
    pub label: String,
    pub params: BTreeMap<String, ParamValue>,
    pub input: RecordBatch,
    pub group_by: Vec<String>,
}

/// `count` requests for `descriptor`, generated from `seed`.
pub fn extreme_cases(descriptor: &MetricDescriptor, seed: u64, count: usize) -> Vec<ProbeCase> {
    (0..count)
        .map(|index| {
            let mut rng = SplitMix(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            generate(
                descriptor,
                &mut rng,
                format!("{}#{index} (seed {seed})", descriptor.name),
            )
        })
        .collect()
}

/// How many requests [`shaped_cases`] makes.
pub const SHAPES: usize = 6;

/// How a shape lays out a column, `None` leaving it out.
type LayoutOf = fn(&ColumnSpec) -> Option<Layout>;

/// Requests of the shapes every metric meets, with ordinary values: no rows, one row, every
/// optional column null, every string key the same, and `large_rows` rows (once with the
/// required columns, once with every column; the last two cases). Labels name the shape.
pub fn shaped_cases(descriptor: &MetricDescriptor, large_rows: usize) -> Vec<ProbeCase> {
    let mut rng = SplitMix(0x5EED);
    let shapes: [(&str, usize, LayoutOf); SHAPES] = [
        ("required columns", 0, |spec| {
            spec.required.then_some(Layout::Ordinary)
        }),
        ("every column", 1, |_| Some(Layout::Ordinary)),
        ("optional columns all null", 16, |spec| {
            Some(if spec.required {
                Layout::Ordinary
            } else {
                Layout::Null
            })
        }),
        ("one key repeated", 64, |spec| {
            Some(if spec.data_type == DataType::String {
                Layout::Constant
            } else {
                Layout::Ordinary
            })
        }),
        ("required columns", large_rows, |spec| {
            spec.required.then_some(Layout::Ordinary)
        }),
        ("every column", large_rows, |_| Some(Layout::Ordinary)),
    ];
    shapes
        .into_iter()
        .map(|(shape, rows, layout_of)| {
            let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = descriptor
                .inputs
                .iter()
                .filter_map(|spec| {
                    let layout = layout_of(spec)?;
                    Some((
                        Field::new(&spec.name, spec.data_type.arrow_type(), true),
                        column(spec, layout, rows, &mut rng),
                    ))
                })
                .unzip();
            let rows_text = if rows == 1 {
                "1 row".to_owned()
            } else {
                format!("{rows} rows")
            };
            let label = format!("{}: {rows_text}, {shape}", descriptor.name);
            ProbeCase {
                label,
                params: required_parameters(descriptor),
                input: batch(fields, columns, rows),
                group_by: Vec::new(),
            }
        })
        .collect()
}

/// Ordinary values for the required parameters that have no default: numbers at the low end
/// of their range, the first allowed string, and timestamps a year apart from 2023-01-01 in
/// declaration order (so a period_start comes before its period_end).
fn required_parameters(descriptor: &MetricDescriptor) -> BTreeMap<String, ParamValue> {
    const YEAR_MICROS: i64 = 365 * 86_400 * 1_000_000;
    let mut next_timestamp = 1_672_531_200_000_000; // 2023-01-01
    let mut params = BTreeMap::new();
    for spec in descriptor
        .parameters
        .iter()
        .filter(|p| p.required && p.default.is_none())
    {
        let (low, _) = ordinary_bounds(spec.range);
        let value = match spec.data_type {
            DataType::Int64 => ParamValue::Int64(low.ceil() as i64),
            DataType::Double => ParamValue::Double(low),
            DataType::Bool => ParamValue::Bool(false),
            DataType::String => match spec.allowed_values.first() {
                Some(first) => ParamValue::String(first.clone()),
                None => ParamValue::String("a".to_owned()),
            },
            DataType::Timestamp => {
                next_timestamp += YEAR_MICROS;
                ParamValue::Timestamp(next_timestamp - YEAR_MICROS)
            }
        };
        params.insert(spec.name.clone(), value);
    }
    params
}

fn batch(fields: Vec<Field>, columns: Vec<ArrayRef>, rows: usize) -> RecordBatch {
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .unwrap_or_else(|_| RecordBatch::new_empty(Arc::new(Schema::empty())))
}

/// How a column's values are laid out over the rows.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// Every row the same extreme value.
    Constant,
    /// Each row an independent pick from the extreme values.
    Mixed,
    /// Strictly increasing from an extreme start (a month apart for timestamps).
    Ascending,
    /// Every row null (optional columns only).
    Null,
    /// Values a shop's data would have: spread over the declared range (or 0..1000), timestamps
    /// to the second over three years, a distinct string key per row (one row per customer;
    /// repeated keys are a shape of their own).
    Ordinary,
}

fn generate(descriptor: &MetricDescriptor, rng: &mut SplitMix, mut label: String) -> ProbeCase {
    let rows = *rng.pick(&[0usize, 1, 2, 3, 5, 16, 64, 200]);
    // Sometimes only the required columns, sometimes all of them, sometimes a random subset.
    let coverage = rng.below(3);
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    let mut described = Vec::new();
    for spec in &descriptor.inputs {
        let present = spec.required || coverage == 1 || (coverage == 2 && rng.below(2) == 0);
        if !present {
            continue;
        }
        let layout = match rng.below(if spec.required { 3 } else { 4 }) {
            0 => Layout::Constant,
            1 => Layout::Mixed,
            2 => Layout::Ascending,
            _ => Layout::Null,
        };
        described.push(format!("{}:{layout:?}", spec.name));
        fields.push(Field::new(&spec.name, spec.data_type.arrow_type(), true));
        columns.push(column(spec, layout, rows, rng));
    }
    let mut group_by = Vec::new();
    if rng.below(4) == 0
        && let Some(spec) = descriptor
            .inputs
            .iter()
            .find(|c| c.data_type == DataType::String && fields.iter().any(|f| f.name() == &c.name))
    {
        group_by.push(spec.name.clone());
    }
    let mut params = BTreeMap::new();
    for spec in &descriptor.parameters {
        if spec.names_columns {
            // Columns of this input (a covariate the metric must handle in any type), now
            // and then one it lacks (which validation must refuse).
            if rng.below(3) == 0 || fields.is_empty() {
                continue;
            }
            let value = match rng.below(4) {
                0 => "no_such_column".to_owned(),
                1 => format!("{},{}", rng.pick(&fields).name(), rng.pick(&fields).name()),
                _ => rng.pick(&fields).name().clone(),
            };
            let value = ParamValue::String(value);
            described.push(format!("{}={value:?}", spec.name));
            params.insert(spec.name.clone(), value);
            continue;
        }
        if let Some(value) = parameter(spec, rng) {
            described.push(format!("{}={value:?}", spec.name));
            params.insert(spec.name.clone(), value);
        }
    }
    label.push_str(&format!(": {rows} rows"));
    if !described.is_empty() {
        label.push_str(&format!(", {}", described.join(", ")));
    }
    if !group_by.is_empty() {
        label.push_str(&format!(", group by {}", group_by.join(",")));
    }
    ProbeCase {
        label,
        params,
        input: batch(fields, columns, rows),
        group_by,
    }
}

/// Where ordinary values of a column with `range` lie: 0 to 1000 clipped to the range, or the
/// first 1000 above its minimum when that is above 1000 (always within the range).
fn ordinary_bounds(range: Option<Range>) -> (f64, f64) {
    let (min, max) = bounds(range, -1e15, 1e15);
    let low = min.max(0.0).min(max);
    (low, max.min(low + 1000.0))
}

fn bounds(range: Option<Range>, low: f64, high: f64) -> (f64, f64) {
    let range = range.unwrap_or_default();
    (range.min.unwrap_or(low), range.max.unwrap_or(high))
}

/// Extreme and ordinary doubles within `range`.
fn doubles(range: Option<Range>) -> Vec<f64> {
    let (min, max) = bounds(range, -f64::MAX, f64::MAX);
    let candidates = [
        min,
        max,
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        f64::MIN_POSITIVE,
        5e-324,
        1e-300,
        123.456,
        1e15,
        1e154,
        1e300,
        -1e300,
        1e308,
        -1e308,
        f64::MAX,
        -f64::MAX,
    ];
    candidates
        .into_iter()
        .filter(|v| *v >= min && *v <= max)
        .collect()
}

/// Extreme and ordinary integers within `range`.
fn integers(range: Option<Range>) -> Vec<i64> {
    let (min, max) = bounds(range, i64::MIN as f64, i64::MAX as f64);
    let (min, max) = (min.ceil() as i64, max.floor() as i64);
    let candidates = [
        min,
        max,
        min.saturating_add(1),
        max.saturating_sub(1),
        0,
        1,
        2,
        -1,
        10,
        1000,
        100_000,
        2_000_000_000,
        1 << 53,
        i64::MAX,
        i64::MIN,
    ];
    candidates
        .into_iter()
        .filter(|v| *v >= min && *v <= max)
        .collect()
}

fn timestamps() -> Vec<i64> {
    vec![
        i64::MIN,
        i64::MIN + MONTH_MICROS,
        i64::MAX,
        i64::MAX - MONTH_MICROS,
        0,
        -1,
        1_704_067_200_000_000,   // 2024-01-01
        1_735_689_599_999_999,   // 2024-12-31T23:59:59.999999
        253_402_300_799_000_000, // 9999-12-31T23:59:59
        -62_135_596_800_000_000, // 0001-01-01
    ]
}

fn strings() -> Vec<String> {
    vec![
        String::new(),
        "a".to_owned(),
        "customer@example.com".to_owned(),
        "x".repeat(1000),
        "rivi\nkaksi\t\"lainaus\"".to_owned(),
        "\u{0}".to_owned(),
        "äöå €".to_owned(),
    ]
}

fn column(spec: &ColumnSpec, layout: Layout, rows: usize, rng: &mut SplitMix) -> ArrayRef {
    match spec.data_type {
        DataType::Int64 => {
            let pool = integers(spec.range);
            let (_, max) = bounds(spec.range, i64::MIN as f64, i64::MAX as f64);
            let max = max.floor() as i64;
            let start = *rng.pick(&pool);
            let values: Vec<Option<i64>> = (0..rows)
                .map(|row| match layout {
                    Layout::Null => None,
                    Layout::Constant => Some(start),
                    Layout::Mixed => Some(*rng.pick(&pool)),
                    Layout::Ascending => Some(start.saturating_add(row as i64).min(max)),
                    Layout::Ordinary => {
                        let (low, high) = ordinary_bounds(spec.range);
                        let (low, high) = (low.ceil() as i64, high.floor() as i64);
                        Some(low + rng.below((high - low + 1).max(1) as u64) as i64)
                    }
                })
                .collect();
            Arc::new(Int64Array::from(values))
        }
        DataType::Double => {
            let pool = doubles(spec.range);
            let (_, max) = bounds(spec.range, -f64::MAX, f64::MAX);
            let start = *rng.pick(&pool);
            let values: Vec<Option<f64>> = (0..rows)
                .map(|row| match layout {
                    Layout::Null => None,
                    Layout::Constant => Some(start),
                    Layout::Mixed => Some(*rng.pick(&pool)),
                    Layout::Ascending => Some((start + row as f64).min(max)),
                    Layout::Ordinary => {
                        let (low, high) = ordinary_bounds(spec.range);
                        Some(low + (high - low) * rng.unit())
                    }
                })
                .collect();
            Arc::new(Float64Array::from(values))
        }
        DataType::Timestamp => {
            let pool = timestamps();
            let start = *rng.pick(&pool);
            let values: Vec<Option<i64>> = (0..rows)
                .map(|row| match layout {
                    Layout::Null => None,
                    Layout::Constant => Some(start),
                    Layout::Mixed => Some(*rng.pick(&pool)),
                    Layout::Ascending => {
                        Some(start.saturating_add(MONTH_MICROS.saturating_mul(row as i64)))
                    }
                    // 2022-01-01 plus up to three years, to the second.
                    Layout::Ordinary => {
                        Some((1_640_995_200 + rng.below(3 * 365 * 86_400) as i64) * 1_000_000)
                    }
                })
                .collect();
            Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
        }
        DataType::String => {
            let pool = strings();
            let values: Vec<Option<String>> = (0..rows)
                .map(|row| match layout {
                    Layout::Null => None,
                    Layout::Constant => Some(pool[1].clone()),
                    Layout::Mixed => Some(rng.pick(&pool).clone()),
                    // Distinct keys, as ids are.
                    Layout::Ascending => Some(format!("id-{row}")),
                    Layout::Ordinary => Some(format!("k{row}")),
                })
                .collect();
            Arc::new(StringArray::from(values))
        }
        DataType::Bool => {
            let values: Vec<Option<bool>> = (0..rows)
                .map(|row| match layout {
                    Layout::Null => None,
                    Layout::Constant => Some(true),
                    Layout::Mixed => Some(rng.below(2) == 0),
                    Layout::Ascending => Some(row % 2 == 1),
                    Layout::Ordinary => Some(rng.below(2) == 0),
                })
                .collect();
            Arc::new(BooleanArray::from(values))
        }
    }
}

/// A parameter value: absent (the default), an extreme within the declared bounds, or one just
/// beyond them (which validation must refuse).
fn parameter(spec: &ParameterSpec, rng: &mut SplitMix) -> Option<ParamValue> {
    if rng.below(3) == 0 {
        return None;
    }
    let beyond = rng.below(8) == 0;
    Some(match spec.data_type {
        DataType::Int64 => {
            let range = if beyond { None } else { spec.range };
            ParamValue::Int64(*rng.pick(&integers(range)))
        }
        DataType::Double => {
            let range = if beyond { None } else { spec.range };
            ParamValue::Double(*rng.pick(&doubles(range)))
        }
        DataType::Timestamp => ParamValue::Timestamp(*rng.pick(&timestamps())),
        DataType::Bool => ParamValue::Bool(rng.below(2) == 0),
        DataType::String if !spec.allowed_values.is_empty() && !beyond => {
            ParamValue::String(rng.pick(&spec.allowed_values).clone())
        }
        DataType::String => ParamValue::String(rng.pick(&strings()).clone()),
    })
}

/// SplitMix64: small, seedable, good enough to spread picks.
#[derive(Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use mittari_sdk::{ColumnSpec, OutputSpec};

    use super::*;

    #[test]
    fn cases_are_deterministic_and_typed_by_the_descriptor() {
        let descriptor = MetricDescriptor::new("m", "1", "test")
            .input(ColumnSpec::int64("score", "s").required().range(0.0, 10.0))
            .input(ColumnSpec::timestamp("at", "t"))
            .parameter(ParameterSpec::double("confidence", 0.95, "c").range(0.5, 0.999))
            .output(OutputSpec::new("x", "count", "x"));
        let a = extreme_cases(&descriptor, 7, 50);
        let b = extreme_cases(&descriptor, 7, 50);
        assert_eq!(a.len(), 50);
        for (a, b) in a.iter().zip(&b) {
            assert_eq!(a.label, b.label);
            assert_eq!(a.input, b.input);
            let score = a.input.column_by_name("score").unwrap();
            assert_eq!(score.data_type(), &arrow_schema::DataType::Int64);
        }
        // Required columns are always present; values stay in their declared range.
        assert!(a.iter().all(|c| c.input.column_by_name("score").is_some()));
        let scores: Vec<i64> = a
            .iter()
            .flat_map(|c| {
                let column = c.input.column_by_name("score").unwrap();
                let ints = column.as_any().downcast_ref::<Int64Array>().unwrap();
                ints.iter().flatten().collect::<Vec<_>>()
            })
            .collect();
        assert!(scores.iter().all(|s| (0..=10).contains(s)), "{scores:?}");
        assert!(scores.contains(&0) && scores.contains(&10));
        // Both row-count extremes occur.
        assert!(a.iter().any(|c| c.input.num_rows() == 0));
        assert!(a.iter().any(|c| c.input.num_rows() == 200));
    }
}
