//! `mittari compute`: read an input, compute a metric here or on a server, print or write
//! the result.

use crate::*;

#[derive(Debug, clap::Args)]
pub(crate) struct ComputeArgs {
    /// The metric, e.g. nps.
    metric: String,
    #[command(flatten)]
    input: Box<InputArgs>,
    /// A parameter, repeatable, e.g. --param confidence=0.9.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Compute per group of this column, repeatable.
    #[arg(long = "group-by", value_name = "COLUMN")]
    group_by: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Compute on a server (--server URL) instead of in this process.
    #[command(flatten)]
    remote: ServerArgs,
    /// With --server: inputs with more rows go through ComputeStream in chunks of this size.
    #[arg(long, value_name = "ROWS", default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    chunk_rows: u64,
    /// Also write a result table, every row, to FILE.csv or FILE.parquet (e.g. clv's
    /// customers). A `top` parameter then limits only the rows printed.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The result table --output writes; default: the metric's first.
    #[arg(long, value_name = "NAME", requires = "output")]
    output_table: Option<String>,
    /// Print grouped tables at full width; by default a table wider than the terminal
    /// is split into panels that fit, each repeating the group columns.
    #[arg(long)]
    wide: bool,
    /// Rows with an empty cell in a column the metric reads or groups by: `error` lets
    /// the metric refuse them, `skip` leaves them out and counts them in the result.
    #[arg(long, value_enum, default_value_t = OnMissing::Error)]
    on_missing: OnMissing,
}

pub(crate) fn run(config: Option<&Path>, args: ComputeArgs) -> anyhow::Result<ExitCode> {
    let ComputeArgs {
        metric,
        input,
        params,
        group_by,
        format,
        remote,
        chunk_rows,
        output,
        output_table,
        wide,
        on_missing,
    } = args;
    if let Some(path) = &output {
        output::check_path(path)?;
        if same_file(path, &input.input) {
            bail!(
                "--output {} is the input file; writing results there would destroy the data: choose another file",
                path.display()
            );
        }
    }
    let rt = runtime()?;
    // A lazily connecting channel needs the runtime's reactor when it is made.
    let _runtime = rt.enter();
    let mut backend = Backend::new(config, &remote)?;
    let descriptor = match rt.block_on(backend.describe(&metric)) {
        Ok(d) => convert::descriptor_from_proto(&d),
        Err(status) => return Ok(report(&status, None)),
    };
    let mut params = parse_params(&params, &descriptor)?;
    // --output writes every row, so `top` stops limiting the result and limits the
    // printed table instead.
    let printed_rows = match output {
        Some(_) => take_top(&mut params),
        None => None,
    };
    let source = input.source()?;
    let source_name = source.name();
    let progress = progress::Progress::start(
        std::io::stderr().is_terminal() && format != Format::Json,
        &format!("reading {source_name}"),
    );
    let mut options = input.options();
    options.named_columns = named_columns(&descriptor, &params);
    // Where the log is in a database or a data lake, its summary is computed there and
    // only one row per customer travels; per-group summaries are not pushed down.
    // Rows left out for empty cells are left out of the rows read, so a summary
    // computed at the source (which would count them) is not used then.
    // Nor are summaries that would need per-customer covariates beside them.
    let periods = if input.no_pushdown
        || !group_by.is_empty()
        || on_missing == OnMissing::Skip
        || !options.named_columns.is_empty()
    {
        None
    } else {
        mittari_io::RfmPeriods::of_request(&descriptor, |name| {
            params.get(name).and_then(convert::value_from_proto)
        })
        .map_err(|e| anyhow::anyhow!("--param {e}"))?
    };
    let lake = match input.pattern() {
        Some(pattern) => Some(rt.block_on(lake::Lake::open(pattern))?),
        None => None,
    };
    let summary = match (periods, &lake) {
        (None, _) => None,
        (Some(periods), Some(lake)) => {
            rt.block_on(lake.read_rfm_summary(&descriptor, &options, periods))?
        }
        (Some(periods), None) => {
            mittari_io::read_rfm_summary(&source, &descriptor, &options, periods)?
        }
    };
    let table = match (summary, &lake) {
        (Some(summary), _) => {
            // The summary has applied them.
            params.remove("observation_end");
            params.remove("holdout_start");
            summary
        }
        (None, Some(lake)) => rt.block_on(lake.read(&descriptor, &group_by, &options))?,
        (None, None) => mittari_io::read(source, &descriptor, &group_by, &options)?,
    };
    let (table, skipped) = match on_missing {
        OnMissing::Error => (table, None),
        OnMissing::Skip => {
            let read: Vec<String> = descriptor
                .inputs
                .iter()
                .map(|c| c.name.clone())
                .chain(group_by.iter().cloned())
                .chain(options.named_columns.iter().map(|(_, c)| c.clone()))
                .collect();
            let (table, skipped) = table.without_empty_cells(&source_name, &read)?;
            (table, Some(skipped))
        }
    };
    progress.phase(&match &remote.server {
        Some(url) => format!("computing {metric} on {url}"),
        None => format!("computing {metric}"),
    });
    let response = match rt.block_on(backend.compute(
        &metric,
        params,
        table.batch,
        group_by,
        chunk_rows as usize,
    )) {
        Ok(response) => response,
        Err(status) => {
            drop(progress);
            // The file's own columns, for a column the metric found missing: read
            // again only now, from the header or schema.
            let file_columns = match input.source() {
                Ok(mittari_io::Source::Path(path)) => mittari_io::column_names(path, &options).ok(),
                _ => None,
            };
            return Ok(report(
                &status,
                Some((&source_name, &table.origins, file_columns.as_deref())),
            ));
        }
    };
    let mut response = response;
    if let Some(skipped) = skipped.filter(|s| s.rows > 0) {
        add_warning(&mut response, rows_skipped_warning(&source_name, &skipped));
    }
    let mut written = None;
    if let Some(path) = &output {
        progress.phase(&format!("writing {}", path.display()));
        let (table, rows) = output::write(&response, output_table.as_deref(), path)?;
        drop(progress);
        eprintln!("wrote {rows} rows of {table} to {}", path.display());
        written = Some(table);
    } else {
        drop(progress);
    }
    let limit = written.as_deref().zip(printed_rows);
    match format {
        Format::Table => print(&render::table(
            &response,
            limit,
            (!wide).then(terminal_width).flatten(),
        )),
        Format::Json => print_with(|out| render::write_json(&response, out)),
        Format::Csv => print(&render::csv(&response)),
    }
}
