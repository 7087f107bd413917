//! `mittari.v1.MetricService`: decodes requests, hands them to the engine of the moment,
//! encodes the outcome, and writes one audit line per computation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use mittari_engine::{
    ComputeRequest, Engine, EngineError, Field, FittedState, GroupedResults, MetricResults,
    ParamValue,
};
use mittari_proto::v1 as pb;
use mittari_proto::v1::metric_service_server::MetricService;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::allocator::Trimmer;
use crate::auth::Caller;
use crate::budget::CallBudget;
use crate::convert;
use crate::ipc_check::IpcLimits;
use crate::settings::Settings;
use crate::state::ServerState;
use crate::status::{self, ServiceError, user_text};
use crate::telemetry::RequestContext;

/// The `MetricService` implementation: decodes requests, hands them to the engine, encodes
/// the outcome. All computation happens in the engine, off the async runtime.
#[derive(Debug)]
pub(crate) struct MetricServer {
    pub(crate) state: Arc<ServerState>,
    limits: RequestLimits,
    trimmer: Trimmer,
}

/// Requests with at least this many rows leave enough freed memory behind to be worth
/// returning to the system ([`Trimmer`]).
const LARGE_REQUEST_ROWS: usize = 10_000;

/// Bounds on one request, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestLimits {
    pub(crate) max_stream_bytes: u64,
    pub(crate) max_message_bytes: usize,
    pub(crate) allow_compressed_arrow: bool,
}

impl RequestLimits {
    pub(crate) fn from(settings: &Settings) -> Self {
        RequestLimits {
            max_stream_bytes: settings.server.max_stream_bytes,
            max_message_bytes: settings.server.max_message_bytes,
            allow_compressed_arrow: settings.server.allow_compressed_arrow,
        }
    }
}

impl MetricServer {
    pub(crate) fn new(state: Arc<ServerState>, limits: RequestLimits, trimmer: Trimmer) -> Self {
        MetricServer {
            state,
            limits,
            trimmer,
        }
    }

    /// How an Arrow input of this call is read: the request limits of the moment (a reload
    /// changes `max_rows` and `max_string_bytes`) and the call's memory budget.
    fn arrow_input(
        &self,
        engine: &Engine,
        metric: &str,
        group_by: &[String],
        named: Named<'_>,
        budget: &CallBudget,
    ) -> Result<ArrowInput, ServiceError> {
        let settings = self.state.settings();
        let descriptor = engine.describe(metric)?;
        Ok(ArrowInput {
            named: named.columns(descriptor),
            descriptor: Arc::new(descriptor.clone()),
            group_by: group_by.to_vec(),
            limits: IpcLimits {
                max_rows: settings.server.max_rows as u64,
                allow_compressed: self.limits.allow_compressed_arrow,
            },
            max_string_bytes: settings.server.max_string_bytes as u64,
            budget: budget.clone(),
        })
    }

    /// Decodes a request's table inputs, each as the main input would be (columns or Arrow
    /// IPC, within the call's budget), in name order; a fault points into its table.
    async fn read_tables(
        &self,
        engine: &Engine,
        metric: &str,
        tables: impl IntoIterator<Item = (String, pb::Table)>,
        budget: &CallBudget,
    ) -> Result<Vec<(String, RecordBatch)>, ServiceError> {
        let mut tables: Vec<(String, pb::Table)> = tables.into_iter().collect();
        check_count("table input", tables.len(), MAX_TABLE_INPUTS)?;
        tables.sort_by(|a, b| a.0.cmp(&b.0));
        let descriptor = engine.describe(metric)?;
        let mut decoded = Vec::with_capacity(tables.len());
        for (name, table) in tables {
            convert::check_name("table input", || Field::Input, &name)?;
            let read = async {
                check_count("table column", table.columns.len(), MAX_INPUT_COLUMNS)?;
                let batch = if table.arrow_ipc.is_empty() {
                    budget.grow(table_decoded_bytes(&table), "a table input")?;
                    off_runtime(table_cells(&table), move || convert::table_to_batch(table)).await?
                } else {
                    // Unknown tables are refused by the engine; read them here as they come.
                    let as_input = descriptor
                        .table_as_input(&name)
                        .unwrap_or_else(|| mittari_engine::MetricDescriptor::new(metric, "", ""));
                    let settings = self.state.settings();
                    let reader = ArrowInput {
                        descriptor: Arc::new(as_input),
                        group_by: Vec::new(),
                        named: Vec::new(),
                        limits: IpcLimits {
                            max_rows: settings.server.max_rows as u64,
                            allow_compressed: self.limits.allow_compressed_arrow,
                        },
                        max_string_bytes: settings.server.max_string_bytes as u64,
                        budget: budget.clone(),
                    };
                    off_runtime(table.arrow_ipc.len(), move || reader.read(table)).await?
                };
                budget.release_decoded();
                Ok::<_, ServiceError>(batch)
            };
            let batch = read.await.map_err(|e| in_table(e, &name))?;
            decoded.push((name, batch));
        }
        Ok(decoded)
    }

