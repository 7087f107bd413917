#![forbid(unsafe_code)]
//! Net Promoter Score: % promoters (scores 9–10) − % detractors (scores 0–6) on the 0–10
//! "how likely are you to recommend us" question, with its standard error and an interval that
//! holds for small samples.
//!
//! Each response is a draw of +1 (promoter), 0 (passive) or −1 (detractor): the variance of
//! one draw is (pP + pD) − (pP − pD)², so SE = 100 · sqrt(variance / n) in NPS points. The
//! interval is by default the adjusted Wald interval (3 pseudo-responses added, ¾ of them
//! promoters and ¾ detractors), which Rocks (2016) found to cover best among the methods he
//! compared, small samples included. Weighted responses count by Kish's effective sample size,
//! and a survey of a known, finite population gets the finite population correction.

use mittari_sdk::arrow_array::Array;
use mittari_sdk::prelude::*;
use mittari_sdk::stats::{effective_sample_size, two_sided_z};
use mittari_sdk::survey::{self, Answers, Comparing};

/// Below this many (effective) responses the interval is wide; the warning says how wide.
const SMALL_SAMPLE: f64 = 30.0;

struct Nps;

/// How the interval around nps is built.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Method {
    /// Add 3 pseudo-responses, 0.75 promoters and 0.75 detractors (Rocks 2016).
    AdjustedWald,
    /// nps ± z · standard_error.
    Wald,
}

impl Metric for Nps {
    fn descriptor(&self) -> MetricDescriptor {
        let descriptor = MetricDescriptor::new(
            "nps",
            env!("CARGO_PKG_VERSION"),
            "Net Promoter Score: % promoters (9-10) minus % detractors (0-6)",
        )
        .description(
            "Net Promoter Score from answers to \"how likely are you to recommend us?\" on a \
             0-10 scale. Promoters answer 9-10, passives 7-8, detractors 0-6. \
             NPS = 100 * (promoters - detractors) / responses, from -100 to 100 (with a weight column, \
             weighted shares). The standard error treats a response as +1, 0 or -1: \
             variance = (pP + pD) - (pP - pD)^2, SE = 100 * sqrt(variance / n), n the effective \
             number of responses (Kish's (sum w)^2 / sum w^2 with weights; divided by the finite \
             population correction (N - n) / (N - 1) with population). The interval is by default \
             the adjusted Wald interval (Rocks 2016): the same formula after adding 3 to n and 0.75 \
             to promoters and to detractors; interval_method=wald gives NPS +/- z * SE. Both are \
             clamped to -100..100. Any other input column can be used with group_by to get NPS per segment; \
             compare, pairwise and period test segments and periods against each other (adjusted Wald differences, \
             Holm-adjusted p-values) and give a trend.",
        )
        .input(ColumnSpec::int64("score", "answer on the 0-10 scale, one row per response").required().range(0.0, 10.0))
        .input(ColumnSpec::quantity("weight", "the response's survey weight (e.g. to match the customer base's mix); responses count equally without it"))
        .parameter(
            ParameterSpec::double("confidence", 0.95, "confidence level of the interval around nps")
                .range(0.5, 0.999),
        )
        .parameter(
            ParameterSpec::string("interval_method", "adjusted_wald", "adjusted_wald (holds for small samples; Rocks 2016) or wald (nps +/- z * standard_error)")
                .allowed_values(&["adjusted_wald", "wald"]),
        )
        .parameter(
            ParameterSpec::new(
                "population",
                DataType::Int64,
                "the number of customers the responses were drawn from, for the finite population correction; leave it out when they are few of many",
            )
            .optional()
            .range(1.0, 1e15),
        )
        .output(OutputSpec::new("nps", "points", "% promoters - % detractors, from -100 to 100"))
        .output(OutputSpec::new("responses", "count", "number of responses"))
        .output(OutputSpec::new("promoters", "count", "responses scoring 9 or 10"))
        .output(OutputSpec::new("passives", "count", "responses scoring 7 or 8"))
        .output(OutputSpec::new("detractors", "count", "responses scoring 0 to 6"))
        .output(OutputSpec::new("promoter_share", "%", "promoters / responses * 100 (weighted with weight)"))
        .output(OutputSpec::new("passive_share", "%", "passives / responses * 100 (weighted with weight)"))
        .output(OutputSpec::new("detractor_share", "%", "detractors / responses * 100 (weighted with weight)"))
        .output(OutputSpec::new("standard_error", "points", "standard error of nps, from the effective number of responses"))
        .output(OutputSpec::new(
            "effective_responses",
            "count",
            "what the responses are worth as simple random draws: responses, less with unequal weights (Kish), more with the finite population correction",
        ));
        comparing(0.0, 0.0).declare(descriptor)
    }

