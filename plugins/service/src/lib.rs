#![forbid(unsafe_code)]
//! Customer service metrics from a contact log: first-contact resolution, repeat contacts,
//! response and resolution times against their SLAs, contacts per customer and the backlog —
//! overall, per calendar period and per contact segment, each with its interval.
//!
//! A contact log is read as it stood at one moment (`as_of`, by default its latest time
//! stamp): what cannot be known yet is left out and counted, not guessed. A contact resolved
//! yesterday may still be followed by a repeat, so whether it was resolved at first contact is
//! unknown until its repeat window has passed; an unanswered contact has no response time yet,
//! so the percentiles are of the answered ones and the unanswered are counted beside them.
//! Rules and sources: `docs/metrics/service.md`.

mod calendar;
mod contacts;
mod summary;

use std::collections::BTreeMap;
use std::sync::Arc;

use mittari_sdk::arrow_array::{ArrayRef, Float64Array, StringArray};
use mittari_sdk::prelude::*;
use mittari_sdk::stats::two_sided_z;

use calendar::Calendar;
use contacts::{Facts, Log, Rules};
use mittari_sdk::survey::Period;
use summary::{Estimate, Summary};

const MICROS_PER_DAY: f64 = 86_400_000_000.0;

/// The most rows the periods table has: 40 years of weeks.
const MAX_PERIODS: i64 = 2_100;

/// Below this many known outcomes a proportion's interval is wide; the warning says so.
const SMALL_SAMPLE: u64 = 30;

struct Service;

/// One reported figure: its name, unit, meaning, and how it comes from a summary (or why it
/// does not exist for it).
struct Figure {
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    /// Whether it has an interval (the tables then carry `<name>_lower` and `<name>_upper`).
    interval: bool,
    of: fn(&Summary, &Level) -> Result<Estimate, String>,
}

/// The confidence level and its two-sided normal quantile.
struct Level {
    level: f64,
    z: f64,
}

fn count(value: u64) -> Result<Estimate, String> {
    Ok(Estimate {
        value: value as f64,
        interval: None,
    })
}

fn no_column(column: &str) -> String {
    format!("the log has no {column} column")
}

const FIGURES: &[Figure] = &[
    Figure {
        name: "contacts",
        unit: "count",
        description: "contacts opened (by as_of)",
        interval: false,
        of: |s, _| count(s.contacts),
    },
    Figure {
        name: "customers",
        unit: "count",
        description: "distinct customers who made them",
        interval: false,
        of: |s, _| count(s.customers),
    },
    Figure {
        name: "contacts_per_customer",
        unit: "contacts",
        description: "contacts / customers, with a normal interval from the customers' counts",
        interval: true,
        of: |s, l| {
            s.contacts_per_customer(l.z)
                .ok_or_else(|| "there are no contacts".to_owned())
        },
    },
    Figure {
        name: "first_contact_resolution",
        unit: "%",
        description: "contacts resolved without a repeat contact within repeat_window_days / contacts whose outcome is known, Wilson interval",
        interval: true,
        of: |s, l| {
            s.first_contact_resolved.percent(l.z).ok_or_else(|| {
                "no contact's outcome is known yet: each needs resolved_at and repeat_window_days without a repeat before as_of (or a first_contact_resolved value)".to_owned()
            })
        },
    },
    Figure {
        name: "first_contact_resolution_known",
        unit: "count",
        description: "contacts whose first-contact resolution is known at as_of (the rate's denominator)",
        interval: false,
        of: |s, _| count(s.first_contact_resolved.known),
    },
    Figure {
        name: "repeat_contact_rate",
        unit: "%",
        description: "contacts that repeat the customer's previous contact (opened while it was open or within repeat_window_days of its resolution) / contacts opened repeat_window_days or more after the log starts, Wilson interval",
        interval: true,
        of: |s, l| {
            s.repeat.percent(l.z).ok_or_else(|| {
                "no contact was opened repeat_window_days or more after the log's first one"
                    .to_owned()
            })
        },
    },
    Figure {
        name: "response_time_median",
        unit: "hours",
        description: "median hours from opened_at to first_response_at of answered contacts (business hours when set), order-statistic interval",
        interval: true,
        of: |s, l| quantile(s.response.as_ref(), "first_response_at", "answered", 0.5, l),
    },
    Figure {
        name: "response_time_p90",
        unit: "hours",
        description: "90th percentile of the same hours, order-statistic interval",
        interval: true,
        of: |s, l| quantile(s.response.as_ref(), "first_response_at", "answered", 0.9, l),
    },
    Figure {
        name: "response_within_sla",
        unit: "%",
        description: "contacts answered within response_sla_hours / contacts answered, or unanswered past it, Wilson interval",
        interval: true,
        of: |s, l| within(s.response.as_ref(), "first_response_at", l),
    },
    Figure {
        name: "unanswered",
        unit: "count",
        description: "contacts without a first response at as_of",
        interval: false,
        of: |s, _| {
            s.response
                .as_ref()
                .map(|t| count(t.waiting))
                .unwrap_or_else(|| Err(no_column("first_response_at")))
        },
    },
    Figure {
        name: "resolution_time_median",
        unit: "hours",
        description: "median hours from opened_at to resolved_at of resolved contacts (business hours when set), order-statistic interval",
        interval: true,
        of: |s, l| quantile(s.resolution.as_ref(), "resolved_at", "resolved", 0.5, l),
    },
    Figure {
        name: "resolution_time_p90",
        unit: "hours",
        description: "90th percentile of the same hours, order-statistic interval",
        interval: true,
        of: |s, l| quantile(s.resolution.as_ref(), "resolved_at", "resolved", 0.9, l),
    },
    Figure {
        name: "resolution_within_sla",
        unit: "%",
        description: "contacts resolved within resolution_sla_hours / contacts resolved, or open past it, Wilson interval",
        interval: true,
        of: |s, l| within(s.resolution.as_ref(), "resolved_at", l),
    },
    Figure {
        name: "backlog",
        unit: "count",
        description: "contacts open at the end (as_of; for a period, its end or as_of if sooner)",
        interval: false,
        of: |s, _| {
            s.backlog
                .map(count)
                .unwrap_or_else(|| Err(no_column("resolved_at")))
        },
    },
];

