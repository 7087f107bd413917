//! Survey scores compared: segments against the rest of the sample, segments pairwise, periods
//! against the one before and the same one a year before, and a trend — each difference with
//! its interval and p-value, and p-values adjusted for the number of comparisons (Holm).
//!
//! A survey score here is the (weighted) mean of a per-answer value over a few categories: NPS
//! is the mean of +1 (promoter), 0 (passive) and −1 (detractor); CSAT the mean of 1
//! (satisfied) and 0. A [`Scheme`] names the categories' values and the pseudo-answers the
//! adjusted Wald method adds to each sample before computing a difference: 0.75 promoters, 1.5
//! passives and 0.75 detractors for NPS (Rocks 2016), one success and one failure for a
//! proportion (Agresti & Caffo 2000). Both keep the difference's interval close to its level
//! for small samples, where the plain Wald interval covers too little. A difference is tested
//! with the same standard error, so a p-value below 1 − level goes with an interval that
//! excludes zero.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow_schema::DataType;

use crate::stats::effective_sample_size;
use crate::time::{date_micros, date_of};
use crate::{
    ColumnSpec, Input, MetricDescriptor, MetricError, Output, OutputSpec, ParamValue,
    ParameterSpec, Params, result_table,
};

/// The categories of an answer, their values and the adjusted Wald method's pseudo-answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scheme<const K: usize> {
    pub values: [f64; K],
    pub pseudo: [f64; K],
}

/// NPS: promoters (+1), passives (0), detractors (−1); 3 pseudo-answers (Rocks 2016).
pub const NPS: Scheme<3> = Scheme {
    values: [1.0, 0.0, -1.0],
    pseudo: [0.75, 1.5, 0.75],
};

/// A proportion (CSAT): satisfied (1), not (0); one pseudo-answer each (Agresti & Caffo 2000).
pub const PROPORTION: Scheme<2> = Scheme {
    values: [1.0, 0.0],
    pseudo: [1.0, 1.0],
};

/// The (weighted) answers of one sample, per category.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tally<const K: usize> {
    pub answers: u64,
    pub weight: [f64; K],
    pub weight_squares: f64,
}

impl<const K: usize> Default for Tally<K> {
    fn default() -> Self {
        Tally {
            answers: 0,
            weight: [0.0; K],
            weight_squares: 0.0,
        }
    }
}

impl Tally<2> {
    /// `successes` of `n` unweighted answers, for [`PROPORTION`] (a rate known from counts:
    /// first-contact resolution, customers retained).
    pub fn proportion(successes: u64, n: u64) -> Tally<2> {
        Tally {
            answers: n,
            weight: [successes as f64, n.saturating_sub(successes) as f64],
            weight_squares: n as f64,
        }
    }
}

impl<const K: usize> Tally<K> {
    pub fn add(&mut self, category: usize, weight: f64) {
        self.answers += 1;
        self.weight[category] += weight;
        self.weight_squares += weight * weight;
    }

    /// The answers of `self` that are not in `part` (a segment's complement).
    #[must_use]
    pub fn without(&self, part: &Tally<K>) -> Tally<K> {
        let mut rest = *self;
        rest.answers -= part.answers.min(rest.answers);
        for (w, p) in rest.weight.iter_mut().zip(part.weight) {
            *w = (*w - p).max(0.0);
        }
        rest.weight_squares = (rest.weight_squares - part.weight_squares).max(0.0);
        rest
    }

    fn total_weight(&self) -> f64 {
        self.weight.iter().sum()
    }

    /// The score (mean value per answer), `None` without answers or weight.
    pub fn score(&self, scheme: &Scheme<K>) -> Option<f64> {
        let total = self.total_weight();
        (self.answers > 0 && total > 0.0).then(|| {
            self.weight
                .iter()
                .zip(scheme.values)
                .map(|(w, v)| w * v)
                .sum::<f64>()
                / total
        })
    }

    /// The adjusted score and the variance of its mean: the categories' shares after adding
    /// the pseudo-answers to an effective sample of Kish's size.
    fn adjusted(&self, scheme: &Scheme<K>) -> Option<(f64, f64)> {
        let n =
            effective_sample_size(self.answers, self.total_weight(), self.weight_squares, None)?;
        Some(self.adjusted_at(scheme, n))
    }

