//! The gRPC server: `mittari.v1.MetricService`, `grpc.health.v1.Health`, and server reflection
//! (v1 and v1alpha), with graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow_array::RecordBatch;
use mittari_engine::{ComputeRequest, Engine};
use mittari_proto::v1 as pb;
use mittari_proto::v1::metric_service_server::{MetricService, MetricServiceServer};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::convert;
use crate::incoming::{self, ConnectionLimits};
use crate::settings::Settings;
use crate::status::ServiceError;

/// The `MetricService` implementation: decodes requests, hands them to the engine, encodes
/// the outcome. All computation happens in the engine, off the async runtime.
#[derive(Debug)]
pub(crate) struct MetricServer {
    engine: Arc<Engine>,
    max_stream_bytes: u64,
}

impl MetricServer {
    pub(crate) fn new(engine: Arc<Engine>, max_stream_bytes: u64) -> Self {
        MetricServer {
            engine,
            max_stream_bytes,
        }
    }

    async fn compute(
        &self,
        metric: String,
        params: &std::collections::HashMap<String, pb::Value>,
        input: RecordBatch,
        group_by: Vec<String>,
    ) -> Result<pb::ComputeResponse, ServiceError> {
        let started = Instant::now();
        let rows = input.num_rows();
        tracing::debug!(%metric, rows, "computing metric");
        let request = ComputeRequest::new(
            metric.clone(),
            convert::params_from_proto(params)?,
            input,
            group_by,
        );
        let result = self.engine.compute(request).await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
        match &result {
            Ok(outcome) => {
                tracing::info!(%metric, rows, groups = outcome.groups.len(), elapsed_ms, "computed metric")
            }
            Err(error) => {
                tracing::info!(%metric, rows, elapsed_ms, %error, "computation refused or failed")
            }
        }
        let outcome = result?;
        off_runtime(move || Ok(convert::outcome_to_proto(outcome))).await
    }