fn quantile(
    times: Option<&summary::Times>,
    column: &str,
    done: &str,
    q: f64,
    level: &Level,
) -> Result<Estimate, String> {
    let times = times.ok_or_else(|| no_column(column))?;
    times
        .quantile(q, level.level)
        .ok_or_else(|| format!("no contact was {done} by as_of"))
}

fn within(times: Option<&summary::Times>, column: &str, level: &Level) -> Result<Estimate, String> {
    let times = times.ok_or_else(|| no_column(column))?;
    times
        .in_sla
        .percent(level.z)
        .ok_or_else(|| "no contact's outcome against the SLA is known yet".to_owned())
}

/// The rates whose change from the period before the `periods` table tests.
/// A share of a summary, where the log has what it needs.
type ShareOf = fn(&Summary) -> Option<summary::Share>;

const TESTED_RATES: [(&str, ShareOf); 3] = [
    ("first_contact_resolution", |s| {
        Some(s.first_contact_resolved)
    }),
    ("response_within_sla", |s| {
        s.response.as_ref().map(|t| t.in_sla)
    }),
    ("resolution_within_sla", |s| {
        s.resolution.as_ref().map(|t| t.in_sla)
    }),
];

/// The `periods` table's change columns, after the figures.
fn change_columns() -> Vec<OutputSpec> {
    let mut columns = Vec::new();
    for (name, _) in TESTED_RATES {
        columns.push(OutputSpec::new(
            &format!("{name}_change"),
            "points",
            &format!("{name} minus the period before's, in percentage points"),
        ));
        columns.push(OutputSpec::new(
            &format!("{name}_change_lower"),
            "points",
            "lower bound of the change's adjusted Wald interval (Agresti-Caffo)",
        ));
        columns.push(OutputSpec::new(
            &format!("{name}_change_upper"),
            "points",
            "upper bound of the change's adjusted Wald interval",
        ));
        columns.push(OutputSpec::new(
            &format!("{name}_change_p_value"),
            "probability",
            "two-sided p-value of no change, one comparison on its own",
        ));
    }
    columns
}

/// Each tested rate's change from the period before, by Agresti and Caffo's adjusted Wald
/// difference of proportions; empty for the first period or where either is unknown.
fn change_arrays(rows: &[Summary], level: &Level) -> Vec<(String, ArrayRef)> {
    let tally =
        |share: summary::Share| mittari_sdk::survey::Tally::proportion(share.hits, share.known);
    let mut columns = Vec::new();
    for (name, share) in TESTED_RATES {
        let differences: Vec<Option<mittari_sdk::survey::Difference>> = (0..rows.len())
            .map(|i| {
                let now = share(&rows[i])?;
                let before = share(rows.get(i.checked_sub(1)?)?)?;
                mittari_sdk::survey::difference(
                    &tally(now),
                    &tally(before),
                    &mittari_sdk::survey::PROPORTION,
                    level.z,
                    100.0,
                )
            })
            .collect();
        let pick = |f: fn(&mittari_sdk::survey::Difference) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from(
                differences
                    .iter()
                    .map(|d| d.as_ref().map(f))
                    .collect::<Vec<_>>(),
            ))
        };
        columns.push((format!("{name}_change"), pick(|d| d.value)));
        columns.push((format!("{name}_change_lower"), pick(|d| d.lower)));
        columns.push((format!("{name}_change_upper"), pick(|d| d.upper)));
        columns.push((format!("{name}_change_p_value"), pick(|d| d.p_value)));
    }
    columns
}

/// The columns of the `periods` and `segments` tables after their key columns.
fn figure_columns() -> Vec<OutputSpec> {
    let mut columns = Vec::new();
    for figure in FIGURES {
        columns.push(OutputSpec::new(
            figure.name,
            figure.unit,
            figure.description,
        ));
        if figure.interval {
            for side in ["lower", "upper"] {
                columns.push(OutputSpec::new(
                    &format!("{}_{side}", figure.name),
                    figure.unit,
                    &format!(
                        "{side} bound of {}'s interval (empty where the data do not bound it)",
                        figure.name
                    ),
                ));
            }
        }
    }
    columns
}

