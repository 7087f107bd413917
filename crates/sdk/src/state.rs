//! Fitted state: what a metric keeps of a fit so it can score again without refitting.
//!
//! A metric that fits a model (CLV's purchase and spend models, say) can declare itself
//! fittable ([`crate::MetricDescriptor::fitted`]) and implement [`crate::Metric::fit`] and
//! [`crate::Metric::score`]. The host stores the state a fit returns as opaque bytes, with the
//! metric's name and version, and hands them back to `score`, possibly months later and to a
//! newer build of the plugin. So the state is versioned by the plugin itself: a type
//! implementing [`Fitted`] names its encoding's version ([`Fitted::FORMAT`]) and which
//! versions it still reads ([`Fitted::reads`]); a state it cannot read is refused with
//! [`MetricError::IncompatibleState`], which names both versions, never misread.
//!
//! The encoding is JSON (with floats written so that they read back to the same bits), in an
//! envelope the SDK writes: `{"metric", "metric_version", "format", "state"}`. JSON keeps a
//! stored model readable by a person and by any tool, and a state is small: a model's
//! parameters and their covariance, not the data.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{MetricError, Output};

/// A metric's fitted state. Derive `Serialize` and `Deserialize`, and give the encoding a
/// version:
///
/// ```
/// use mittari_sdk::state::Fitted;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct MeanModel {
///     mean: f64,
///     customers: u64,
/// }
///
/// impl Fitted for MeanModel {
///     const FORMAT: u32 = 1;
/// }
/// ```
pub trait Fitted: Serialize + DeserializeOwned {
    /// The version of this type's encoding. Raise it when a field is added, removed or
    /// changes meaning.
    const FORMAT: u32;
    /// Whether this build reads states written in `format`: by default only its own. A type
    /// that still reads older formats (with `#[serde(default)]` on the new fields, say) lists
    /// them here.
    fn reads(format: u32) -> bool {
        format == Self::FORMAT
    }
}

/// What [`crate::Metric::fit`] returns: the state to store and the fit's own results (its
/// parameters, and the predictions for the customers it was fitted on, which scoring the same
/// customers with the stored state reproduces exactly).
#[derive(Debug, Clone)]
pub struct FittedModel {
    /// The encoded state: see [`FittedModel::new`].
    pub format: u32,
    pub state: Vec<u8>,
    /// The fit's results, as `compute` would return them.
    pub output: Output,
    /// What the model was fitted on, for a reader deciding whether to trust it: customers,
    /// time span, a hash of the data… (shown as given; the host adds the input's rows).
    pub fingerprint: serde_json::Map<String, serde_json::Value>,
}

impl FittedModel {
    /// Encodes `state` in its type's format.
    pub fn new<S: Fitted>(state: &S, output: Output) -> Result<Self, MetricError> {
        let state = serde_json::to_vec(state)
            .map_err(|e| MetricError::failed(format!("cannot encode the fitted state: {e}")))?;
        Ok(FittedModel {
            format: S::FORMAT,
            state,
            output,
            fingerprint: serde_json::Map::new(),
        })
    }

    /// Adds one entry to the fingerprint.
    #[must_use]
    pub fn fingerprint(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.fingerprint.insert(name.to_owned(), value.into());
        self
    }
}

/// A stored state handed to [`crate::Metric::score`]: who wrote it, in which format, and its
/// bytes. [`StoredState::decode`] reads it as the metric's [`Fitted`] type.
#[derive(Debug, Clone, Copy)]
pub struct StoredState<'a> {
    /// The metric and its version that wrote the state.
    pub metric: &'a str,
    pub metric_version: &'a str,
    pub format: u32,
    /// The version of the metric asked to read it.
    pub reader_version: &'a str,
    pub bytes: &'a [u8],
}

impl StoredState<'_> {
    /// Reads the state as `S`, or says why it cannot: a format `S` does not read, or bytes
    /// that are not an `S`.
    pub fn decode<S: Fitted>(&self) -> Result<S, MetricError> {
        if !S::reads(self.format) {
            return Err(self.incompatible(format!(
                "it is in state format {}, which this version does not read (it writes format {})",
                self.format,
                S::FORMAT
            )));
        }
        serde_json::from_slice(self.bytes)
            .map_err(|e| self.incompatible(format!("it cannot be read: {e}")))
    }

    fn incompatible(&self, why: String) -> MetricError {
        MetricError::IncompatibleState {
            message: format!(
                "the model was fitted by {} {}, and {} {} cannot score with it: {why}; fit the model again with this version",
                self.metric, self.metric_version, self.metric, self.reader_version
            ),
        }
    }
}

