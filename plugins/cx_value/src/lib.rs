//! The money value of customer experience: how much more customers with the best experience
//! spend, and how much more often they stay, than those with the worst, for the user's own
//! customers; and the revenue at stake if the worst tier behaved like the best.
#![forbid(unsafe_code)]

use std::sync::Arc;

use mittari_sdk::arrow_array::{ArrayRef, Float64Array, Int64Array, StringArray};
use mittari_sdk::prelude::*;

struct CxValue;

const TIERS: [&str; 3] = ["worst", "middle", "best"];

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Tier {
    customers: u64,
    retained: u64,
    revenue: f64,
}

impl Tier {
    fn mean_revenue(&self) -> Option<f64> {
        (self.customers > 0).then(|| self.revenue / self.customers as f64)
    }
    /// Share retained, 0..=1.
    fn retention(&self) -> Option<f64> {
        (self.customers > 0).then(|| self.retained as f64 / self.customers as f64)
    }
}

/// (worst, middle, best) tiers of `(score, revenue, retained)` rows.
fn tiers(rows: impl Iterator<Item = (f64, f64, bool)>, worst_max: f64, best_min: f64) -> [Tier; 3] {
    let mut tiers = [Tier::default(); 3];
    for (score, revenue, retained) in rows {
        let tier = if score <= worst_max {
            0
        } else if score >= best_min {
            2
        } else {
            1
        };
        tiers[tier].customers += 1;
        tiers[tier].retained += u64::from(retained);
        tiers[tier].revenue += revenue;
    }
    tiers
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Comparison {
    /// (mean revenue best / mean revenue worst - 1) * 100.
    spend_uplift: Result<f64, &'static str>,
    /// Best retention - worst retention, in percentage points.
    retention_gap: Result<f64, &'static str>,
    /// worst customers * (best mean revenue * best retention - worst mean revenue * worst retention).
    revenue_at_stake: Result<f64, &'static str>,
}

fn compare(worst: &Tier, best: &Tier) -> Comparison {
    const NO_WORST: &str = "no customer is in the worst tier (score <= worst_max)";
    const NO_BEST: &str = "no customer is in the best tier (score >= best_min)";
    let both = |w: Option<f64>, b: Option<f64>| match (w, b) {
        (None, _) => Err(NO_WORST),
        (_, None) => Err(NO_BEST),
        (Some(w), Some(b)) => Ok((w, b)),
    };
    let means = both(worst.mean_revenue(), best.mean_revenue());
    let retention = both(worst.retention(), best.retention());
    Comparison {
        spend_uplift: means.and_then(|(w, b)| {
            let uplift = (b / w - 1.0) * 100.0;
            if w <= 0.0 {
                Err("the worst tier has no revenue, so no ratio to it exists")
            } else if !uplift.is_finite() {
                Err("the worst tier's revenue is too small next to the best tier's for a finite ratio")
            } else {
                Ok(uplift)
            }
        }),
        retention_gap: retention.map(|(w, b)| (b - w) * 100.0),
        revenue_at_stake: means.and_then(|(mw, mb)| {
            retention.map(|(rw, rb)| worst.customers as f64 * (mb * rb - mw * rw))
        }),
    }
}

fn scalar(name: &str, value: Result<f64, &str>) -> Scalar {
    match value {
        Ok(v) => Scalar::new(name, v),
        Err(reason) => Scalar::undefined(name, reason),
    }
}

impl Metric for CxValue {
    fn descriptor(&self) -> MetricDescriptor {
        let mut descriptor = MetricDescriptor::new(
            "cx_value",
            env!("CARGO_PKG_VERSION"),
            "the money value of customer experience: spend and retention of the best vs the worst experience tier",
        )
        .description(
            "One row per customer with an experience score (an NPS or CSAT answer), revenue in the period and whether \
             the customer was retained at its end. Scores <= worst_max form the worst tier, >= best_min the best, the \
             rest the middle. spend_uplift = (mean revenue best / mean revenue worst - 1) * 100; retention_gap = \
             retention best - retention worst in percentage points; revenue_at_stake = worst customers * (mean revenue \
             best * retention best - mean revenue worst * retention worst): the next-period revenue gained if the worst \
             tier spent and stayed like the best. Published studies report +140% spend and 74% vs 43% renewal; this \
             metric measures it for your own customers.",
        )
        .input(ColumnSpec::string("customer_id", "the customer; one row each").required())
        .input(ColumnSpec::double("score", "experience score, e.g. an NPS answer 0-10 or a CSAT answer").required().range(-MAX_QUANTITY, MAX_QUANTITY))
        .input(ColumnSpec::quantity("revenue", "the customer's revenue in the period").required())
        .input(ColumnSpec::bool("retained", "still a customer at the end of the period").required())
        .parameter(ParameterSpec::double("worst_max", 6.0, "scores up to this form the worst tier").range(-1e9, 1e9))
        .parameter(ParameterSpec::double("best_min", 9.0, "scores from this form the best tier").range(-1e9, 1e9));
        for tier in TIERS {
            descriptor = descriptor
                .output(OutputSpec::new(
                    &format!("{tier}_customers"),
                    "count",
                    &format!("customers in the {tier} tier"),
                ))
                .output(OutputSpec::new(
                    &format!("{tier}_mean_revenue"),
                    "currency",
                    &format!("mean revenue of the {tier} tier"),
                ))
                .output(OutputSpec::new(
                    &format!("{tier}_retention"),
                    "%",
                    &format!("share of the {tier} tier retained"),
                ));
        }
        descriptor
            .output(OutputSpec::new(
                "spend_uplift",
                "%",
                "(mean revenue best / mean revenue worst - 1) * 100",
            ))
            .output(OutputSpec::new(
                "retention_gap",
                "points",
                "retention best - retention worst",
            ))
            .output(OutputSpec::new(
                "revenue_at_stake",
                "currency",
                "revenue gained if the worst tier spent and stayed like the best",
            ))
            .table(
                "tiers",
                "per tier: customers, mean revenue, retention %, revenue",
            )
    }

    fn compute(&self, input: &Input<'_>, params: &Params) -> Result<Output, MetricError> {
        let (worst_max, best_min) = (params.f64("worst_max")?, params.f64("best_min")?);
        if worst_max >= best_min {
            return Err(MetricError::invalid_parameter(
                "best_min",
                format!("best_min {best_min} must be greater than worst_max {worst_max}"),
            ));
        }
        if input.num_rows() == 0 {
            return Err(MetricError::invalid_input(
                "the input has no customers; cx_value needs at least one",
            ));
        }
        input.check_unique("customer_id")?;
        let (score, revenue, retained) = (
            input.double("score")?,
            input.double("revenue")?,
            input.bool("retained")?,
        );
        let rows =
            (0..input.num_rows()).map(|i| (score.value(i), revenue.value(i), retained.value(i)));
        let tiers = tiers(rows, worst_max, best_min);
        let mut output = Output::new();
        for (name, tier) in TIERS.iter().zip(&tiers) {
            let empty = "no customer is in this tier";
            output = output
                .scalar(Scalar::new(
                    &format!("{name}_customers"),
                    tier.customers as f64,
                ))
                .scalar(scalar(
                    &format!("{name}_mean_revenue"),
                    tier.mean_revenue().ok_or(empty),
                ))
                .scalar(scalar(
                    &format!("{name}_retention"),
                    tier.retention().map(|r| r * 100.0).ok_or(empty),
                ));
        }
        let comparison = compare(&tiers[0], &tiers[2]);
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("tier", Arc::new(StringArray::from(TIERS.to_vec()))),
            (
                "customers",
                Arc::new(
                    tiers
                        .iter()
                        .map(|t| t.customers as i64)
                        .collect::<Int64Array>(),
                ),
            ),
            (
                "mean_revenue",
                Arc::new(
                    tiers
                        .iter()
                        .map(Tier::mean_revenue)
                        .collect::<Float64Array>(),
                ),
            ),
            (
                "retention_pct",
                Arc::new(
                    tiers
                        .iter()
                        .map(|t| t.retention().map(|r| r * 100.0))
                        .collect::<Float64Array>(),
                ),
            ),
            (
                "revenue",
                Arc::new(tiers.iter().map(|t| t.revenue).collect::<Float64Array>()),
            ),
        ];
        let table = result_table("tiers", columns)?;
        Ok(output
            .scalar(scalar("spend_uplift", comparison.spend_uplift))
            .scalar(scalar("retention_gap", comparison.retention_gap))
            .scalar(scalar("revenue_at_stake", comparison.revenue_at_stake))
            .table("tiers", table))
    }
}

