//! Retention: the period's rates and the customers lost, survival by acquisition cohort (a
//! heatmap and curves), and the shifted-beta-geometric fit to the cohorts with its projection.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use chrono::{DateTime, Datelike, Months, NaiveDate};
use mittari_engine::{GroupedResults, MetricResults, ParamValue};

use crate::chart::{self, Axes, Chart, Series};
use crate::context::{Context, Skip};
use crate::page::{Numbers, Section, format_value};
use crate::survey::slug;
use crate::table;

/// The period's figures, in the order the numbers table shows them.
const PERIOD_OUTPUTS: [&str; 8] = [
    "customers_at_start",
    "customers_at_end",
    "new_customers",
    "retention_rate",
    "churn_rate",
    "churned_customers",
    "churned_revenue",
    "net_change",
];

/// Cohorts drawn as curves; more would not be told apart.
const MAX_CURVES: usize = 8;
/// Cohorts whose shifted-beta-geometric fit is drawn.
const MAX_FITS: usize = 4;

/// One acquisition cohort's survival: the share active at each age (period 0 is 100 %).
#[derive(Debug, Clone, PartialEq)]
struct Cohort {
    label: String,
    size: f64,
    /// (age, customers active); age 0 is the cohort's size.
    active: Vec<(i64, f64)>,
}

impl Cohort {
    fn survival(&self) -> Vec<(f64, f64)> {
        self.active
            .iter()
            .map(|&(age, active)| (age as f64, 100.0 * active / self.size.max(1.0)))
            .collect()
    }
}

pub(crate) fn retention(cx: &Context<'_>) -> Result<Vec<Section>, Skip> {
    if !cx.has("start") && cx.has("timestamp") {
        // Survey answers (a score per customer and time) are not purchases: predicting who
        // left from them would be a finding about nothing.
        if cx.has("score") && !cx.named("retention") {
            return Err(Skip::NotApplicable);
        }
        return predicted(cx);
    }
    let descriptor = cx.descriptor("retention", &["customer_id", "start"])?;
    let segments = cx.segments(descriptor)?;
    let batch = segments.input.clone();
    let defaults = default_period(&batch, "start");
    let params = cx.params(descriptor, &defaults, &[])?;
    let outcome = cx.compute("retention", &params, batch, &[])?;
    let results = outcome.results.ok_or(Skip::NotApplicable)?;
    let period = |key: &str| {
        cx.user_param(key).map(str::to_owned).or_else(|| {
            defaults
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
        })
    };
    let lead = format!(
        "Retention rate = (E − N) / S: of the S customers at the start of the period, the share \
         still customers at its end (E customers at the end, N of them new). The period is {} \
         to {}{}. Below, each acquisition cohort's customers are followed from the period they \
         joined in: how many are still active after each period.",
        period("period_start").unwrap_or_default(),
        period("period_end").unwrap_or_default(),
        if cx.user_param("period_start").is_none() {
            " (the last 12 months of the data; set it with --param period_start=… --param \
             period_end=…)"
        } else {
            ""
        }
    );
    let mut section = Section::new("retention", "Retention and churn", lead);
    period_figures(
        &mut section,
        (descriptor, &results),
        format!("{} customers", outcome.rows),
        Some(["retention rate", "revenue lost to churn"]),
    );
    by_segment(cx, &mut section, (descriptor, &params), &segments)?;
    let cohorts = cohorts_of(&results);
    let kind = period("cohort_period").unwrap_or_else(|| "month".to_owned());
    if !cohorts.is_empty() {
        section.chart(survival_heatmap("retention-cohorts", &cohorts, &kind)?);
        section.chart(survival_curves("retention-curves", &cohorts, &kind)?);
        match sbg_fits(cx, &cohorts)? {
            Ok(Some(fits)) => {
                let (drawn, warnings) = identified_fits(&fits);
                warnings.into_iter().for_each(|w| section.warn(w));
                section.numbers(fit_numbers(&fits));
                if !drawn.is_empty() {
                    section.chart(fit_chart("retention-sbg", &drawn, &kind)?);
                }
            }
            Ok(None) => {}
            Err(reason) => section.lead.push_str(&format!(
                " The shifted-beta-geometric fit to the cohorts was not made: {reason}."
            )),
        }
    }
    Ok(vec![section])
}

