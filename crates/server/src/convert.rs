//! Conversions between the wire types of `mittari.v1` and the engine's Arrow and SDK types.
//! Tables cross in both directions column by column, without per-row messages.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, RecordBatchOptions, StringArray,
    TimestampMicrosecondArray,
};
use arrow_buffer::{BooleanBuffer, NullBuffer};
use arrow_schema::{Field as ArrowField, Schema};
use mittari_engine::{
    ColumnSpec, ComputeOutcome, ConfidenceInterval, ConfidenceIntervals, DataType, EngineError,
    Field, FittingSpec, GroupTable, GroupedResults, GroupedWarning, MetricDescriptor,
    MetricResults, OutputSpec, ParamValue, ParameterSpec, Range, ResultScalar, RfmSummaryInput,
    ScalarColumn, TableInputSpec, TableSpec, Violation, Warning,
};
use mittari_proto::v1 as pb;

use crate::ipc_check::{self, IpcCheckError, IpcLimits, IpcSize};
use crate::status::ServiceError;

pub fn data_type_to_proto(data_type: DataType) -> pb::DataType {
    match data_type {
        DataType::Int64 => pb::DataType::Int64,
        DataType::Double => pb::DataType::Double,
        DataType::String => pb::DataType::String,
        DataType::Bool => pb::DataType::Bool,
        DataType::Timestamp => pb::DataType::Timestamp,
    }
}

pub fn data_type_from_proto(data_type: pb::DataType) -> Option<DataType> {
    match data_type {
        pb::DataType::Int64 => Some(DataType::Int64),
        pb::DataType::Double => Some(DataType::Double),
        pb::DataType::String => Some(DataType::String),
        pb::DataType::Bool => Some(DataType::Bool),
        pb::DataType::Timestamp => Some(DataType::Timestamp),
        pb::DataType::Unspecified => None,
    }
}

pub fn value_to_proto(value: &ParamValue) -> pb::Value {
    use pb::value::Kind;
    let kind = match value {
        ParamValue::Int64(v) => Kind::Int64Value(*v),
        ParamValue::Double(v) => Kind::DoubleValue(*v),
        ParamValue::String(v) => Kind::StringValue(v.clone()),
        ParamValue::Bool(v) => Kind::BoolValue(*v),
        ParamValue::Timestamp(v) => Kind::TimestampValue(*v),
    };
    pb::Value { kind: Some(kind) }
}

pub fn value_from_proto(value: &pb::Value) -> Option<ParamValue> {
    use pb::value::Kind;
    Some(match value.kind.as_ref()? {
        Kind::Int64Value(v) => ParamValue::Int64(*v),
        Kind::DoubleValue(v) => ParamValue::Double(*v),
        Kind::StringValue(v) => ParamValue::String(v.clone()),
        Kind::BoolValue(v) => ParamValue::Bool(*v),
        Kind::TimestampValue(v) => ParamValue::Timestamp(*v),
    })
}

/// Longest name (metric, parameter, column) a request may use.
const MAX_NAME_BYTES: usize = 256;

/// Refuses a name a client sent that is too long or holds control characters, before it can
/// reach an error message or a log line: a megabyte name is not echoed back, and a newline in
/// one cannot forge a log line. The field names the kind of name, never the name itself.
pub fn check_name(what: &str, field: impl Fn() -> Field, name: &str) -> Result<(), ServiceError> {
    if name.len() > MAX_NAME_BYTES {
        return Err(invalid(
            field(),
            format!(
                "a {what} name of {} bytes; names are at most {MAX_NAME_BYTES} bytes",
                name.len()
            ),
        ));
    }
    if let Some(at) = name.find(char::is_control) {
        return Err(invalid(
            field(),
            format!(
                "a {what} name with a control character at byte {at}; names are printable text"
            ),
        ));
    }
    Ok(())
}

pub fn params_from_proto(
    params: &std::collections::HashMap<String, pb::Value>,
) -> Result<BTreeMap<String, ParamValue>, ServiceError> {
    params
        .iter()
        .map(|(name, value)| {
            check_name("parameter", || Field::Input, name)?;
            value_from_proto(value)
                .map(|v| (name.clone(), v))
                .ok_or_else(|| {
                    invalid(
                        Field::Parameter { name: name.clone() },
                        format!("parameter {name} has no value; set one of the Value fields"),
                    )
                })
        })
        .collect()
}

fn invalid(field: Field, description: impl Into<String>) -> ServiceError {
    ServiceError::Engine(EngineError::InvalidArgument {
        violations: vec![Violation::new(field, description)],
    })
}

fn range_to_proto(range: Option<Range>) -> Option<pb::Range> {
    range.map(|r| pb::Range {
        min: r.min,
        max: r.max,
    })
}

fn range_from_proto(range: Option<&pb::Range>) -> Option<Range> {
    range.map(|r| Range {
        min: r.min,
        max: r.max,
    })
}

