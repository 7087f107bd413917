use std::sync::Arc;

use mittari_models::testing::Rng;
use mittari_sdk::arrow_array::cast::AsArray;
use mittari_sdk::arrow_array::types::{Float64Type, Int64Type};
use mittari_sdk::arrow_array::{Array, RecordBatch, TimestampMicrosecondArray};
use mittari_sdk::arrow_schema::{DataType as ArrowType, Field, Schema, TimeUnit as ArrowUnit};

use super::*;

const DAY: i64 = 86_400_000_000;

fn at(text: &str) -> i64 {
    mittari_sdk::time::parse_timestamp(text).unwrap()
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, array)| {
            let data_type = match array.data_type() {
                ArrowType::Timestamp(..) => ArrowType::Timestamp(ArrowUnit::Microsecond, None),
                other => other.clone(),
            };
            Field::new(*name, data_type, true)
        })
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap()
}

/// customer_id and timestamp of `rows`, and one more column: a purchase's amount, an
/// experience's score or outcome.
fn timed<S: AsRef<str>, T>(rows: &[(S, i64, T)], name: &str, values: ArrayRef) -> RecordBatch {
    batch(vec![
        (
            "customer_id",
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.0.as_ref()),
            )),
        ),
        (
            "timestamp",
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|r| r.1),
            )),
        ),
        (name, values),
    ])
}

fn purchases<S: AsRef<str>>(rows: &[(S, i64, f64)]) -> RecordBatch {
    let amounts = Float64Array::from_iter_values(rows.iter().map(|r| r.2));
    timed(rows, "amount", Arc::new(amounts))
}

fn scores<S: AsRef<str>>(rows: &[(S, i64, Option<f64>)]) -> RecordBatch {
    let scores: Float64Array = rows.iter().map(|r| r.2).collect();
    timed(rows, "score", Arc::new(scores))
}

fn outcomes(rows: &[(&str, i64, &str)]) -> RecordBatch {
    let outcomes = StringArray::from_iter_values(rows.iter().map(|r| r.2));
    timed(rows, "outcome", Arc::new(outcomes))
}

/// The descriptor's defaults, then `given`.
fn params(given: &[(&str, ParamValue)]) -> Params {
    let mut params = Params::new();
    for spec in CxOutcomes.descriptor().parameters {
        if let Some(default) = spec.default {
            params.insert(&spec.name, default);
        }
    }
    for (name, value) in given {
        params.insert(*name, value.clone());
    }
    params
}

fn run(
    log: &RecordBatch,
    experiences: Option<RecordBatch>,
    given: &[(&str, ParamValue)],
) -> Result<Output, MetricError> {
    let tables: Vec<(String, RecordBatch)> = experiences
        .into_iter()
        .map(|t| (EXPERIENCES.to_owned(), t))
        .collect();
    CxOutcomes.compute(&Input::new(log).with_tables(&tables), &params(given))
}

fn scalar<'a>(output: &'a Output, name: &str) -> &'a Scalar {
    output.scalars.iter().find(|s| s.name == name).unwrap()
}

fn table<'a>(output: &'a Output, name: &str) -> &'a RecordBatch {
    &output.tables.iter().find(|(n, _)| n == name).unwrap().1
}

fn numbers(table: &RecordBatch, column: &str) -> Vec<Option<f64>> {
    let column = table.column_by_name(column).unwrap();
    match column.as_primitive_opt::<Int64Type>() {
        Some(ints) => ints.iter().map(|v| v.map(|v| v as f64)).collect(),
        None => column.as_primitive::<Float64Type>().iter().collect(),
    }
}

fn texts(table: &RecordBatch, column: &str) -> Vec<String> {
    let column = table.column_by_name(column).unwrap().as_string::<i32>();
    column.iter().map(|v| v.unwrap().to_owned()).collect()
}

fn close(actual: Option<f64>, expected: f64, tolerance: f64) {
    let actual = actual.unwrap_or(f64::NAN);
    assert!(
        (actual - expected).abs() <= tolerance,
        "{actual} is not {expected} within {tolerance}"
    );
}

