//! Server and CLI configuration: built-in defaults < `mittari.toml` (or `--config FILE`) <
//! environment variables `MITTARI__SECTION__KEY` < command-line flags. Validated once, here;
//! an unknown key or an invalid value stops start-up with a message naming the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use mittari_engine::{ConfigValue, EngineConfig};

use crate::auth::{AuthSettings, Tokens};
use serde::Deserialize;

/// The file read when `--config` is not given, if it exists in the working directory.
pub(crate) const DEFAULT_CONFIG_FILE: &str = "mittari.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    #[serde(default)]
    pub(crate) server: ServerSettings,
    #[serde(default)]
    pub(crate) plugins: PluginSettings,
    #[serde(default)]
    pub(crate) metrics: MetricSettings,
    #[serde(default)]
    pub(crate) auth: AuthSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ServerSettings {
    /// Address the gRPC server listens on.
    pub(crate) listen: SocketAddr,
    /// Largest gRPC message accepted or sent, in bytes.
    pub(crate) max_message_bytes: usize,
    /// Largest total input of one `ComputeStream` call, in bytes.
    pub(crate) max_stream_bytes: u64,
    /// Computations running at once (default: the number of CPU cores).
    pub(crate) max_concurrent_computations: usize,
    /// Computations waiting for a slot; beyond this, requests get RESOURCE_EXHAUSTED.
    pub(crate) max_queued_computations: usize,
    /// How long in-flight requests may take to finish after SIGTERM or Ctrl-C.
    pub(crate) shutdown_grace_seconds: u64,
    /// Requests of at most this many rows to metrics not declared expensive run in a lane of
    /// their own, so heavy computations never delay them.
    pub(crate) light_request_max_rows: usize,
    /// Groups one request may form with group-by.
    pub(crate) max_groups: usize,
    /// Rows one request may have.
    pub(crate) max_rows: usize,
    /// Bytes of string data one request may have.
    pub(crate) max_string_bytes: usize,
    /// Input bytes all `ComputeStream` calls together may hold in memory at once.
    pub(crate) max_buffered_stream_bytes: u64,
    /// Open connections at most; more are closed as they arrive.
    pub(crate) max_connections: usize,
    /// A connection that sends nothing for this long after it opens is closed.
    pub(crate) handshake_timeout_seconds: u64,
    /// Interval of TCP keepalive and HTTP/2 pings, which find dead peers.
    pub(crate) keepalive_seconds: u64,
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
            max_buffered_stream_bytes: 1024 * 1024 * 1024,
            // Below the usual 1 024 file descriptors, with room for plugins and files.
            max_connections: 512,
            handshake_timeout_seconds: 10,
            keepalive_seconds: 30,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct PluginSettings {
    /// Directory of the plugin libraries (default: the directory of the `mittari` executable,
    /// where cargo puts the workspace's plugins).
    pub(crate) dir: Option<PathBuf>,
    /// Libraries to load; default: every `*mittari_plugin_*` library in `dir`.
    pub(crate) libraries: Option<Vec<String>>,
    /// Let `libraries` name paths outside `dir`.
    pub(crate) allow_libraries_outside_dir: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MetricSettings {
    /// Metrics to serve; default: every metric the plugins provide.
    pub(crate) enabled: Option<Vec<String>>,
    /// `[metrics.defaults.<metric>]` tables: parameter defaults per metric.
    pub(crate) defaults: BTreeMap<String, BTreeMap<String, ConfigValue>>,
}

/// Overrides from command-line flags, the highest layer.
#[derive(Debug, Default)]
pub(crate) struct Overrides {
    pub(crate) listen: Option<SocketAddr>,
}

impl Settings {
    /// Loads the layers. `file` is `--config`; without it `mittari.toml` is read if present.
    pub(crate) fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Settings> {
        Self::load_from(file, overrides, std::env::vars())
    }

    fn load_from(
        file: Option<&Path>,
        overrides: &Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Settings> {
        let mut builder = config::Config::builder();
        match file {
            Some(path) => {
                if !path.is_file() {
                    bail!("configuration file {} does not exist", path.display());
                }
                builder =
                    builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
            }
            None => {
                builder = builder.add_source(
                    config::File::with_name(DEFAULT_CONFIG_FILE)
                        .format(config::FileFormat::Toml)
                        .required(false),
                );
            }
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
            builder = builder.set_override("server.listen", listen.to_string())?;
        }
        let settings: Settings = builder
            .build()
            .context("invalid configuration")?
            .try_deserialize()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let server = &self.server;
        if server.max_message_bytes < 1024 {
            bail!(
                "invalid configuration: server.max_message_bytes must be at least 1024, got {}",
                server.max_message_bytes
            );
        }
        if server.max_concurrent_computations == 0 {
            bail!("invalid configuration: server.max_concurrent_computations must be at least 1");
        }
        for (key, value) in [
            ("server.max_connections", server.max_connections as u64),
            (
                "server.handshake_timeout_seconds",
                server.handshake_timeout_seconds,
            ),
            ("server.keepalive_seconds", server.keepalive_seconds),
            ("server.max_groups", server.max_groups as u64),
        ] {
            if value == 0 {
                bail!("invalid configuration: {key} must be at least 1");
            }
        }
        if server.max_stream_bytes < server.max_message_bytes as u64 {
            bail!(
                "invalid configuration: server.max_stream_bytes must be at least server.max_message_bytes"
            );
        }
        self.tokens()?;
        Ok(())
    }

    /// The configured tokens, validated.
    pub(crate) fn tokens(&self) -> anyhow::Result<Tokens> {
        Tokens::from_settings(&self.auth).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
    }

    /// The plugin directory: configured, or the directory of the running executable.
    pub(crate) fn plugin_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.plugins.dir {
            return Ok(dir.clone());
        }
        let exe = std::env::current_exe()
            .context("cannot locate the mittari executable to find its plugins")?;
        exe.parent()
            .map(Path::to_owned)
            .context("the mittari executable has no parent directory; set plugins.dir")
    }

    pub(crate) fn engine_config(&self) -> anyhow::Result<EngineConfig> {
        Ok(EngineConfig {
            plugin_dir: self.plugin_dir()?,
            libraries: self.plugins.libraries.clone(),
            allow_libraries_outside_dir: self.plugins.allow_libraries_outside_dir,
            enabled_metrics: self.metrics.enabled.clone(),
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

    fn load(toml: &str, env: &[(&str, &str)], overrides: Overrides) -> anyhow::Result<Settings> {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile()?;
        file.write_all(toml.as_bytes())?;
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        Settings::load_from(Some(file.path()), &overrides, env)
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
