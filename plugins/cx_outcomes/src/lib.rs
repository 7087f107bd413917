//! Experience to money: what customers did after their experience. Survey answers (or any
//! experience with a time stamp: a service contact resolved at first contact or not) are
//! joined to the customers' purchase log at a split date: each customer's experience tier is
//! the latest experience at or before the split, and what they did is what they bought in the
//! window after it. Tiers are compared by spend, retention and the spend a purchase model
//! predicted from their history alone, each difference with its interval and a p-value
//! adjusted over the tiers, so that "promoters spend more" is said only when the data show it
//! — and "beyond their history" tells whether the experience says more than past purchases
//! already did.
//!
//! `cx_value` takes customers already joined (one row each with score, revenue and retained);
//! this metric does the join itself, in time order, from the two logs as they are kept.
#![forbid(unsafe_code)]

mod outcomes;
mod predict;

use std::sync::Arc;

use mittari_models::means::{Moments, welch};
use mittari_models::rfm::TimeUnit;
use mittari_sdk::arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use mittari_sdk::prelude::*;
use mittari_sdk::stats::{two_sided_z, wilson_interval};
use mittari_sdk::survey::{self, Tally, holm};

use outcomes::{Experiences, Log, Tiers, Window};

const MICROS_PER_DAY: f64 = 86_400_000_000.0;
/// Below this many customers a tier's figures are flagged as resting on few customers.
const SMALL_TIER: u64 = 30;

/// The table input of experiences.
const EXPERIENCES: &str = "experiences";

struct CxOutcomes;

/// One figure compared between tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Figure {
    Spend,
    Retention,
    PredictedSpend,
    BeyondHistory,
}

impl Figure {
    const ALL: [Figure; 4] = [
        Figure::Spend,
        Figure::Retention,
        Figure::PredictedSpend,
        Figure::BeyondHistory,
    ];
    fn name(self) -> &'static str {
        match self {
            Figure::Spend => "spend",
            Figure::Retention => "retention",
            Figure::PredictedSpend => "predicted_spend",
            Figure::BeyondHistory => "beyond_history",
        }
    }
    fn gap_name(self) -> &'static str {
        match self {
            Figure::Spend => "spend_gap",
            Figure::Retention => "retention_gap",
            Figure::PredictedSpend => "predicted_spend_gap",
            Figure::BeyondHistory => "beyond_history_gap",
        }
    }
    fn unit(self) -> &'static str {
        match self {
            Figure::Retention => "points",
            _ => "currency",
        }
    }
}

/// One tier's customers and what they did.
#[derive(Debug, Clone, Default)]
struct TierFigures {
    name: String,
    customers: u64,
    retained: u64,
    spend: Moments,
    purchases: u64,
    predicted: Moments,
    beyond: Moments,
}

impl TierFigures {
    fn retention(&self) -> Option<f64> {
        (self.customers > 0).then(|| self.retained as f64 / self.customers as f64 * 100.0)
    }
    fn moments(&self, figure: Figure) -> &Moments {
        match figure {
            Figure::Spend | Figure::Retention => &self.spend,
            Figure::PredictedSpend => &self.predicted,
            Figure::BeyondHistory => &self.beyond,
        }
    }
}

/// A tier against the reference tier in one figure.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Gap {
    difference: f64,
    lower: f64,
    upper: f64,
    p_value: f64,
}

fn gap(tier: &TierFigures, reference: &TierFigures, figure: Figure, level: f64) -> Option<Gap> {
    if figure == Figure::Retention {
        if tier.customers == 0 || reference.customers == 0 {
            return None;
        }
        let z = two_sided_z(level)?;
        let d = survey::difference(
            &Tally::proportion(tier.retained, tier.customers),
            &Tally::proportion(reference.retained, reference.customers),
            &survey::PROPORTION,
            z,
            100.0,
        )?;
        return Some(Gap {
            difference: d.value,
            lower: d.lower,
            upper: d.upper,
            p_value: d.p_value,
        });
    }
    let w = welch(tier.moments(figure), reference.moments(figure), level)?;
    Some(Gap {
        difference: w.difference,
        lower: w.lower,
        upper: w.upper,
        p_value: w.p_value,
    })
}