    pub(crate) async fn compute(
        &self,
        engine: &Arc<Engine>,
        mut request: ComputeRequest,
        encoding: pb::TableEncoding,
        budget: &CallBudget,
    ) -> Result<(pb::ComputeResponse, Option<FittedState>), ServiceError> {
        let rows = request.input.num_rows();
        tracing::debug!(metric = %request.metric, rows, "computing metric");
        // When the computation ends, however it ends; acted on a moment later, when the
        // response is sent and freed too.
        let _trim = (rows >= LARGE_REQUEST_ROWS).then(|| TrimWhenDone(&self.trimmer));
        let limit = self.limits.max_message_bytes;
        // A fit is stored whatever the size of its results (its tables are then left out of
        // the answer, below); anything else is refused as soon as its results certainly
        // exceed one message, not after all of them are computed and encoded.
        let fitting = matches!(request.mode, mittari_engine::Mode::Fit);
        request.max_result_bytes = (!fitting).then_some(limit);
        let mut outcome = engine.compute(request).await.map_err(|e| match e {
            EngineError::ResultTooLarge { at_least, limit } => ServiceError::ResponseTooLarge {
                bytes: at_least,
                limit,
            },
            other => ServiceError::Engine(other),
        })?;
        self.state
            .telemetry
            .computed(&outcome.metric, outcome.rows, outcome.timings);
        let size = outcome
            .results
            .as_ref()
            .map_or(0, MetricResults::wire_bytes_lower_bound)
            + outcome
                .grouped
                .as_ref()
                .map_or(0, GroupedResults::wire_bytes_lower_bound);
        let budget = budget.clone();
        let fitted = outcome.fitted.take();
        let response = off_runtime(size, move || {
            let mut response = convert::outcome_to_proto(outcome, encoding);
            let mut bytes = prost::Message::encoded_len(&response);
            if bytes > limit
                && fitting
                && let Some(results) = response.results.as_mut()
            {
                results.tables.clear();
                results.warnings.push(pb::Warning {
                    code: "result_tables_left_out".to_owned(),
                    message: format!(
                        "the fit's result tables take {bytes} bytes, more than the server sends in one message ({limit}, server.max_message_bytes), so they are left out; the model is stored: score it (ScoreStream, or Score in parts) for every customer's predictions, or fit with top=N for the first N"
                    ),
                });
                bytes = prost::Message::encoded_len(&response);
            }
            if bytes > limit {
                return Err(ServiceError::ResponseTooLarge { bytes, limit });
            }
            // Encoded once more by tonic: twice its size until sent.
            budget.hold_only(2 * bytes as u64, "the result")?;
            Ok(response)
        })
        .await?;
        Ok((response, fitted))
    }

    /// Decodes the input table of a unary call (protobuf columns or Arrow IPC), held in the
    /// call's memory budget.
    pub(crate) async fn decode_input(
        &self,
        engine: &Engine,
        metric: &str,
        group_by: &[String],
        named: Named<'_>,
        table: pb::Table,
        budget: &CallBudget,
    ) -> Result<RecordBatch, ServiceError> {
        let input = if table.arrow_ipc.is_empty() {
            budget.grow(table_decoded_bytes(&table), "the input")?;
            off_runtime(table_cells(&table), move || convert::table_to_batch(table)).await?
        } else {
            let reader = self.arrow_input(engine, metric, group_by, named, budget)?;
            off_runtime(table.arrow_ipc.len(), move || reader.read(table)).await?
        };
        budget.release_decoded();
        Ok(input)
    }