impl Metric for Service {
    fn descriptor(&self) -> MetricDescriptor {
        let periods = std::iter::once(OutputSpec::new(
            "period",
            "id",
            "the calendar period the contacts were opened in (2024-03, 2024-Q1, 2024-W09), in timezone",
        ))
        .chain(figure_columns())
        .chain(change_columns());
        let mut descriptor = MetricDescriptor::new(
            "service",
            env!("CARGO_PKG_VERSION"),
            "customer service: first-contact resolution, response and resolution times against SLAs, repeat contacts, backlog",
        )
        .description(
            "From a contact log (one row per contact): first-contact resolution (a contact resolved without a repeat \
             contact by the same customer, on the same matter when the log has one, within repeat_window_days of its \
             resolution), the repeat-contact rate, median and 90th-percentile response and resolution times in hours \
             (clock hours, or business hours with business_hours), the shares within response_sla_hours and \
             resolution_sla_hours, contacts per customer and the backlog at as_of; overall, per period (the periods \
             table) and per breakdown column (the segments table, with repeats found across segments). Proportions \
             have Wilson intervals, medians and percentiles distribution-free order-statistic intervals. What cannot \
             be known at as_of (an outcome whose repeat window is still open, an unanswered contact) is left out of a \
             rate and counted beside it.",
        )
        .input(ColumnSpec::string("customer_id", "the customer who made the contact").required())
        .input(ColumnSpec::timestamp("opened_at", "when the contact was opened").required())
        .input(ColumnSpec::timestamp("first_response_at", "when the service first responded; empty while unanswered"))
        .input(ColumnSpec::timestamp("resolved_at", "when the contact was resolved; empty while open"))
        .input(ColumnSpec::bool(
            "first_contact_resolved",
            "whether the contact was resolved at first contact, where the log records it; empty rows are derived from repeat contacts",
        ))
        .input(ColumnSpec::string("matter", "what the contact is about (case, order, topic): a repeat is a contact on the same matter"))
        .input(ColumnSpec::string("contact_id", "the contact's id; checked to be unique"))
        .parameter(
            ParameterSpec::double("repeat_window_days", 7.0, "a contact opened within this many days of the previous one's resolution (or while it was open) repeats it")
                .range(0.0, 3650.0),
        )
        .parameter(
            ParameterSpec::double("response_sla_hours", 24.0, "the first response is due within this many hours (business hours with business_hours)")
                .range(0.0, 87_600.0),
        )
        .parameter(
            ParameterSpec::double("resolution_sla_hours", 72.0, "resolution is due within this many hours (business hours with business_hours)")
                .range(0.0, 87_600.0),
        )
        .parameter(ParameterSpec::string(
            "business_hours",
            "",
            "opening hours as 08:00-16:30 to count only time the service is open; empty counts around the clock",
        ))
        .parameter(
            ParameterSpec::new("business_days", DataType::String, "the days business_hours apply, as mon-fri (the default) or mon,tue,sat")
                .optional(),
        )
        .parameter(
            ParameterSpec::new("holidays", DataType::String, "dates the service is closed, as 2024-12-24,2024-12-25")
                .optional(),
        )
        .parameter(ParameterSpec::string(
            "timezone",
            "UTC",
            "the IANA time zone of business hours and period boundaries, e.g. Europe/Helsinki",
        ))
        .parameter(
            ParameterSpec::string("period", "month", "the periods of the periods table")
                .allowed_values(&["week", "month", "quarter", "none"]),
        )
        .parameter(
            ParameterSpec::new("as_of", DataType::Timestamp, "the moment results describe; default the log's latest time stamp")
                .optional(),
        )
        .parameter(ParameterSpec::columns(
            "breakdown",
            "contact columns (channel, team) to break results down by in the segments table; unlike group_by, repeat contacts are found across segments",
        ))
        .parameter(
            ParameterSpec::double("confidence", 0.95, "confidence level of every interval").range(0.5, 0.999),
        )
        .parameter(ParameterSpec::bool(
            "contacts_table",
            false,
            "also return the contacts table: each contact's facts as of as_of (resolved at first contact, repeat, hours), e.g. to join service outcomes to purchases with cx_outcomes",
        ))
        .table_with_columns(
            "contacts",
            "with contacts_table=true: one row per contact opened by as_of, in input order",
            contacts_columns(),
        )
        .table_with_columns(
            "periods",
            "the figures of the contacts opened in each period, oldest first",
            periods,
        )
        .table(
            "segments",
            "with breakdown: the figures of each segment's contacts, one key column per breakdown column, then the periods table's figure columns",
        );
        for figure in FIGURES {
            descriptor = descriptor.output(OutputSpec::new(
                figure.name,
                figure.unit,
                figure.description,
            ));
        }
        descriptor
    }

    fn compute(&self, input: &Input<'_>, params: &Params) -> Result<Output, MetricError> {
        let log = Log {
            customer: input.string("customer_id")?,
            opened: input.timestamp("opened_at")?,
            first_response: input.optional_timestamp("first_response_at")?,
            resolved: input.optional_timestamp("resolved_at")?,
            resolved_first: input.optional_bool("first_contact_resolved")?,
            matter: input.optional_string("matter")?,
            contact_id: input.optional_string("contact_id")?,
        };
        if log.opened.is_empty() {
            return Err(MetricError::invalid_input(
                "the log has no contacts; service needs at least one row",
            ));
        }
        let optional_text = |name: &str| match params.get(name) {
            Some(ParamValue::String(text)) => Some(text.as_str()),
            _ => None,
        };
        let (calendar, unused) = Calendar::from_params(
            params.str("timezone")?,
            params.str("business_hours")?,
            optional_text("business_days"),
            optional_text("holidays"),
        )?;
        let level = params.f64("confidence")?;
        let level = Level {
            level,
            z: two_sided_z(level).ok_or_else(|| {
                MetricError::invalid_parameter("confidence", "must be between 0 and 1")
            })?,
        };
        let as_of = match params.get("as_of") {
            Some(ParamValue::Timestamp(at)) => *at,
            _ => latest(&log),
        };
        let rules = Rules {
            calendar,
            repeat_window_micros: (params.f64("repeat_window_days")? * MICROS_PER_DAY) as i64,
            response_sla_hours: params.f64("response_sla_hours")?,
            resolution_sla_hours: params.f64("resolution_sla_hours")?,
            as_of,
        };
        let (facts, _) = contacts::facts(&log, &rules)?;
        input.check_cancelled()?;
        if facts.is_empty() {
            return Err(MetricError::invalid_parameter(
                "as_of",
                format!(
                    "no contact was opened by as_of {}; the log starts {}",
                    mittari_sdk::time::format_timestamp(as_of),
                    mittari_sdk::time::format_timestamp(
                        log.opened.iter().flatten().min().unwrap_or(as_of)
                    ),
                ),
            ));
        }
        let has = (log.first_response.is_some(), log.resolved.is_some());
        let all = Summary::of(&facts, has.0, has.1, as_of);

        let mut output = Output::new();
        for figure in FIGURES {
            output = output.scalar(scalar(figure, &all, &level));
        }
        let period = params.str("period")?;
        if let Some(period) = Period::parse(period) {
            output = output.table(
                "periods",
                periods_table(input, &facts, &rules, period, has, &level)?,
            );
        }
        if params.bool("contacts_table")? {
            output = output.table("contacts", contacts_table(&log, &facts)?);
        }
        if let Some(columns) = optional_text("breakdown") {
            let columns: Vec<&str> = columns
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            output = output.table(
                "segments",
                segments_table(input, &columns, &facts, has, as_of, &level)?,
            );
        }
        for name in unused {
            output = output.warning(
                "parameter_unused",
                format!("{name} changes nothing without business_hours; set business_hours (e.g. 08:00-16:00) or leave {name} out"),
            );
        }
        warn_waiting(&mut output, &all);
        Ok(output)
    }
}

