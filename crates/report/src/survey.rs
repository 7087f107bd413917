//! NPS and CSAT: the score with its interval, by segment, and month by month when the
//! answers have a `timestamp`.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use mittari_engine::{ColumnSpec, DataType, GroupedResults, MetricDescriptor, ParamValue};

use crate::chart::{self, Chart};
use crate::context::{Context, Skip};
use crate::page::{Numbers, Section, format_value};
use crate::table;

type Params = BTreeMap<String, ParamValue>;

/// A value with its interval: (lower, value, upper).
type Interval = (f64, f64, f64);

struct Survey {
    metric: &'static str,
    title: &'static str,
    /// The headline's name at the top of the page.
    title_short: &'static str,
    lead: &'static str,
    /// The headline output, which has the interval.
    headline: &'static str,
    unit: &'static str,
    /// Outputs shown under the headline.
    details: &'static [&'static str],
    /// Whether answers from `min` to `max` look like this survey's, for choosing between NPS
    /// and CSAT when the input only says `score`.
    suits: fn(&Params, Option<(i64, i64)>) -> bool,
}

/// NPS answers go up to 10; answers that all fit a 1–5 scale are CSAT's.
fn suits_nps(_: &Params, range: Option<(i64, i64)>) -> bool {
    range.is_some_and(|(_, max)| max > 5)
}

/// Answers within the CSAT scale (`scale_min`..=`scale_max`, 1–5 unless set).
fn suits_csat(params: &Params, range: Option<(i64, i64)>) -> bool {
    let bound = |key: &str, default: i64| match params.get(key) {
        Some(ParamValue::Int64(v)) => *v,
        _ => default,
    };
    range.is_some_and(|(min, max)| bound("scale_min", 1) <= min && max <= bound("scale_max", 5))
}

/// The lowest and highest score, `None` without any.
fn score_range(batch: &RecordBatch) -> Option<(i64, i64)> {
    let scores = batch
        .column_by_name("score")?
        .as_primitive_opt::<Int64Type>()?;
    let min = scores.iter().flatten().min()?;
    let max = scores.iter().flatten().max()?;
    Some((min, max))
}

const NPS: Survey = Survey {
    metric: "nps",
    title: "Net Promoter Score",
    title_short: "Net Promoter Score",
    lead: "NPS is the share of promoters (answers 9–10) minus the share of detractors (0–6), \
           from −100 to 100. The bars are the interval the true score lies in at the stated \
           confidence: segments whose bars overlap may not really differ.",
    headline: "nps",
    unit: "points",
    suits: suits_nps,
    details: &[
        "responses",
        "promoter_share",
        "passive_share",
        "detractor_share",
        "standard_error",
    ],
};

const CSAT: Survey = Survey {
    metric: "csat",
    title: "Customer satisfaction (CSAT)",
    title_short: "satisfied (CSAT)",
    lead: "CSAT is the share of answers in the top boxes of the scale. The bars are its \
           Wilson interval: with few answers a segment's score is uncertain, and the bars \
           say how much.",
    headline: "csat",
    unit: "%",
    suits: suits_csat,
    details: &["responses", "satisfied", "mean_score"],
};

pub(crate) fn nps(cx: &Context<'_>) -> Result<Vec<Section>, Skip> {
    survey(cx, &NPS)
}

pub(crate) fn csat(cx: &Context<'_>) -> Result<Vec<Section>, Skip> {
    survey(cx, &CSAT)
}

