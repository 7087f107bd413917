//! `mittari model fit|score|list|show|delete|alias|export|import`: the fitted models in the
//! model store.

use std::fmt::Write as _;

use mittari_store::{ModelStore, NewModel, Reference, StoredModel};

use crate::*;

#[derive(Debug, clap::Args)]
pub(crate) struct ModelArgs {
    /// The model store: sqlite:///PATH or postgres://user@host/db (the password from
    /// PGPASSWORD); default: models.store in the configuration, else mittari-models.db beside it.
    #[arg(long, value_name = "URL", global = true)]
    store: Option<String>,
    #[command(subcommand)]
    command: ModelCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ModelCommand {
    /// Fit a metric's model to an input and store it as the next version of --name:
    /// `mittari model fit clv --input log.csv --name clv-eu --param model=pareto_nbd`.
    /// Prints the fit's results, as `compute` does; the stored model's reference goes to
    /// standard error.
    Fit {
        /// The metric, e.g. clv.
        metric: String,
        /// The model's name: lowercase letters, digits, `-` and `_`.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        args: Box<super::compute::ComputeArgs>,
    },
    /// Score an input with a stored model (NAME@VERSION, NAME@ALIAS, or NAME for its latest
    /// version): the results `compute` gives, from the stored fit instead of a new one.
    Score {
        reference: String,
        #[command(flatten)]
        args: Box<super::compute::ComputeArgs>,
    },
    /// List the stored models: every version, or one name's.
    List {
        /// Only this model's versions.
        name: Option<String>,
        /// A server's models (--server URL) instead of a store's.
        #[command(flatten)]
        remote: ServerArgs,
    },
    /// Show one model: NAME@VERSION, NAME@ALIAS, or NAME for its latest version.
    Show {
        reference: String,
        #[command(flatten)]
        remote: ServerArgs,
    },
    /// Delete one version, NAME@VERSION; refused while an alias points at it.
    Delete {
        reference: String,
        #[command(flatten)]
        remote: ServerArgs,
    },
    /// Point an alias at a version (`mittari model alias clv-eu production 3`), so callers
    /// can pin NAME@ALIAS and an admin moves it; with --remove, take it away.
    Alias {
        name: String,
        alias: String,
        /// The version it points at.
        #[arg(required_unless_present = "remove", conflicts_with = "remove")]
        version: Option<u64>,
        #[arg(long)]
        remove: bool,
        #[command(flatten)]
        remote: ServerArgs,
    },
    /// Write a model to a portable file: for back-ups, or to move it to another environment.
    Export { reference: String, file: PathBuf },
    /// Store a model from an exported file as the next version of its name, or of --name.
    Import {
        file: PathBuf,
        #[arg(long)]
        name: Option<String>,
    },
}

/// The exported file's format name and version: what `import` checks before reading on.
const FORMAT: &str = "mittari-model";
const FORMAT_VERSION: u64 = 1;

pub(crate) fn run(config: Option<&Path>, args: ModelArgs) -> anyhow::Result<ExitCode> {
    let store_url = args.store;
    let open = || -> anyhow::Result<Box<dyn ModelStore>> {
        let url = match &store_url {
            Some(url) => url.clone(),
            None => Settings::load(config, &Overrides::default())?.model_store(),
        };
        Ok(mittari_store::open(&url)?)
    };
    // On a server (--server), its store: none is opened here.
    let command = match args.command {
        ModelCommand::Fit {
            metric,
            name,
            args: compute,
        } => {
            mittari_store::check_name(&name)?;
            let store = match compute.is_remote() {
                true => None,
                false => Some(open()?),
            };
            return super::compute::run(
                config,
                Some(&metric),
                *compute,
                super::compute::Purpose::Fit {
                    store: store.as_deref(),
                    name: &name,
                },
            );
        }
        ModelCommand::Score {
            reference,
            args: compute,
        } => {
            if compute.is_remote() {
                return super::compute::run(
                    config,
                    None,
                    *compute,
                    super::compute::Purpose::Score {
                        reference: &reference,
                        model: None,
                    },
                );
            }
            let model = open()?.get(&reference.parse()?)?;
            return super::compute::run(
                config,
                Some(&model.model.metric),
                *compute,
                super::compute::Purpose::Score {
                    reference: &reference,
                    model: Some(&model),
                },
            );
        }
        other => other,
    };
    let remote = match &command {
        ModelCommand::List { remote, .. }
        | ModelCommand::Show { remote, .. }
        | ModelCommand::Delete { remote, .. }
        | ModelCommand::Alias { remote, .. } => remote.server.is_some().then_some(remote),
        _ => None,
    };
    let target = match remote {
        Some(remote) => {
            let runtime = runtime()?;
            let backend = {
                let _runtime = runtime.enter();
                Backend::new(config, remote)?
            };
            Target::Remote(runtime, Box::new(backend))
        }
        None => Target::Local(open()?),
    };
    let text = match command {
        ModelCommand::Fit { .. } | ModelCommand::Score { .. } => {
            bail!("fit and score are run above")
        }
        ModelCommand::List { name, .. } => {
            if let Some(name) = &name {
                mittari_store::check_name(name)?;
            }
            let models = target.list(name.as_deref())?;
            if models.is_empty() {
                match name {
                    Some(name) => format!("no model {name} in {}\n", target.describe()),
                    None => format!("no models in {}\n", target.describe()),
                }
            } else {
                list(&models)
            }
        }
        ModelCommand::Show { reference, .. } => show(&target.get(&reference)?),
        ModelCommand::Delete { reference, .. } => {
            let Reference::Version(name, version) = reference.parse()? else {
                bail!(
                    "delete one version at a time: give NAME@VERSION, as `mittari model list` shows them"
                );
            };
            target.delete(&name, version)?;
            format!("deleted {name}@{version}\n")
        }
        ModelCommand::Alias {
            name,
            alias,
            version,
            remove,
            ..
        } => match (remove, version) {
            (true, _) => {
                let was = target.set_alias(&name, &alias, None)?.unwrap_or(0);
                format!("removed {name}@{alias} (it pointed at {name}@{was})\n")
            }
            (false, Some(version)) => match target.set_alias(&name, &alias, Some(version))? {
                Some(before) if before != version => {
                    format!("{name}@{alias} now points at {name}@{version} (was {name}@{before})\n")
                }
                _ => format!("{name}@{alias} points at {name}@{version}\n"),
            },
            (false, None) => bail!("give the version the alias points at, or --remove"),
        },
        ModelCommand::Export { reference, file } => {
            let store = target.local()?;
            let model = store.get(&reference.parse()?)?;
            let document = export(&model)?;
            std::fs::write(&file, document)
                .with_context(|| format!("cannot write {}", file.display()))?;
            format!(
                "wrote {}@{} to {} ({} bytes of state)\n",
                model.name,
                model.version,
                file.display(),
                model.model.state.len()
            )
        }
        ModelCommand::Import { file, name } => {
            let store = target.local()?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let (original, model) = import(&text)
                .with_context(|| format!("{} is not a model export", file.display()))?;
            let name = name.unwrap_or(original.clone());
            let version = store.put(&name, &model)?;
            format!(
                "stored {original} from {} as {name}@{version}\n",
                file.display()
            )
        }
    };
    print(&text)
}

/// Where `model list|show|delete|alias` act: a store, or a server's ModelService.
enum Target {
    Local(Box<dyn ModelStore>),
    Remote(tokio::runtime::Runtime, Box<Backend>),
}

impl Target {
    fn local(&self) -> anyhow::Result<&dyn ModelStore> {
        match self {
            Target::Local(store) => Ok(store.as_ref()),
            Target::Remote(..) => bail!(
                "export and import move a model with its state between stores: give --store URL, not --server"
            ),
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Local(store) => store.describe(),
            Target::Remote(_, backend) => match backend.as_ref() {
                Backend::Remote(_, url, _) => format!("the model store of {url}"),
                Backend::Embedded(_) => "the server's model store".to_owned(),
            },
        }
    }