/// The worked example of docs/metrics/cx_outcomes.md.
fn example() -> (RecordBatch, RecordBatch) {
    let log = purchases(&[
        ("c1", at("2024-01-10"), 50.0),
        ("c2", at("2024-02-01"), 30.0),
        ("c3", at("2024-03-01"), 40.0),
        ("c7", at("2024-04-01"), 15.0),
        ("c4", at("2024-05-01"), 10.0),
        ("c5", at("2024-06-01"), 25.0),
        ("c3", at("2024-07-15"), 60.0),
        ("c1", at("2024-08-01"), 100.0),
        ("c6", at("2024-08-10"), 70.0),
        ("c1", at("2024-09-01"), 20.0),
        ("c4", at("2024-10-01"), 90.0),
        ("c7", at("2025-06-01"), 80.0),
    ]);
    let answers = scores(&[
        ("c1", at("2024-03-01"), Some(3.0)),
        ("c1", at("2024-06-15"), Some(10.0)),
        ("c2", at("2024-06-20"), Some(9.0)),
        ("c3", at("2024-06-01"), Some(2.0)),
        ("c3", at("2024-07-20"), Some(10.0)),
        ("c4", at("2024-06-30"), Some(5.0)),
        ("c5", at("2024-04-10"), Some(7.0)),
        ("c5", at("2024-05-01"), None),
        ("c6", at("2024-06-01"), Some(8.0)),
        ("x9", at("2024-05-01"), Some(9.0)),
    ]);
    (log, answers)
}

fn split(text: &str) -> (&'static str, ParamValue) {
    ("split", ParamValue::Timestamp(at(text)))
}

#[test]
fn worked_example_by_hand() {
    let (log, answers) = example();
    let output = run(
        &log,
        Some(answers),
        &[split("2024-07-01"), ("predict", ParamValue::Bool(false))],
    )
    .unwrap();
    // Base: c1..c5 and c7 bought by 2024-07-01; c6 first bought after it.
    close(scalar(&output, "customers").value, 6.0, 0.0);
    close(scalar(&output, "customers_with_experience").value, 5.0, 0.0);
    let tiers = table(&output, "tiers");
    assert_eq!(
        texts(tiers, "tier"),
        ["detractor", "passive", "promoter", "none"]
    );
    // detractor: c3 (latest answer by split 2) and c4 (5): window spend 60 and 90.
    // passive: c5 (7): nothing. promoter: c1 (10, its earlier 3 superseded) 100 + 20, and
    // c2 (9) nothing. none: c7, whose next purchase (2025-06-01) is after the window's end
    // (2024-12-28).
    assert_eq!(
        numbers(tiers, "customers"),
        [Some(2.0), Some(1.0), Some(2.0), Some(1.0)]
    );
    assert_eq!(
        numbers(tiers, "spend"),
        [Some(75.0), Some(0.0), Some(60.0), Some(0.0)]
    );
    assert_eq!(
        numbers(tiers, "retention"),
        [Some(100.0), Some(0.0), Some(50.0), Some(0.0)]
    );
    assert_eq!(
        numbers(tiers, "purchases"),
        [Some(2.0), Some(0.0), Some(2.0), Some(0.0)]
    );
    // Student's t with 1 degree of freedom: scipy.stats.t.interval(0.95, 1, 75, sqrt(450 / 2))
    // = (-115.593071, 265.593071); the promoters' (60, sqrt(7200 / 2)): (-702.372284, 822.372284).
    // Spend cannot be negative, so both lower bounds are 0.
    let (lower, upper) = (numbers(tiers, "spend_lower"), numbers(tiers, "spend_upper"));
    assert_eq!(
        lower,
        [Some(0.0), None, Some(0.0), None],
        "one customer has no spread"
    );
    close(upper[0], 265.593_071, 1e-5);
    close(upper[2], 822.372_284, 1e-5);
    assert_eq!(numbers(tiers, "predicted_spend"), [None, None, None, None]);

    // promoter minus detractor: Welch, scipy.stats.ttest_ind([120, 0], [60, 90],
    // equal_var=False): t = -0.242536, df = 1.124514, p = 0.845028, interval -622.301367
    // 592.301367.
    let spend_gap = scalar(&output, "spend_gap");
    close(spend_gap.value, -15.0, 1e-12);
    let interval = spend_gap.confidence_interval.unwrap();
    close(Some(interval.lower), -622.301_367, 1e-5);
    close(Some(interval.upper), 592.301_367, 1e-5);
    // Retention, Agresti-Caffo: (1 + 1) / (2 + 2) - (2 + 1) / (2 + 2) = -0.25, se =
    // sqrt(0.5 * 0.5 / 4 + 0.75 * 0.25 / 4) = 0.330719; the plain difference is 50 - 100.
    let retention_gap = scalar(&output, "retention_gap");
    close(retention_gap.value, -50.0, 1e-12);
    let interval = retention_gap.confidence_interval.unwrap();
    close(Some(interval.lower), -89.819_716, 1e-5);
    close(Some(interval.upper), 39.819_716, 1e-5);
    assert!(scalar(&output, "beyond_history_gap").value.is_none());

    let comparisons = table(&output, "comparisons");
    assert_eq!(
        texts(comparisons, "figure"),
        [
            "spend",
            "spend",
            "spend",
            "retention",
            "retention",
            "retention"
        ]
    );
    assert_eq!(
        texts(comparisons, "tier"),
        ["passive", "promoter", "none", "passive", "promoter", "none"]
    );
    let p = numbers(comparisons, "p_value");
    let adjusted = numbers(comparisons, "p_adjusted");
    // Spend: only the promoters have two customers; their p-value is its own adjustment.
    assert_eq!((p[0], p[2]), (None, None));
    close(p[1], 0.845_028, 1e-6);
    close(adjusted[1], 0.845_028, 1e-6);
    // Retention: passive and none are 0 of 1 against 2 of 2, p = 0.230884 each
    // ((1/3 - 3/4) / sqrt((1/3)(2/3)/3 + (3/4)(1/4)/4)); promoter 0.449692. Holm:
    // 3 × 0.230884 = 0.692652 for all three.
    close(p[3], 0.230_884, 1e-6);
    close(p[4], 0.449_692, 1e-6);
    for &p in &adjusted[3..6] {
        close(p, 0.692_652, 1e-6);
    }
    let codes: Vec<&str> = output.warnings.iter().map(|w| w.code.as_str()).collect();
    assert_eq!(
        codes,
        [
            "experiences_without_value",
            "experiences_unmatched",
            "experiences_after_split",
            "small_tiers"
        ]
    );
    let unmatched = &output.warnings[1].message;
    assert!(
        unmatched.starts_with("2 experiences")
            && unmatched.contains("(1 of customers who bought later)"),
        "{unmatched}"
    );
    let window = table(&output, "window");
    assert_eq!(texts(window, "window_end"), ["2024-12-28"]);
}

