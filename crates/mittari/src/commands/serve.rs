//! `mittari serve`: the gRPC server, until SIGTERM or Ctrl-C.

use crate::*;

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on, HOST:PORT (port 0 picks a free port; the log says which).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<SocketAddr>,
}

pub(crate) fn run(config: Option<&Path>, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let ServeArgs { listen } = args;
    mittari_server::return_freed_memory();
    let overrides = Overrides { listen };
    let settings = Settings::load(config, &overrides)?;
    // Loading runs plugin initializers: done before the runtime starts, never on it.
    let engine = Engine::load(&settings.engine_config()?)?;
    let runtime = runtime()?;
    let served = runtime.block_on(serve(settings, overrides, engine));
    // The grace period is over: requests still running were cancelled when the server
    // dropped them, but a computation that does not poll its flag (an ABI version-1
    // plugin) would keep a plain runtime drop waiting for it. The process ends now.
    runtime.shutdown_timeout(SHUTDOWN_LEFTOVER_WAIT);
    served?;
    Ok(ExitCode::SUCCESS)
}