fn survey(cx: &Context<'_>, survey: &Survey) -> Result<Vec<Section>, Skip> {
    let descriptor = cx.descriptor(survey.metric, &["score"])?;
    // The report asks for its own comparisons; a period given for the report is its.
    let params = cx.params(descriptor, &[], &["compare", "pairwise"])?;
    let segments = cx.segments(descriptor)?;
    let input = segments.input.clone();
    if !cx.named(survey.metric) && !(survey.suits)(&params, score_range(&input)) {
        return Err(Skip::NotApplicable);
    }
    let outcome = cx.compute(survey.metric, &params, input, &[])?;
    let results = outcome.results.ok_or(Skip::NotApplicable)?;
    let interval_header = table::interval_header(&results, survey.headline);
    let unit_of = |name: &str| descriptor.output_spec(name).map_or("", |o| o.unit.as_str());
    let mut rows = vec![vec![
        survey.headline.to_owned(),
        format_value(table::scalar(&results, survey.headline), survey.unit),
        table::interval(&results, survey.headline).map_or_else(String::new, |(low, _, high)| {
            interval_text(low, high, survey.unit)
        }),
    ]];
    for name in survey.details {
        rows.push(vec![
            (*name).to_owned(),
            format_value(table::scalar(&results, name), unit_of(name)),
            String::new(),
        ]);
    }
    let mut section = Section::new(survey.metric, survey.title, survey.lead);
    // The card carries the interval too: a score of 4.8 whose interval is -1.7 to 11.3 is
    // not a finding that it is positive.
    let card = match table::interval(&results, survey.headline) {
        Some((low, _, high)) => format!(
            "{}, {} {}",
            survey.title_short,
            interval_header,
            interval_text(low, high, survey.unit)
        ),
        None => survey.title_short.to_owned(),
    };
    section.headline(&card, table::scalar(&results, survey.headline), survey.unit);
    section.numbers(Numbers {
        caption: format!("All {} answers", outcome.rows),
        header: vec!["output".into(), "value".into(), interval_header.clone()],
        rows,
    });
    for segment in &segments.names {
        let Some(grouped) = cx.compute_by(descriptor, &params, &segments, segment)? else {
            continue;
        };
        let against = against_the_rest(&grouped, alpha(&params));
        let mut points: Vec<(String, Interval, Option<f64>)> = table::group_labels(&grouped)
            .into_iter()
            .zip(table::group_intervals(&grouped, survey.headline))
            .zip(table::group_values(&grouped, "responses"))
            .filter_map(|((label, interval), responses)| Some((label, interval?, responses)))
            .collect();
        // Best first, as a ranking reads.
        points.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
        section.numbers(Numbers {
            caption: format!(
                "By {segment}: each against all other answers, called different only when the \
                 p-value adjusted for {} comparisons (Holm) is below {}",
                points.len(),
                significance_text(&against)
            ),
            header: vec![
                segment.clone(),
                survey.headline.to_owned(),
                interval_header.clone(),
                "responses".into(),
                "vs the rest".into(),
                "really different?".into(),
            ],
            rows: points
                .iter()
                .map(|(label, (low, mid, high), responses)| {
                    let (versus, verdict) = against
                        .get(label)
                        .map_or_else(Default::default, |c| c.texts(survey.unit));
                    vec![
                        label.clone(),
                        format_value(Some(*mid), survey.unit),
                        interval_text(*low, *high, survey.unit),
                        format_value(*responses, "count"),
                        versus,
                        verdict,
                    ]
                })
                .collect(),
        });
        let labels: Vec<String> = points.iter().map(|p| p.0.clone()).collect();
        let values: Vec<Interval> = points.iter().map(|p| p.1).collect();
        let id = format!("{}-by-{}", survey.metric, slug(segment));
        section.chart(Chart {
            svg: chart::intervals(&id, (segment, &y_desc(survey)), &labels, &values)?,
            id,
            title: format!("{} by {segment}", survey.headline.to_uppercase()),
            caption: format!(
                "{} per {segment} with its interval, best first.",
                survey.headline.to_uppercase()
            ),
        });
    }
    if cx.has("timestamp") {
        section.chart(monthly(cx, survey, descriptor, &params)?);
        if let Some(numbers) = month_by_month(cx, survey, descriptor, &params)? {
            section.numbers(numbers);
        }
    }
    Ok(vec![section])
}

