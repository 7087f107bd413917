//! Typed parameter values, already validated and completed with defaults by the engine.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{DataType, MetricError, ParameterSpec};

/// A parameter value. Timestamps are microseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamValue {
    Int64(i64),
    Double(f64),
    String(String),
    Bool(bool),
    Timestamp(i64),
}

impl ParamValue {
    pub fn data_type(&self) -> DataType {
        match self {
            ParamValue::Int64(_) => DataType::Int64,
            ParamValue::Double(_) => DataType::Double,
            ParamValue::String(_) => DataType::String,
            ParamValue::Bool(_) => DataType::Bool,
            ParamValue::Timestamp(_) => DataType::Timestamp,
        }
    }

    /// Parses text (a command-line `--param` or a configuration string) as a value of `data_type`.
    pub fn parse(text: &str, data_type: DataType) -> Result<ParamValue, String> {
        let text = text.trim();
        match data_type {
            DataType::Int64 => text
                .parse()
                .map(ParamValue::Int64)
                .map_err(|_| format!("{text:?} is not an integer")),
            DataType::Double => match text.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(ParamValue::Double(v)),
                _ => Err(format!("{text:?} is not a finite number")),
            },
            DataType::String => Ok(ParamValue::String(text.to_owned())),
            DataType::Bool => match text.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Ok(ParamValue::Bool(true)),
                "false" | "no" | "0" => Ok(ParamValue::Bool(false)),
                _ => Err(format!("{text:?} is not a boolean; write true or false")),
            },
            DataType::Timestamp => crate::time::parse_timestamp(text).map(ParamValue::Timestamp),
        }
    }

    /// Converts to the type `spec` declares, widening an int64 to a double and parsing an ISO 8601
    /// string as a timestamp, and checks the
    /// declared range and allowed values. The error says what is wrong, in lowercase.
    pub fn conform_to(self, spec: &ParameterSpec) -> Result<ParamValue, String> {
        let value = match (spec.data_type, self) {
            // Lossless for every value a user would type; beyond 2^53 a double rounds anyway.
            (DataType::Double, ParamValue::Int64(v)) => ParamValue::Double(v as f64),
            (DataType::Timestamp, ParamValue::String(text)) => {
                ParamValue::Timestamp(crate::time::parse_timestamp(&text)?)
            }
            (expected, value) if value.data_type() == expected => value,
            (expected, value) => {
                return Err(format!("expected {expected}, got {}", value.data_type()));
            }
        };
        check_value(spec, &value)?;
        Ok(value)
    }
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Int64(v) | ParamValue::Timestamp(v) => write!(f, "{v}"),
            ParamValue::Double(v) => write!(f, "{v}"),
            ParamValue::String(v) => write!(f, "{v:?}"),
            ParamValue::Bool(v) => write!(f, "{v}"),
        }
    }
}

pub(crate) fn check_value(spec: &ParameterSpec, value: &ParamValue) -> Result<(), String> {
    if value.data_type() != spec.data_type {
        return Err(format!(
            "expected {}, got {}",
            spec.data_type,
            value.data_type()
        ));
    }
    let numeric = match value {
        ParamValue::Int64(v) => Some(*v as f64),
        ParamValue::Double(v) => Some(*v),
        _ => None,
    };
    if let Some(v) = numeric {
        if !v.is_finite() {
            return Err(format!("{v} is not a finite number"));
        }
        if let Some(range) = spec.range
            && !range.contains(v)
        {
            return Err(format!("{v} is outside the allowed range {range}"));
        }
    }
    if let ParamValue::Timestamp(micros) = value {
        crate::time::check_timestamp(*micros)?;
    }
    if let ParamValue::String(s) = value
        && !spec.allowed_values.is_empty()
        && !spec.allowed_values.iter().any(|a| a == s)
    {
        return Err(format!(
            "{s:?} is not one of the allowed values: {}",
            spec.allowed_values.join(", ")
        ));
    }
    Ok(())
}

/// The parameters of one computation: every declared parameter that has a value (given in
/// the request, configured by the admin, or the descriptor's default).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Params(BTreeMap<String, ParamValue>);

