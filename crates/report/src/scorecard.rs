//! The monthly CX scorecard: one page a management team reads each month. NPS and CSAT with
//! whether they really changed, customer service against its SLAs, customers and revenue lost,
//! what discounts cost, and what drives the score — each figure with its interval, arrows only
//! on changes that are significant, and lead sentences written from the numbers.
//!
//! Each part reads its own file (survey answers, CSAT answers, the contact log, the purchase
//! log, order lines) and is computed by its plugin through the same [`Backend`] as a report;
//! the page only picks the month's rows out of the plugins' period tables and words them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use mittari_engine::ParamValue;

use crate::context::{Context, Skip};
use crate::page::{Numbers, Section, format_value, grouped};
use crate::{Backend, Report, ReportError, Request, table};

/// What a scorecard is made of: a file per part (each optional) and the month.
#[derive(Debug, Clone, Default)]
pub struct ScorecardRequest {
    /// Survey answers: `score` (0–10), `timestamp`, optionally `rating_*` columns.
    pub survey: Option<PathBuf>,
    /// CSAT answers: `score` on the CSAT scale and `timestamp`.
    pub csat: Option<PathBuf>,
    /// The contact log (`service`).
    pub contacts: Option<PathBuf>,
    /// The purchase log: `customer_id`, `timestamp`, `amount`.
    pub purchases: Option<PathBuf>,
    /// Order lines with `timestamp`, `quantity`, `target_price`, `realized_price`.
    pub order_lines: Option<PathBuf>,
    /// `2024-12`; by default the latest month of the survey (or the contact log).
    pub month: Option<String>,
    pub options: mittari_io::ReadOptions,
    /// `KEY=VALUE` parameters, each to every part's metric that declares it.
    pub params: Vec<(String, String)>,
}

