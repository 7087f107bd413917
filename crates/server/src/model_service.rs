//! `mittari.v1.ModelService`: fitted models in the store, fitted and scored through the same
//! input path, limits and engine lanes as `MetricService`'s computations.
//!
//! Fit, DeleteModel and SetAlias change the store: each writes one audit line naming the
//! caller (never a cell value). Scoring resolves its reference through the registry's cache,
//! so a model used again and again costs no store read while it is fresh.

use std::sync::Arc;
use std::time::Instant;

use mittari_engine::{ComputeRequest, EngineError, Field, FittedState, Mode, Violation};
use mittari_proto::v1 as pb;
use mittari_proto::v1::model_service_server::ModelService;
use mittari_store::{ModelSummary, NewModel, Reference, StoredModel};
use tokio_stream::StreamExt;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::auth::Caller;
use crate::budget::CallBudget;
use crate::convert;
use crate::metric_service::{MetricServer, Named, audit, check_request_shape, label};
use crate::status::{self, ServiceError, user_text};
use crate::telemetry::RequestContext;

/// A ModelService stream's message: its header (the first message's) or a chunk.
trait StreamMessage: Send + 'static {
    type Header;
    /// The header, a chunk, or `None` for a message with neither.
    fn split(self) -> Option<Result<Self::Header, pb::Table>>;
}

impl StreamMessage for pb::FitRequest {
    type Header = pb::FitHeader;
    fn split(self) -> Option<Result<pb::FitHeader, pb::Table>> {
        use pb::fit_request::Message;
        self.message.map(|m| match m {
            Message::Header(header) => Ok(header),
            Message::Chunk(chunk) => Err(chunk),
        })
    }
}

impl StreamMessage for pb::ScoreStreamRequest {
    type Header = pb::ScoreStreamHeader;
    fn split(self) -> Option<Result<pb::ScoreStreamHeader, pb::Table>> {
        use pb::score_stream_request::Message;
        self.message.map(|m| match m {
            Message::Header(header) => Ok(header),
            Message::Chunk(chunk) => Err(chunk),
        })
    }
}

/// Reads a ModelService stream's header (refused, naming `what` it must carry, when the first
/// message is not one) and gives the rest as `ComputeStream`'s chunks, for
/// [`MetricServer::read_chunks`]; a second header is passed on as one, which the chunk reader
/// refuses as "must be a chunk".
async fn split_stream<T: StreamMessage>(
    mut stream: Streaming<T>,
    rpc: &str,
    what: &str,
) -> Result<
    (
        T::Header,
        impl tokio_stream::Stream<Item = Result<pb::ComputeStreamRequest, Status>> + Unpin,
    ),
    ServiceError,
> {
    use pb::compute_stream_request::Message;
    let header = match stream
        .message()
        .await
        .map_err(ServiceError::from_transport)?
        .and_then(StreamMessage::split)
    {
        Some(Ok(header)) => header,
        _ => {
            return Err(ServiceError::BadStream(format!(
                "the first {rpc} message must carry a header with {what}"
            )));
        }
    };
    let chunks = stream.map(|item| {
        item.map(|m| pb::ComputeStreamRequest {
            message: m.split().map(|m| match m {
                Err(chunk) => Message::Chunk(chunk),
                Ok(_) => Message::Header(pb::ComputeStreamHeader::default()),
            }),
        })
    });
    Ok((header, chunks))
}

fn model_info(
    name: String,
    version: u64,
    aliases: Vec<String>,
    model: &NewModel,
    created_at: i64,
) -> pb::ModelInfo {
    pb::ModelInfo {
        name,
        version,
        aliases,
        metric: model.metric.clone(),
        metric_version: model.metric_version.clone(),
        abi_version: model.abi_version,
        library_sha256: model.library_sha256.clone(),
        parameters_json: model.parameters.clone(),
        fingerprint_json: model.fingerprint.clone(),
        statistics_json: model.statistics.clone(),
        created_at,
        created_by: model.created_by.clone(),
        state_bytes: model.state.len() as u64,
    }
}

/// A stored model as ModelService describes it (without its state).
pub fn model_info_of(stored: &StoredModel) -> pb::ModelInfo {
    model_info(
        stored.name.clone(),
        stored.version,
        stored.aliases.clone(),
        &stored.model,
        stored.created_at,
    )
}