impl Metric for CxOutcomes {
    fn descriptor(&self) -> MetricDescriptor {
        let mut descriptor = MetricDescriptor::new(
            "cx_outcomes",
            env!("CARGO_PKG_VERSION"),
            "experience to money: spend, retention and predicted spend after an experience, by experience tier, with intervals",
        )
        .description(
            "The main input is the purchase log (customer_id, timestamp, amount); the table input experiences holds \
             time-stamped experiences (customer_id, timestamp, and a score such as an NPS answer, or an outcome such \
             as first_contact_resolved). Customers are those with a purchase at or before split; each one's tier is \
             the latest experience at or before split (scores: <= worst_max, between, >= best_min, named by \
             tier_names; outcomes: their values), customers without one form their own tier. For each tier, in the \
             window of window_days after split: mean spend per customer (the log's amounts, not discounted) with \
             Student's t interval, retention (the share with a purchase in the window) with a Wilson interval, the \
             spend a BG/NBD model with Gamma-Gamma spend fitted on the purchases up to split predicted for the \
             window from each customer's history alone, and beyond_history = actual - predicted spend. Each tier is \
             compared with the reference tier: differences of means by Welch's t, of retention by Agresti and \
             Caffo's adjusted Wald interval, p-values adjusted over the tiers by Holm's method. A difference beyond \
             history says the experience tells more than past purchases did; an association, not proof of cause.",
        )
        .input(ColumnSpec::string("customer_id", "the customer").required())
        .input(ColumnSpec::timestamp("timestamp", "when the purchase was made").required())
        .input(ColumnSpec::quantity("amount", "the purchase's amount (revenue)").required())
        .table_input(
            EXPERIENCES,
            "the experiences: one row per survey answer or contact, with its time and a score or an outcome (required)",
            [
                ColumnSpec::string("customer_id", "the customer who had the experience").required(),
                ColumnSpec::timestamp("timestamp", "when the experience happened (answer given, contact opened)").required(),
                ColumnSpec::double("score", "the experience's score (an NPS answer 0-10, a CSAT answer); rows without one are left out")
                    .range(-MAX_QUANTITY, MAX_QUANTITY),
                ColumnSpec::string("outcome", "instead of a score: the experience's outcome as text (first_contact_resolved true/false, a channel); rows without one are left out"),
            ],
        )
        .parameter(
            ParameterSpec::new("split", DataType::Timestamp, "tiers are set by experiences up to this moment and outcomes counted after it; default window_days before the log's last purchase")
                .optional(),
        )
        .parameter(ParameterSpec::double("window_days", 180.0, "the length of the outcome window after split, in days").range(1.0, 3650.0))
        .parameter(ParameterSpec::double("worst_max", 6.0, "scores up to this form the first tier (NPS detractors)").range(-1e9, 1e9))
        .parameter(ParameterSpec::double("best_min", 9.0, "scores from this form the last tier (NPS promoters); must exceed worst_max").range(-1e9, 1e9))
        .parameter(ParameterSpec::string("tier_names", "detractor,passive,promoter", "the three score tiers' names, lowest first"))
        .parameter(ParameterSpec::string("without_experience", "none", "the name of the tier of customers with no experience before split"))
        .parameter(
            ParameterSpec::new("reference", DataType::String, "the tier every other is compared with; default the lowest score tier, or the first outcome in sorted order")
                .optional(),
        )
        .parameter(ParameterSpec::bool("predict", true, "fit the purchase model and give predicted_spend and beyond_history"))
        .parameter(
            ParameterSpec::string("time_unit", "week", "the purchase model's grain: day, week or month (calendar periods in UTC)")
                .allowed_values(&["day", "week", "month"]),
        )
        .parameter(ParameterSpec::bool("customers_table", false, "also return the customers table: each customer's tier at split (for clv's covariates through --join)"))
        .parameter(ParameterSpec::double("confidence", 0.95, "confidence level of every interval and the significance of every comparison").range(0.5, 0.999))
        .output(OutputSpec::new("customers", "customers", "customers with a purchase at or before split"))
        .output(OutputSpec::new("customers_with_experience", "customers", "of them, those with an experience at or before split"));
        for figure in Figure::ALL {
            descriptor = descriptor.output(OutputSpec::new(
                figure.gap_name(),
                figure.unit(),
                match figure {
                    Figure::Spend => "mean spend per customer in the window: the top tier minus the reference tier (two tiers of outcomes: the other minus the reference)",
                    Figure::Retention => "retention in the window: the top tier minus the reference tier, in percentage points",
                    Figure::PredictedSpend => "mean spend the purchase model predicted from history alone: the top tier minus the reference tier",
                    Figure::BeyondHistory => "mean actual minus predicted spend: the top tier minus the reference tier; what the experience tells beyond the purchase history",
                },
            ));
        }
        descriptor
            .table_with_columns("window", "the split and the outcome window the figures describe", vec![
                OutputSpec::new("split", "id", "tiers from experiences up to here (UTC)"),
                OutputSpec::new("window_end", "id", "outcomes counted after split up to here"),
                OutputSpec::new("window_days", "days", "the window's length"),
                OutputSpec::new("log_ends", "id", "the log's last purchase; a window beyond it is cut short"),
            ])
            .table_with_columns("tiers", "each tier's customers and what they did in the window", tier_columns())
            .table_with_columns("comparisons", "each tier against the reference tier, figure by figure", comparison_columns())
            .table_with_columns("customers", "with customers_table=true: each customer of the log and its tier at split", vec![
                OutputSpec::new("customer_id", "id", "the customer"),
                OutputSpec::new("tier", "id", "the tier at split; customers whose first purchase is after split: new after split"),
            ])
    }

