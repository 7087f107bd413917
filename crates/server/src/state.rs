//! What the services share, and the run-time changes an admin makes to it.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use mittari_engine::Engine;

use crate::auth::{self, Tokens};
use crate::settings::{ConfigError, Overrides, Settings};
use crate::telemetry::Telemetry;

/// The server's run-time state. The engine, the tokens and the settings are each swapped
/// whole: a request loads the engine once and finishes on it, so a reload never changes the
/// metrics under a running computation, and no request waits for a reload.
#[derive(Debug)]
pub struct ServerState {
    engine: ArcSwap<Engine>,
    tokens: ArcSwap<Tokens>,
    settings: ArcSwap<Settings>,
    /// The command-line flags the server started with: a reload applies them again.
    overrides: Overrides,
    /// The address the server listens on.
    listen: std::net::SocketAddr,
    /// Changes are made one at a time (each reads the state it replaces).
    changing: tokio::sync::Mutex<()>,
    pub(crate) telemetry: Telemetry,
    /// The model store and the models resolved from it.
    pub(crate) models: crate::models::Registry,
}

/// Why a run-time change was refused; the running state is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("invalid configuration: {0}")]
    Engine(#[from] mittari_engine::StartupError),
    #[error(transparent)]
    Metric(#[from] mittari_engine::EngineError),
    #[error("the change failed: {0}")]
    Internal(String),
}

/// What a reload changed.
#[derive(Debug)]
pub(crate) struct Reloaded {
    /// Keys whose new values take effect only at a restart.
    pub(crate) restart_required: Vec<String>,
}

/// `[server]` keys a reload applies: the engine's per-request bounds. Every other server key
/// shapes the listener, the runtime or the services, which are built once.
const RELOADABLE_SERVER_KEYS: &[&str] = &[
    "light_request_max_rows",
    "max_groups",
    "max_rows",
    "max_string_bytes",
];

impl ServerState {
    pub(crate) fn new(
        settings: Settings,
        overrides: Overrides,
        listen: std::net::SocketAddr,
        tokens: Tokens,
        engine: Engine,
        models: crate::models::Registry,
    ) -> Self {
        ServerState {
            listen,
            engine: ArcSwap::from_pointee(engine),
            tokens: ArcSwap::from_pointee(tokens),
            settings: ArcSwap::from_pointee(settings),
            overrides,
            changing: tokio::sync::Mutex::new(()),
            telemetry: Telemetry::new(),
            models,
        }
    }

    /// The engine new requests run on.
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.load_full()
    }

    pub(crate) fn tokens(&self) -> Arc<Tokens> {
        self.tokens.load_full()
    }

    pub(crate) fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// Reads the configuration file and the plugin directory again and swaps the result in,
    /// or refuses with the reasons and changes nothing.
    pub(crate) async fn reload(self: &Arc<Self>) -> Result<Reloaded, ChangeError> {
        let _one_at_a_time = self.changing.lock().await;
        let state = Arc::clone(self);
        // Reading files and loading libraries (their initializers run) blocks.
        let result = tokio::task::spawn_blocking(move || state.prepare_reload())
            .await
            .map_err(|e| ChangeError::Internal(format!("the reload task failed: {e}")))?;
        let outcome = result.map(|(settings, tokens, engine, reloaded)| {
            self.engine.store(Arc::new(engine));
            self.tokens.store(Arc::new(tokens));
            self.settings.store(Arc::new(settings));
            reloaded
        });
        self.telemetry.reloaded(outcome.is_ok());
        outcome
    }

    fn prepare_reload(&self) -> Result<(Settings, Tokens, Engine, Reloaded), ChangeError> {
        let current = self.settings();
        let settings = Settings::load(current.file.as_deref(), &self.overrides)?;
        let tokens = settings.tokens()?;
        // The listener and its TLS stay as they are: the new settings must not open them to
        // anonymous callers (a reload that drops the last token on a public address is
        // refused).
        auth::check_exposure(
            self.listen,
            &tokens,
            current.server.requires_client_certificates(),
            settings.auth.allow_anonymous,
        )
        .map_err(ConfigError::new)?;
        let engine = self.engine().reload(&settings.engine_config()?);
        self.telemetry.libraries_refused(match &engine {
            Err(mittari_engine::StartupError::RefusedLibraries { count, .. }) => *count,
            _ => 0,
        });
        let engine = engine?;
        let restart_required = restart_required(&current, &settings);
        Ok((settings, tokens, engine, Reloaded { restart_required }))
    }

    /// Enables or disables a metric for new requests, after recording the choice in the
    /// state file (so a failed write changes nothing). Returns the file.
    /// `enabled: None` forgets the recorded choice: the metric is then served as
    /// `metrics.enabled` says. Returns the file and whether the metric is served now.
    pub(crate) async fn set_metric_enabled(
        &self,
        metric: &str,
        enabled: Option<bool>,
    ) -> Result<(PathBuf, bool), ChangeError> {
        let _one_at_a_time = self.changing.lock().await;
        let mut settings = Settings::clone(&self.settings());
        let enabled = match enabled {
            Some(enabled) => {
                settings.state.set(metric, enabled);
                enabled
            }
            None => {
                settings.state.forget(metric);
                settings
                    .metrics
                    .enabled
                    .as_ref()
                    .is_none_or(|listed| listed.iter().any(|m| m == metric))
            }
        };
        let engine = self.engine().with_metric_enabled(metric, enabled)?;
        let path = settings.state_file();
        let (state, file) = (settings.state.clone(), path.clone());
        tokio::task::spawn_blocking(move || state.write(&file))
            .await
            .map_err(|e| ChangeError::Internal(format!("the state file task failed: {e}")))??;
        self.engine.store(Arc::new(engine));
        self.settings.store(Arc::new(settings));
        Ok((path, enabled))
    }
}

/// The keys of `[server]` that differ between `old` and `new` and that a reload cannot apply.
fn restart_required(old: &Settings, new: &Settings) -> Vec<String> {
    let table = |s: &Settings| toml::Table::try_from(&s.server).unwrap_or_default();
    let (old, new) = (table(old), table(new));
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|key| !RELOADABLE_SERVER_KEYS.contains(&key.as_str()))
        .filter(|key| old.get(*key) != new.get(*key))
        .map(|key| format!("server.{key}"))
        .collect()
}