    fn list(&self, name: Option<&str>) -> anyhow::Result<Vec<pb::ModelInfo>> {
        match self {
            Target::Local(store) => Ok(store
                .list(name)?
                .into_iter()
                .map(mittari_server::summary_info)
                .collect()),
            Target::Remote(runtime, backend) => Ok(runtime
                .block_on(backend.models()?.list_models(pb::ListModelsRequest {
                    name: name.unwrap_or_default().to_owned(),
                }))
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner()
                .models),
        }
    }

    fn get(&self, reference: &str) -> anyhow::Result<pb::ModelInfo> {
        match self {
            Target::Local(store) => Ok(mittari_server::model_info_of(
                &store.get(&reference.parse()?)?,
            )),
            Target::Remote(runtime, backend) => runtime
                .block_on(backend.models()?.get_model(pb::GetModelRequest {
                    reference: reference.to_owned(),
                }))
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner()
                .model
                .ok_or_else(|| anyhow::anyhow!("the server sent no model")),
        }
    }

    fn delete(&self, name: &str, version: u64) -> anyhow::Result<()> {
        match self {
            Target::Local(store) => Ok(store.delete(name, version)?),
            Target::Remote(runtime, backend) => {
                runtime
                    .block_on(backend.models()?.delete_model(pb::DeleteModelRequest {
                        reference: format!("{name}@{version}"),
                    }))
                    .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
                Ok(())
            }
        }
    }

