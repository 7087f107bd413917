//! `mittari admin …`: one call to a running server's admin service.

use crate::*;

#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// List the plugin libraries: path, SHA-256, ABI version, metrics, enabled, loaded when.
    Plugins {
        #[command(flatten)]
        target: AdminTarget,
        /// Output format (table or json).
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Re-read the configuration file and the plugin directory and swap them in, or refuse
    /// with the reasons and change nothing (same as SIGHUP).
    Reload {
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Serve a metric again, at once and after restarts.
    Enable {
        /// The metric, e.g. nps.
        metric: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Stop serving a metric, at once and after restarts.
    Disable {
        /// The metric, e.g. nps.
        metric: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Forget what enable or disable recorded for a metric: the configuration
    /// (metrics.enabled) decides again, at once.
    Reset {
        /// The metric, e.g. nps.
        metric: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Print the server's effective configuration (token hashes redacted).
    Config {
        #[command(flatten)]
        target: AdminTarget,
    },
}

/// `mittari admin …`: one call to the server's admin service, printed.
pub(crate) fn run(command: AdminCommand) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    // A lazily connecting channel needs the runtime's reactor when it is made.
    let _runtime = rt.enter();
    let target = match &command {
        AdminCommand::Plugins { target, .. }
        | AdminCommand::Reload { target }
        | AdminCommand::Enable { target, .. }
        | AdminCommand::Disable { target, .. }
        | AdminCommand::Reset { target, .. }
        | AdminCommand::Config { target } => target.clone(),
    };
    let url = with_scheme(&target.server)?;
    let mut client = AdminServiceClient::with_interceptor(
        connect(&url, &target.tls)?,
        BearerToken::for_server(&url)?,
    );
    let enable = matches!(command, AdminCommand::Enable { .. });
    let reset = matches!(command, AdminCommand::Reset { .. });
    let result: Result<String, Status> = rt.block_on(async {
        Ok(match command {
            AdminCommand::Plugins { format, .. } => {
                let libraries = client
                    .list_plugins(admin_pb::ListPluginsRequest {})
                    .await?
                    .into_inner()
                    .libraries;
                match format {
                    Format::Json => render::libraries_json(&libraries),
                    _ => render::libraries(&libraries),
                }
            }
            AdminCommand::Reload { .. } => {
                // What was served before, to say what the reload changed.
                let before = client
                    .list_plugins(admin_pb::ListPluginsRequest {})
                    .await?
                    .into_inner()
                    .libraries;
                let reloaded = client
                    .reload(admin_pb::ReloadRequest {})
                    .await?
                    .into_inner();
                let mut text = reload_summary(&before, &reloaded.libraries);
                text.push_str(&render::libraries(&reloaded.libraries));
                if !reloaded.restart_required.is_empty() {
                    text.push_str(&format!(
                        "\nchanged, but applied only at a restart: {}\n",
                        reloaded.restart_required.join(", ")
                    ));
                }
                text
            }
            AdminCommand::Enable { metric, .. }
            | AdminCommand::Disable { metric, .. }
            | AdminCommand::Reset { metric, .. } => {
                let response = client
                    .set_metric_enabled(admin_pb::SetMetricEnabledRequest {
                        name: metric.clone(),
                        enabled: enable,
                        reset,
                    })
                    .await?
                    .into_inner();
                let now = if response.enabled { "enabled" } else { "disabled" };
                let file = response.state_file;
                if reset {
                    format!(
                        "{metric} {now} as the configuration says (its recorded choice removed from {file})\n"
                    )
                } else {
                    format!(
                        "{metric} {now} (recorded in {file}; `mittari admin reset {metric}` lets the configuration decide again)\n"
                    )
                }
            }
            AdminCommand::Config { .. } => {
                let config = client
                    .get_config(admin_pb::GetConfigRequest {})
                    .await?
                    .into_inner();
                let mut text = String::new();
                if !config.file.is_empty() {
                    text.push_str(&format!("# configuration file: {}\n", config.file));
                }
                text.push_str(&format!("# metric state file: {}\n", config.state_file));
                text.push_str(&config.toml);
                text
            }
        })
    });
    match result {
        Ok(text) => print(&text),
        Err(status) => Ok(report(&Backend::connection_error(&url, status), None)),
    }
}

/// What a reload changed, a line each: libraries loaded, replaced (new contents) or gone, and
/// metrics now served or no longer served; "nothing changed" when nothing did.
pub(crate) fn reload_summary(
    before: &[admin_pb::PluginLibrary],
    after: &[admin_pb::PluginLibrary],
) -> String {
    use std::collections::BTreeMap;
    let libraries = |libraries: &[admin_pb::PluginLibrary]| -> BTreeMap<String, String> {
        libraries
            .iter()
            .map(|l| (l.path.clone(), l.sha256.clone()))
            .collect()
    };
    let served = |libraries: &[admin_pb::PluginLibrary]| -> std::collections::BTreeSet<String> {
        libraries
            .iter()
            .flat_map(|l| &l.metrics)
            .filter(|m| m.enabled)
            .map(|m| m.name.clone())
            .collect()
    };
    let (old, new) = (libraries(before), libraries(after));
    let mut lines = Vec::new();
    for (path, sha) in &new {
        match old.get(path) {
            None => lines.push(format!("library loaded: {path}")),
            Some(previous) if previous != sha => {
                lines.push(format!("library replaced (new contents): {path}"));
            }
            Some(_) => {}
        }
    }
    for path in old.keys().filter(|p| !new.contains_key(*p)) {
        lines.push(format!("library no longer listed: {path}"));
    }
    let (was, is) = (served(before), served(after));
    for metric in is.difference(&was) {
        lines.push(format!("metric now served: {metric}"));
    }
    for metric in was.difference(&is) {
        lines.push(format!("metric no longer served: {metric}"));
    }
    if lines.is_empty() {
        lines.push("nothing changed in the plugins and metrics".to_owned());
    }
    let mut text = lines.join("\n");
    text.push_str("\n\n");
    text
}