    /// The stream's next chunk (the `index`-th, counted here), held against the limits; `None`
    /// at the end of the stream.
    async fn next_chunk(
        &self,
        stream: &mut (impl Stream<Item = Result<pb::ComputeStreamRequest, Status>> + Unpin),
        index: &mut usize,
        bytes: &mut u64,
    ) -> Result<Option<pb::Table>, ServiceError> {
        use pb::compute_stream_request::Message;
        let Some(message) = stream.next().await else {
            return Ok(None);
        };
        let message = message.map_err(ServiceError::from_transport)?;
        let Some(Message::Chunk(chunk)) = message.message else {
            return Err(ServiceError::BadStream(format!(
                "message {} of the stream must be a chunk; only the first carries a header",
                *index + 1
            )));
        };
        *index += 1;
        *bytes += prost::Message::encoded_len(&chunk) as u64;
        if *bytes > self.limits.max_stream_bytes {
            return Err(ServiceError::StreamTooLarge {
                limit: self.limits.max_stream_bytes,
            });
        }
        Ok(Some(chunk))
    }

    /// Reads a `ComputeStream` call whose chunks are Arrow IPC streams: each conformed to the
    /// metric as it arrives; the first chunk's columns are checked as a header's would be, and
    /// every later chunk must have the same.
    async fn read_arrow_stream(
        &self,
        engine: &Engine,
        header: pb::ComputeStreamHeader,
        stored: Option<&BTreeMap<String, ParamValue>>,
        mut stream: impl Stream<Item = Result<pb::ComputeStreamRequest, Status>> + Unpin,
        budget: &CallBudget,
    ) -> Result<StreamedInput, ServiceError> {
        let params = convert::params_from_proto(&header.parameters)?;
        let named = Named {
            requested: &header.parameters,
            stored,
        };
        let reader = self.arrow_input(engine, &header.metric, &header.group_by, named, budget)?;
        let mut batches: Vec<RecordBatch> = Vec::new();
        let mut bytes: u64 = 0;
        let mut rows: u64 = 0;
        let mut index = 0usize;
        while let Some(chunk) = self.next_chunk(&mut stream, &mut index, &mut bytes).await? {
            if chunk.arrow_ipc.is_empty() {
                return Err(ServiceError::BadStream(format!(
                    "chunk {index} has no arrow_ipc, but the header has no schema, which means Arrow chunks; declare the schema in the header to send columns"
                )));
            }
            let chunk_reader = reader.clone();
            let first_row = rows + 1;
            let batch = off_runtime(chunk.arrow_ipc.len(), move || {
                chunk_reader.read_from(chunk, first_row)
            })
            .await?;
            budget.release_decoded();
            rows += batch.num_rows() as u64;
            match batches.first() {
                None => engine.check_header(
                    &header.metric,
                    params.clone(),
                    batch.schema(),
                    &header.group_by,
                )?,
                Some(first) if first.schema() != batch.schema() => {
                    return Err(ServiceError::BadStream(format!(
                        "chunk {index} has columns [{}] but the first chunk has [{}]; send the same columns in every chunk",
                        user_text(&column_list(&batch)),
                        user_text(&column_list(first)),
                    )));
                }
                Some(_) => {}
            }
            batches.push(batch);
        }
        let Some(schema) = batches.first().map(RecordBatch::schema) else {
            return Err(ServiceError::BadStream(
                "the stream has a header but no chunk; send the rows in Arrow chunks".to_owned(),
            ));
        };
        let input = join_chunks(schema, batches).await?;
        Ok(StreamedInput {
            header,
            params,
            input,
        })
    }

    /// Reads a `ComputeStream` call: the header, checked before any chunk is read, then chunks
    /// with the header's columns, each converted to Arrow as it arrives and counted against
    /// the stream's limit and reserved in the call's memory budget, which holds it until the
    /// computation is done with the input.
    async fn read_stream(
        &self,
        engine: &Engine,
        mut stream: Streaming<pb::ComputeStreamRequest>,
        metric: &mut String,
        budget: &CallBudget,
    ) -> Result<StreamedInput, ServiceError> {
        use pb::compute_stream_request::Message;
        let header = match stream
            .message()
            .await
            .map_err(ServiceError::from_transport)?
        {
            Some(pb::ComputeStreamRequest {
                message: Some(Message::Header(header)),
            }) => header,
            _ => {
                return Err(ServiceError::BadStream(
                    "the first ComputeStream message must carry a header with the metric and the schema".to_owned(),
                ));
            }
        };
        metric.clone_from(&header.metric);
        self.read_chunks(engine, header, None, stream, budget).await
    }