mittari_sdk::export_plugin!(CxValue);

#[cfg(test)]
mod tests {
    use super::*;

    /// The docs' worked example: worst tier revenue 100 (kept) and 50 (lost): mean 75, 50%
    /// retained; middle 120 (kept); best 200 and 160, both kept: mean 180, 100%.
    const EXAMPLE: [(f64, f64, bool); 5] = [
        (3.0, 100.0, true),
        (6.0, 50.0, false),
        (8.0, 120.0, true),
        (9.0, 200.0, true),
        (10.0, 160.0, true),
    ];

    #[test]
    fn worked_example() {
        let t = tiers(EXAMPLE.into_iter(), 6.0, 9.0);
        assert_eq!(
            t[0],
            Tier {
                customers: 2,
                retained: 1,
                revenue: 150.0
            }
        );
        assert_eq!(
            t[1],
            Tier {
                customers: 1,
                retained: 1,
                revenue: 120.0
            }
        );
        assert_eq!(
            t[2],
            Tier {
                customers: 2,
                retained: 2,
                revenue: 360.0
            }
        );
        let c = compare(&t[0], &t[2]);
        // (180 / 75 - 1) * 100 = 140; 100 - 50 = 50 points; 2 * (180 * 1 - 75 * 0.5) = 285.
        assert_eq!(c.spend_uplift, Ok(140.0));
        assert_eq!(c.retention_gap, Ok(50.0));
        assert_eq!(c.revenue_at_stake, Ok(285.0));
    }

