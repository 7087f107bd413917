#![forbid(unsafe_code)]
//! Key-driver analysis: which service attributes (speed, friendliness, reliability, …) move
//! the likelihood to recommend or satisfaction, by how much, how sure that is, and which to
//! fix first.
//!
//! Customers who rate one attribute highly tend to rate them all highly, so a regression's
//! coefficients split the credit arbitrarily between correlated ratings. Johnson's relative
//! weights (`weights.rs`) divide the explained variance among them in a way that does not
//! depend on their order and stays non-negative; a seeded bootstrap over respondents gives
//! each importance its interval; and the attributes' mean ratings (performance) against their
//! importance say where an improvement pays most. Rules and sources:
//! `docs/metrics/key_drivers.md`.

mod changes;
mod weights;

use std::sync::Arc;

use mittari_sdk::arrow_array::{Array, ArrayRef, Float64Array, Int64Array, StringArray};
use mittari_sdk::arrow_schema::DataType as ArrowType;
use mittari_sdk::prelude::*;
use mittari_sdk::stats::quantile_sorted;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use weights::{Problem, Weights, relative_weights};

/// Fewer complete answers than this many per rating make the importances unstable; the
/// warning says so.
const ANSWERS_PER_RATING: usize = 10;

struct KeyDrivers;

