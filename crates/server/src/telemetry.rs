//! What the server tells its operators: Prometheus metrics on their own HTTP listener
//! (`server.metrics_listen`), and a request id in every log line of a call.
//!
//! The [`TelemetryLayer`] wraps every call, outermost: it takes the caller's `x-request-id`
//! (or makes one), opens the `request` span every log line of the call carries, echoes the id
//! in the response metadata, and counts the call by RPC, metric and status code. Labels are
//! bounded: an RPC the server does not have is counted as `unknown`, and a metric only by a
//! name the engine serves, so a client cannot grow the exposition with names of its own.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use mittari_engine::Timings;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tracing::Instrument as _;

use crate::state::ServerState;

/// The metadata key of the request id, read from calls and set on responses.
pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest request id accepted from a caller; a longer or unprintable one is replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Every method the server serves: the only values the `rpc` label takes, besides `unknown`.
/// A client's path never becomes a label, so callers (authenticated or not) cannot grow the
/// exposition or write into it.
pub(crate) const SERVED_RPCS: &[&str] = &[
    "/mittari.v1.MetricService/ListMetrics",
    "/mittari.v1.MetricService/DescribeMetric",
    "/mittari.v1.MetricService/Compute",
    "/mittari.v1.MetricService/ComputeStream",
    "/mittari.v1.ModelService/Fit",
    "/mittari.v1.ModelService/GetModel",
    "/mittari.v1.ModelService/ListModels",
    "/mittari.v1.ModelService/DeleteModel",
    "/mittari.v1.ModelService/SetAlias",
    "/mittari.v1.ModelService/Score",
    "/mittari.v1.ModelService/ScoreStream",
    "/mittari.admin.v1.AdminService/ListPlugins",
    "/mittari.admin.v1.AdminService/Reload",
    "/mittari.admin.v1.AdminService/SetMetricEnabled",
    "/mittari.admin.v1.AdminService/GetConfig",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The `rpc` label of a request path: the served method, or `unknown`.
fn rpc_label(path: &str) -> &'static str {
    SERVED_RPCS
        .iter()
        .find(|rpc| **rpc == path)
        .copied()
        .unwrap_or("unknown")
}

/// A label value written with the escapes the text format requires (`\`, `\"`, `\n`):
/// prometheus-client writes label values as given, and one quote would make a standard parser
/// reject the whole scrape.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct LabelText(String);

impl From<&str> for LabelText {
    fn from(text: &str) -> Self {
        LabelText(text.to_owned())
    }
}

