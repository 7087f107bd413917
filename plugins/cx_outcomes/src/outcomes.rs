//! The join in time order: each customer's tier is the latest experience at or before the
//! split, and what they did is what they bought in the window after it.

use std::collections::{BTreeSet, HashMap};

use mittari_sdk::arrow_array::{Array, Float64Array, StringArray, TimestampMicrosecondArray};
use mittari_sdk::{Input, MetricError, ParamValue, Params, RecordBatch};

/// The tier of customers whose first purchase comes after the split (customers table only).
pub(crate) const NEW_AFTER_SPLIT: &str = "new after split";

/// The purchase log's columns.
pub(crate) struct Log<'a> {
    pub(crate) customer: &'a StringArray,
    pub(crate) timestamp: &'a TimestampMicrosecondArray,
    pub(crate) amount: &'a Float64Array,
}

/// The split and the outcome window, in microseconds since the epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    pub(crate) split: i64,
    pub(crate) end: i64,
    pub(crate) days: f64,
    pub(crate) log_starts: i64,
    pub(crate) log_ends: i64,
}

/// What an experience says: a score or an outcome's text.
pub(crate) enum Values<'a> {
    Score(&'a Float64Array),
    Outcome(&'a StringArray),
}

/// The experiences table's columns.
pub(crate) struct Experiences<'a> {
    pub(crate) customer: &'a StringArray,
    pub(crate) timestamp: &'a TimestampMicrosecondArray,
    pub(crate) values: Values<'a>,
}

impl<'a> Experiences<'a> {
    pub(crate) fn read(table: &'a RecordBatch) -> Result<Experiences<'a>, MetricError> {
        let columns = Input::new(table);
        let score = columns.optional_double("score")?;
        let outcome = columns.optional_string("outcome")?;
        let values = match (score, outcome) {
            (Some(score), None) => Values::Score(score),
            (None, Some(outcome)) => Values::Outcome(outcome),
            (Some(_), Some(_)) => {
                return Err(MetricError::invalid_input(
                    "the experiences table has both score and outcome; give one (map the other away with --table-column)",
                ));
            }
            (None, None) => {
                return Err(MetricError::invalid_input(
                    "the experiences table has neither score nor outcome; map one, e.g. --table-column experiences.outcome=first_contact_resolved",
                ));
            }
        };
        Ok(Experiences {
            customer: columns.string("customer_id")?,
            timestamp: columns.timestamp("timestamp")?,
            values,
        })
    }

    fn is_valid(&self, row: usize) -> bool {
        match self.values {
            Values::Score(s) => s.is_valid(row),
            Values::Outcome(o) => o.is_valid(row),
        }
    }
}

/// How experiences become tiers: `names[..without]` are the experience tiers, `names[without]`
/// the tier of customers without one.
pub(crate) struct Tiers {
    names: Vec<String>,
    /// Score thresholds (worst_max, best_min), or the outcomes in sorted order.
    rule: Rule,
}

enum Rule {
    Score { worst_max: f64, best_min: f64 },
    Outcome(Vec<String>),
}

impl Tiers {
    pub(crate) fn from_params(
        params: &Params,
        experiences: &Experiences<'_>,
    ) -> Result<Tiers, MetricError> {
        let without = params.str("without_experience")?.trim().to_owned();
        let (mut names, rule) = match experiences.values {
            Values::Score(_) => {
                let (worst_max, best_min) = (params.f64("worst_max")?, params.f64("best_min")?);
                if worst_max >= best_min {
                    return Err(MetricError::invalid_parameter(
                        "best_min",
                        format!("best_min {best_min} must be greater than worst_max {worst_max}"),
                    ));
                }
                let names: Vec<String> = params
                    .str("tier_names")?
                    .split(',')
                    .map(|n| n.trim().to_owned())
                    .collect();
                if names.len() != 3 || names.iter().any(String::is_empty) {
                    return Err(MetricError::invalid_parameter(
                        "tier_names",
                        "give three names, lowest tier first, e.g. detractor,passive,promoter",
                    ));
                }
                (
                    names,
                    Rule::Score {
                        worst_max,
                        best_min,
                    },
                )
            }
            Values::Outcome(outcome) => {
                let levels: BTreeSet<&str> = (0..outcome.len())
                    .filter(|&row| outcome.is_valid(row))
                    .map(|row| outcome.value(row).trim())
                    .collect();
                let levels: Vec<String> = levels.into_iter().map(str::to_owned).collect();
                (levels.clone(), Rule::Outcome(levels))
            }
        };
        if names.contains(&without) || without == NEW_AFTER_SPLIT || without.is_empty() {
            return Err(MetricError::invalid_parameter(
                "without_experience",
                format!(
                    "{without:?} is already a tier's name (tiers: {}); choose another",
                    names.join(", ")
                ),
            ));
        }
        names.push(without);
        Ok(Tiers { names, rule })
    }

    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// The index of the tier of customers without an experience.
    pub(crate) fn without(&self) -> usize {
        self.names.len() - 1
    }