impl Metric for KeyDrivers {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new(
            "key_drivers",
            env!("CARGO_PKG_VERSION"),
            "what drives the score: each rating's relative importance (Johnson's relative weights) with bootstrap intervals, and which to fix first",
        )
        .description(
            "One row per survey answer: the outcome (score: likelihood to recommend 0-10, or satisfaction) and the \
             answer's ratings of service attributes, named with ratings=rating_speed,rating_friendliness,... Each \
             rating's importance is its relative weight (Johnson 2000): the share of the outcome's explained variance \
             (R^2) it accounts for, which handles correlated ratings, is never negative and sums to 100 %. Intervals \
             are percentiles of a seeded bootstrap over answers. Performance is the mean rating; an attribute above the \
             mean importance and below the mean performance is to fix first. Answers with a missing rating are left out.",
        )
        .expensive()
        .input(ColumnSpec::double("score", "the outcome each rating may drive: likelihood to recommend (0-10) or satisfaction").required())
        .parameter(ParameterSpec::columns(
            "ratings",
            "the rating columns to weigh, comma-separated (two or more), e.g. rating_speed,rating_friendliness",
        ))
        .parameter(
            ParameterSpec::int64("bootstrap", 1000, "bootstrap resamples of the answers for the intervals; 0 for none")
                .range(0.0, 100_000.0),
        )
        .parameter(ParameterSpec::int64("seed", 1, "seed of the bootstrap's draws: the same seed gives the same intervals").range(0.0, 1e15))
        .parameter(ParameterSpec::double("confidence", 0.95, "confidence level of the intervals").range(0.5, 0.999))
        .input(ColumnSpec::timestamp("timestamp", "when the answer was given, for period"))
        .parameter(
            ParameterSpec::string("period", "none", "week, month or quarter: the changes table, each rating's mean in each period against the period before")
                .allowed_values(&["none", "week", "month", "quarter"]),
        )
        .output(OutputSpec::new("r_squared", "ratio", "share of the score's variance the ratings explain together (the weights' sum), bootstrap interval"))
        .output(OutputSpec::new("answers", "count", "answers with the score and every rating, the ones used"))
        .output(OutputSpec::new("ratings", "count", "ratings weighed"))
        .table_with_columns(
            "drivers",
            "one row per rating, most important first",
            [
                OutputSpec::new("rating", "id", "the rating column"),
                OutputSpec::new("importance", "%", "its relative weight as a share of r_squared: how much of what the ratings explain is its"),
                OutputSpec::new("importance_lower", "%", "lower bound of the importance's bootstrap interval"),
                OutputSpec::new("importance_upper", "%", "upper bound of the importance's bootstrap interval"),
                OutputSpec::new("raw_weight", "ratio", "its relative weight: its part of r_squared"),
                OutputSpec::new("correlation", "ratio", "its correlation with the score"),
                OutputSpec::new("performance", "score", "its mean rating"),
                OutputSpec::new("quadrant", "id", "fix first (important, rated low), keep up (important, rated high), secondary (less important, rated low), possible overkill (less important, rated high)"),
                OutputSpec::new("priority", "count", "1 for the rating to improve first: fix first, then secondary, keep up and possible overkill, each by importance"),
            ],
        )
        .table_with_columns(
            "changes",
            "with period: each rating's mean per period against the period before (Welch), adjusted over the ratings (Holm)",
            changes::columns(),
        )
    }

    fn compute(&self, input: &Input<'_>, params: &Params) -> Result<Output, MetricError> {
        let names: Vec<String> = match params.get("ratings") {
            Some(ParamValue::String(list)) => list
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        if names.len() < 2 {
            return Err(MetricError::invalid_parameter(
                "ratings",
                "name two or more rating columns, e.g. ratings=rating_speed,rating_friendliness,rating_reliability",
            ));
        }
        if let Some(name) = names.iter().find(|n| *n == "score") {
            return Err(MetricError::invalid_parameter(
                "ratings",
                format!(
                    "{name} is the outcome the ratings are weighed against; name the rating columns only"
                ),
            ));
        }
        if let Some((i, name)) = names
            .iter()
            .enumerate()
            .find(|(i, n)| names[..*i].contains(n))
        {
            return Err(MetricError::invalid_parameter(
                "ratings",
                format!(
                    "{name} is named twice (the {} time); name each rating once",
                    ordinal(i + 1)
                ),
            ));
        }
        let score = input.double("score")?;
        let columns: Vec<Vec<Option<f64>>> = names
            .iter()
            .map(|name| numbers(input, name))
            .collect::<Result<_, _>>()?;
        // Complete answers only: a weight needs every rating of the same answer.
        let complete: Vec<usize> = (0..input.num_rows())
            .filter(|&row| score.is_valid(row) && columns.iter().all(|c| c[row].is_some()))
            .collect();
        let p = names.len();
        if complete.len() < p + 2 {
            return Err(MetricError::invalid_input(format!(
                "only {} answers have the score and all {p} ratings; weighing {p} ratings needs at least {} (and {} for stable weights)",
                complete.len(),
                p + 2,
                ANSWERS_PER_RATING * p
            )));
        }
        let outcome: Vec<f64> = complete.iter().map(|&r| score.value(r)).collect();
        let ratings: Vec<Vec<f64>> = columns
            .iter()
            .map(|c| complete.iter().map(|&r| c[r].unwrap_or_default()).collect())
            .collect();
        let views: Vec<&[f64]> = ratings.iter().map(Vec::as_slice).collect();
        let fit = relative_weights(&views, &outcome).map_err(|problem| refusal(problem, &names))?;
        let level = params.f64("confidence")?;
        let draws = usize::try_from(params.i64("bootstrap")?).unwrap_or(0);
        let seed = u64::try_from(params.i64("seed")?).unwrap_or(0);
        let boot = bootstrap(input, &views, &outcome, draws, seed)?;

        let importance: Vec<f64> = fit.raw.iter().map(|w| 100.0 * w / fit.r_squared).collect();
        let tail = (1.0 - level) / 2.0;
        let bounds = |samples: &[Vec<f64>], j: usize| -> Option<(f64, f64)> {
            let mut values: Vec<f64> = samples.iter().map(|s| s[j]).collect();
            values.sort_by(f64::total_cmp);
            Some((
                quantile_sorted(&values, tail)?,
                quantile_sorted(&values, 1.0 - tail)?,
            ))
        };
        let performance: Vec<f64> = ratings
            .iter()
            .map(|r| r.iter().sum::<f64>() / r.len() as f64)
            .collect();
        let correlation: Vec<f64> = ratings.iter().map(|r| correlation(r, &outcome)).collect();
        let quadrants = quadrants(&importance, &performance);
        let mut order: Vec<usize> = (0..p).collect();
        order.sort_by(|&a, &b| importance[b].total_cmp(&importance[a]));
        let mut priority_order: Vec<usize> = order.clone();
        priority_order.sort_by_key(|&j| quadrants[j].rank());
        let mut priority = vec![0usize; p];
        for (rank, &j) in priority_order.iter().enumerate() {
            priority[j] = rank + 1;
        }
        let interval: Vec<Option<(f64, f64)>> =
            (0..p).map(|j| bounds(&boot.importance, j)).collect();
        let column =
            |values: Vec<Option<f64>>| -> ArrayRef { Arc::new(Float64Array::from(values)) };
        let pick = |f: &dyn Fn(usize) -> Option<f64>| column(order.iter().map(|&j| f(j)).collect());
        let table = result_table(
            "drivers",
            vec![
                (
                    "rating",
                    Arc::new(StringArray::from_iter_values(
                        order.iter().map(|&j| names[j].as_str()),
                    )) as ArrayRef,
                ),
                ("importance", pick(&|j| Some(importance[j]))),
                ("importance_lower", pick(&|j| interval[j].map(|i| i.0))),
                ("importance_upper", pick(&|j| interval[j].map(|i| i.1))),
                ("raw_weight", pick(&|j| Some(fit.raw[j]))),
                ("correlation", pick(&|j| Some(correlation[j]))),
                ("performance", pick(&|j| Some(performance[j]))),
                (
                    "quadrant",
                    Arc::new(StringArray::from_iter_values(
                        order.iter().map(|&j| quadrants[j].name()),
                    )) as ArrayRef,
                ),
                (
                    "priority",
                    Arc::new(Int64Array::from_iter_values(
                        order.iter().map(|&j| priority[j] as i64),
                    )) as ArrayRef,
                ),
            ],
        )?;
        let mut r_squared = Scalar::new("r_squared", fit.r_squared);
        let mut r2_samples: Vec<f64> = boot.r_squared.clone();
        r2_samples.sort_by(f64::total_cmp);
        if let (Some(lower), Some(upper)) = (
            quantile_sorted(&r2_samples, tail),
            quantile_sorted(&r2_samples, 1.0 - tail),
        ) {
            r_squared = r_squared.with_interval(lower, upper, level);
        }
        let mut output = Output::new();
        if let Some(period) = mittari_sdk::survey::Period::parse(params.str("period")?) {
            let times = input.optional_timestamp("timestamp")?.ok_or_else(|| {
                MetricError::invalid_parameter(
                    "period",
                    "needs a timestamp column with the time of each answer; map yours with --column timestamp=NAME",
                )
            })?;
            let times: Vec<Option<i64>> = complete
                .iter()
                .map(|&r| times.is_valid(r).then(|| times.value(r)))
                .collect();
            output = output.table(
                "changes",
                changes::changes(&names, &ratings, &times, period, level)?,
            );
        }
        output = output
            .scalar(r_squared)
            .scalar(Scalar::new("answers", complete.len() as f64))
            .scalar(Scalar::new("ratings", p as f64))
            .table("drivers", table);
        let dropped = input.num_rows() - complete.len();
        if dropped > 0 {
            output = output.warning(
                "incomplete_answers",
                format!(
                    "{dropped} of {} answers lack the score or a rating and were left out",
                    input.num_rows()
                ),
            );
        }
        if complete.len() < ANSWERS_PER_RATING * p {
            output = output.warning(
                "small_sample",
                format!(
                    "{} answers for {p} ratings: importances this close to each other cannot be told apart; read their intervals",
                    complete.len()
                ),
            );
        }
        if draws > 0 && boot.failed * 10 > draws {
            output = output.warning(
                "bootstrap_failures",
                format!(
                    "{} of {draws} bootstrap resamples had a rating without variance and were left out: the intervals are rough",
                    boot.failed
                ),
            );
        }
        if draws == 0 {
            output = output.warning(
                "no_intervals",
                "bootstrap=0: importances are given without intervals",
            );
        }
        Ok(output)
    }
}

