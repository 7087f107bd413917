//! What a descriptor's users meet but a server does not refuse: text with runs of spaces, an
//! unknown unit, a name that is not snake_case, a range whose ends are swapped.
//!
//! [`MetricDescriptor::check`] refuses what would break requests; [`MetricDescriptor::lint`]
//! also finds what would confuse the people reading `mittari metrics` and the clients built on
//! the descriptor. `mittari plugin check` fails on either; a plugin's own unit tests can call
//! `lint()` to find them sooner.

use crate::{DataType, MetricDescriptor, Range};

/// The units an output may have, as `mittari metrics` and the clients show them.
pub const KNOWN_UNITS: &[&str] = &[
    "%",
    "count",
    "currency",
    "fraction",
    "ratio",
    "points",
    "score",
    "periods",
    "hours",
    "days",
    "weeks",
    "years",
    "per year",
    "parameter",
    "log-likelihood",
    "customers",
    "contacts",
    "transactions",
    "probability",
    "time units",
    "opportunities",
    "id",
    "statistic",
];

impl MetricDescriptor {
    /// Every problem in the descriptor, [`MetricDescriptor::check`]'s first, each naming the
    /// item it is about; empty when there is none.
    pub fn lint(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(problem) = self.check() {
            problems.push(problem);
        }
        let texts = [
            ("summary".to_owned(), &self.summary),
            ("description".to_owned(), &self.description),
        ]
        .into_iter()
        .chain(
            self.inputs
                .iter()
                .map(|c| (format!("input {:?}", c.name), &c.description)),
        )
        .chain(
            self.parameters
                .iter()
                .map(|p| (format!("parameter {:?}", p.name), &p.description)),
        )
        .chain(
            self.outputs
                .iter()
                .map(|o| (format!("output {:?}", o.name), &o.description)),
        )
        .chain(
            self.tables
                .iter()
                .map(|t| (format!("table {:?}", t.name), &t.description)),
        );
        for (what, text) in texts {
            if let Some(problem) = text_problem(text) {
                problems.push(format!("{what}: {problem}"));
            }
        }

        for column in &self.inputs {
            if !is_identifier(&column.name) {
                problems.push(format!(
                    "input {:?}: a column name is letters, digits and underscores, not starting with a digit",
                    column.name
                ));
            }
            problems.extend(range_problem(
                &format!("input {:?}", column.name),
                column.data_type,
                column.range,
            ));
        }
        for parameter in &self.parameters {
            let what = format!("parameter {:?}", parameter.name);
            problems.extend(range_problem(&what, parameter.data_type, parameter.range));
            if !parameter.allowed_values.is_empty() {
                if parameter.data_type != DataType::String {
                    problems.push(format!(
                        "{what}: allowed values apply to string parameters, but it is {}",
                        parameter.data_type
                    ));
                }
                let mut seen = std::collections::HashSet::new();
                if let Some(twice) = parameter.allowed_values.iter().find(|v| !seen.insert(*v)) {
                    problems.push(format!("{what}: allowed value {twice:?} is listed twice"));
                }
            }
        }
        for output in &self.outputs {
            if !is_snake_case(&output.name) {
                problems.push(format!(
                    "output {:?}: names are lowercase snake_case",
                    output.name
                ));
            }
            if !KNOWN_UNITS.contains(&output.unit.as_str()) {
                problems.push(format!(
                    "output {:?}: unit {:?} is not one of {}",
                    output.name,
                    output.unit,
                    KNOWN_UNITS.join(", ")
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for table in &self.tables {
            if !is_snake_case(&table.name) {
                problems.push(format!(
                    "table {:?}: names are lowercase snake_case",
                    table.name
                ));
            }
            if !seen.insert(&table.name) {
                problems.push(format!("table {:?}: declared twice", table.name));
            }
            let mut columns = std::collections::HashSet::new();
            for column in &table.columns {
                let what = format!("table {:?} column {:?}", table.name, column.name);
                if !is_identifier(&column.name) {
                    problems.push(format!(
                        "{what}: a column name is letters, digits and underscores, not starting with a digit"
                    ));
                }
                if !columns.insert(&column.name) {
                    problems.push(format!("{what}: declared twice"));
                }
                if !KNOWN_UNITS.contains(&column.unit.as_str()) {
                    problems.push(format!(
                        "{what}: unit {:?} is not one of {}",
                        column.unit,
                        KNOWN_UNITS.join(", ")
                    ));
                }
                if let Some(problem) = text_problem(&column.description) {
                    problems.push(format!("{what}: {problem}"));
                }
            }
        }
        problems
    }
}

/// Why `text` would print badly, if it would: missing, or with whitespace other than single
/// spaces between words (often a long string literal broken across source lines).
fn text_problem(text: &str) -> Option<String> {
    if text.trim().is_empty() {
        return Some("the description is missing".to_owned());
    }
    if text.trim() != text {
        return Some("starts or ends with whitespace".to_owned());
    }
    if let Some(at) = text.find(|c: char| c.is_whitespace() && c != ' ') {
        return Some(format!(
            "has a tab or line break at byte {at} ({:?}); join the text with single spaces",
            excerpt(text, at)
        ));
    }
    if let Some(at) = text.find("  ") {
        let run = text[at..].chars().take_while(|c| *c == ' ').count();
        return Some(format!(
            "has a run of {run} spaces at byte {at} ({:?}); join the text with single spaces",
            excerpt(text, at)
        ));
    }
    None
}

/// About 20 characters of `text` either side of byte `at`.
fn excerpt(text: &str, at: usize) -> String {
    let start = text[..at]
        .char_indices()
        .rev()
        .nth(19)
        .map_or(0, |(index, _)| index);
    let end = text[at..]
        .char_indices()
        .nth(40)
        .map_or(text.len(), |(index, _)| at + index);
    text[start..end].to_owned()
}

fn range_problem(what: &str, data_type: DataType, range: Option<Range>) -> Option<String> {
    let range = range?;
    if !data_type.is_numeric() {
        return Some(format!(
            "{what}: a range applies to numbers, not {data_type}"
        ));
    }
    let (min, max) = (range.min, range.max);
    if min.is_some_and(f64::is_nan) || max.is_some_and(f64::is_nan) {
        return Some(format!("{what}: a range bound is NaN"));
    }
    match (min, max) {
        (Some(min), Some(max)) if min > max => Some(format!(
            "{what}: the range's minimum {min} is above its maximum {max}"
        )),
        _ => None,
    }
}

/// Whether `name` is lowercase snake_case as metric, parameter and output names are: a letter
/// first, then lowercase letters, digits and single underscores, no trailing underscore.
pub fn is_snake_case(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with('_')
        && !name.contains("__")
}

/// Input columns name columns of the user's data, which follow other conventions (Python's
/// lifetimes calls the observation length `T`): letters are allowed in either case.
fn is_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use crate::{ColumnSpec, MetricDescriptor, OutputSpec, ParameterSpec};

    fn base() -> MetricDescriptor {
        MetricDescriptor::new("orders", "1.0.0", "orders above a threshold")
            .description("Counts orders whose amount is above the threshold.")
            .input(ColumnSpec::double("amount", "order value").required())
            .parameter(ParameterSpec::double(
                "threshold",
                0.0,
                "count orders above this",
            ))
            .output(OutputSpec::new(
                "orders",
                "count",
                "orders above the threshold",
            ))
    }

    fn check(change: impl FnOnce(MetricDescriptor) -> MetricDescriptor, expect: &[&str]) {
        let problems = change(base()).lint();
        assert_eq!(problems, expect, "{problems:#?}");
    }

    #[test]
    fn a_clean_descriptor_has_no_problem() {
        check(|d| d, &[]);
    }

    #[test]
    fn text_with_runs_of_whitespace_is_found() {
        check(
            |d| {
                d.description("Counts orders whose amount is                  above the threshold.")
            },
            &[
                "description: has a run of 18 spaces at byte 29 (\"ders whose amount is                  above the threshold.\"); join the text with single spaces",
            ],
        );
        check(
            |d| d.description("Counts orders\nabove the threshold."),
            &[
                "description: has a tab or line break at byte 13 (\"Counts orders\\nabove the threshold.\"); join the text with single spaces",
            ],
        );
        check(
            |d| d.description(""),
            &["description: the description is missing"],
        );
        check(
            |d| d.input(ColumnSpec::string("region", " where ")),
            &["input \"region\": starts or ends with whitespace"],
        );
    }

    #[test]
    fn names_units_and_ranges_are_checked() {
        check(
            |d| d.output(OutputSpec::new("Share", "percent", "share of orders")),
            &[
                "output \"Share\": names are lowercase snake_case",
                "output \"Share\": unit \"percent\" is not one of %, count, currency, fraction, ratio, points, score, periods, hours, days, weeks, years, per year, parameter, log-likelihood, customers, contacts, transactions, probability, time units, opportunities, id, statistic",
            ],
        );
        check(
            |d| d.input(ColumnSpec::double("2nd", "second amount")),
            &[
                "input \"2nd\": a column name is letters, digits and underscores, not starting with a digit",
            ],
        );
        check(
            |d| d.input(ColumnSpec::double("T", "observation length").range(5.0, 1.0)),
            &["input \"T\": the range's minimum 5 is above its maximum 1"],
        );
        check(
            |d| d.input(ColumnSpec::string("region", "where").range(0.0, 1.0)),
            &["input \"region\": a range applies to numbers, not string"],
        );
        check(
            |d| d.table("orders", "the orders").table("orders", "again"),
            &["table \"orders\": declared twice"],
        );
    }

    #[test]
    fn a_group_comparison_names_what_is_declared() {
        let comparing = |d: MetricDescriptor| {
            d.parameter(ParameterSpec::columns(
                "compare",
                "the column to compare by",
            ))
            .table_with_columns(
                "segments",
                "each segment against the rest",
                [
                    OutputSpec::new("segment", "id", "the segment"),
                    OutputSpec::new("difference", "count", "its orders minus the rest's"),
                ],
            )
        };
        check(
            |d| {
                comparing(d).compares_groups(
                    "compare",
                    "segments",
                    &[("difference", "vs_rest")],
                    "threshold",
                )
            },
            &[],
        );
        check(
            |d| {
                comparing(d).compares_groups(
                    "compare",
                    "segment",
                    &[("difference", "vs_rest")],
                    "threshold",
                )
            },
            &["the group comparison reads table \"segment\", which is not declared"],
        );
        check(
            |d| {
                comparing(d).compares_groups(
                    "compare",
                    "segments",
                    &[("gap", "vs_rest")],
                    "threshold",
                )
            },
            &[
                "the group comparison reads column \"gap\" of table \"segments\", which does not declare it",
            ],
        );
        check(
            |d| {
                comparing(d).compares_groups(
                    "compare",
                    "segments",
                    &[("difference", "orders")],
                    "threshold",
                )
            },
            &[
                "the group comparison's output \"orders\" is not snake_case or is also a declared output",
            ],
        );
        check(
            |d| {
                comparing(d).compares_groups(
                    "by",
                    "segments",
                    &[("difference", "vs_rest")],
                    "threshold",
                )
            },
            &["the group comparison uses parameter \"by\", which is not declared"],
        );
    }

    #[test]
    fn check_problems_come_first() {
        check(
            |d| d.parameter(ParameterSpec::double("cap", 5.0, "upper cap").range(0.0, 1.0)),
            &["default of parameter \"cap\" is invalid: 5 is outside the allowed range 0..=1"],
        );
    }
}