/// A part of the scorecard for one month: its section and sentences, if its data allow.
type MonthPart = fn(&Context<'_>, &str) -> Result<Option<(Section, Vec<Sentence>)>, Skip>;

/// One sentence of the summary, written from a part's numbers.
struct Sentence(String);

/// The scorecard of `request.month` (or the latest month).
pub fn scorecard(backend: &dyn Backend, request: &ScorecardRequest) -> Result<Report, ReportError> {
    let parts = [
        &request.survey,
        &request.csat,
        &request.contacts,
        &request.purchases,
        &request.order_lines,
    ];
    if parts.iter().all(|p| p.is_none()) {
        return Err(ReportError::NothingToReport {
            input: "the scorecard".to_owned(),
            columns: "no file".to_owned(),
        });
    }
    let context_request = |input: &PathBuf, metrics: &[&str]| Request {
        input: input.clone(),
        options: request.options.clone(),
        params: request.params.clone(),
        group_by: Vec::new(),
        metrics: metrics.iter().map(|m| (*m).to_owned()).collect(),
        tables: Vec::new(),
        table_columns: Vec::new(),
        model: None,
    };
    let mut month = request.month.clone();
    let mut sections = Vec::new();
    let mut sentences = Vec::new();
    let mut not_computed = Vec::new();
    let mut rows = 0;
    let mut note = |part: &str,
                    outcome: Result<Option<(Section, Vec<Sentence>)>, Skip>|
     -> Result<(), ReportError> {
        match outcome {
            Ok(Some((section, said))) => {
                sections.push(section);
                sentences.extend(said);
            }
            Ok(None) | Err(Skip::NotApplicable) => {}
            Err(Skip::Failed(reason)) => not_computed.push((part.to_owned(), reason.to_string())),
            Err(Skip::Error(e)) => return Err(e),
        }
        Ok(())
    };
    for (part, metric, file) in [
        ("NPS", "nps", &request.survey),
        ("CSAT", "csat", &request.csat),
    ] {
        let Some(file) = file else { continue };
        let req = context_request(file, &[metric]);
        let cx = Context::new(backend, &req)?;
        let outcome = survey_part(&cx, metric, &mut month);
        rows += cx.rows();
        note(part, outcome)?;
    }
    let Some(month) = month.or_else(|| {
        request
            .contacts
            .as_ref()
            .and_then(|f| latest_month(f, &request.options))
    }) else {
        return Err(ReportError::Param {
            key: "month".to_owned(),
            message: "no survey answer or contact has a time stamp to take the month from; give --month 2024-12".to_owned(),
        });
    };
    // The parts that read the month. The survey file was counted with NPS already.
    let monthly: [(&str, &str, &Option<PathBuf>, MonthPart, bool); 4] = [
        (
            "customer service",
            "service",
            &request.contacts,
            service_part,
            true,
        ),
        ("churn", "retention", &request.purchases, churn_part, true),
        (
            "discounts",
            "price_gap",
            &request.order_lines,
            discount_part,
            true,
        ),
        (
            "drivers",
            "key_drivers",
            &request.survey,
            drivers_part,
            false,
        ),
    ];
    for (part, metric, file, make, counted) in monthly {
        let Some(file) = file else { continue };
        let req = context_request(file, &[metric]);
        let cx = Context::new(backend, &req)?;
        let outcome = make(&cx, &month);
        if counted {
            rows += cx.rows();
        }
        note(part, outcome)?;
    }
    // Experience to money: the purchase log with the survey's answers, and with the contact
    // log's first-contact resolution, as cx_outcomes' experiences.
    if let Some(purchases) = &request.purchases {
        let mut req = context_request(purchases, &["cx_outcomes"]);
        if let Some(survey) = &request.survey {
            req.tables = vec![("experiences".to_owned(), survey.clone())];
            let cx = Context::new(backend, &req)?;
            note("experience to money", answers_part(&cx, &month))?;
        }
        if let Some(contacts) = &request.contacts {
            let facts_request = context_request(contacts, &["service"]);
            let facts = contact_outcomes(&Context::new(backend, &facts_request)?);
            let outcome = match facts {
                Ok(facts) => {
                    req.tables = Vec::new();
                    let cx = Context::new(backend, &req)?.with_table("experiences", facts);
                    resolution_part(&cx, &month)
                }
                Err(skip) => Err(skip),
            };
            note("first-contact resolution to money", outcome)?;
        }
    }
    let mut summary = Section::new(
        "summary",
        &format!("The month in brief: {month}"),
        sentences
            .iter()
            .map(|s| s.0.as_str())
            .collect::<Vec<_>>()
            .join(" "),
    );
    for section in &sections {
        summary.headline.extend(section.headline.iter().cloned());
    }
    for section in &mut sections {
        section.headline.clear();
    }
    sections.insert(0, summary);
    Ok(Report {
        title: format!("CX scorecard, {month}"),
        input: parts
            .iter()
            .filter_map(|p| p.as_ref().map(|p| p.display().to_string()))
            .collect::<Vec<_>>()
            .join(", "),
        rows,
        sections,
        not_computed,
    })
}

/// The latest month (`2024-12`) of a file's `opened_at` or `timestamp` column.
fn latest_month(file: &std::path::Path, options: &mittari_io::ReadOptions) -> Option<String> {
    for column in ["opened_at", "timestamp"] {
        let descriptor = mittari_engine::MetricDescriptor::new("month", "0", "the month")
            .input(mittari_engine::ColumnSpec::timestamp(column, "time").required());
        if let Ok(table) =
            mittari_io::read(mittari_io::Source::Path(file), &descriptor, &[], options)
            && let Some(times) = table
                .batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow_array::TimestampMicrosecondArray>()
            && let Some(latest) = times.iter().flatten().max()
        {
            return chrono::DateTime::from_timestamp_micros(latest)
                .map(|t| t.format("%Y-%m").to_string());
        }
    }
    None
}

/// The month before `month` (`2024-12` → `2024-11`).
fn previous(month: &str) -> Option<String> {
    let (year, m) = month.split_once('-')?;
    let (year, m): (i32, u32) = (year.parse().ok()?, m.parse().ok()?);
    Some(if m == 1 {
        format!("{}-12", year - 1)
    } else {
        format!("{year}-{:02}", m - 1)
    })
}

/// The row of `table` whose `key` column is `value`.
fn row_of(table: &RecordBatch, key: &str, value: &str) -> Option<usize> {
    table::texts(table, key).iter().position(|v| v == value)
}

fn cell(table: &RecordBatch, column: &str, row: usize) -> Option<f64> {
    table::numbers(table, column).get(row).copied().flatten()
}

fn signed(v: f64, unit: &str) -> String {
    let text = format_value(Some(v), unit);
    if v > 0.0 { format!("+{text}") } else { text }
}

fn p_text(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".to_owned()
    } else {
        format!("p = {p:.3}")
    }
}