pub fn descriptor_to_proto(descriptor: &MetricDescriptor, library: &str) -> pb::MetricDescriptor {
    pb::MetricDescriptor {
        name: descriptor.name.clone(),
        version: descriptor.version.clone(),
        summary: descriptor.summary.clone(),
        description: descriptor.description.clone(),
        inputs: descriptor.inputs.iter().map(column_spec_to_proto).collect(),
        parameters: descriptor
            .parameters
            .iter()
            .map(|p| pb::ParameterSpec {
                name: p.name.clone(),
                r#type: data_type_to_proto(p.data_type).into(),
                default_value: p.default.as_ref().map(value_to_proto),
                range: range_to_proto(p.range),
                allowed_values: p.allowed_values.clone(),
                description: p.description.clone(),
                required: p.is_required(),
                names_columns: p.names_columns,
                columns_table: p.columns_table.clone().unwrap_or_default(),
            })
            .collect(),
        outputs: descriptor
            .outputs
            .iter()
            .map(|o| pb::OutputSpec {
                name: o.name.clone(),
                unit: o.unit.clone(),
                description: o.description.clone(),
            })
            .collect(),
        tables: descriptor
            .tables
            .iter()
            .map(|t| pb::TableSpec {
                name: t.name.clone(),
                description: t.description.clone(),
                columns: t
                    .columns
                    .iter()
                    .map(|c| pb::OutputSpec {
                        name: c.name.clone(),
                        unit: c.unit.clone(),
                        description: c.description.clone(),
                    })
                    .collect(),
            })
            .collect(),
        library: library.to_owned(),
        expensive: descriptor.expensive,
        rfm_summary: descriptor
            .rfm_summary
            .as_ref()
            .map(|summary| pb::RfmSummaryInput {
                parameter: summary.parameter.clone(),
                values: summary.values.clone(),
            }),
        fitting: descriptor.fitting.as_ref().map(|f| pb::FittingSpec {
            model_parameters: f.model_parameters.clone(),
            description: f.description.clone(),
        }),
        table_inputs: descriptor
            .table_inputs
            .iter()
            .map(|t| pb::TableInputSpec {
                name: t.name.clone(),
                description: t.description.clone(),
                columns: t.columns.iter().map(column_spec_to_proto).collect(),
                required: t.required,
            })
            .collect(),
    }
}

fn column_spec_to_proto(c: &ColumnSpec) -> pb::ColumnSpec {
    pb::ColumnSpec {
        name: c.name.clone(),
        r#type: data_type_to_proto(c.data_type).into(),
        required: c.required,
        description: c.description.clone(),
        range: range_to_proto(c.range),
    }
}

