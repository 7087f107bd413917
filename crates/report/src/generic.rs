//! The section of a metric the report has no layout of its own for — a third party's plugin,
//! named with `--metric`. Everything on it comes from the metric's descriptor and results:
//! what the metric says it is, its warnings, its scalars with units and intervals, each result
//! table, and a chart of each table that has a label column and a numeric one (bars) or two
//! numeric ones (a line).

use arrow_array::RecordBatch;
use arrow_schema::DataType;

use crate::chart::{self, Axes, Chart, Series};
use crate::context::{Context, Skip};
use crate::page::{Numbers, Section};
use crate::{Refusal, table};

/// Rows of a result table shown on the page; the rest are counted.
const ROWS_SHOWN: usize = 20;
/// Bars a chart draws at most: more categories than this are not readable as bars.
const MAX_BARS: usize = 40;

pub(crate) fn section(cx: &Context<'_>, metric: &str) -> Result<Section, Skip> {
    let descriptor = cx.descriptor(metric, &[])?;
    if let Some(missing) = descriptor
        .inputs
        .iter()
        .find(|c| c.required && !cx.has(&c.name))
    {
        return Err(Skip::Failed(Refusal(format!(
            "the input has no column {name}, which {metric} needs ({description}); its columns are {columns}: name the one that holds it with --column {name}=SOURCE",
            name = missing.name,
            description = missing.description,
            columns = cx.columns().join(", "),
        ))));
    }
    let params = cx.params(descriptor, &[], &[])?;
    let outcome = cx.compute(metric, &params, cx.read(descriptor, &[])?, &[])?;
    let results = outcome.results.ok_or(Skip::NotApplicable)?;
    let id = format!("metric-{}", metric.replace('_', "-"));
    let mut section = Section::new(
        &id,
        metric,
        format!(
            "{metric} {version}: {summary}. A plugin metric: the report shows its outputs as it \
             returns them, with the units and meanings its descriptor gives.",
            version = descriptor.version,
            summary = descriptor.summary,
        ),
    );
    for warning in &results.warnings {
        section.warn(&warning.message);
    }
    let names: Vec<&str> = results.scalars.iter().map(|s| s.name.as_str()).collect();
    if let Some(first) = results.scalars.iter().find(|s| s.value.is_some())
        && let Some(spec) = descriptor.output_spec(&first.name)
    {
        section.headline(
            &format!("{metric}: {}", spec.description),
            first.value,
            &spec.unit,
        );
    }
    section.numbers(Numbers::outputs(
        format!("{} rows", outcome.rows),
        descriptor,
        &results,
        &names,
    ));
    for (name, batch) in &results.tables {
        let description = descriptor
            .tables
            .iter()
            .find(|t| &t.name == name)
            .map_or_else(String::new, |t| format!(": {}", t.description));
        section.numbers(table_numbers(name, &description, batch));
        if let Some(chart) = table_chart(&id, name, &description, batch)? {
            section.chart(chart);
        }
    }
    Ok(section)
}

/// The first [`ROWS_SHOWN`] rows of a result table, as text.
fn table_numbers(name: &str, description: &str, batch: &RecordBatch) -> Numbers {
    let shown = batch.num_rows().min(ROWS_SHOWN);
    let columns: Vec<Vec<String>> = batch
        .columns()
        .iter()
        .map(|column| {
            table::cell_texts(column.as_ref())
                .take(shown)
                .map(Option::unwrap_or_default)
                .collect()
        })
        .collect();
    let more = match batch.num_rows() - shown {
        0 => String::new(),
        hidden => format!(" (the first {shown} rows; {hidden} more in the metric's output)"),
    };
    Numbers {
        caption: format!("{name}{description}{more}"),
        header: batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
        rows: (0..shown)
            .map(|row| columns.iter().map(|c| c[row].clone()).collect())
            .collect(),
    }
}