/// A difference the plugin tested: its value and interval, adjusted p-value and verdict.
#[derive(Debug, Clone, Copy)]
struct Tested {
    difference: f64,
    lower: f64,
    upper: f64,
    p_adjusted: f64,
    significant: bool,
    /// 1 − confidence, for saying what significant means.
    alpha: f64,
}

impl Tested {
    /// "+39.0 (18.9 to 56.4)" and "yes, p = 0.0003" — arrows only on significant changes.
    fn texts(&self, unit: &str) -> (String, String) {
        let signed = |v: f64| {
            let text = format_value(Some(v), unit);
            if v > 0.0 { format!("+{text}") } else { text }
        };
        let versus = format!(
            "{} ({})",
            signed(self.difference),
            interval_text(self.lower, self.upper, unit)
        );
        let p = format_p(self.p_adjusted);
        let verdict = match (self.significant, self.difference > 0.0) {
            (true, true) => format!("▲ yes, higher (p = {p})"),
            (true, false) => format!("▼ yes, lower (p = {p})"),
            (false, _) => format!("no (p = {p})"),
        };
        (versus, verdict)
    }
}

fn format_p(p: f64) -> String {
    if p < 0.0001 {
        "< 0.0001".to_owned()
    } else if p < 0.01 {
        format!("{p:.4}")
    } else {
        format!("{p:.2}")
    }
}

/// "5 %", the significance level the tests used.
fn significance_text(tested: &BTreeMap<String, Tested>) -> String {
    let alpha = tested.values().next().map_or(0.05, |t| t.alpha);
    format!("{} %", crate::page::grouped(100.0 * alpha, 0))
}

/// Each group against all other answers, as group-by gives it beside the group's score
/// (the metric's group comparison: `vs_rest` with its interval, the Holm-adjusted p-value
/// and the verdict), by group label.
fn against_the_rest(grouped: &GroupedResults, alpha: f64) -> BTreeMap<String, Tested> {
    let intervals = table::group_intervals(grouped, "vs_rest");
    let adjusted = table::group_values(grouped, "vs_rest_p_adjusted");
    let significant = table::group_values(grouped, "vs_rest_significant");
    table::group_labels(grouped)
        .into_iter()
        .enumerate()
        .filter_map(|(group, label)| {
            let (lower, difference, upper) = intervals[group]?;
            Some((
                label,
                Tested {
                    difference,
                    lower,
                    upper,
                    p_adjusted: adjusted[group]?,
                    significant: significant[group]? > 0.5,
                    alpha,
                },
            ))
        })
        .collect()
}

/// 1 − the confidence level the parameters ask for.
fn alpha(params: &Params) -> f64 {
    match params.get("confidence") {
        Some(ParamValue::Double(level)) => 1.0 - level,
        _ => 0.05,
    }
}

/// (label, tested difference) of each row of a comparison table whose `prefix` columns are
/// defined.
fn tested_rows(
    table: &RecordBatch,
    label: &str,
    prefix: &str,
    alpha: f64,
) -> Vec<(String, Tested)> {
    let labels = table::texts(table, label);
    let column = |suffix: &str| table::numbers(table, &format!("{prefix}{suffix}"));
    let (values, lower, upper, adjusted, significant) = (
        column(""),
        column("_lower"),
        column("_upper"),
        column("_p_adjusted"),
        column("_significant"),
    );
    labels
        .into_iter()
        .enumerate()
        .filter_map(|(row, label)| {
            Some((
                label,
                Tested {
                    difference: values.get(row).copied()??,
                    lower: lower.get(row).copied()??,
                    upper: upper.get(row).copied()??,
                    p_adjusted: adjusted.get(row).copied()??,
                    significant: significant.get(row).copied()?? > 0.5,
                    alpha,
                },
            ))
        })
        .collect()
}

