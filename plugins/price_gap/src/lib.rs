//! Price gap: what discounts cost. For order lines with a target (list) price and a realized
//! price, the money given away below target, the premium earned above it (reported
//! separately, never netted silently), and price realization.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Arc;

use mittari_sdk::arrow_array::{Array as _, ArrayRef, Float64Array, Int64Array, StringArray};
use mittari_sdk::prelude::*;

struct PriceGap;

impl Metric for PriceGap {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new("price_gap", env!("CARGO_PKG_VERSION"), "what discounts cost: target minus realized price over order lines")
            .description(
                "For order lines sold at realized_price against a target_price (list or target price): \
                 discount_total = sum of (target - realized) * quantity over lines sold below target; \
                 premium_total = sum of (realized - target) * quantity over lines sold above target; \
                 net_gap = discount_total - premium_total; \
                 price_realization = sum(realized * quantity) / sum(target * quantity) * 100; \
                 average_discount_pct = discount_total / sum(target * quantity over discounted lines) * 100 \
                 (the quantity-weighted depth of the discounts given); \
                 share_below_target = lines below target / lines * 100. \
                 With product or customer_id columns, result tables list the largest gaps per product and per customer.",
            )
            .input(ColumnSpec::quantity("quantity", "units sold on the line").required())
            .input(ColumnSpec::quantity("target_price", "list or target price per unit").required())
            .input(ColumnSpec::quantity("realized_price", "price per unit actually paid").required())
            .input(ColumnSpec::string("customer_id", "the buying customer; enables the by_customer table"))
            .input(ColumnSpec::string("product", "the product sold; enables the by_product table"))
            .input(ColumnSpec::timestamp("timestamp", "when the line was sold (not used in the computation; useful for group_by)"))
            .parameter(ParameterSpec::int64("top", 10, "rows in the by_product and by_customer tables, largest discount first").range(1.0, 10_000.0))
            .output(OutputSpec::new("discount_total", "currency", "sum of (target - realized) * quantity over lines below target"))
            .output(OutputSpec::new("premium_total", "currency", "sum of (realized - target) * quantity over lines above target"))
            .output(OutputSpec::new("net_gap", "currency", "discount_total - premium_total"))
            .output(OutputSpec::new("price_realization", "%", "realized revenue / target revenue * 100"))
            .output(OutputSpec::new("average_discount_pct", "%", "discount_total / target revenue of the discounted lines * 100"))
            .output(OutputSpec::new("share_below_target", "%", "lines sold below target / lines * 100"))
            .output(OutputSpec::new("lines", "count", "order lines"))
            .output(OutputSpec::new("target_revenue", "currency", "sum of target_price * quantity"))
            .output(OutputSpec::new("realized_revenue", "currency", "sum of realized_price * quantity"))
            .table("by_product", "per product: lines, quantity, discount, premium, net gap, realization %; top rows by discount")
            .table("by_customer", "per customer: lines, quantity, discount, premium, net gap, realization %; top rows by discount")
    }

    fn compute(&self, input: &Input<'_>, params: &Params) -> Result<Output, MetricError> {
        if input.num_rows() == 0 {
            return Err(MetricError::invalid_input(
                "the input has no order lines; price_gap needs at least one",
            ));
        }
        let quantity = input.double("quantity")?;
        let target = input.double("target_price")?;
        let realized = input.double("realized_price")?;
        let top = usize::try_from(params.i64("top")?).unwrap_or(usize::MAX);
        let lines: Vec<Line> = (0..input.num_rows())
            .map(|i| Line {
                quantity: quantity.value(i),
                target: target.value(i),
                realized: realized.value(i),
            })
            .collect();
        let total = Gap::over(lines.iter().copied());
        let mut output = Output::new()
            .scalar(Scalar::new("discount_total", total.discount))
            .scalar(Scalar::new("premium_total", total.premium))
            .scalar(Scalar::new("net_gap", total.discount - total.premium))
            .scalar(total.realization_scalar())
            .scalar(Scalar::percent(
                "average_discount_pct",
                total.discount,
                total.discounted_target,
                "no line was sold below its target price",
            ))
            .scalar(Scalar::new(
                "share_below_target",
                100.0 * total.lines_below as f64 / total.lines as f64,
            ))
            .scalar(Scalar::new("lines", total.lines as f64))
            .scalar(Scalar::new("target_revenue", total.target_revenue))
            .scalar(Scalar::new("realized_revenue", total.realized_revenue));
        for (table, column) in [("by_product", "product"), ("by_customer", "customer_id")] {
            if let Some(keys) = input.optional_string(column)? {
                output = output.table(table, breakdown(column, keys, &lines, top)?);
            }
        }
        Ok(output)
    }
}