    fn compute(&self, input: &Input<'_>, params: &Params) -> Result<Output, MetricError> {
        let log = Log {
            customer: input.string("customer_id")?,
            timestamp: input.timestamp("timestamp")?,
            amount: input.double("amount")?,
        };
        if log.timestamp.is_empty() {
            return Err(MetricError::invalid_input(
                "the purchase log has no rows; cx_outcomes needs purchases before and after split",
            ));
        }
        let table = input.table(EXPERIENCES).ok_or_else(|| {
            MetricError::invalid_input(
                "cx_outcomes needs the experiences table beside the purchase log: --table-input experiences=survey.csv (customer_id, timestamp, score)",
            )
        })?;
        let experiences = Experiences::read(table)?;
        let level = params.f64("confidence")?;
        let window = window(&log, params)?;
        let tiering = Tiers::from_params(params, &experiences)?;
        let joined = outcomes::join(&log, &experiences, &tiering, &window, input)?;
        if joined.base.is_empty() {
            return Err(MetricError::invalid_parameter(
                "split",
                format!(
                    "no customer has a purchase at or before split {}; the log starts {}",
                    mittari_sdk::time::format_timestamp(window.split),
                    mittari_sdk::time::format_timestamp(window.log_starts),
                ),
            ));
        }
        let mut output = Output::new();
        // Without predictions, why not: said where the predicted figures would be.
        let mut no_model = "predict=false: no purchase model was fitted";
        let predictions = if params.bool("predict")? {
            let unit = TimeUnit::from_name(params.str("time_unit")?).ok_or_else(|| {
                MetricError::invalid_parameter("time_unit", "must be day, week or month")
            })?;
            match predict::window_spend(&log, &window, unit, &joined.base, input)? {
                Ok(predicted) => Some(predicted),
                Err(reason) => {
                    output = output.warning("fit_not_identified", reason);
                    no_model = "the purchase model fitted up to split does not identify its parameters (see the warning fit_not_identified): no prediction from it is a finding";
                    None
                }
            }
        } else {
            None
        };
        let tiers = figures(&joined, &tiering, predictions.as_deref());
        let reference = tiering.reference(params, &tiers)?;

        output = output
            .scalar(Scalar::new("customers", joined.base.len() as f64))
            .scalar(Scalar::new(
                "customers_with_experience",
                joined
                    .base
                    .iter()
                    .filter(|c| c.tier < tiering.without())
                    .count() as f64,
            ));
        let top = tiering.top(reference);
        for figure in Figure::ALL {
            let predicted_figure = matches!(figure, Figure::PredictedSpend | Figure::BeyondHistory);
            let scalar = match (top, predicted_figure && predictions.is_none()) {
                (_, true) => Scalar::undefined(figure.gap_name(), no_model),
                (None, _) => Scalar::undefined(
                    figure.gap_name(),
                    "more than two outcomes besides the reference: see the comparisons table",
                ),
                (Some(top), _) => match gap(&tiers[top], &tiers[reference], figure, level) {
                    Some(g) => Scalar::new(figure.gap_name(), g.difference)
                        .with_interval(g.lower, g.upper, level),
                    None => Scalar::undefined(
                        figure.gap_name(),
                        format!(
                            "{} or {} has fewer than two customers (or no spread) to compare",
                            tiers[top].name, tiers[reference].name
                        ),
                    ),
                },
            };
            output = output.scalar(scalar);
        }
        output = output
            .table("window", window_table(&window)?)
            .table("tiers", tiers_table(&tiers, level, predictions.is_some())?)
            .table(
                "comparisons",
                comparisons_table(&tiers, reference, level, predictions.is_some())?,
            );
        if params.bool("customers_table")? {
            output = output.table("customers", customers_table(&log, &joined, &tiers)?);
        }
        for warning in joined.warnings(&experiences) {
            output = output.warning(warning.0, warning.1);
        }
        let small: Vec<String> = tiers
            .iter()
            .filter(|t| t.customers > 0 && t.customers < SMALL_TIER)
            .map(|t| format!("{} ({})", t.name, t.customers))
            .collect();
        if !small.is_empty() {
            output = output.warning(
                "small_tiers",
                format!(
                    "tiers with fewer than {SMALL_TIER} customers: {}; their figures rest on few customers and their intervals are wide",
                    small.join(", ")
                ),
            );
        }
        if window.end > window.log_ends {
            output = output.warning(
                "window_cut_short",
                format!(
                    "the window runs to {} but the log ends {}: outcomes cover {:.0} of {:.0} days; set split earlier",
                    mittari_sdk::time::format_timestamp(window.end),
                    mittari_sdk::time::format_timestamp(window.log_ends),
                    (window.log_ends - window.split) as f64 / MICROS_PER_DAY,
                    window.days,
                ),
            );
        }
        Ok(output)
    }
}