fn contacts_columns() -> Vec<OutputSpec> {
    vec![
        OutputSpec::new(
            "contact_id",
            "id",
            "the contact's id, where the log has one",
        ),
        OutputSpec::new("customer_id", "id", "the customer who made the contact"),
        OutputSpec::new("opened_at", "id", "when the contact was opened (UTC)"),
        OutputSpec::new(
            "first_contact_resolved",
            "id",
            "resolved at first contact; empty while it cannot be told at as_of",
        ),
        OutputSpec::new(
            "repeat",
            "id",
            "whether it repeats an earlier contact; empty where the earlier one may be before the log",
        ),
        OutputSpec::new(
            "response_hours",
            "hours",
            "hours to the first response; empty while unanswered",
        ),
        OutputSpec::new(
            "resolution_hours",
            "hours",
            "hours to resolution; empty while open",
        ),
    ]
}

/// Each contact's facts, for joining service outcomes to other data (cx_outcomes).
fn contacts_table(log: &Log<'_>, facts: &[Facts]) -> Result<RecordBatch, MetricError> {
    use mittari_sdk::arrow_array::{BooleanArray, TimestampMicrosecondArray};
    let mut columns: Vec<(&str, ArrayRef)> = Vec::new();
    if let Some(ids) = log.contact_id {
        columns.push((
            "contact_id",
            Arc::new(StringArray::from_iter_values(
                facts.iter().map(|f| ids.value(f.row)),
            )),
        ));
    }
    columns.extend([
        (
            "customer_id",
            Arc::new(StringArray::from_iter_values(
                facts.iter().map(|f| log.customer.value(f.row)),
            )) as ArrayRef,
        ),
        (
            "opened_at",
            Arc::new(
                facts
                    .iter()
                    .map(|f| Some(f.opened))
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone("UTC"),
            ),
        ),
        (
            "first_contact_resolved",
            Arc::new(
                facts
                    .iter()
                    .map(|f| f.first_contact_resolved)
                    .collect::<BooleanArray>(),
            ),
        ),
        (
            "repeat",
            Arc::new(facts.iter().map(|f| f.repeat).collect::<BooleanArray>()),
        ),
        (
            "response_hours",
            Arc::new(Float64Array::from(
                facts.iter().map(|f| f.response_hours).collect::<Vec<_>>(),
            )),
        ),
        (
            "resolution_hours",
            Arc::new(Float64Array::from(
                facts.iter().map(|f| f.resolution_hours).collect::<Vec<_>>(),
            )),
        ),
    ]);
    result_table("contacts", columns)
}

/// The log's latest time stamp: the moment it was exported, as near as the data tell.
fn latest(log: &Log<'_>) -> i64 {
    [Some(log.opened), log.first_response, log.resolved]
        .into_iter()
        .flatten()
        .flat_map(|column| column.iter().flatten())
        .max()
        .unwrap_or(0)
}

fn scalar(figure: &Figure, summary: &Summary, level: &Level) -> Scalar {
    match (figure.of)(summary, level) {
        Ok(Estimate {
            value,
            interval: Some((lower, upper)),
        }) => Scalar::new(figure.name, value).with_interval(lower, upper, level.level),
        Ok(Estimate {
            value,
            interval: None,
        }) => Scalar::new(figure.name, value),
        Err(reason) => Scalar::undefined(figure.name, reason),
    }
}

/// Percentiles of times leave out the contacts still waiting; a reader must know how many.
fn warn_waiting(output: &mut Output, all: &Summary) {
    let mut add = |code: &str, message: String| {
        output.warnings.push(Warning {
            code: code.to_owned(),
            message,
        })
    };
    if let Some(times) = all.response.as_ref().filter(|t| t.waiting > 0) {
        add(
            "unanswered_contacts",
            format!(
                "{} of {} contacts were unanswered at as_of: response-time percentiles are of the answered ones and would be longer with them",
                times.waiting, all.contacts
            ),
        );
    }
    if let Some(times) = all.resolution.as_ref().filter(|t| t.waiting > 0) {
        add(
            "open_contacts",
            format!(
                "{} of {} contacts were open at as_of: resolution-time percentiles are of the resolved ones and would be longer with them",
                times.waiting, all.contacts
            ),
        );
    }
    let known = all.first_contact_resolved.known;
    if known < SMALL_SAMPLE {
        add(
            "small_sample",
            format!(
                "first-contact resolution is known for only {known} contacts: its interval is wide"
            ),
        );
    }
    if known < all.contacts {
        add(
            "outcome_pending",
            format!(
                "first-contact resolution is not known yet for {} of {} contacts (open, or resolved within repeat_window_days of as_of): they are left out of the rate",
                all.contacts - known,
                all.contacts
            ),
        );
    }
}