    #[test]
    fn undefined_comparisons_say_why() {
        let only_best = tiers([(9.0, 10.0, true)].into_iter(), 6.0, 9.0);
        let c = compare(&only_best[0], &only_best[2]);
        assert!(c.spend_uplift.unwrap_err().contains("worst tier"));
        assert!(c.revenue_at_stake.is_err());
        let free_worst = tiers([(1.0, 0.0, true), (9.0, 10.0, true)].into_iter(), 6.0, 9.0);
        let c = compare(&free_worst[0], &free_worst[2]);
        assert!(c.spend_uplift.unwrap_err().contains("no revenue"));
        assert_eq!(c.retention_gap, Ok(0.0));
        assert_eq!(c.revenue_at_stake, Ok(10.0));
        // A worst tier with a denormal mean revenue: the ratio overflows, and says so.
        let tiny_worst = tiers(
            [(1.0, 5e-324, true), (9.0, 1e15, true)].into_iter(),
            6.0,
            9.0,
        );
        let c = compare(&tiny_worst[0], &tiny_worst[2]);
        assert!(c.spend_uplift.unwrap_err().contains("too small"));
    }

    #[test]
    fn tier_boundaries_are_inclusive() {
        let t = tiers(
            [
                (6.0, 1.0, true),
                (6.5, 1.0, true),
                (8.99, 1.0, true),
                (9.0, 1.0, true),
            ]
            .into_iter(),
            6.0,
            9.0,
        );
        assert_eq!(t.map(|t| t.customers), [1, 2, 1]);
    }
}
