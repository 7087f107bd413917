//! The figures of a set of contacts (all, one period, one segment), each with its interval:
//! Wilson intervals for proportions, distribution-free order-statistic intervals for the
//! median and 90th percentile of times, a normal interval for contacts per customer.

use std::collections::HashMap;

use mittari_sdk::stats::{quantile_interval_ranks, quantile_sorted, wilson_interval};

use crate::contacts::Facts;

/// A value and, when the data bound it at the level, its interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Estimate {
    pub(crate) value: f64,
    pub(crate) interval: Option<(f64, f64)>,
}

/// A proportion of the contacts where it can be told.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Share {
    pub(crate) hits: u64,
    pub(crate) known: u64,
}

impl Share {
    fn add(&mut self, outcome: Option<bool>) {
        if let Some(hit) = outcome {
            self.known += 1;
            self.hits += u64::from(hit);
        }
    }

    /// In percent; `None` when no contact's outcome is known.
    pub(crate) fn percent(&self, z: f64) -> Option<Estimate> {
        let (lower, upper) = wilson_interval(self.hits, self.known, z)?;
        Some(Estimate {
            value: 100.0 * self.hits as f64 / self.known as f64,
            interval: Some((100.0 * lower, 100.0 * upper)),
        })
    }
}

/// Times of the contacts that have one (answered, or resolved), sorted.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Times {
    pub(crate) sorted_hours: Vec<f64>,
    pub(crate) in_sla: Share,
    /// Contacts still waiting (unanswered, or open) at `as_of`.
    pub(crate) waiting: u64,
}

impl Times {
    /// The `q` quantile of the known times, with its order-statistic interval.
    pub(crate) fn quantile(&self, q: f64, level: f64) -> Option<Estimate> {
        let value = quantile_sorted(&self.sorted_hours, q)?;
        let interval = quantile_interval_ranks(self.sorted_hours.len(), q, level)
            .map(|(lower, upper)| (self.sorted_hours[lower], self.sorted_hours[upper]));
        Some(Estimate { value, interval })
    }
}

/// Everything reported of a set of contacts.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Summary {
    pub(crate) contacts: u64,
    pub(crate) customers: u64,
    /// Contacts of each customer in the set, for the interval of the mean.
    contacts_by_customer: Vec<u64>,
    pub(crate) first_contact_resolved: Share,
    pub(crate) repeat: Share,
    /// `None` without a `first_response_at` column.
    pub(crate) response: Option<Times>,
    /// `None` without a `resolved_at` column.
    pub(crate) resolution: Option<Times>,
    /// Contacts opened by the moment and not resolved at it; `None` without `resolved_at`.
    pub(crate) backlog: Option<u64>,
}

impl Summary {
    /// The summary of `contacts`, the backlog counted at `backlog_at`.
    pub(crate) fn of<'a>(
        contacts: impl IntoIterator<Item = &'a Facts>,
        has_response: bool,
        has_resolution: bool,
        backlog_at: i64,
    ) -> Summary {
        let mut summary = Summary {
            response: has_response.then(Times::default),
            resolution: has_resolution.then(Times::default),
            backlog: has_resolution.then_some(0),
            ..Summary::default()
        };
        let mut per_customer: HashMap<u32, u64> = HashMap::new();
        for facts in contacts {
            summary.contacts += 1;
            *per_customer.entry(facts.customer).or_default() += 1;
            summary
                .first_contact_resolved
                .add(facts.first_contact_resolved);
            summary.repeat.add(facts.repeat);
            if let Some(times) = &mut summary.response {
                add_time(times, facts.response_hours, facts.response_in_sla);
            }
            if let Some(times) = &mut summary.resolution {
                add_time(times, facts.resolution_hours, facts.resolution_in_sla);
            }
            if let (Some(backlog), Some(resolved)) = (&mut summary.backlog, facts.resolved_at) {
                let open = facts.opened <= backlog_at && resolved.is_none_or(|t| t > backlog_at);
                *backlog += u64::from(open);
            }
        }
        for times in [&mut summary.response, &mut summary.resolution]
            .into_iter()
            .flatten()
        {
            times.sorted_hours.sort_by(f64::total_cmp);
        }
        summary.customers = per_customer.len() as u64;
        summary.contacts_by_customer = per_customer.into_values().collect();
        summary
    }

    /// Mean contacts per customer with a normal interval from the customers' counts; no
    /// interval for a single customer.
    pub(crate) fn contacts_per_customer(&self, z: f64) -> Option<Estimate> {
        if self.customers == 0 {
            return None;
        }
        let n = self.customers as f64;
        let mean = self.contacts as f64 / n;
        let interval = (self.customers > 1).then(|| {
            let squares: f64 = self
                .contacts_by_customer
                .iter()
                .map(|&c| (c as f64 - mean).powi(2))
                .sum();
            let half = z * (squares / (n - 1.0) / n).sqrt();
            ((mean - half).max(1.0), mean + half)
        });
        Some(Estimate {
            value: mean,
            interval,
        })
    }
}

fn add_time(times: &mut Times, hours: Option<f64>, in_sla: Option<bool>) {
    match hours {
        Some(hours) => times.sorted_hours.push(hours),
        None => times.waiting += 1,
    }
    times.in_sla.add(in_sla);
}