    /// The adjusted score and the variance of its mean at an effective sample size `n`
    /// given by the caller (Kish's size with a finite population correction, say): the
    /// categories' weighted shares of `n` answers plus the scheme's pseudo-answers. The
    /// adjusted Wald interval of the score is mean ± z √variance.
    pub fn adjusted_at(&self, scheme: &Scheme<K>, n: f64) -> (f64, f64) {
        let total = self.total_weight();
        let pseudo: f64 = scheme.pseudo.iter().sum();
        let adjusted_n = n + pseudo;
        let shares: Vec<f64> = self
            .weight
            .iter()
            .zip(scheme.pseudo)
            .map(|(w, p)| (w / total * n + p) / adjusted_n)
            .collect();
        let mean: f64 = shares.iter().zip(scheme.values).map(|(s, v)| s * v).sum();
        let square: f64 = shares
            .iter()
            .zip(scheme.values)
            .map(|(s, v)| s * v * v)
            .sum();
        (mean, (square - mean * mean).max(0.0) / adjusted_n)
    }
}

/// A difference between two samples' scores, in the scores' units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Difference {
    /// The scores' plain difference.
    pub value: f64,
    /// The adjusted Wald interval of the difference.
    pub lower: f64,
    pub upper: f64,
    /// Two-sided p-value of no difference, with the interval's standard error.
    pub p_value: f64,
}

/// `a`'s score minus `b`'s, for independent samples, each score scaled by `scale` (100 for
/// NPS points and percentages); `None` when either sample is empty.
pub fn difference<const K: usize>(
    a: &Tally<K>,
    b: &Tally<K>,
    scheme: &Scheme<K>,
    z: f64,
    scale: f64,
) -> Option<Difference> {
    let value = scale * (a.score(scheme)? - b.score(scheme)?);
    let (mean_a, var_a) = a.adjusted(scheme)?;
    let (mean_b, var_b) = b.adjusted(scheme)?;
    let center = scale * (mean_a - mean_b);
    let se = scale * (var_a + var_b).sqrt();
    let p_value = if se > 0.0 {
        two_sided_p(center / se)
    } else if center == 0.0 {
        1.0
    } else {
        0.0
    };
    Some(Difference {
        value,
        lower: center - z * se,
        upper: center + z * se,
        p_value,
    })
}

/// P(|Z| ≥ |z|) for a standard normal Z.
pub fn two_sided_p(z: f64) -> f64 {
    libm::erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0)
}

/// Holm's step-down adjustment of `p_values` for their number (Holm 1979): the family-wise
/// error stays at most α when each adjusted p-value is compared with α. In input order.
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p_values[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// A straight line through scores over periods, weighted by their precision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// Change per period.
    pub slope: f64,
    pub lower: f64,
    pub upper: f64,
    pub p_value: f64,
    pub periods: usize,
}

/// The inverse-variance weighted least-squares slope of `points` (period index, score,
/// standard error of the score): the fixed-effect meta-regression of the scores on time
/// (Borenstein et al. 2009, ch. 20), whose slope has standard error 1 / √Σ wᵢ(xᵢ − x̄)².
/// `None` for fewer than three points or a score without a positive standard error.
pub fn trend(points: &[(f64, f64, f64)], z: f64) -> Option<Trend> {
    if points.len() < 3 || points.iter().any(|p| p.2.is_nan() || p.2 <= 0.0) {
        return None;
    }
    let weights: Vec<f64> = points.iter().map(|p| 1.0 / (p.2 * p.2)).collect();
    let total: f64 = weights.iter().sum();
    let mean_x = points
        .iter()
        .zip(&weights)
        .map(|(p, w)| w * p.0)
        .sum::<f64>()
        / total;
    let mean_y = points
        .iter()
        .zip(&weights)
        .map(|(p, w)| w * p.1)
        .sum::<f64>()
        / total;
    let sxx: f64 = points
        .iter()
        .zip(&weights)
        .map(|(p, w)| w * (p.0 - mean_x).powi(2))
        .sum();
    let sxy: f64 = points
        .iter()
        .zip(&weights)
        .map(|(p, w)| w * (p.0 - mean_x) * (p.1 - mean_y))
        .sum();
    if sxx.is_nan() || sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let se = 1.0 / sxx.sqrt();
    Some(Trend {
        slope,
        lower: slope - z * se,
        upper: slope + z * se,
        p_value: two_sided_p(slope / se),
        periods: points.len(),
    })
}

/// Calendar periods of answers, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Week,
    Month,
    Quarter,
}

impl Period {
    /// `week`, `month` or `quarter`; `None` for anything else (`none`).
    pub fn parse(text: &str) -> Option<Period> {
        match text {
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            "quarter" => Some(Period::Quarter),
            _ => None,
        }
    }

