#![forbid(unsafe_code)]
//! Net Promoter Score: % promoters (scores 9–10) − % detractors (scores 0–6) on the 0–10
//! "how likely are you to recommend us" question, with its standard error and a normal
//! confidence interval.
//!
//! The standard error treats each response as a draw of +1 (promoter), 0 (passive) or −1
//! (detractor): the variance of one draw is (pP + pD) − (pP − pD)², so
//! SE = 100 · sqrt(variance / n) in NPS points.

use mittari_sdk::prelude::*;
use mittari_sdk::stats::two_sided_z;

/// Below this many responses the normal approximation behind the interval is rough.
const SMALL_SAMPLE: u64 = 30;

struct Nps;

impl Metric for Nps {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new(
            "nps",
            env!("CARGO_PKG_VERSION"),
            "Net Promoter Score: % promoters (9-10) minus % detractors (0-6)",
        )
        .description(
            "Net Promoter Score from answers to \"how likely are you to recommend us?\" on a \
             0-10 scale. Promoters answer 9-10, passives 7-8, detractors 0-6. \
             NPS = 100 * (promoters - detractors) / responses, from -100 to 100. \
             The standard error treats a response as +1, 0 or -1: variance = (pP + pD) - (pP - pD)^2, \
             SE = 100 * sqrt(variance / n); the interval is NPS +/- z * SE, clamped to -100..100. \
             Any other input column can be used with group_by to get NPS per segment.",
        )
        .input(ColumnSpec::int64("score", "answer on the 0-10 scale, one row per response").required().range(0.0, 10.0))
        .parameter(
            ParameterSpec::double("confidence", 0.95, "confidence level of the interval around nps")
                .range(0.5, 0.999),
        )
        .output(OutputSpec::new("nps", "points", "% promoters - % detractors, from -100 to 100"))
        .output(OutputSpec::new("responses", "count", "number of responses"))
        .output(OutputSpec::new("promoters", "count", "responses scoring 9 or 10"))
        .output(OutputSpec::new("passives", "count", "responses scoring 7 or 8"))
        .output(OutputSpec::new("detractors", "count", "responses scoring 0 to 6"))
        .output(OutputSpec::new("promoter_share", "%", "promoters / responses * 100"))
        .output(OutputSpec::new("passive_share", "%", "passives / responses * 100"))
        .output(OutputSpec::new("detractor_share", "%", "detractors / responses * 100"))
        .output(OutputSpec::new("standard_error", "points", "standard error of nps"))
    }

    fn compute(&self, input: &Input<'_>, params: &Params) -> Result<Output, MetricError> {
        let scores = input.int64("score")?;
        let mut counts = Counts::default();
        for (row, score) in scores.iter().enumerate() {
            let score = score.ok_or_else(|| {
                MetricError::invalid_value(
                    "score",
                    row,
                    "score is empty; every response needs a score from 0 to 10",
                )
            })?;
            counts
                .add(score)
                .map_err(|message| MetricError::invalid_value("score", row, message))?;
        }
        let level = params.f64("confidence")?;
        let z = two_sided_z(level).ok_or_else(|| {
            MetricError::invalid_parameter("confidence", "must be between 0 and 1")
        })?;
        let summary = counts.summarize(z).ok_or_else(|| {
            MetricError::invalid_input("the input has no responses; nps needs at least one score")
        })?;

        let mut output = Output::new()
            .scalar(Scalar::new("nps", summary.nps).with_interval(
                summary.ci_lower,
                summary.ci_upper,
                level,
            ))
            .scalar(Scalar::new("responses", counts.total() as f64))
            .scalar(Scalar::new("promoters", counts.promoters as f64))
            .scalar(Scalar::new("passives", counts.passives as f64))
            .scalar(Scalar::new("detractors", counts.detractors as f64))
            .scalar(Scalar::new("promoter_share", summary.promoter_share))
            .scalar(Scalar::new("passive_share", summary.passive_share))
            .scalar(Scalar::new("detractor_share", summary.detractor_share))
            .scalar(Scalar::new("standard_error", summary.standard_error));
        if counts.total() < SMALL_SAMPLE {
            output = output.warning(
                "small_sample",
                format!(
                    "only {} responses: the normal-approximation interval needs about {SMALL_SAMPLE} or more to be reliable",
                    counts.total()
                ),
            );
        }
        Ok(output)
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Counts {
    promoters: u64,
    passives: u64,
    detractors: u64,
}

impl Counts {
    fn add(&mut self, score: i64) -> Result<(), String> {
        match score {
            9..=10 => self.promoters += 1,
            7..=8 => self.passives += 1,
            0..=6 => self.detractors += 1,
            _ => {
                return Err(format!(
                    "score {score} is outside 0..=10; nps scores are integers from 0 to 10"
                ));
            }
        }
        Ok(())
    }

    fn total(&self) -> u64 {
        self.promoters + self.passives + self.detractors
    }

    /// `None` when there are no responses: every share would be 0/0.
    fn summarize(&self, z: f64) -> Option<Summary> {
        let n = self.total();
        if n == 0 {
            return None;
        }
        let n = n as f64;
        let p_promoter = self.promoters as f64 / n;
        let p_detractor = self.detractors as f64 / n;
        // From the integer difference, so that e.g. 1 promoter and 4 detractors of 5 is exactly -60.
        let difference = (self.promoters as f64 - self.detractors as f64) / n;
        // Clamped at zero: rounding can push an exact zero variance (all one class) a hair below.
        let variance = ((p_promoter + p_detractor) - difference * difference).max(0.0);
        let nps = 100.0 * difference;
        let standard_error = 100.0 * (variance / n).sqrt();
        Some(Summary {
            nps,
            promoter_share: 100.0 * p_promoter,
            passive_share: 100.0 * self.passives as f64 / n,
            detractor_share: 100.0 * p_detractor,
            standard_error,
            ci_lower: (nps - z * standard_error).max(-100.0),
            ci_upper: (nps + z * standard_error).min(100.0),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Summary {
    nps: f64,
    promoter_share: f64,
    passive_share: f64,
    detractor_share: f64,
    standard_error: f64,
    ci_lower: f64,
    ci_upper: f64,
}

mittari_sdk::export_plugin!(Nps);

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mittari_sdk::arrow_array::{Int64Array, RecordBatch};
    use mittari_sdk::arrow_schema::{Field, Schema};

    use super::*;

    const Z95: f64 = 1.959963984540054;

    fn counts(scores: &[i64]) -> Counts {
        let mut counts = Counts::default();
        for &s in scores {
            counts.add(s).unwrap();
        }
        counts
    }

    /// `expect` = (nps, standard_error), computed by hand from the definition.
    fn check(scores: &[i64], expect: (f64, f64)) {
        let summary = counts(scores).summarize(Z95).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(
            close(summary.nps, expect.0),
            "nps {} != {}",
            summary.nps,
            expect.0
        );
        assert!(
            close(summary.standard_error, expect.1),
            "se {} != {}",
            summary.standard_error,
            expect.1
        );
        assert!(close(
            summary.promoter_share + summary.passive_share + summary.detractor_share,
            100.0
        ));
    }

    #[test]
    fn hand_computed_cases() {
        // 4 promoters, 2 passives, 4 detractors: nps 0; variance 0.8 - 0 = 0.8;
        // se = 100 * sqrt(0.8 / 10) = 28.284271247461902.
        check(&[10, 9, 9, 8, 7, 6, 5, 3, 10, 0], (0.0, 28.284271247461902));
        // 4 promoters, 2 passives, 1 detractor of 7: nps = 300/7 = 42.857142857142854;
        // variance = 5/7 - (3/7)^2 = 26/49; se = 100 * sqrt(26/343) = 27.532210718...
        check(
            &[10, 10, 10, 9, 8, 7, 6],
            (300.0 / 7.0, 100.0 * (26.0f64 / 343.0).sqrt()),
        );
        // All promoters: nps 100, no variance.
        check(&[9, 10, 9], (100.0, 0.0));
        // 1 promoter, 4 detractors: exactly -60 (not -60.00000000000001 from 100 * (0.2 - 0.8)).
        check(
            &[10, 0, 3, 5, 6],
            (-60.0, 100.0 * ((1.0 - 0.36f64) / 5.0).sqrt()),
        );
        // All detractors: nps -100.
        check(&[0, 6], (-100.0, 0.0));
        // Boundaries: 6 is a detractor, 7 and 8 passives, 9 a promoter.
        check(&[6, 7, 8, 9], (0.0, 100.0 * (0.5f64 / 4.0).sqrt()));
    }

    #[test]
    fn interval_is_clamped_to_the_scale() {
        // 9 promoters, 1 detractor: nps 80, variance 1 - 0.64 = 0.36, se = 100 * sqrt(0.036).
        let summary = counts(&[10, 10, 10, 10, 10, 10, 10, 10, 10, 0])
            .summarize(Z95)
            .unwrap();
        let se = 100.0 * 0.036f64.sqrt();
        // The quantile is accurate to ~1e-9 relative, so interval bounds are checked to 1e-6.
        assert!((summary.ci_lower - (80.0 - Z95 * se)).abs() < 1e-6);
        assert_eq!(summary.ci_upper, 100.0);
    }

    #[test]
    fn rejects_scores_off_the_scale_and_empty_input() {
        assert!(
            Counts::default()
                .add(11)
                .unwrap_err()
                .contains("score 11 is outside 0..=10")
        );
        assert!(Counts::default().add(-1).is_err());
        assert_eq!(Counts::default().summarize(Z95), None);
    }

    fn run(scores: Vec<i64>) -> Result<Output, MetricError> {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "score",
            mittari_sdk::arrow_schema::DataType::Int64,
            false,
        )]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(scores))]).unwrap();
        let mut params = Params::new();
        params.insert("confidence", ParamValue::Double(0.95));
        Nps.compute(&Input::new(&batch), &params)
    }

    #[test]
    fn compute_reports_every_declared_output_and_names_bad_rows() {
        let output = run(vec![10, 9, 9, 8, 7, 6, 5, 3, 10, 0]).unwrap();
        let descriptor = Nps.descriptor();
        let names: Vec<_> = output.scalars.iter().map(|s| s.name.as_str()).collect();
        let declared: Vec<_> = descriptor.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, declared);
        let nps = &output.scalars[0];
        let ci = nps.confidence_interval.unwrap();
        assert!((ci.lower - (0.0 - Z95 * 28.284271247461902)).abs() < 1e-6);
        assert_eq!(output.warnings[0].code, "small_sample");

        assert_eq!(
            run(vec![10, 11]).unwrap_err(),
            MetricError::invalid_value(
                "score",
                1,
                "score 11 is outside 0..=10; nps scores are integers from 0 to 10"
            )
        );
        assert!(matches!(
            run(vec![]).unwrap_err(),
            MetricError::InvalidInput { column: None, .. }
        ));
        descriptor.check().unwrap();
    }
}