/// A listed model version as ModelService describes it.
pub fn summary_info(summary: ModelSummary) -> pb::ModelInfo {
    pb::ModelInfo {
        name: summary.name,
        version: summary.version,
        aliases: summary.aliases,
        metric: summary.metric,
        metric_version: summary.metric_version,
        created_at: summary.created_at,
        created_by: summary.created_by,
        state_bytes: summary.state_bytes,
        ..Default::default()
    }
}

/// What the store keeps of a fit: the state, where it came from, the fit's scalar results as
/// its statistics, and who fitted it.
pub fn new_model(
    metric: &str,
    response: &pb::ComputeResponse,
    fitted: FittedState,
    created_by: String,
) -> Result<NewModel, ServiceError> {
    let statistics: serde_json::Map<String, serde_json::Value> = response
        .results
        .as_ref()
        .map(|r| {
            r.scalars
                .iter()
                .filter_map(|s| Some((s.name.clone(), serde_json::Value::from(s.value?))))
                .collect()
        })
        .unwrap_or_default();
    Ok(NewModel {
        metric: metric.to_owned(),
        metric_version: fitted.metric_version,
        abi_version: fitted.abi_version,
        library_sha256: fitted.library_sha256,
        parameters: json(&fitted.params)?,
        fingerprint: json(&fitted.fingerprint)?,
        statistics: json(&statistics)?,
        state: fitted.state,
        created_by,
    })
}

/// A model's metadata as the store keeps it: JSON text.
fn json<T: serde::Serialize>(value: &T) -> Result<String, ServiceError> {
    serde_json::to_string(value)
        .map_err(|e| ServiceError::Internal(format!("cannot encode the model: {e}")))
}

/// Refuses a name the store would refuse, as a field violation.
fn check_model_name(name: &str) -> Result<(), ServiceError> {
    mittari_store::check_name(name).map_err(|e| {
        ServiceError::Engine(EngineError::InvalidArgument {
            violations: vec![Violation::new(
                Field::Parameter {
                    name: "name".to_owned(),
                },
                e.to_string(),
            )],
        })
    })
}

/// One audit line for a change to the store.
fn audit_change(
    rpc: &str,
    caller: &str,
    model: &str,
    started: Instant,
    result: Result<&str, &ServiceError>,
) {
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    let model = user_text(model);
    match result {
        Ok(what) => tracing::info!(rpc, caller, %model, code = ?Code::Ok, elapsed_ms, "{what}"),
        Err(error) => tracing::info!(
            rpc,
            caller,
            %model,
            code = ?status::to_status(error).code(),
            elapsed_ms,
            "model store change refused or failed"
        ),
    }
}

impl MetricServer {
    /// Scores `input` with the model `reference` names.
    async fn score(
        &self,
        reference: &str,
        params: std::collections::BTreeMap<String, mittari_engine::ParamValue>,
        input: arrow_array::RecordBatch,
        encoding: pb::TableEncoding,
        budget: &CallBudget,
        model: Arc<crate::models::ResolvedModel>,
    ) -> Result<pb::ComputeResponse, ServiceError> {
        let engine = self.state.engine();
        let mut request = ComputeRequest::new(model.metric.clone(), params, input, Vec::new());
        request.mode = Mode::Score(Arc::clone(&model.fit));
        tracing::debug!(model = %user_text(reference), version = model.version, "scoring");
        Ok(self.compute(&engine, request, encoding, budget).await?.0)
    }
}