    /// The period holding `micros` as an index that counts periods (consecutive periods
    /// differ by one), and its label: `2024-03`, `2024-Q1`, or the ISO week `2024-W09`.
    pub fn of(self, micros: i64) -> (i64, String) {
        let day = micros.div_euclid(86_400_000_000);
        match self {
            Period::Month | Period::Quarter => {
                let (year, month, _) = date_of(micros);
                let months = year * 12 + i64::from(month) - 1;
                if self == Period::Month {
                    (months, format!("{year}-{month:02}"))
                } else {
                    let quarter = (month - 1) / 3;
                    (months.div_euclid(3), format!("{year}-Q{}", quarter + 1))
                }
            }
            Period::Week => {
                // 1970-01-01 was a Thursday: Monday-based weeks start 3 days before it.
                let week = (day + 3).div_euclid(7);
                let thursday = week * 7 - 3 + 3;
                let (year, _, _) = date_of(thursday * 86_400_000_000);
                let first = date_micros(year, 1, 1).div_euclid(86_400_000_000);
                let number = (thursday - first) / 7 + 1;
                (week, format!("{year}-W{number:02}"))
            }
        }
    }

    /// Midnight (UTC) of the first day of period `index` ([`Period::of`]'s index): a Monday,
    /// the 1st of a month, or the 1st of January, April, July or October.
    pub fn first_day(self, index: i64) -> i64 {
        match self {
            Period::Month => {
                date_micros(index.div_euclid(12), (index.rem_euclid(12) + 1) as u32, 1)
            }
            Period::Quarter => {
                date_micros(index.div_euclid(4), (index.rem_euclid(4) * 3 + 1) as u32, 1)
            }
            Period::Week => (index * 7 - 3) * 86_400_000_000,
        }
    }

    /// `week`, `month` or `quarter`.
    pub fn name(self) -> &'static str {
        match self {
            Period::Week => "week",
            Period::Month => "month",
            Period::Quarter => "quarter",
        }
    }

    /// How many periods make a year.
    pub fn per_year(self) -> i64 {
        match self {
            Period::Week => 52,
            Period::Month => 12,
            Period::Quarter => 4,
        }
    }
}

/// The tallies of answers by period (index → label and tally), in time order.
pub type ByPeriod<const K: usize> = BTreeMap<i64, (String, Tally<K>)>;

/// The `effective_responses` output: what the answers are worth as simple random draws
/// ([`crate::stats::effective_sample_size`]); undefined when everyone in the population answered.
pub fn effective_responses(n: f64) -> crate::Scalar {
    if n.is_finite() {
        crate::Scalar::new("effective_responses", n)
    } else {
        crate::Scalar::undefined(
            "effective_responses",
            "everyone in the population answered: the answers are the population, not a sample of it",
        )
    }
}

/// A survey's answers, one per row: its category (index into the [`Scheme`]) and weight.
#[derive(Debug, Clone, Copy)]
pub struct Answers<'a> {
    pub categories: &'a [usize],
    pub weights: &'a [f64],
}

impl Answers<'_> {
    fn tally<const K: usize>(&self, rows: impl Iterator<Item = usize>) -> Tally<K> {
        let mut tally = Tally::default();
        for row in rows {
            tally.add(self.categories[row], self.weights[row]);
        }
        tally
    }
}

/// What a comparison table is about: the score's name and unit (`nps`, `points`), the scale
/// from a mean to it (100), the critical value and the significance level.
#[derive(Debug, Clone)]
pub struct Comparing<'a, const K: usize> {
    pub score: &'a str,
    pub unit: &'a str,
    pub scheme: Scheme<K>,
    pub scale: f64,
    pub z: f64,
    /// 1 − confidence: an adjusted p-value below it is significant.
    pub alpha: f64,
}

