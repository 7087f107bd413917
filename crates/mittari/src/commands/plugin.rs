//! `mittari plugin new|check`: the plugin author's kit.

use crate::*;

#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Write a plugin crate for metric NAME: a working metric with one input, one parameter
    /// and one output, unit tests, and a README with the commands to build, check and install
    /// it. It builds, passes its tests and loads in a server with no edit.
    New {
        /// The metric's name, lowercase snake_case (e.g. repeat_rate).
        name: String,
        /// Where to write the crate (default: ./mittari-plugin-NAME).
        #[arg(long, value_name = "DIR")]
        path: Option<PathBuf>,
        /// A Mittari checkout's crates/sdk to depend on (default: the one this mittari was
        /// built from, if it is still there; else the SDK's version on crates.io).
        #[arg(long, value_name = "DIR")]
        sdk: Option<PathBuf>,
    },
    /// Load a plugin library in a child process and send its metrics what a server's clients
    /// may send: no rows, one row, null optional columns, one key repeated, 1 000 000 rows
    /// (timed, twice for determinism) and seeded extreme requests. Reports the ABI version,
    /// descriptor problems and every request answered with a panic, an abort, NaN, an
    /// undeclared output or a wrong row index; exits non-zero on any.
    Check {
        /// The plugin library (.so, .dylib or .dll).
        library: PathBuf,
        /// Seed of the generated extreme requests; a failure names its seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Generated extreme requests per metric.
        #[arg(long, value_name = "COUNT", default_value_t = 200)]
        generated: usize,
        /// Rows of the two large requests.
        #[arg(long, value_name = "ROWS", default_value_t = 1_000_000)]
        large_rows: usize,
        /// Seconds one request may take before the plugin is reported as hanging.
        #[arg(long, value_name = "SECONDS", default_value_t = 120)]
        timeout: u64,
        /// Data a fittable metric can fit (CSV, Parquet, Arrow or JSON Lines): fitted, stored
        /// and scored again with each allowed value of the parameters a fit fixes.
        #[arg(long, value_name = "FILE")]
        fit_input: Option<PathBuf>,
        /// Run as the checking child process from this task on (used by the check itself).
        #[arg(long, hide = true, value_name = "INDEX")]
        worker_from: Option<usize>,
    },
}

pub(crate) fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::New { name, path, sdk } => {
            let dir = path.unwrap_or_else(|| PathBuf::from(mittari_kit::crate_name(&name)));
            let (sdk, lockfile) = match sdk {
                Some(sdk) => mittari_kit::sdk_in_checkout(&sdk)
                    .with_context(|| format!("--sdk {}", sdk.display()))?,
                None => mittari_kit::sdk_of_this_build(),
            };
            mittari_kit::new_plugin(&name, &dir, &sdk, lockfile.as_deref())?;
            print(&format!(
                "wrote the plugin crate for metric {name} to {}; see its README.md to build, check and install it\n",
                dir.display()
            ))
        }
        PluginCommand::Check {
            library,
            seed,
            generated,
            large_rows,
            timeout,
            fit_input,
            worker_from,
        } => {
            let options = mittari_kit::CheckOptions {
                seed,
                generated,
                large_rows,
                timeout: std::time::Duration::from_secs(timeout),
                fit_input: fit_input.clone(),
            };
            if let Some(from) = worker_from {
                mittari_kit::run_worker(&library, &options, from, &mut std::io::stdout().lock())?;
                return Ok(ExitCode::SUCCESS);
            }
            let exe = std::env::current_exe().context("cannot find the mittari executable")?;
            let worker = || {
                let mut command = std::process::Command::new(&exe);
                command
                    .args(["plugin", "check"])
                    .arg(&library)
                    .args(["--seed", &seed.to_string()])
                    .args(["--generated", &generated.to_string()])
                    .args(["--large-rows", &large_rows.to_string()])
                    .args(["--timeout", &timeout.to_string()]);
                if let Some(path) = &fit_input {
                    command.arg("--fit-input").arg(path);
                }
                command
            };
            let summary = mittari_kit::check_library(
                &library,
                &options,
                &worker,
                &mut std::io::stdout().lock(),
            )
            .with_context(|| format!("cannot check {}", library.display()))?;
            Ok(if summary.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