impl prometheus_client::encoding::EncodeLabelValue for LabelText {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    rpc: &'static str,
    metric: LabelText,
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    rpc: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MetricLabels {
    metric: LabelText,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

type Seconds = Counter<f64, std::sync::atomic::AtomicU64>;

/// The server's Prometheus metrics.
#[derive(Debug)]
pub(crate) struct Telemetry {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RpcLabels, Histogram>,
    queue_wait: Histogram,
    queued: Gauge,
    in_flight: Gauge,
    rows: Family<MetricLabels, Counter>,
    plugin_seconds: Family<MetricLabels, Seconds>,
    library_load_failures: Counter,
    reloads: Family<OutcomeLabels, Counter>,
    /// Request ids this process made: a random prefix per process and a count.
    id_prefix: u32,
    next_id: AtomicU64,
}

/// From 100 µs to about 100 s.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 21))
}

impl Telemetry {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("mittari");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "gRPC calls answered, by RPC, metric (for computations) and status code",
            requests.clone(),
        );
        let latency = Family::<RpcLabels, Histogram>::new_with_constructor(
            latency_buckets as fn() -> Histogram,
        );
        registry.register(
            "request_duration_seconds",
            "Time from a call's arrival to its response, by RPC",
            latency.clone(),
        );
        let queue_wait = latency_buckets();
        registry.register(
            "computation_queue_wait_seconds",
            "Time computations waited for a slot",
            queue_wait.clone(),
        );
        let queued = Gauge::default();
        registry.register(
            "computations_queued",
            "Computations waiting for a slot now",
            queued.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "computations_in_flight",
            "Computations running now",
            in_flight.clone(),
        );
        let rows = Family::<MetricLabels, Counter>::default();
        registry.register(
            "rows_processed",
            "Input rows of successful computations, by metric",
            rows.clone(),
        );
        let plugin_seconds = Family::<MetricLabels, Seconds>::default();
        registry.register(
            "plugin_compute_seconds",
            "Time spent computing (validation, group-by and plugin code), by metric",
            plugin_seconds.clone(),
        );
        let library_load_failures = Counter::default();
        registry.register(
            "plugin_load_failures",
            "Plugin libraries refused at start or at a reload",
            library_load_failures.clone(),
        );
        let reloads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "reloads",
            "Reloads (admin call or SIGHUP), by outcome (applied or refused)",
            reloads.clone(),
        );
        registry.register(
            "build",
            "The server's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let mut prefix = [0u8; 4];
        // Without randomness ids are still unique within the process.
        let _ = getrandom::fill(&mut prefix);
        Telemetry {
            registry,
            requests,
            latency,
            queue_wait,
            queued,
            in_flight,
            rows,
            plugin_seconds,
            library_load_failures,
            reloads,
            id_prefix: u32::from_le_bytes(prefix),
            next_id: AtomicU64::new(1),
        }
    }

    fn new_request_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{:08x}-{n:012x}", self.id_prefix)
    }

    /// A successful computation's size and timings.
    pub(crate) fn computed(&self, metric: &str, rows: usize, timings: Timings) {
        let labels = MetricLabels {
            metric: metric.into(),
        };
        self.rows.get_or_create(&labels).inc_by(rows as u64);
        self.plugin_seconds
            .get_or_create(&labels)
            .inc_by(timings.computing.as_secs_f64());
        self.queue_wait.observe(timings.queued.as_secs_f64());
    }

    pub(crate) fn libraries_refused(&self, count: usize) {
        self.library_load_failures.inc_by(count as u64);
    }

    pub(crate) fn reloaded(&self, applied: bool) {
        let outcome = if applied { "applied" } else { "refused" };
        self.reloads
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    fn answered(&self, rpc: &'static str, metric: &str, code: i32, elapsed: Duration) {
        let code = tonic::Code::from_i32(code);
        self.requests
            .get_or_create(&RequestLabels {
                rpc,
                metric: metric.into(),
                code: format!("{code:?}"),
            })
            .inc();
        self.latency
            .get_or_create(&RpcLabels { rpc })
            .observe(elapsed.as_secs_f64());
    }

    /// The exposition, in the OpenMetrics text format.
    fn encode(&self, load: mittari_engine::Load) -> Result<String, std::fmt::Error> {
        self.queued
            .set(i64::try_from(load.queued).unwrap_or(i64::MAX));
        self.in_flight
            .set(i64::try_from(load.running).unwrap_or(i64::MAX));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// What the telemetry layer gives a call, as a request extension: its id, and a slot where
/// the service notes the metric the call was about.
#[derive(Debug, Clone)]
pub(crate) struct RequestContext {
    metric: Arc<OnceLock<String>>,
}

impl RequestContext {
    /// Labels the call's count with `metric`, a name the engine serves.
    pub(crate) fn set_metric(&self, metric: &str) {
        let _ = self.metric.set(metric.to_owned());
    }
}

/// The layer described in the module docs.
#[derive(Debug, Clone)]
pub(crate) struct TelemetryLayer {
    state: Arc<ServerState>,
}

impl TelemetryLayer {
    pub(crate) fn new(state: Arc<ServerState>) -> Self {
        TelemetryLayer { state }
    }
}

impl<S> tower::Layer<S> for TelemetryLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            state: Arc::clone(&self.state),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Observe<S> {
    inner: S,
    state: Arc<ServerState>,
}

impl<S, B, R> tower::Service<http::Request<B>> for Observe<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let id = request
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|id| valid_request_id(id))
            .map_or_else(|| self.state.telemetry.new_request_id(), str::to_owned);
        let rpc = rpc_label(request.uri().path());
        let context = RequestContext {
            metric: Arc::new(OnceLock::new()),
        };
        request.extensions_mut().insert(context.clone());
        let span = tracing::info_span!("request", request_id = %id);
        let response = self.inner.call(request).instrument(span);
        let state = Arc::clone(&self.state);
        Box::pin(async move {
            let mut response = response.await?;
            if let Ok(value) = http::HeaderValue::from_str(&id) {
                response.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
            // A trailers-only response (every error) has its status in the headers; a
            // successful one sends it in the trailers, after this point.
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let metric = context.metric.get().map_or("", String::as_str);
            state
                .telemetry
                .answered(rpc, metric, code, started.elapsed());
            Ok(response)
        })
    }
}

/// A caller's request id is kept when it is short and printable; otherwise the server makes
/// one, so ids are safe to log and to send back.
fn valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b))
}

/// Connections the metrics endpoint serves at once; more are closed as they arrive. Part of
/// the descriptors reserved beside `server.max_connections`.
pub(crate) const METRICS_MAX_CONNECTIONS: usize = 16;
/// A scrape must send its request within this long, and read the answer within as long again.
const METRICS_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest request head the endpoint reads.
const METRICS_MAX_REQUEST_BYTES: usize = 8 * 1024;

/// Serves `GET /metrics` (plain HTTP/1.1, one request per connection) on `listener` until
/// `shutdown` completes. Bounded like the gRPC listener: at most
/// [`METRICS_MAX_CONNECTIONS`] connections, each closed when its request or the answer's
/// delivery takes longer than [`METRICS_TIMEOUT`], so idle sockets cannot use up the
/// process's file descriptors.
pub(crate) async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: Arc<ServerState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(METRICS_MAX_CONNECTIONS));
    let mut at_limit = crate::incoming::Throttle::default();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(%error, "cannot accept a metrics connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            if let Some(count) = at_limit.hit() {
                tracing::warn!(
                    limit = METRICS_MAX_CONNECTIONS,
                    refused = count,
                    "the metrics endpoint's connection limit is reached; closing new connections"
                );
            }
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            if let Err(error) = answer_scrape(stream, &state).await {
                tracing::debug!(%error, "a metrics connection ended without an answer");
            }
            drop(slot);
        });
    }
}