/// The purchase models the retention metric predicts churn with; the clv section's other
/// models (historic, auto) are its own.
const PURCHASE_MODELS: [&str; 3] = ["pareto_nbd", "bgnbd", "mbgnbd"];

/// Retention from a purchase log: no contract says who left, so the metric predicts it with a
/// purchase model, and the section says so before any number.
fn predicted(cx: &Context<'_>) -> Result<Vec<Section>, Skip> {
    let descriptor = cx.descriptor("retention", &["customer_id", "timestamp"])?;
    let segments = cx.segments(descriptor)?;
    let batch = segments.input.clone();
    let mut defaults = default_period(&batch, "timestamp");
    defaults.retain(|(k, _)| *k != "cohort_period");
    // The log is taken as observed to the period's end, and the intervals at 90 %.
    if let Some((_, end)) = defaults.iter().find(|(k, _)| *k == "period_end").cloned() {
        defaults.push(("observation_end", end));
    }
    defaults.push(("interval", "0.9".to_owned()));
    let ignored: &[&str] = match cx.user_param("model") {
        Some(model) if !PURCHASE_MODELS.contains(&model) => &["model", "cohort_period"],
        _ => &["cohort_period"],
    };
    let params = cx.params(descriptor, &defaults, ignored)?;
    let outcome = cx.compute("retention", &params, batch, &[])?;
    let results = outcome.results.ok_or(Skip::NotApplicable)?;
    let param = |key: &str| match params.get(key) {
        Some(ParamValue::String(s)) => s.clone(),
        Some(ParamValue::Timestamp(micros)) => DateTime::from_timestamp_micros(*micros)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    };
    let model = match param("model").as_str() {
        "bgnbd" => "BG/NBD",
        "mbgnbd" => "MBG/NBD",
        _ => "Pareto/NBD",
    };
    let lead = format!(
        "No contract says when a customer leaves, so who left is predicted: a {model} model \
         fitted to the purchases up to {end} gives each customer's probability of still being a \
         customer at the start and at the end of the period, {start} to {end}{default}. S and E \
         are the expected customers at the start and end, the customers lost their expected \
         number, and N the customers whose first purchase falls in the period (counted). \
         Retention rate = (E − N) / S. The intervals cover the numbers that actually happened, \
         from the fit's uncertainty and each customer's own. The revenue lost is the purchases \
         so far of the customers lost, each weighted by the probability they left in the period.",
        start = param("period_start"),
        end = param("period_end"),
        default = if cx.user_param("period_start").is_none() {
            " (the last 12 months of the data; set it with --param period_start=… --param \
             period_end=…)"
        } else {
            ""
        }
    );
    let mut section = Section::new("retention", "Retention and churn, predicted", lead);
    // The lead says what the counts are; the rest are findings.
    for warning in results
        .warnings
        .iter()
        .filter(|w| w.code != "churn_predicted")
    {
        section.warn(&warning.message);
    }
    // A fit that does not identify its parameters gives numbers but no finding: they are
    // shown in the table beside the warning, never as key figures.
    let identified = !results
        .warnings
        .iter()
        .any(|w| w.code == "fit_not_identified");
    period_figures(
        &mut section,
        (descriptor, &results),
        format!("{} purchases", outcome.rows),
        identified.then_some([
            "retention rate (predicted)",
            "revenue of customers lost (predicted)",
        ]),
    );
    by_segment(cx, &mut section, (descriptor, &params), &segments)?;
    Ok(vec![section])
}

/// The period's figures: the retention rate and the revenue lost as key figures (`headlines`
/// labels them; none where they are no finding), and every figure in a table.
fn period_figures(
    section: &mut Section,
    (descriptor, results): (&mittari_engine::MetricDescriptor, &MetricResults),
    caption: String,
    headlines: Option<[&str; 2]>,
) {
    if let Some([rate, lost]) = headlines {
        section.headline(rate, table::scalar(results, "retention_rate"), "%");
        section.headline(lost, table::scalar(results, "churned_revenue"), "currency");
    }
    section.numbers(Numbers::outputs(
        caption,
        descriptor,
        results,
        &PERIOD_OUTPUTS,
    ));
}