/// Bars of the first numeric column by the first text column (at most [`MAX_BARS`] rows), or
/// a line of the second numeric column over the first; `None` when the table has neither.
fn table_chart(
    section: &str,
    name: &str,
    description: &str,
    batch: &RecordBatch,
) -> Result<Option<Chart>, Skip> {
    let schema = batch.schema();
    let fields = schema.fields();
    let label = fields.iter().find(|f| {
        matches!(
            f.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        )
    });
    let mut numbers = fields.iter().filter(|f| f.data_type().is_numeric());
    let id = format!("{section}-{}", name.replace('_', "-"));
    let title = format!("{name}{description}");
    match (label, numbers.next()) {
        (Some(label), Some(value)) if (1..=MAX_BARS).contains(&batch.num_rows()) => {
            let labels = table::texts(batch, label.name());
            let values: Vec<f64> = table::numbers(batch, value.name())
                .into_iter()
                .map(|v| v.unwrap_or(0.0))
                .collect();
            Ok(Some(Chart {
                svg: chart::bars(
                    &id,
                    (label.name(), value.name()),
                    &labels,
                    &[(value.name().clone(), values)],
                )?,
                id,
                title,
                caption: format!(
                    "{} by {}, one bar per row of the table, in its order; a missing value is drawn as 0.",
                    value.name(),
                    label.name()
                ),
            }))
        }
        (None, Some(x)) => {
            let Some(y) = numbers.next() else {
                return Ok(None);
            };
            let points: Vec<(f64, f64)> = table::numbers(batch, x.name())
                .into_iter()
                .zip(table::numbers(batch, y.name()))
                .filter_map(|(x, y)| Some((x?, y?)))
                .collect();
            if points.len() < 2 {
                return Ok(None);
            }
            let range = chart::padded_range(points.iter().map(|p| p.1), None);
            let axes = Axes {
                x: x.name(),
                y: y.name(),
                ..Axes::default()
            };
            Ok(Some(Chart {
                svg: chart::lines(
                    &id,
                    &axes,
                    &[Series {
                        name: String::new(),
                        points,
                        color: 0,
                        dashed: false,
                        dots: true,
                    }],
                    range,
                )?,
                id,
                title,
                caption: format!(
                    "{} over {}, a point per row of the table with both values.",
                    y.name(),
                    x.name()
                ),
            }))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, Int64Array, StringArray};

    #[test]
    fn tables_are_shown_and_charted_by_their_columns() {
        let by_label = RecordBatch::try_from_iter([
            (
                "tier",
                Arc::new(StringArray::from(vec!["gold", "silver"])) as ArrayRef,
            ),
            (
                "share",
                Arc::new(Float64Array::from(vec![62.5, 37.5])) as ArrayRef,
            ),
        ])
        .unwrap();
        let numbers = table_numbers("by_tier", ": share per tier", &by_label);
        assert_eq!(numbers.caption, "by_tier: share per tier");
        assert_eq!(numbers.header, ["tier", "share"]);
        assert_eq!(numbers.rows, [["gold", "62.5"], ["silver", "37.5"]]);
        let chart = table_chart("metric-x", "by_tier", "", &by_label)
            .unwrap()
            .unwrap();
        assert_eq!(chart.id, "metric-x-by-tier");
        assert!(chart.svg.contains("<svg"), "{}", chart.svg);

        let curve = RecordBatch::try_from_iter([
            (
                "day",
                Arc::new(Int64Array::from_iter_values(0..30)) as ArrayRef,
            ),
            (
                "open",
                Arc::new(Float64Array::from_iter_values(
                    (0..30).map(|d| 100.0 - f64::from(d)),
                )) as ArrayRef,
            ),
        ])
        .unwrap();
        let numbers = table_numbers("backlog", "", &curve);
        assert_eq!(numbers.rows.len(), ROWS_SHOWN);
        assert!(
            numbers
                .caption
                .ends_with("(the first 20 rows; 10 more in the metric's output)"),
            "{}",
            numbers.caption
        );
        assert!(
            table_chart("metric-x", "backlog", "", &curve)
                .unwrap()
                .is_some()
        );

        // One numeric column and no labels: nothing to chart.
        let single =
            RecordBatch::try_from_iter([("n", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef)])
                .unwrap();
        assert!(table_chart("metric-x", "n", "", &single).unwrap().is_none());
    }
}
