//! A metric's self-description: what it reads, which parameters it takes, what it returns.
//! The engine validates every request against it before the plugin is called.

use serde::{Deserialize, Serialize};

use crate::ParamValue;

/// The logical type of an input column or a parameter.
///
/// Columns arrive in the plugin as Arrow arrays: `Int64` → `Int64Array`, `Double` →
/// `Float64Array`, `String` → `StringArray`, `Bool` → `BooleanArray`, `Timestamp` →
/// `TimestampMicrosecondArray` (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    Int64,
    Double,
    String,
    Bool,
    Timestamp,
}

impl DataType {
    /// The lowercase name used in messages and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DataType::Int64 => "int64",
            DataType::Double => "double",
            DataType::String => "string",
            DataType::Bool => "bool",
            DataType::Timestamp => "timestamp",
        }
    }

    /// The Arrow type columns of this type have inside a plugin.
    pub fn arrow_type(self) -> arrow_schema::DataType {
        use arrow_schema::{DataType as Arrow, TimeUnit};
        match self {
            DataType::Int64 => Arrow::Int64,
            DataType::Double => Arrow::Float64,
            DataType::String => Arrow::Utf8,
            DataType::Bool => Arrow::Boolean,
            DataType::Timestamp => Arrow::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }

    /// Whether a `Range` applies to values of this type.
    pub fn is_numeric(self) -> bool {
        matches!(self, DataType::Int64 | DataType::Double)
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An inclusive range of allowed numeric values; a missing bound is unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Range {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Range {
    pub fn contains(&self, value: f64) -> bool {
        self.min.is_none_or(|min| value >= min) && self.max.is_none_or(|max| value <= max)
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // 1e15, not 1000000000000000: bounds like MAX_QUANTITY read at a glance.
        let bound = |v: f64| {
            if v.abs() >= 1e9 {
                format!("{v:e}")
            } else {
                v.to_string()
            }
        };
        match (self.min.map(bound), self.max.map(bound)) {
            (Some(min), Some(max)) => write!(f, "{min}..={max}"),
            (Some(min), None) => write!(f, ">= {min}"),
            (None, Some(max)) => write!(f, "<= {max}"),
            (None, None) => f.write_str("any value"),
        }
    }
}

/// The largest magnitude a metric accepts in a double column holding an amount, a count or a
/// duration: 10^15 (a quadrillion). Sums of billions of such values and products of two of them
/// stay far below `f64::MAX` (1.8e308), so a metric's arithmetic on them cannot overflow into
/// infinity; the engine refuses a larger value with its column and row before the metric runs.
pub const MAX_QUANTITY: f64 = 1e15;

/// One input column a metric reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSpec {
    pub name: String,
    pub data_type: DataType,
    /// A required column must be present and contain no nulls; an optional one may be absent
    /// or contain nulls.
    pub required: bool,
    pub description: String,
    /// Allowed values of a numeric column.
    pub range: Option<Range>,
}

impl ColumnSpec {
    /// An optional column; call [`ColumnSpec::required`] to require it.
    pub fn new(name: &str, data_type: DataType, description: &str) -> Self {
        ColumnSpec {
            name: name.to_owned(),
            data_type,
            required: false,
            description: description.to_owned(),
            range: None,
        }
    }
    pub fn int64(name: &str, description: &str) -> Self {
        Self::new(name, DataType::Int64, description)
    }
    pub fn double(name: &str, description: &str) -> Self {
        Self::new(name, DataType::Double, description)
    }
    /// A double column of non-negative amounts, counts or durations, at most [`MAX_QUANTITY`].
    pub fn quantity(name: &str, description: &str) -> Self {
        Self::double(name, description).range(0.0, MAX_QUANTITY)
    }
    pub fn string(name: &str, description: &str) -> Self {
        Self::new(name, DataType::String, description)
    }
    pub fn bool(name: &str, description: &str) -> Self {
        Self::new(name, DataType::Bool, description)
    }
    pub fn timestamp(name: &str, description: &str) -> Self {
        Self::new(name, DataType::Timestamp, description)
    }
    #[must_use]
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    /// Restricts values to `min..=max`; the engine rejects a row outside it before the
    /// plugin is called.
    #[must_use]
    pub fn range(mut self, min: f64, max: f64) -> Self {
        self.range = Some(Range {
            min: Some(min),
            max: Some(max),
        });
        self
    }
    /// Restricts values to `>= min`.
    #[must_use]
    pub fn min(mut self, min: f64) -> Self {
        self.range = Some(Range {
            min: Some(min),
            max: self.range.and_then(|r| r.max),
        });
        self
    }
}

/// One parameter a metric takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParameterSpec {
    pub name: String,
    pub data_type: DataType,
    /// The value used when a request gives none.
    pub default: Option<ParamValue>,
    /// A required parameter must be given (it has no default); an optional one without a
    /// default is simply absent from [`crate::Params`] when not given.
    pub required: bool,
    pub range: Option<Range>,
    /// For string parameters: the only accepted values (empty: any string).
    pub allowed_values: Vec<String>,
    pub description: String,
    /// The value is a comma-separated list of input columns the metric reads besides its
    /// declared ones (clv's `covariates=gender,channel`): clients read those columns too, and
    /// the engine checks they exist and passes them through in their own type (int64,
    /// double, string or bool). Absent in the descriptors of plugins built before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub names_columns: bool,
    /// With [`ParameterSpec::names_columns`]: the named columns are in this table input
    /// ([`MetricDescriptor::table_inputs`]) rather than in the main input. Absent in the
    /// descriptors of plugins built before table inputs existed (ABI version 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns_table: Option<String>,
}

impl ParameterSpec {
    /// A required parameter; call [`ParameterSpec::default_value`] to give it a default, or
    /// [`ParameterSpec::optional`] to let requests leave it out.
    pub fn new(name: &str, data_type: DataType, description: &str) -> Self {
        ParameterSpec {
            name: name.to_owned(),
            data_type,
            default: None,
            required: true,
            range: None,
            allowed_values: Vec::new(),
            description: description.to_owned(),
            names_columns: false,
            columns_table: None,
        }
    }

    /// An optional string parameter whose value names input columns, comma-separated (see
    /// [`ParameterSpec::names_columns`]).
    pub fn columns(name: &str, description: &str) -> Self {
        ParameterSpec {
            names_columns: true,
            ..Self::new(name, DataType::String, description).optional()
        }
    }
    /// An optional string parameter whose value names columns of the table input `table`,
    /// comma-separated.
    pub fn columns_of(name: &str, table: &str, description: &str) -> Self {
        ParameterSpec {
            columns_table: Some(table.to_owned()),
            ..Self::columns(name, description)
        }
    }
    pub fn double(name: &str, default: f64, description: &str) -> Self {
        Self::new(name, DataType::Double, description).default_value(ParamValue::Double(default))
    }
    pub fn int64(name: &str, default: i64, description: &str) -> Self {
        Self::new(name, DataType::Int64, description).default_value(ParamValue::Int64(default))
    }
    pub fn string(name: &str, default: &str, description: &str) -> Self {
        Self::new(name, DataType::String, description)
            .default_value(ParamValue::String(default.to_owned()))
    }
    pub fn bool(name: &str, default: bool, description: &str) -> Self {
        Self::new(name, DataType::Bool, description).default_value(ParamValue::Bool(default))
    }
    #[must_use]
    pub fn default_value(mut self, value: ParamValue) -> Self {
        self.default = Some(value);
        self.required = false;
        self
    }
    /// Lets requests leave the parameter out; the metric then sees no value for it.
    #[must_use]
    pub fn optional(mut self) -> Self {
        self.required = false;
        self
    }
    #[must_use]
    pub fn range(mut self, min: f64, max: f64) -> Self {
        self.range = Some(Range {
            min: Some(min),
            max: Some(max),
        });
        self
    }
    #[must_use]
    pub fn allowed_values(mut self, values: &[&str]) -> Self {
        self.allowed_values = values.iter().map(|v| (*v).to_owned()).collect();
        self
    }
    pub fn is_required(&self) -> bool {
        self.required
    }
}

/// One scalar result a metric returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputSpec {
    pub name: String,
    /// For example `%`, `points`, `count`, `currency`.
    pub unit: String,
    pub description: String,
}