/// The period's figures by each segment column: a table and a chart each. A segment column
/// whose computation fails (a model fitted per segment that does not converge, a segment with
/// no customer at the start) is left out, saying why; the section stands without it.
fn by_segment(
    cx: &Context<'_>,
    section: &mut Section,
    (descriptor, params): (
        &mittari_engine::MetricDescriptor,
        &BTreeMap<String, ParamValue>,
    ),
    segments: &crate::context::Segments,
) -> Result<(), Skip> {
    for segment in &segments.names {
        let grouped = match cx.compute_by(descriptor, params, segments, segment) {
            Ok(Some(grouped)) => grouped,
            Ok(None) => continue,
            Err(Skip::Failed(reason)) => {
                section.warn(format!("retention by {segment} was not computed: {reason}"));
                continue;
            }
            Err(other) => return Err(other),
        };
        let (numbers, chart) = retention_by(segment, &grouped)?;
        section.numbers(numbers);
        section.chart(chart);
    }
    Ok(())
}

/// `period_start`, `period_end` (the 12 months up to the first of the month after the latest
/// date in the data) and `cohort_period` (quarters when the customers were acquired over more
/// than two years, so each cohort has customers enough to read).
fn default_period(batch: &RecordBatch, start: &str) -> Vec<(&'static str, String)> {
    let instants = |name: &str| -> Vec<i64> {
        batch
            .column_by_name(name)
            .map(|c| {
                let c = c.as_primitive::<TimestampMicrosecondType>();
                c.iter().flatten().collect()
            })
            .unwrap_or_default()
    };
    let starts = instants(start);
    let latest = starts.iter().chain(instants("end").iter()).copied().max();
    let earliest = starts.iter().copied().min();
    let (Some(latest), Some(earliest)) = (
        latest.and_then(DateTime::from_timestamp_micros),
        earliest.and_then(DateTime::from_timestamp_micros),
    ) else {
        return Vec::new();
    };
    let latest = latest.date_naive();
    let Some(end) = NaiveDate::from_ymd_opt(latest.year(), latest.month(), 1)
        .and_then(|first| first.checked_add_months(Months::new(1)))
    else {
        return Vec::new();
    };
    let Some(start) = end.checked_sub_months(Months::new(12)) else {
        return Vec::new();
    };
    let span_days = (latest - earliest.date_naive()).num_days();
    let cohort_period = if span_days > 2 * 365 {
        "quarter"
    } else {
        "month"
    };
    vec![
        ("period_start", start.format("%Y-%m-%d").to_string()),
        ("period_end", end.format("%Y-%m-%d").to_string()),
        ("cohort_period", cohort_period.to_owned()),
    ]
}

/// The retention plugin's `cohorts` table as cohorts, oldest first.
fn cohorts_of(results: &MetricResults) -> Vec<Cohort> {
    let Some(table) = table::result_table(results, "cohorts") else {
        return Vec::new();
    };
    let labels = table::texts(table, "cohort");
    let ages = table::numbers(table, "age");
    let sizes = table::numbers(table, "customers");
    let active = table::numbers(table, "active");
    let mut cohorts: BTreeMap<String, Cohort> = BTreeMap::new();
    for row in 0..table.num_rows() {
        let (Some(age), Some(size), Some(active)) = (ages[row], sizes[row], active[row]) else {
            continue;
        };
        let cohort = cohorts
            .entry(labels[row].clone())
            .or_insert_with(|| Cohort {
                label: labels[row].clone(),
                size,
                active: vec![(0, size)],
            });
        cohort.active.push((age as i64, active));
    }
    cohorts.into_values().filter(|c| c.size > 0.0).collect()
}