/// The split and window from the parameters, checked against the log.
fn window(log: &Log<'_>, params: &Params) -> Result<Window, MetricError> {
    let times = log.timestamp.values();
    let (log_starts, log_ends) = times
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
    let days = params.f64("window_days")?;
    let length = (days * MICROS_PER_DAY) as i64;
    let split = match params.get("split") {
        Some(ParamValue::Timestamp(at)) => *at,
        _ => log_ends - length,
    };
    if split >= log_ends {
        return Err(MetricError::invalid_parameter(
            "split",
            format!(
                "split {} leaves no purchase after it (the log ends {}); outcomes are counted after split",
                mittari_sdk::time::format_timestamp(split),
                mittari_sdk::time::format_timestamp(log_ends),
            ),
        ));
    }
    Ok(Window {
        split,
        end: split + length,
        days,
        log_starts,
        log_ends,
    })
}

/// Each tier's figures from the joined customers (and their predicted window spend).
fn figures(
    joined: &outcomes::Joined,
    tiering: &Tiers,
    predicted: Option<&[f64]>,
) -> Vec<TierFigures> {
    let mut tiers: Vec<TierFigures> = tiering
        .names()
        .iter()
        .map(|name| TierFigures {
            name: name.clone(),
            ..TierFigures::default()
        })
        .collect();
    for (i, customer) in joined.base.iter().enumerate() {
        let tier = &mut tiers[customer.tier];
        tier.customers += 1;
        tier.retained += u64::from(customer.purchases > 0);
        tier.purchases += customer.purchases;
        tier.spend.push(customer.spend);
        if let Some(predicted) = predicted {
            tier.predicted.push(predicted[i]);
            tier.beyond.push(customer.spend - predicted[i]);
        }
    }
    tiers
}

fn format_time(micros: i64) -> String {
    mittari_sdk::time::format_timestamp(micros)
}

fn window_table(window: &Window) -> Result<RecordBatch, MetricError> {
    result_table(
        "window",
        vec![
            (
                "split",
                Arc::new(StringArray::from(vec![format_time(window.split)])) as ArrayRef,
            ),
            (
                "window_end",
                Arc::new(StringArray::from(vec![format_time(window.end)])),
            ),
            (
                "window_days",
                Arc::new(Float64Array::from(vec![window.days])),
            ),
            (
                "log_ends",
                Arc::new(StringArray::from(vec![format_time(window.log_ends)])),
            ),
        ],
    )
}