#[test]
fn customers_table_gives_every_customer_of_the_log_its_tier() {
    let (log, answers) = example();
    let output = run(
        &log,
        Some(answers),
        &[
            split("2024-07-01"),
            ("predict", ParamValue::Bool(false)),
            ("customers_table", ParamValue::Bool(true)),
        ],
    )
    .unwrap();
    let customers = table(&output, "customers");
    assert_eq!(
        texts(customers, "customer_id"),
        ["c1", "c2", "c3", "c7", "c4", "c5", "c6"]
    );
    assert_eq!(
        texts(customers, "tier"),
        [
            "promoter",
            "promoter",
            "detractor",
            "none",
            "detractor",
            "passive",
            "new after split"
        ]
    );
}

#[test]
fn outcomes_form_their_own_tiers() {
    let (log, _) = example();
    let contacts = outcomes(&[
        ("c1", at("2024-06-01"), "true"),
        ("c2", at("2024-06-01"), "false"),
        ("c3", at("2024-06-01"), "true"),
        ("c4", at("2024-06-01"), "false"),
    ]);
    let output = run(
        &log,
        Some(contacts),
        &[split("2024-07-01"), ("predict", ParamValue::Bool(false))],
    )
    .unwrap();
    let tiers = table(&output, "tiers");
    assert_eq!(texts(tiers, "tier"), ["false", "true", "none"]);
    // true: c1 120, c3 60; false (the reference, first in order): c2 0, c4 90.
    assert_eq!(numbers(tiers, "spend"), [Some(45.0), Some(90.0), Some(0.0)]);
    close(scalar(&output, "spend_gap").value, 45.0, 1e-12);
    close(scalar(&output, "retention_gap").value, 50.0, 1e-12);
    let named = run(
        &log,
        Some(outcomes(&[
            ("c1", at("2024-06-01"), "email"),
            ("c2", at("2024-06-01"), "chat"),
            ("c3", at("2024-06-01"), "phone"),
        ])),
        &[
            split("2024-07-01"),
            ("predict", ParamValue::Bool(false)),
            ("reference", ParamValue::String("phone".into())),
        ],
    )
    .unwrap();
    let spend_gap = scalar(&named, "spend_gap");
    assert!(spend_gap.value.is_none());
    assert!(
        spend_gap
            .undefined_reason
            .as_deref()
            .unwrap()
            .contains("comparisons table"),
        "{spend_gap:?}"
    );
    let comparisons = table(&named, "comparisons");
    assert!(texts(comparisons, "reference").iter().all(|r| r == "phone"));
}