fn survival_heatmap(id: &str, cohorts: &[Cohort], kind: &str) -> Result<Chart, Skip> {
    let max_age = cohorts
        .iter()
        .flat_map(|c| c.active.iter().map(|a| a.0))
        .max()
        .unwrap_or(0);
    let ages: Vec<String> = (0..=max_age).map(|a| a.to_string()).collect();
    let labels: Vec<String> = cohorts
        .iter()
        .map(|c| format!("{} ({})", c.label, c.size))
        .collect();
    let cells: Vec<Vec<Option<f64>>> = cohorts
        .iter()
        .map(|c| {
            let mut row = vec![None; ages.len()];
            for (age, share) in c.survival() {
                row[age as usize] = Some(share);
            }
            row
        })
        .collect();
    Ok(Chart {
        svg: chart::heatmap(
            id,
            (&format!("{kind}s since joining"), "cohort (customers)"),
            &ages,
            &labels,
            &cells,
            ("active (%)", Some((0.0, 100.0))),
        )?,
        id: id.to_owned(),
        title: "Survival by cohort".into(),
        caption: format!(
            "Each row is the customers who joined in one {kind}; each cell the share of them \
             still active that many {kind}s later. Read down a column to compare cohorts at \
             the same age: lighter lower rows mean newer customers stay longer."
        ),
    })
}

fn survival_curves(id: &str, cohorts: &[Cohort], kind: &str) -> Result<Chart, Skip> {
    let shown = spread(cohorts, MAX_CURVES);
    let series: Vec<Series> = shown
        .iter()
        .enumerate()
        .map(|(i, c)| Series {
            name: c.label.clone(),
            points: c.survival(),
            color: i,
            dashed: false,
            dots: false,
        })
        .collect();
    Ok(Chart {
        svg: survival_lines(id, kind, &series)?,
        id: id.to_owned(),
        title: "Survival curves".into(),
        caption: format!(
            "The share of each cohort still active by age{}.",
            if shown.len() < cohorts.len() {
                format!(
                    " ({} of the {} cohorts, evenly spread)",
                    shown.len(),
                    cohorts.len()
                )
            } else {
                String::new()
            }
        ),
    })
}

/// Lines of the share of customers active (0–100 %) by periods since joining.
fn survival_lines(id: &str, kind: &str, series: &[Series]) -> Result<String, chart::ChartError> {
    chart::lines(
        id,
        &Axes {
            x: &format!("{kind}s since joining"),
            y: "active (%)",
            ..Axes::default()
        },
        series,
        0.0..105.0,
    )
}

/// Up to `n` items, evenly spread over `items`, first and last included.
fn spread<T: Clone>(items: &[T], n: usize) -> Vec<T> {
    if items.len() <= n || n < 2 {
        return items.iter().take(n.max(1)).cloned().collect();
    }
    (0..n)
        .map(|i| items[i * (items.len() - 1) / (n - 1)].clone())
        .collect()
}

/// Retention rate by segment, as a table and bars.
fn retention_by(segment: &str, grouped: &GroupedResults) -> Result<(Numbers, Chart), Skip> {
    let labels = table::group_labels(grouped);
    let rate = table::group_values(grouped, "retention_rate");
    let at_start = table::group_values(grouped, "customers_at_start");
    let churned = table::group_values(grouped, "churned_customers");
    let lost = table::group_values(grouped, "churned_revenue");
    let numbers = Numbers {
        caption: format!("By {segment}"),
        header: vec![
            segment.to_owned(),
            "customers at start".into(),
            "retention rate".into(),
            "churned".into(),
            "churned revenue".into(),
        ],
        rows: (0..labels.len())
            .map(|g| {
                vec![
                    labels[g].clone(),
                    format_value(at_start[g], "count"),
                    format_value(rate[g], "%"),
                    format_value(churned[g], "count"),
                    format_value(lost[g], "currency"),
                ]
            })
            .collect(),
    };
    let id = format!("retention-by-{}", slug(segment));
    let chart = Chart {
        svg: chart::bars(
            &id,
            (segment, "retention rate (%)"),
            &labels,
            &[(
                "retention rate".into(),
                rate.iter().map(|v| v.unwrap_or(0.0)).collect(),
            )],
        )?,
        id,
        title: format!("Retention rate by {segment}"),
        caption: format!(
            "Retention rate over the period per {segment}; a segment with no customers at the \
             start has no rate and no bar."
        ),
    };
    Ok((numbers, chart))
}

/// A fitted cohort: its observed and fitted survival and the fit's numbers.
#[derive(Clone)]
struct Fit {
    label: String,
    /// Customers at period 0.
    size: Option<f64>,
    observed: Vec<(f64, f64)>,
    fitted: Vec<(f64, f64)>,
    last_observed: f64,
    numbers: Vec<Option<f64>>,
    /// Why the fit does not identify its parameters, when it does not: it is then listed,
    /// marked, and neither drawn nor projected as a finding.
    not_identified: Option<String>,
}

