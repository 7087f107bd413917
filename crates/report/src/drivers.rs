//! What drives the score: when survey answers carry attribute ratings (`rating_*` columns),
//! each rating's importance with its interval, against its performance, and what to fix first.

use mittari_engine::ParamValue;

use crate::chart::{self, Chart};
use crate::context::{Context, Skip};
use crate::page::{Numbers, Section, format_value};
use crate::table;

/// Rating columns are found by this prefix (`rating_speed`) unless `--param ratings` names them.
const PREFIX: &str = "rating_";

pub(crate) fn key_drivers(cx: &Context<'_>) -> Result<Vec<Section>, Skip> {
    section(cx, None).map(|(section, _)| vec![section])
}

/// The section, and the plugin's results (with `period`, its `changes` table too).
pub(crate) fn section(
    cx: &Context<'_>,
    period: Option<&str>,
) -> Result<(Section, mittari_engine::MetricResults), Skip> {
    let descriptor = cx.descriptor("key_drivers", &["score"])?;
    let ratings: Vec<String> = match cx.user_param("ratings") {
        Some(list) => list.split(',').map(|c| c.trim().to_owned()).collect(),
        None => cx
            .columns()
            .iter()
            .filter(|c| c.starts_with(PREFIX))
            .cloned()
            .collect(),
    };
    if ratings.len() < 2 && !cx.named("key_drivers") {
        return Err(Skip::NotApplicable);
    }
    let mut params = cx.params(descriptor, &[], &["ratings"])?;
    params.insert("ratings".to_owned(), ParamValue::String(ratings.join(",")));
    if let Some(period) = period {
        params.insert("period".to_owned(), ParamValue::String(period.to_owned()));
    }
    // The ratings are read beside the score (as extra columns, in their own types).
    let input = cx.read(descriptor, &ratings)?;
    let outcome = cx.compute("key_drivers", &params, input, &[])?;
    let results = outcome.results.ok_or(Skip::NotApplicable)?;
    let Some(drivers) = table::result_table(&results, "drivers") else {
        return Err(Skip::NotApplicable);
    };
    let mut section = Section::new(
        "key-drivers",
        "What drives the score",
        "Each rating's importance is its share of what the ratings explain of the score together \
         (Johnson's relative weights, which split the credit fairly between ratings that move \
         together), with a bootstrap interval: ratings whose bars overlap cannot be ranked with \
         confidence. Performance is the mean rating. An attribute that matters more than average \
         and is rated below average is the one to fix first.",
    );
    for warning in &results.warnings {
        section.warn(&warning.message);
    }
    let names = table::texts(drivers, "rating");
    let label = |name: &str| name.strip_prefix(PREFIX).unwrap_or(name).replace('_', " ");
    let importance = table::numbers(drivers, "importance");
    let lower = table::numbers(drivers, "importance_lower");
    let upper = table::numbers(drivers, "importance_upper");
    let performance = table::numbers(drivers, "performance");
    let quadrant = table::texts(drivers, "quadrant");
    let priority = table::numbers(drivers, "priority");
    if let Some(first) = (0..names.len()).find(|&i| priority[i] == Some(1.0)) {
        section.headline(
            &format!("fix first: {} (importance)", label(&names[first])),
            importance[first],
            "%",
        );
    }
    section.numbers(Numbers::outputs(
        format!("{} complete answers", outcome.rows),
        descriptor,
        &results,
        &["r_squared", "answers", "ratings"],
    ));
    section.numbers(Numbers {
        caption: "Ratings, most important first".to_owned(),
        header: vec![
            "rating".into(),
            "importance".into(),
            "interval".into(),
            "performance (mean rating)".into(),
            "where it stands".into(),
            "priority".into(),
        ],
        rows: (0..names.len())
            .map(|i| {
                vec![
                    label(&names[i]),
                    format_value(importance[i], "%"),
                    match (lower[i], upper[i]) {
                        (Some(l), Some(u)) => format!(
                            "{} to {}",
                            format_value(Some(l), "%"),
                            format_value(Some(u), "%")
                        ),
                        _ => String::new(),
                    },
                    format_value(performance[i], "score"),
                    quadrant[i].clone(),
                    format_value(priority[i], "count"),
                ]
            })
            .collect(),
    });
    let points: Vec<(String, (f64, f64, f64))> = (0..names.len())
        .filter_map(|i| Some((label(&names[i]), (lower[i]?, importance[i]?, upper[i]?))))
        .collect();
    if !points.is_empty() {
        let (labels, values): (Vec<String>, Vec<(f64, f64, f64)>) = points.into_iter().unzip();
        let id = "key-drivers-importance".to_owned();
        section.chart(Chart {
            svg: chart::intervals(&id, ("rating", "importance (% of R²)"), &labels, &values)?,
            id,
            title: "Importance of each rating".into(),
            caption: "Each rating's share of what the ratings explain of the score, with its \
                      bootstrap interval, most important first."
                .into(),
        });
    }
    Ok((section, results))
}