    fn tier(&self, experiences: &Experiences<'_>, row: usize) -> usize {
        match (&self.rule, &experiences.values) {
            (
                Rule::Score {
                    worst_max,
                    best_min,
                },
                Values::Score(score),
            ) => {
                let s = score.value(row);
                if s <= *worst_max {
                    0
                } else if s >= *best_min {
                    2
                } else {
                    1
                }
            }
            (Rule::Outcome(levels), Values::Outcome(outcome)) => levels
                .binary_search_by(|l| l.as_str().cmp(outcome.value(row).trim()))
                .unwrap_or(0),
            _ => unreachable!("the rule is made from the same experiences"),
        }
    }

    /// The reference tier: `reference` when given, else the lowest score tier or the first
    /// outcome (sorted), which must have customers.
    pub(crate) fn reference(
        &self,
        params: &Params,
        tiers: &[crate::TierFigures],
    ) -> Result<usize, MetricError> {
        let index = match params.get("reference") {
            Some(ParamValue::String(name)) => self
                .names
                .iter()
                .position(|n| n == name.trim())
                .ok_or_else(|| {
                    MetricError::invalid_parameter(
                        "reference",
                        format!(
                            "{name:?} is not a tier; the tiers are {}",
                            self.names.join(", ")
                        ),
                    )
                })?,
            _ => 0,
        };
        if tiers[index].customers == 0 {
            let populated: Vec<&str> = tiers
                .iter()
                .filter(|t| t.customers > 0)
                .map(|t| t.name.as_str())
                .collect();
            return Err(MetricError::invalid_parameter(
                "reference",
                format!(
                    "the reference tier {} has no customers at split; tiers with customers: {} (set reference)",
                    self.names[index],
                    populated.join(", ")
                ),
            ));
        }
        Ok(index)
    }

    /// The tier the headline gaps compare with the reference: the highest score tier, or with
    /// two outcomes the other one; `None` with more outcomes (the comparisons table has them).
    pub(crate) fn top(&self, reference: usize) -> Option<usize> {
        match &self.rule {
            Rule::Score { .. } => Some(if reference == 2 { 0 } else { 2 }),
            Rule::Outcome(levels) if levels.len() == 2 => Some(1 - reference.min(1)),
            Rule::Outcome(_) => None,
        }
    }
}

/// A customer with a purchase at or before the split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Customer {
    pub(crate) first_row: usize,
    pub(crate) tier: usize,
    /// Amounts and purchases in the window.
    pub(crate) spend: f64,
    pub(crate) purchases: u64,
}

/// The customers at split with their tiers and outcomes, and the counts of what was left out.
pub(crate) struct Joined {
    pub(crate) base: Vec<Customer>,
    /// First rows of the customers whose first purchase is after the split.
    pub(crate) later: Vec<usize>,
    after_split: usize,
    unknown_customer: usize,
    without_value: usize,
    answered_later: usize,
}

