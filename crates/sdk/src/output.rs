use arrow_array::{ArrayRef, RecordBatch};
use serde::{Deserialize, Serialize};

/// A confidence interval around a scalar result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceInterval {
    pub lower: f64,
    pub upper: f64,
    /// For example 0.95.
    pub level: f64,
}

/// One named scalar result. Its unit comes from the matching [`crate::OutputSpec`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scalar {
    pub name: String,
    /// `None` when the value does not exist for this input; `undefined_reason` says why.
    pub value: Option<f64>,
    // Absent rather than null when unset: one result per group crosses the plugin boundary,
    // and the empty fields were a third of its bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence_interval: Option<ConfidenceInterval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undefined_reason: Option<String>,
}

impl Scalar {
    pub fn new(name: &str, value: f64) -> Self {
        Scalar {
            name: name.to_owned(),
            value: Some(value),
            confidence_interval: None,
            undefined_reason: None,
        }
    }
    /// A result that does not exist for this input, for example a rate with no customers at
    /// the start of the period.
    pub fn undefined(name: &str, reason: impl Into<String>) -> Self {
        Scalar {
            name: name.to_owned(),
            value: None,
            confidence_interval: None,
            undefined_reason: Some(reason.into()),
        }
    }
    /// `100 · part / whole`, or undefined: with `zero_reason` when `whole` is not positive, and
    /// saying so when `whole` is so small next to `part` that the percentage overflows.
    pub fn percent(name: &str, part: f64, whole: f64, zero_reason: &str) -> Self {
        if whole <= 0.0 {
            return Scalar::undefined(name, zero_reason);
        }
        let value = 100.0 * part / whole;
        if value.is_finite() {
            Scalar::new(name, value)
        } else {
            Scalar::undefined(
                name,
                format!("{part} is too large next to {whole} for a finite percentage"),
            )
        }
    }
    #[must_use]
    pub fn with_interval(mut self, lower: f64, upper: f64, level: f64) -> Self {
        self.confidence_interval = Some(ConfidenceInterval {
            lower,
            upper,
            level,
        });
        self
    }
}

/// A warning about the result, for example a sample too small for the interval to be reliable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Warning {
    /// Stable, machine-readable, snake_case.
    pub code: String,
    pub message: String,
}

/// Builds a result table from named columns of equal length; the error names the table.
pub fn result_table(
    name: &str,
    columns: Vec<(&str, ArrayRef)>,
) -> Result<RecordBatch, crate::MetricError> {
    RecordBatch::try_from_iter(columns)
        .map_err(|e| crate::MetricError::failed(format!("cannot build the {name} table: {e}")))
}

/// What one computation returns.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub scalars: Vec<Scalar>,
    /// Named result tables, for example one row per customer.
    pub tables: Vec<(String, RecordBatch)>,
    pub warnings: Vec<Warning>,
}

impl Output {
    pub fn new() -> Self {
        Output::default()
    }
    #[must_use]
    pub fn scalar(mut self, scalar: Scalar) -> Self {
        self.scalars.push(scalar);
        self
    }
    #[must_use]
    pub fn table(mut self, name: &str, table: RecordBatch) -> Self {
        self.tables.push((name.to_owned(), table));
        self
    }
    #[must_use]
    pub fn warning(mut self, code: &str, message: impl Into<String>) -> Self {
        self.warnings.push(Warning {
            code: code.to_owned(),
            message: message.into(),
        });
        self
    }
}
