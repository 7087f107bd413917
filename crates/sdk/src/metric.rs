use crate::state::{FittedModel, StoredState};
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

    /// Fits the metric's model to `input` and returns its state, for a metric whose descriptor
    /// declares it fittable ([`MetricDescriptor::fitted`]); the host stores the state and
    /// hands it to [`Metric::score`]. `params` as for `compute`. The output is what `compute`
    /// would return for the same request.
    fn fit(&self, _input: &Input<'_>, _params: &Params) -> Result<FittedModel, MetricError> {
        Err(MetricError::failed(format!(
            "metric {} cannot be fitted: it declares no fitted state",
            self.descriptor().name
        )))
    }

    /// Scores `input` with a stored fit: the results `compute` gives, from the fitted state
    /// instead of a new fit. `params` holds the fit's values of the parameters the state
    /// fixes, and the request's (or the defaults) for the others. Read the state with
    /// [`StoredState::decode`], which refuses a format this version cannot read.
    fn score(
        &self,
        _state: &StoredState<'_>,
        _input: &Input<'_>,
        _params: &Params,
    ) -> Result<Output, MetricError> {
        Err(MetricError::failed(format!(
            "metric {} cannot score with a stored model: it declares no fitted state",
            self.descriptor().name
        )))
    }
}
