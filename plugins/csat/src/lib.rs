//! Customer satisfaction (CSAT): the share of responses in the top boxes of a satisfaction
//! scale, with a Wilson score interval.
#![forbid(unsafe_code)]

use mittari_sdk::arrow_array::Array;
use mittari_sdk::prelude::*;
use mittari_sdk::stats::{effective_sample_size, two_sided_z, wilson_interval_of};
use mittari_sdk::survey::{self, Answers, Comparing};

struct Csat;

/// The scale and the satisfied threshold, checked against each other.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scale {
    min: i64,
    max: i64,
    satisfied_min: i64,
}

impl Scale {
    fn from_params(params: &Params) -> Result<Scale, MetricError> {
        let scale = Scale {
            min: params.i64("scale_min")?,
            max: params.i64("scale_max")?,
            satisfied_min: params.i64("satisfied_min")?,
        };
        if scale.min >= scale.max {
            return Err(MetricError::invalid_parameter(
                "scale_max",
                format!(
                    "scale_max {} must be greater than scale_min {}",
                    scale.max, scale.min
                ),
            ));
        }
        if !(scale.min < scale.satisfied_min && scale.satisfied_min <= scale.max) {
            return Err(MetricError::invalid_parameter(
                "satisfied_min",
                format!(
                    "satisfied_min {} must be above scale_min {} and at most scale_max {}",
                    scale.satisfied_min, scale.min, scale.max
                ),
            ));
        }
        Ok(scale)
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Tally {
    responses: u64,
    satisfied: u64,
    score_sum: i64,
    /// Weight sums: of all responses, of the satisfied ones, of weight × score and of the
    /// squared weights (all equal to the counts without weights).
    weight: f64,
    satisfied_weight: f64,
    weighted_score_sum: f64,
    weight_squares: f64,
}

fn weighted_tally(
    scores: impl Iterator<Item = (i64, f64)>,
    scale: Scale,
) -> Result<Tally, (usize, String)> {
    let mut tally = Tally::default();
    for (row, (score, weight)) in scores.enumerate() {
        if score < scale.min || score > scale.max {
            return Err((
                row,
                format!(
                    "score {score} is outside the scale {}..={}; set scale_min and scale_max to your survey's scale",
                    scale.min, scale.max
                ),
            ));
        }
        let satisfied = score >= scale.satisfied_min;
        tally.responses += 1;
        tally.satisfied += u64::from(satisfied);
        tally.score_sum += score;
        tally.weight += weight;
        tally.satisfied_weight += if satisfied { weight } else { 0.0 };
        tally.weighted_score_sum += weight * score as f64;
        tally.weight_squares += weight * weight;
    }
    Ok(tally)
}

impl Metric for Csat {
    fn descriptor(&self) -> MetricDescriptor {
        let descriptor = MetricDescriptor::new("csat", env!("CARGO_PKG_VERSION"), "customer satisfaction: % of responses in the top boxes")
            .description(
                "CSAT = satisfied responses / responses * 100, where a response is satisfied when its score is at least \
                 satisfied_min (default 4 on a 1-5 scale: the top two boxes). The interval is the Wilson score interval \
                 (Wilson 1927), which stays inside 0..100 and is reliable for small samples and shares near 0 or 100. \
                 With a weight column the share is weighted and n is Kish's effective sample size; with population, n \
                 carries the finite population correction. compare, pairwise and period test segments and periods \
                 against each other (Agresti-Caffo differences, Holm-adjusted p-values).",
            )
            .input(ColumnSpec::int64("score", "satisfaction score on the scale scale_min..scale_max, one row per response").required())
            .input(ColumnSpec::quantity("weight", "the response's survey weight; responses count equally without it"))
            .parameter(ParameterSpec::int64("scale_min", 1, "lowest score of the scale").range(-1000.0, 1000.0))
            .parameter(ParameterSpec::int64("scale_max", 5, "highest score of the scale").range(-1000.0, 1000.0))
            .parameter(ParameterSpec::int64("satisfied_min", 4, "lowest score counted as satisfied").range(-1000.0, 1000.0))
            .parameter(ParameterSpec::double("confidence", 0.95, "confidence level of the interval around csat").range(0.5, 0.999))
            .parameter(
                ParameterSpec::new("population", DataType::Int64, "the number of customers the responses were drawn from, for the finite population correction; leave it out when they are few of many")
                    .optional()
                    .range(1.0, 1e15),
            )
            .output(OutputSpec::new("csat", "%", "satisfied / responses * 100, with a Wilson interval"))
            .output(OutputSpec::new("responses", "count", "number of responses"))
            .output(OutputSpec::new("satisfied", "count", "responses scoring satisfied_min or more"))
            .output(OutputSpec::new("mean_score", "score", "mean score (weighted with weight)"))
            .output(OutputSpec::new(
                "effective_responses",
                "count",
                "what the responses are worth as simple random draws: responses, less with unequal weights (Kish), more with the finite population correction",
            ));
        comparing(0.0, 0.0).declare(descriptor)
    }

    fn compute(&self, input: &Input<'_>, params: &Params) -> Result<Output, MetricError> {
        let scale = Scale::from_params(params)?;
        let level = params.f64("confidence")?;
        let z = two_sided_z(level).ok_or_else(|| {
            MetricError::invalid_parameter("confidence", "must be between 0 and 1")
        })?;
        let scores = input.int64("score")?;
        let weights = input.optional_double("weight")?;
        let mut rows = Vec::with_capacity(scores.len());
        let mut categories = Vec::with_capacity(scores.len());
        let mut row_weights = Vec::with_capacity(scores.len());
        for row in 0..scores.len() {
            let weight = match weights {
                None => 1.0,
                Some(w) if w.is_valid(row) => w.value(row),
                Some(_) => {
                    return Err(MetricError::invalid_value(
                        "weight",
                        row,
                        "weight is empty; give every response a weight, or leave the column out",
                    ));
                }
            };
            rows.push((scores.value(row), weight));
            // The categories of survey::PROPORTION: satisfied, not.
            categories.push(usize::from(scores.value(row) < scale.satisfied_min));
            row_weights.push(weight);
        }
        let tally = weighted_tally(rows.into_iter(), scale)
            .map_err(|(row, message)| MetricError::invalid_value("score", row, message))?;
        if tally.responses == 0 {
            return Err(MetricError::invalid_input(
                "the input has no responses; csat needs at least one score",
            ));
        }
        let population = match params.get("population") {
            Some(ParamValue::Int64(n)) => Some(u64::try_from(*n).unwrap_or(0)),
            _ => None,
        };
        if let Some(population) = population.filter(|p| *p < tally.responses) {
            return Err(MetricError::invalid_parameter(
                "population",
                format!(
                    "population {population} is smaller than the {} responses; give the number of customers the responses were drawn from",
                    tally.responses
                ),
            ));
        }
        let n = effective_sample_size(
            tally.responses,
            tally.weight,
            tally.weight_squares,
            population,
        )
        .ok_or_else(|| {
            MetricError::invalid_value(
                "weight",
                0,
                "the weights sum to zero; at least one response needs a positive weight",
            )
        })?;
        let share = tally.satisfied_weight / tally.weight;
        let (lower, upper) = wilson_interval_of(share, n, z);
        let output = Output::new()
            .scalar(Scalar::new("csat", 100.0 * share).with_interval(
                100.0 * lower,
                100.0 * upper,
                level,
            ))
            .scalar(Scalar::new("responses", tally.responses as f64))
            .scalar(Scalar::new("satisfied", tally.satisfied as f64))
            .scalar(Scalar::new(
                "mean_score",
                tally.weighted_score_sum / tally.weight,
            ))
            .scalar(survey::effective_responses(n));
        let answers = Answers {
            categories: &categories,
            weights: &row_weights,
        };
        comparing(z, 1.0 - level).tables(input, params, answers, output)
    }
}

/// What csat's comparisons compare, at critical value `z` and significance level `alpha`:
/// differences of proportions by Agresti and Caffo's adjusted Wald interval.
fn comparing(z: f64, alpha: f64) -> Comparing<'static, 2> {
    Comparing {
        score: "csat",
        unit: "%",
        scheme: survey::PROPORTION,
        scale: 100.0,
        z,
        alpha,
    }
}

mittari_sdk::export_plugin!(Csat);

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(scores: impl Iterator<Item = i64>, scale: Scale) -> Result<Tally, (usize, String)> {
        weighted_tally(scores.map(|s| (s, 1.0)), scale)
    }