    fn compute(&self, input: &Input<'_>, params: &Params) -> Result<Output, MetricError> {
        let scores = input.int64("score")?;
        let weights = input.optional_double("weight")?;
        let mut counts = Counts::default();
        let mut categories = Vec::with_capacity(scores.len());
        let mut row_weights = Vec::with_capacity(scores.len());
        for (row, score) in scores.iter().enumerate() {
            let score = score.ok_or_else(|| {
                MetricError::invalid_value(
                    "score",
                    row,
                    "score is empty; every response needs a score from 0 to 10",
                )
            })?;
            let weight = match weights {
                None => 1.0,
                Some(w) => w.is_valid(row).then(|| w.value(row)).ok_or_else(|| {
                    MetricError::invalid_value(
                        "weight",
                        row,
                        "weight is empty; give every response a weight, or leave the column out",
                    )
                })?,
            };
            counts
                .add(score, weight)
                .map_err(|message| MetricError::invalid_value("score", row, message))?;
            // The categories of survey::NPS: promoter, passive, detractor.
            categories.push(match score {
                9..=10 => 0,
                7..=8 => 1,
                _ => 2,
            });
            row_weights.push(weight);
        }
        let level = params.f64("confidence")?;
        let z = two_sided_z(level).ok_or_else(|| {
            MetricError::invalid_parameter("confidence", "must be between 0 and 1")
        })?;
        let method = match params.str("interval_method")? {
            "wald" => Method::Wald,
            _ => Method::AdjustedWald,
        };
        let population = match params.get("population") {
            Some(ParamValue::Int64(n)) => Some(u64::try_from(*n).unwrap_or(0)),
            _ => None,
        };
        if counts.total() == 0 {
            return Err(MetricError::invalid_input(
                "the input has no responses; nps needs at least one score",
            ));
        }
        if let Some(population) = population.filter(|p| *p < counts.total()) {
            return Err(MetricError::invalid_parameter(
                "population",
                format!(
                    "population {population} is smaller than the {} responses; give the number of customers the responses were drawn from",
                    counts.total()
                ),
            ));
        }
        let summary = counts.summarize(z, method, population).ok_or_else(|| {
            MetricError::invalid_value(
                "weight",
                0,
                "the weights sum to zero; at least one response needs a positive weight",
            )
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
            .scalar(Scalar::new("standard_error", summary.standard_error))
            .scalar(survey::effective_responses(summary.effective_responses));
        if summary.effective_responses < SMALL_SAMPLE {
            let effective = if summary.effective_responses == counts.total() as f64 {
                String::new()
            } else {
                format!(
                    ", worth {:.1} simple random draws",
                    summary.effective_responses
                )
            };
            output = output.warning(
                "small_sample",
                format!(
                    "only {} responses{effective}: the interval is wide, and most segments or months cannot be told apart",
                    counts.total(),
                ),
            );
        }
        let answers = Answers {
            categories: &categories,
            weights: &row_weights,
        };
        output = comparing(z, 1.0 - level).tables(input, params, answers, output)?;
        if population.is_some() && weights.is_some() {
            output = output.warning(
                "weights_and_population",
                "with both weights and a population, the finite population correction uses the number of responses; it is exact only for equal-probability samples",
            );
        }
        Ok(output)
    }
}

/// What nps's comparisons compare, at critical value `z` and significance level `alpha`.
fn comparing(z: f64, alpha: f64) -> Comparing<'static, 3> {
    Comparing {
        score: "nps",
        unit: "points",
        scheme: survey::NPS,
        scale: 100.0,
        z,
        alpha,
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Counts {
    promoters: u64,
    passives: u64,
    detractors: u64,
    /// Weight sums of promoters and detractors, of all responses and of their squares.
    promoter_weight: f64,
    detractor_weight: f64,
    passive_weight: f64,
    weight_squares: f64,
}

impl Counts {
    fn add(&mut self, score: i64, weight: f64) -> Result<(), String> {
        match score {
            9..=10 => {
                self.promoters += 1;
                self.promoter_weight += weight;
            }
            7..=8 => {
                self.passives += 1;
                self.passive_weight += weight;
            }
            0..=6 => {
                self.detractors += 1;
                self.detractor_weight += weight;
            }
            _ => {
                return Err(format!(
                    "score {score} is outside 0..=10; nps scores are integers from 0 to 10"
                ));
            }
        }
        self.weight_squares += weight * weight;
        Ok(())
    }

    fn total(&self) -> u64 {
        self.promoters + self.passives + self.detractors
    }

    /// `None` when there are no responses or no weight: every share would be 0/0.
    fn summarize(&self, z: f64, method: Method, population: Option<u64>) -> Option<Summary> {
        let weight = self.promoter_weight + self.passive_weight + self.detractor_weight;
        let n = effective_sample_size(self.total(), weight, self.weight_squares, population)?;
        let p_promoter = self.promoter_weight / weight;
        let p_detractor = self.detractor_weight / weight;
        // From the difference of sums, so that e.g. 1 promoter and 4 detractors of 5 is exactly -60.
        let difference = (self.promoter_weight - self.detractor_weight) / weight;
        let nps = 100.0 * difference;
        let standard_error = 100.0 * (trinomial_variance(p_promoter, p_detractor) / n).sqrt();
        let (ci_lower, ci_upper) = if n.is_infinite() {
            // Everyone answered: the score is known exactly.
            (nps, nps)
        } else {
            match method {
                Method::Wald => (nps - z * standard_error, nps + z * standard_error),
                Method::AdjustedWald => {
                    // survey::NPS's 0.75 promoters, 1.5 passives and 0.75 detractors added.
                    let tally = survey::Tally::<3> {
                        answers: self.total(),
                        weight: [
                            self.promoter_weight,
                            self.passive_weight,
                            self.detractor_weight,
                        ],
                        weight_squares: self.weight_squares,
                    };
                    let (mean, variance) = tally.adjusted_at(&survey::NPS, n);
                    let half = 100.0 * z * variance.sqrt();
                    (100.0 * mean - half, 100.0 * mean + half)
                }
            }
        };
        Some(Summary {
            nps,
            promoter_share: 100.0 * p_promoter,
            passive_share: 100.0 * self.passive_weight / weight,
            detractor_share: 100.0 * p_detractor,
            standard_error,
            effective_responses: n,
            ci_lower: ci_lower.max(-100.0),
            ci_upper: ci_upper.min(100.0),
        })
    }
}

/// The variance of one +1 / 0 / −1 draw, clamped at zero: rounding can push an exact zero
/// (all one class) a hair below.
fn trinomial_variance(promoters: f64, detractors: f64) -> f64 {
    ((promoters + detractors) - (promoters - detractors).powi(2)).max(0.0)
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Summary {
    nps: f64,
    promoter_share: f64,
    passive_share: f64,
    detractor_share: f64,
    standard_error: f64,
    effective_responses: f64,
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
            counts.add(s, 1.0).unwrap();
        }
        counts
    }

    /// `expect` = (nps, standard_error), computed by hand from the definition.
    fn check(scores: &[i64], expect: (f64, f64)) {
        let summary = counts(scores).summarize(Z95, Method::Wald, None).unwrap();
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
            .summarize(Z95, Method::Wald, None)
            .unwrap();
        let se = 100.0 * 0.036f64.sqrt();
        // The quantile is accurate to ~1e-9 relative, so interval bounds are checked to 1e-6.
        assert!((summary.ci_lower - (80.0 - Z95 * se)).abs() < 1e-6);
        assert_eq!(summary.ci_upper, 100.0);
    }

    fn weighted(scores: &[(i64, f64)]) -> Counts {
        let mut counts = Counts::default();
        for &(s, w) in scores {
            counts.add(s, w).unwrap();
        }
        counts
    }

    #[test]
    fn weights_count_by_their_effective_size() {
        // Promoter weight 2, detractor 1, passive 1: nps 100 * (2 - 1) / 4 = 25; Kish
        // n = 16 / 6; variance 0.75 - 0.0625 = 0.6875; se = 100 * sqrt(0.6875 * 6 / 16).
        let summary = weighted(&[(10, 2.0), (0, 1.0), (8, 1.0)])
            .summarize(Z95, Method::Wald, None)
            .unwrap();
        assert_eq!(summary.nps, 25.0);
        assert!((summary.effective_responses - 16.0 / 6.0).abs() < 1e-12);
        assert!((summary.standard_error - 100.0 * (0.6875f64 * 6.0 / 16.0).sqrt()).abs() < 1e-9);
        // Equal weights change nothing.
        let plain = counts(&[10, 0, 8]).summarize(Z95, Method::AdjustedWald, None);
        let equal =
            weighted(&[(10, 3.0), (0, 3.0), (8, 3.0)]).summarize(Z95, Method::AdjustedWald, None);
        let (plain, equal) = (plain.unwrap(), equal.unwrap());
        assert!(
            (plain.ci_lower - equal.ci_lower).abs() < 1e-9 && (plain.nps - equal.nps).abs() < 1e-9
        );
    }

    #[test]
    fn a_known_population_narrows_the_interval() {
        let scores = [10, 9, 9, 8, 7, 6, 5, 3, 10, 0];
        // 10 of 20: n = 10 * 19 / 10 = 19; se = 100 * sqrt(0.8 / 19).
        let summary = counts(&scores)
            .summarize(Z95, Method::Wald, Some(20))
            .unwrap();
        assert!((summary.standard_error - 100.0 * (0.8f64 / 19.0).sqrt()).abs() < 1e-9);
        // Everyone answered: the score is exact.
        let census = counts(&scores)
            .summarize(Z95, Method::AdjustedWald, Some(10))
            .unwrap();
        assert_eq!((census.ci_lower, census.ci_upper), (0.0, 0.0));
    }

    #[test]
    fn adjusted_wald_intervals_cover_at_their_level() {
        // Trinomial samples (promoters, passives, detractors) of 10 and 40 answers: the
        // adjusted Wald interval must cover the true NPS about 95 % of the time (Rocks 2016
        // reports coverage near nominal down to n = 10); 4 000 samples, Monte Carlo sd 0.0035.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for (n, promoters, detractors) in [(10, 0.5, 0.2), (40, 0.3, 0.3), (40, 0.7, 0.1)] {
            let truth = 100.0 * (promoters - detractors);
            let trials = 4000;
            let mut covered = 0;
            for _ in 0..trials {
                let mut counts = Counts::default();
                for _ in 0..n {
                    let u = uniform();
                    let score = if u < promoters {
                        10
                    } else if u < promoters + detractors {
                        0
                    } else {
                        8
                    };
                    counts.add(score, 1.0).unwrap();
                }
                let s = counts.summarize(Z95, Method::AdjustedWald, None).unwrap();
                covered += usize::from(s.ci_lower <= truth && truth <= s.ci_upper);
            }
            let coverage = covered as f64 / trials as f64;
            assert!(
                (0.93..0.985).contains(&coverage),
                "n={n} p=({promoters}, {detractors}): {coverage}"
            );
        }
    }

    #[test]
    fn rejects_scores_off_the_scale_and_empty_input() {
        assert!(
            Counts::default()
                .add(11, 1.0)
                .unwrap_err()
                .contains("score 11 is outside 0..=10")
        );
        assert!(Counts::default().add(-1, 1.0).is_err());
        assert_eq!(Counts::default().summarize(Z95, Method::Wald, None), None);
    }

    fn run(scores: Vec<i64>) -> Result<Output, MetricError> {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "score",
            mittari_sdk::arrow_schema::DataType::Int64,
            false,
        )]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(scores))]).unwrap();
        let mut params = Params::new();
        for spec in Nps.descriptor().parameters {
            if let Some(default) = spec.default {
                params.insert(spec.name, default);
            }
        }
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
        // Adjusted Wald: 4.75 promoters and 4.75 detractors of 13; variance 9.5 / 13;
        // half width 100 * z * sqrt(9.5 / 169) = 46.4693...
        let half = 100.0 * Z95 * (9.5f64 / 169.0).sqrt();
        assert!(
            (ci.lower + half).abs() < 1e-6 && (ci.upper - half).abs() < 1e-6,
            "{ci:?}"
        );
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
        assert_eq!(descriptor.lint(), Vec::<String>::new());
    }
}