/// NPS or CSAT of the month: its value and interval, and its change from the month before and
/// from a year before, each tested on its own (one pre-set comparison each, so unadjusted).
fn survey_part(
    cx: &Context<'_>,
    metric: &str,
    month: &mut Option<String>,
) -> Result<Option<(Section, Vec<Sentence>)>, Skip> {
    let descriptor = cx.descriptor(metric, &["score", "timestamp"])?;
    let mut params = cx.params(descriptor, &[], &["compare", "pairwise", "period"])?;
    params.insert("period".to_owned(), ParamValue::String("month".to_owned()));
    let batch = cx.read(descriptor, &[])?;
    let outcome = cx.compute(metric, &params, batch.clone(), &[])?;
    let results = outcome.results.ok_or(Skip::NotApplicable)?;
    let Some(periods) = table::result_table(&results, "periods") else {
        return Ok(None);
    };
    let labels = table::texts(periods, "period");
    let this = month
        .get_or_insert_with(|| labels.last().cloned().unwrap_or_default())
        .clone();
    let (unit, name) = if metric == "nps" {
        ("points", "NPS")
    } else {
        ("%", "CSAT")
    };
    let Some(row) = row_of(periods, "period", &this) else {
        return Err(Skip::Failed(crate::Refusal(format!(
            "no {name} answer falls in {this}"
        ))));
    };
    // The month's own interval: the metric on the month's answers alone.
    let by_month = month_batch(&batch, "timestamp")?;
    let monthly = cx.compute(
        metric,
        &params_without_period(&params),
        by_month,
        &["month".to_owned()],
    )?;
    let interval = monthly.grouped.as_ref().and_then(|g| {
        let labels = table::group_labels(g);
        let at = labels.iter().position(|l| *l == this)?;
        table::group_intervals(g, metric).get(at).copied().flatten()
    });
    let alpha = match params.get("confidence") {
        Some(ParamValue::Double(level)) => 1.0 - level,
        _ => 0.05,
    };
    let value = cell(periods, metric, row);
    let answers = cell(periods, "answers", row);
    let mut numbers = vec![vec![
        format!("{name} in {this}"),
        format_value(value, unit),
        interval.map_or_else(String::new, |(l, _, u)| {
            format!(
                "{} to {}",
                format_value(Some(l), unit),
                format_value(Some(u), unit)
            )
        }),
        format_value(answers, "count"),
    ]];
    let mut sentence = format!(
        "{name} in {this} was {}{} from {} answers.",
        format_value(value, unit),
        interval.map_or_else(String::new, |(l, _, u)| format!(
            " (95 % interval {} to {})",
            format_value(Some(l), unit),
            format_value(Some(u), unit)
        )),
        format_value(answers, "count"),
    );
    let mut card = None;
    for (prefix, against) in [
        ("change", previous(&this)),
        (
            "year_change",
            this.split_once('-')
                .map(|(y, m)| format!("{}-{m}", y.parse::<i32>().unwrap_or(0) - 1)),
        ),
    ] {
        let Some(against) = against else { continue };
        let (Some(change), Some(lower), Some(upper), Some(p)) = (
            cell(periods, prefix, row),
            cell(periods, &format!("{prefix}_lower"), row),
            cell(periods, &format!("{prefix}_upper"), row),
            cell(periods, &format!("{prefix}_p_value"), row),
        ) else {
            continue;
        };
        let real = p < alpha;
        let arrow = match (real, change > 0.0) {
            (true, true) => "▲ ",
            (true, false) => "▼ ",
            (false, _) => "",
        };
        numbers.push(vec![
            format!("change from {against}"),
            format!("{arrow}{}", signed(change, unit)),
            format!(
                "{} to {}",
                format_value(Some(lower), unit),
                format_value(Some(upper), unit)
            ),
            format!(
                "{} ({})",
                if real {
                    "a real change"
                } else {
                    "within the noise"
                },
                p_text(p)
            ),
        ]);
        sentence.push_str(&format!(
            " {} {} from {against}: {} ({}).",
            if change >= 0.0 { "Up" } else { "Down" },
            format_value(Some(change.abs()), unit),
            if real {
                "a real change"
            } else {
                "a change the answers cannot tell from chance"
            },
            p_text(p)
        ));
        if prefix == "change" {
            card = Some(format!(
                "{name} {this}{}",
                if real {
                    format!(", {arrow}{} vs {against}", signed(change, unit))
                } else {
                    ", no real change vs last month".to_owned()
                }
            ));
        }
    }
    let mut section = Section::new(
        metric,
        &format!("{name}, {this}"),
        format!(
            "{} The change from the month before and from the same month a year before is each a \
             single comparison, tested at the {} % level; an arrow marks only a change that passes.",
            if metric == "nps" {
                "NPS is the share of promoters (9–10) minus that of detractors (0–6)."
            } else {
                "CSAT is the share of answers in the top boxes."
            },
            grouped(100.0 * alpha, 0)
        ),
    );
    section.headline(
        &card.unwrap_or_else(|| format!("{name} {this}")),
        value,
        unit,
    );
    section.numbers(Numbers {
        caption: format!("{name} this month and its changes"),
        header: vec![
            "".into(),
            "value".into(),
            "95 % interval".into(),
            "answers / verdict".into(),
        ],
        rows: numbers,
    });
    Ok(Some((section, vec![Sentence(sentence)])))
}