/// Reads one request head and answers it.
async fn answer_scrape(
    mut stream: tokio::net::TcpStream,
    state: &ServerState,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
    let mut head = Vec::with_capacity(1024);
    tokio::time::timeout(METRICS_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            if head.len() > METRICS_MAX_REQUEST_BYTES {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "request head too long",
                ));
            }
            let read = stream.read(&mut buf).await?;
            if read == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            head.extend_from_slice(&buf[..read]);
        }
        Ok(())
    })
    .await
    .map_err(|_| timed_out())??;
    let (status, content_type, body) =
        if head.starts_with(b"GET /metrics ") || head.starts_with(b"GET /metrics?") {
            match state.telemetry.encode(state.engine().current_load()) {
                Ok(text) => (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                ),
                Err(_) => (
                    "500 Internal Server Error",
                    "text/plain; charset=utf-8",
                    "cannot encode the metrics\n".to_owned(),
                ),
            }
        } else {
            (
                "404 Not Found",
                "text/plain; charset=utf-8",
                "this endpoint serves GET /metrics only\n".to_owned(),
            )
        };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tokio::time::timeout(METRICS_TIMEOUT, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| timed_out())?
}

/// Binds the metrics listener, if one is configured.
pub(crate) async fn bind_metrics(
    addr: Option<SocketAddr>,
) -> std::io::Result<Option<tokio::net::TcpListener>> {
    match addr {
        Some(addr) => tokio::net::TcpListener::bind(addr).await.map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_callers_are_kept_only_when_safe() {
        let check = |id: &str, expect: bool| assert_eq!(valid_request_id(id), expect, "{id:?}");
        check("7f3c-42", true);
        check("trace:abc/def+1=", true);
        check("", false);
        check("a b", false);
        check("line\nbreak", false);
        check(&"x".repeat(129), false);
    }

    #[test]
    fn exposition_counts_calls_by_rpc_metric_and_code() {
        let telemetry = Telemetry::new();
        telemetry.answered(
            "/mittari.v1.MetricService/Compute",
            "nps",
            0,
            Duration::from_millis(2),
        );
        telemetry.answered(
            "/mittari.v1.MetricService/Compute",
            "nps",
            3,
            Duration::from_millis(1),
        );
        telemetry.computed(
            "nps",
            10,
            Timings {
                queued: Duration::ZERO,
                computing: Duration::from_millis(1),
            },
        );
        telemetry.reloaded(false);
        let text = telemetry
            .encode(mittari_engine::Load {
                running: 1,
                queued: 2,
            })
            .unwrap();
        for line in [
            r#"mittari_requests_total{rpc="/mittari.v1.MetricService/Compute",metric="nps",code="Ok"} 1"#,
            r#"mittari_requests_total{rpc="/mittari.v1.MetricService/Compute",metric="nps",code="InvalidArgument"} 1"#,
            r#"mittari_rows_processed_total{metric="nps"} 10"#,
            r#"mittari_reloads_total{outcome="refused"} 1"#,
            "mittari_computations_queued 2",
            "mittari_computations_in_flight 1",
            r#"mittari_request_duration_seconds_count{rpc="/mittari.v1.MetricService/Compute"} 2"#,
            "mittari_computation_queue_wait_seconds_count 1",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
        assert!(text.contains("mittari_build_info{version="), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn client_paths_never_become_labels_and_label_values_are_escaped() {
        let telemetry = Telemetry::new();
        for i in 0..1000 {
            telemetry.answered(
                rpc_label(&format!("/random/{i}")),
                "",
                16,
                Duration::from_millis(1),
            );
        }
        telemetry.answered(
            rpc_label("/inj\",metric=\"nps\",code=\"Ok"),
            "a\"b\\c\nd",
            16,
            Duration::from_millis(1),
        );
        let text = telemetry
            .encode(mittari_engine::Load {
                running: 0,
                queued: 0,
            })
            .unwrap();
        let series = text
            .lines()
            .filter(|l| l.starts_with("mittari_requests_total{"))
            .count();
        assert_eq!(series, 2, "{text}");
        assert!(
            text.contains(
                r#"mittari_requests_total{rpc="unknown",metric="",code="Unauthenticated"} 1000"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"{rpc="unknown",metric="a\"b\\c\nd",code="Unauthenticated"} 1"#),
            "{text}"
        );
        assert!(!text.contains("inj"), "{text}");
        // Every method of Mittari's services is labelled by its own name.
        let set: prost_types::FileDescriptorSet =
            prost::Message::decode(mittari_proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut methods = 0;
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                    assert_eq!(rpc_label(&path), path);
                    methods += 1;
                }
            }
        }
        assert_eq!(methods, 15);
    }
}