    /// Reads the chunks of a stream whose header was read: `ComputeStream`'s, or a
    /// ModelService stream's (its chunks mapped to `ComputeStreamRequest`s).
    /// `stored` is a stored model's parameters, when scoring: the columns they name are read
    /// as the request's would be.
    pub(crate) async fn read_chunks(
        &self,
        engine: &Engine,
        header: pb::ComputeStreamHeader,
        stored: Option<&BTreeMap<String, ParamValue>>,
        mut stream: impl Stream<Item = Result<pb::ComputeStreamRequest, Status>> + Unpin,
        budget: &CallBudget,
    ) -> Result<StreamedInput, ServiceError> {
        check_request_shape(
            &header.metric,
            &header.group_by,
            header.parameters.len(),
            None,
        )?;
        check_count("header column", header.schema.len(), MAX_INPUT_COLUMNS)?;
        if header.schema.is_empty() {
            return self
                .read_arrow_stream(engine, header, stored, stream, budget)
                .await;
        }
        let schema: Vec<(String, mittari_engine::DataType)> = header
            .schema
            .iter()
            .map(|c| {
                convert::check_name("column", || Field::Input, &c.name)?;
                let data_type = pb::DataType::try_from(c.r#type)
                    .ok()
                    .and_then(convert::data_type_from_proto);
                data_type.map(|t| (c.name.clone(), t)).ok_or_else(|| {
                    ServiceError::BadStream(format!(
                        "header column {} has no data type; set schema[].type",
                        user_text(&c.name)
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        let fields: Vec<arrow_schema::Field> = schema
            .iter()
            .map(|(name, t)| arrow_schema::Field::new(name, t.arrow_type(), true))
            .collect();
        let mut names = std::collections::HashSet::new();
        if let Some((name, _)) = schema.iter().find(|(name, _)| !names.insert(name)) {
            return Err(ServiceError::BadStream(format!(
                "header column {} appears twice; declare each column once",
                user_text(name)
            )));
        }
        let arrow_schema = Arc::new(arrow_schema::Schema::new(fields));
        let params = convert::params_from_proto(&header.parameters)?;
        // Everything the header decides is refused now, before the client uploads the rows.
        engine.check_header(
            &header.metric,
            params.clone(),
            Arc::clone(&arrow_schema),
            &header.group_by,
        )?;
        let mut batches = Vec::new();
        let mut bytes: u64 = 0;
        let mut index = 0usize;
        while let Some(chunk) = self.next_chunk(&mut stream, &mut index, &mut bytes).await? {
            let names: Vec<&str> = chunk.columns.iter().map(|c| c.name.as_str()).collect();
            let expected: Vec<&str> = schema.iter().map(|(n, _)| n.as_str()).collect();
            if names != expected {
                return Err(ServiceError::BadStream(format!(
                    "chunk {index} has columns [{}] but the header declares [{}]; send the header's columns, in order",
                    user_text(&names.join(", ")),
                    user_text(&expected.join(", "))
                )));
            }
            budget.grow(table_decoded_bytes(&chunk), "a chunk")?;
            let batch =
                off_runtime(table_cells(&chunk), move || convert::table_to_batch(chunk)).await?;
            budget.release_decoded();
            for ((name, declared), field) in schema.iter().zip(batch.schema().fields()) {
                if &declared.arrow_type() != field.data_type() {
                    return Err(ServiceError::BadStream(format!(
                        "chunk {index}: column {} holds {} values but the header declares {declared}",
                        user_text(name),
                        field.data_type()
                    )));
                }
            }
            batches.push(batch);
        }
        let input = join_chunks(arrow_schema, batches).await?;
        Ok(StreamedInput {
            header,
            params,
            input,
        })
    }
}

/// Asks for freed memory to be returned when dropped.
struct TrimWhenDone<'a>(&'a Trimmer);

impl Drop for TrimWhenDone<'_> {
    fn drop(&mut self) {
        self.0.after_release();
    }
}

/// A `ComputeStream` call's input, read and checked (its memory is reserved in the call's
/// budget).
#[derive(Debug)]
pub(crate) struct StreamedInput {
    pub(crate) header: pb::ComputeStreamHeader,
    pub(crate) params: BTreeMap<String, ParamValue>,
    pub(crate) input: RecordBatch,
}

#[tonic::async_trait]
impl MetricService for MetricServer {
    async fn list_metrics(
        &self,
        request: Request<pb::ListMetricsRequest>,
    ) -> Result<Response<pb::ListMetricsResponse>, Status> {
        tracing::info!(
            rpc = "ListMetrics",
            caller = Caller::name_of(&request),
            "listed metrics"
        );
        let metrics = self
            .state
            .engine()
            .metrics()
            .map(|d| pb::MetricSummary {
                name: d.name.clone(),
                version: d.version.clone(),
                summary: d.summary.clone(),
            })
            .collect();
        Ok(Response::new(pb::ListMetricsResponse { metrics }))
    }

    async fn describe_metric(
        &self,
        request: Request<pb::DescribeMetricRequest>,
    ) -> Result<Response<pb::DescribeMetricResponse>, Status> {
        let context = request.extensions().get::<RequestContext>().cloned();
        let caller = Caller::name_of(&request);
        let name = request.into_inner().name;
        convert::check_name("metric", || Field::Input, &name)?;
        let engine = self.state.engine();
        let described = engine.describe(&name).map_err(ServiceError::from);
        tracing::info!(
            rpc = "DescribeMetric",
            caller,
            metric = %user_text(&name),
            code = ?described
                .as_ref()
                .map_or_else(|e| status::to_status(e).code(), |_| Code::Ok),
            "described metric"
        );
        let descriptor = described?;
        if let Some(context) = context {
            context.set_metric(&name);
        }
        let library = engine
            .library_of(&name)
            .and_then(|p| p.file_name())
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Response::new(pb::DescribeMetricResponse {
            metric: Some(convert::descriptor_to_proto(descriptor, &library)),
        }))
    }

    async fn compute(
        &self,
        request: Request<pb::ComputeRequest>,
    ) -> Result<Response<pb::ComputeResponse>, Status> {
        let started = Instant::now();
        let caller = Caller::name_of(&request);
        let context = request.extensions().get::<RequestContext>().cloned();
        let budget = CallBudget::of(&request);
        let request = request.into_inner();
        let metric = request.metric.clone();
        let engine = self.state.engine();
        let result = async {
            check_request_shape(
                &request.metric,
                &request.group_by,
                request.parameters.len(),
                request.input.as_ref(),
            )?;
            let params = convert::params_from_proto(&request.parameters)?;
            let encoding = request.result_encoding();
            let table = request.input.unwrap_or_default();
            let input = self
                .decode_input(
                    &engine,
                    &request.metric,
                    &request.group_by,
                    Named {
                        requested: &request.parameters,
                        stored: None,
                    },
                    table,
                    &budget,
                )
                .await?;
            let tables = self
                .read_tables(&engine, &request.metric, request.tables, &budget)
                .await?;
            let mut request = ComputeRequest::new(request.metric, params, input, request.group_by);
            request.tables = tables;
            Ok(self.compute(&engine, request, encoding, &budget).await?.0)
        }
        .await;
        audit("Compute", &caller, &metric, started, &result);
        label(context, &engine, &metric);
        result.map(Response::new).map_err(Status::from)
    }

    async fn compute_stream(
        &self,
        request: Request<Streaming<pb::ComputeStreamRequest>>,
    ) -> Result<Response<pb::ComputeResponse>, Status> {
        let started = Instant::now();
        let caller = Caller::name_of(&request);
        let context = request.extensions().get::<RequestContext>().cloned();
        let budget = CallBudget::of(&request);
        let mut metric = String::new();
        let engine = self.state.engine();
        let result = async {
            let streamed = self
                .read_stream(&engine, request.into_inner(), &mut metric, &budget)
                .await?;
            let encoding = streamed.header.result_encoding();
            let tables = self
                .read_tables(
                    &engine,
                    &streamed.header.metric,
                    streamed.header.tables,
                    &budget,
                )
                .await?;
            let mut request = ComputeRequest::new(
                streamed.header.metric,
                streamed.params,
                streamed.input,
                streamed.header.group_by,
            );
            request.tables = tables;
            Ok(self.compute(&engine, request, encoding, &budget).await?.0)
        }
        .await;
        audit("ComputeStream", &caller, &metric, started, &result);
        label(context, &engine, &metric);
        result.map(Response::new).map_err(Status::from)
    }
}

/// Labels the call's telemetry with its metric, if the engine serves one of that name (a
/// client's made-up names never become labels).
pub(crate) fn label(context: Option<RequestContext>, engine: &Engine, metric: &str) {
    if let Some(context) = context
        && engine.describe(metric).is_ok()
    {
        context.set_metric(metric);
    }
}

/// Group-by columns one request may name.
pub(crate) const MAX_GROUP_BY: usize = 32;
/// Input columns one request may have.
pub(crate) const MAX_INPUT_COLUMNS: usize = 1024;
/// Parameters one request may set.
pub(crate) const MAX_PARAMETERS: usize = 256;
/// Table inputs one request may send (metrics declare one or two).
pub(crate) const MAX_TABLE_INPUTS: usize = 16;

/// Refuses a request whose shape is out of bounds before any per-name work: too many group-by
/// columns, input columns or parameters (counted, not read), then names (metric, group-by
/// columns) that are too long or hold control characters. Parameter and column names are
/// checked where they are decoded.
pub(crate) fn check_request_shape(
    metric: &str,
    group_by: &[String],
    parameters: usize,
    input: Option<&pb::Table>,
) -> Result<(), ServiceError> {
    check_count("group-by column", group_by.len(), MAX_GROUP_BY)?;
    check_count("parameter", parameters, MAX_PARAMETERS)?;
    if let Some(input) = input {
        check_count("input column", input.columns.len(), MAX_INPUT_COLUMNS)?;
    }
    convert::check_name("metric", || Field::Input, metric)?;
    for name in group_by {
        convert::check_name("group-by column", || Field::Input, name)?;
    }
    Ok(())
}

/// Refuses more than `limit` items of a kind in one request.
fn check_count(what: &str, count: usize, limit: usize) -> Result<(), ServiceError> {
    if count > limit {
        return Err(ServiceError::Engine(EngineError::InvalidArgument {
            violations: vec![mittari_engine::Violation::new(
                Field::Input,
                format!("the request has {count} {what}s; a request may have at most {limit}"),
            )],
        }));
    }
    Ok(())
}

/// One line per computation at info level: the RPC, the metric, the outcome's code, its size
/// and duration, and for a refusal the fields at fault. Never cell values: error messages may
/// quote them (a repeated customer id, say), so they are logged at debug only.
pub(crate) fn audit(
    rpc: &str,
    caller: &str,
    metric: &str,
    started: Instant,
    result: &Result<pb::ComputeResponse, ServiceError>,
) {
    let metric = user_text(metric);
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    match result {
        Ok(response) => tracing::info!(
            rpc,
            caller,
            %metric,
            code = ?Code::Ok,
            rows = response.rows,
            groups = response.grouped.as_ref().map_or(0, |g| g.rows.len()),
            elapsed_ms,
            "computed metric"
        ),
        Err(error) => {
            let status = status::to_status(error);
            let fields: Vec<String> = match error {
                ServiceError::Engine(EngineError::InvalidArgument { violations }) => {
                    violations.iter().map(|v| v.field.path()).collect()
                }
                _ => Vec::new(),
            };
            tracing::info!(
                rpc,
                caller,
                %metric,
                code = ?status.code(),
                fields = ?fields,
                elapsed_ms,
                "computation refused or failed"
            );
            tracing::debug!(rpc, %metric, message = status.message(), "refusal message");
        }
    }
}

/// Work on fewer values than this (table cells, result bytes) takes microseconds: it runs in
/// place, where a hop to a blocking thread and back would cost more than the work.
const SMALL_WORK: usize = 16 * 1024;

/// Runs work proportional to a message's size (decoding a table, concatenating chunks,
/// encoding results) of `size` units on a blocking thread, so large messages never stall the
/// async runtime; small work runs in place.
async fn off_runtime<T: Send + 'static>(
    size: usize,
    work: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    if size < SMALL_WORK {
        return work();
    }
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(ServiceError::Internal(format!(
            "a conversion task failed: {e}"
        )))
    })
}

/// The parameters whose named columns an input keeps: the request's, and when scoring the
/// stored model's (its covariates).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Named<'a> {
    pub(crate) requested: &'a std::collections::HashMap<String, pb::Value>,
    pub(crate) stored: Option<&'a BTreeMap<String, ParamValue>>,
}

