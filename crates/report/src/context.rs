//! What every section needs: the input's columns, the user's parameters, reading the input
//! for a metric and computing it.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};

use arrow_array::{Array, RecordBatch};
use mittari_engine::{
    ComputeOutcome, ComputeRequest, GroupedResults, MetricDescriptor, ParamValue,
};

use crate::{Backend, Refusal, ReportError, Request};

/// Segments with more distinct values than this are not a breakdown a chart can show.
const MAX_SEGMENTS: usize = 20;

/// Why a section was left out.
#[derive(Debug)]
pub(crate) enum Skip {
    /// The input lacks the metric's columns, or the build lacks the metric.
    NotApplicable,
    /// The backend refused the input (CSAT's scale on 0–10 answers).
    Failed(Refusal),
    /// The report cannot be made at all.
    Error(ReportError),
}

impl From<ReportError> for Skip {
    fn from(e: ReportError) -> Skip {
        Skip::Error(e)
    }
}

impl From<crate::ChartError> for Skip {
    fn from(e: crate::ChartError) -> Skip {
        Skip::Error(ReportError::Chart(e))
    }
}

pub(crate) struct Context<'a> {
    backend: &'a dyn Backend,
    request: &'a Request,
    /// The descriptors of the reportable metrics the backend has, and of the other metrics
    /// (plugins') named with `--metric`.
    descriptors: HashMap<String, MetricDescriptor>,
    /// Metrics named with `--metric` that the report has no layout of its own for: each gets
    /// the generic section, in the order named.
    plugins: Vec<String>,
    columns: Vec<String>,
    /// Columns the file types as floating-point or decimal numbers.
    measurements: Vec<String>,
    used_params: RefCell<HashSet<String>>,
    /// The table inputs some metric read.
    used_tables: RefCell<HashSet<String>>,
    /// Table inputs computed rather than read (the scorecard's contact facts), by name.
    computed_tables: Vec<(String, RecordBatch)>,
    rows: Cell<usize>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        backend: &'a dyn Backend,
        request: &'a Request,
    ) -> Result<Context<'a>, ReportError> {
        let mut descriptors = HashMap::new();
        for metric in crate::reportable_metrics() {
            if let Some(descriptor) = backend.describe(metric).map_err(ReportError::Backend)? {
                descriptors.insert(metric.to_owned(), descriptor);
            }
        }
        let mut plugins = Vec::new();
        for metric in &request.metrics {
            let reportable = crate::reportable_metrics().any(|m| m == metric);
            if !reportable
                && !plugins.contains(metric)
                && let Some(descriptor) = backend.describe(metric).map_err(ReportError::Backend)?
            {
                descriptors.insert(metric.clone(), descriptor);
                plugins.push(metric.clone());
            }
            if !descriptors.contains_key(metric.as_str()) {
                return Err(ReportError::UnknownMetric {
                    metric: metric.clone(),
                    message: if reportable {
                        "the plugin is not loaded (or disabled) here".to_owned()
                    } else {
                        "no metric of that name is loaded (or enabled) here; `mittari metrics` lists them".to_owned()
                    },
                });
            }
        }
        let typed = mittari_io::column_types(&request.input, &request.options)?;
        // Measurements (a Parquet file's margin column, say) are never segments: only text,
        // integers, booleans and dates group.
        let measurements: Vec<String> = typed
            .iter()
            .filter(|(_, t)| {
                t.as_ref().is_some_and(|t| {
                    t.is_floating()
                        || matches!(
                            t,
                            arrow_schema::DataType::Decimal128(..)
                                | arrow_schema::DataType::Decimal256(..)
                        )
                })
            })
            .map(|(name, _)| name.clone())
            .collect();
        let columns: Vec<String> = typed.into_iter().map(|(name, _)| name).collect();
        if request.metrics.is_empty() {
            // By default, also every other metric whose required columns the input has (under
            // their own names or as --column maps them): a plugin reads what it declares.
            let present = |name: &str| {
                columns.iter().any(|c| c == name)
                    || request.options.columns.iter().any(|m| m.name == name)
            };
            for name in backend.metric_names().map_err(ReportError::Backend)? {
                if crate::reportable_metrics().any(|m| m == name) || plugins.contains(&name) {
                    continue;
                }
                let Some(descriptor) = backend.describe(&name).map_err(ReportError::Backend)?
                else {
                    continue;
                };
                let mut required = descriptor.inputs.iter().filter(|c| c.required).peekable();
                if required.peek().is_some() && required.all(|c| present(&c.name)) {
                    descriptors.insert(name.clone(), descriptor);
                    plugins.push(name);
                }
            }
        }
        Ok(Context {
            backend,
            request,
            descriptors,
            plugins,
            columns,
            measurements,
            used_params: RefCell::default(),
            used_tables: RefCell::default(),
            computed_tables: Vec::new(),
            rows: Cell::new(0),
        })
    }

    /// Sends `table` as the table input `name` to every metric that declares it.
    pub(crate) fn with_table(mut self, name: &str, table: RecordBatch) -> Context<'a> {
        self.computed_tables.push((name.to_owned(), table));
        self
    }

    /// Whether the table input `name` was given (`--table-input`) or computed.
    pub(crate) fn has_table(&self, name: &str) -> bool {
        self.request.tables.iter().any(|(n, _)| n == name)
            || self.computed_tables.iter().any(|(n, _)| n == name)
    }

    /// The metrics named with `--metric` that get the generic section.
    pub(crate) fn plugins(&self) -> &[String] {
        &self.plugins
    }

    pub(crate) fn input_name(&self) -> String {
        self.request.input.display().to_string()
    }

    pub(crate) fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The most rows any metric read: the input's rows.
    pub(crate) fn rows(&self) -> usize {
        self.rows.get()
    }

    pub(crate) fn wanted(&self, metric: &str) -> bool {
        self.request.metrics.is_empty() || self.named(metric)
    }

    pub(crate) fn named(&self, metric: &str) -> bool {
        self.request.metrics.iter().any(|m| m == metric)
    }

    pub(crate) fn has(&self, column: &str) -> bool {
        self.columns.iter().any(|c| c == column)
    }

    /// The metric's descriptor when the build has it and the input has every column in
    /// `needs`.
    pub(crate) fn descriptor(
        &self,
        metric: &str,
        needs: &[&str],
    ) -> Result<&MetricDescriptor, Skip> {
        let descriptor = self.descriptors.get(metric).ok_or(Skip::NotApplicable)?;
        if needs.iter().all(|c| self.has(c)) {
            Ok(descriptor)
        } else {
            Err(Skip::NotApplicable)
        }
    }

    /// The value the user gave parameter `key`, as text.
    pub(crate) fn user_param(&self, key: &str) -> Option<&str> {
        self.request
            .params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The parameters for `descriptor`: the user's (each parameter it declares), then
    /// `defaults` for the ones the user did not give. `ignored` are the user's parameters this
    /// section overrides (a report shows every customer, whatever `top` says).
    pub(crate) fn params(
        &self,
        descriptor: &MetricDescriptor,
        defaults: &[(&str, String)],
        ignored: &[&str],
    ) -> Result<BTreeMap<String, ParamValue>, Skip> {
        let mut params = BTreeMap::new();
        for (key, text) in &self.request.params {
            let Some(spec) = descriptor.parameter_spec(key) else {
                continue;
            };
            self.used_params.borrow_mut().insert(key.clone());
            if ignored.contains(&key.as_str()) {
                continue;
            }
            let value = ParamValue::parse(text, spec.data_type).map_err(|message| {
                Skip::Error(ReportError::Param {
                    key: key.clone(),
                    message,
                })
            })?;
            params.insert(key.clone(), value);
        }
        for (key, text) in defaults {
            if params.contains_key(*key) {
                continue;
            }
            if let Some(spec) = descriptor.parameter_spec(key) {
                let value = ParamValue::parse(text, spec.data_type).map_err(|message| {
                    Skip::Error(ReportError::Param {
                        key: (*key).to_owned(),
                        message,
                    })
                })?;
                params.insert((*key).to_owned(), value);
            }
        }
        // Scored with a stored model: the parameters its fit fixed are the fit's, whatever
        // the report's defaults; the user's, when they differ, are refused.
        if let (Some(model), Some(fitting)) =
            (self.scoring_model(&descriptor.name), &descriptor.fitting)
        {
            for key in &fitting.model_parameters {
                let fitted = model.fit.params.get(key);
                let given = self.request.params.iter().any(|(k, _)| k == key);
                if given && params.get(key) != fitted {
                    return Err(Skip::Error(ReportError::Param {
                        key: key.clone(),
                        message: format!(
                            "the report scores with model {}, fitted with {key}={}; leave --param {key} out",
                            model.fit.reference,
                            fitted.map_or("(none)".to_owned(), ToString::to_string)
                        ),
                    }));
                }
                match fitted {
                    Some(value) => params.insert(key.clone(), value.clone()),
                    None => params.remove(key),
                };
            }
        }
        Ok(params)
    }

    /// The stored model the report scores `metric` with, if any.
    pub(crate) fn scoring_model(&self, metric: &str) -> Option<&crate::ScoringModel> {
        self.request.model.as_ref().filter(|m| m.metric == metric)
    }

    /// Every parameter and table input the user gave went to some metric.
    pub(crate) fn check_params_used(&self) -> Result<(), ReportError> {
        let tables = self.used_tables.borrow();
        if let Some((name, _)) = self
            .request
            .tables
            .iter()
            .find(|(n, _)| !tables.contains(n))
        {
            return Err(ReportError::UnusedTable { name: name.clone() });
        }
        let used = self.used_params.borrow();
        match self.request.params.iter().find(|(k, _)| !used.contains(k)) {
            Some((key, _)) => Err(ReportError::Param {
                key: key.clone(),
                message: "no metric in this report takes it".to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// The input's columns `descriptor` declares, and `group_by`, typed for the metric.
    pub(crate) fn read(
        &self,
        descriptor: &MetricDescriptor,
        group_by: &[String],
    ) -> Result<RecordBatch, Skip> {
        // `--column` maps columns for every metric of the report; each metric reads its own.
        let mut options = self.request.options.clone();
        options.columns.retain(|mapping| {
            group_by.contains(&mapping.name)
                || descriptor.inputs.iter().any(|c| c.name == mapping.name)
        });
        // Columns the metric's parameters name (clv's covariates) are read too.
        for (key, text) in &self.request.params {
            for column in descriptor.named_columns([(key.as_str(), text.as_str())]) {
                if !options.named_columns.iter().any(|(_, c)| *c == column) {
                    options.named_columns.push((key.clone(), column));
                }
            }
        }
        let table = mittari_io::read(
            mittari_io::Source::Path(&self.request.input),
            descriptor,
            group_by,
            &options,
        )
        .map_err(|e| Skip::Error(ReportError::Read(e)))?;
        self.rows.set(self.rows.get().max(table.batch.num_rows()));
        Ok(table.batch)
    }

    pub(crate) fn compute(
        &self,
        metric: &str,
        params: &BTreeMap<String, ParamValue>,
        input: RecordBatch,
        group_by: &[String],
    ) -> Result<ComputeOutcome, Skip> {
        // Only the columns the computation uses: a batch read with every segment column would
        // otherwise travel whole to a server for each one.
        let input = match self.descriptors.get(metric) {
            Some(descriptor) => {
                let named = descriptor.named_columns(params.iter().filter_map(|(k, v)| match v {
                    ParamValue::String(v) => Some((k.as_str(), v.as_str())),
                    _ => None,
                }));
                let used: Vec<usize> = input
                    .schema()
                    .fields()
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| {
                        group_by.contains(f.name())
                            || descriptor.inputs.iter().any(|c| c.name == *f.name())
                            || named.contains(f.name())
                    })
                    .map(|(i, _)| i)
                    .collect();
                input
                    .project(&used)
                    .map_err(|e| Skip::Error(ReportError::Backend(Refusal(e.to_string()))))?
            }
            None => input,
        };
        let mut request = ComputeRequest::new(metric, params.clone(), input, group_by.to_vec());
        if let Some(descriptor) = self.descriptors.get(metric) {
            request.tables = self.table_inputs(descriptor, params)?;
        }
        if let Some(model) = self.scoring_model(metric) {
            if !group_by.is_empty() {
                return Err(Skip::Failed(Refusal(format!(
                    "a stored model ({}) scores the whole input, not per segment",
                    model.fit.reference
                ))));
            }
            request.mode = mittari_engine::Mode::Score(std::sync::Arc::clone(&model.fit));
        }
        self.backend.compute(request).map_err(Skip::Failed)
    }

    /// The `--table-input` tables `descriptor` declares, read for it.
    fn table_inputs(
        &self,
        descriptor: &MetricDescriptor,
        params: &BTreeMap<String, ParamValue>,
    ) -> Result<Vec<(String, RecordBatch)>, Skip> {
        let texts: Vec<(&str, &str)> = params
            .iter()
            .filter_map(|(k, v)| match v {
                ParamValue::String(v) => Some((k.as_str(), v.as_str())),
                _ => None,
            })
            .collect();
        let mut tables = Vec::new();
        for (name, path) in &self.request.tables {
            if descriptor.table_input_spec(name).is_none() {
                continue;
            }
            self.used_tables.borrow_mut().insert(name.clone());
            let mappings = self
                .request
                .table_columns
                .iter()
                .filter(|(table, _)| table == name)
                .map(|(_, mapping)| mapping.clone())
                .collect();
            let table = mittari_io::read_table_input(
                path,
                descriptor,
                name,
                texts.iter().copied(),
                &self.request.options,
                mappings,
            )
            .map_err(|e| Skip::Error(ReportError::Read(e)))?;
            if let Some(table) = table {
                tables.push((name.clone(), table.batch));
            }
        }
        tables.extend(
            self.computed_tables
                .iter()
                .filter(|(name, _)| descriptor.table_input_spec(name).is_some())
                .cloned(),
        );
        Ok(tables)
    }

    /// `descriptor`'s metric computed per value of the column `segment` of `segments`.
    pub(crate) fn compute_by(
        &self,
        descriptor: &MetricDescriptor,
        params: &BTreeMap<String, ParamValue>,
        segments: &Segments,
        segment: &str,
    ) -> Result<Option<GroupedResults>, Skip> {
        let input = &segments.input;
        Ok(self
            .compute(
                &descriptor.name,
                params,
                input.clone(),
                &[segment.to_owned()],
            )?
            .grouped)
    }

    /// The columns to break `descriptor`'s metric down by: `--group-by`, or else every column
    /// the metric does not read with 2 to 20 distinct values (region, channel, plan); and the
    /// input, read once with all of them, for the metric overall and per segment.
    pub(crate) fn segments(&self, descriptor: &MetricDescriptor) -> Result<Segments, Skip> {
        if !self.request.group_by.is_empty() {
            let names = self.request.group_by.clone();
            let input = self.read(descriptor, &names)?;
            return Ok(Segments { names, input });
        }
        let candidates: Vec<String> = self
            .columns
            .iter()
            .filter(|c| {
                // Attribute ratings (rating_speed) are measures a survey weighs, not segments.
                c.as_str() != "timestamp"
                    && !c.starts_with("rating_")
                    && !self.measurements.contains(c)
                    && !descriptor.inputs.iter().any(|i| &i.name == *c)
            })
            .cloned()
            .collect();
        let input = self.read(descriptor, &candidates)?;
        let names = candidates
            .into_iter()
            .filter(|name| {
                input.column_by_name(name).is_some_and(|column| {
                    let distinct = crate::table::distinct_texts(column.as_ref(), MAX_SEGMENTS + 1);
                    (2..=MAX_SEGMENTS).contains(&distinct.len()) && column.null_count() == 0
                })
            })
            .collect();
        Ok(Segments { names, input })
    }
}

/// The columns a metric is broken down by, and the input read with them: one batch for every
/// computation ([`Context::compute`] sends each only the columns it uses).
pub(crate) struct Segments {
    pub(crate) names: Vec<String>,
    pub(crate) input: RecordBatch,
}
