//! The money value of experience: spend and retention of the worst, middle and best tiers.

use crate::chart::{self, Chart};
use crate::context::{Context, Skip};
use crate::page::{Numbers, Section};
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