impl Named<'_> {
    fn columns(&self, descriptor: &mittari_engine::MetricDescriptor) -> Vec<(String, String)> {
        let requested = self.requested.iter().filter_map(|(name, value)| {
            match convert::value_from_proto(value) {
                Some(ParamValue::String(value)) => Some((name.clone(), value)),
                _ => None,
            }
        });
        let stored = self
            .stored
            .into_iter()
            .flatten()
            .filter_map(|(name, value)| match value {
                ParamValue::String(value) => Some((name.clone(), value.clone())),
                _ => None,
            });
        let texts: Vec<(String, String)> = requested.chain(stored).collect();
        descriptor.columns_named_by(texts.iter().map(|(p, v)| (p.as_str(), v.as_str())))
    }
}

/// Reads Arrow IPC tables for one metric: checked and decoded within the limits and the call's
/// budget, then conformed to the metric's declared column types (and the group-by columns) by
/// `mittari-io`, as a file would be.
#[derive(Debug, Clone)]
struct ArrowInput {
    descriptor: Arc<mittari_engine::MetricDescriptor>,
    group_by: Vec<String>,
    /// (parameter, column) for the columns parameters name (clv's covariates), kept beside
    /// the declared ones.
    named: Vec<(String, String)>,
    limits: IpcLimits,
    max_string_bytes: u64,
    budget: CallBudget,
}

