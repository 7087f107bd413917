//! The one place errors become gRPC statuses.

use std::collections::HashMap;
use std::time::Duration;

use mittari_engine::{EngineError, Field};

use crate::state::ChangeError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// The `google.rpc.ErrorInfo` domain of Mittari's errors.
pub(crate) const ERROR_DOMAIN: &str = "mittari.v1";

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(
        "the streamed input exceeds the server's limit of {limit} bytes; split it into several requests or raise server.max_stream_bytes"
    )]
    StreamTooLarge { limit: u64 },
    #[error("{0}")]
    BadStream(String),
    /// An input that needs more memory than the server's budget could ever give it.
    #[error("{0}")]
    InputTooLarge(String),
    /// A shared resource is used up for now; the client should retry later.
    #[error("{0}; retry with backoff")]
    Busy(String),
    #[error(
        "the result needs at least {bytes} bytes, more than the server sends in one message ({limit}, server.max_message_bytes); ask for fewer groups or rows (for example a top parameter)"
    )]
    ResponseTooLarge { bytes: usize, limit: usize },
    /// A failure reading the request off the wire, already a status.
    #[error("{}", .0.message())]
    Transport(Status),
    /// The model store refused or failed.
    #[error(transparent)]
    Store(#[from] mittari_store::StoreError),
    /// A failure of the server itself, not of the request or a metric.
    #[error("internal error: {0}")]
    Internal(String),
    /// An admin's change (reload, metric switch) that was refused.
    #[error(transparent)]
    Change(#[from] crate::state::ChangeError),
}

/// Maps an error to its gRPC status:
/// unknown metric → NOT_FOUND; bad input or parameter → INVALID_ARGUMENT with
/// `google.rpc.BadRequest` field violations and a `google.rpc.ErrorInfo`; a failing or panicking
/// plugin → INTERNAL; overload or too large an input → RESOURCE_EXHAUSTED.
pub fn to_status(error: &ServiceError) -> Status {
    let message = error.to_string();
    match error {
        ServiceError::Engine(
            EngineError::UnknownMetric { name, .. } | EngineError::MetricDisabled { name, .. },
        ) => {
            let reason = match error {
                ServiceError::Engine(EngineError::MetricDisabled { .. }) => "METRIC_DISABLED",
                _ => "UNKNOWN_METRIC",
            };
            let mut details = ErrorDetails::new();
            details.set_error_info(
                reason,
                ERROR_DOMAIN,
                HashMap::from([("metric".to_owned(), name.clone())]),
            );
            details.set_resource_info(
                "metric",
                name,
                "",
                "list the available metrics with ListMetrics",
            );
            Status::with_error_details(Code::NotFound, message, details)
        }
        ServiceError::Engine(EngineError::InvalidArgument { violations }) => {
            let field_violations: Vec<FieldViolation> = violations
                .iter()
                .map(|v| FieldViolation::new(v.field.path(), &v.description))
                .collect();
            let mut details = ErrorDetails::with_bad_request(field_violations);
            // The first violation's facts as metadata, for clients that read ErrorInfo only.
            let mut metadata = HashMap::new();
            if let Some(first) = violations.first() {
                metadata.insert("field".to_owned(), first.field.path());
                match &first.field {
                    Field::Column { name, row } => {
                        metadata.insert("column".to_owned(), name.clone());
                        if let Some(row) = row {
                            metadata.insert("row".to_owned(), row.to_string());
                        }
                    }
                    Field::Parameter { name } => {
                        metadata.insert("parameter".to_owned(), name.clone());
                    }
                    Field::GroupBy { name } => {
                        metadata.insert("group_by".to_owned(), name.clone());
                    }
                    Field::Table { table, column, row } => {
                        metadata.insert("table".to_owned(), table.clone());
                        if let Some(column) = column {
                            metadata.insert("column".to_owned(), column.clone());
                        }
                        if let Some(row) = row {
                            metadata.insert("row".to_owned(), row.to_string());
                        }
                    }
                    Field::Input => {}
                }
            }
            details.set_error_info("INVALID_ARGUMENT", ERROR_DOMAIN, metadata);
            Status::with_error_details(Code::InvalidArgument, message, details)
        }
        ServiceError::BadStream(_) => Status::invalid_argument(message),
        ServiceError::Engine(EngineError::MetricFailed { .. }) | ServiceError::Internal(_) => {
            Status::internal(message)
        }
        ServiceError::Engine(EngineError::Overloaded { .. }) => Status::with_error_details(
            Code::ResourceExhausted,
            message,
            ErrorDetails::with_retry_info(Some(Duration::from_secs(1))),
        ),
        ServiceError::StreamTooLarge { .. }
        | ServiceError::ResponseTooLarge { .. }
        | ServiceError::InputTooLarge(_) => Status::resource_exhausted(message),
        ServiceError::Busy(_) => Status::with_error_details(
            Code::ResourceExhausted,
            message,
            ErrorDetails::with_retry_info(Some(Duration::from_secs(1))),
        ),
        ServiceError::Transport(status) => status.clone(),
        ServiceError::Change(change) => match change {
            ChangeError::Metric(engine) => to_status(&ServiceError::Engine(engine.clone())),
            ChangeError::Config(_) | ChangeError::Engine(_) => Status::failed_precondition(message),
            ChangeError::Internal(_) => Status::internal(message),
        },
        ServiceError::Engine(EngineError::Cancelled) => Status::cancelled(message),
        ServiceError::Store(store) => {
            use mittari_store::StoreError;
            let code = match store {
                StoreError::NotFound { .. } => Code::NotFound,
                StoreError::Aliased { .. } | StoreError::SchemaTooNew { .. } => {
                    Code::FailedPrecondition
                }
                StoreError::InvalidReference(_) => Code::InvalidArgument,
                StoreError::Damaged { .. } => Code::DataLoss,
                StoreError::Database { .. } => Code::Unavailable,
                StoreError::UnknownUrl(_) => Code::Internal,
            };
            Status::new(code, message)
        }
        ServiceError::Engine(EngineError::IncompatibleModel { metric, .. }) => {
            let mut details = ErrorDetails::new();
            details.set_error_info(
                "INCOMPATIBLE_MODEL",
                ERROR_DOMAIN,
                HashMap::from([("metric".to_owned(), metric.clone())]),
            );
            Status::with_error_details(Code::FailedPrecondition, message, details)
        }
        // Servers set the limit and map this to ResponseTooLarge; a caller without a limit
        // never sees it.
        ServiceError::Engine(EngineError::ResultTooLarge { .. }) => {
            Status::resource_exhausted(message)
        }
    }
}

impl ServiceError {
    /// A status from reading a request off the wire, with the codes gRPC clients expect: a
    /// message over the size limit is RESOURCE_EXHAUSTED (tonic says OUT_OF_RANGE), a message
    /// that is not valid protobuf INVALID_ARGUMENT (tonic says INTERNAL).
    pub(crate) fn from_transport(status: Status) -> ServiceError {
        ServiceError::Transport(wire_status(status))
    }
}

/// See [`ServiceError::from_transport`].
pub(crate) fn wire_status(status: Status) -> Status {
    match status.code() {
        Code::OutOfRange if status.message().contains("message length too large") => {
            Status::resource_exhausted(format!(
                "{}; split the input with ComputeStream or raise server.max_message_bytes",
                status.message()
            ))
        }
        Code::Internal if status.message().contains("failed to decode") => {
            Status::invalid_argument(format!(
                "the request is not a valid protobuf message: {}",
                status.message()
            ))
        }
        _ => status,
    }
}

/// [`wire_status`] for statuses tonic answers itself, before a handler runs (a unary request
/// that is too large or not protobuf): rewrites the status of a trailers-only response.
pub(crate) fn remap_wire_codes<B>(mut response: http::Response<B>) -> http::Response<B> {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    let code = status.code();
    let remapped = wire_status(status);
    if remapped.code() != code {
        // Only fails for a message that cannot be a header value; the original then stays.
        let _ = remapped.add_header(response.headers_mut());
    }
    response
}

/// Longest piece of a client's text quoted back in a message or a log line.
const MAX_QUOTED_CHARS: usize = 120;

/// A client-supplied string (a metric or column name) fit to quote in a message or a log
/// line: control characters escaped, so it cannot forge lines, and cut to
/// [`MAX_QUOTED_CHARS`], so a 10 MB name is not echoed back.
pub(crate) fn user_text(text: &str) -> String {
    let mut quoted: String = text
        .chars()
        .take(MAX_QUOTED_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(MAX_QUOTED_CHARS).is_some() {
        quoted.push_str(&format!("… ({} bytes)", text.len()));
    }
    quoted
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Status {
        to_status(&error)
    }
}

/// A message fit for a caller without the admin scope: every absolute file-system path in it
/// is replaced by `<path>`. Paths tell an attacker how the host is laid out, and only admins
/// need them (to fix a plugin or a configuration file).
pub(crate) fn hide_paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (index, word) in text.split(' ').enumerate() {
        if index > 0 {
            out.push(' ');
        }
        // A path may be quoted or bracketed: keep what surrounds it.
        let start = word
            .find(|c: char| !matches!(c, '"' | '\'' | '(' | '[' | '`'))
            .unwrap_or(word.len());
        let core = &word[start..];
        let is_path = core.len() > 1
            && (core.starts_with('/') || core.starts_with("~/"))
            && core[1..].contains(|c: char| c.is_alphanumeric());
        if is_path {
            let end = core
                .rfind(|c: char| !matches!(c, '"' | '\'' | ')' | ']' | '`' | ',' | ';' | ':' | '.'))
                .map_or(core.len(), |i| {
                    i + core[i..].chars().next().map_or(1, char::len_utf8)
                });
            out.push_str(&word[..start]);
            out.push_str("<path>");
            out.push_str(&core[end..]);
        } else {
            out.push_str(word);
        }
    }
    out
}

/// [`hide_paths`] applied to the status of a trailers-only response (every error Mittari's
/// services return), its message and its field violations.
pub(crate) fn hide_paths_in_response<B>(mut response: http::Response<B>) -> http::Response<B> {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    let hidden_message = hide_paths(status.message());
    let mut details = status.get_error_details();
    let mut changed = hidden_message != status.message();
    if let Some(bad_request) = details.bad_request() {
        let mut violations = bad_request.field_violations.clone();
        for violation in &mut violations {
            let hidden = hide_paths(&violation.description);
            changed |= hidden != violation.description;
            violation.description = hidden;
        }
        details.set_bad_request(violations);
    }
    if changed {
        let hidden = Status::with_error_details(status.code(), hidden_message, details);
        response.headers_mut().remove("grpc-status-details-bin");
        // Only fails for a message that cannot be a header value; the status is then replaced
        // by one that says no more than its code.
        if hidden.add_header(response.headers_mut()).is_err() {
            let _ = Status::new(status.code(), "the error message was withheld")
                .add_header(response.headers_mut());
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_hidden_and_the_rest_kept() {
        let check = |text: &str, expect: &str| assert_eq!(hide_paths(text), expect, "{text}");
        check(
            "cannot read /etc/mittari/plugins/libx.so: denied",
            "cannot read <path>: denied",
        );
        check(
            "library \"/opt/p/lib.so\" failed",
            "library \"<path>\" failed",
        );
        check("(see /tmp/x).", "(see <path>).");
        check("churn = 100 / S", "churn = 100 / S");
        check(
            "input.score[3]: must be 0–10",
            "input.score[3]: must be 0–10",
        );
        check("home ~/plugins/x.so", "home <path>");
        check("", "");
    }

    #[test]
    fn paths_are_hidden_in_statuses_and_their_violations() {
        let details = ErrorDetails::with_bad_request(vec![FieldViolation::new(
            "input",
            "cannot open /srv/data/x.csv",
        )]);
        let status = Status::with_error_details(
            Code::InvalidArgument,
            "metric failed at /home/u/src/lib.rs:3",
            details,
        );
        let response = hide_paths_in_response(status.into_http::<()>());
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "metric failed at <path>");
        let violations = status.get_details_bad_request().unwrap().field_violations;
        assert_eq!(violations[0].description, "cannot open <path>");
    }
}