    /// Points `alias` at `version`, or removes it (`None`); returns the version it pointed at.
    fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: Option<u64>,
    ) -> anyhow::Result<Option<u64>> {
        match self {
            Target::Local(store) => Ok(match version {
                Some(version) => store.set_alias(name, alias, version)?,
                None => Some(store.remove_alias(name, alias)?),
            }),
            Target::Remote(runtime, backend) => {
                let previous = runtime
                    .block_on(backend.models()?.set_alias(pb::SetAliasRequest {
                        name: name.to_owned(),
                        alias: alias.to_owned(),
                        version: version.unwrap_or(0),
                    }))
                    .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                    .into_inner()
                    .previous_version;
                Ok((previous > 0).then_some(previous))
            }
        }
    }
}

fn list(models: &[pb::ModelInfo]) -> String {
    let rows: Vec<[String; 6]> = models
        .iter()
        .map(|m| {
            [
                format!("{}@{}", m.name, m.version),
                m.aliases.join(", "),
                format!("{} {}", m.metric, m.metric_version),
                format_micros(m.created_at),
                m.created_by.clone(),
                m.state_bytes.to_string(),
            ]
        })
        .collect();
    let header = ["model", "aliases", "metric", "created", "by", "state bytes"];
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in std::iter::once(header.map(str::to_owned)).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(text, "{}", cells.join("  ").trim_end());
    }
    text
}

fn show(m: &pb::ModelInfo) -> String {
    let mut text = String::new();
    let mut line = |key: &str, value: &str| {
        let _ = writeln!(text, "{key:<15} {value}");
    };
    line("model", &format!("{}@{}", m.name, m.version));
    line(
        "aliases",
        &if m.aliases.is_empty() {
            "none".to_owned()
        } else {
            m.aliases.join(", ")
        },
    );
    line("metric", &format!("{} {}", m.metric, m.metric_version));
    line("created", &format_micros(m.created_at));
    line("created by", &m.created_by);
    line("plugin ABI", &m.abi_version.to_string());
    line("library sha256", &m.library_sha256);
    line("parameters", &m.parameters_json);
    line("input", &m.fingerprint_json);
    line("fit", &m.statistics_json);
    line("state", &format!("{} bytes", m.state_bytes));
    text
}

/// An instant in µs since 1970 as ISO 8601, UTC.
fn format_micros(micros: i64) -> String {
    mittari_sdk::time::format_timestamp(micros)
}