impl<const K: usize> Comparing<'_, K> {
    fn difference_columns(&self, prefix: &str, what: &str) -> Vec<OutputSpec> {
        let name = |suffix: &str| format!("{prefix}{suffix}");
        vec![
            OutputSpec::new(&name(""), self.unit, what),
            OutputSpec::new(
                &name("_lower"),
                self.unit,
                "lower bound of its adjusted Wald interval (not adjusted for the number of comparisons)",
            ),
            OutputSpec::new(
                &name("_upper"),
                self.unit,
                "upper bound of its adjusted Wald interval",
            ),
            OutputSpec::new(
                &name("_p_value"),
                "probability",
                "two-sided p-value of no difference",
            ),
            OutputSpec::new(
                &name("_p_adjusted"),
                "probability",
                "the p-value adjusted for the table's number of comparisons (Holm)",
            ),
            OutputSpec::new(
                &name("_significant"),
                "id",
                "whether the adjusted p-value is below 1 - confidence",
            ),
        ]
    }

    /// `descriptor` with the comparisons' input (`timestamp`), parameters (`compare`,
    /// `pairwise`, `period`, `trend_periods`) and tables (`segments`, `pairs`, `periods`,
    /// `trend`), for [`Comparing::tables`]; and group-by comparing each group with the rest
    /// ([`MetricDescriptor::compares_groups`]). The metric declares `confidence`.
    pub fn declare(&self, descriptor: MetricDescriptor) -> MetricDescriptor {
        let score = self.score;
        descriptor
            .input(ColumnSpec::timestamp("timestamp", "when the answer was given, for period"))
            .parameter(ParameterSpec::columns(
                "compare",
                "a column whose segments (region, channel) are each compared with all other answers in the segments table, p-values adjusted for their number (Holm)",
            ))
            .parameter(ParameterSpec::bool(
                "pairwise",
                false,
                "with compare: also every pair of segments, in the pairs table",
            ))
            .parameter(
                ParameterSpec::string(
                    "period",
                    "none",
                    "week, month or quarter: the periods table (each period against the one before and a year before) and the trend table",
                )
                .allowed_values(&["none", "week", "month", "quarter"]),
            )
            .parameter(
                ParameterSpec::int64(
                    "trend_periods",
                    6,
                    "with period: the trend runs through this many of the last periods with answers",
                )
                .range(3.0, 520.0),
            )
            .table_with_columns(
                "segments",
                &format!("with compare: each segment's {score} against all other answers'"),
                std::iter::once(OutputSpec::new("segment", "id", "the segment (a value of the compare column)"))
                    .chain(self.segment_columns()),
            )
            .table_with_columns(
                "pairs",
                "with compare and pairwise: every pair of segments",
                self.pair_columns(),
            )
            .table_with_columns(
                "periods",
                &format!("with period: {score} per period, against the period before and a year before"),
                self.period_columns(),
            )
            .table_with_columns(
                "trend",
                &format!("with period: the line through the last trend_periods periods' {score}"),
                self.trend_columns(),
            )
            // group_by COLUMN compares each group with the rest, as compare=COLUMN does,
            // beside the group's own figures.
            .compares_groups(
                "compare",
                "segments",
                &[
                    (&format!("rest_{score}"), &format!("rest_{score}")),
                    ("difference", "vs_rest"),
                    ("difference_p_value", "vs_rest_p_value"),
                    ("difference_p_adjusted", "vs_rest_p_adjusted"),
                    ("difference_significant", "vs_rest_significant"),
                ],
                "confidence",
            )
    }

    /// The `segments`, `pairs`, `periods` and `trend` tables the parameters declared by
    /// [`Comparing::declare`] ask for, added to `output`.
    pub fn tables(
        &self,
        input: &Input<'_>,
        params: &Params,
        answers: Answers<'_>,
        mut output: Output,
    ) -> Result<Output, MetricError> {
        let pairwise = params.bool("pairwise")?;
        match params.get("compare") {
            Some(ParamValue::String(column)) => {
                let column = column.trim();
                let array = input.batch().column_by_name(column).ok_or_else(|| {
                    MetricError::invalid_parameter(
                        "compare",
                        format!("names {column:?}, which is not a column of the input; name one column, e.g. compare=region"),
                    )
                })?;
                let labels: Vec<String> = (0..array.len())
                    .map(|row| cell_label(array.as_ref(), row))
                    .collect();
                output = output.table("segments", self.segments("segment", &labels, answers)?);
                if pairwise {
                    output = output.table("pairs", self.pairs(&labels, answers)?);
                }
            }
            _ if pairwise => {
                output = output.warning(
                    "parameter_unused",
                    "pairwise changes nothing without compare; name the column whose segments to compare, e.g. compare=region",
                );
            }
            _ => {}
        }
        if let Some(period) = Period::parse(params.str("period")?) {
            let times = input.optional_timestamp("timestamp")?.ok_or_else(|| {
                MetricError::invalid_parameter(
                    "period",
                    "needs a timestamp column with the time of each answer; map yours with --column timestamp=NAME",
                )
            })?;
            let times: Vec<Option<i64>> = times.iter().collect();
            let trend_periods = usize::try_from(params.i64("trend_periods")?).unwrap_or(usize::MAX);
            let (periods, trend) = self.periods(period, &times, answers, trend_periods)?;
            output = output.table("periods", periods).table("trend", trend);
        }
        Ok(output)
    }

    /// The columns of [`Comparing::segments`]'s table after the segment column.
    pub fn segment_columns(&self) -> Vec<OutputSpec> {
        let mut columns = vec![
            OutputSpec::new("answers", "count", "answers in the segment"),
            OutputSpec::new(self.score, self.unit, "the segment's score"),
            OutputSpec::new(
                &format!("rest_{}", self.score),
                self.unit,
                "the score of every other answer",
            ),
        ];
        columns
            .extend(self.difference_columns("difference", "the segment's score minus the rest's"));
        columns
    }

    /// The columns of [`Comparing::pairs`]'s table.
    pub fn pair_columns(&self) -> Vec<OutputSpec> {
        let mut columns = vec![
            OutputSpec::new("segment", "id", "the first segment"),
            OutputSpec::new("other", "id", "the second segment"),
        ];
        columns.extend(self.difference_columns("difference", "segment's score minus other's"));
        columns
    }

    /// The columns of [`Comparing::periods`]'s table.
    pub fn period_columns(&self) -> Vec<OutputSpec> {
        let mut columns = vec![
            OutputSpec::new(
                "period",
                "id",
                "the calendar period (UTC) of the answers: 2024-03, 2024-Q1 or 2024-W09",
            ),
            OutputSpec::new("answers", "count", "answers in the period"),
            OutputSpec::new(self.score, self.unit, "the period's score"),
        ];
        columns.extend(self.difference_columns(
            "change",
            "the score minus the previous period's (empty when that had no answers)",
        ));
        columns.extend(self.difference_columns(
            "year_change",
            "the score minus the same period's a year before",
        ));
        columns
    }

    /// The columns of [`Comparing::trend`]'s one-row table.
    pub fn trend_columns(&self) -> Vec<OutputSpec> {
        vec![
            OutputSpec::new(
                "periods",
                "count",
                "the periods the line runs through (the last ones with answers)",
            ),
            OutputSpec::new(
                "slope",
                self.unit,
                "change of the score per period, weighted by each period's precision",
            ),
            OutputSpec::new(
                "slope_lower",
                self.unit,
                "lower bound of the slope's interval",
            ),
            OutputSpec::new(
                "slope_upper",
                self.unit,
                "upper bound of the slope's interval",
            ),
            OutputSpec::new("p_value", "probability", "two-sided p-value of no trend"),
            OutputSpec::new(
                "significant",
                "id",
                "whether the p-value is below 1 - confidence",
            ),
        ]
    }

    /// Each segment (`labels`, one per row) against every other answer, in order of first
    /// appearance, p-values adjusted over the segments.
    pub fn segments(
        &self,
        column: &str,
        labels: &[String],
        answers: Answers<'_>,
    ) -> Result<RecordBatch, MetricError> {
        let groups = group_rows(labels);
        let all: Tally<K> = answers.tally(0..labels.len());
        let mut differences = Vec::new();
        let mut rows = Vec::new();
        for (label, members) in &groups {
            let tally: Tally<K> = answers.tally(members.iter().copied());
            let rest = all.without(&tally);
            rows.push((
                label.clone(),
                tally.answers,
                tally.score(&self.scheme),
                rest.score(&self.scheme),
            ));
            differences.push(difference(&tally, &rest, &self.scheme, self.z, self.scale));
        }
        let mut columns: Vec<(String, ArrayRef)> = vec![
            (
                column.to_owned(),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.0.as_str()),
                )),
            ),
            (
                "answers".to_owned(),
                Arc::new(Float64Array::from_iter_values(
                    rows.iter().map(|r| r.1 as f64),
                )),
            ),
            (
                self.score.to_owned(),
                Arc::new(Float64Array::from_iter(
                    rows.iter().map(|r| r.2.map(|v| v * self.scale)),
                )),
            ),
            (
                format!("rest_{}", self.score),
                Arc::new(Float64Array::from_iter(
                    rows.iter().map(|r| r.3.map(|v| v * self.scale)),
                )),
            ),
        ];
        columns.extend(self.difference_arrays("difference", &differences));
        result_table(
            "segments",
            columns
                .iter()
                .map(|(n, a)| (n.as_str(), a.clone()))
                .collect(),
        )
    }

    /// Every pair of segments, p-values adjusted over the pairs.
    pub fn pairs(
        &self,
        labels: &[String],
        answers: Answers<'_>,
    ) -> Result<RecordBatch, MetricError> {
        let groups = group_rows(labels);
        let tallies: Vec<Tally<K>> = groups
            .iter()
            .map(|(_, m)| answers.tally(m.iter().copied()))
            .collect();
        let mut names = (Vec::new(), Vec::new());
        let mut differences = Vec::new();
        for i in 0..groups.len() {
            for j in i + 1..groups.len() {
                names.0.push(groups[i].0.as_str());
                names.1.push(groups[j].0.as_str());
                differences.push(difference(
                    &tallies[i],
                    &tallies[j],
                    &self.scheme,
                    self.z,
                    self.scale,
                ));
            }
        }
        let mut columns: Vec<(String, ArrayRef)> = vec![
            ("segment".to_owned(), Arc::new(StringArray::from(names.0))),
            ("other".to_owned(), Arc::new(StringArray::from(names.1))),
        ];
        columns.extend(self.difference_arrays("difference", &differences));
        result_table(
            "pairs",
            columns
                .iter()
                .map(|(n, a)| (n.as_str(), a.clone()))
                .collect(),
        )
    }

    /// The score per period from the first answer's to the last's (periods without answers
    /// included, empty), each against the previous period and the same period a year before;
    /// and the trend over the last `trend_periods` periods with answers.
    pub fn periods(
        &self,
        period: Period,
        times: &[Option<i64>],
        answers: Answers<'_>,
        trend_periods: usize,
    ) -> Result<(RecordBatch, RecordBatch), MetricError> {
        let mut by_period: ByPeriod<K> = BTreeMap::new();
        for (row, time) in times.iter().enumerate() {
            let Some(time) = time else { continue };
            let (index, label) = period.of(*time);
            by_period
                .entry(index)
                .or_insert_with(|| (label, Tally::default()))
                .1
                .add(answers.categories[row], answers.weights[row]);
        }
        let (Some(&first), Some(&last)) = (by_period.keys().next(), by_period.keys().next_back())
        else {
            return Err(MetricError::invalid_input(
                "no answer has a timestamp; periods need the time of each answer",
            ));
        };
        let empty = Tally::<K>::default();
        let mut labels = Vec::new();
        let mut counts = Vec::new();
        let mut scores = Vec::new();
        let mut changes = Vec::new();
        let mut year_changes = Vec::new();
        let mut points = Vec::new();
        for index in first..=last {
            let (label, tally) = match by_period.get(&index) {
                Some((label, tally)) => (label.clone(), *tally),
                // A period without answers: its label from its own first day.
                None => (period_label(period, index), empty),
            };
            let against = |other: i64| {
                by_period.get(&other).and_then(|(_, before)| {
                    difference(&tally, before, &self.scheme, self.z, self.scale)
                })
            };
            changes.push(against(index - 1));
            year_changes.push(against(index - period.per_year()));
            let score = tally.score(&self.scheme).map(|v| v * self.scale);
            if let (Some(score), Some((_, var))) = (score, tally.adjusted(&self.scheme)) {
                points.push(((index - first) as f64, score, self.scale * var.sqrt()));
            }
            labels.push(label);
            counts.push(tally.answers as f64);
            scores.push(score);
        }
        let mut columns: Vec<(String, ArrayRef)> = vec![
            ("period".to_owned(), Arc::new(StringArray::from(labels))),
            ("answers".to_owned(), Arc::new(Float64Array::from(counts))),
            (self.score.to_owned(), Arc::new(Float64Array::from(scores))),
        ];
        columns.extend(self.difference_arrays("change", &changes));
        columns.extend(self.difference_arrays("year_change", &year_changes));
        let table = result_table(
            "periods",
            columns
                .iter()
                .map(|(n, a)| (n.as_str(), a.clone()))
                .collect(),
        )?;
        let recent = &points[points.len().saturating_sub(trend_periods)..];
        let line = trend(recent, self.z);
        let number = |f: fn(&Trend) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from(vec![line.as_ref().map(f)]))
        };
        let trend_table = result_table(
            "trend",
            vec![
                (
                    "periods",
                    Arc::new(Float64Array::from(vec![recent.len() as f64])) as ArrayRef,
                ),
                ("slope", number(|t| t.slope)),
                ("slope_lower", number(|t| t.lower)),
                ("slope_upper", number(|t| t.upper)),
                ("p_value", number(|t| t.p_value)),
                (
                    "significant",
                    Arc::new(BooleanArray::from(vec![
                        line.map(|t| t.p_value < self.alpha),
                    ])),
                ),
            ],
        )?;
        Ok((table, trend_table))
    }

    /// The columns of one family of differences: value, bounds, p-value, Holm-adjusted p-value
    /// (over the family's defined differences) and the verdict.
    fn difference_arrays(
        &self,
        prefix: &str,
        differences: &[Option<Difference>],
    ) -> Vec<(String, ArrayRef)> {
        let defined: Vec<f64> = differences.iter().flatten().map(|d| d.p_value).collect();
        let mut adjusted = holm(&defined).into_iter();
        let adjusted: Vec<Option<f64>> = differences
            .iter()
            .map(|d| d.and_then(|_| adjusted.next()))
            .collect();
        let pick = |f: fn(&Difference) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter(
                differences.iter().map(|d| d.as_ref().map(f)),
            ))
        };
        vec![
            (prefix.to_owned(), pick(|d| d.value)),
            (format!("{prefix}_lower"), pick(|d| d.lower)),
            (format!("{prefix}_upper"), pick(|d| d.upper)),
            (format!("{prefix}_p_value"), pick(|d| d.p_value)),
            (
                format!("{prefix}_p_adjusted"),
                Arc::new(Float64Array::from(adjusted.clone())),
            ),
            (
                format!("{prefix}_significant"),
                Arc::new(BooleanArray::from_iter(
                    adjusted.iter().map(|p| p.map(|p| p < self.alpha)),
                )),
            ),
        ]
    }
}

