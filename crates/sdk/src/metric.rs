use crate::{Input, MetricDescriptor, MetricError, Output, Params};

/// A metric a plugin provides.
///
/// The engine calls [`Metric::compute`] from several threads at once (one call per request,
/// and one per group with group-by), hence `Send + Sync`; keep per-call state on the stack.
pub trait Metric: Send + Sync {
    /// The metric's descriptor. Called once when the library is loaded.
    fn descriptor(&self) -> MetricDescriptor;

    /// Computes the metric. `input` holds the declared columns the request provided, validated
    /// against the descriptor; `params` holds every parameter with a value (request, then the
    /// admin's configured default, then the descriptor's default), each conformed to its
    /// declared type and range.
    ///
    /// Return [`MetricError::InvalidInput`] for data the metric cannot use (naming the column
    /// and row) and [`crate::Scalar::undefined`] for a value that does not exist for this input;
    /// never a NaN or an infinity.
    fn compute(&self, input: &Input<'_>, params: &Params) -> Result<Output, MetricError>;
}
