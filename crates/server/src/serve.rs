//! Running the server: the listener, TLS, the layers every call passes, the services, the
//! metrics endpoint, `SIGHUP` reloads and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mittari_engine::{Engine, LibraryStatus};
use mittari_proto::admin::v1::admin_service_server::AdminServiceServer;
use mittari_proto::v1::metric_service_server::MetricServiceServer;
use tokio::net::TcpListener;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::admin_service::AdminServer;
use crate::allocator::Trimmer;
use crate::auth::{self, AuthLayer, Tokens};
use crate::incoming::{self, ConnectionLimits};
use crate::metric_service::{MetricServer, RequestLimits};
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
    let tls = settings.server.tls.as_ref().map(tls_config).transpose()?;
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
    let state = Arc::new(ServerState::new(
        settings, overrides, listen, tokens, engine,
    ));
    state.telemetry.libraries_refused(refused);

    let max_message = server_settings.max_message_bytes;
    let trimmer = Trimmer::start();
    let metric_service = MetricServiceServer::new(MetricServer::new(
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
            handshake_timeout: Duration::from_secs(server_settings.handshake_timeout_seconds),
            tcp_keepalive: keepalive,
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

    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| ConfigError::new(format!("server.tls: {e}")))?;
    }
    let server = builder
        .layer(TelemetryLayer::new(Arc::clone(&state)))
        .layer(tower::util::MapResponseLayer::new(
            status::remap_wire_codes::<tonic::body::Body>,
        ))
        .layer(AuthLayer::new(Arc::clone(&state)))
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(Duration::from_secs(10).min(keepalive)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(metric_service)
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

/// The listener's TLS from `[server.tls]`: read and checked now, so a bad file stops the
/// start with the key that names it.
fn tls_config(tls: &TlsSettings) -> Result<ServerTlsConfig, ConfigError> {
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| ConfigError::new(format!("{key}: cannot read {}: {e}", path.display())))
    };
    let cert = read("server.tls.cert", &tls.cert)?;
    let key = read("server.tls.key", &tls.key)?;
    for (name, pem, marker) in [
        ("server.tls.cert", &cert, "CERTIFICATE"),
        ("server.tls.key", &key, "PRIVATE KEY"),
    ] {
        if !String::from_utf8_lossy(pem).contains(marker) {
            return Err(ConfigError::new(format!(
                "{name}: {} holds no PEM {marker} block",
                if name.ends_with("cert") {
                    tls.cert.display()
                } else {
                    tls.key.display()
                }
            )));
        }
    }
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &tls.client_ca {
        let pem = read("server.tls.client_ca", ca)?;
        if !String::from_utf8_lossy(&pem).contains("CERTIFICATE") {
            return Err(ConfigError::new(format!(
                "server.tls.client_ca: {} holds no PEM CERTIFICATE block",
                ca.display()
            )));
        }
        config = config.client_ca_root(Certificate::from_pem(pem));
    }
    Ok(config)
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
