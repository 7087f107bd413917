use serde::{Deserialize, Serialize};

/// Why a metric could not compute. Returned from [`crate::Metric::compute`]; the server turns
/// `InvalidInput` and `InvalidParameter` into INVALID_ARGUMENT with a field violation,
/// `IncompatibleState` into FAILED_PRECONDITION and `Failed` into INTERNAL.
///
/// Messages are lowercase, say what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum MetricError {
    /// The input data cannot be used: `column` (when one is at fault) and `row` (0-based, in
    /// the table the plugin received; the engine maps it back to the request's row).
    #[error("{}", describe_input(.column, .row, .message))]
    InvalidInput {
        column: Option<String>,
        row: Option<u64>,
        message: String,
    },
    /// A parameter's value cannot be used.
    #[error("parameter {name}: {message}")]
    InvalidParameter { name: String, message: String },
    /// The metric itself failed: a bug or an unexpected condition, not the caller's fault.
    #[error("{message}")]
    Failed { message: String },
    /// The computation stopped because the host cancelled it ([`crate::Input::check_cancelled`]).
    #[error("the computation was cancelled")]
    Cancelled,
    /// A stored model's state that this version of the metric cannot read
    /// ([`crate::state::StoredState::decode`]); the server answers FAILED_PRECONDITION.
    #[error("{message}")]
    IncompatibleState { message: String },
}

fn describe_input(column: &Option<String>, row: &Option<u64>, message: &str) -> String {
    match (column, row) {
        (Some(c), Some(r)) => format!("column {c}, row {r}: {message}"),
        (Some(c), None) => format!("column {c}: {message}"),
        (None, Some(r)) => format!("row {r}: {message}"),
        (None, None) => message.to_owned(),
    }
}

impl MetricError {
    /// A problem with the input as a whole, for example no rows.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        MetricError::InvalidInput {
            column: None,
            row: None,
            message: message.into(),
        }
    }
    /// A problem with one column as a whole.
    pub fn invalid_column(column: &str, message: impl Into<String>) -> Self {
        MetricError::InvalidInput {
            column: Some(column.to_owned()),
            row: None,
            message: message.into(),
        }
    }
    /// A problem with one value: `row` is the 0-based row in the batch the plugin received.
    pub fn invalid_value(column: &str, row: usize, message: impl Into<String>) -> Self {
        MetricError::InvalidInput {
            column: Some(column.to_owned()),
            row: Some(row as u64),
            message: message.into(),
        }
    }
    pub fn invalid_parameter(name: &str, message: impl Into<String>) -> Self {
        MetricError::InvalidParameter {
            name: name.to_owned(),
            message: message.into(),
        }
    }
    pub fn failed(message: impl Into<String>) -> Self {
        MetricError::Failed {
            message: message.into(),
        }
    }
}