impl Params {
    pub fn new() -> Self {
        Params::default()
    }
    pub fn insert(&mut self, name: impl Into<String>, value: ParamValue) {
        self.0.insert(name.into(), value);
    }
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.0.get(name)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&String, &ParamValue)> {
        self.0.iter()
    }

    /// Whether the caller gave parameter `name`, as a warning that it changes nothing shows
    /// it: an optional one when present (`name`); one with a default when it differs from
    /// the descriptor's (`name=value`). The host fills defaults in, so a default given
    /// explicitly cannot be told apart, and changes nothing anyway.
    pub fn given(&self, name: &str, descriptor: &crate::MetricDescriptor) -> Option<String> {
        let value = self.get(name)?;
        match descriptor
            .parameter_spec(name)
            .and_then(|spec| spec.default.as_ref())
        {
            Some(default) if default == value => None,
            Some(_) => Some(format!("{name}={value}")),
            None => Some(name.to_owned()),
        }
    }

    fn typed<T>(
        &self,
        name: &str,
        expected: DataType,
        pick: impl Fn(&ParamValue) -> Option<T>,
    ) -> Result<T, MetricError> {
        let value = self.0.get(name).ok_or_else(|| {
            MetricError::invalid_parameter(name, "the parameter is required; give it a value")
        })?;
        pick(value).ok_or_else(|| {
            MetricError::invalid_parameter(
                name,
                format!("expected {expected}, got {}", value.data_type()),
            )
        })
    }

    pub fn f64(&self, name: &str) -> Result<f64, MetricError> {
        self.typed(name, DataType::Double, |v| match v {
            ParamValue::Double(x) => Some(*x),
            ParamValue::Int64(x) => Some(*x as f64),
            _ => None,
        })
    }
    pub fn i64(&self, name: &str) -> Result<i64, MetricError> {
        self.typed(name, DataType::Int64, |v| match v {
            ParamValue::Int64(x) => Some(*x),
            _ => None,
        })
    }
    pub fn str(&self, name: &str) -> Result<&str, MetricError> {
        match self.0.get(name) {
            Some(ParamValue::String(s)) => Ok(s),
            _ => self
                .typed(name, DataType::String, |_| None::<()>)
                .map(|()| ""),
        }
    }
    pub fn bool(&self, name: &str) -> Result<bool, MetricError> {
        self.typed(name, DataType::Bool, |v| match v {
            ParamValue::Bool(x) => Some(*x),
            _ => None,
        })
    }
    /// An optional double parameter: `None` when the request did not give it.
    pub fn optional_f64(&self, name: &str) -> Result<Option<f64>, MetricError> {
        if self.0.contains_key(name) {
            self.f64(name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Microseconds since 1970-01-01T00:00:00Z.
    pub fn timestamp_micros(&self, name: &str) -> Result<i64, MetricError> {
        self.typed(name, DataType::Timestamp, |v| match v {
            ParamValue::Timestamp(x) => Some(*x),
            _ => None,
        })
    }
}

impl FromIterator<(String, ParamValue)> for Params {
    fn from_iter<I: IntoIterator<Item = (String, ParamValue)>>(iter: I) -> Self {
        Params(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(spec: ParameterSpec, value: ParamValue, expect: Result<ParamValue, &str>) {
        assert_eq!(value.conform_to(&spec), expect.map_err(str::to_owned));
    }

    #[test]
    fn conform_widens_and_checks() {
        let confidence = || ParameterSpec::double("confidence", 0.95, "").range(0.5, 0.999);
        check(
            confidence(),
            ParamValue::Double(0.9),
            Ok(ParamValue::Double(0.9)),
        );
        check(
            confidence(),
            ParamValue::Int64(1),
            Err("1 is outside the allowed range 0.5..=0.999"),
        );
        check(
            confidence(),
            ParamValue::Bool(true),
            Err("expected double, got bool"),
        );
        check(
            confidence(),
            ParamValue::Double(f64::NAN),
            Err("NaN is not a finite number"),
        );
        let model = ParameterSpec::string("model", "a", "").allowed_values(&["a", "b"]);
        check(
            model.clone(),
            ParamValue::String("b".into()),
            Ok(ParamValue::String("b".into())),
        );
        check(
            model,
            ParamValue::String("c".into()),
            Err("\"c\" is not one of the allowed values: a, b"),
        );
        check(
            ParameterSpec::int64("top", 10, ""),
            ParamValue::Double(2.0),
            Err("expected int64, got double"),
        );
    }

    #[test]
    fn typed_getters_name_the_parameter() {
        let params: Params = [("x".to_owned(), ParamValue::Int64(3))]
            .into_iter()
            .collect();
        assert_eq!(params.f64("x"), Ok(3.0));
        assert_eq!(params.i64("x"), Ok(3));
        assert_eq!(
            params.str("x").unwrap_err().to_string(),
            "parameter x: expected string, got int64"
        );
        assert_eq!(
            params.bool("y").unwrap_err().to_string(),
            "parameter y: the parameter is required; give it a value"
        );
    }
}