fn params_without_period(params: &BTreeMap<String, ParamValue>) -> BTreeMap<String, ParamValue> {
    let mut params = params.clone();
    params.insert("period".to_owned(), ParamValue::String("none".to_owned()));
    params
}

/// `batch` with a `month` column (`2024-03`, UTC) from its `time` column, for group-by.
fn month_batch(batch: &RecordBatch, time: &str) -> Result<RecordBatch, Skip> {
    let months: Vec<Option<String>> = batch
        .column_by_name(time)
        .and_then(|c| {
            c.as_any()
                .downcast_ref::<arrow_array::TimestampMicrosecondArray>()
        })
        .map(|t| {
            t.iter()
                .map(|v| {
                    v.and_then(chrono::DateTime::from_timestamp_micros)
                        .map(|d| d.format("%Y-%m").to_string())
                })
                .collect()
        })
        .unwrap_or_else(|| vec![None; batch.num_rows()]);
    let mut columns: Vec<(String, ArrayRef)> = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| (f.name().clone(), Arc::clone(c)))
        .collect();
    columns.push(("month".to_owned(), Arc::new(StringArray::from(months))));
    RecordBatch::try_from_iter(columns).map_err(|e| Skip::Failed(crate::Refusal(e.to_string())))
}

/// Customer service in the month: each figure of the service plugin's periods table, with its
/// interval, beside the month before (not tested: read the intervals).
fn service_part(cx: &Context<'_>, month: &str) -> Result<Option<(Section, Vec<Sentence>)>, Skip> {
    let descriptor = cx.descriptor("service", &["customer_id", "opened_at"])?;
    let mut params = cx.params(descriptor, &[], &["period", "breakdown"])?;
    params.insert("period".to_owned(), ParamValue::String("month".to_owned()));
    let outcome = cx.compute("service", &params, cx.read(descriptor, &[])?, &[])?;
    let results = outcome.results.ok_or(Skip::NotApplicable)?;
    let Some(periods) = table::result_table(&results, "periods") else {
        return Ok(None);
    };
    let Some(row) = row_of(periods, "period", month) else {
        return Err(Skip::Failed(crate::Refusal(format!(
            "no contact was opened in {month}"
        ))));
    };
    let before = previous(month).and_then(|m| row_of(periods, "period", &m));
    let alpha = match params.get("confidence") {
        Some(ParamValue::Double(level)) => 1.0 - level,
        _ => 0.05,
    };
    let sla = |key: &str, default: f64| match params.get(key) {
        Some(ParamValue::Double(h)) => *h,
        _ => default,
    };
    let figures: [(&str, String, &str); 6] = [
        (
            "first_contact_resolution",
            "resolved at first contact".into(),
            "%",
        ),
        (
            "response_time_median",
            "median time to first response".into(),
            "hours",
        ),
        (
            "response_within_sla",
            format!(
                "answered within {} h (SLA)",
                grouped(sla("response_sla_hours", 24.0), 0)
            ),
            "%",
        ),
        (
            "resolution_time_median",
            "median time to resolution".into(),
            "hours",
        ),
        (
            "resolution_within_sla",
            format!(
                "resolved within {} h (SLA)",
                grouped(sla("resolution_sla_hours", 72.0), 0)
            ),
            "%",
        ),
        ("backlog", "open at the month's end".into(), "count"),
    ];
    let rows = figures
        .iter()
        .map(|(name, what, unit)| {
            let bounds = match (
                cell(periods, &format!("{name}_lower"), row),
                cell(periods, &format!("{name}_upper"), row),
            ) {
                (Some(l), Some(u)) => format!(
                    "{} to {}",
                    format_value(Some(l), unit),
                    format_value(Some(u), unit)
                ),
                _ => String::new(),
            };
            let change = match (
                cell(periods, &format!("{name}_change"), row),
                cell(periods, &format!("{name}_change_p_value"), row),
            ) {
                (Some(change), Some(p)) => {
                    let arrow = match (p < alpha, change > 0.0) {
                        (true, true) => "▲ ",
                        (true, false) => "▼ ",
                        (false, _) => "",
                    };
                    format!(
                        "{arrow}{} points, {} ({})",
                        signed(change, "points"),
                        if p < alpha {
                            "a real change"
                        } else {
                            "within the noise"
                        },
                        p_text(p)
                    )
                }
                _ if name.ends_with("_median") || *name == "backlog" => "not tested".to_owned(),
                _ => "–".to_owned(),
            };
            vec![
                what.clone(),
                format_value(cell(periods, name, row), unit),
                bounds,
                before.map_or_else(
                    || "–".to_owned(),
                    |b| format_value(cell(periods, name, b), unit),
                ),
                change,
            ]
        })
        .collect();
    let fcr = cell(periods, "first_contact_resolution", row);
    let within = cell(periods, "response_within_sla", row);
    let sentence = format!(
        "Customer service resolved {} of the month's {} contacts at first contact and answered {} within the {} h SLA; {} were open at the month's end.",
        format_value(fcr, "%"),
        format_value(cell(periods, "contacts", row), "count"),
        format_value(within, "%"),
        grouped(sla("response_sla_hours", 24.0), 0),
        format_value(cell(periods, "backlog", row), "count"),
    );
    let mut section = Section::new(
        "service",
        &format!("Customer service, {month}"),
        "The month's contacts: resolved at first contact (no repeat within the repeat window), \
         waiting times and the shares within the SLAs, each with its interval. Each share's change \
         from the month before is tested on its own (an arrow only where it passes); the waiting \
         times' medians are not tested: where their intervals overlap, read no change.",
    );
    section.headline("resolved at first contact", fcr, "%");
    section.numbers(Numbers {
        caption: format!("Customer service in {month}"),
        header: vec![
            "".into(),
            "value".into(),
            "95 % interval".into(),
            "month before".into(),
            "change".into(),
        ],
        rows,
    });
    Ok(Some((section, vec![Sentence(sentence)])))
}

