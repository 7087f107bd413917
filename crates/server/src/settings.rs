//! Server and CLI configuration: built-in defaults < `mittari.toml` (or `--config FILE`) <
//! environment variables `MITTARI__SECTION__KEY` < command-line flags. Validated once, here;
//! an unknown key or an invalid value stops start-up with a message naming the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use mittari_engine::{ConfigValue, EngineConfig};
use serde::{Deserialize, Serialize};

use crate::auth::{AuthSettings, Tokens};

/// The file read when `--config` is not given, if it exists in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "mittari.toml";

/// A configuration that cannot be used, with the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError(message.into())
    }
}

macro_rules! bail {
    ($($arg:tt)*) => {
        return Err(ConfigError::new(format!($($arg)*)))
    };
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub plugins: PluginSettings,
    #[serde(default)]
    pub metrics: MetricSettings,
    #[serde(default)]
    pub auth: AuthSettings,
    #[serde(default)]
    pub models: ModelSettings,
    /// The configuration file read, if any: `Reload` reads it again, and the metric state
    /// file lives beside it.
    #[serde(skip)]
    pub file: Option<PathBuf>,
    /// Metrics the admin enabled or disabled at run time (`SetMetricEnabled`), read from
    /// [`Settings::state_file`].
    #[serde(skip)]
    pub state: MetricState,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address the gRPC server listens on.
    pub listen: SocketAddr,
    /// Largest gRPC message accepted or sent, in bytes.
    pub max_message_bytes: usize,
    /// Largest total input of one `ComputeStream` call, in bytes.
    pub max_stream_bytes: u64,
    /// Computations running at once (default: the number of CPU cores).
    pub max_concurrent_computations: usize,
    /// Computations waiting for a slot; beyond this, requests get RESOURCE_EXHAUSTED.
    pub max_queued_computations: usize,
    /// How long in-flight requests may take to finish after SIGTERM or Ctrl-C.
    pub shutdown_grace_seconds: u64,
    /// Requests of at most this many rows to metrics not declared expensive run in a lane of
    /// their own, so heavy computations never delay them.
    pub light_request_max_rows: usize,
    /// Groups one request may form with group-by.
    pub max_groups: usize,
    /// Rows one request may have.
    pub max_rows: usize,
    /// Bytes of string data one request may have.
    pub max_string_bytes: usize,
    /// Input memory all calls together may hold at once: messages being received and inputs
    /// decoded (unary and streamed). `max_buffered_stream_bytes` is its former name.
    #[serde(alias = "max_buffered_stream_bytes")]
    pub max_input_memory_bytes: u64,
    /// The share of `max_input_memory_bytes` one caller (a token, or an anonymous address)
    /// may hold.
    pub max_input_memory_bytes_per_caller: u64,
    /// A request body that sends nothing for this long is ended (DEADLINE_EXCEEDED), freeing
    /// what it holds of the input memory.
    pub upload_idle_timeout_seconds: u64,
    /// Whether Arrow IPC input may have LZ4- or ZSTD-compressed bodies.
    pub allow_compressed_arrow: bool,
    /// Open connections at most; more are closed as they arrive.
    pub max_connections: usize,
    /// Open connections from one IP address at most.
    pub max_connections_per_address: usize,
    /// A connection must complete its TLS handshake (with TLS) and send the HTTP/2 preface and
    /// its SETTINGS within this long after it opens, or it is closed.
    pub handshake_timeout_seconds: u64,
    /// Concurrent calls (HTTP/2 streams) on one connection.
    pub max_concurrent_streams: u32,
    /// Largest header block of one call, in bytes (HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE).
    pub max_header_list_bytes: u32,
    /// Streams a client may reset before the server handles them, per connection; more
    /// (a "rapid reset" flood) close the connection.
    pub max_pending_reset_streams: usize,
    /// Interval of TCP keepalive and HTTP/2 pings, which find dead peers.
    pub keepalive_seconds: u64,
    /// Address of the Prometheus metrics endpoint (plain HTTP, `GET /metrics`); off when unset.
    pub metrics_listen: Option<SocketAddr>,
    /// TLS for the gRPC listener; plain text when unset.
    pub tls: Option<TlsSettings>,
}

/// `[server.tls]`: the server's certificate chain and key, and for mutual TLS the CA that
/// signs client certificates.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file: the server's certificate, then any intermediates.
    pub cert: PathBuf,
    /// PEM file: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM file of CA certificates: when set, every client must present a certificate
    /// signed by one of them (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