impl ArrowInput {
    /// One table's batches conformed and joined; `first_row` is its first row in the input.
    fn read_from(&self, table: pb::Table, first_row: u64) -> Result<RecordBatch, ServiceError> {
        if !table.columns.is_empty() {
            return Err(ServiceError::BadStream(
                "a table has both columns and arrow_ipc; send one encoding".to_owned(),
            ));
        }
        let (schema, batches) = convert::ipc_to_batches(table.arrow_ipc, &self.limits, |size| {
            self.budget
                .grow(size.decoded_bytes, "the decoded Arrow input")
        })?;
        check_count("input column", schema.fields().len(), MAX_INPUT_COLUMNS)?;
        // Dictionary-encoded text becomes plain text when conformed: its expanded size is
        // counted against the request's text limit and reserved before it is built.
        let expanded: u64 = batches.iter().map(dictionary_text_bytes).sum();
        if expanded > self.max_string_bytes {
            return Err(convert_invalid(format!(
                "the dictionary-encoded columns expand to {expanded} bytes of text, more than the server's limit of {} (server.max_string_bytes); send fewer rows per request",
                self.max_string_bytes
            )));
        }
        self.budget.grow(expanded, "the expanded dictionary text")?;
        let mut row = first_row;
        let mut conformed = Vec::with_capacity(batches.len());
        for batch in &batches {
            conformed.push(
                mittari_io::conform(
                    batch,
                    "input",
                    &self.descriptor,
                    (&self.group_by, &self.named),
                    row,
                )
                .map_err(read_error)?,
            );
            row += batch.num_rows() as u64;
        }
        match conformed.first() {
            None => Err(convert_invalid(
                "arrow_ipc holds a schema but no record batch; send at least one".to_owned(),
            )),
            Some(first) => arrow_select::concat::concat_batches(&first.schema(), &conformed)
                .map_err(|e| ServiceError::Internal(format!("cannot join Arrow batches: {e}"))),
        }
    }