/// Customers and revenue lost in the month, predicted from the purchase log.
fn churn_part(cx: &Context<'_>, month: &str) -> Result<Option<(Section, Vec<Sentence>)>, Skip> {
    let descriptor = cx.descriptor("retention", &["customer_id", "timestamp"])?;
    let (start, end) = month_bounds(month).ok_or(Skip::NotApplicable)?;
    let defaults = [
        ("period_start", start.clone()),
        ("period_end", end.clone()),
        ("observation_end", end.clone()),
        ("interval", "0.95".to_owned()),
    ];
    let params = cx.params(descriptor, &defaults, &["cohort_period"])?;
    let outcome = cx.compute("retention", &params, cx.read(descriptor, &[])?, &[])?;
    let results = outcome.results.ok_or(Skip::NotApplicable)?;
    let mut section = Section::new(
        "churn",
        &format!("Customers and revenue lost, {month}"),
        "Who left is predicted from the purchases (no contract says it): the expected customers \
         lost in the month and the revenue they brought, with intervals that cover the numbers \
         that happened.",
    );
    let identified = !results
        .warnings
        .iter()
        .any(|w| w.code == "fit_not_identified");
    for warning in results
        .warnings
        .iter()
        .filter(|w| w.code != "churn_predicted")
    {
        section.warn(&warning.message);
    }
    if identified {
        section.headline(
            "customers lost",
            table::scalar(&results, "churned_customers"),
            "count",
        );
    }
    section.numbers(Numbers::outputs(
        month.to_owned(),
        cx.descriptor("retention", &[])?,
        &results,
        &[
            "churned_customers",
            "churned_revenue",
            "retention_rate",
            "customers_at_start",
            "new_customers",
        ],
    ));
    let sentence = if identified {
        format!(
            "The purchase log says about {} customers were lost in {month}{}.",
            format_value(table::scalar(&results, "churned_customers"), "count"),
            table::scalar(&results, "churned_revenue").map_or_else(String::new, |r| format!(
                ", who had spent {}",
                format_value(Some(r), "currency")
            ))
        )
    } else {
        format!(
            "The purchase model does not identify its parameters for {month}: its churn figures are no finding."
        )
    };
    Ok(Some((section, vec![Sentence(sentence)])))
}

