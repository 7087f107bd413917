//! Customer service from a contact log: first-contact resolution, response and resolution
//! times against their SLAs and the backlog, overall, period by period and per contact segment
//! (channel, team), each rate and median with its interval.

use std::collections::BTreeMap;

use arrow_array::RecordBatch;
use mittari_engine::{MetricDescriptor, MetricResults, ParamValue};

use crate::chart::{self, Chart};
use crate::context::{Context, Skip};
use crate::page::{Numbers, Section, format_value, grouped};
use crate::survey::slug;
use crate::table;

/// The outputs a period or segment row shows, with the header they show under.
const ROW_FIGURES: &[(&str, &str)] = &[
    ("contacts", "contacts"),
    ("first_contact_resolution", "resolved at first contact"),
    ("response_time_median", "median first response"),
    ("response_within_sla", "answered within SLA"),
    ("resolution_time_median", "median resolution"),
    ("resolution_within_sla", "resolved within SLA"),
    ("backlog", "open at the end"),
];

/// Figures charted period by period with their intervals: (output, chart title, y axis).
const PERIOD_CHARTS: &[(&str, &str, &str)] = &[
    (
        "first_contact_resolution",
        "First-contact resolution",
        "resolved at first contact (%)",
    ),
    (
        "response_time_median",
        "Median time to first response",
        "hours",
    ),
    (
        "response_within_sla",
        "First responses within the SLA",
        "within SLA (%)",
    ),
];

pub(crate) fn service(cx: &Context<'_>) -> Result<Vec<Section>, Skip> {
    let descriptor = cx.descriptor("service", &["customer_id", "opened_at"])?;
    let params = cx.params(descriptor, &[], &["breakdown"])?;
    // Segments are contact columns (channel, team): computed as a breakdown, so a contact
    // chased in another channel counts against the one that did not resolve it.
    let breakdown: Vec<String> = match cx.user_param("breakdown") {
        Some(columns) => columns
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect(),
        None => cx.segments(descriptor)?.names,
    };
    let input = cx.read(descriptor, &breakdown)?;
    let outcome = cx.compute("service", &params, input.clone(), &[])?;
    let results = outcome.results.ok_or(Skip::NotApplicable)?;

    let mut section = Section::new("service", "Customer service", lead(&params));
    for warning in &results.warnings {
        section.warn(&warning.message);
    }
    headline(
        &mut section,
        &results,
        "first_contact_resolution",
        "resolved at first contact",
    );
    headline(
        &mut section,
        &results,
        "response_time_median",
        "median first response",
    );
    headline(
        &mut section,
        &results,
        "response_within_sla",
        &sla_title(&params, "response_sla_hours", 24.0, "answered"),
    );
    section.headline(
        "open now (backlog)",
        table::scalar(&results, "backlog"),
        "count",
    );
    let names: Vec<&str> = results.scalars.iter().map(|s| s.name.as_str()).collect();
    section.numbers(Numbers::outputs(
        format!("All {} contacts", outcome.rows),
        descriptor,
        &results,
        &names,
    ));
    if let Some(periods) = table::result_table(&results, "periods") {
        let labels = table::texts(periods, "period");
        section.numbers(rows_table(
            "By period (the period a contact was opened in)",
            "period",
            &labels,
            periods,
            descriptor,
        ));
        for (figure, title, y_desc) in PERIOD_CHARTS {
            if let Some(chart) = interval_chart(
                ("service-by-period", figure),
                (title, y_desc),
                "period",
                &labels,
                periods,
            )? {
                section.chart(chart);
            }
        }
    }
    for segment in &breakdown {
        let mut by = params.clone();
        by.insert("breakdown".to_owned(), ParamValue::String(segment.clone()));
        by.insert("period".to_owned(), ParamValue::String("none".to_owned()));
        let outcome = cx.compute("service", &by, input.clone(), &[])?;
        let Some(segments) = outcome
            .results
            .as_ref()
            .and_then(|r| table::result_table(r, "segments"))
        else {
            continue;
        };
        let labels = table::texts(segments, segment);
        section.numbers(rows_table(
            &format!("By {segment} (repeats found in any {segment})"),
            segment,
            &labels,
            segments,
            descriptor,
        ));
        let id = format!("service-by-{}", slug(segment));
        if let Some(chart) = interval_chart(
            (&id, "first_contact_resolution"),
            ("First-contact resolution", "resolved at first contact (%)"),
            segment,
            &labels,
            segments,
        )? {
            section.chart(chart);
        }
    }
    Ok(vec![section])
}

/// What the numbers mean, with the rules they were computed by.
fn lead(params: &BTreeMap<String, ParamValue>) -> String {
    let text = |key: &str| match params.get(key) {
        Some(ParamValue::String(v)) if !v.is_empty() => Some(v.clone()),
        _ => None,
    };
    let hours = match text("business_hours") {
        Some(hours) => format!(
            "in business hours ({hours}, {}{}, {})",
            text("business_days").unwrap_or_else(|| "mon-fri".to_owned()),
            text("holidays").map_or_else(String::new, |h| format!(", closed on {h}")),
            text("timezone").unwrap_or_else(|| "UTC".to_owned()),
        ),
        None => format!(
            "on the clock (periods in {})",
            text("timezone").unwrap_or_else(|| "UTC".to_owned())
        ),
    };
    let window = match params.get("repeat_window_days") {
        Some(ParamValue::Double(days)) => grouped(*days, if days.fract() == 0.0 { 0 } else { 1 }),
        _ => "7".to_owned(),
    };
    format!(
        "A contact is resolved at first contact when the customer does not come back on it \
         within {window} days of its resolution. Times run from opening to the first response \
         and to resolution, {hours}. The log is read as it stood at its latest time stamp: \
         contacts still open, or resolved too recently to know whether the customer comes back, \
         are left out of the rates and counted beside them. Bars are intervals at the stated \
         confidence: periods or segments whose bars overlap may not really differ."
    )
}