    const FIVE_POINT: Scale = Scale {
        min: 1,
        max: 5,
        satisfied_min: 4,
    };

    fn check(scores: &[i64], scale: Scale, expect: Result<(u64, u64, i64), (usize, &str)>) {
        match (tally(scores.iter().copied(), scale), expect) {
            (Ok(t), Ok((responses, satisfied, sum))) => assert_eq!(
                (t.responses, t.satisfied, t.score_sum),
                (responses, satisfied, sum)
            ),
            (Err((row, message)), Err((want_row, fragment))) => {
                assert_eq!(row, want_row);
                assert!(message.contains(fragment), "{message}");
            }
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn counts_top_boxes() {
        // 4 and 5 are satisfied: 3 of 5.
        check(&[5, 4, 3, 2, 4], FIVE_POINT, Ok((5, 3, 18)));
        // A 0-10 scale with 9+ satisfied.
        check(
            &[10, 9, 8, 0],
            Scale {
                min: 0,
                max: 10,
                satisfied_min: 9,
            },
            Ok((4, 2, 27)),
        );
        check(
            &[5, 6],
            FIVE_POINT,
            Err((1, "score 6 is outside the scale 1..=5")),
        );
        check(&[0], FIVE_POINT, Err((0, "score 0 is outside")));
    }

    #[test]
    fn weights_and_population_set_the_effective_size() {
        use std::sync::Arc;

        use mittari_sdk::arrow_array::{Float64Array, Int64Array, RecordBatch};

        let run = |weights: Option<Vec<f64>>, population: Option<i64>| {
            let mut columns: Vec<(&str, Arc<dyn Array>)> =
                vec![("score", Arc::new(Int64Array::from(vec![5, 1, 4, 2])))];
            if let Some(w) = weights {
                columns.push(("weight", Arc::new(Float64Array::from(w))));
            }
            let batch = RecordBatch::try_from_iter(columns).unwrap();
            let mut params: Params = [("scale_min", 1), ("scale_max", 5), ("satisfied_min", 4)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), ParamValue::Int64(v)))
                .collect();
            for spec in Csat.descriptor().parameters {
                if let Some(default) = spec.default
                    && params.get(&spec.name).is_none()
                {
                    params.insert(spec.name, default);
                }
            }
            if let Some(n) = population {
                params.insert("population", ParamValue::Int64(n));
            }
            Csat.compute(&Input::new(&batch), &params)
        };
        let value = |output: &Output, name: &str| {
            output
                .scalars
                .iter()
                .find(|s| s.name == name)
                .and_then(|s| s.value)
                .unwrap()
        };
        // Weights 3, 1, 1, 3: satisfied (5 and 4) weigh 4 of 8, 50 %; Kish n = 64 / 20 = 3.2;
        // mean score (15 + 1 + 4 + 6) / 8 = 3.25.
        let output = run(Some(vec![3.0, 1.0, 1.0, 3.0]), None).unwrap();
        assert_eq!(value(&output, "csat"), 50.0);
        assert!((value(&output, "effective_responses") - 3.2).abs() < 1e-12);
        assert_eq!(value(&output, "mean_score"), 3.25);
        let ci = output.scalars[0].confidence_interval.unwrap();
        // The quantile is accurate to ~1e-9 relative, so bounds are checked to 1e-6.
        let (lo, hi) = wilson_interval_of(0.5, 3.2, 1.959963984540054);
        assert!((ci.lower - 100.0 * lo).abs() < 1e-6 && (ci.upper - 100.0 * hi).abs() < 1e-6);
        // 4 of a population of 4: CSAT is known exactly.
        let census = run(None, Some(4)).unwrap();
        let ci = census.scalars[0].confidence_interval.unwrap();
        assert_eq!((ci.lower, ci.upper), (50.0, 50.0));
        assert!(
            run(None, Some(3))
                .unwrap_err()
                .to_string()
                .contains("smaller than the 4 responses")
        );
        assert!(
            run(Some(vec![0.0; 4]), None)
                .unwrap_err()
                .to_string()
                .contains("weights sum to zero")
        );
    }

    #[test]
    fn the_descriptor_is_clean() {
        Csat.descriptor().check().unwrap();
        assert_eq!(Csat.descriptor().lint(), Vec::<String>::new());
    }

    #[test]
    fn scale_parameters_are_checked_together() {
        let params = |min: i64, max: i64, satisfied: i64| {
            [
                ("scale_min", min),
                ("scale_max", max),
                ("satisfied_min", satisfied),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), ParamValue::Int64(v)))
            .collect::<Params>()
        };
        assert_eq!(Scale::from_params(&params(1, 5, 4)), Ok(FIVE_POINT));
        assert!(
            matches!(Scale::from_params(&params(5, 5, 5)), Err(MetricError::InvalidParameter { name, .. }) if name == "scale_max")
        );
        assert!(
            matches!(Scale::from_params(&params(1, 5, 1)), Err(MetricError::InvalidParameter { name, .. }) if name == "satisfied_min")
        );
        assert!(
            matches!(Scale::from_params(&params(1, 5, 6)), Err(MetricError::InvalidParameter { name, .. }) if name == "satisfied_min")
        );
    }
}