impl OutputSpec {
    pub fn new(name: &str, unit: &str, description: &str) -> Self {
        OutputSpec {
            name: name.to_owned(),
            unit: unit.to_owned(),
            description: description.to_owned(),
        }
    }
}

/// One result table a metric may return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSpec {
    pub name: String,
    pub description: String,
    /// Its columns, each with its unit and meaning, where the metric declares them (a table
    /// whose columns depend on the input, such as one per group, may not). Absent in the
    /// descriptors of plugins built before it existed.
    #[serde(default)]
    pub columns: Vec<OutputSpec>,
}

impl TableSpec {
    pub fn column(&self, name: &str) -> Option<&OutputSpec> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Says that a metric can read the RFM summary of a transaction log in place of the log, when
/// its `parameter` has one of `values` (clv's `model` being `bgnbd`, say). A client whose data
/// sits in a database or a data lake can then have the summary computed there (`mittari sql
/// rfm`), so only one row per customer travels.
///
/// The summary is that of `mittari_models::rfm`: columns `customer_id`, `frequency`, `recency`,
/// `T`, `monetary_value` and, with a holdout, `frequency_holdout` and `duration_holdout` (the
/// names of Python's lifetimes). The metric's `time_unit` (`day` or `week`), `observation_end`
/// and `holdout_start` parameters, where it has them, say how the log is summarized: a client
/// that summarizes applies them itself and does not pass on the last two.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RfmSummaryInput {
    pub parameter: String,
    pub values: Vec<String>,
}

