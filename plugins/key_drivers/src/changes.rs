//! How each rating moved: its mean in each period against the period before, by Welch's t
//! interval and test (unequal variances; Welch 1947), p-values adjusted over the ratings of a
//! period (Holm), so that "speed got worse in December" is said only when it holds.

use std::collections::BTreeMap;
use std::sync::Arc;

use mittari_models::means::{Moments, welch};
use mittari_sdk::arrow_array::{ArrayRef, BooleanArray, Float64Array, StringArray};
use mittari_sdk::survey::{Period, holm};
use mittari_sdk::{MetricError, OutputSpec, RecordBatch, result_table};

/// The `changes` table's columns.
pub(crate) fn columns() -> Vec<OutputSpec> {
    vec![
        OutputSpec::new(
            "period",
            "id",
            "the period (UTC): 2024-03, 2024-Q1 or 2024-W09",
        ),
        OutputSpec::new("rating", "id", "the rating column"),
        OutputSpec::new("answers", "count", "complete answers in the period"),
        OutputSpec::new("mean", "score", "the rating's mean in the period"),
        OutputSpec::new("previous_mean", "score", "its mean in the period before"),
        OutputSpec::new("change", "score", "mean minus previous_mean"),
        OutputSpec::new(
            "change_lower",
            "score",
            "lower bound of the change's Welch interval",
        ),
        OutputSpec::new(
            "change_upper",
            "score",
            "upper bound of the change's Welch interval",
        ),
        OutputSpec::new(
            "p_value",
            "probability",
            "two-sided p-value of no change (Welch's t test)",
        ),
        OutputSpec::new(
            "p_adjusted",
            "probability",
            "the p-value adjusted over the period's ratings (Holm)",
        ),
        OutputSpec::new(
            "significant",
            "id",
            "whether the adjusted p-value is below 1 - confidence",
        ),
    ]
}

/// One rating in one period: (period, rating, answers, mean, previous mean, and the change
/// as (change, lower, upper, p-value) when there is a period before).
type Row = (
    String,
    String,
    f64,
    f64,
    Option<f64>,
    Option<(f64, f64, f64, f64)>,
);

/// Each period's rows of `ratings` (one column per rating, complete answers only) by `times`.
pub(crate) fn changes(
    names: &[String],
    ratings: &[Vec<f64>],
    times: &[Option<i64>],
    period: Period,
    level: f64,
) -> Result<RecordBatch, MetricError> {
    let mut by_period: BTreeMap<i64, (String, Vec<usize>)> = BTreeMap::new();
    for (row, time) in times.iter().enumerate() {
        if let Some(time) = time {
            let (index, label) = period.of(*time);
            by_period
                .entry(index)
                .or_insert_with(|| (label, Vec::new()))
                .1
                .push(row);
        }
    }
    let alpha = 1.0 - level;
    let mut rows: Vec<Row> = Vec::new();
    let mut adjusted: Vec<Option<f64>> = Vec::new();
    for (index, (label, members)) in &by_period {
        let before = by_period.get(&(index - 1));
        let mut p_values = Vec::new();
        let start = rows.len();
        for (name, column) in names.iter().zip(ratings) {
            let values = Moments::of(members.iter().map(|&r| column[r]));
            let (n, mean) = (values.n(), values.mean().unwrap_or(f64::NAN));
            let compared = before.and_then(|(_, previous)| {
                let old = Moments::of(previous.iter().map(|&r| column[r]));
                let w = welch(&values, &old, level)?;
                Some((old.mean()?, (w.lower, w.upper, w.p_value, w.difference)))
            });
            if let Some((_, (_, _, p, _))) = compared {
                p_values.push(p);
            }
            rows.push((
                label.clone(),
                name.clone(),
                n as f64,
                mean,
                compared.map(|w| w.0),
                compared.map(|w| (w.1.3, w.1.0, w.1.1, w.1.2)),
            ));
        }
        let mut holm = holm(&p_values).into_iter();
        for row in &rows[start..] {
            adjusted.push(row.5.and_then(|_| holm.next()));
        }
    }
    let number = |f: &dyn Fn(usize) -> Option<f64>| -> ArrayRef {
        Arc::new(Float64Array::from(
            (0..rows.len()).map(f).collect::<Vec<_>>(),
        ))
    };
    result_table(
        "changes",
        vec![
            (
                "period",
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.0.as_str()),
                )) as ArrayRef,
            ),
            (
                "rating",
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.1.as_str()),
                )) as ArrayRef,
            ),
            ("answers", number(&|i| Some(rows[i].2))),
            ("mean", number(&|i| Some(rows[i].3))),
            ("previous_mean", number(&|i| rows[i].4)),
            ("change", number(&|i| rows[i].5.map(|w| w.0))),
            ("change_lower", number(&|i| rows[i].5.map(|w| w.1))),
            ("change_upper", number(&|i| rows[i].5.map(|w| w.2))),
            ("p_value", number(&|i| rows[i].5.map(|w| w.3))),
            ("p_adjusted", number(&|i| adjusted[i])),
            (
                "significant",
                Arc::new(BooleanArray::from(
                    adjusted
                        .iter()
                        .map(|p| p.map(|p| p < alpha))
                        .collect::<Vec<_>>(),
                )) as ArrayRef,
            ),
        ],
    )
}

#[cfg(test)]
mod tests {
    use mittari_sdk::arrow_array::Array;

    use super::*;
    use mittari_models::special::{student_t_quantile, student_t_two_sided_p};
    use mittari_sdk::arrow_array::cast::AsArray;
    use mittari_sdk::arrow_array::types::Float64Type;

    #[test]
    fn welch_by_hand() {
        // January: 1, 2, 3 (mean 2, variance 1); February: 4, 5, 6, 7 (mean 5.5, variance
        // 5/3). se = sqrt(1/3 + 5/12) = sqrt(0.75); df = 0.75^2 / ((1/3)^2 / 2 + (5/12)^2 / 3)
        // = 4.9765...; t = 3.5 / sqrt(0.75).
        let day = 86_400_000_000i64;
        let jan = mittari_sdk::time::date_micros(2024, 1, 10);
        let feb = mittari_sdk::time::date_micros(2024, 2, 10);
        let times: Vec<Option<i64>> = [jan, jan, jan + day, feb, feb, feb, feb].map(Some).to_vec();
        let ratings = vec![vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]];
        let table = changes(
            &["rating_speed".to_owned()],
            &ratings,
            &times,
            Period::Month,
            0.95,
        )
        .unwrap();
        let column = |name: &str| {
            table
                .column_by_name(name)
                .unwrap()
                .as_primitive::<Float64Type>()
                .clone()
        };
        assert_eq!(table.num_rows(), 2);
        let (se, df) = (
            0.75f64.sqrt(),
            0.5625 / ((1.0f64 / 9.0) / 2.0 + (25.0 / 144.0) / 3.0),
        );
        assert_eq!(column("change").value(1), 3.5);
        let p = student_t_two_sided_p(3.5 / se, df);
        assert!((column("p_value").value(1) - p).abs() < 1e-15);
        let half = student_t_quantile(0.95, df) * se;
        assert!((column("change_upper").value(1) - (3.5 + half)).abs() < 1e-9);
        // January has no month before it.
        assert!(column("change").is_null(0));
    }
}