fn sla_title(params: &BTreeMap<String, ParamValue>, key: &str, default: f64, done: &str) -> String {
    let hours = match params.get(key) {
        Some(ParamValue::Double(h)) => *h,
        _ => default,
    };
    format!(
        "{done} within {} h",
        grouped(hours, if hours.fract() == 0.0 { 0 } else { 1 })
    )
}

/// A headline card carrying its interval: a rate of 60 % whose interval runs 20 % to 90 %
/// is not a finding.
fn headline(section: &mut Section, results: &MetricResults, name: &str, what: &str) {
    let unit = if name.ends_with("_median") {
        "hours"
    } else {
        "%"
    };
    let card = match table::interval(results, name) {
        Some((low, _, high)) => format!(
            "{what}, {} {} to {}",
            table::interval_header(results, name),
            format_value(Some(low), unit),
            format_value(Some(high), unit)
        ),
        None => what.to_owned(),
    };
    section.headline(&card, table::scalar(results, name), unit);
}

/// A figure's values, lower and upper bounds per row, and its unit.
type FigureColumn = (Vec<Option<f64>>, Vec<Option<f64>>, Vec<Option<f64>>, String);

/// One row per period or segment: each figure with its interval under it.
fn rows_table(
    caption: &str,
    key: &str,
    labels: &[String],
    batch: &RecordBatch,
    descriptor: &MetricDescriptor,
) -> Numbers {
    let unit = |name: &str| {
        descriptor
            .output_spec(name)
            .map_or("", |o| o.unit.as_str())
            .to_owned()
    };
    let columns: Vec<FigureColumn> = ROW_FIGURES
        .iter()
        .map(|(name, _)| {
            (
                table::numbers(batch, name),
                table::numbers(batch, &format!("{name}_lower")),
                table::numbers(batch, &format!("{name}_upper")),
                unit(name),
            )
        })
        .collect();
    let rows = labels
        .iter()
        .enumerate()
        .map(|(row, label)| {
            let mut cells = vec![label.clone()];
            for (values, lower, upper, unit) in &columns {
                let value = values.get(row).copied().flatten();
                let bounds = match (
                    lower.get(row).copied().flatten(),
                    upper.get(row).copied().flatten(),
                ) {
                    (Some(low), Some(high)) => format!(
                        "\n{} to {}",
                        format_value(Some(low), unit),
                        format_value(Some(high), unit)
                    ),
                    _ => String::new(),
                };
                cells.push(format!("{}{bounds}", format_value(value, unit)));
            }
            cells
        })
        .collect();
    Numbers {
        caption: caption.to_owned(),
        header: std::iter::once(key.to_owned())
            .chain(ROW_FIGURES.iter().map(|(_, header)| (*header).to_owned()))
            .collect(),
        rows,
    }
}

/// `figure` per row with its interval as an error bar; rows without one are left out, and
/// no chart is drawn when none has one.
fn interval_chart(
    (id, figure): (&str, &str),
    (title, y_desc): (&str, &str),
    x_desc: &str,
    labels: &[String],
    batch: &RecordBatch,
) -> Result<Option<Chart>, Skip> {
    let values = table::numbers(batch, figure);
    let lower = table::numbers(batch, &format!("{figure}_lower"));
    let upper = table::numbers(batch, &format!("{figure}_upper"));
    let (shown, points): (Vec<String>, Vec<(f64, f64, f64)>) = labels
        .iter()
        .enumerate()
        .filter_map(|(i, label)| {
            Some((
                label.clone(),
                (
                    lower.get(i).copied()??,
                    values.get(i).copied()??,
                    upper.get(i).copied()??,
                ),
            ))
        })
        .unzip();
    if points.is_empty() {
        return Ok(None);
    }
    // Times all under an hour read in minutes.
    let in_minutes = y_desc == "hours" && points.iter().all(|p| p.2 < 1.0);
    let (points, y_desc) = if in_minutes {
        let minutes = points
            .iter()
            .map(|&(l, v, u)| (60.0 * l, 60.0 * v, 60.0 * u))
            .collect();
        (minutes, "minutes")
    } else {
        (points, y_desc)
    };
    let id = format!("{id}-{}", slug(figure));
    Ok(Some(Chart {
        svg: chart::intervals(&id, (x_desc, y_desc), &shown, &points)?,
        id,
        title: format!("{title} by {x_desc}"),
        caption: format!(
            "{title} of each {x_desc}'s contacts with its interval; one with few contacts has a wide bar, and one whose outcome is not known yet is left out."
        ),
    }))
}
