//! The money value of experience: spend and retention of the worst, middle and best tiers.

use crate::chart::{self, Chart};
use crate::context::{Context, Skip};
use crate::page::{Numbers, Section, format_value};
use crate::table;

pub(crate) fn cx_value(cx: &Context<'_>) -> Result<Vec<Section>, Skip> {
    let descriptor = cx.descriptor("cx_value", &["customer_id", "score", "revenue", "retained"])?;
    let params = cx.params(descriptor, &[], &[])?;
    let outcome = cx.compute("cx_value", &params, cx.read(descriptor, &[])?, &[])?;
    let results = outcome.results.ok_or(Skip::NotApplicable)?;
    let numbers = Numbers::outputs(
        format!("{} customers", outcome.rows),
        descriptor,
        &results,
        &[
            "spend_uplift",
            "retention_gap",
            "revenue_at_stake",
            "value_per_converted_customer",
            "worst_customers",
            "middle_customers",
            "best_customers",
        ],
    );
    let mut charts = Vec::new();
    if let Some(tiers) = table::result_table(&results, "tiers") {
        let names = table::texts(tiers, "tier");
        let mean = |column: &str| -> Vec<f64> {
            table::numbers(tiers, column)
                .into_iter()
                .map(|v| v.unwrap_or(0.0))
                .collect()
        };
        let id = "cx-spend-by-tier".to_owned();
        charts.push(Chart {
            svg: chart::bars(
                &id,
                ("experience tier", "mean revenue per customer"),
                &names,
                &[("mean revenue".into(), mean("mean_revenue"))],
            )?,
            id,
            title: "Spend by experience tier".into(),
            caption: "Mean revenue per customer in each tier of experience score: what a \
                      better experience is worth in spend."
                .into(),
        });
        let id = "cx-retention-by-tier".to_owned();
        charts.push(Chart {
            svg: chart::bars(
                &id,
                ("experience tier", "retained (%)"),
                &names,
                &[("retained".into(), mean("retention_pct"))],
            )?,
            id,
            title: "Retention by experience tier".into(),
            caption: "Share of each tier's customers still customers at the end of the \
                      period."
                .into(),
        });
    }
    let mut section = Section::of(
        (
            "cx-value",
            "The money value of customer experience",
            "Customers are put in tiers by their experience score (by default NPS answers: \
               worst 0–6, best 9–10). The gap in spend and retention between the best and the \
               worst tier is what a better experience is worth; revenue at stake is what the \
               worst tier would add if it spent and stayed like the best."
                .to_owned(),
        ),
        vec![numbers],
        charts,
    );
    section.headline(
        "spend uplift of the best experience",
        table::scalar(&results, "spend_uplift"),
        "%",
    );
    section.headline(
        "revenue at stake in the worst tier",
        table::scalar(&results, "revenue_at_stake"),
        "currency",
    );
    Ok(vec![section])
}

/// What customers did after their experience: the purchase log with survey answers (or
/// service outcomes) as the `experiences` table, joined at a split by `cx_outcomes`. With
/// `defaults` (the scorecard's split), the part's sentence too.
pub(crate) fn cx_outcomes(cx: &Context<'_>) -> Result<Vec<Section>, Skip> {
    Ok(vec![
        outcomes_section(cx, &[], "cx-outcomes", "after their answers")?.0,
    ])
}