impl RfmSummaryInput {
    /// Whether the summary suffices for a request whose `parameter` is `value`.
    pub fn applies_to(&self, value: &str) -> bool {
        self.values.iter().any(|v| v == value)
    }
}

/// A second table a request may send beside its main input (ABI version 4): clv's
/// `covariates_over_time`, say, one row per customer and period, which no row of a
/// transaction log can carry. The engine checks its declared columns as it checks the main
/// input's, and passes them, with the columns parameters name in it
/// ([`ParameterSpec::columns_table`]), to the plugin whole: with group-by, every group's call
/// sees the whole table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableInputSpec {
    /// Lowercase snake_case, unique among the metric's table inputs.
    pub name: String,
    pub description: String,
    pub columns: Vec<ColumnSpec>,
    /// A request must send it.
    pub required: bool,
}

/// Everything the engine and the clients need to know about a metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricDescriptor {
    /// Lowercase snake_case, unique across the server.
    pub name: String,
    pub version: String,
    /// One line.
    pub summary: String,
    /// The definition, formulas and references.
    pub description: String,
    pub inputs: Vec<ColumnSpec>,
    pub parameters: Vec<ParameterSpec>,
    pub outputs: Vec<OutputSpec>,
    pub tables: Vec<TableSpec>,
    /// The metric may take seconds even on a small input (a model fit, say). The server runs
    /// such computations apart from cheap ones, so they never delay a quick request; see
    /// [`MetricDescriptor::expensive`].
    #[serde(default)]
    pub expensive: bool,
    /// When the metric can read an RFM summary in place of a transaction log.
    #[serde(default)]
    pub rfm_summary: Option<RfmSummaryInput>,
    /// Tables a request may send beside its main input. Absent in the descriptors of plugins
    /// built before ABI version 4.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub table_inputs: Vec<TableInputSpec>,
    /// When the metric can be fitted once and scored again ([`crate::Metric::fit`]). Absent
    /// in the descriptors of plugins built before ABI version 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitting: Option<FittingSpec>,
    /// How the metric compares the groups of a group-by; see [`GroupComparison`]. Absent in
    /// the descriptors of plugins built before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_comparison: Option<GroupComparison>,
}