fn tier_columns() -> Vec<OutputSpec> {
    vec![
        OutputSpec::new("tier", "id", "the experience tier at split"),
        OutputSpec::new("customers", "customers", "customers in the tier"),
        OutputSpec::new(
            "spend",
            "currency",
            "mean spend per customer in the window (amounts, not discounted)",
        ),
        OutputSpec::new(
            "spend_lower",
            "currency",
            "lower bound of its Student's t interval, at least 0",
        ),
        OutputSpec::new("spend_upper", "currency", "upper bound"),
        OutputSpec::new(
            "retention",
            "%",
            "share of the tier with a purchase in the window",
        ),
        OutputSpec::new("retention_lower", "%", "lower bound of its Wilson interval"),
        OutputSpec::new("retention_upper", "%", "upper bound"),
        OutputSpec::new(
            "purchases",
            "transactions",
            "the tier's purchases in the window",
        ),
        OutputSpec::new(
            "predicted_spend",
            "currency",
            "mean spend per customer the model predicted for the window from history alone",
        ),
        OutputSpec::new(
            "predicted_spend_lower",
            "currency",
            "lower bound of its interval (customers' spread; the fit's own uncertainty not included)",
        ),
        OutputSpec::new("predicted_spend_upper", "currency", "upper bound"),
        OutputSpec::new(
            "beyond_history",
            "currency",
            "mean of actual minus predicted spend per customer",
        ),
        OutputSpec::new(
            "beyond_history_lower",
            "currency",
            "lower bound of its Student's t interval",
        ),
        OutputSpec::new("beyond_history_upper", "currency", "upper bound"),
    ]
}

fn comparison_columns() -> Vec<OutputSpec> {
    vec![
        OutputSpec::new("tier", "id", "the tier compared"),
        OutputSpec::new("reference", "id", "the tier it is compared with"),
        OutputSpec::new(
            "figure",
            "id",
            "spend, retention, predicted_spend or beyond_history",
        ),
        OutputSpec::new(
            "difference",
            "currency",
            "the tier's figure minus the reference's (retention: percentage points)",
        ),
        OutputSpec::new(
            "lower",
            "currency",
            "lower bound of the difference's interval (Welch; retention: Agresti-Caffo)",
        ),
        OutputSpec::new("upper", "currency", "upper bound"),
        OutputSpec::new(
            "p_value",
            "probability",
            "two-sided p-value of no difference",
        ),
        OutputSpec::new(
            "p_adjusted",
            "probability",
            "the p-value adjusted over the tiers compared in the same figure (Holm)",
        ),
        OutputSpec::new(
            "significant",
            "id",
            "whether the adjusted p-value is below 1 - confidence",
        ),
    ]
}

fn numbers(values: impl IntoIterator<Item = Option<f64>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<Float64Array>())
}

fn tiers_table(
    tiers: &[TierFigures],
    level: f64,
    predicted: bool,
) -> Result<RecordBatch, MetricError> {
    let z = two_sided_z(level).unwrap_or(f64::NAN);
    let interval = |m: &Moments, side: usize| {
        m.mean_interval(level)
            .map(|(lo, hi)| if side == 0 { lo } else { hi })
    };
    let wilson = |t: &TierFigures, side: usize| {
        wilson_interval(t.retained, t.customers, z)
            .map(|(lo, hi)| 100.0 * if side == 0 { lo } else { hi })
    };
    let model = |value: Option<f64>| value.filter(|_| predicted);
    result_table(
        "tiers",
        vec![
            (
                "tier",
                Arc::new(StringArray::from_iter_values(
                    tiers.iter().map(|t| t.name.as_str()),
                )) as ArrayRef,
            ),
            (
                "customers",
                Arc::new(
                    tiers
                        .iter()
                        .map(|t| t.customers as i64)
                        .collect::<Int64Array>(),
                ),
            ),
            ("spend", numbers(tiers.iter().map(|t| t.spend.mean()))),
            // Spend is never negative: a t interval reaching below 0 (few, skewed spends) is cut there.
            (
                "spend_lower",
                numbers(
                    tiers
                        .iter()
                        .map(|t| interval(&t.spend, 0).map(|l| l.max(0.0))),
                ),
            ),
            (
                "spend_upper",
                numbers(tiers.iter().map(|t| interval(&t.spend, 1))),
            ),
            (
                "retention",
                numbers(tiers.iter().map(TierFigures::retention)),
            ),
            (
                "retention_lower",
                numbers(tiers.iter().map(|t| wilson(t, 0))),
            ),
            (
                "retention_upper",
                numbers(tiers.iter().map(|t| wilson(t, 1))),
            ),
            (
                "purchases",
                Arc::new(
                    tiers
                        .iter()
                        .map(|t| t.purchases as i64)
                        .collect::<Int64Array>(),
                ),
            ),
            (
                "predicted_spend",
                numbers(tiers.iter().map(|t| model(t.predicted.mean()))),
            ),
            (
                "predicted_spend_lower",
                numbers(tiers.iter().map(|t| model(interval(&t.predicted, 0)))),
            ),
            (
                "predicted_spend_upper",
                numbers(tiers.iter().map(|t| model(interval(&t.predicted, 1)))),
            ),
            (
                "beyond_history",
                numbers(tiers.iter().map(|t| model(t.beyond.mean()))),
            ),
            (
                "beyond_history_lower",
                numbers(tiers.iter().map(|t| model(interval(&t.beyond, 0)))),
            ),
            (
                "beyond_history_upper",
                numbers(tiers.iter().map(|t| model(interval(&t.beyond, 1)))),
            ),
        ],
    )
}

