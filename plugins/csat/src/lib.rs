//! Customer satisfaction (CSAT): the share of responses in the top boxes of a satisfaction
//! scale, with a Wilson score interval.
#![forbid(unsafe_code)]

use mittari_sdk::prelude::*;
use mittari_sdk::stats::{two_sided_z, wilson_interval};

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
}

fn tally(scores: impl Iterator<Item = i64>, scale: Scale) -> Result<Tally, (usize, String)> {
    let mut tally = Tally::default();
    for (row, score) in scores.enumerate() {
        if score < scale.min || score > scale.max {
            return Err((
                row,
                format!(
                    "score {score} is outside the scale {}..={}; set scale_min and scale_max to your survey's scale",
                    scale.min, scale.max
                ),
            ));
        }
        tally.responses += 1;
        tally.satisfied += u64::from(score >= scale.satisfied_min);
        tally.score_sum += score;
    }
    Ok(tally)
}

impl Metric for Csat {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new("csat", env!("CARGO_PKG_VERSION"), "customer satisfaction: % of responses in the top boxes")
            .description(
                "CSAT = satisfied responses / responses * 100, where a response is satisfied when its score is at least \
                 satisfied_min (default 4 on a 1-5 scale: the top two boxes). The interval is the Wilson score interval \
                 (Wilson 1927), which stays inside 0..100 and is reliable for small samples and shares near 0 or 100.",
            )
            .input(ColumnSpec::int64("score", "satisfaction score on the scale scale_min..scale_max, one row per response").required())
            .parameter(ParameterSpec::int64("scale_min", 1, "lowest score of the scale").range(-1000.0, 1000.0))
            .parameter(ParameterSpec::int64("scale_max", 5, "highest score of the scale").range(-1000.0, 1000.0))
            .parameter(ParameterSpec::int64("satisfied_min", 4, "lowest score counted as satisfied").range(-1000.0, 1000.0))
            .parameter(ParameterSpec::double("confidence", 0.95, "confidence level of the interval around csat").range(0.5, 0.999))
            .output(OutputSpec::new("csat", "%", "satisfied / responses * 100, with a Wilson interval"))
            .output(OutputSpec::new("responses", "count", "number of responses"))
            .output(OutputSpec::new("satisfied", "count", "responses scoring satisfied_min or more"))
            .output(OutputSpec::new("mean_score", "score", "mean score"))
    }

    fn compute(&self, input: &Input<'_>, params: &Params) -> Result<Output, MetricError> {
        let scale = Scale::from_params(params)?;
        let level = params.f64("confidence")?;
        let z = two_sided_z(level).ok_or_else(|| {
            MetricError::invalid_parameter("confidence", "must be between 0 and 1")
        })?;
        let scores = input.int64("score")?;
        let tally = tally(scores.values().iter().copied(), scale)
            .map_err(|(row, message)| MetricError::invalid_value("score", row, message))?;
        let (lower, upper) =
            wilson_interval(tally.satisfied, tally.responses, z).ok_or_else(|| {
                MetricError::invalid_input(
                    "the input has no responses; csat needs at least one score",
                )
            })?;
        let n = tally.responses as f64;
        Ok(Output::new()
            .scalar(
                Scalar::new("csat", 100.0 * tally.satisfied as f64 / n).with_interval(
                    100.0 * lower,
                    100.0 * upper,
                    level,
                ),
            )
            .scalar(Scalar::new("responses", n))
            .scalar(Scalar::new("satisfied", tally.satisfied as f64))
            .scalar(Scalar::new("mean_score", tally.score_sum as f64 / n)))
    }
}

mittari_sdk::export_plugin!(Csat);

#[cfg(test)]
mod tests {
    use super::*;

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