/// The SDK form of a descriptor a server sent, so the CLI types CSV columns and parameters the
/// same way whether the engine is embedded or remote.
pub fn descriptor_from_proto(d: &pb::MetricDescriptor) -> MetricDescriptor {
    let data_type = |t: i32| {
        pb::DataType::try_from(t)
            .ok()
            .and_then(data_type_from_proto)
            .unwrap_or(DataType::String)
    };
    let column_spec = |c: &pb::ColumnSpec| ColumnSpec {
        name: c.name.clone(),
        data_type: data_type(c.r#type),
        required: c.required,
        description: c.description.clone(),
        range: range_from_proto(c.range.as_ref()),
    };
    MetricDescriptor {
        name: d.name.clone(),
        version: d.version.clone(),
        summary: d.summary.clone(),
        description: d.description.clone(),
        inputs: d.inputs.iter().map(column_spec).collect(),
        parameters: d
            .parameters
            .iter()
            .map(|p| ParameterSpec {
                name: p.name.clone(),
                data_type: data_type(p.r#type),
                default: p.default_value.as_ref().and_then(value_from_proto),
                range: range_from_proto(p.range.as_ref()),
                allowed_values: p.allowed_values.clone(),
                description: p.description.clone(),
                required: p.required,
                names_columns: p.names_columns,
                columns_table: (!p.columns_table.is_empty()).then(|| p.columns_table.clone()),
            })
            .collect(),
        outputs: d
            .outputs
            .iter()
            .map(|o| OutputSpec::new(&o.name, &o.unit, &o.description))
            .collect(),
        tables: d
            .tables
            .iter()
            .map(|t| TableSpec {
                name: t.name.clone(),
                description: t.description.clone(),
                columns: t
                    .columns
                    .iter()
                    .map(|c| OutputSpec::new(&c.name, &c.unit, &c.description))
                    .collect(),
            })
            .collect(),
        expensive: d.expensive,
        rfm_summary: d.rfm_summary.as_ref().map(|summary| RfmSummaryInput {
            parameter: summary.parameter.clone(),
            values: summary.values.clone(),
        }),
        fitting: d.fitting.as_ref().map(|f| FittingSpec {
            model_parameters: f.model_parameters.clone(),
            description: f.description.clone(),
        }),
        table_inputs: d
            .table_inputs
            .iter()
            .map(|t| TableInputSpec {
                name: t.name.clone(),
                description: t.description.clone(),
                columns: t.columns.iter().map(column_spec).collect(),
                required: t.required,
            })
            .collect(),
        // The server compares the groups; a client renders the columns it returns.
        group_comparison: None,
    }
}

/// The validity of a column from its wire null mask (bit set = null).
fn nulls_from_mask(
    name: &str,
    mask: &[u8],
    len: usize,
) -> Result<Option<NullBuffer>, ServiceError> {
    if mask.is_empty() {
        return Ok(None);
    }
    if mask.len() != len.div_ceil(8) {
        return Err(invalid(
            Field::Column {
                name: name.to_owned(),
                row: None,
            },
            format!(
                "null_mask of column {name} has {} bytes; {len} rows need {}",
                mask.len(),
                len.div_ceil(8)
            ),
        ));
    }
    let is_null = BooleanBuffer::new(mask.to_vec().into(), 0, len);
    let nulls = NullBuffer::new(!&is_null);
    Ok((nulls.null_count() > 0).then_some(nulls))
}

fn mask_from_nulls(nulls: Option<&NullBuffer>) -> Vec<u8> {
    match nulls {
        Some(nulls) if nulls.null_count() > 0 => {
            let mut mask = vec![0u8; nulls.len().div_ceil(8)];
            for row in (0..nulls.len()).filter(|&r| nulls.is_null(r)) {
                mask[row / 8] |= 1 << (row % 8);
            }
            mask
        }
        _ => Vec::new(),
    }
}

/// A wire column as an Arrow array. The values move into the array: no copy of numbers.
fn column_to_array(column: pb::Column) -> Result<(DataType, ArrayRef), ServiceError> {
    use pb::column::Values;
    let name = &column.name;
    let Some(values) = column.values else {
        return Err(invalid(
            Field::Column {
                name: name.clone(),
                row: None,
            },
            format!(
                "column {name} has no values; set one of int64_values, double_values, string_values, bool_values or timestamp_values"
            ),
        ));
    };
    Ok(match values {
        Values::Int64Values(v) => {
            let nulls = nulls_from_mask(name, &column.null_mask, v.values.len())?;
            (
                DataType::Int64,
                Arc::new(Int64Array::new(v.values.into(), nulls)) as ArrayRef,
            )
        }
        Values::DoubleValues(v) => {
            let nulls = nulls_from_mask(name, &column.null_mask, v.values.len())?;
            (
                DataType::Double,
                Arc::new(Float64Array::new(v.values.into(), nulls)),
            )
        }
        Values::TimestampValues(v) => {
            let nulls = nulls_from_mask(name, &column.null_mask, v.values.len())?;
            let array = TimestampMicrosecondArray::new(v.values.into(), nulls).with_timezone("UTC");
            (DataType::Timestamp, Arc::new(array))
        }
        Values::BoolValues(v) => {
            let nulls = nulls_from_mask(name, &column.null_mask, v.values.len())?;
            let values = BooleanBuffer::from(v.values.as_slice());
            (DataType::Bool, Arc::new(BooleanArray::new(values, nulls)))
        }
        Values::StringValues(v) => {
            let nulls = nulls_from_mask(name, &column.null_mask, v.values.len())?;
            let array: StringArray = v
                .values
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    nulls
                        .as_ref()
                        .is_none_or(|n| n.is_valid(i))
                        .then_some(s.as_str())
                })
                .collect();
            (DataType::String, Arc::new(array))
        }
    })
}

/// A wire table as an Arrow batch. Columns must have distinct names and equal lengths. The
/// table is consumed, so numbers move into the batch and strings are freed column by column:
/// a large request is held about once, not twice.
pub fn table_to_batch(table: pb::Table) -> Result<RecordBatch, ServiceError> {
    if !table.arrow_ipc.is_empty() {
        if !table.columns.is_empty() {
            return Err(invalid(
                Field::Input,
                "a table has both columns and arrow_ipc; send one encoding",
            ));
        }
        let (schema, batches) = ipc_to_batches(table.arrow_ipc, &IpcLimits::ANSWERS, |_| Ok(()))?;
        return arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| {
            invalid(
                Field::Input,
                format!("cannot assemble the Arrow batches: {e}"),
            )
        });
    }
    let mut seen = HashSet::new();
    let mut fields = Vec::with_capacity(table.columns.len());
    let mut arrays = Vec::with_capacity(table.columns.len());
    let first_name = table
        .columns
        .first()
        .map(|c| c.name.clone())
        .unwrap_or_default();
    for column in table.columns {
        let name = column.name.clone();
        check_name("column", || Field::Input, &name)?;
        if name.is_empty() {
            return Err(invalid(
                Field::Input,
                "a column has no name; give every column a name",
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(invalid(
                Field::Column {
                    name: name.clone(),
                    row: None,
                },
                format!("column {name} appears twice; send each column once"),
            ));
        }
        let (data_type, array) = column_to_array(column)?;
        if let Some(first) = arrays.first().map(|a: &ArrayRef| a.len())
            && array.len() != first
        {
            return Err(invalid(
                Field::Column {
                    name: name.clone(),
                    row: None,
                },
                format!(
                    "column {name} has {} values but column {first_name} has {first}; every column needs one value per row",
                    array.len(),
                ),
            ));
        }
        fields.push(ArrowField::new(&name, data_type.arrow_type(), true));
        arrays.push(array);
    }
    let rows = arrays.first().map_or(0, |a| a.len());
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options).map_err(
        |e| {
            invalid(
                Field::Input,
                format!("the input table is inconsistent: {e}"),
            )
        },
    )
}