#[derive(Debug, Clone, Copy)]
struct Line {
    quantity: f64,
    target: f64,
    realized: f64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Gap {
    lines: u64,
    lines_below: u64,
    quantity: f64,
    discount: f64,
    premium: f64,
    /// Target revenue of the lines sold below target.
    discounted_target: f64,
    target_revenue: f64,
    realized_revenue: f64,
}

impl Gap {
    fn add(&mut self, line: Line) {
        let gap = (line.target - line.realized) * line.quantity;
        self.lines += 1;
        self.quantity += line.quantity;
        self.target_revenue += line.target * line.quantity;
        self.realized_revenue += line.realized * line.quantity;
        if line.realized < line.target {
            self.lines_below += 1;
            self.discount += gap;
            self.discounted_target += line.target * line.quantity;
        } else {
            self.premium -= gap;
        }
    }

    fn over(lines: impl Iterator<Item = Line>) -> Gap {
        let mut gap = Gap::default();
        lines.for_each(|l| gap.add(l));
        gap
    }

    fn realization(&self) -> Option<f64> {
        (self.target_revenue > 0.0)
            .then(|| 100.0 * self.realized_revenue / self.target_revenue)
            .filter(|v| v.is_finite())
    }

    fn realization_scalar(&self) -> Scalar {
        Scalar::percent(
            "price_realization",
            self.realized_revenue,
            self.target_revenue,
            "target revenue is zero: every line has quantity or target price 0",
        )
    }
}

/// Per-key gaps, largest discount first (ties by key), the first `top` rows.
fn breakdown(
    column: &str,
    keys: &StringArray,
    lines: &[Line],
    top: usize,
) -> Result<RecordBatch, MetricError> {
    // A fast hash, seeded per process: a key set is one request's, not a long-lived table's.
    let mut gaps: HashMap<&str, Gap, foldhash::fast::RandomState> = HashMap::default();
    for (i, line) in lines.iter().enumerate() {
        // A line without a key is counted in the totals but in no row of the table.
        if keys.is_valid(i) {
            gaps.entry(keys.value(i)).or_default().add(*line);
        }
    }
    let mut rows: Vec<(&str, Gap)> = gaps.into_iter().collect();
    let order =
        |a: &(&str, Gap), b: &(&str, Gap)| b.1.discount.total_cmp(&a.1.discount).then(a.0.cmp(b.0));
    // The top rows only: selecting them is linear, where sorting a million keys was not.
    if rows.len() > top {
        rows.select_nth_unstable_by(top, order);
        rows.truncate(top);
    }
    rows.sort_by(order);
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            column,
            Arc::new(rows.iter().map(|r| Some(r.0)).collect::<StringArray>()),
        ),
        (
            "lines",
            Arc::new(
                rows.iter()
                    .map(|r| r.1.lines as i64)
                    .collect::<Int64Array>(),
            ),
        ),
        (
            "quantity",
            Arc::new(rows.iter().map(|r| r.1.quantity).collect::<Float64Array>()),
        ),
        (
            "discount",
            Arc::new(rows.iter().map(|r| r.1.discount).collect::<Float64Array>()),
        ),
        (
            "premium",
            Arc::new(rows.iter().map(|r| r.1.premium).collect::<Float64Array>()),
        ),
        (
            "net_gap",
            Arc::new(
                rows.iter()
                    .map(|r| r.1.discount - r.1.premium)
                    .collect::<Float64Array>(),
            ),
        ),
        (
            "realization_pct",
            Arc::new(
                rows.iter()
                    .map(|r| r.1.realization())
                    .collect::<Float64Array>(),
            ),
        ),
    ];
    result_table(column, columns)
}

mittari_sdk::export_plugin!(PriceGap);

#[cfg(test)]
mod tests {
    use super::*;

    fn gap(lines: &[(f64, f64, f64)]) -> Gap {
        Gap::over(lines.iter().map(|&(quantity, target, realized)| Line {
            quantity,
            target,
            realized,
        }))
    }