fn comparisons_table(
    tiers: &[TierFigures],
    reference: usize,
    level: f64,
    predicted: bool,
) -> Result<RecordBatch, MetricError> {
    let mut rows: Vec<(usize, Figure, Option<Gap>, Option<f64>)> = Vec::new();
    for figure in Figure::ALL {
        if !predicted && matches!(figure, Figure::PredictedSpend | Figure::BeyondHistory) {
            continue;
        }
        let start = rows.len();
        for (i, tier) in tiers.iter().enumerate() {
            if i != reference && tier.customers > 0 {
                rows.push((i, figure, gap(tier, &tiers[reference], figure, level), None));
            }
        }
        let p: Vec<f64> = rows[start..]
            .iter()
            .filter_map(|r| r.2.map(|g| g.p_value))
            .collect();
        let mut adjusted = holm(&p).into_iter();
        for row in &mut rows[start..] {
            if row.2.is_some() {
                row.3 = adjusted.next();
            }
        }
    }
    let alpha = 1.0 - level;
    let gap_field = |f: fn(&Gap) -> f64| numbers(rows.iter().map(|r| r.2.as_ref().map(f)));
    result_table(
        "comparisons",
        vec![
            (
                "tier",
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| tiers[r.0].name.as_str()),
                )) as ArrayRef,
            ),
            (
                "reference",
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|_| tiers[reference].name.as_str()),
                )),
            ),
            (
                "figure",
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.1.name()),
                )),
            ),
            ("difference", gap_field(|g| g.difference)),
            ("lower", gap_field(|g| g.lower)),
            ("upper", gap_field(|g| g.upper)),
            ("p_value", gap_field(|g| g.p_value)),
            ("p_adjusted", numbers(rows.iter().map(|r| r.3))),
            (
                "significant",
                Arc::new(
                    rows.iter()
                        .map(|r| r.3.map(|p| p < alpha))
                        .collect::<BooleanArray>(),
                ),
            ),
        ],
    )
}

fn customers_table(
    log: &Log<'_>,
    joined: &outcomes::Joined,
    tiers: &[TierFigures],
) -> Result<RecordBatch, MetricError> {
    let mut ids = Vec::with_capacity(joined.base.len() + joined.later.len());
    let mut names = Vec::with_capacity(ids.capacity());
    for customer in &joined.base {
        ids.push(log.customer.value(customer.first_row));
        names.push(tiers[customer.tier].name.as_str());
    }
    for &row in &joined.later {
        ids.push(log.customer.value(row));
        names.push(outcomes::NEW_AFTER_SPLIT);
    }
    result_table(
        "customers",
        vec![
            ("customer_id", Arc::new(StringArray::from(ids)) as ArrayRef),
            ("tier", Arc::new(StringArray::from(names))),
        ],
    )
}

mittari_sdk::export_plugin!(CxOutcomes);

#[cfg(test)]
mod tests;
