use std::path::PathBuf;

/// What a request field violation points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// The input table as a whole (for example: no rows).
    Input,
    /// An input column, and the 0-based request row when one value is at fault.
    Column {
        name: String,
        row: Option<u64>,
    },
    Parameter {
        name: String,
    },
    GroupBy {
        name: String,
    },
    /// A table input ([`mittari_sdk::TableInputSpec`]) as a whole, or one of its columns, and
    /// the 0-based row of that table when one value is at fault.
    Table {
        table: String,
        column: Option<String>,
        row: Option<u64>,
    },
}

impl Field {
    /// The path clients see in `google.rpc.BadRequest.FieldViolation.field`: `input`,
    /// `input.score`, `input.score[3]`, `parameters.confidence` or `group_by.region`.
    pub fn path(&self) -> String {
        match self {
            Field::Input => "input".to_owned(),
            Field::Column { name, row: None } => format!("input.{name}"),
            Field::Column {
                name,
                row: Some(row),
            } => format!("input.{name}[{row}]"),
            Field::Parameter { name } => format!("parameters.{name}"),
            Field::GroupBy { name } => format!("group_by.{name}"),
            Field::Table { table, column, row } => {
                let mut path = format!("tables.{table}");
                if let Some(column) = column {
                    path.push('.');
                    path.push_str(column);
                }
                if let Some(row) = row {
                    path.push_str(&format!("[{row}]"));
                }
                path
            }
        }
    }
}

/// One thing wrong with a request, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: Field,
    pub description: String,
}

impl Violation {
    pub fn new(field: Field, description: impl Into<String>) -> Self {
        Violation {
            field,
            description: description.into(),
        }
    }
}

/// " (did you mean nps?)" for the served name closest to `name`, when one is close: a typo
/// (`npss`, `NPS`, `retension`) is answered with the fix.
fn closest(name: &str, available: &[String]) -> String {
    let wanted = name.to_lowercase();
    available
        .iter()
        .map(|candidate| {
            (
                strsim::jaro_winkler(&candidate.to_lowercase(), &wanted),
                candidate,
            )
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map_or_else(String::new, |(_, candidate)| {
            format!(" (did you mean {candidate}?)")
        })
}

/// Why a request failed. The server maps each variant to one gRPC status code in one place.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("unknown metric {name:?}{}; this server has: {}", closest(name, available), available.join(", "))]
    UnknownMetric {
        name: String,
        available: Vec<String>,
    },
    #[error("metric {name:?} is disabled on this server (an admin can enable it); enabled: {}", available.join(", "))]
    MetricDisabled {
        name: String,
        available: Vec<String>,
    },
    #[error("{}", violations.iter().map(|v| format!("{}: {}", v.field.path(), v.description)).collect::<Vec<_>>().join("; "))]
    InvalidArgument { violations: Vec<Violation> },
    #[error("metric {metric} failed: {message}")]
    MetricFailed { metric: String, message: String },
    #[error(
        "the server is busy: {running} computations are running and {queued} are queued; retry with backoff"
    )]
    Overloaded { running: usize, queued: usize },
    /// The results grew past the size the caller can accept
    /// ([`crate::ComputeRequest::max_result_bytes`]); the rest was not computed.
    #[error("the result needs at least {at_least} bytes, more than the caller accepts ({limit})")]
    ResultTooLarge { at_least: usize, limit: usize },
    /// The computation was cancelled, normally because its client gave up.
    #[error("the computation was cancelled")]
    Cancelled,
    /// A stored model this metric cannot score with: fitted by a version whose state it cannot
    /// read, by another metric, or the metric has no fitted models.
    #[error("metric {metric}: {message}")]
    IncompatibleModel { metric: String, message: String },
}

impl EngineError {
    pub(crate) fn invalid(field: Field, description: impl Into<String>) -> Self {
        EngineError::InvalidArgument {
            violations: vec![Violation::new(field, description)],
        }
    }
}

/// Why the engine could not start. Configuration problems name the configuration key.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{key}: {message}")]
    Config { key: String, message: String },
    #[error(
        "plugin directory {} does not exist; build the bundled plugins with `cargo build --workspace` or set plugins.dir",
        dir.display()
    )]
    MissingPluginDir { dir: PathBuf },
    #[error(
        "cannot create a private directory for plugin copies: {source}; set TMPDIR to a writable directory"
    )]
    Staging { source: std::io::Error },
    #[error("cannot read plugin directory {}: {source}", dir.display())]
    UnreadablePluginDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no usable metric plugin in {}: {detail}; build the bundled plugins with `cargo build --workspace` or set plugins.dir",
        dir.display()
    )]
    NoMetrics { dir: PathBuf, detail: String },
    #[error("refused plugin libraries: {detail}")]
    RefusedLibraries { count: usize, detail: String },
}

impl StartupError {
    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        StartupError::Config {
            key: key.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_metric_is_answered_with_the_closest_served_one() {
        let available: Vec<String> = ["nps", "csat", "retention", "retention_forecast", "clv"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        for (name, expect) in [
            ("npss", Some("nps")),
            ("NPS", Some("nps")),
            ("retension", Some("retention")),
            ("order_share", None),
        ] {
            let message = EngineError::UnknownMetric {
                name: name.to_owned(),
                available: available.clone(),
            }
            .to_string();
            match expect {
                Some(fix) => assert!(
                    message.contains(&format!("(did you mean {fix}?)")),
                    "{message}"
                ),
                None => assert!(!message.contains("did you mean"), "{message}"),
            }
        }
    }
}