/// The bootstrap's importances (% of R²) and R² per successful resample.
struct Bootstrap {
    importance: Vec<Vec<f64>>,
    r_squared: Vec<f64>,
    failed: usize,
}

/// `draws` resamples of the answers with replacement, each from its own seeded generator (so a
/// draw's answers do not depend on how many came before it, nor on the thread it ran on), in
/// parallel. Each draw sums the cross-products of the answers it drew (centred once on the
/// whole data's means) in one pass, and weighs the correlations they give.
fn bootstrap(
    input: &Input<'_>,
    ratings: &[&[f64]],
    outcome: &[f64],
    draws: usize,
    seed: u64,
) -> Result<Bootstrap, MetricError> {
    use rayon::prelude::*;
    let n = outcome.len();
    let columns: Vec<&[f64]> = ratings
        .iter()
        .copied()
        .chain(std::iter::once(outcome))
        .collect();
    let k = columns.len();
    // Row-major, centred: one answer's k values side by side for the draw's inner loop.
    let means: Vec<f64> = columns
        .iter()
        .map(|c| c.iter().sum::<f64>() / n as f64)
        .collect();
    let mut rows = vec![0.0; n * k];
    for (j, column) in columns.iter().enumerate() {
        for (i, v) in column.iter().enumerate() {
            rows[i * k + j] = v - means[j];
        }
    }
    let results: Vec<Option<Weights>> = (0..draws)
        .into_par_iter()
        .map(|draw| -> Result<Option<Weights>, MetricError> {
            input.check_cancelled()?;
            let mut rng =
                SmallRng::seed_from_u64(seed ^ (draw as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            // How often each answer is drawn, then one sequential pass over the answers
            // weighted by that (random reads of whole rows were the bottleneck).
            let mut counts = vec![0u32; n];
            for _ in 0..n {
                counts[rng.random_range(0..n)] += 1;
            }
            let mut sums = vec![0.0; k];
            let mut cross = vec![vec![0.0; k]; k];
            for (row, &count) in rows.chunks_exact(k).zip(&counts) {
                if count == 0 {
                    continue;
                }
                let w = f64::from(count);
                for j in 0..k {
                    let weighted = w * row[j];
                    sums[j] += weighted;
                    let cross_j = &mut cross[j];
                    for l in j..k {
                        cross_j[l] += weighted * row[l];
                    }
                }
            }
            Ok(weights::from_sums(&sums, &cross, n as f64)
                .and_then(|r| weights::from_correlations(&r))
                .ok())
        })
        .collect::<Result<_, MetricError>>()?;
    let mut boot = Bootstrap {
        importance: Vec::with_capacity(draws),
        r_squared: Vec::with_capacity(draws),
        failed: 0,
    };
    for result in results {
        match result {
            Some(Weights { raw, r_squared }) => {
                boot.importance
                    .push(raw.iter().map(|w| 100.0 * w / r_squared).collect());
                boot.r_squared.push(r_squared);
            }
            None => boot.failed += 1,
        }
    }
    Ok(boot)
}

fn ordinal(n: usize) -> String {
    match n {
        2 => "2nd".to_owned(),
        3 => "3rd".to_owned(),
        n => format!("{n}th"),
    }
}

fn refusal(problem: Problem, names: &[String]) -> MetricError {
    match problem {
        Problem::Constant(Some(j)) => MetricError::invalid_column(
            &names[j],
            format!(
                "{} has the same value in every complete answer: a rating that does not vary explains nothing; leave it out of ratings",
                names[j]
            ),
        ),
        Problem::Constant(None) => MetricError::invalid_column(
            "score",
            "the score has the same value in every complete answer: there is nothing to explain",
        ),
        Problem::NothingExplained => MetricError::invalid_input(
            "the ratings explain none of the score's variance (they are uncorrelated with it): there is nothing to divide among them",
        ),
        Problem::Collinear => MetricError::invalid_parameter(
            "ratings",
            "the ratings are collinear: one is a combination of the others (a total or an average of them, say); leave it out",
        ),
    }
}

/// A numeric rating column as doubles (nulls as `None`); a text column is refused.
fn numbers(input: &Input<'_>, name: &str) -> Result<Vec<Option<f64>>, MetricError> {
    let column = input.batch().column_by_name(name).ok_or_else(|| {
        MetricError::invalid_parameter("ratings", format!("{name} is not a column of the input"))
    })?;
    let any = column.as_any();
    let values = match column.data_type() {
        ArrowType::Int64 => any
            .downcast_ref::<Int64Array>()
            .map(|a| a.iter().map(|v| v.map(|v| v as f64)).collect()),
        ArrowType::Float64 => any
            .downcast_ref::<Float64Array>()
            .map(|a| a.iter().collect()),
        _ => None,
    };
    values.ok_or_else(|| {
        MetricError::invalid_column(
            name,
            format!(
                "{name} is {}, not a number; ratings are numbers (1-5, 0-10)",
                column.data_type()
            ),
        )
    })
}

fn correlation(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    sxy / (sxx * syy).sqrt()
}

/// Where an attribute stands: importance against the mean importance, performance against the
/// mean performance (the importance-performance analysis of Martilla & James 1977).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quadrant {
    FixFirst,
    KeepUp,
    Secondary,
    PossibleOverkill,
}

impl Quadrant {
    fn name(self) -> &'static str {
        match self {
            Quadrant::FixFirst => "fix first",
            Quadrant::KeepUp => "keep up",
            Quadrant::Secondary => "secondary",
            Quadrant::PossibleOverkill => "possible overkill",
        }
    }
    /// The order improvements pay in.
    fn rank(self) -> u8 {
        match self {
            Quadrant::FixFirst => 0,
            Quadrant::Secondary => 1,
            Quadrant::KeepUp => 2,
            Quadrant::PossibleOverkill => 3,
        }
    }
}