/// An Arrow batch as a wire table. Columns of the five wire types only; the engine guarantees
/// that of plugin result tables, and the CLI builds batches from them.
/// An Arrow IPC stream's schema and batches, decoded from the received buffer: the batches'
/// buffers are slices of it unless they are misaligned or compressed.
///
/// Every size the stream claims is checked against `limits` first ([`crate::ipc_check`]),
/// and `reserve` is given what decoding will allocate before anything is; it may refuse. A
/// stream arrow-rs still rejects, or panics on, is an invalid argument.
pub fn ipc_to_batches(
    bytes: bytes::Bytes,
    limits: &IpcLimits,
    reserve: impl FnOnce(IpcSize) -> Result<(), ServiceError>,
) -> Result<(arrow_schema::SchemaRef, Vec<RecordBatch>), ServiceError> {
    let refused = |e: IpcCheckError| invalid(Field::Input, e.to_string());
    let checked = ipc_check::check(&bytes, limits).map_err(refused)?;
    reserve(checked.size)?;
    checked.prove(&bytes).map_err(refused)?;
    let fail = |e: arrow_schema::ArrowError| {
        invalid(
            Field::Input,
            format!(
                "arrow_ipc is not a valid Arrow IPC stream: {e}; write it with pyarrow.ipc.new_stream or arrow's StreamWriter"
            ),
        )
    };
    let decode = move || {
        let mut buffer = arrow_buffer::Buffer::from(bytes);
        let mut decoder = arrow_ipc::reader::StreamDecoder::new();
        let mut batches = Vec::new();
        while !buffer.is_empty() {
            if let Some(batch) = decoder.decode(&mut buffer).map_err(fail)? {
                batches.push(batch);
            }
        }
        decoder.finish().map_err(fail)?;
        let schema = decoder
            .schema()
            .ok_or_else(|| invalid(Field::Input, "arrow_ipc holds no schema message"))?;
        Ok((schema, batches))
    };
    // arrow-rs panics on some inconsistent streams the check above lets through (a schema
    // it cannot represent, say); such a stream is the client's error, not a crash.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).unwrap_or_else(|panic| {
        let reason = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "an inconsistency the decoder could not name".to_owned());
        Err(invalid(
            Field::Input,
            format!(
                "arrow_ipc is not a valid Arrow IPC stream ({reason}); write it with pyarrow.ipc.new_stream or arrow's StreamWriter"
            ),
        ))
    })
}

/// A batch as an Arrow IPC stream: its schema message and one record batch.
pub fn batch_to_ipc(batch: &RecordBatch) -> Result<bytes::Bytes, arrow_schema::ArrowError> {
    let mut bytes = Vec::with_capacity(batch.get_array_memory_size() + 1024);
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut bytes, &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(bytes::Bytes::from(bytes))
}

/// A result table in the encoding the client asked for.
fn encode_table(batch: &RecordBatch, encoding: pb::TableEncoding) -> pb::Table {
    match encoding {
        pb::TableEncoding::Columns => batch_to_table(batch),
        // Writing to memory fails only for types IPC cannot hold, which results never have.
        pb::TableEncoding::ArrowIpc => match batch_to_ipc(batch) {
            Ok(arrow_ipc) => pb::Table {
                columns: Vec::new(),
                arrow_ipc,
            },
            Err(_) => batch_to_table(batch),
        },
    }
}

/// Columns of a large table are converted in parallel: a million-row result is a copy per
/// column. A small one's are converted in place, where handing them to the thread pool (and
/// waking it) would cost more than the copies: a scored customer's answer is a few small tables.
pub fn batch_to_table(batch: &RecordBatch) -> pb::Table {
    use rayon::prelude::*;
    const PARALLEL_ROWS: usize = 1 << 14;
    let schema = batch.schema();
    let columns = if batch.num_rows() < PARALLEL_ROWS {
        schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(field, array)| array_to_column(field.name(), array))
            .collect()
    } else {
        schema
            .fields()
            .par_iter()
            .zip(batch.columns())
            .map(|(field, array)| array_to_column(field.name(), array))
            .collect()
    };
    pb::Table {
        columns,
        arrow_ipc: bytes::Bytes::new(),
    }
}

