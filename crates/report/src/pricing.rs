//! What discounts cost: the price gap, ranked by product and by customer.

use crate::chart::{self, Chart};
use crate::context::{Context, Skip};
use crate::page::{Numbers, Section};
use crate::table;

pub(crate) fn price_gap(cx: &Context<'_>) -> Result<Vec<Section>, Skip> {
    let descriptor = cx.descriptor("price_gap", &["quantity", "target_price", "realized_price"])?;
    let params = cx.params(descriptor, &[], &[])?;
    let outcome = cx.compute("price_gap", &params, cx.read(descriptor, &[])?, &[])?;
    let results = outcome.results.ok_or(Skip::NotApplicable)?;
    let numbers = Numbers::outputs(
        format!("{} order lines", outcome.rows),
        descriptor,
        &results,
        &[
            "discount_total",
            "premium_total",
            "net_gap",
            "price_realization",
            "average_discount_pct",
            "share_below_target",
            "target_revenue",
            "realized_revenue",
        ],
    );
    let mut charts = Vec::new();
    for (table_name, key, what) in [
        ("by_product", "product", "product"),
        ("by_customer", "customer_id", "customer"),
    ] {
        let Some(ranked) = table::result_table(&results, table_name) else {
            continue;
        };
        if ranked.num_rows() == 0 {
            continue;
        }
        let labels = table::texts(ranked, key);
        let discounts: Vec<f64> = table::numbers(ranked, "discount")
            .into_iter()
            .map(|v| v.unwrap_or(0.0))
            .collect();
        let id = format!("price-gap-by-{what}");
        charts.push(Chart {
            svg: chart::ranked_bars(&id, "discount given (currency)", &labels, &discounts)?,
            id,
            title: format!("Discounts by {what}"),
            caption: format!(
                "The {} {what}s with the largest discounts: (target − realized price) × \
                 quantity over the lines sold below target.",
                labels.len()
            ),
        });
    }
    let mut section = Section::of(
        (
            "price-gap",
            "What discounts cost",
            "The price gap is the target (list) price minus the price realized, times the \
               quantity sold: the money given away in discounts, set against the premiums \
               earned above target. Price realization is realized revenue as a share of \
               target revenue."
                .to_owned(),
        ),
        vec![numbers],
        charts,
    );
    section.headline(
        "given away in discounts",
        table::scalar(&results, "discount_total"),
        "currency",
    );
    section.headline(
        "price realization",
        table::scalar(&results, "price_realization"),
        "%",
    );
    Ok(vec![section])
}