const NOT_IDENTIFIED: &str = "fit_not_identified";

/// The fits a chart may draw, and a warning for each fit it must not.
fn identified_fits(fits: &[Fit]) -> (Vec<Fit>, Vec<String>) {
    let warnings = fits
        .iter()
        .filter_map(|f| {
            let reason = f.not_identified.as_ref()?;
            Some(format!("cohort {}: {reason}", f.label))
        })
        .collect();
    let drawn = fits
        .iter()
        .filter(|f| f.not_identified.is_none())
        .cloned()
        .collect();
    (drawn, warnings)
}

const FIT_OUTPUTS: [(&str, &str); 5] = [
    ("alpha", "parameter"),
    ("beta", "parameter"),
    ("next_retention_rate", "%"),
    ("projected_survival", "%"),
    ("derl", "periods"),
];

/// The shifted-beta-geometric model fitted to up to [`MAX_FITS`] cohorts, evenly spread over
/// those observed long enough; `Ok(Err(reason))` when the engine refused.
fn sbg_fits(
    cx: &Context<'_>,
    cohorts: &[Cohort],
) -> Result<Result<Option<Vec<Fit>>, String>, Skip> {
    let Ok(descriptor) = cx.descriptor("retention_forecast", &[]) else {
        return Ok(Ok(None));
    };
    // Cohorts observed for at least half as long as the oldest (and four periods): a fit to
    // the first two or three periods of a young cohort says little.
    let longest = cohorts.iter().map(|c| c.active.len()).max().unwrap_or(0);
    let observed: Vec<Cohort> = cohorts
        .iter()
        .filter(|c| c.active.len() >= (longest / 2).max(4))
        .cloned()
        .collect();
    let chosen = spread(&observed, MAX_FITS);
    if chosen.is_empty() {
        return Ok(Ok(None));
    }
    let mut labels = Vec::new();
    let mut periods = Vec::new();
    let mut active = Vec::new();
    for c in &chosen {
        for &(age, count) in &c.active {
            labels.push(c.label.clone());
            periods.push(age);
            active.push(count.round() as i64);
        }
    }
    let input = RecordBatch::try_from_iter([
        ("period", Arc::new(Int64Array::from(periods)) as ArrayRef),
        ("active", Arc::new(Int64Array::from(active)) as ArrayRef),
        ("cohort", Arc::new(StringArray::from(labels)) as ArrayRef),
    ])
    .map_err(|e| {
        Skip::Error(crate::ReportError::Chart(chart::ChartError::new(
            "retention-sbg",
            e.to_string(),
        )))
    })?;
    // The report forecasts each cohort on its own; covariates across cohorts are not shown.
    let params = cx.params(descriptor, &[], &["covariates"])?;
    let group_by = ["cohort".to_owned()];
    match cx.compute("retention_forecast", &params, input, &group_by) {
        Ok(outcome) => Ok(Ok(outcome.grouped.map(|g| fits_of(&g)))),
        Err(Skip::Failed(reason)) => Ok(Err(reason.to_string())),
        Err(other) => Err(other),
    }
}

/// The fits of `retention_forecast` results grouped by cohort.
fn fits_of(grouped: &GroupedResults) -> Vec<Fit> {
    let labels = table::group_labels(grouped);
    let not_identified = |g: usize| {
        grouped
            .warnings
            .iter()
            .find(|w| w.warning.code == NOT_IDENTIFIED && w.groups.contains(&(g as u32)))
            .map(|w| w.warning.message.clone())
    };
    let values: Vec<Vec<Option<f64>>> = FIT_OUTPUTS
        .iter()
        .map(|(name, _)| table::group_values(grouped, name))
        .collect();
    labels
        .into_iter()
        .enumerate()
        .filter_map(|(g, label)| {
            let curve = table::group_table(grouped, g, "curve")?;
            let period = table::numbers(curve, "period");
            let observed = table::numbers(curve, "observed_survival");
            let fitted = table::numbers(curve, "fitted_survival");
            let pairs = |values: &[Option<f64>]| -> Vec<(f64, f64)> {
                period
                    .iter()
                    .zip(values)
                    .filter_map(|(p, v)| Some(((*p)?, (*v)?)))
                    .collect()
            };
            let observed = pairs(&observed);
            let last_observed = observed.last().map_or(0.0, |p| p.0);
            Some(Fit {
                label,
                size: table::numbers(curve, "observed_active")
                    .first()
                    .copied()
                    .flatten(),
                fitted: pairs(&fitted),
                observed,
                last_observed,
                numbers: values.iter().map(|v| v[g]).collect(),
                not_identified: not_identified(g),
            })
        })
        .collect()
}

