//! `mittari metrics [NAME]`: the metrics a build or a server provides, or one described.

use crate::*;

#[derive(Debug, clap::Args)]
pub(crate) struct MetricsArgs {
    /// The metric to describe.
    name: Option<String>,
    /// Ask a server (--server URL) instead of loading the plugins here.
    #[command(flatten)]
    remote: ServerArgs,
    /// Output format (table or json).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub(crate) fn run(config: Option<&Path>, args: MetricsArgs) -> anyhow::Result<ExitCode> {
    let MetricsArgs {
        name,
        remote,
        format,
    } = args;
    let rt = runtime()?;
    // A lazily connecting channel needs the runtime's reactor when it is made.
    let _runtime = rt.enter();
    if format == Format::Csv {
        bail!("--format csv is not available for metrics; use table or json");
    }
    let mut backend = Backend::new(config, &remote)?;
    let text = match name {
        None => {
            let list = rt.block_on(backend.list())?;
            if format == Format::Json {
                render::metric_list_json(&list)
            } else {
                render::metric_list(&list)
            }
        }
        Some(name) => match rt.block_on(backend.describe(&name)) {
            Ok(d) => {
                let descriptor = convert::descriptor_from_proto(&d);
                if format == Format::Json {
                    render::descriptor_json(&descriptor, &d.library)
                } else {
                    render::descriptor_text(&descriptor, &d.library)
                }
            }
            Err(status) => return Ok(report(&status, None)),
        },
    };
    print(&text)
}