/// cx_outcomes' split for `month`: the outcome window (`window_days`, by default 180) ends
/// with the month, so the page shows the latest window that is over.
fn experience_defaults(cx: &Context<'_>, month: &str) -> Result<Vec<(&'static str, String)>, Skip> {
    let (_, next) = month_bounds(month).ok_or(Skip::NotApplicable)?;
    let days = cx
        .user_param("window_days")
        .and_then(|d| d.parse::<f64>().ok())
        .unwrap_or(180.0);
    let end =
        chrono::NaiveDate::parse_from_str(&next, "%Y-%m-%d").map_err(|_| Skip::NotApplicable)?;
    let split = end - chrono::Duration::seconds((days * 86_400.0) as i64);
    Ok(vec![
        ("split", split.format("%Y-%m-%d").to_string()),
        ("window_days", format!("{days}")),
    ])
}

/// What customers did after their survey answers: promoters, passives and detractors.
fn answers_part(cx: &Context<'_>, month: &str) -> Result<Option<(Section, Vec<Sentence>)>, Skip> {
    let defaults = experience_defaults(cx, month)?;
    let (section, sentence) = crate::cx::outcomes_section(
        cx,
        &defaults,
        "cx-outcomes-answers",
        "after their survey answers",
    )?;
    Ok(Some((section, vec![Sentence(sentence)])))
}

/// What customers did after a contact resolved, or not, at first contact.
fn resolution_part(
    cx: &Context<'_>,
    month: &str,
) -> Result<Option<(Section, Vec<Sentence>)>, Skip> {
    let defaults = experience_defaults(cx, month)?;
    let (section, sentence) = crate::cx::outcomes_section(
        cx,
        &defaults,
        "cx-outcomes-resolution",
        "after their contacts with customer service",
    )?;
    Ok(Some((section, vec![Sentence(sentence)])))
}