/// Month by month: the score, its change from the month before and from the same month a
/// year before, each called significant only when it is; and the trend of the last months.
fn month_by_month(
    cx: &Context<'_>,
    survey: &Survey,
    descriptor: &MetricDescriptor,
    params: &Params,
) -> Result<Option<Numbers>, Skip> {
    let mut params = params.clone();
    params.insert("period".to_owned(), ParamValue::String("month".to_owned()));
    let batch = cx.read(descriptor, &[])?;
    let outcome = cx.compute(survey.metric, &params, batch, &[])?;
    let Some(results) = outcome.results.as_ref() else {
        return Ok(None);
    };
    let Some(periods) = table::result_table(results, "periods") else {
        return Ok(None);
    };
    let alpha = alpha(&params);
    let changes: BTreeMap<String, Tested> = tested_rows(periods, "period", "change", alpha)
        .into_iter()
        .collect();
    let year_changes: BTreeMap<String, Tested> =
        tested_rows(periods, "period", "year_change", alpha)
            .into_iter()
            .collect();
    let labels = table::texts(periods, "period");
    let scores = table::numbers(periods, survey.headline);
    let answers = table::numbers(periods, "answers");
    let rows = labels
        .iter()
        .enumerate()
        .map(|(row, label)| {
            let mut cells = vec![
                label.clone(),
                format_value(answers.get(row).copied().flatten(), "count"),
                format_value(scores.get(row).copied().flatten(), survey.unit),
            ];
            for tested in [&changes, &year_changes] {
                let (versus, verdict) = tested
                    .get(label)
                    .map_or_else(|| ("–".to_owned(), String::new()), |t| t.texts(survey.unit));
                cells.push(versus);
                cells.push(verdict);
            }
            cells
        })
        .collect();
    let trend = table::result_table(results, "trend").and_then(|t| {
        let value = |name: &str| table::numbers(t, name).first().copied().flatten();
        Some((
            value("slope")?,
            value("slope_lower")?,
            value("slope_upper")?,
            value("p_value")?,
            value("periods")?,
        ))
    });
    let trend_text = match trend {
        Some((slope, low, high, p, periods)) => format!(
            " Over the last {} months the {} moved {} a month ({}; p = {}): {}.",
            crate::page::grouped(periods, 0),
            survey.headline.to_uppercase(),
            format_value(Some(slope), survey.unit),
            interval_text(low, high, survey.unit),
            format_p(p),
            if p < alpha {
                "a real trend"
            } else {
                "no trend that the answers can tell from chance"
            }
        ),
        None => String::new(),
    };
    Ok(Some(Numbers {
        caption: format!(
            "Month by month (UTC): each change is called real only when its p-value, adjusted \
             for the number of months compared (Holm), is below {} %.{trend_text}",
            crate::page::grouped(100.0 * alpha, 0)
        ),
        header: vec![
            "month".into(),
            "answers".into(),
            survey.headline.to_owned(),
            "vs the month before".into(),
            "real change?".into(),
            "vs a year before".into(),
            "real change?".into(),
        ],
        rows,
    }))
}

fn interval_text(low: f64, high: f64, unit: &str) -> String {
    format!(
        "{} to {}",
        format_value(Some(low), unit),
        format_value(Some(high), unit)
    )
}

fn y_desc(survey: &Survey) -> String {
    match survey.unit {
        "%" => format!("{} (%)", survey.headline.to_uppercase()),
        _ => survey.headline.to_uppercase(),
    }
}