impl Joined {
    /// Warnings about the experiences left out, each with its count.
    pub(crate) fn warnings(&self, experiences: &Experiences<'_>) -> Vec<(&'static str, String)> {
        let mut warnings = Vec::new();
        let what = match experiences.values {
            Values::Score(_) => "score",
            Values::Outcome(_) => "outcome",
        };
        if self.without_value > 0 {
            warnings.push((
                "experiences_without_value",
                format!(
                    "{} without a {what} {} left out",
                    experiences_count(self.without_value),
                    were(self.without_value)
                ),
            ));
        }
        if self.unknown_customer + self.answered_later > 0 {
            warnings.push((
                "experiences_unmatched",
                format!(
                    "{} at or before split of customers without a purchase by then {} left out ({} of customers who bought later)",
                    experiences_count(self.unknown_customer + self.answered_later),
                    were(self.unknown_customer + self.answered_later),
                    self.answered_later
                ),
            ));
        }
        if self.after_split > 0 {
            warnings.push((
                "experiences_after_split",
                format!(
                    "{} after split set no tier (tiers come from experiences up to split, so that outcomes follow them)",
                    experiences_count(self.after_split)
                ),
            ));
        }
        warnings
    }
}

fn experiences_count(n: usize) -> String {
    if n == 1 {
        "1 experience".to_owned()
    } else {
        format!("{n} experiences")
    }
}

fn were(n: usize) -> &'static str {
    if n == 1 { "was" } else { "were" }
}

/// Joins the experiences to the log at the window's split.
pub(crate) fn join(
    log: &Log<'_>,
    experiences: &Experiences<'_>,
    tiers: &Tiers,
    window: &Window,
    input: &Input<'_>,
) -> Result<Joined, MetricError> {
    // Every customer of the log, with whether they bought by the split.
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut first_rows: Vec<usize> = Vec::new();
    let mut before: Vec<bool> = Vec::new();
    let mut spend: Vec<f64> = Vec::new();
    let mut purchases: Vec<u64> = Vec::new();
    let times = log.timestamp.values();
    for (row, &at) in times.iter().enumerate() {
        if row % 65_536 == 0 {
            input.check_cancelled()?;
        }
        let id = log.customer.value(row);
        let i = *index.entry(id).or_insert_with(|| {
            first_rows.push(row);
            before.push(false);
            spend.push(0.0);
            purchases.push(0);
            first_rows.len() - 1
        });
        if at <= window.split {
            before[i] = true;
        } else if at <= window.end {
            spend[i] += log.amount.value(row);
            purchases[i] += 1;
        }
    }
    // The latest experience at or before the split of each customer: (time, row).
    let mut latest: Vec<Option<(i64, usize)>> = vec![None; first_rows.len()];
    let (mut after_split, mut unknown_customer, mut without_value, mut answered_later) =
        (0, 0, 0, 0);
    for row in 0..experiences.timestamp.len() {
        if !experiences.is_valid(row) {
            without_value += 1;
            continue;
        }
        let at = experiences.timestamp.value(row);
        if at > window.split {
            after_split += 1;
            continue;
        }
        match index.get(experiences.customer.value(row)) {
            Some(&i) if before[i] => {
                if latest[i].is_none_or(|(t, _)| at >= t) {
                    latest[i] = Some((at, row));
                }
            }
            Some(_) => answered_later += 1,
            None => unknown_customer += 1,
        }
    }
    let mut base = Vec::new();
    let mut later = Vec::new();
    for i in 0..first_rows.len() {
        if before[i] {
            base.push(Customer {
                first_row: first_rows[i],
                tier: latest[i].map_or(tiers.without(), |(_, row)| tiers.tier(experiences, row)),
                spend: spend[i],
                purchases: purchases[i],
            });
        } else {
            later.push(first_rows[i]);
        }
    }
    Ok(Joined {
        base,
        later,
        after_split,
        unknown_customer,
        without_value,
        answered_later,
    })
}