    fn read(&self, table: pb::Table) -> Result<RecordBatch, ServiceError> {
        self.read_from(table, 1)
    }
}

/// An error reading table input `table`, pointed into that table.
fn in_table(error: ServiceError, table: &str) -> ServiceError {
    match error {
        ServiceError::Engine(EngineError::InvalidArgument { mut violations }) => {
            for violation in &mut violations {
                let (column, row) = match &violation.field {
                    Field::Column { name, row } => (Some(name.clone()), *row),
                    _ => (None, None),
                };
                violation.field = Field::Table {
                    table: table.to_owned(),
                    column,
                    row,
                };
            }
            ServiceError::Engine(EngineError::InvalidArgument { violations })
        }
        other => other,
    }
}

fn convert_invalid(message: String) -> ServiceError {
    ServiceError::Engine(EngineError::InvalidArgument {
        violations: vec![mittari_engine::Violation::new(Field::Input, message)],
    })
}

/// Bytes of text the dictionary-encoded string columns of `batch` hold once expanded: the sum
/// over rows of the length of the value each key points to, read from the offsets without
/// building anything.
fn dictionary_text_bytes(batch: &RecordBatch) -> u64 {
    use arrow_array::cast::AsArray as _;
    use arrow_array::types::{
        ArrowDictionaryKeyType, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
        UInt32Type, UInt64Type,
    };
    use arrow_array::{Array, DictionaryArray};
    fn expanded<K: ArrowDictionaryKeyType>(array: &DictionaryArray<K>) -> u64 {
        let values = array.values();
        let length = |index: usize| -> u64 {
            if let Some(strings) = values.as_string_opt::<i32>() {
                strings.value_length(index).max(0) as u64
            } else if let Some(strings) = values.as_string_opt::<i64>() {
                strings.value_length(index).max(0) as u64
            } else if let Some(bytes) = values.as_binary_opt::<i32>() {
                bytes.value_length(index).max(0) as u64
            } else {
                0
            }
        };
        let count = values.len();
        array
            .keys()
            .iter()
            .flatten()
            .filter_map(arrow_buffer::ArrowNativeType::to_usize)
            .filter(|&key| key < count)
            .map(length)
            .sum()
    }
    batch
        .columns()
        .iter()
        .map(|column| match column.data_type() {
            arrow_schema::DataType::Dictionary(key, _) => match key.as_ref() {
                arrow_schema::DataType::Int8 => expanded(column.as_dictionary::<Int8Type>()),
                arrow_schema::DataType::Int16 => expanded(column.as_dictionary::<Int16Type>()),
                arrow_schema::DataType::Int32 => expanded(column.as_dictionary::<Int32Type>()),
                arrow_schema::DataType::Int64 => expanded(column.as_dictionary::<Int64Type>()),
                arrow_schema::DataType::UInt8 => expanded(column.as_dictionary::<UInt8Type>()),
                arrow_schema::DataType::UInt16 => expanded(column.as_dictionary::<UInt16Type>()),
                arrow_schema::DataType::UInt32 => expanded(column.as_dictionary::<UInt32Type>()),
                arrow_schema::DataType::UInt64 => expanded(column.as_dictionary::<UInt64Type>()),
                _ => 0,
            },
            _ => 0,
        })
        .sum()
}