/// The bytes the host stores: the state in its envelope.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope<'a> {
    pub metric: std::borrow::Cow<'a, str>,
    pub metric_version: std::borrow::Cow<'a, str>,
    pub format: u32,
    #[serde(borrow)]
    pub state: &'a serde_json::value::RawValue,
}

impl Envelope<'_> {
    /// Wraps a fit's encoded state.
    pub(crate) fn wrap(
        metric: &str,
        metric_version: &str,
        format: u32,
        state: &[u8],
    ) -> Result<Vec<u8>, MetricError> {
        let state = std::str::from_utf8(state)
            .ok()
            .and_then(|s| serde_json::from_str::<&serde_json::value::RawValue>(s).ok())
            .ok_or_else(|| MetricError::failed("the fitted state is not JSON"))?;
        serde_json::to_vec(&Envelope {
            metric: metric.into(),
            metric_version: metric_version.into(),
            format,
            state,
        })
        .map_err(|e| MetricError::failed(format!("cannot encode the fitted state: {e}")))
    }

    /// Opens stored bytes for metric `reader` of version `reader_version`.
    pub(crate) fn open<'a>(
        bytes: &'a [u8],
        reader: &str,
        reader_version: &'a str,
    ) -> Result<(Envelope<'a>, &'a str), MetricError> {
        let envelope: Envelope<'a> =
            serde_json::from_slice(bytes).map_err(|e| MetricError::IncompatibleState {
                message: format!("the stored state is not a mittari model state: {e}"),
            })?;
        if envelope.metric != reader {
            return Err(MetricError::IncompatibleState {
                message: format!(
                    "the model was fitted by metric {} {}, not {reader}; score it with {}",
                    envelope.metric, envelope.metric_version, envelope.metric
                ),
            });
        }
        Ok((envelope, reader_version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Model {
        values: Vec<f64>,
    }

    impl Fitted for Model {
        const FORMAT: u32 = 2;
    }

    fn stored<'a>(bytes: &'a [u8], format: u32) -> StoredState<'a> {
        StoredState {
            metric: "m",
            metric_version: "1.0.0",
            format,
            reader_version: "1.1.0",
            bytes,
        }
    }

    #[test]
    fn a_state_reads_back_to_the_same_bits() {
        // Values whose shortest decimal forms a naive parser rounds wrongly.
        let model = Model {
            values: vec![
                0.1 + 0.2,
                1.0 / 3.0,
                f64::MIN_POSITIVE,
                5e-324,
                1.7976931348623157e308,
                f64::from_bits(0x000f_ffff_ffff_ffff), // the largest subnormal
                0.30000000000000004,
                123456.78901234567,
            ],
        };
        let fitted = FittedModel::new(&model, Output::new()).unwrap();
        let wrapped = Envelope::wrap("m", "1.0.0", fitted.format, &fitted.state).unwrap();
        let (envelope, _) = Envelope::open(&wrapped, "m", "1.1.0").unwrap();
        let back: Model = stored(envelope.state.get().as_bytes(), envelope.format)
            .decode()
            .unwrap();
        for (a, b) in model.values.iter().zip(&back.values) {
            assert_eq!(a.to_bits(), b.to_bits(), "{a} read back as {b}");
        }
    }

    #[test]
    fn a_state_of_another_format_or_metric_is_refused_naming_both_versions() {
        let bytes = br#"{"values":[1.0]}"#;
        let error = stored(bytes, 1).decode::<Model>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "the model was fitted by m 1.0.0, and m 1.1.0 cannot score with it: it is in state format 1, which this version does not read (it writes format 2); fit the model again with this version"
        );
        assert!(matches!(error, MetricError::IncompatibleState { .. }));
        let wrapped = Envelope::wrap("other", "3.0.0", 2, bytes).unwrap();
        let error = Envelope::open(&wrapped, "m", "1.1.0").unwrap_err();
        assert_eq!(
            error.to_string(),
            "the model was fitted by metric other 3.0.0, not m; score it with other"
        );
        let error = stored(br#"{"values":"x"}"#, 2)
            .decode::<Model>()
            .unwrap_err();
        assert!(error.to_string().contains("it cannot be read"), "{error}");
    }
}
