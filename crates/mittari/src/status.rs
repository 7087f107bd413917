//! The one place errors become gRPC statuses.

use std::collections::HashMap;
use std::time::Duration;

use mittari_engine::{EngineError, Field};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// The `google.rpc.ErrorInfo` domain of Mittari's errors.
pub(crate) const ERROR_DOMAIN: &str = "mittari.v1";

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServiceError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(
        "the streamed input exceeds the server's limit of {limit} bytes; split it into several requests or raise server.max_stream_bytes"
    )]
    StreamTooLarge { limit: u64 },
    #[error("{0}")]
    BadStream(String),
    /// A failure of the server itself, not of the request or a metric.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Maps an error to its gRPC status:
/// unknown metric → NOT_FOUND; bad input or parameter → INVALID_ARGUMENT with
/// `google.rpc.BadRequest` field violations and a `google.rpc.ErrorInfo`; a failing or panicking
/// plugin → INTERNAL; overload or too large an input → RESOURCE_EXHAUSTED.
pub(crate) fn to_status(error: &ServiceError) -> Status {
    let message = error.to_string();
    match error {
        ServiceError::Engine(EngineError::UnknownMetric { name, .. }) => {
            let mut details = ErrorDetails::new();
            details.set_error_info(
                "UNKNOWN_METRIC",
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
        ServiceError::StreamTooLarge { .. } => Status::resource_exhausted(message),
        ServiceError::Engine(EngineError::Cancelled) => Status::cancelled(message),
    }
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Status {
        to_status(&error)
    }
}