/// The score month by month (by the answers' `timestamp`), with its interval.
fn monthly(
    cx: &Context<'_>,
    survey: &Survey,
    descriptor: &MetricDescriptor,
    params: &BTreeMap<String, ParamValue>,
) -> Result<Chart, Skip> {
    let mut with_time = descriptor.clone();
    if with_time.input_column("timestamp").is_none() {
        with_time.inputs.push(ColumnSpec::new(
            "timestamp",
            DataType::Timestamp,
            "when the answer was given",
        ));
    }
    let batch = cx.read(&with_time, &[])?;
    let (scores, months) = by_month(&batch);
    let input = RecordBatch::try_from_iter([
        ("score", Arc::new(scores) as ArrayRef),
        ("month", Arc::new(months) as ArrayRef),
    ])
    .map_err(|e| {
        Skip::Error(crate::ReportError::Chart(chart::ChartError::new(
            "monthly",
            e.to_string(),
        )))
    })?;
    let group_by = ["month".to_owned()];
    let outcome = cx.compute(survey.metric, params, input, &group_by)?;
    let grouped = outcome.grouped.ok_or(Skip::NotApplicable)?;
    // Month keys (2024-03) sort as time does.
    let mut points: Vec<(String, Interval)> = table::group_labels(&grouped)
        .into_iter()
        .zip(table::group_intervals(&grouped, survey.headline))
        .filter_map(|(label, interval)| Some((label, interval?)))
        .collect();
    points.sort_by(|a, b| a.0.cmp(&b.0));
    let labels: Vec<String> = points.iter().map(|p| p.0.clone()).collect();
    let values: Vec<Interval> = points.iter().map(|p| p.1).collect();
    let id = format!("{}-by-month", survey.metric);
    Ok(Chart {
        svg: chart::intervals(&id, ("month", &y_desc(survey)), &labels, &values)?,
        id,
        title: format!("{} by month", survey.headline.to_uppercase()),
        caption: format!(
            "{} of each month's answers with its interval; a month with few answers has a \
             wide bar.",
            survey.headline.to_uppercase()
        ),
    })
}

/// Scores and their month (`2024-03`, UTC) for the answers that have a timestamp.
fn by_month(batch: &RecordBatch) -> (Int64Array, StringArray) {
    let (Some(score), Some(time)) = (
        batch.column_by_name("score"),
        batch.column_by_name("timestamp"),
    ) else {
        return (
            Int64Array::from(Vec::<i64>::new()),
            StringArray::from(Vec::<String>::new()),
        );
    };
    let score = score.as_primitive::<Int64Type>();
    let time = time.as_primitive::<TimestampMicrosecondType>();
    let mut scores = Vec::new();
    let mut months = Vec::new();
    for row in 0..batch.num_rows() {
        if time.is_null(row) {
            continue;
        }
        let Some(at) = chrono::DateTime::from_timestamp_micros(time.value(row)) else {
            continue;
        };
        scores.push((!score.is_null(row)).then(|| score.value(row)));
        months.push(at.format("%Y-%m").to_string());
    }
    (Int64Array::from(scores), StringArray::from(months))
}

/// A column name as part of an id: lowercase letters, digits and dashes.
pub(crate) fn slug(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::TimestampMicrosecondArray;

    #[test]
    fn answers_are_put_in_their_month() {
        let day = 86_400_000_000i64;
        let batch = RecordBatch::try_from_iter([
            (
                "score",
                Arc::new(Int64Array::from(vec![Some(9), None, Some(3), Some(7)])) as ArrayRef,
            ),
            (
                "timestamp",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        Some(19_723 * day),     // 2024-01-01
                        Some(19_754 * day - 1), // 2024-01-31T23:59:59.999999
                        None,
                        Some(19_754 * day), // 2024-02-01
                    ])
                    .with_timezone("UTC"),
                ) as ArrayRef,
            ),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let (scores, months) = by_month(&batch);
        assert_eq!(
            scores.iter().collect::<Vec<_>>(),
            vec![Some(9), None, Some(7)]
        );
        assert_eq!(
            months.iter().collect::<Vec<_>>(),
            vec![Some("2024-01"), Some("2024-01"), Some("2024-02")]
        );
    }

    #[test]
    fn ids_are_slugs() {
        assert_eq!(slug("Region Name"), "region-name");
    }
}