/// An Arrow array as a wire column (of the five wire types; see [`batch_to_table`]).
fn array_to_column(name: &str, array: &ArrayRef) -> pb::Column {
    use pb::column::Values;
    let values = if let Some(a) = array.as_primitive_opt::<Int64Type>() {
        Values::Int64Values(pb::Int64Values {
            values: a.values().to_vec(),
        })
    } else if let Some(a) = array.as_primitive_opt::<Float64Type>() {
        Values::DoubleValues(pb::DoubleValues {
            values: a.values().to_vec(),
        })
    } else if let Some(a) = array.as_primitive_opt::<TimestampMicrosecondType>() {
        Values::TimestampValues(pb::Int64Values {
            values: a.values().to_vec(),
        })
    } else if let Some(a) = array.as_boolean_opt() {
        Values::BoolValues(pb::BoolValues {
            values: a.values().iter().collect(),
        })
    } else if let Some(a) = array.as_string_opt::<i32>() {
        Values::StringValues(pb::StringValues {
            values: a.iter().map(|s| s.unwrap_or_default().to_owned()).collect(),
        })
    } else {
        // Unreachable for checked batches; a column of strings says what happened.
        Values::StringValues(pb::StringValues {
            values: vec![format!("unsupported type {}", array.data_type()); array.len()],
        })
    };
    pb::Column {
        name: name.to_owned(),
        values: Some(values),
        null_mask: mask_from_nulls(array.logical_nulls().as_ref()),
    }
}

fn results_to_proto(results: MetricResults, encoding: pb::TableEncoding) -> pb::Results {
    pb::Results {
        scalars: results
            .scalars
            .into_iter()
            .map(|s| pb::Scalar {
                name: s.name,
                value: s.value,
                unit: s.unit,
                confidence_interval: s.confidence_interval.map(|ci| pb::ConfidenceInterval {
                    lower: ci.lower,
                    upper: ci.upper,
                    level: ci.level,
                }),
                undefined_reason: s.undefined_reason.unwrap_or_default(),
            })
            .collect(),
        tables: results
            .tables
            .iter()
            .map(|(name, batch)| pb::ResultTable {
                name: name.clone(),
                table: Some(encode_table(batch, encoding)),
            })
            .collect(),
        warnings: results
            .warnings
            .into_iter()
            .map(|w| pb::Warning {
                code: w.code,
                message: w.message,
            })
            .collect(),
    }
}

fn grouped_to_proto(grouped: GroupedResults, encoding: pb::TableEncoding) -> pb::GroupedResults {
    pb::GroupedResults {
        keys: grouped
            .keys
            .iter()
            .map(|(name, array)| array_to_column(name, array))
            .collect(),
        rows: grouped.rows,
        scalars: grouped
            .scalars
            .into_iter()
            .map(|c| pb::ScalarColumn {
                name: c.name,
                unit: c.unit,
                values: c.values,
                undefined: c.undefined,
                undefined_reasons: c.undefined_reasons,
                confidence_intervals: c.confidence_intervals.map(|ci| pb::ConfidenceIntervals {
                    lower: ci.lower,
                    upper: ci.upper,
                    level: ci.level,
                }),
            })
            .collect(),
        warnings: grouped
            .warnings
            .into_iter()
            .map(|w| pb::GroupedWarning {
                warning: Some(pb::Warning {
                    code: w.warning.code,
                    message: w.warning.message,
                }),
                groups: w.groups,
            })
            .collect(),
        tables: grouped
            .tables
            .into_iter()
            .map(|t| pb::GroupTable {
                group: t.group,
                name: t.name,
                table: Some(encode_table(&t.table, encoding)),
            })
            .collect(),
    }
}

/// The response to a computation, its result tables in `encoding`.
pub fn outcome_to_proto(
    outcome: ComputeOutcome,
    encoding: pb::TableEncoding,
) -> pb::ComputeResponse {
    pb::ComputeResponse {
        metric: outcome.metric,
        results: outcome.results.map(|r| results_to_proto(r, encoding)),
        grouped: outcome.grouped.map(|g| grouped_to_proto(g, encoding)),
        rows: outcome.rows as u64,
    }
}