#[test]
fn bad_requests_say_what_to_do() {
    let (log, answers) = example();
    let check = |result: Result<Output, MetricError>, expect: &str| {
        let message = result.unwrap_err().to_string();
        assert!(message.contains(expect), "{message:?} lacks {expect:?}");
    };
    check(run(&log, None, &[]), "--table-input experiences=");
    check(
        run(&log, Some(answers.clone()), &[split("2025-06-01")]),
        "leaves no purchase after it",
    );
    check(
        run(&log, Some(answers.clone()), &[split("2023-01-01")]),
        "no customer has a purchase at or before split",
    );
    check(
        run(
            &log,
            Some(answers.clone()),
            &[("reference", ParamValue::String("fans".into()))],
        ),
        "the tiers are detractor, passive, promoter, none",
    );
    check(
        run(
            &log,
            Some(answers.clone()),
            &[("best_min", ParamValue::Double(5.0))],
        ),
        "must be greater than worst_max",
    );
    check(
        run(
            &log,
            Some(answers.clone()),
            &[("without_experience", ParamValue::String("promoter".into()))],
        ),
        "already a tier's name",
    );
    let both = batch(vec![
        (
            "customer_id",
            Arc::new(StringArray::from(vec!["c1"])) as ArrayRef,
        ),
        (
            "timestamp",
            Arc::new(TimestampMicrosecondArray::from(vec![at("2024-06-01")])),
        ),
        ("score", Arc::new(Float64Array::from(vec![9.0]))),
        ("outcome", Arc::new(StringArray::from(vec!["true"]))),
    ]);
    check(run(&log, Some(both), &[]), "has both score and outcome");
}

/// A BG/NBD customer base (r, α, a, b per day) observed from `start` for `days`, purchases
/// at times to the second, each spend a draw around the customer's own mean; a customer in
/// `boost` buys `factor` times as often after `change`.
struct Base {
    log: RecordBatch,
    answers: RecordBatch,
}

fn simulate(rng: &mut Rng, customers: usize, days: f64, change: f64, factor: f64) -> Base {
    let (r, alpha, a, b) = (0.6, 12.0, 0.8, 4.0);
    let start = at("2022-01-01");
    let mut rows: Vec<(String, i64, f64)> = Vec::new();
    let mut answers: Vec<(String, i64, Option<f64>)> = Vec::new();
    for c in 0..customers {
        let id = format!("k{c:05}");
        // Customers are acquired over the first half of the span.
        let first = rng.uniform() * days / 2.0;
        let lambda = rng.gamma(r) / alpha;
        let p = rng.beta(a, b);
        let mean_spend = 20.0 + 60.0 * rng.uniform();
        let promoter = rng.uniform() < 0.5;
        // The answer comes a day after the first purchase: 10 or 3.
        answers.push((
            id.clone(),
            start + ((first + 1.0) * DAY as f64) as i64,
            Some(if promoter { 10.0 } else { 3.0 }),
        ));
        let mut t = first;
        loop {
            rows.push((
                id.clone(),
                start + (t * DAY as f64) as i64,
                mean_spend * (0.5 + rng.uniform()),
            ));
            if rng.uniform() < p {
                break;
            }
            let rate = if promoter && t >= change {
                lambda * factor
            } else {
                lambda
            };
            t += -rng.uniform().ln() / rate;
            if t >= days {
                break;
            }
        }
    }
    rows.sort_by_key(|r| r.1);
    let log = purchases(&rows);
    let answers = scores(&answers);
    Base { log, answers }
}

