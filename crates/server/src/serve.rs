//! Running the server: the listener, TLS, the layers every call passes, the services, the
//! metrics endpoint, `SIGHUP` reloads and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mittari_engine::{Engine, LibraryStatus};
use mittari_proto::admin::v1::admin_service_server::AdminServiceServer;
use mittari_proto::v1::metric_service_server::MetricServiceServer;
use mittari_proto::v1::model_service_server::ModelServiceServer;
use tokio::net::TcpListener;

use crate::admin_service::AdminServer;
use crate::allocator::Trimmer;
use crate::auth::{self, AuthLayer, Tokens};
use crate::budget::{BudgetLayer, MemoryBudget};
use crate::incoming::{self, ConnectionLimits};
use crate::metric_service::{MetricServer, RequestLimits};
use crate::models::Registry;
use crate::settings::{ConfigError, Overrides, Settings, TlsSettings};
use crate::state::ServerState;
use crate::status;
use crate::telemetry::{self, TelemetryLayer};

/// Why the server could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        key: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the reflection service: {0}")]
    Reflection(String),
    #[error("cannot open the model store (models.store): {0}")]
    ModelStore(#[from] mittari_store::StoreError),
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Binds the gRPC listener of `settings`, after checking that the address is not open to
/// anonymous callers beyond loopback (so such an address is never listened on, even briefly).
pub async fn bind(settings: &Settings) -> Result<TcpListener, ServeError> {
    check_exposure(settings, &settings.tokens()?, settings.server.listen)?;
    TcpListener::bind(settings.server.listen)
        .await
        .map_err(|source| ServeError::Bind {
            key: "server.listen",
            addr: settings.server.listen,
            source,
        })
}

fn check_exposure(
    settings: &Settings,
    tokens: &Tokens,
    listen: std::net::SocketAddr,
) -> Result<(), ConfigError> {
    auth::check_exposure(
        listen,
        tokens,
        settings.server.requires_client_certificates(),
        settings.auth.allow_anonymous,
    )
    .map_err(ConfigError::new)
}

/// Serves on `listener` until `shutdown` completes, then lets in-flight requests finish for up
/// to `server.shutdown_grace_seconds`. `overrides` are the command-line flags the settings
/// were loaded with; a reload applies them again.
pub async fn serve(
    settings: Settings,
    overrides: Overrides,
    engine: Engine,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let tokens = settings.tokens()?;
    let listen = listener.local_addr().unwrap_or(settings.server.listen);
    check_exposure(&settings, &tokens, listen)?;
    let tls = settings.server.tls.as_ref().map(tls_acceptor).transpose()?;
    let metrics_listener = telemetry::bind_metrics(settings.server.metrics_listen)
        .await
        .map_err(|source| ServeError::Bind {
            key: "server.metrics_listen",
            addr: settings.server.metrics_listen.unwrap_or(listen),
            source,
        })?;
    let refused = engine
        .libraries()
        .iter()
        .filter(|l| matches!(l.status, LibraryStatus::Refused { .. }))
        .count();
    let server_settings = settings.server.clone();
    let limits = RequestLimits::from(&settings);
    let store_url = settings.model_store();
    let store = tokio::task::spawn_blocking(move || mittari_store::open(&store_url))
        .await
        .map_err(|e| ServeError::Reflection(format!("the model store task failed: {e}")))??;
    tracing::info!(store = %store.describe(), "model store open");
    let registry = Registry::new(
        store,
        Duration::from_secs_f64(settings.models.cache_seconds),
    );
    let state = Arc::new(ServerState::new(
        settings, overrides, listen, tokens, engine, registry,
    ));
    state.telemetry.libraries_refused(refused);

    let max_message = server_settings.max_message_bytes;
    let budget = MemoryBudget::new(
        server_settings.max_input_memory_bytes,
        server_settings.max_input_memory_bytes_per_caller,
    );
    // Freed input buffers stay for the next request to reuse, up to what requests may hold
    // at once, and go back to the system seconds after the last use.
    crate::allocator::HugePages::retain_at_most(
        usize::try_from(server_settings.max_input_memory_bytes).unwrap_or(usize::MAX),
    );
    let trimmer = Trimmer::start();
    let metric_service = MetricServiceServer::new(MetricServer::new(
        Arc::clone(&state),
        limits,
        trimmer.clone(),
    ))
    .max_decoding_message_size(max_message)
    .max_encoding_message_size(max_message);
    let model_service = ModelServiceServer::new(MetricServer::new(
        Arc::clone(&state),
        limits,
        trimmer.clone(),
    ))
    .max_decoding_message_size(max_message)
    .max_encoding_message_size(max_message);
    let admin_service = AdminServiceServer::new(AdminServer::new(Arc::clone(&state)));

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<MetricServiceServer<MetricServer>>()
        .await;
    health
        .set_serving::<ModelServiceServer<MetricServer>>()
        .await;

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(mittari_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;

    let keepalive = Duration::from_secs(server_settings.keepalive_seconds);
    incoming::raise_open_file_limit(server_settings.max_connections);
    let (connections, accept_task) = incoming::incoming(
        listener,
        ConnectionLimits {
            max_connections: server_settings.max_connections,
            max_per_address: server_settings.max_connections_per_address,
            handshake_timeout: Duration::from_secs(server_settings.handshake_timeout_seconds),
            tcp_keepalive: keepalive,
            tls,
        },
        trimmer,
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
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
        health_on_stop
            .set_not_serving::<ModelServiceServer<MetricServer>>()
            .await;
        let _ = stop_tx.send(true);
    };
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    if let Some(listener) = metrics_listener {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(metrics_addr = %addr, "serving Prometheus metrics at /metrics");
        }
        let state = Arc::clone(&state);
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move {
            if let Err(error) = telemetry::serve_metrics(listener, state, stop).await {
                tracing::error!(%error, "the metrics endpoint failed");
            }
        });
    }
    tokio::spawn(reload_on_hangup(
        Arc::clone(&state),
        stopped(stop_rx.clone()),
    ));

    // TLS is terminated in `incoming`, so the whole handshake is under its timeout.
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(server_settings.max_concurrent_streams))
        .http2_max_header_list_size(Some(server_settings.max_header_list_bytes))
        .http2_max_pending_accept_reset_streams(Some(server_settings.max_pending_reset_streams))
        .layer(TelemetryLayer::new(Arc::clone(&state)))
        .layer(tower::util::MapResponseLayer::new(
            status::remap_wire_codes::<tonic::body::Body>,
        ))
        .layer(AuthLayer::new(Arc::clone(&state)))
        .layer(BudgetLayer::new(
            budget,
            Duration::from_secs(server_settings.upload_idle_timeout_seconds),
        ))
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(Duration::from_secs(10).min(keepalive)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(metric_service)
        .add_service(model_service)
        .add_service(admin_service)
        .serve_with_incoming_shutdown(connections, signal);
    tokio::pin!(server);
    let grace_over = stopped(stop_rx);
    tokio::select! {
        result = &mut server => result?,
        () = async { grace_over.await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_seconds = grace.as_secs(), "in-flight requests did not finish within the grace period; cancelling them and stopping");
        }
    }
    tracing::info!("server stopped");
    Ok(())
}