/// One row per period from the first contact's to as_of's, empty periods included (a month
/// without contacts still has a backlog).
fn periods_table(
    input: &Input<'_>,
    facts: &[Facts],
    rules: &Rules,
    period: Period,
    has: (bool, bool),
    level: &Level,
) -> Result<RecordBatch, MetricError> {
    let calendar = &rules.calendar;
    // A local date as the SDK's periods count it: its midnight, written as if in UTC.
    let index_of = |instant: i64| {
        let date = calendar.local_date(instant);
        period.of(date
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_micros())
    };
    let first = facts.iter().map(|f| f.opened).min().unwrap_or(rules.as_of);
    let (first, _) = index_of(first);
    let (last, _) = index_of(rules.as_of);
    let mut by_period: BTreeMap<i64, Vec<&Facts>> = BTreeMap::new();
    for f in facts {
        by_period.entry(index_of(f.opened).0).or_default().push(f);
    }
    // A far as_of with weeks would otherwise make a table of hundreds of thousands of empty rows.
    if last - first >= MAX_PERIODS {
        return Err(MetricError::invalid_parameter(
            "period",
            format!(
                "the log's first contact and as_of are {} {}s apart, more than {MAX_PERIODS}; choose a longer period or an as_of nearer the log",
                last - first,
                period.name()
            ),
        ));
    }
    // The instant (in the calendar's time zone) a period starts.
    let starts_at = |index: i64| {
        let (year, month, day) = mittari_sdk::time::date_of(period.first_day(index));
        chrono::NaiveDate::from_ymd_opt(year as i32, month, day)
            .map_or(rules.as_of, |date| calendar.day_start(date))
    };
    // The backlog at an instant: contacts opened by then less those resolved by then (a
    // resolution never precedes its opening), by binary search in sorted times.
    let mut opened: Vec<i64> = facts.iter().map(|f| f.opened).collect();
    let mut resolved: Vec<i64> = facts
        .iter()
        .filter_map(|f| f.resolved_at.flatten())
        .collect();
    opened.sort_unstable();
    resolved.sort_unstable();
    let open_at = |t: i64| {
        (opened.partition_point(|&o| o <= t) - resolved.partition_point(|&r| r <= t)) as u64
    };
    let mut labels = Vec::new();
    let mut rows = Vec::new();
    for index in first..=last {
        input.check_cancelled()?;
        let end = starts_at(index + 1).min(rules.as_of);
        let contacts = by_period.get(&index).map_or(&[][..], Vec::as_slice);
        let mut summary = Summary::of(contacts.iter().copied(), has.0, has.1, end);
        // The backlog at a period's end counts every contact open then, opened in it or before.
        if has.1 {
            summary.backlog = Some(open_at(end));
        }
        labels.push(period.of(period.first_day(index)).1);
        rows.push(summary);
    }
    let key: ArrayRef = Arc::new(StringArray::from(labels));
    figure_table(
        "periods",
        vec![("period".to_owned(), key)],
        &rows,
        level,
        change_arrays(&rows, level),
    )
}

/// One row per combination of the breakdown columns' values, in order of first appearance.
fn segments_table(
    input: &Input<'_>,
    columns: &[&str],
    facts: &[Facts],
    has: (bool, bool),
    as_of: i64,
    level: &Level,
) -> Result<RecordBatch, MetricError> {
    let arrays: Vec<&ArrayRef> = columns
        .iter()
        .map(|c| {
            input.batch().column_by_name(c).ok_or_else(|| {
                MetricError::invalid_parameter("breakdown", format!("the log has no column {c}"))
            })
        })
        .collect::<Result<_, _>>()?;
    let mut order: Vec<Vec<String>> = Vec::new();
    let mut groups: std::collections::HashMap<Vec<String>, Vec<&Facts>> = Default::default();
    for f in facts {
        let key: Vec<String> = arrays
            .iter()
            .map(|a| mittari_sdk::survey::cell_label(a.as_ref(), f.row))
            .collect();
        let members = groups.entry(key.clone()).or_default();
        if members.is_empty() {
            order.push(key);
        }
        members.push(f);
    }
    let rows: Vec<Summary> = order
        .iter()
        .map(|key| Summary::of(groups[key].iter().copied(), has.0, has.1, as_of))
        .collect();
    let keys = columns
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let values: Vec<&str> = order.iter().map(|k| k[i].as_str()).collect();
            (
                (*name).to_owned(),
                Arc::new(StringArray::from(values)) as ArrayRef,
            )
        })
        .collect();
    figure_table("segments", keys, &rows, level, Vec::new())
}

/// Key columns, then each figure (and its bounds) of each row's summary, then `extra`.
fn figure_table(
    name: &str,
    keys: Vec<(String, ArrayRef)>,
    rows: &[Summary],
    level: &Level,
    extra: Vec<(String, ArrayRef)>,
) -> Result<RecordBatch, MetricError> {
    let mut columns: Vec<(String, ArrayRef)> = keys;
    for figure in FIGURES {
        let estimates: Vec<Option<Estimate>> =
            rows.iter().map(|s| (figure.of)(s, level).ok()).collect();
        let values = |pick: fn(&Estimate) -> Option<f64>| -> ArrayRef {
            Arc::new(Float64Array::from(
                estimates
                    .iter()
                    .map(|e| e.as_ref().and_then(pick))
                    .collect::<Vec<_>>(),
            ))
        };
        columns.push((figure.name.to_owned(), values(|e| Some(e.value))));
        if figure.interval {
            columns.push((
                format!("{}_lower", figure.name),
                values(|e| e.interval.map(|i| i.0)),
            ));
            columns.push((
                format!("{}_upper", figure.name),
                values(|e| e.interval.map(|i| i.1)),
            ));
        }
    }
    columns.extend(extra);
    mittari_sdk::result_table(
        name,
        columns
            .iter()
            .map(|(n, a)| (n.as_str(), a.clone()))
            .collect(),
    )
}