    /// `expect` = (discount, premium, realization %), computed by hand.
    fn check(lines: &[(f64, f64, f64)], expect: (f64, f64, Option<f64>)) {
        let g = gap(lines);
        assert_eq!((g.discount, g.premium), (expect.0, expect.1));
        match (g.realization(), expect.2) {
            (Some(got), Some(want)) => assert!((got - want).abs() < 1e-12, "{got} vs {want}"),
            (got, want) => assert_eq!(got, want),
        }
    }

    #[test]
    fn worked_example_from_the_issue() {
        // (10 x 100 -> 90), (5 x 200 -> 200), (2 x 50 -> 55): discount 10 * 10 = 100; premium
        // 2 * 5 = 10; realization 2010 / 2100 = 95.714285714...%.
        check(
            &[(10.0, 100.0, 90.0), (5.0, 200.0, 200.0), (2.0, 50.0, 55.0)],
            (100.0, 10.0, Some(100.0 * 2010.0 / 2100.0)),
        );
        let g = gap(&[(10.0, 100.0, 90.0), (5.0, 200.0, 200.0), (2.0, 50.0, 55.0)]);
        assert_eq!(
            (g.lines, g.lines_below, g.discounted_target),
            (3, 1, 1000.0)
        );
    }

    #[test]
    fn edge_cases() {
        // At target: neither discount nor premium.
        check(&[(3.0, 10.0, 10.0)], (0.0, 0.0, Some(100.0)));
        // Zero quantity contributes nothing; zero target revenue has no realization.
        check(&[(0.0, 10.0, 5.0)], (0.0, 0.0, None));
        // Free goods: a 100% discount.
        check(&[(4.0, 25.0, 0.0)], (100.0, 0.0, Some(0.0)));
        // A target of 0 sold for money is premium, never a division by zero.
        check(&[(1.0, 0.0, 7.0)], (0.0, 7.0, None));
    }

    /// A breakdown table's (key, discount) rows.
    fn keys_and_discounts(table: &RecordBatch) -> Vec<(String, f64)> {
        let names = table
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let discount = table
            .column(3)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        (0..table.num_rows())
            .map(|row| (names.value(row).to_owned(), discount.value(row)))
            .collect()
    }

    /// The selected top rows are those a full sort gives, in its order, ties broken by key.
    #[test]
    fn selecting_the_top_rows_agrees_with_sorting_them_all() {
        // 300 lines over 40 keys; discounts of whole units, so many keys tie.
        let lines: Vec<Line> = (0..300)
            .map(|i| Line {
                quantity: 1.0,
                target: 10.0,
                realized: f64::from((i * 7 % 13) as u8),
            })
            .collect();
        let names: Vec<String> = (0..300).map(|i| format!("k{:02}", i * 11 % 40)).collect();
        let keys = StringArray::from(names.iter().map(|n| Some(n.as_str())).collect::<Vec<_>>());
        let mut all: std::collections::BTreeMap<&str, Gap> = std::collections::BTreeMap::new();
        for (name, line) in names.iter().zip(&lines) {
            all.entry(name.as_str()).or_default().add(*line);
        }
        let mut sorted: Vec<(&str, f64)> = all.iter().map(|(k, g)| (*k, g.discount)).collect();
        sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        for top in [1, 5, 39, 40, 60] {
            let table = breakdown("product", &keys, &lines, top).unwrap();
            let got = keys_and_discounts(&table);
            let expect: Vec<(String, f64)> = sorted
                .iter()
                .take(top)
                .map(|(k, d)| ((*k).to_owned(), *d))
                .collect();
            assert_eq!(got, expect, "top {top}");
        }
    }

    #[test]
    fn breakdown_orders_by_discount_and_truncates() {
        let lines = [
            Line {
                quantity: 1.0,
                target: 10.0,
                realized: 5.0,
            },
            Line {
                quantity: 1.0,
                target: 10.0,
                realized: 1.0,
            },
            Line {
                quantity: 2.0,
                target: 10.0,
                realized: 9.0,
            },
            Line {
                quantity: 1.0,
                target: 10.0,
                realized: 12.0,
            },
        ];
        let keys = StringArray::from(vec![Some("a"), Some("b"), Some("a"), None]);
        let table = breakdown("product", &keys, &lines, 1).unwrap();
        // b: 9 of discount; a: 5 + 2 = 7.
        assert_eq!(keys_and_discounts(&table), vec![("b".to_owned(), 9.0)]);
    }
}