/// The listener's TLS from `[server.tls]`: read and checked now (certificates present, the
/// key matching the certificate, the client CA usable), so a bad file stops the start with
/// the key that names it instead of failing the first handshake.
fn tls_acceptor(tls: &TlsSettings) -> Result<tokio_rustls::TlsAcceptor, ConfigError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| ConfigError::new(format!("{key}: cannot read {}: {e}", path.display())))
    };
    let certificates = |key: &str, path: &std::path::Path| {
        let pem = read(key, path)?;
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                ConfigError::new(format!("{key}: {} is not valid PEM: {e}", path.display()))
            })?;
        if certificates.is_empty() {
            return Err(ConfigError::new(format!(
                "{key}: {} holds no PEM CERTIFICATE block",
                path.display()
            )));
        }
        Ok(certificates)
    };
    let chain = certificates("server.tls.cert", &tls.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&read("server.tls.key", &tls.key)?).map_err(|e| {
        ConfigError::new(format!(
            "server.tls.key: {} holds no PEM PRIVATE KEY block ({e})",
            tls.key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new(format!("server.tls: {e}")))?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in certificates("server.tls.client_ca", path)? {
                roots.add(certificate).map_err(|e| {
                    ConfigError::new(format!(
                        "server.tls.client_ca: {} holds a certificate that cannot be a CA: {e}",
                        path.display()
                    ))
                })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| {
                ConfigError::new(format!("server.tls.client_ca: {}: {e}", path.display()))
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        let reason = match e {
            rustls::Error::InconsistentKeys(_) => format!(
                "the private key in {} does not belong to the certificate in {}",
                tls.key.display(),
                tls.cert.display()
            ),
            other => other.to_string(),
        };
        ConfigError::new(format!("server.tls: {reason}"))
    })?;
    // gRPC is HTTP/2 only.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Reloads on every `SIGHUP`, as the admin service's `Reload` does, until the server stops.
async fn reload_on_hangup(state: Arc<ServerState>, stop: impl Future<Output = ()>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGHUP; reload through the admin service");
                return;
            }
        };
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                received = hangups.recv() => {
                    if received.is_none() {
                        return;
                    }
                }
            }
            match state.reload().await {
                Ok(reloaded) => {
                    let metrics: Vec<String> =
                        state.engine().metrics().map(|d| d.name.clone()).collect();
                    tracing::info!(trigger = "SIGHUP", ?metrics, restart_required = ?reloaded.restart_required, "reloaded the configuration and plugins");
                }
                Err(error) => {
                    tracing::warn!(trigger = "SIGHUP", %error, "reload refused; the running state is unchanged");
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (state, stop.await);
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
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