fn quadrants(importance: &[f64], performance: &[f64]) -> Vec<Quadrant> {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (important, performing) = (mean(importance), mean(performance));
    importance
        .iter()
        .zip(performance)
        .map(|(&i, &p)| match (i >= important, p >= performing) {
            (true, false) => Quadrant::FixFirst,
            (true, true) => Quadrant::KeepUp,
            (false, false) => Quadrant::Secondary,
            (false, true) => Quadrant::PossibleOverkill,
        })
        .collect()
}

mittari_sdk::export_plugin!(KeyDrivers);

#[cfg(test)]
mod tests {
    use mittari_sdk::arrow_array::RecordBatch;

    use super::*;
    use mittari_sdk::arrow_array::cast::AsArray;
    use mittari_sdk::arrow_array::types::Float64Type;

    /// Answers whose score is driven by speed (0.6), reliability (0.3) and not friendliness,
    /// with ratings correlated through a common halo.
    fn survey(n: usize, seed: u64) -> RecordBatch {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut normal = move || {
            let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        };
        let (mut score, mut speed, mut friendly, mut reliable) = (vec![], vec![], vec![], vec![]);
        for _ in 0..n {
            let halo = normal();
            let (s, f, r) = (halo + normal(), halo + normal(), halo + normal());
            score.push(0.6 * s + 0.3 * r + normal());
            speed.push(s);
            friendly.push(f);
            reliable.push(r);
        }
        RecordBatch::try_from_iter([
            ("score", Arc::new(Float64Array::from(score)) as ArrayRef),
            (
                "rating_speed",
                Arc::new(Float64Array::from(speed)) as ArrayRef,
            ),
            (
                "rating_friendliness",
                Arc::new(Float64Array::from(friendly)) as ArrayRef,
            ),
            (
                "rating_reliability",
                Arc::new(Float64Array::from(reliable)) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    fn run(batch: &RecordBatch, ratings: &str, draws: i64) -> Result<Output, MetricError> {
        let mut params = Params::new();
        for spec in KeyDrivers.descriptor().parameters {
            if let Some(default) = spec.default {
                params.insert(spec.name, default);
            }
        }
        params.insert("ratings", ParamValue::String(ratings.to_owned()));
        params.insert("bootstrap", ParamValue::Int64(draws));
        KeyDrivers.compute(&Input::new(batch), &params)
    }

    const RATINGS: &str = "rating_speed,rating_friendliness,rating_reliability";

    /// The population's importances (%), from its exact correlations: ratings of variance 2
    /// and pairwise covariance 1 (the halo); score = 0.6 s + 0.3 r + e, so var(score) = 2.26
    /// and its covariances with speed, friendliness and reliability are 1.5, 0.9 and 1.2.
    fn population_importance() -> Vec<f64> {
        let (sd_x, sd_y) = (2f64.sqrt(), 2.26f64.sqrt());
        let ry = |c: f64| c / (sd_x * sd_y);
        let r = nalgebra::DMatrix::from_row_slice(
            4,
            4,
            &[
                1.0,
                0.5,
                0.5,
                ry(1.5),
                0.5,
                1.0,
                0.5,
                ry(0.9),
                0.5,
                0.5,
                1.0,
                ry(1.2),
                ry(1.5),
                ry(0.9),
                ry(1.2),
                1.0,
            ],
        );
        let w = weights::from_correlations(&r).unwrap();
        w.raw.iter().map(|x| 100.0 * x / w.r_squared).collect()
    }

    #[test]
    fn importances_recover_the_drivers_and_sum_to_100() {
        let output = run(&survey(4000, 7), RATINGS, 200).unwrap();
        let (_, table) = &output.tables[0];
        let names = table.column_by_name("rating").unwrap().as_string::<i32>();
        let importance = table
            .column_by_name("importance")
            .unwrap()
            .as_primitive::<Float64Type>();
        // Speed first, reliability second, friendliness (no direct effect, only the halo) last.
        assert_eq!(
            (0..3).map(|i| names.value(i)).collect::<Vec<_>>(),
            ["rating_speed", "rating_reliability", "rating_friendliness"]
        );
        // Parameter recovery: 4 000 answers land within 3 points of the population's weights
        // (speed, reliability, friendliness in table order).
        let truth = population_importance();
        for (i, j) in [(0, 0), (1, 2), (2, 1)] {
            assert!(
                (importance.value(i) - truth[j]).abs() < 3.0,
                "{} vs {truth:?}",
                importance.value(i)
            );
        }
        let total: f64 = importance.values().iter().sum();
        assert!((total - 100.0).abs() < 1e-9);
        let lower = table
            .column_by_name("importance_lower")
            .unwrap()
            .as_primitive::<Float64Type>();
        let upper = table
            .column_by_name("importance_upper")
            .unwrap()
            .as_primitive::<Float64Type>();
        for i in 0..3 {
            assert!(lower.value(i) <= importance.value(i) && importance.value(i) <= upper.value(i));
        }
        // The same seed gives the same intervals.
        let again = run(&survey(4000, 7), RATINGS, 200).unwrap();
        assert_eq!(again.tables[0].1, *table);
    }

    #[test]
    fn bad_requests_say_what_to_change() {
        let batch = survey(50, 1);
        let message = |ratings: &str| run(&batch, ratings, 0).unwrap_err().to_string();
        assert!(message("rating_speed").contains("name two or more rating columns"));
        assert!(message("rating_speed,rating_nope").contains("rating_nope is not a column"));
        assert!(message("rating_speed,score").contains("score is the outcome"));
        assert!(message("rating_speed,rating_speed").contains("named twice"));
        let tiny = survey(4, 1);
        assert!(
            run(&tiny, RATINGS, 0)
                .unwrap_err()
                .to_string()
                .contains("needs at least 5")
        );
        KeyDrivers.descriptor().check().unwrap();
        assert_eq!(KeyDrivers.descriptor().lint(), Vec::<String>::new());
    }

    #[test]
    fn quadrants_say_what_to_fix_first() {
        let q = quadrants(&[50.0, 30.0, 15.0, 5.0], &[3.0, 4.5, 3.5, 4.8]);
        assert_eq!(
            q,
            [
                Quadrant::FixFirst,
                Quadrant::KeepUp,
                Quadrant::Secondary,
                Quadrant::PossibleOverkill
            ]
        );
    }
}