fn fit_chart(id: &str, fits: &[Fit], kind: &str) -> Result<Chart, Skip> {
    let mut series = Vec::new();
    for (i, fit) in fits.iter().enumerate() {
        series.push(Series {
            name: fit.label.clone(),
            points: fit.observed.clone(),
            color: i,
            dashed: false,
            dots: true,
        });
        series.push(Series {
            // The caption says dashed lines are the fits; one legend entry per cohort.
            name: String::new(),
            points: fit.fitted.clone(),
            color: i,
            dashed: true,
            dots: false,
        });
    }
    Ok(Chart {
        svg: survival_lines(id, kind, &series)?,
        id: id.to_owned(),
        title: "Shifted-beta-geometric fit and projection".into(),
        caption: format!(
            "Dots: the share of each cohort observed active. Dashed: the shifted-beta-geometric \
             model fitted to those observations, continued beyond the last observed {kind} as \
             the projection. Customers differ in how likely they are to leave, so the survivors \
             are ever more loyal and the curve flattens."
        ),
    })
}

fn fit_numbers(fits: &[Fit]) -> Numbers {
    let mut header = vec!["cohort".to_owned(), "observed periods".to_owned()];
    header.extend(FIT_OUTPUTS.iter().map(|(name, _)| (*name).to_owned()));
    Numbers {
        caption: "Shifted-beta-geometric fit per cohort; a cohort whose fit does not identify \
                  alpha and beta (see the warnings) is marked, and its curve is not drawn"
            .into(),
        header,
        rows: fits
            .iter()
            .map(|fit| {
                let label = match fit.not_identified {
                    Some(_) => format!("{} (not identified, see the warning)", fit.label),
                    None => fit.label.clone(),
                };
                let mut row = vec![label, format_value(Some(fit.last_observed), "count")];
                row.extend(
                    FIT_OUTPUTS
                        .iter()
                        .zip(&fit.numbers)
                        .map(|((_, unit), v)| format_value(*v, unit)),
                );
                row
            })
            .collect(),
    }
}

/// `retention_forecast` on cohort data (`period`, `active` per cohort): survival by cohort and
/// the fit with its projection.
pub(crate) fn forecast(cx: &Context<'_>) -> Result<Vec<Section>, Skip> {
    let descriptor = cx.descriptor("retention_forecast", &["period", "active"])?;
    let params = cx.params(descriptor, &[], &["covariates"])?;
    let segments = cx.segments(descriptor)?;
    let (mut group_by, batch) = (segments.names, segments.input);
    // Several cohorts in a `cohort` column: each forecast on its own, as the page shows them.
    if batch.column_by_name("cohort").is_some() && !group_by.iter().any(|g| g == "cohort") {
        group_by.insert(0, "cohort".to_owned());
    }
    let outcome = cx.compute("retention_forecast", &params, batch, &group_by)?;
    let fits = match (&outcome.grouped, &outcome.results) {
        (Some(grouped), _) => fits_of(grouped),
        (None, Some(results)) => fits_of_one(results),
        (None, None) => Vec::new(),
    };
    if fits.is_empty() {
        return Err(Skip::NotApplicable);
    }
    let cohorts: Vec<Cohort> = fits
        .iter()
        .map(|f| {
            let size = f.size.unwrap_or(100.0);
            Cohort {
                label: f.label.clone(),
                size,
                active: f
                    .observed
                    .iter()
                    .map(|&(period, share)| (period as i64, share * size / 100.0))
                    .collect(),
            }
        })
        .collect();
    let (drawn, warnings) = identified_fits(&fits);
    let shown: Vec<Fit> = spread(&drawn, MAX_CURVES);
    let mut charts = vec![survival_heatmap("forecast-cohorts", &cohorts, "period")?];
    if !shown.is_empty() {
        charts.push(fit_chart("forecast-sbg", &shown, "period")?);
    }
    let fitted_to = if group_by.is_empty() {
        "the cohort".to_owned()
    } else {
        format!("each {} separately", group_by.join(" and "))
    };
    let mut section = Section::of(
        (
            "retention-forecast",
            "Retention forecast",
            format!(
                "The shifted-beta-geometric model (Fader & Hardie 2007) fitted to {fitted_to}: \
             every customer leaves at the end of a period with a probability of their own, and \
             those probabilities vary across customers as a Beta(alpha, beta) distribution. \
             The fit projects survival beyond the periods observed; DERL is the discounted \
             expected residual lifetime of a new customer."
            ),
        ),
        vec![fit_numbers(&fits)],
        charts,
    );
    warnings.into_iter().for_each(|w| section.warn(w));
    Ok(vec![section])
}