/// How a metric compares the groups of a group-by with each other
/// ([`MetricDescriptor::compares_groups`]): NPS's each segment against all other answers. With
/// group-by over one column, the engine also computes the whole input once with `parameter`
/// set to that column, takes the `table` it returns (one row per segment, keyed by its first
/// column) and adds its `columns` to each group's outputs — every output format then shows
/// them beside the group's own figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupComparison {
    /// The parameter that names the column to compare by (`compare`).
    pub parameter: String,
    /// The table the comparison returns (`segments`), declared with its columns.
    pub table: String,
    /// (table column, output name): each added to the groups' outputs under its name, with
    /// the table's `{column}_lower` and `{column}_upper` as its interval where it has them;
    /// a true/false column as 1/0.
    pub columns: Vec<(String, String)>,
    /// The parameter whose value is the intervals' level (`confidence`).
    pub level_parameter: String,
}

/// How a fittable metric's stored models behave ([`MetricDescriptor::fitted`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FittingSpec {
    /// The parameters a fit fixes: scoring uses the fit's values, and refuses a request that
    /// gives another (the model, its time unit, its covariates…). The other parameters are
    /// the scoring request's (a horizon, an interval level…).
    pub model_parameters: Vec<String>,
    /// What the stored state holds, for `describe`.
    pub description: String,
}

impl MetricDescriptor {
    pub fn new(name: &str, version: &str, summary: &str) -> Self {
        MetricDescriptor {
            name: name.to_owned(),
            version: version.to_owned(),
            summary: summary.to_owned(),
            description: String::new(),
            inputs: Vec::new(),
            parameters: Vec::new(),
            outputs: Vec::new(),
            tables: Vec::new(),
            expensive: false,
            rfm_summary: None,
            table_inputs: Vec::new(),
            fitting: None,
            group_comparison: None,
        }
    }
    /// Declares that group-by compares the groups; see [`GroupComparison`]. `parameter` and
    /// `table` must be declared (the table with its columns), `columns` pairs a table column
    /// with the output name it gets in grouped results.
    #[must_use]
    pub fn compares_groups(
        mut self,
        parameter: &str,
        table: &str,
        columns: &[(&str, &str)],
        level_parameter: &str,
    ) -> Self {
        self.group_comparison = Some(GroupComparison {
            parameter: parameter.to_owned(),
            table: table.to_owned(),
            columns: columns
                .iter()
                .map(|(c, o)| ((*c).to_owned(), (*o).to_owned()))
                .collect(),
            level_parameter: level_parameter.to_owned(),
        });
        self
    }
    /// Declares the metric fittable: [`crate::Metric::fit`] returns a state the host stores,
    /// [`crate::Metric::score`] scores with it. `model_parameters` are the parameters the fit
    /// fixes (each must be declared); `description` says what the state holds.
    #[must_use]
    pub fn fitted(mut self, model_parameters: &[&str], description: &str) -> Self {
        self.fitting = Some(FittingSpec {
            model_parameters: model_parameters.iter().map(|&p| p.to_owned()).collect(),
            description: description.to_owned(),
        });
        self
    }
    /// Declares an optional table input; see [`TableInputSpec`].
    #[must_use]
    pub fn table_input(
        mut self,
        name: &str,
        description: &str,
        columns: impl IntoIterator<Item = ColumnSpec>,
    ) -> Self {
        self.table_inputs.push(TableInputSpec {
            name: name.to_owned(),
            description: description.to_owned(),
            columns: columns.into_iter().collect(),
            required: false,
        });
        self
    }
    /// Declares that the metric reads the RFM summary of a transaction log in place of the log
    /// when `parameter` has one of `values`; see [`RfmSummaryInput`].
    #[must_use]
    pub fn reads_rfm_summary(mut self, parameter: &str, values: &[&str]) -> Self {
        self.rfm_summary = Some(RfmSummaryInput {
            parameter: parameter.to_owned(),
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        });
        self
    }
    /// Declares that a computation may take seconds however small its input: the server then
    /// schedules it with the heavy computations, never beside the quick ones. Leave it off for
    /// metrics whose cost grows with the rows alone.
    #[must_use]
    pub fn expensive(mut self) -> Self {
        self.expensive = true;
        self
    }
    #[must_use]
    pub fn description(mut self, description: &str) -> Self {
        self.description = description.to_owned();
        self
    }
    #[must_use]
    pub fn input(mut self, column: ColumnSpec) -> Self {
        self.inputs.push(column);
        self
    }
    #[must_use]
    pub fn parameter(mut self, parameter: ParameterSpec) -> Self {
        self.parameters.push(parameter);
        self
    }
    #[must_use]
    pub fn output(mut self, output: OutputSpec) -> Self {
        self.outputs.push(output);
        self
    }
    #[must_use]
    pub fn table(mut self, name: &str, description: &str) -> Self {
        self.tables.push(TableSpec {
            name: name.to_owned(),
            description: description.to_owned(),
            columns: Vec::new(),
        });
        self
    }
    /// A table with its columns declared, each with its unit.
    #[must_use]
    pub fn table_with_columns(
        mut self,
        name: &str,
        description: &str,
        columns: impl IntoIterator<Item = OutputSpec>,
    ) -> Self {
        self.tables.push(TableSpec {
            name: name.to_owned(),
            description: description.to_owned(),
            columns: columns.into_iter().collect(),
        });
        self
    }