/// The label of period `index` ([`Period::of`]'s index).
fn period_label(period: Period, index: i64) -> String {
    period.of(period.first_day(index)).1
}

/// Rows by label, labels in order of first appearance.
fn group_rows(labels: &[String]) -> Vec<(String, Vec<usize>)> {
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (row, label) in labels.iter().enumerate() {
        let at = *index.entry(label.as_str()).or_insert_with(|| {
            groups.push((label.clone(), Vec::new()));
            groups.len() - 1
        });
        groups[at].1.push(row);
    }
    groups
}

/// A cell as a segment's label: text as it is, numbers and booleans written out, `(empty)` for
/// a null.
pub fn cell_label(array: &dyn Array, row: usize) -> String {
    if array.is_null(row) {
        return "(empty)".to_owned();
    }
    let any = array.as_any();
    let text = match array.data_type() {
        DataType::Utf8 => any
            .downcast_ref::<StringArray>()
            .map(|a| a.value(row).to_owned()),
        DataType::Int64 => any
            .downcast_ref::<Int64Array>()
            .map(|a| a.value(row).to_string()),
        DataType::Float64 => any
            .downcast_ref::<Float64Array>()
            .map(|a| a.value(row).to_string()),
        DataType::Boolean => any
            .downcast_ref::<BooleanArray>()
            .map(|a| a.value(row).to_string()),
        _ => None,
    };
    text.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const Z95: f64 = 1.959963984540054;

    fn tally<const K: usize>(counts: [u64; K]) -> Tally<K> {
        let mut t = Tally::default();
        for (k, &c) in counts.iter().enumerate() {
            for _ in 0..c {
                t.add(k, 1.0);
            }
        }
        t
    }

    #[test]
    fn holm_matches_r() {
        // p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm") = 0.03 0.06 0.06 0.02
        let adjusted = holm(&[0.01, 0.04, 0.03, 0.005]);
        for (got, want) in adjusted.iter().zip([0.03, 0.06, 0.06, 0.02]) {
            assert!((got - want).abs() < 1e-12, "{adjusted:?}");
        }
        assert_eq!(holm(&[0.5, 0.9]), [1.0, 1.0]);
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn p_values_are_normal_tails() {
        // 2 * pnorm(-1.959963984540054) = 0.05; 2 * pnorm(-3) = 0.0026997960632601866.
        assert!((two_sided_p(Z95) - 0.05).abs() < 1e-12);
        assert!((two_sided_p(-3.0) - 0.0026997960632601866).abs() < 1e-15);
        assert_eq!(two_sided_p(0.0), 1.0);
    }

    #[test]
    fn differences_by_hand() {
        // Proportions 8/10 and 3/10 (Agresti-Caffo): 9/12 and 4/12; variance
        // (0.75 * 0.25 + (1/3) * (2/3)) / 12; difference 50 points, adjusted 41.67.
        let d = difference(&tally([8, 2]), &tally([3, 7]), &PROPORTION, Z95, 100.0).unwrap();
        let se = 100.0 * ((0.75 * 0.25 + 2.0 / 9.0) / 12.0f64).sqrt();
        assert!((d.value - 50.0).abs() < 1e-12);
        assert!((d.lower - (500.0 / 12.0 - Z95 * se)).abs() < 1e-9);
        assert!((d.p_value - two_sided_p(500.0 / 12.0 / se)).abs() < 1e-15);
        // NPS 4/2/4 of 10 against 1/1/8 of 10: 0 − (−70) = 70 points; adjusted shares
        // 4.75/13, 3.5/13, 4.75/13 and 1.75/13, 2.5/13, 8.75/13.
        let a = tally([4, 2, 4]);
        let b = tally([1, 1, 8]);
        let d = difference(&a, &b, &NPS, Z95, 100.0).unwrap();
        assert!((d.value - 70.0).abs() < 1e-12);
        let var = |p: f64, q: f64| (p + q - (p - q).powi(2)) / 13.0;
        let center = 100.0 * (0.0 - (1.75 - 8.75) / 13.0);
        let se = 100.0 * (var(4.75 / 13.0, 4.75 / 13.0) + var(1.75 / 13.0, 8.75 / 13.0)).sqrt();
        assert!((d.upper - (center + Z95 * se)).abs() < 1e-9);
        assert_eq!(Tally::proportion(8, 10), tally([8, 2]));
        // The rest of a sample is the sample without the segment.
        let all = tally([5, 3, 12]);
        assert_eq!(all.without(&a), b);
    }

    #[test]
    fn differences_cover_at_their_level_and_tests_hold_their_size() {
        // Two samples of 15 and 25 NPS answers from the same trinomial: the difference's
        // interval covers 0 (the truth) about 95 % of the time, so the test rejects about 5 %.
        let mut state = 0x853C_49E6_748F_EA9Bu64;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut draw = |n: usize| {
            let mut t = Tally::<3>::default();
            for _ in 0..n {
                let u = uniform();
                t.add(
                    if u < 0.45 {
                        0
                    } else if u < 0.75 {
                        1
                    } else {
                        2
                    },
                    1.0,
                );
            }
            t
        };
        let trials = 4000;
        let mut rejected = 0;
        for _ in 0..trials {
            let (a, b) = (draw(15), draw(25));
            let d = difference(&a, &b, &NPS, Z95, 100.0).unwrap();
            assert_eq!(d.p_value < 0.05, !(d.lower <= 0.0 && 0.0 <= d.upper));
            rejected += usize::from(d.p_value < 0.05);
        }
        let size = rejected as f64 / trials as f64;
        assert!((0.02..0.07).contains(&size), "{size}");
    }

    #[test]
    fn trends_are_weighted_slopes() {
        // Equal precision: the ordinary least-squares slope of 10, 12, 14, 16 is 2, with
        // standard error se / sqrt(sum (x - mean)^2) = 1 / sqrt(5).
        let points = [
            (0.0, 10.0, 1.0),
            (1.0, 12.0, 1.0),
            (2.0, 14.0, 1.0),
            (3.0, 16.0, 1.0),
        ];
        let t = trend(&points, Z95).unwrap();
        assert!((t.slope - 2.0).abs() < 1e-12);
        assert!((t.upper - (2.0 + Z95 / 5f64.sqrt())).abs() < 1e-12);
        assert_eq!(trend(&points[..2], Z95), None);
    }

    #[test]
    fn periods_have_labels_and_consecutive_indices() {
        let at = |y, m, d| date_micros(y, m, d);
        assert_eq!(
            Period::Month.of(at(2024, 3, 31)),
            (2024 * 12 + 2, "2024-03".into())
        );
        assert_eq!(
            Period::Month.of(at(2024, 4, 1)).0 - Period::Month.of(at(2024, 3, 1)).0,
            1
        );
        assert_eq!(Period::Quarter.of(at(2024, 5, 2)).1, "2024-Q2");
        // 2024-01-01 is a Monday of ISO week 1; 2023-01-01 a Sunday of 2022's week 52.
        assert_eq!(Period::Week.of(at(2024, 1, 1)).1, "2024-W01");
        assert_eq!(Period::Week.of(at(2024, 1, 7)).1, "2024-W01");
        assert_eq!(Period::Week.of(at(2024, 1, 8)).1, "2024-W02");
        assert_eq!(Period::Week.of(at(2023, 1, 1)).1, "2022-W52");
        assert_eq!(Period::Week.of(at(2020, 12, 31)).1, "2020-W53");
        assert_eq!(
            Period::Week.of(at(2024, 1, 8)).0 - Period::Week.of(at(2024, 1, 1)).0,
            1
        );
        // Each period's first day is in it, and the day before is in the one before.
        for period in [Period::Week, Period::Month, Period::Quarter] {
            let (index, _) = period.of(at(2024, 2, 1));
            assert_eq!(period.of(period.first_day(index)).0, index);
            assert_eq!(period.of(period.first_day(index) - 1).0, index - 1);
        }
        assert_eq!(
            Period::Week.first_day(Period::Week.of(at(2024, 2, 1)).0),
            at(2024, 1, 29)
        );
    }
}