/// A model as a portable JSON document: its metadata as JSON values (the parameters,
/// fingerprint and statistics are JSON already), the state in hex with its SHA-256.
fn export(model: &StoredModel) -> anyhow::Result<String> {
    let m = &model.model;
    let json = |text: &str, what: &str| -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(text).with_context(|| format!("the stored {what} are not JSON"))
    };
    let mut state = String::with_capacity(2 * m.state.len());
    for byte in &m.state {
        let _ = write!(state, "{byte:02x}");
    }
    let document = serde_json::json!({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": model.name,
        "version": model.version,
        "created_at": format_micros(model.created_at),
        "created_by": m.created_by,
        "metric": m.metric,
        "metric_version": m.metric_version,
        "abi_version": m.abi_version,
        "library_sha256": m.library_sha256,
        "parameters": json(&m.parameters, "parameters")?,
        "fingerprint": json(&m.fingerprint, "input fingerprint")?,
        "statistics": json(&m.statistics, "fit statistics")?,
        "state_sha256": mittari_store::state_digest(&m.state),
        "state_hex": state,
    });
    Ok(serde_json::to_string_pretty(&document)? + "\n")
}

/// Reads an export back: its original reference (`name@version`) and the model to store.
fn import(text: &str) -> anyhow::Result<(String, NewModel)> {
    let document: serde_json::Value = serde_json::from_str(text).context("not JSON")?;
    let field = |key: &str| -> anyhow::Result<&serde_json::Value> {
        document
            .get(key)
            .with_context(|| format!("it has no {key:?} field"))
    };
    let text_of = |key: &str| -> anyhow::Result<String> {
        field(key)?
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("its {key:?} is not text"))
    };
    if field("format")?.as_str() != Some(FORMAT) {
        bail!("its format is not {FORMAT:?}");
    }
    let format_version = field("format_version")?.as_u64().unwrap_or(0);
    if format_version != FORMAT_VERSION {
        bail!(
            "it is format version {format_version}; this build reads version {FORMAT_VERSION}: use a newer mittari"
        );
    }
    let hex = text_of("state_hex")?;
    if hex.len() % 2 != 0 {
        bail!("its state_hex has an odd number of digits");
    }
    let state = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .context("its state_hex is not hexadecimal")?;
    let expected = text_of("state_sha256")?;
    let found = mittari_store::state_digest(&state);
    if found != expected {
        bail!(
            "its state's SHA-256 is {found}, not the {expected} it was exported with: the file is damaged"
        );
    }
    let name = text_of("name")?;
    let version = field("version")?
        .as_u64()
        .context("its version is not a number")?;
    let model = NewModel {
        metric: text_of("metric")?,
        metric_version: text_of("metric_version")?,
        abi_version: u32::try_from(field("abi_version")?.as_u64().unwrap_or(0))
            .context("its abi_version is out of range")?,
        library_sha256: text_of("library_sha256")?,
        parameters: field("parameters")?.to_string(),
        fingerprint: field("fingerprint")?.to_string(),
        statistics: field("statistics")?.to_string(),
        state,
        created_by: text_of("created_by")?,
    };
    Ok((format!("{name}@{version}"), model))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An export read back is the same model, and a damaged or foreign file is refused with
    /// what is wrong.
    #[test]
    fn exports_round_trip_and_damage_is_refused() {
        let stored = StoredModel {
            name: "clv-eu".into(),
            version: 3,
            created_at: 1_780_000_000_000_000,
            model: mittari_store::testing::model(&[0, 1, 2, 254, 255]),
            aliases: vec!["production".into()],
        };
        let text = export(&stored).unwrap();
        let (original, model) = import(&text).unwrap();
        assert_eq!(original, "clv-eu@3");
        assert_eq!(model, stored.model);
        let damaged = text.replace("\"0001", "\"0002");
        assert!(
            import(&damaged)
                .unwrap_err()
                .to_string()
                .contains("the file is damaged")
        );
        let newer = text.replace("\"format_version\": 1", "\"format_version\": 2");
        assert!(
            import(&newer)
                .unwrap_err()
                .to_string()
                .contains("use a newer mittari")
        );
        assert!(import("{}").unwrap_err().to_string().contains("\"format\""));
    }
}
