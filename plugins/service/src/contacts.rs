//! From a contact log to what is known of each contact at `as_of`: its response and
//! resolution times, whether it met each SLA, whether it was resolved at first contact and
//! whether it repeated an earlier one — each `None` while it cannot be known yet.
//!
//! Repeat contacts are found across the whole log given to the plugin, per customer (and per
//! matter, when the log has one): a contact repeats the customer's previous one when it was
//! opened while that one was still open or within `repeat_window` of its resolution.

use std::collections::HashMap;

use mittari_sdk::MetricError;
use mittari_sdk::arrow_array::{Array, BooleanArray, StringArray, TimestampMicrosecondArray};

use crate::calendar::Calendar;

/// The log's columns, as the plugin receives them.
pub(crate) struct Log<'a> {
    pub(crate) customer: &'a StringArray,
    pub(crate) opened: &'a TimestampMicrosecondArray,
    pub(crate) first_response: Option<&'a TimestampMicrosecondArray>,
    pub(crate) resolved: Option<&'a TimestampMicrosecondArray>,
    pub(crate) resolved_first: Option<&'a BooleanArray>,
    pub(crate) matter: Option<&'a StringArray>,
    pub(crate) contact_id: Option<&'a StringArray>,
}

/// The rules: when a later contact is a repeat, what the SLAs are, and the moment results
/// describe.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub(crate) calendar: Calendar,
    pub(crate) repeat_window_micros: i64,
    pub(crate) response_sla_hours: f64,
    pub(crate) resolution_sla_hours: f64,
    /// Results describe the log as it stood at this instant: later contacts, responses and
    /// resolutions have not happened yet.
    pub(crate) as_of: i64,
}

/// What is known of one contact at `as_of`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Facts {
    /// The input row.
    pub(crate) row: usize,
    pub(crate) customer: u32,
    pub(crate) opened: i64,
    /// Hours to the first response; `None` when not answered by `as_of`.
    pub(crate) response_hours: Option<f64>,
    /// Whether the first response came within the SLA; `None` while unanswered and within it.
    pub(crate) response_in_sla: Option<bool>,
    pub(crate) resolution_hours: Option<f64>,
    pub(crate) resolution_in_sla: Option<bool>,
    /// Resolved at first contact; `None` while it cannot be told yet.
    pub(crate) first_contact_resolved: Option<bool>,
    /// Whether it repeats an earlier contact; `None` within `repeat_window` of the log's
    /// start, where the contact it repeats may be before the log.
    pub(crate) repeat: Option<bool>,
    /// Resolution time known (`None` without a `resolved_at` column).
    pub(crate) resolved_at: Option<Option<i64>>,
}

/// The facts of every contact opened by `as_of`, in input order, and the number of customers.
pub(crate) fn facts(log: &Log<'_>, rules: &Rules) -> Result<(Vec<Facts>, usize), MetricError> {
    let rows = log.opened.len();
    let at = |column: Option<&TimestampMicrosecondArray>, row: usize| {
        column.and_then(|c| c.is_valid(row).then(|| c.value(row)))
    };
    if let Some(ids) = log.contact_id {
        check_unique(ids)?;
    }
    let mut customers: HashMap<&str, u32> = HashMap::new();
    let mut threads: HashMap<(u32, Option<&str>), Vec<usize>> = HashMap::new();
    let mut out: Vec<Facts> = Vec::with_capacity(rows);
    // Row → index in `out`, for the contacts opened by `as_of`.
    let mut index = vec![usize::MAX; rows];
    for (row, slot) in index.iter_mut().enumerate() {
        let opened = log.opened.value(row);
        if opened > rules.as_of {
            continue;
        }
        let first_response = at(log.first_response, row);
        let resolved = at(log.resolved, row);
        for (name, time) in [
            ("first_response_at", first_response),
            ("resolved_at", resolved),
        ] {
            if time.is_some_and(|t| t < opened) {
                return Err(MetricError::invalid_value(
                    name,
                    row,
                    format!(
                        "{name} is before opened_at; check the row's time stamps (and that both are in the same time zone)"
                    ),
                ));
            }
        }
        // What happens after as_of has not happened yet.
        let first_response = first_response.filter(|t| *t <= rules.as_of);
        let resolved = resolved.filter(|t| *t <= rules.as_of);
        let next = customers.len() as u32;
        let customer = *customers.entry(log.customer.value(row)).or_insert(next);
        let matter = log
            .matter
            .and_then(|m| m.is_valid(row).then(|| m.value(row)));
        threads.entry((customer, matter)).or_default().push(row);
        let elapsed = |end: Option<i64>| end.map(|t| rules.calendar.elapsed_hours(opened, t));
        let within = |hours: Option<f64>, sla: f64| match hours {
            Some(hours) => Some(hours <= sla),
            // Unanswered but already past the SLA: a miss, whenever the answer comes.
            None if rules.calendar.elapsed_hours(opened, rules.as_of) > sla => Some(false),
            None => None,
        };
        let response_hours = elapsed(first_response);
        let resolution_hours = elapsed(resolved);
        *slot = out.len();
        out.push(Facts {
            row,
            customer,
            opened,
            response_hours,
            response_in_sla: log
                .first_response
                .and_then(|_| within(response_hours, rules.response_sla_hours)),
            resolution_hours,
            resolution_in_sla: log
                .resolved
                .and_then(|_| within(resolution_hours, rules.resolution_sla_hours)),
            first_contact_resolved: None,
            repeat: None,
            resolved_at: log.resolved.map(|_| resolved),
        });
    }
    let log_start = out.iter().map(|f| f.opened).min().unwrap_or(rules.as_of);
    for mut rows in threads.into_values() {
        rows.sort_by_key(|&row| (log.opened.value(row), row));
        for (position, &row) in rows.iter().enumerate() {
            let this = out[index[row]];
            // The contact's own end: resolved, or still open (any later contact chases it).
            let end = this.resolved_at.flatten();
            let followed = rows.get(position + 1).is_some_and(|&next| {
                end.is_none_or(|end| {
                    out[index[next]].opened <= end.saturating_add(rules.repeat_window_micros)
                })
            });
            let given = log
                .resolved_first
                .and_then(|c| c.is_valid(row).then(|| c.value(row)));
            let derived = if followed {
                Some(false)
            } else {
                match this.resolved_at {
                    // Resolved, and its repeat window has closed without a repeat.
                    Some(Some(end))
                        if end.saturating_add(rules.repeat_window_micros) <= rules.as_of =>
                    {
                        Some(true)
                    }
                    _ => None,
                }
            };
            let repeat = if position > 0 {
                let previous = out[index[rows[position - 1]]];
                Some(previous.resolved_at.flatten().is_none_or(|end| {
                    this.opened <= end.saturating_add(rules.repeat_window_micros)
                }))
            } else if this.opened >= log_start.saturating_add(rules.repeat_window_micros) {
                Some(false)
            } else {
                None
            };
            let facts = &mut out[index[row]];
            facts.first_contact_resolved = given.or(derived);
            facts.repeat = repeat;
        }
    }
    Ok((out, customers.len()))
}

fn check_unique(ids: &StringArray) -> Result<(), MetricError> {
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(ids.len());
    for row in 0..ids.len() {
        if ids.is_null(row) {
            continue;
        }
        if let Some(earlier) = first.insert(ids.value(row), row) {
            return Err(MetricError::invalid_value(
                "contact_id",
                row,
                format!(
                    "contact_id {:?} appears again (first at row {earlier}); give one row per contact",
                    ids.value(row)
                ),
            ));
        }
    }
    Ok(())
}