/// The section of `cx_outcomes` with parameter `defaults`, and its sentence.
pub(crate) fn outcomes_section(
    cx: &Context<'_>,
    defaults: &[(&str, String)],
    id: &str,
    after: &str,
) -> Result<(Section, String), Skip> {
    let descriptor = cx.descriptor("cx_outcomes", &["customer_id", "timestamp", "amount"])?;
    if !cx.has_table("experiences") {
        return Err(Skip::NotApplicable);
    }
    let params = cx.params(descriptor, defaults, &[])?;
    let outcome = cx.compute("cx_outcomes", &params, cx.read(descriptor, &[])?, &[])?;
    let results = outcome.results.ok_or(Skip::NotApplicable)?;
    let window = table::result_table(&results, "window");
    let cell = |column: &str| {
        window
            .map(|w| table::texts(w, column))
            .and_then(|v| v.into_iter().next())
            .unwrap_or_default()
    };
    let (split, end) = (cell("split"), cell("window_end"));
    let days = window
        .and_then(|w| {
            table::numbers(w, "window_days")
                .into_iter()
                .next()
                .flatten()
        })
        .unwrap_or(0.0);
    let span = format!(
        "in the {} days after {split}",
        format_value(Some(days), "count")
    );
    let mut section = Section::new(
        id,
        &format!("What customers did {after}"),
        format!(
            "Customers with a purchase by {split} are put in tiers by their latest experience up to then; \
             what they spent (revenue, not discounted) and whether they bought again is counted from \
             {split} to {end}. Predicted spend is what each customer's purchase history alone \
             predicted for the same window; a tier that spends more than predicted tells something \
             the history did not. Each tier is compared with the reference tier; a difference is \
             called significant only when its Holm-adjusted p-value is below 5 %. These are \
             associations, not proof that a better experience causes the spend."
        ),
    );
    for warning in &results.warnings {
        section.warn(&warning.message);
    }
    section.numbers(Numbers::outputs(
        format!("{split} to {end}"),
        descriptor,
        &results,
        &[
            "spend_gap",
            "retention_gap",
            "predicted_spend_gap",
            "beyond_history_gap",
            "customers",
            "customers_with_experience",
        ],
    ));
    let interval = |lower: Option<f64>, upper: Option<f64>, unit: &str| match (lower, upper) {
        (Some(l), Some(u)) => format!(
            "{} to {}",
            format_value(Some(l), unit),
            format_value(Some(u), unit)
        ),
        _ => String::new(),
    };
    if let Some(tiers) = table::result_table(&results, "tiers") {
        let column = |name: &str| table::numbers(tiers, name);
        let (spend, spend_lo, spend_hi) = (
            column("spend"),
            column("spend_lower"),
            column("spend_upper"),
        );
        let (kept, kept_lo, kept_hi) = (
            column("retention"),
            column("retention_lower"),
            column("retention_upper"),
        );
        let (predicted, beyond, beyond_lo, beyond_hi) = (
            column("predicted_spend"),
            column("beyond_history"),
            column("beyond_history_lower"),
            column("beyond_history_upper"),
        );
        let customers = column("customers");
        let rows = table::texts(tiers, "tier")
            .into_iter()
            .enumerate()
            .map(|(i, tier)| {
                vec![
                    tier,
                    format_value(customers[i], "count"),
                    format_value(spend[i], "currency"),
                    interval(spend_lo[i], spend_hi[i], "currency"),
                    format_value(kept[i], "%"),
                    interval(kept_lo[i], kept_hi[i], "%"),
                    format_value(predicted[i], "currency"),
                    format_value(beyond[i], "currency"),
                    interval(beyond_lo[i], beyond_hi[i], "currency"),
                ]
            })
            .collect();
        let names = table::texts(tiers, "tier");
        let zero = |v: &[Option<f64>]| v.iter().map(|x| x.unwrap_or(0.0)).collect::<Vec<f64>>();
        let mut series = vec![("spent".to_owned(), zero(&spend))];
        if predicted.iter().any(Option::is_some) {
            series.push(("predicted from history".to_owned(), zero(&predicted)));
        }
        let chart_id = format!("{id}-spend");
        let chart = Chart {
            svg: chart::bars(
                &chart_id,
                ("experience tier", "spend per customer in the window"),
                &names,
                &series,
            )?,
            id: chart_id,
            title: "Spend after the experience, by tier".into(),
            caption: format!(
                "Mean spend per customer {span} (every customer of the tier counted, those who bought nothing with 0){}.",
                if series.len() > 1 {
                    ", beside what their purchase history predicted"
                } else {
                    ""
                }
            ),
        };
        section.numbers(Numbers {
            caption: format!("Each tier, {split} to {end} (95 % intervals)"),
            header: [
                "tier",
                "customers",
                "spend per customer",
                "interval",
                "bought again",
                "interval",
                "predicted from history",
                "beyond history",
                "interval",
            ]
            .map(str::to_owned)
            .to_vec(),
            rows,
        });
        section.chart(chart);
    }
    let mut sentence = String::new();
    if let Some(comparisons) = table::result_table(&results, "comparisons") {
        let (tiers, references, figures) = (
            table::texts(comparisons, "tier"),
            table::texts(comparisons, "reference"),
            table::texts(comparisons, "figure"),
        );
        let (difference, lower, upper, adjusted) = (
            table::numbers(comparisons, "difference"),
            table::numbers(comparisons, "lower"),
            table::numbers(comparisons, "upper"),
            table::numbers(comparisons, "p_adjusted"),
        );
        let alpha =
            1.0 - table::interval(&results, "spend_gap").map_or(0.95, |(_, _, level)| level);
        let verdict = |p: Option<f64>| match p {
            Some(p) if p < alpha => "significant".to_owned(),
            Some(p) => format!(
                "not significant (p = {})",
                format_value(Some(p), "probability")
            ),
            None => "not testable".to_owned(),
        };
        let rows: Vec<Vec<String>> = (0..tiers.len())
            .map(|i| {
                let unit = if figures[i] == "retention" {
                    "points"
                } else {
                    "currency"
                };
                vec![
                    format!("{} vs {}", tiers[i], references[i]),
                    figures[i].replace('_', " "),
                    format_value(difference[i], unit),
                    interval(lower[i], upper[i], unit),
                    verdict(adjusted[i]),
                ]
            })
            .collect();
        section.numbers(Numbers {
            caption:
                "Each tier against the reference tier (p-values adjusted over the tiers, Holm)"
                    .to_owned(),
            header: ["tiers", "figure", "difference", "interval", "verdict"]
                .map(str::to_owned)
                .to_vec(),
            rows,
        });
        let significant: Vec<String> = (0..tiers.len())
            .filter(|&i| adjusted[i].is_some_and(|p| p < alpha))
            .map(|i| {
                let unit = if figures[i] == "retention" {
                    "points"
                } else {
                    "currency"
                };
                format!(
                    "{} {} {} by {} than {}",
                    tiers[i],
                    match figures[i].as_str() {
                        "retention" => "bought again",
                        "predicted_spend" => "were predicted to spend",
                        "beyond_history" => "spent beyond their history",
                        _ => "spent",
                    },
                    if difference[i].unwrap_or(0.0) >= 0.0 {
                        "more"
                    } else {
                        "less"
                    },
                    format_value(difference[i].map(f64::abs), unit),
                    references[i]
                )
            })
            .collect();
        let reference = references.first().cloned().unwrap_or_default();
        sentence = if significant.is_empty() {
            format!(
                "Customers tiered by their experience up to {split}: {span}, no tier spent or bought again differently from the \u{201c}{reference}\u{201d} tier by more than chance explains."
            )
        } else {
            let mut text = format!(
                "Customers tiered by their experience up to {split}, {span}: {}.",
                significant.join("; ")
            );
            if let Some(first) = text.get(..1) {
                text = first.to_uppercase() + &text[1..];
            }
            text
        };
    }
    // No headline: a gap is a finding only where the comparisons call it significant, which
    // the sentence says.
    Ok((section, sentence))
}