impl ServerSettings {
    /// Whether callers must present a client certificate (mutual TLS), which authenticates
    /// them as a token does.
    pub fn requires_client_certificates(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.client_ca.is_some())
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            max_message_bytes: 64 * 1024 * 1024,
            max_stream_bytes: 4 * 1024 * 1024 * 1024,
            max_concurrent_computations: std::thread::available_parallelism()
                .map_or(2, |n| n.get()),
            max_queued_computations: 256,
            shutdown_grace_seconds: 30,
            light_request_max_rows: 10_000,
            max_groups: 100_000,
            max_rows: 200_000_000,
            max_string_bytes: 2 * 1024 * 1024 * 1024,
            max_input_memory_bytes: 1024 * 1024 * 1024,
            max_input_memory_bytes_per_caller: 512 * 1024 * 1024,
            upload_idle_timeout_seconds: 30,
            allow_compressed_arrow: false,
            // Below the usual 1 024 file descriptors, with room for plugins and files.
            max_connections: 512,
            max_connections_per_address: 128,
            handshake_timeout_seconds: 10,
            max_concurrent_streams: 100,
            max_header_list_bytes: 16 * 1024,
            max_pending_reset_streams: 20,
            keepalive_seconds: 30,
            metrics_listen: None,
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginSettings {
    /// Directory of the plugin libraries (default: the directory of the `mittari` executable,
    /// where cargo puts the workspace's plugins).
    pub dir: Option<PathBuf>,
    /// More directories whose `*mittari_plugin_*` libraries are loaded too: keep your own
    /// plugins here, apart from the build output the bundled ones are in.
    pub extra_dirs: Vec<PathBuf>,
    /// Libraries to load; default: every `*mittari_plugin_*` library in `dir`.
    pub libraries: Option<Vec<String>>,
    /// Let `libraries` name paths outside `dir`.
    pub allow_libraries_outside_dir: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricSettings {
    /// Metrics to serve; default: every metric the plugins provide.
    pub enabled: Option<Vec<String>>,
    /// `[metrics.defaults.<metric>]` tables: parameter defaults per metric.
    pub defaults: BTreeMap<String, BTreeMap<String, ConfigValue>>,
    /// Where `SetMetricEnabled` records the admin's choices; default: `mittari.state.toml`
    /// beside the configuration file (or in the working directory without one).
    pub state_file: Option<PathBuf>,
}

/// `[models]`: where fitted models are kept.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSettings {
    /// The model store: `sqlite:///var/lib/mittari/models.db` (a file, created if missing) or
    /// `postgres://user@host/db` (shared by replicas; the password from PGPASSWORD); default:
    /// `mittari-models.db` beside the configuration file (or in the working directory without
    /// one).
    pub store: Option<String>,
    /// How long a server scores with what a reference resolved to before reading the store
    /// again: the longest a replica may go on scoring with the version an alias pointed at
    /// before another replica moved it. Changes made through this server apply at once.
    pub cache_seconds: f64,
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings {
            store: None,
            cache_seconds: 1.0,
        }
    }
}

/// The admin's run-time choices of metrics, kept in the state file. They win over
/// `metrics.enabled` for the metrics they name: they are the newer decision.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricState {
    pub enabled: std::collections::BTreeSet<String>,
    pub disabled: std::collections::BTreeSet<String>,
}

impl MetricState {
    /// Records one choice, replacing an earlier one for the same metric.
    pub fn set(&mut self, metric: &str, enabled: bool) {
        let (add, remove) = if enabled {
            (&mut self.enabled, &mut self.disabled)
        } else {
            (&mut self.disabled, &mut self.enabled)
        };
        remove.remove(metric);
        add.insert(metric.to_owned());
    }

    /// Forgets the choice recorded for `metric`: the configuration decides again.
    pub fn forget(&mut self, metric: &str) {
        self.enabled.remove(metric);
        self.disabled.remove(metric);
    }

    /// Writes the state atomically (a temporary file renamed over the old one), so a crash
    /// leaves the old state or the new, never half of one.
    pub fn write(&self, path: &Path) -> Result<(), ConfigError> {
        let text = toml::to_string(self)
            .map_err(|e| ConfigError::new(format!("cannot encode the metric state: {e}")))?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let write = || -> std::io::Result<()> {
            let mut file = tempfile::NamedTempFile::new_in(dir)?;
            std::io::Write::write_all(
                &mut file,
                format!(
                    "# Written by mittari (SetMetricEnabled); wins over metrics.enabled.\n{text}"
                )
                .as_bytes(),
            )?;
            file.as_file().sync_all()?;
            file.persist(path).map_err(|e| e.error)?;
            Ok(())
        };
        write().map_err(|e| {
            ConfigError::new(format!(
                "cannot write the metric state file {}: {e}; set metrics.state_file to a writable path",
                path.display()
            ))
        })
    }