/// An Arrow input the metric cannot read, as the field at fault and what to do.
fn read_error(error: mittari_io::ReadError) -> ServiceError {
    use mittari_engine::Violation;
    use mittari_io::{Location, ReadError};
    let violation = match error {
        ReadError::At {
            at,
            column,
            message,
            ..
        } => {
            let row = match at {
                Location::Row(row) | Location::Line(row) => row.saturating_sub(1),
            };
            match column {
                Some(name) => Violation::new(
                    Field::Column {
                        name,
                        row: Some(row),
                    },
                    message,
                ),
                None => Violation::new(Field::Input, format!("row {}: {message}", row + 1)),
            }
        }
        ReadError::Input { message, .. } => Violation::new(Field::Input, message),
        ReadError::Io { source, .. } => Violation::new(Field::Input, source.to_string()),
    };
    ServiceError::Engine(EngineError::InvalidArgument {
        violations: vec![violation],
    })
}

/// A stream's chunks as one batch, joined off the runtime.
async fn join_chunks(
    schema: arrow_schema::SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<RecordBatch, ServiceError> {
    off_runtime(usize::MAX, move || {
        arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| {
            ServiceError::BadStream(format!("cannot assemble the streamed chunks: {e}"))
        })
    })
    .await
}

/// "name: type, …" of a batch's columns.
fn column_list(batch: &RecordBatch) -> String {
    batch
        .schema()
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Bytes a wire table takes as Arrow arrays: eight per number, one per flag, the text and four
/// offset bytes per string, and a validity bitmap per column.
fn table_decoded_bytes(table: &pb::Table) -> u64 {
    use pb::column::Values;
    table
        .columns
        .iter()
        .map(|c| {
            let (count, text) = match &c.values {
                Some(Values::Int64Values(v) | Values::TimestampValues(v)) => {
                    (v.values.len(), 7 * v.values.len())
                }
                Some(Values::DoubleValues(v)) => (v.values.len(), 7 * v.values.len()),
                Some(Values::BoolValues(v)) => (v.values.len(), 0),
                Some(Values::StringValues(v)) => (
                    v.values.len(),
                    v.values.iter().map(|s| s.len() + 3).sum::<usize>(),
                ),
                None => (0, 0),
            };
            (count + text + count.div_ceil(8)) as u64
        })
        .sum()
}

/// Values in a wire table (its size for [`off_runtime`]).
fn table_cells(table: &pb::Table) -> usize {
    use pb::column::Values;
    table
        .columns
        .iter()
        .map(|c| match &c.values {
            Some(Values::Int64Values(v) | Values::TimestampValues(v)) => v.values.len(),
            Some(Values::DoubleValues(v)) => v.values.len(),
            Some(Values::BoolValues(v)) => v.values.len(),
            Some(Values::StringValues(v)) => v.values.len(),
            None => 0,
        })
        .sum()
}