    pub fn input_column(&self, name: &str) -> Option<&ColumnSpec> {
        self.inputs.iter().find(|c| c.name == name)
    }
    pub fn table_input_spec(&self, name: &str) -> Option<&TableInputSpec> {
        self.table_inputs.iter().find(|t| t.name == name)
    }
    /// Table input `name` described as if it were a metric's main input: its columns as the
    /// inputs, the parameters that name columns in it as naming input columns. Readers and
    /// validators of the main input then read and check the table the same way.
    pub fn table_as_input(&self, name: &str) -> Option<MetricDescriptor> {
        let spec = self.table_input_spec(name)?;
        let mut described = MetricDescriptor::new(&self.name, &self.version, &spec.description);
        described.inputs = spec.columns.clone();
        described.parameters = self
            .parameters
            .iter()
            .filter(|p| p.columns_table.as_deref() == Some(name))
            .map(|p| ParameterSpec {
                columns_table: None,
                ..p.clone()
            })
            .collect();
        Some(described)
    }
    /// The main input's columns named by the request's parameters that name columns
    /// ([`ParameterSpec::names_columns`]), from `(parameter, value)` pairs, in order and once
    /// each. Values are comma-separated; spaces around names are ignored.
    pub fn named_columns<'a>(
        &self,
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Vec<String> {
        self.named_columns_in(None, params)
    }
    /// (parameter, column) for each main-input column the `(parameter, value)` pairs name,
    /// each column once, with the first parameter that names it: what a reader keeps beside
    /// the declared columns, and what its errors name.
    pub fn columns_named_by<'a>(
        &self,
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Vec<(String, String)> {
        let mut named: Vec<(String, String)> = Vec::new();
        for (parameter, value) in params {
            for column in self.named_columns([(parameter, value)]) {
                if !named.iter().any(|(_, c)| *c == column) {
                    named.push((parameter.to_owned(), column));
                }
            }
        }
        named
    }
    /// As [`MetricDescriptor::named_columns`], for the main input (`table` `None`) or the
    /// table input `table`.
    pub fn named_columns_in<'a>(
        &self,
        table: Option<&str>,
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Vec<String> {
        let mut columns: Vec<String> = Vec::new();
        for (name, value) in params {
            if self
                .parameter_spec(name)
                .is_some_and(|p| p.names_columns && p.columns_table.as_deref() == table)
            {
                for column in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                    if !columns.iter().any(|c| c == column) {
                        columns.push(column.to_owned());
                    }
                }
            }
        }
        columns
    }
    pub fn parameter_spec(&self, name: &str) -> Option<&ParameterSpec> {
        self.parameters.iter().find(|p| p.name == name)
    }
    pub fn table_spec(&self, name: &str) -> Option<&TableSpec> {
        self.tables.iter().find(|t| t.name == name)
    }
    pub fn output_spec(&self, name: &str) -> Option<&OutputSpec> {
        self.outputs.iter().find(|o| o.name == name)
    }

    /// Checks the descriptor is self-consistent; the engine refuses a metric whose
    /// descriptor is not, so every later check can rely on it.
    pub fn check(&self) -> Result<(), String> {
        let valid_name = |n: &str| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if !valid_name(&self.name) {
            return Err(format!(
                "metric name {:?} must be non-empty lowercase snake_case",
                self.name
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for name in self.inputs.iter().map(|c| &c.name) {
            if name.is_empty() || !seen.insert(("input", name)) {
                return Err(format!("input column {name:?} is empty or declared twice"));
            }
        }
        for name in self.outputs.iter().map(|o| &o.name) {
            if name.is_empty() || !seen.insert(("output", name)) {
                return Err(format!("output {name:?} is empty or declared twice"));
            }
        }
        if let Some(fitting) = &self.fitting
            && let Some(unknown) = fitting
                .model_parameters
                .iter()
                .find(|name| self.parameter_spec(name).is_none())
        {
            return Err(format!(
                "model parameter {unknown:?} is not a declared parameter"
            ));
        }
        for spec in &self.parameters {
            if !valid_name(&spec.name) || !seen.insert(("parameter", &spec.name)) {
                return Err(format!(
                    "parameter {:?} is not snake_case or is declared twice",
                    spec.name
                ));
            }
            if spec.required && spec.default.is_some() {
                return Err(format!(
                    "parameter {:?} is required but has a default",
                    spec.name
                ));
            }
            if let Some(default) = &spec.default {
                crate::params::check_value(spec, default).map_err(|reason| {
                    format!("default of parameter {:?} is invalid: {reason}", spec.name)
                })?;
            }
        }
        for table in &self.table_inputs {
            if !valid_name(&table.name) || !seen.insert(("table input", &table.name)) {
                return Err(format!(
                    "table input {:?} is not snake_case or is declared twice",
                    table.name
                ));
            }
            let mut columns = std::collections::HashSet::new();
            if let Some(column) = table
                .columns
                .iter()
                .find(|c| c.name.is_empty() || !columns.insert(&c.name))
            {
                return Err(format!(
                    "column {:?} of table input {:?} is empty or declared twice",
                    column.name, table.name
                ));
            }
        }
        for spec in &self.parameters {
            if let Some(table) = &spec.columns_table
                && (!spec.names_columns || self.table_input_spec(table).is_none())
            {
                return Err(format!(
                    "parameter {:?} names columns of table input {table:?}, which is not declared (or the parameter does not name columns)",
                    spec.name
                ));
            }
        }
        if let Some(summary) = &self.rfm_summary {
            if self.parameter_spec(&summary.parameter).is_none() {
                return Err(format!(
                    "the RFM summary input depends on parameter {:?}, which is not declared",
                    summary.parameter
                ));
            }
            if let Some(missing) = ["customer_id", "frequency", "recency", "T"]
                .into_iter()
                .find(|c| self.input_column(c).is_none())
            {
                return Err(format!(
                    "a metric that reads an RFM summary declares the summary's columns; {missing:?} is not declared"
                ));
            }
        }
        if let Some(comparison) = &self.group_comparison {
            for parameter in [&comparison.parameter, &comparison.level_parameter] {
                if self.parameter_spec(parameter).is_none() {
                    return Err(format!(
                        "the group comparison uses parameter {parameter:?}, which is not declared"
                    ));
                }
            }
            let table = self
                .tables
                .iter()
                .find(|t| t.name == comparison.table)
                .ok_or_else(|| {
                    format!(
                        "the group comparison reads table {:?}, which is not declared",
                        comparison.table
                    )
                })?;
            for (column, output) in &comparison.columns {
                if table.column(column).is_none() {
                    return Err(format!(
                        "the group comparison reads column {column:?} of table {:?}, which does not declare it",
                        comparison.table
                    ));
                }
                if !valid_name(output) || self.outputs.iter().any(|o| o.name == *output) {
                    return Err(format!(
                        "the group comparison's output {output:?} is not snake_case or is also a declared output"
                    ));
                }
            }
        }
        Ok(())
    }
}