    fn read(path: &Path) -> Result<MetricState, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(MetricState::default()),
            Err(e) => {
                bail!("cannot read the metric state file {}: {e}", path.display())
            }
        };
        toml::from_str(&text).map_err(|e| {
            ConfigError::new(format!(
                "metric state file {} is not valid: {e}; fix or delete it",
                path.display()
            ))
        })
    }
}

/// Overrides from command-line flags, the highest layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
}

impl Settings {
    /// Loads the layers. `file` is `--config`; without it `mittari.toml` is read if present.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Settings, ConfigError> {
        Self::load_from(file, overrides, std::env::vars())
    }

    fn load_from(
        file: Option<&Path>,
        overrides: &Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder();
        let file = match file {
            Some(path) if !path.is_file() => {
                bail!("configuration file {} does not exist", path.display());
            }
            Some(path) => Some(path.to_owned()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()),
        };
        // Absolute, so a reload finds the same file whatever the working directory is then.
        let file = file.map(|p| std::path::absolute(&p).unwrap_or(p));
        if let Some(path) = &file {
            builder = builder
                .add_source(config::File::from(path.as_path()).format(config::FileFormat::Toml));
        }
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("MITTARI__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("MITTARI")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("metrics.enabled")
                .with_list_parse_key("plugins.libraries")
                .source(Some(env)),
        );
        if let Some(listen) = overrides.listen {
            builder = builder
                .set_override("server.listen", listen.to_string())
                .map_err(|e| ConfigError::new(e.to_string()))?;
        }
        let mut settings: Settings = builder
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| ConfigError::new(e.to_string()))?;
        settings.file = file;
        settings.validate()?;
        settings.state = MetricState::read(&settings.state_file())?;
        Ok(settings)
    }

    /// Where the admin's run-time metric choices are kept.
    pub fn state_file(&self) -> PathBuf {
        if let Some(path) = &self.metrics.state_file {
            return path.clone();
        }
        self.beside_config("mittari.state.toml")
    }

    /// The file `name` beside the configuration file, or in the working directory without
    /// one; absolute, as messages show it and so a later working directory does not move it.
    fn beside_config(&self, name: &str) -> PathBuf {
        let dir = self
            .file
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."));
        let path = dir.join(name);
        std::path::absolute(&path).unwrap_or(path)
    }

    /// The model store's URL: `models.store`, or a SQLite file beside the configuration.
    pub fn model_store(&self) -> String {
        if let Some(url) = &self.models.store {
            return url.clone();
        }
        format!(
            "sqlite://{}",
            self.beside_config("mittari-models.db").display()
        )
    }

    /// The effective configuration as TOML, with the token hashes redacted: enough for an
    /// admin to see what the server runs with, nothing that helps an attacker.
    pub fn redacted_toml(&self) -> Result<String, ConfigError> {
        let mut shown = self.clone();
        for token in &mut shown.auth.tokens {
            token.sha256 = "<redacted>".to_owned();
        }
        if let Some(url) = &mut shown.models.store {
            *url = mittari_io::redact_url(url);
        }
        toml::to_string(&shown)
            .map_err(|e| ConfigError::new(format!("cannot encode the configuration: {e}")))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.models.store {
            mittari_store::check_url(url)
                .map_err(|e| ConfigError::new(format!("models.store: {e}")))?;
        }
        if !(self.models.cache_seconds.is_finite()
            && (0.0..=3600.0).contains(&self.models.cache_seconds))
        {
            bail!(
                "models.cache_seconds must be from 0 (read the store on every call) to 3600; it is {}",
                self.models.cache_seconds
            );
        }
        if self.plugins.libraries.is_some() && !self.plugins.extra_dirs.is_empty() {
            bail!(
                "plugins.extra_dirs would change nothing: plugins.libraries names every library to load; list the extra ones there by path (with plugins.allow_libraries_outside_dir = true), or drop plugins.libraries"
            );
        }
        let server = &self.server;
        if server.max_message_bytes < 1024 {
            bail!(
                "server.max_message_bytes must be at least 1024, got {}",
                server.max_message_bytes
            );
        }
        if server.max_concurrent_computations == 0 {
            bail!("server.max_concurrent_computations must be at least 1");
        }
        for (key, value) in [
            ("server.max_connections", server.max_connections as u64),
            (
                "server.handshake_timeout_seconds",
                server.handshake_timeout_seconds,
            ),
            ("server.keepalive_seconds", server.keepalive_seconds),
            ("server.max_groups", server.max_groups as u64),
            (
                "server.max_connections_per_address",
                server.max_connections_per_address as u64,
            ),
            (
                "server.upload_idle_timeout_seconds",
                server.upload_idle_timeout_seconds,
            ),
            (
                "server.max_input_memory_bytes_per_caller",
                server.max_input_memory_bytes_per_caller,
            ),
            (
                "server.max_concurrent_streams",
                u64::from(server.max_concurrent_streams),
            ),
            (
                "server.max_pending_reset_streams",
                server.max_pending_reset_streams as u64,
            ),
        ] {
            if value == 0 {
                bail!("{key} must be at least 1");
            }
        }
        if server.max_input_memory_bytes < server.max_message_bytes as u64 {
            bail!(
                "server.max_input_memory_bytes ({}) must be at least server.max_message_bytes ({}), or no message of the largest size could ever be received",
                server.max_input_memory_bytes,
                server.max_message_bytes
            );
        }
        if server.max_header_list_bytes < 1024 {
            bail!(
                "server.max_header_list_bytes must be at least 1024, got {}",
                server.max_header_list_bytes
            );
        }
        if server.max_stream_bytes < server.max_message_bytes as u64 {
            bail!("server.max_stream_bytes must be at least server.max_message_bytes");
        }
        if server.metrics_listen == Some(server.listen) && server.listen.port() != 0 {
            bail!(
                "server.metrics_listen must differ from server.listen ({})",
                server.listen
            );
        }
        if let Some(tls) = &server.tls {
            for (key, path) in [
                ("server.tls.cert", Some(&tls.cert)),
                ("server.tls.key", Some(&tls.key)),
                ("server.tls.client_ca", tls.client_ca.as_ref()),
            ] {
                if let Some(path) = path.filter(|p| !p.is_file()) {
                    bail!("{key}: file {} does not exist", path.display());
                }
            }
        }
        self.tokens()?;
        Ok(())
    }

    /// The configured tokens, validated.
    pub fn tokens(&self) -> Result<Tokens, ConfigError> {
        Tokens::from_settings(&self.auth).map_err(ConfigError::new)
    }

    /// The plugin directory: configured, or the directory of the running executable.
    pub fn plugin_dir(&self) -> Result<PathBuf, ConfigError> {
        if let Some(dir) = &self.plugins.dir {
            return Ok(dir.clone());
        }
        let exe = std::env::current_exe().map_err(|e| {
            ConfigError::new(format!(
                "cannot locate the mittari executable to find its plugins: {e}; set plugins.dir"
            ))
        })?;
        exe.parent().map(Path::to_owned).ok_or_else(|| {
            ConfigError::new("the mittari executable has no parent directory; set plugins.dir")
        })
    }

    pub fn engine_config(&self) -> Result<EngineConfig, ConfigError> {
        Ok(EngineConfig {
            plugin_dir: self.plugin_dir()?,
            extra_plugin_dirs: self.plugins.extra_dirs.clone(),
            libraries: self.plugins.libraries.clone(),
            allow_libraries_outside_dir: self.plugins.allow_libraries_outside_dir,
            enabled_metrics: self.metrics.enabled.clone(),
            metric_choices: self
                .state
                .enabled
                .iter()
                .map(|m| (m.clone(), true))
                .chain(self.state.disabled.iter().map(|m| (m.clone(), false)))
                .collect(),
            metric_defaults: self.metrics.defaults.clone(),
            max_concurrent_computations: self.server.max_concurrent_computations,
            max_queued_computations: self.server.max_queued_computations,
            light_request_max_rows: self.server.light_request_max_rows,
            max_groups: self.server.max_groups,
            max_rows: self.server.max_rows,
            max_string_bytes: self.server.max_string_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn load(
        toml: &str,
        env: &[(&str, &str)],
        overrides: Overrides,
    ) -> Result<Settings, Box<dyn std::error::Error>> {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile()?;
        file.write_all(toml.as_bytes())?;
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        Ok(Settings::load_from(Some(file.path()), &overrides, env)?)
    }

    #[test]
    fn layers_apply_in_order() {
        let toml = r#"
            [server]
            listen = "127.0.0.1:6000"
            max_queued_computations = 3
            [metrics]
            enabled = ["nps"]
            [metrics.defaults.nps]
            confidence = 0.9
        "#;
        let s = load(toml, &[], Overrides::default()).unwrap();
        assert_eq!(s.server.listen.port(), 6000);
        assert_eq!(s.server.max_queued_computations, 3);
        assert_eq!(s.metrics.enabled, Some(vec!["nps".to_owned()]));
        assert_eq!(
            s.metrics.defaults["nps"]["confidence"],
            ConfigValue::Float(0.9)
        );

        let env = [
            ("MITTARI__SERVER__LISTEN", "127.0.0.1:7000"),
            ("MITTARI__METRICS__ENABLED", "nps,csat"),
            ("MITTARI__METRICS__DEFAULTS__NPS__CONFIDENCE", "0.8"),
        ];
        let s = load(toml, &env, Overrides::default()).unwrap();
        assert_eq!(s.server.listen.port(), 7000);
        assert_eq!(
            s.metrics.enabled,
            Some(vec!["nps".to_owned(), "csat".to_owned()])
        );
        assert_eq!(
            s.metrics.defaults["nps"]["confidence"],
            ConfigValue::Float(0.8)
        );

        let flags = Overrides {
            listen: Some("127.0.0.1:8000".parse().unwrap()),
        };
        let s = load(toml, &env, flags).unwrap();
        assert_eq!(s.server.listen.port(), 8000);
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mittari.example.toml");
        let s = Settings::load_from(Some(&example), &Overrides::default(), Vec::new()).unwrap();
        assert_eq!(s.server.listen.port(), 50051);
        assert_eq!(
            s.metrics.defaults["nps"]["confidence"],
            ConfigValue::Float(0.95)
        );
    }

    /// Every key the server reads is shown in the example, set or commented out.
    #[test]
    fn the_example_names_every_key() {
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mittari.example.toml"),
        )
        .unwrap();
        let mut settings = load("", &[], Overrides::default()).unwrap();
        settings.server.metrics_listen = Some("127.0.0.1:9464".parse().unwrap());
        settings.server.tls = Some(TlsSettings {
            cert: "c".into(),
            key: "k".into(),
            client_ca: Some("a".into()),
        });
        settings.metrics.state_file = Some("s".into());
        settings.plugins.dir = Some("d".into());
        settings.plugins.libraries = Some(Vec::new());
        settings.metrics.enabled = Some(Vec::new());
        settings.models.store = Some("sqlite://m.db".into());
        let table = toml::Table::try_from(&settings).unwrap();
        let mut missing = Vec::new();
        for (section, value) in &table {
            let Some(keys) = value.as_table() else {
                continue;
            };
            for (key, value) in keys {
                let keys: Vec<String> = match value.as_table() {
                    Some(inner) if key != "defaults" => inner.keys().cloned().collect(),
                    _ => vec![key.clone()],
                };
                for key in keys {
                    let shown = example.lines().any(|line| {
                        let line = line.trim_start_matches(['#', ' ']);
                        line.starts_with(&format!("{key} ="))
                            || line.starts_with(&format!("[{section}.{key}"))
                            || line.starts_with(&format!("[[{section}.{key}]]"))
                    });
                    if !shown {
                        missing.push(format!("{section}.{key}"));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "mittari.example.toml lacks {missing:?}");
    }

    #[test]
    fn errors_name_the_key() {
        let check = |toml: &str, env: &[(&str, &str)], expect: &str| {
            let error = format!("{:#}", load(toml, env, Overrides::default()).unwrap_err());
            assert!(
                error.contains(expect),
                "{error:?} does not mention {expect:?}"
            );
        };
        check("[server]\nlisten_on = \"x\"", &[], "listen_on");
        check(
            "[models]\nstore = \"mysql://db/models\"",
            &[],
            "models.store: \"mysql://db/models\" is not a model store; give sqlite:///PATH",
        );
        check("[models]\nstore = \"sqlite://\"", &[], "models.store");
        check(
            "[models]\ncache_seconds = -1.0",
            &[],
            "models.cache_seconds",
        );
        check("[server]\nlisten = \"not an address\"", &[], "listen");
        check("[serve]\nlisten = \"127.0.0.1:1\"", &[], "serve");
        check(
            "",
            &[("MITTARI__SERVER__MAX_CONCURRENT_COMPUTATIONS", "0")],
            "server.max_concurrent_computations",
        );
        check("", &[("MITTARI__SERVER__PORT", "1")], "port");
    }
}