#[test]
fn history_explains_the_gap_when_experience_changes_nothing_and_not_when_it_does() {
    let split_day = 540.0;
    let split_at = at("2022-01-01") + (split_day * DAY as f64) as i64;
    let given = [
        ("split", ParamValue::Timestamp(split_at)),
        ("window_days", ParamValue::Double(180.0)),
        ("time_unit", ParamValue::String("day".into())),
    ];
    // No effect: the model's predictions match what the customers did, and no tier differs
    // beyond its history.
    let mut rng = Rng::new(7);
    let base = simulate(&mut rng, 6_000, 720.0, f64::INFINITY, 1.0);
    let output = run(&base.log, Some(base.answers), &given).unwrap();
    assert!(
        output
            .warnings
            .iter()
            .all(|w| w.code != "fit_not_identified"),
        "{:?}",
        output.warnings
    );
    let tiers = table(&output, "tiers");
    let (spend, predicted) = (numbers(tiers, "spend"), numbers(tiers, "predicted_spend"));
    for i in [0, 2] {
        let (s, p) = (spend[i].unwrap(), predicted[i].unwrap());
        assert!(
            (s / p - 1.0).abs() < 0.12,
            "tier {i}: spend {s}, predicted {p}"
        );
    }
    let beyond = scalar(&output, "beyond_history_gap")
        .confidence_interval
        .unwrap();
    assert!(
        beyond.lower < 0.0 && beyond.upper > 0.0,
        "no effect, yet beyond history {beyond:?}"
    );
    // Promoters buy twice as often after the split: their spend exceeds what their history
    // predicted, and the gap beyond history is significant.
    let mut rng = Rng::new(7);
    let base = simulate(&mut rng, 6_000, 720.0, split_day, 2.0);
    let output = run(&base.log, Some(base.answers), &given).unwrap();
    let beyond = scalar(&output, "beyond_history_gap");
    assert!(
        beyond.confidence_interval.unwrap().lower > 0.0,
        "a doubled purchase rate, yet beyond history {beyond:?}"
    );
    let comparisons = table(&output, "comparisons");
    let figures = texts(comparisons, "figure");
    let tiers = texts(comparisons, "tier");
    let significant = comparisons
        .column_by_name("significant")
        .unwrap()
        .as_boolean();
    let row = (0..figures.len())
        .find(|&i| figures[i] == "beyond_history" && tiers[i] == "promoter")
        .unwrap();
    assert!(significant.value(row));
}

#[test]
fn gap_intervals_cover_at_their_level() {
    // Two tiers of 80 customers that behave alike: the spend and retention gaps' 95 %
    // intervals should hold 0 about 95 % of the time.
    let mut rng = Rng::new(11);
    let (mut spend_hits, mut retention_hits, draws) = (0, 0, 400);
    for _ in 0..draws {
        let mut rows: Vec<(String, i64, f64)> = Vec::new();
        let mut answers: Vec<(String, i64, Option<f64>)> = Vec::new();
        for c in 0..160 {
            let id = format!("k{c}");
            rows.push((id.clone(), at("2024-01-01"), 10.0));
            answers.push((
                id.clone(),
                at("2024-01-02"),
                Some(if c % 2 == 0 { 10.0 } else { 3.0 }),
            ));
            if rng.uniform() < 0.6 {
                // Lognormal spend in the window.
                let amount = (3.0 + rng.normal()).exp();
                rows.push((id, at("2024-03-01"), amount));
            }
        }
        rows.push(("last".into(), at("2024-07-01"), 1.0));
        let log = purchases(&rows);
        let answers = scores(&answers);
        let output = run(
            &log,
            Some(answers),
            &[split("2024-02-01"), ("predict", ParamValue::Bool(false))],
        )
        .unwrap();
        let holds = |name: &str| {
            let i = scalar(&output, name).confidence_interval.unwrap();
            i.lower <= 0.0 && 0.0 <= i.upper
        };
        spend_hits += usize::from(holds("spend_gap"));
        retention_hits += usize::from(holds("retention_gap"));
    }
    let share = |hits: usize| hits as f64 / draws as f64;
    assert!(
        (0.92..=0.98).contains(&share(spend_hits)),
        "spend gap coverage {}",
        share(spend_hits)
    );
    assert!(
        (0.92..=0.985).contains(&share(retention_hits)),
        "retention gap coverage {}",
        share(retention_hits)
    );
}