/// The fit of an ungrouped `retention_forecast` result.
fn fits_of_one(results: &MetricResults) -> Vec<Fit> {
    let Some(curve) = table::result_table(results, "curve") else {
        return Vec::new();
    };
    let period = table::numbers(curve, "period");
    let pairs = |name: &str| -> Vec<(f64, f64)> {
        period
            .iter()
            .zip(table::numbers(curve, name))
            .filter_map(|(p, v)| Some(((*p)?, v?)))
            .collect()
    };
    let observed = pairs("observed_survival");
    vec![Fit {
        label: "all".into(),
        size: table::numbers(curve, "observed_active")
            .first()
            .copied()
            .flatten(),
        last_observed: observed.last().map_or(0.0, |p| p.0),
        fitted: pairs("fitted_survival"),
        observed,
        numbers: FIT_OUTPUTS
            .iter()
            .map(|(name, _)| table::scalar(results, name))
            .collect(),
        not_identified: results
            .warnings
            .iter()
            .find(|w| w.code == NOT_IDENTIFIED)
            .map(|w| w.message.clone()),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::TimestampMicrosecondArray;

    #[test]
    fn cohorts_are_spread_evenly_with_both_ends() {
        let items: Vec<u32> = (0..10).collect();
        assert_eq!(spread(&items, 4), vec![0, 3, 6, 9]);
        assert_eq!(spread(&items, 20), items);
        assert_eq!(spread(&items, 1), vec![0]);
    }

    fn check_period(dates: &[(&str, Option<&str>)], expect: [&str; 3]) {
        let micros = |d: &str| {
            NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .unwrap_or_else(|e| panic!("{e}"))
                .and_hms_opt(0, 0, 0)
                .unwrap_or_else(|| panic!("midnight"))
                .and_utc()
                .timestamp_micros()
        };
        let starts: Vec<i64> = dates.iter().map(|d| micros(d.0)).collect();
        let ends: Vec<Option<i64>> = dates.iter().map(|d| d.1.map(micros)).collect();
        let batch = RecordBatch::try_from_iter([
            (
                "start",
                Arc::new(TimestampMicrosecondArray::from(starts).with_timezone("UTC")) as ArrayRef,
            ),
            (
                "end",
                Arc::new(TimestampMicrosecondArray::from(ends).with_timezone("UTC")) as ArrayRef,
            ),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<String> = default_period(&batch, "start")
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn the_default_period_is_the_last_twelve_months() {
        check_period(
            &[("2024-03-05", None), ("2024-02-01", Some("2024-12-29"))],
            ["2024-01-01", "2025-01-01", "month"],
        );
        check_period(
            &[("2021-12-31", Some("2022-01-15")), ("2024-06-30", None)],
            ["2023-07-01", "2024-07-01", "quarter"],
        );
    }

    #[test]
    fn survival_is_the_share_of_the_cohort_active() {
        let cohort = Cohort {
            label: "2024-Q1".into(),
            size: 30.0,
            active: vec![(0, 30.0), (1, 27.0), (2, 15.0)],
        };
        assert_eq!(
            cohort.survival(),
            vec![(0.0, 100.0), (1.0, 90.0), (2.0, 50.0)]
        );
    }
}