    /// Reads a `ComputeStream` call: the header, then chunks with the header's columns.
    async fn read_stream(
        &self,
        mut stream: Streaming<pb::ComputeStreamRequest>,
    ) -> Result<(pb::ComputeStreamHeader, RecordBatch), Status> {
        use pb::compute_stream_request::Message;
        let header = match stream.message().await? {
            Some(pb::ComputeStreamRequest {
                message: Some(Message::Header(header)),
            }) => header,
            _ => {
                return Err(ServiceError::BadStream(
                    "the first ComputeStream message must carry a header with the metric and the schema".to_owned(),
                )
                .into());
            }
        };
        let schema: Vec<(String, mittari_engine::DataType)> = header
            .schema
            .iter()
            .map(|c| {
                let data_type = pb::DataType::try_from(c.r#type)
                    .ok()
                    .and_then(convert::data_type_from_proto);
                data_type.map(|t| (c.name.clone(), t)).ok_or_else(|| {
                    ServiceError::BadStream(format!(
                        "header column {} has no data type; set schema[].type",
                        c.name
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        let mut batches = Vec::new();
        let mut bytes: u64 = 0;
        let mut index = 0usize;
        while let Some(message) = stream.next().await {
            let chunk =
                match message?.message {
                    Some(Message::Chunk(chunk)) => chunk,
                    _ => return Err(ServiceError::BadStream(format!(
                        "message {} of the stream must be a chunk; only the first carries a header",
                        index + 1
                    ))
                    .into()),
                };
            index += 1;
            bytes += prost::Message::encoded_len(&chunk) as u64;
            if bytes > self.max_stream_bytes {
                return Err(ServiceError::StreamTooLarge {
                    limit: self.max_stream_bytes,
                }
                .into());
            }
            let names: Vec<&str> = chunk.columns.iter().map(|c| c.name.as_str()).collect();
            let expected: Vec<&str> = schema.iter().map(|(n, _)| n.as_str()).collect();
            if names != expected {
                return Err(ServiceError::BadStream(format!(
                    "chunk {index} has columns [{}] but the header declares [{}]; send the header's columns, in order",
                    names.join(", "),
                    expected.join(", ")
                ))
                .into());
            }
            let batch = off_runtime(move || convert::table_to_batch(&chunk)).await?;
            for ((name, declared), field) in schema.iter().zip(batch.schema().fields()) {
                if &declared.arrow_type() != field.data_type() {
                    return Err(ServiceError::BadStream(format!(
                        "chunk {index}: column {name} holds {} values but the header declares {declared}",
                        field.data_type()
                    ))
                    .into());
                }
            }
            batches.push(batch);
        }
        let fields: Vec<arrow_schema::Field> = schema
            .iter()
            .map(|(name, t)| arrow_schema::Field::new(name, t.arrow_type(), true))
            .collect();
        let arrow_schema = Arc::new(arrow_schema::Schema::new(fields));
        let input = off_runtime(move || {
            arrow_select::concat::concat_batches(&arrow_schema, &batches).map_err(|e| {
                ServiceError::BadStream(format!("cannot assemble the streamed chunks: {e}"))
            })
        })
        .await?;
        Ok((header, input))
    }
}

#[tonic::async_trait]
impl MetricService for MetricServer {
    async fn list_metrics(
        &self,
        _request: Request<pb::ListMetricsRequest>,
    ) -> Result<Response<pb::ListMetricsResponse>, Status> {
        let metrics = self
            .engine
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
        let name = request.into_inner().name;
        let descriptor = self.engine.describe(&name).map_err(ServiceError::from)?;
        let library = self
            .engine
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
        let request = request.into_inner();
        let table = request.input.unwrap_or_default();
        let input = off_runtime(move || convert::table_to_batch(&table)).await?;
        let response = MetricServer::compute(
            self,
            request.metric,
            &request.parameters,
            input,
            request.group_by,
        )
        .await?;
        Ok(Response::new(response))
    }

    async fn compute_stream(
        &self,
        request: Request<Streaming<pb::ComputeStreamRequest>>,
    ) -> Result<Response<pb::ComputeResponse>, Status> {
        let (header, input) = self.read_stream(request.into_inner()).await?;
        let response = MetricServer::compute(
            self,
            header.metric,
            &header.parameters,
            input,
            header.group_by,
        )
        .await?;
        Ok(Response::new(response))
    }
}

/// Runs work proportional to a message's size (decoding a table, concatenating chunks,
/// encoding results) on a blocking thread, so large messages never stall the async runtime.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(ServiceError::Internal(format!(
            "a conversion task failed: {e}"
        )))
    })
}

/// Serves on `listener` until `shutdown` completes, then lets in-flight requests finish for up
/// to `server.shutdown_grace_seconds`.
pub(crate) async fn serve(
    settings: &Settings,
    engine: Arc<Engine>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let max_message = settings.server.max_message_bytes;
    let metric_service =
        MetricServiceServer::new(MetricServer::new(engine, settings.server.max_stream_bytes))
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message);

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<MetricServiceServer<MetricServer>>()
        .await;

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(mittari_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .context("cannot build the reflection service")?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .context("cannot build the reflection service")?;

    let server_settings = &settings.server;
    let keepalive = Duration::from_secs(server_settings.keepalive_seconds);
    let (connections, accept_task) = incoming::incoming(
        listener,
        ConnectionLimits {
            max_connections: server_settings.max_connections,
            handshake_timeout: Duration::from_secs(server_settings.handshake_timeout_seconds),
            tcp_keepalive: keepalive,
        },
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let grace = Duration::from_secs(server_settings.shutdown_grace_seconds);
    let health_on_stop = health.clone();
    let signal = async move {
        shutdown.await;
        accept_task.abort();
        tracing::info!(
            grace_seconds = grace.as_secs(),
            "shutting down: refusing new connections, finishing in-flight requests"
        );
        health_on_stop
            .set_not_serving::<MetricServiceServer<MetricServer>>()
            .await;
        let _ = stop_tx.send(());
    };
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(Duration::from_secs(10).min(keepalive)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(metric_service)
        .serve_with_incoming_shutdown(connections, signal);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result.context("the gRPC server failed")?,
        () = async { let _ = stop_rx.await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_seconds = grace.as_secs(), "in-flight requests did not finish within the grace period; cancelling them and stopping");
        }
    }
    tracing::info!("server stopped");
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!(signal = "SIGINT", "received shutdown signal"),
        () = terminate => tracing::info!(signal = "SIGTERM", "received shutdown signal"),
    }
}