/// Each contact's first-contact resolution from `service` as cx_outcomes' experiences:
/// customer_id, timestamp (when opened) and outcome in words; unknown outcomes stay empty.
fn contact_outcomes(cx: &Context<'_>) -> Result<RecordBatch, Skip> {
    let descriptor = cx.descriptor("service", &["customer_id", "opened_at"])?;
    let mut params = cx.params(descriptor, &[], &["period", "breakdown", "contacts_table"])?;
    params.insert("period".to_owned(), ParamValue::String("none".to_owned()));
    params.insert("contacts_table".to_owned(), ParamValue::Bool(true));
    let outcome = cx.compute("service", &params, cx.read(descriptor, &[])?, &[])?;
    let results = outcome.results.ok_or(Skip::NotApplicable)?;
    let contacts = table::result_table(&results, "contacts").ok_or(Skip::NotApplicable)?;
    let column = |name: &str| {
        contacts.column_by_name(name).cloned().ok_or_else(|| {
            Skip::Failed(crate::Refusal(format!(
                "service's contacts table has no {name}"
            )))
        })
    };
    let resolved = column("first_contact_resolved")?;
    let resolved = resolved
        .as_any()
        .downcast_ref::<arrow_array::BooleanArray>()
        .ok_or_else(|| {
            Skip::Failed(crate::Refusal(
                "first_contact_resolved is not true/false".to_owned(),
            ))
        })?;
    let words: StringArray = resolved
        .iter()
        .map(|r| {
            r.map(|r| {
                if r {
                    "resolved at first contact"
                } else {
                    "not resolved at first contact"
                }
            })
        })
        .collect();
    RecordBatch::try_from_iter([
        ("customer_id", column("customer_id")?),
        ("timestamp", column("opened_at")?),
        ("outcome", Arc::new(words) as ArrayRef),
    ])
    .map_err(|e| Skip::Failed(crate::Refusal(e.to_string())))
}

/// `2024-12` → (`2024-12-01`, `2025-01-01`).
fn month_bounds(month: &str) -> Option<(String, String)> {
    let (year, m) = month.split_once('-')?;
    let (year, m): (i32, u32) = (year.parse().ok()?, m.parse().ok()?);
    let next = if m == 12 {
        format!("{}-01-01", year + 1)
    } else {
        format!("{year}-{:02}-01", m + 1)
    };
    Some((format!("{year}-{m:02}-01"), next))
}

/// What discounts cost in the month: every order line counted, so exact.
fn discount_part(cx: &Context<'_>, month: &str) -> Result<Option<(Section, Vec<Sentence>)>, Skip> {
    let descriptor = cx.descriptor(
        "price_gap",
        &["quantity", "target_price", "realized_price", "timestamp"],
    )?;
    let params = cx.params(descriptor, &[], &[])?;
    let mut with_time = descriptor.clone();
    if with_time.input_column("timestamp").is_none() {
        with_time = with_time.input(mittari_engine::ColumnSpec::timestamp(
            "timestamp",
            "when the line was ordered",
        ));
    }
    let batch = month_batch(&cx.read(&with_time, &[])?, "timestamp")?;
    let outcome = cx.compute("price_gap", &params, batch, &["month".to_owned()])?;
    let grouped = outcome.grouped.ok_or(Skip::NotApplicable)?;
    let labels = table::group_labels(&grouped);
    let Some(at) = labels.iter().position(|l| l == month) else {
        return Err(Skip::Failed(crate::Refusal(format!(
            "no order line falls in {month}"
        ))));
    };
    let value = |name: &str| {
        table::group_values(&grouped, name)
            .get(at)
            .copied()
            .flatten()
    };
    let before = previous(month).and_then(|m| labels.iter().position(|l| *l == m));
    let before_value = |name: &str| {
        before.and_then(|b| {
            table::group_values(&grouped, name)
                .get(b)
                .copied()
                .flatten()
        })
    };
    let figures = [
        (
            "discount_total",
            "discounts given (target − realized price × quantity)",
            "currency",
        ),
        (
            "price_realization",
            "price realization (realized / target revenue)",
            "%",
        ),
        ("share_below_target", "order lines sold below target", "%"),
        ("lines", "order lines", "count"),
    ];
    let mut section = Section::new(
        "discounts",
        &format!("What discounts cost, {month}"),
        "Every order line of the month is counted, so these are exact sums, not estimates: they \
         have no interval.",
    );
    section.headline("discounts given", value("discount_total"), "currency");
    section.numbers(Numbers {
        caption: format!("Discounts in {month}"),
        header: vec!["".into(), "value".into(), "month before".into()],
        rows: figures
            .iter()
            .map(|(name, what, unit)| {
                vec![
                    (*what).to_owned(),
                    format_value(value(name), unit),
                    format_value(before_value(name), unit),
                ]
            })
            .collect(),
    });
    let sentence = format!(
        "Discounts cost {} in {month} ({} of target revenue realized).",
        format_value(value("discount_total"), "currency"),
        format_value(value("price_realization"), "%")
    );
    Ok(Some((section, vec![Sentence(sentence)])))
}