#[tonic::async_trait]
impl ModelService for MetricServer {
    async fn fit(
        &self,
        request: Request<Streaming<pb::FitRequest>>,
    ) -> Result<Response<pb::FitResponse>, Status> {
        let started = Instant::now();
        let caller = Caller::name_of(&request);
        let context = request.extensions().get::<RequestContext>().cloned();
        let budget = CallBudget::of(&request);
        let engine = self.state.engine();
        let stream = request.into_inner();
        let mut name = String::new();
        let mut metric = String::new();
        let result = async {
            let (header, chunks) =
                split_stream(stream, "Fit", "the model's name, the metric and the schema").await?;
            name.clone_from(&header.name);
            check_model_name(&header.name)?;
            let input_header = header.input.unwrap_or_default();
            metric.clone_from(&input_header.metric);
            check_request_shape(
                &input_header.metric,
                &input_header.group_by,
                input_header.parameters.len(),
                None,
            )?;
            // Refused now, before the client uploads the rows.
            if engine.describe(&input_header.metric)?.fitting.is_none() {
                return Err(ServiceError::Engine(EngineError::IncompatibleModel {
                    metric: input_header.metric.clone(),
                    message: "this metric has no fitted models; compute it instead".to_owned(),
                }));
            }
            let streamed = self
                .read_chunks(&engine, input_header, None, chunks, &budget)
                .await?;
            let encoding = streamed.header.result_encoding();
            let mut request = ComputeRequest::new(
                streamed.header.metric.clone(),
                streamed.params,
                streamed.input,
                streamed.header.group_by,
            );
            request.mode = Mode::Fit;
            let (results, fitted) = self.compute(&engine, request, encoding, &budget).await?;
            let fitted = fitted
                .ok_or_else(|| ServiceError::Internal("the fit returned no state".to_owned()))?;
            let model = new_model(&streamed.header.metric, &results, fitted, caller.clone())?;
            let store_name = header.name.clone();
            let (version, model) = self
                .state
                .models
                .with_store(move |store| {
                    let version = store.put(&store_name, &model)?;
                    Ok((version, model))
                })
                .await?;
            self.state.models.forget(&header.name);
            let created_at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64);
            Ok(pb::FitResponse {
                model: Some(model_info(
                    header.name.clone(),
                    version,
                    Vec::new(),
                    &model,
                    created_at,
                )),
                results: Some(results),
            })
        }
        .await;
        let change = result.as_ref().map(|r| {
            let version = r.model.as_ref().map_or(0, |m| m.version);
            format!(
                "fitted model version {version} of metric {}",
                user_text(&metric)
            )
        });
        audit_change(
            "Fit",
            &caller,
            &name,
            started,
            change.as_ref().map(String::as_str).map_err(|e| *e),
        );
        label(context, &engine, &metric);
        result.map(Response::new).map_err(Status::from)
    }

    async fn get_model(
        &self,
        request: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::GetModelResponse>, Status> {
        let reference: Reference = request
            .into_inner()
            .reference
            .parse()
            .map_err(|e| Status::from(ServiceError::Store(e)))?;
        let stored = self
            .state
            .models
            .with_store(move |store| store.get(&reference))
            .await?;
        Ok(Response::new(pb::GetModelResponse {
            model: Some(model_info_of(&stored)),
        }))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let name = request.into_inner().name;
        if !name.is_empty() {
            check_model_name(&name)?;
        }
        let models = self
            .state
            .models
            .with_store(move |store| store.list((!name.is_empty()).then_some(name.as_str())))
            .await?;
        Ok(Response::new(pb::ListModelsResponse {
            models: models.into_iter().map(summary_info).collect(),
        }))
    }

    async fn delete_model(
        &self,
        request: Request<pb::DeleteModelRequest>,
    ) -> Result<Response<pb::DeleteModelResponse>, Status> {
        let started = Instant::now();
        let caller = Caller::name_of(&request);
        let reference = request.into_inner().reference;
        let result = async {
            let parsed: Reference = reference.parse()?;
            let Reference::Version(name, version) = parsed else {
                return Err(ServiceError::Store(
                    mittari_store::StoreError::InvalidReference(format!(
                        "delete one version at a time: give NAME@VERSION, not {}",
                        user_text(&reference)
                    )),
                ));
            };
            let forget = name.clone();
            self.state
                .models
                .with_store(move |store| store.delete(&name, version))
                .await?;
            self.state.models.forget(&forget);
            Ok(format!("deleted model version {version}"))
        }
        .await;
        audit_change(
            "DeleteModel",
            &caller,
            &reference,
            started,
            result.as_ref().map(String::as_str),
        );
        result
            .map(|_| Response::new(pb::DeleteModelResponse {}))
            .map_err(Status::from)
    }

    async fn set_alias(
        &self,
        request: Request<pb::SetAliasRequest>,
    ) -> Result<Response<pb::SetAliasResponse>, Status> {
        let started = Instant::now();
        let caller = Caller::name_of(&request);
        let pb::SetAliasRequest {
            name,
            alias,
            version,
        } = request.into_inner();
        let mut previous = 0;
        let result = async {
            check_model_name(&name)?;
            mittari_store::check_alias(&alias)?;
            let (store_name, store_alias) = (name.clone(), alias.clone());
            previous = self
                .state
                .models
                .with_store(move |store| {
                    if version == 0 {
                        store.remove_alias(&store_name, &store_alias).map(Some)
                    } else {
                        store.set_alias(&store_name, &store_alias, version)
                    }
                })
                .await?
                .unwrap_or(0);
            self.state.models.forget(&name);
            Ok(if version == 0 {
                format!(
                    "removed alias {} (it pointed at version {previous})",
                    user_text(&alias)
                )
            } else {
                format!(
                    "pointed alias {} at version {version} (was {previous})",
                    user_text(&alias)
                )
            })
        }
        .await;
        audit_change(
            "SetAlias",
            &caller,
            &name,
            started,
            result.as_ref().map(String::as_str),
        );
        result
            .map(|_| {
                Response::new(pb::SetAliasResponse {
                    previous_version: previous,
                })
            })
            .map_err(Status::from)
    }

    async fn score(
        &self,
        request: Request<pb::ScoreRequest>,
    ) -> Result<Response<pb::ComputeResponse>, Status> {
        let started = Instant::now();
        let caller = Caller::name_of(&request);
        let context = request.extensions().get::<RequestContext>().cloned();
        let budget = CallBudget::of(&request);
        let request = request.into_inner();
        let engine = self.state.engine();
        let mut metric = String::new();
        let result = async {
            let model = self.state.models.resolve(&request.model).await?;
            metric.clone_from(&model.metric);
            check_request_shape(
                &model.metric,
                &[],
                request.parameters.len(),
                request.input.as_ref(),
            )?;
            let params = convert::params_from_proto(&request.parameters)?;
            let encoding = request.result_encoding();
            let input = self
                .decode_input(
                    &engine,
                    &model.metric,
                    &[],
                    Named {
                        requested: &request.parameters,
                        stored: Some(&model.fit.params),
                    },
                    request.input.unwrap_or_default(),
                    &budget,
                )
                .await?;
            self.score(&request.model, params, input, encoding, &budget, model)
                .await
        }
        .await;
        audit("Score", &caller, &metric, started, &result);
        label(context, &engine, &metric);
        result.map(Response::new).map_err(Status::from)
    }

    async fn score_stream(
        &self,
        request: Request<Streaming<pb::ScoreStreamRequest>>,
    ) -> Result<Response<pb::ComputeResponse>, Status> {
        let started = Instant::now();
        let caller = Caller::name_of(&request);
        let context = request.extensions().get::<RequestContext>().cloned();
        let budget = CallBudget::of(&request);
        let engine = self.state.engine();
        let stream = request.into_inner();
        let mut metric = String::new();
        let result = async {
            let (header, chunks) =
                split_stream(stream, "ScoreStream", "the model and the schema").await?;
            let model = self.state.models.resolve(&header.model).await?;
            metric.clone_from(&model.metric);
            let mut input_header = header.input.unwrap_or_default();
            if !input_header.metric.is_empty() && input_header.metric != model.metric {
                return Err(ServiceError::BadStream(format!(
                    "the header names metric {}, but model {} is a {} model; leave the metric empty",
                    user_text(&input_header.metric),
                    user_text(&header.model),
                    model.metric
                )));
            }
            input_header.metric.clone_from(&model.metric);
            check_request_shape(
                &model.metric,
                &input_header.group_by,
                input_header.parameters.len(),
                None,
            )?;
            let streamed = self
                .read_chunks(&engine, input_header, Some(&model.fit.params), chunks, &budget)
                .await?;
            let encoding = streamed.header.result_encoding();
            self.score(&header.model, streamed.params, streamed.input, encoding, &budget, model)
                .await
        }
        .await;
        audit("ScoreStream", &caller, &metric, started, &result);
        label(context, &engine, &metric);
        result.map(Response::new).map_err(Status::from)
    }
}