mittari_sdk::export_plugin!(Service);

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mittari_sdk::arrow_array::{Array, BooleanArray, RecordBatch, TimestampMicrosecondArray};
    use mittari_sdk::arrow_schema::{DataType, Field, Schema, TimeUnit};

    use super::*;
    use mittari_sdk::arrow_array::cast::AsArray;
    use mittari_sdk::arrow_array::types::Float64Type;

    /// One contact: customer, opened, first response, resolved (ISO times, `""` for none).
    type Row = (&'static str, &'static str, &'static str, &'static str);

    fn micros(text: &str) -> Option<i64> {
        (!text.is_empty()).then(|| mittari_sdk::time::parse_timestamp(text).unwrap())
    }

    fn batch(rows: &[Row], extra: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let times = |pick: fn(&Row) -> &str| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(
                rows.iter().map(|r| micros(pick(r))).collect::<Vec<_>>(),
            ))
        };
        let mut columns: Vec<(&str, ArrayRef)> = vec![
            (
                "customer_id",
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
            ),
            ("opened_at", times(|r| r.1)),
            ("first_response_at", times(|r| r.2)),
            ("resolved_at", times(|r| r.3)),
        ];
        columns.extend(extra);
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, array)| {
                let data_type = match array.data_type() {
                    DataType::Timestamp(..) => DataType::Timestamp(TimeUnit::Microsecond, None),
                    other => other.clone(),
                };
                Field::new(*name, data_type, true)
            })
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap()
    }

    /// The descriptor's defaults, then `params`.
    fn params(given: &[(&str, ParamValue)]) -> Params {
        let mut params = Params::new();
        for spec in Service.descriptor().parameters {
            if let Some(default) = spec.default {
                params.insert(&spec.name, default);
            }
        }
        for (name, value) in given {
            params.insert(*name, value.clone());
        }
        params
    }

    fn run(
        rows: &[Row],
        extra: Vec<(&str, ArrayRef)>,
        given: &[(&str, ParamValue)],
    ) -> Result<Output, MetricError> {
        let batch = batch(rows, extra);
        Service.compute(&Input::new(&batch), &params(given))
    }

    fn value(output: &Output, name: &str) -> Option<f64> {
        output
            .scalars
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.value)
    }

    fn text(s: &str) -> ParamValue {
        ParamValue::String(s.to_owned())
    }

    /// `check(rows, params, [(output, expected value or None)])`.
    fn check(rows: &[Row], given: &[(&str, ParamValue)], expect: &[(&str, Option<f64>)]) {
        let output = run(rows, vec![], given).unwrap();
        for (name, want) in expect {
            let got = value(&output, name);
            let close = match (got, want) {
                (Some(g), Some(w)) => (g - w).abs() < 1e-9,
                (None, None) => true,
                _ => false,
            };
            assert!(close, "{name}: {got:?} != {want:?} for {rows:?} {given:?}");
        }
    }

    #[test]
    fn first_contact_resolution_follows_repeat_contacts() {
        // a's first contact is chased 3 days after its resolution (a repeat within 7 days);
        // b's second contact comes 20 days after: both of b's are first-contact resolutions.
        check(
            &[
                ("a", "2024-03-01T09:00:00Z", "", "2024-03-01T10:00:00Z"),
                ("a", "2024-03-04T10:00:00Z", "", "2024-03-04T11:00:00Z"),
                ("b", "2024-03-01T09:00:00Z", "", "2024-03-01T10:00:00Z"),
                ("b", "2024-03-21T10:00:00Z", "", "2024-03-21T11:00:00Z"),
                ("c", "2024-04-30T00:00:00Z", "", ""),
            ],
            &[],
            // Known: a1 no, a2 yes, b1 yes, b2 yes; c open. 3 / 4.
            &[
                ("first_contact_resolution", Some(75.0)),
                ("first_contact_resolution_known", Some(4.0)),
                ("backlog", Some(1.0)),
            ],
        );
        // A contact chased while still open is not resolved at first contact, whenever it closes.
        check(
            &[
                ("a", "2024-03-01T09:00:00Z", "", "2024-03-20T10:00:00Z"),
                ("a", "2024-03-10T10:00:00Z", "", "2024-03-10T11:00:00Z"),
                ("z", "2024-05-01T00:00:00Z", "", ""),
            ],
            &[],
            // a2 repeats a1; z, a first contact well after the log's start, does not.
            &[
                ("first_contact_resolution", Some(50.0)),
                ("repeat_contact_rate", Some(50.0)),
            ],
        );
        // A resolution whose window has not closed by as_of is not known yet: with the window
        // at 30 days, b2's (resolved 21 March, as_of 30 April) has closed, a2's has too, and
        // b1 is now a repeat-followed contact (b2 within 30 days of b1's resolution).
        check(
            &[
                ("a", "2024-03-01T09:00:00Z", "", "2024-03-01T10:00:00Z"),
                ("b", "2024-03-01T09:00:00Z", "", "2024-03-01T10:00:00Z"),
                ("b", "2024-03-21T10:00:00Z", "", "2024-03-21T11:00:00Z"),
                ("c", "2024-04-15T00:00:00Z", "", "2024-04-15T01:00:00Z"),
                ("z", "2024-04-30T00:00:00Z", "", ""),
            ],
            &[("repeat_window_days", ParamValue::Double(30.0))],
            // a1 yes, b1 no, b2 yes, c (window open until 15 May) and z unknown: 2 / 3.
            &[
                ("first_contact_resolution", Some(200.0 / 3.0)),
                ("first_contact_resolution_known", Some(3.0)),
            ],
        );
    }

    #[test]
    fn a_matter_column_keeps_unrelated_contacts_apart() {
        let rows: &[Row] = &[
            ("a", "2024-03-01T09:00:00Z", "", "2024-03-01T10:00:00Z"),
            ("a", "2024-03-02T09:00:00Z", "", "2024-03-02T10:00:00Z"),
            ("z", "2024-04-30T00:00:00Z", "", ""),
        ];
        let matter: ArrayRef = Arc::new(StringArray::from(vec![
            Some("invoice"),
            Some("delivery"),
            None,
        ]));
        let output = run(rows, vec![("matter", matter)], &[]).unwrap();
        assert_eq!(value(&output, "first_contact_resolution"), Some(100.0));
        // Without it, the second contact repeats the first.
        let output = run(rows, vec![], &[]).unwrap();
        assert_eq!(value(&output, "first_contact_resolution"), Some(50.0));
    }

    #[test]
    fn a_recorded_outcome_wins_and_empty_ones_are_derived() {
        let rows: &[Row] = &[
            ("a", "2024-03-01T09:00:00Z", "", "2024-03-01T10:00:00Z"),
            ("a", "2024-03-02T09:00:00Z", "", "2024-03-02T10:00:00Z"),
            ("b", "2024-03-05T09:00:00Z", "", ""),
            ("z", "2024-04-30T00:00:00Z", "", "2024-04-30T01:00:00Z"),
        ];
        // a1 recorded as resolved (the agent's call), a2 derived (yes), b recorded as not
        // resolved though still open, z derived: window open, unknown. 2 of 3.
        let recorded: ArrayRef = Arc::new(BooleanArray::from(vec![
            Some(true),
            None,
            Some(false),
            None,
        ]));
        let output = run(rows, vec![("first_contact_resolved", recorded)], &[]).unwrap();
        assert_eq!(value(&output, "first_contact_resolution_known"), Some(3.0));
        assert!((value(&output, "first_contact_resolution").unwrap() - 200.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn slas_count_unanswered_contacts_once_they_are_late() {
        let rows: &[Row] = &[
            (
                "a",
                "2024-03-01T00:00:00Z",
                "2024-03-01T02:00:00Z",
                "2024-03-01T03:00:00Z",
            ),
            // Unanswered for 48 hours at as_of: a miss of the 24-hour SLA already.
            ("b", "2024-03-01T00:00:00Z", "", ""),
            // Unanswered for 1 hour: not known yet.
            ("c", "2024-03-02T23:00:00Z", "", ""),
            ("d", "2024-03-03T00:00:00Z", "2024-03-03T00:00:00Z", ""),
        ];
        check(
            rows,
            &[],
            &[
                ("response_within_sla", Some(200.0 / 3.0)),
                ("unanswered", Some(2.0)),
                ("response_time_median", Some(1.0)),
                ("backlog", Some(3.0)),
                // b open 72 hours at as_of: not past 72.
                ("resolution_within_sla", Some(100.0)),
            ],
        );
        // As of noon on 2 March, c and d have not happened and b has waited 36 hours.
        check(
            rows,
            &[(
                "as_of",
                ParamValue::Timestamp(micros("2024-03-02T12:00:00Z").unwrap()),
            )],
            &[
                ("contacts", Some(2.0)),
                ("response_within_sla", Some(50.0)),
                ("backlog", Some(1.0)),
            ],
        );
    }

    #[test]
    fn business_hours_count_only_open_time() {
        // Friday 17:00 to Monday 09:00 is 64 clock hours, 2 business hours at 08:00-18:00.
        let rows: &[Row] = &[(
            "a",
            "2024-03-01T17:00:00Z",
            "2024-03-04T09:00:00Z",
            "2024-03-04T09:00:00Z",
        )];
        check(rows, &[], &[("response_time_median", Some(64.0))]);
        check(
            rows,
            &[("business_hours", text("08:00-18:00"))],
            &[("response_time_median", Some(2.0))],
        );
        // In Helsinki (UTC+2) 17:00Z is 19:00, after closing; Monday 09:00Z is 11:00: 3 hours.
        check(
            rows,
            &[
                ("business_hours", text("08:00-18:00")),
                ("timezone", text("Europe/Helsinki")),
            ],
            &[("response_time_median", Some(3.0))],
        );
        // Days and holidays without hours are named as changing nothing.
        let output = run(rows, vec![], &[("holidays", text("2024-03-04"))]).unwrap();
        assert!(
            output
                .warnings
                .iter()
                .any(|w| w.code == "parameter_unused" && w.message.starts_with("holidays"))
        );
    }

    #[test]
    fn a_breakdown_finds_repeats_across_segments() {
        // The chat contact is chased by phone: chat's first-contact resolution is 0 %,
        // which --group-by channel (each channel alone) could not see.
        let rows: &[Row] = &[
            ("a", "2024-03-01T09:00:00Z", "", "2024-03-01T10:00:00Z"),
            ("a", "2024-03-02T09:00:00Z", "", "2024-03-02T10:00:00Z"),
            ("z", "2024-04-30T00:00:00Z", "", ""),
        ];
        let channel: ArrayRef = Arc::new(StringArray::from(vec!["chat", "phone", "chat"]));
        let output = run(
            rows,
            vec![("channel", channel)],
            &[("breakdown", text("channel"))],
        )
        .unwrap();
        let (_, segments) = output.tables.iter().find(|(n, _)| n == "segments").unwrap();
        let labels = segments
            .column_by_name("channel")
            .unwrap()
            .as_string::<i32>();
        let fcr = segments
            .column_by_name("first_contact_resolution")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert_eq!((labels.value(0), fcr.value(0)), ("chat", 0.0));
        assert_eq!((labels.value(1), fcr.value(1)), ("phone", 100.0));
    }

    #[test]
    fn periods_run_from_the_first_contact_to_as_of_with_the_backlog_at_each_end() {
        let rows: &[Row] = &[
            ("a", "2024-01-15T09:00:00Z", "", "2024-03-10T10:00:00Z"),
            ("b", "2024-03-20T09:00:00Z", "", ""),
        ];
        let output = run(rows, vec![], &[]).unwrap();
        let (_, periods) = output.tables.iter().find(|(n, _)| n == "periods").unwrap();
        let labels = periods.column_by_name("period").unwrap().as_string::<i32>();
        let backlog = periods
            .column_by_name("backlog")
            .unwrap()
            .as_primitive::<Float64Type>();
        let months: Vec<_> = (0..periods.num_rows())
            .map(|i| (labels.value(i), backlog.value(i)))
            .collect();
        // February has no contacts but a's is still open at its end.
        assert_eq!(
            months,
            [("2024-01", 1.0), ("2024-02", 1.0), ("2024-03", 1.0)]
        );
        let contacts = periods
            .column_by_name("contacts")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert_eq!(contacts.values().to_vec(), [1.0, 0.0, 1.0]);
        // Periods are the calendar's: 22:30Z on 31 December is January in Helsinki, and the
        // next period after December is January.
        let rows: &[Row] = &[
            ("a", "2024-12-31T22:30:00Z", "", ""),
            ("b", "2024-12-15T12:00:00Z", "", ""),
        ];
        let output = run(rows, vec![], &[("timezone", text("Europe/Helsinki"))]).unwrap();
        let (_, periods) = output.tables.iter().find(|(n, _)| n == "periods").unwrap();
        let labels = periods.column_by_name("period").unwrap().as_string::<i32>();
        assert_eq!((labels.value(0), labels.value(1)), ("2024-12", "2025-01"));
        // Weeks start on Monday: 2024-02-01 (a Thursday) is in ISO week 5.
        let output = run(
            &[("a", "2024-02-01T12:00:00Z", "", "")],
            vec![],
            &[("period", text("week"))],
        )
        .unwrap();
        let (_, periods) = output.tables.iter().find(|(n, _)| n == "periods").unwrap();
        let labels = periods.column_by_name("period").unwrap().as_string::<i32>();
        assert_eq!(labels.value(0), "2024-W05");
    }

    #[test]
    fn periods_test_the_change_of_their_rates() {
        // January: a resolved for good (FCR 1 of 1). February: b chased within the window,
        // then resolved (1 of 2). March: z, still open. The change is -50 points, tested as
        // Agresti and Caffo's difference of 1/2 against 1/1.
        let rows: &[Row] = &[
            ("a", "2024-01-10T09:00:00Z", "", "2024-01-10T10:00:00Z"),
            ("b", "2024-02-10T09:00:00Z", "", "2024-02-10T10:00:00Z"),
            ("b", "2024-02-12T09:00:00Z", "", "2024-02-12T10:00:00Z"),
            ("z", "2024-03-30T00:00:00Z", "", ""),
        ];
        let output = run(rows, vec![], &[]).unwrap();
        let (_, periods) = output.tables.iter().find(|(n, _)| n == "periods").unwrap();
        let column = |name: &str| {
            periods
                .column_by_name(name)
                .unwrap()
                .as_primitive::<Float64Type>()
                .clone()
        };
        let tally = mittari_sdk::survey::Tally::proportion;
        let z = mittari_sdk::stats::two_sided_z(0.95).unwrap();
        let want = mittari_sdk::survey::difference(
            &tally(1, 2),
            &tally(1, 1),
            &mittari_sdk::survey::PROPORTION,
            z,
            100.0,
        )
        .unwrap();
        assert_eq!(column("first_contact_resolution_change").value(1), -50.0);
        assert_eq!(
            column("first_contact_resolution_change_p_value").value(1),
            want.p_value
        );
        assert_eq!(
            column("first_contact_resolution_change_lower").value(1),
            want.lower
        );
        assert!(column("first_contact_resolution_change").is_null(0));
        // March's outcome is not known: no change to test.
        assert!(column("first_contact_resolution_change").is_null(2));
    }

    #[test]
    fn bad_rows_are_named() {
        let error = run(
            &[("a", "2024-03-01T09:00:00Z", "2024-03-01T08:00:00Z", "")],
            vec![],
            &[],
        )
        .unwrap_err();
        assert_eq!(
            error,
            MetricError::invalid_value(
                "first_response_at",
                0,
                "first_response_at is before opened_at; check the row's time stamps (and that both are in the same time zone)"
            )
        );
        let ids: ArrayRef = Arc::new(StringArray::from(vec!["k1", "k1"]));
        let rows: &[Row] = &[
            ("a", "2024-03-01T09:00:00Z", "", ""),
            ("b", "2024-03-01T09:00:00Z", "", ""),
        ];
        assert!(matches!(
            run(rows, vec![("contact_id", ids)], &[]).unwrap_err(),
            MetricError::InvalidInput { row: Some(1), .. }
        ));
        let error = run(rows, vec![], &[("as_of", ParamValue::Timestamp(0))]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("no contact was opened by as_of 1970-01-01"),
            "{error}"
        );
        // An as_of centuries away would make a table of a hundred thousand empty weeks.
        let far = ParamValue::Timestamp(micros("2400-01-01T00:00:00Z").unwrap());
        let error = run(rows, vec![], &[("as_of", far), ("period", text("week"))]).unwrap_err();
        assert!(
            error.to_string().contains("choose a longer period"),
            "{error}"
        );
        assert!(run(&[], vec![], &[]).is_err());
        Service.descriptor().check().unwrap();
        assert_eq!(Service.descriptor().lint(), Vec::<String>::new());
    }
}