/// A server's response as the engine's outcome, for a client that reads results as the
/// engine gives them (`mittari report --server`). The inverse of [`outcome_to_proto`]; the
/// timings stay the server's own.
pub fn outcome_from_proto(response: pb::ComputeResponse) -> Result<ComputeOutcome, ServiceError> {
    let table = |table: Option<pb::Table>| table_to_batch(table.unwrap_or_default());
    let results = match response.results {
        None => None,
        Some(results) => Some(MetricResults {
            scalars: results
                .scalars
                .into_iter()
                .map(|s| ResultScalar {
                    name: s.name,
                    unit: s.unit,
                    value: s.value,
                    confidence_interval: s.confidence_interval.map(|ci| ConfidenceInterval {
                        lower: ci.lower,
                        upper: ci.upper,
                        level: ci.level,
                    }),
                    undefined_reason: (!s.undefined_reason.is_empty())
                        .then_some(s.undefined_reason),
                })
                .collect(),
            tables: results
                .tables
                .into_iter()
                .map(|t| Ok((t.name, table(t.table)?)))
                .collect::<Result<_, ServiceError>>()?,
            warnings: results
                .warnings
                .into_iter()
                .map(|w| Warning {
                    code: w.code,
                    message: w.message,
                })
                .collect(),
        }),
    };
    let grouped = match response.grouped {
        None => None,
        Some(grouped) => {
            let keys = table_to_batch(pb::Table {
                columns: grouped.keys,
                ..Default::default()
            })?;
            Some(GroupedResults {
                keys: keys
                    .schema()
                    .fields()
                    .iter()
                    .zip(keys.columns())
                    .map(|(field, column)| (field.name().clone(), Arc::clone(column)))
                    .collect(),
                rows: grouped.rows,
                scalars: grouped
                    .scalars
                    .into_iter()
                    .map(|c| ScalarColumn {
                        name: c.name,
                        unit: c.unit,
                        values: c.values,
                        undefined: c.undefined,
                        undefined_reasons: c.undefined_reasons,
                        confidence_intervals: c.confidence_intervals.map(|ci| {
                            ConfidenceIntervals {
                                lower: ci.lower,
                                upper: ci.upper,
                                level: ci.level,
                            }
                        }),
                    })
                    .collect(),
                warnings: grouped
                    .warnings
                    .into_iter()
                    .map(|w| {
                        let warning = w.warning.unwrap_or_default();
                        GroupedWarning {
                            warning: Warning {
                                code: warning.code,
                                message: warning.message,
                            },
                            groups: w.groups,
                        }
                    })
                    .collect(),
                tables: grouped
                    .tables
                    .into_iter()
                    .map(|t| {
                        Ok(GroupTable {
                            group: t.group,
                            name: t.name,
                            table: table(t.table)?,
                        })
                    })
                    .collect::<Result<_, ServiceError>>()?,
            })
        }
    };
    Ok(ComputeOutcome {
        metric: response.metric,
        rows: response.rows as usize,
        results,
        grouped,
        fitted: None,
        timings: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine refuses results by a lower bound of their encoded size: the bound must never
    /// exceed what the protobuf encoding takes, or a result that fits would be refused.
    #[test]
    fn result_size_bounds_are_below_the_encoded_size() {
        use mittari_engine::{
            ConfidenceInterval, ConfidenceIntervals, GroupTable, GroupedWarning, ResultScalar,
            ScalarColumn, Warning,
        };
        // xorshift: deterministic cases without a dependency.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let text = |next: &mut dyn FnMut(u64) -> u64| "é".repeat(next(4) as usize);
        let number = |next: &mut dyn FnMut(u64) -> u64| [0.0, -0.0, 1.5, 1e300][next(4) as usize];
        let table = |next: &mut dyn FnMut(u64) -> u64| {
            let rows = next(40) as usize;
            let columns: Vec<(String, ArrayRef)> = vec![
                (text(next), Arc::new(Float64Array::from(vec![0.0; rows]))),
                (text(next), Arc::new(Int64Array::from(vec![0; rows]))),
                (text(next), Arc::new(StringArray::from(vec![""; rows]))),
                (text(next), Arc::new(BooleanArray::from(vec![false; rows]))),
            ];
            let columns = columns
                .into_iter()
                .enumerate()
                .map(|(i, (name, array))| (format!("{name}{i}"), array));
            RecordBatch::try_from_iter(columns).unwrap()
        };
        let warning = |next: &mut dyn FnMut(u64) -> u64| Warning {
            code: text(next),
            message: text(next),
        };
        for _ in 0..1000 {
            let scalars = (0..next(4))
                .map(|_| ResultScalar {
                    name: text(&mut next),
                    unit: text(&mut next),
                    value: (next(2) == 0).then(|| number(&mut next)),
                    confidence_interval: (next(2) == 0).then(|| ConfidenceInterval {
                        lower: number(&mut next),
                        upper: number(&mut next),
                        level: number(&mut next),
                    }),
                    undefined_reason: (next(2) == 0).then(|| text(&mut next)),
                })
                .collect();
            let results = MetricResults {
                scalars,
                tables: (0..next(2))
                    .map(|_| (text(&mut next), table(&mut next)))
                    .collect(),
                warnings: (0..next(3)).map(|_| warning(&mut next)).collect(),
            };
            let bound = results.wire_bytes_lower_bound();
            let encoded = prost::Message::encoded_len(&results_to_proto(
                results.clone(),
                pb::TableEncoding::Columns,
            ));
            assert!(bound <= encoded, "{bound} > {encoded}: {results:?}");

            let groups = next(5) as usize;
            let key: ArrayRef = match next(4) {
                0 => Arc::new(Int64Array::from(vec![0; groups])),
                1 => Arc::new(BooleanArray::from(vec![None; groups])),
                2 => Arc::new(Float64Array::from(vec![0.0; groups])),
                _ => Arc::new(StringArray::from(vec![text(&mut next); groups])),
            };
            let scalars = (0..next(3))
                .map(|_| ScalarColumn {
                    name: text(&mut next),
                    unit: text(&mut next),
                    values: (0..groups).map(|_| number(&mut next)).collect(),
                    undefined: if next(2) == 0 {
                        (0..groups).map(|_| next(2) as u32).collect()
                    } else {
                        Vec::new()
                    },
                    undefined_reasons: vec![text(&mut next)],
                    confidence_intervals: (next(2) == 0).then(|| ConfidenceIntervals {
                        lower: (0..groups).map(|_| number(&mut next)).collect(),
                        upper: (0..groups).map(|_| number(&mut next)).collect(),
                        level: (0..groups).map(|_| number(&mut next)).collect(),
                    }),
                })
                .collect();
            let grouped = GroupedResults {
                keys: vec![(text(&mut next), key)],
                rows: (0..groups).map(|_| next(1000)).collect(),
                scalars,
                warnings: (0..next(3))
                    .map(|_| GroupedWarning {
                        warning: warning(&mut next),
                        groups: (0..groups as u32).collect(),
                    })
                    .collect(),
                tables: (0..groups.min(next(3) as usize))
                    .map(|group| GroupTable {
                        group: group as u32,
                        name: text(&mut next),
                        table: table(&mut next),
                    })
                    .collect(),
            };
            let bound = grouped.wire_bytes_lower_bound();
            let encoded = prost::Message::encoded_len(&grouped_to_proto(
                grouped.clone(),
                pb::TableEncoding::Columns,
            ));
            assert!(bound <= encoded, "{bound} > {encoded}: {grouped:?}");
        }
    }

    /// What the server sends, read back, is what the engine gave it.
    #[test]
    fn outcomes_round_trip_through_the_wire() {
        // Wire columns are all nullable.
        let table = RecordBatch::try_from_iter_with_nullable([
            (
                "n",
                Arc::new(Float64Array::from(vec![Some(1.5), None])) as ArrayRef,
                true,
            ),
            (
                "k",
                Arc::new(Int64Array::from(vec![3, -4])) as ArrayRef,
                true,
            ),
            (
                "s",
                Arc::new(StringArray::from(vec![None, Some("é")])) as ArrayRef,
                true,
            ),
            (
                "b",
                Arc::new(BooleanArray::from(vec![true, false])) as ArrayRef,
                true,
            ),
        ])
        .unwrap();
        let warning = Warning {
            code: "small_sample".into(),
            message: "only 2 rows".into(),
        };
        let outcome = ComputeOutcome {
            metric: "m".into(),
            rows: 7,
            results: Some(MetricResults {
                scalars: vec![
                    ResultScalar {
                        name: "a".into(),
                        unit: "%".into(),
                        value: Some(2.5),
                        confidence_interval: Some(ConfidenceInterval {
                            lower: 1.0,
                            upper: 4.0,
                            level: 0.95,
                        }),
                        undefined_reason: None,
                    },
                    ResultScalar {
                        name: "b".into(),
                        unit: "count".into(),
                        value: None,
                        confidence_interval: None,
                        undefined_reason: Some("no rows".into()),
                    },
                ],
                tables: vec![("t".into(), table.clone())],
                warnings: vec![warning.clone()],
            }),
            grouped: Some(GroupedResults {
                keys: vec![(
                    "region".into(),
                    Arc::new(StringArray::from(vec![None, Some("north")])) as ArrayRef,
                )],
                rows: vec![3, 4],
                scalars: vec![ScalarColumn {
                    name: "a".into(),
                    unit: "%".into(),
                    values: vec![0.0, 2.5],
                    undefined: vec![1, 0],
                    undefined_reasons: vec!["no rows".into()],
                    confidence_intervals: Some(ConfidenceIntervals {
                        lower: vec![0.0, 1.0],
                        upper: vec![0.0, 4.0],
                        level: vec![0.0, 0.95],
                    }),
                }],
                warnings: vec![GroupedWarning {
                    warning,
                    groups: vec![1],
                }],
                tables: vec![GroupTable {
                    group: 1,
                    name: "t".into(),
                    table,
                }],
            }),
            fitted: None,
            timings: Default::default(),
        };
        for encoding in [pb::TableEncoding::Columns, pb::TableEncoding::ArrowIpc] {
            let back = outcome_from_proto(outcome_to_proto(outcome.clone(), encoding)).unwrap();
            assert_eq!(format!("{back:?}"), format!("{outcome:?}"), "{encoding:?}");
        }
    }

    fn column(name: &str, values: pb::column::Values, null_mask: Vec<u8>) -> pb::Column {
        pb::Column {
            name: name.to_owned(),
            values: Some(values),
            null_mask,
        }
    }

    #[test]
    fn tables_round_trip_with_nulls() {
        use pb::column::Values;
        let table = pb::Table {
            columns: vec![
                column(
                    "a",
                    Values::Int64Values(pb::Int64Values {
                        values: vec![1, 0, 3],
                    }),
                    vec![0b010],
                ),
                column(
                    "b",
                    Values::DoubleValues(pb::DoubleValues {
                        values: vec![0.5, 1.5, 2.5],
                    }),
                    vec![],
                ),
                column(
                    "c",
                    Values::StringValues(pb::StringValues {
                        values: vec!["x".into(), "".into(), "z".into()],
                    }),
                    vec![0b010],
                ),
                column(
                    "d",
                    Values::BoolValues(pb::BoolValues {
                        values: vec![true, false, true],
                    }),
                    vec![],
                ),
                column(
                    "e",
                    Values::TimestampValues(pb::Int64Values {
                        values: vec![0, 1, 2],
                    }),
                    vec![0b100],
                ),
            ],
            ..Default::default()
        };
        let batch = table_to_batch(table.clone()).unwrap();
        assert_eq!(batch.num_rows(), 3);
        assert_eq!(batch.column(0).null_count(), 1);
        assert_eq!(batch_to_table(&batch), table);
    }

    #[test]
    fn malformed_tables_are_invalid_arguments() {
        use pb::column::Values;
        let check = |table: pb::Table, expect: &str| {
            let error = table_to_batch(table.clone()).unwrap_err().to_string();
            assert!(error.contains(expect), "{error:?} lacks {expect:?}");
        };
        let ints = |v: Vec<i64>| Values::Int64Values(pb::Int64Values { values: v });
        check(
            pb::Table {
                columns: vec![
                    column("a", ints(vec![1]), vec![]),
                    column("a", ints(vec![1]), vec![]),
                ],
                ..Default::default()
            },
            "appears twice",
        );
        check(
            pb::Table {
                columns: vec![
                    column("a", ints(vec![1]), vec![]),
                    column("b", ints(vec![1, 2]), vec![]),
                ],
                ..Default::default()
            },
            "has 2 values but column a has 1",
        );
        check(
            pb::Table {
                columns: vec![column("a", ints(vec![1]), vec![1, 0])],
                ..Default::default()
            },
            "null_mask of column a has 2 bytes",
        );
        check(
            pb::Table {
                columns: vec![pb::Column {
                    name: "a".into(),
                    values: None,
                    null_mask: vec![],
                }],
                ..Default::default()
            },
            "has no values",
        );
    }

    mod properties {
        use proptest::prelude::*;
        use prost::Message as _;

        use super::*;

        fn column() -> impl Strategy<Value = pb::Column> {
            use pb::column::Values;
            let values = prop_oneof![
                proptest::collection::vec(any::<i64>(), 0..20)
                    .prop_map(|values| Values::Int64Values(pb::Int64Values { values })),
                proptest::collection::vec(any::<f64>(), 0..20)
                    .prop_map(|values| Values::DoubleValues(pb::DoubleValues { values })),
                proptest::collection::vec(".{0,8}", 0..20)
                    .prop_map(|values| Values::StringValues(pb::StringValues { values })),
                proptest::collection::vec(any::<bool>(), 0..20)
                    .prop_map(|values| Values::BoolValues(pb::BoolValues { values })),
                proptest::collection::vec(any::<i64>(), 0..20)
                    .prop_map(|values| Values::TimestampValues(pb::Int64Values { values })),
            ];
            (
                "[a-z_]{0,6}",
                proptest::option::of(values),
                proptest::collection::vec(any::<u8>(), 0..4),
            )
                .prop_map(|(name, values, null_mask)| pb::Column {
                    name,
                    values,
                    null_mask,
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Bytes off the wire: decoded or refused, then converted or refused, never a panic.
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                if let Ok(request) = pb::ComputeRequest::decode(bytes.as_slice()) {
                    let _ = params_from_proto(&request.parameters);
                    let _ = table_to_batch(request.input.unwrap_or_default());
                }
            }

            /// Well-typed tables of any shape: a batch with the declared columns and rows, or a
            /// field violation naming a column.
            #[test]
            fn arbitrary_tables_convert_or_name_the_column(columns in proptest::collection::vec(column(), 0..5)) {
                let table = pb::Table {
                    columns: columns.clone(),
                    ..Default::default()
                };
                match table_to_batch(table) {
                    Ok(batch) => {
                        prop_assert_eq!(batch.num_columns(), columns.len());
                        let schema = batch.schema();
                        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                        let expected: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
                        prop_assert_eq!(names, expected);
                    }
                    Err(ServiceError::Engine(EngineError::InvalidArgument { violations })) => {
                        prop_assert!(!violations.is_empty());
                        prop_assert!(violations.iter().all(|v| !v.description.is_empty()));
                    }
                    Err(other) => prop_assert!(false, "unexpected error {other:?}"),
                }
            }
        }
    }
}