/// What drives the score (every answer of the survey file), and which ratings moved in the
/// month: each rating's mean against the month before, called a move only when its
/// Holm-adjusted Welch test passes.
fn drivers_part(cx: &Context<'_>, month: &str) -> Result<Option<(Section, Vec<Sentence>)>, Skip> {
    // One computation gives the importances and, by month, the ratings' moves.
    let (mut section, results) = crate::drivers::section(cx, Some("month"))?;
    section.title = format!("What drives the score, and what moved in {month}");
    let mut said = Vec::new();
    if let Some((what, value)) = section.headline.first() {
        said.push(Sentence(format!(
            "The rating to improve first is {} ({value} of what the ratings explain).",
            what.trim_start_matches("fix first: ")
                .trim_end_matches(" (importance)")
        )));
    }
    let Some(changes) = table::result_table(&results, "changes") else {
        return Ok(Some((section, said)));
    };
    let periods = table::texts(changes, "period");
    let names = table::texts(changes, "rating");
    let significant = table::numbers(changes, "significant");
    let label = |name: &str| name.trim_start_matches("rating_").replace('_', " ");
    let mut rows = Vec::new();
    let mut moved = Vec::new();
    for i in (0..periods.len()).filter(|&i| periods[i] == month) {
        let value = |column: &str| cell(changes, column, i);
        let real = significant
            .get(i)
            .copied()
            .flatten()
            .is_some_and(|s| s > 0.5);
        let change = value("change");
        let arrow = match (real, change.is_some_and(|c| c > 0.0)) {
            (true, true) => "▲ ",
            (true, false) => "▼ ",
            (false, _) => "",
        };
        if real && let Some(change) = change {
            moved.push(format!(
                "{} {} {}",
                label(&names[i]),
                if change > 0.0 { "up" } else { "down" },
                format_value(Some(change.abs()), "score")
            ));
        }
        rows.push(vec![
            label(&names[i]),
            format_value(value("mean"), "score"),
            format_value(value("previous_mean"), "score"),
            change.map_or_else(
                || "–".to_owned(),
                |c| format!("{arrow}{}", signed(c, "score")),
            ),
            match (value("change_lower"), value("change_upper")) {
                (Some(l), Some(u)) => format!(
                    "{} to {}",
                    format_value(Some(l), "score"),
                    format_value(Some(u), "score")
                ),
                _ => String::new(),
            },
            value("p_adjusted").map_or_else(String::new, |p| {
                format!(
                    "{} ({}, Holm)",
                    if real { "moved" } else { "no real move" },
                    p_text(p)
                )
            }),
        ]);
    }
    if !rows.is_empty() {
        section.numbers(Numbers {
            caption: format!("Mean ratings in {month} against the month before: a move only where Welch's test, adjusted for the {} ratings (Holm), passes", rows.len()),
            header: vec!["rating".into(), "mean".into(), "month before".into(), "change".into(), "95 % interval".into(), "verdict".into()],
            rows,
        });
        said.push(Sentence(if moved.is_empty() {
            "No rating moved beyond chance from the month before.".to_owned()
        } else {
            format!(
                "Ratings that moved from the month before: {}.",
                moved.join(", ")
            )
        }));
    }
    Ok(Some((section, said)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_step_back_and_bound() {
        assert_eq!(previous("2024-01").as_deref(), Some("2023-12"));
        assert_eq!(previous("2024-12").as_deref(), Some("2024-11"));
        assert_eq!(
            month_bounds("2024-12"),
            Some(("2024-12-01".into(), "2025-01-01".into()))
        );
        assert_eq!(previous("last month"), None);
    }
}
