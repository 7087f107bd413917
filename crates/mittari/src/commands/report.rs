//! `mittari report`: one HTML page of the metrics an input allows.

use crate::*;

#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {
    #[command(flatten)]
    input: Box<ReportInputArgs>,
    /// A parameter, repeatable, e.g. --param holdout_start=2024-07-01; it goes to every
    /// reported metric that takes it.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Break NPS, CSAT and retention down by this column, repeatable; default: every
    /// column with 2 to 20 distinct values that the metric does not read.
    #[arg(long = "group-by", value_name = "COLUMN")]
    group_by: Vec<String>,
    /// Report only this metric, repeatable; default: every metric the columns allow.
    #[arg(long = "metric", value_name = "METRIC")]
    metrics: Vec<String>,
    /// The HTML file to write.
    #[arg(long, value_name = "FILE.html")]
    output: PathBuf,
    /// Also write each chart as DIR/NAME.svg, for slides.
    #[arg(long, value_name = "DIR")]
    charts: Option<PathBuf>,
    /// Compute on a server (--server URL) instead of in this process.
    #[command(flatten)]
    remote: ServerArgs,
    /// A table a metric reads beside the input (clv's covariates_over_time with
    /// --param dynamic_covariates=…), e.g. --table-input covariates_over_time=weeks.csv;
    /// repeatable.
    #[arg(long = "table-input", value_name = "NAME=FILE")]
    table_inputs: Vec<String>,
    /// Read a --table-input file's column SOURCE as that table's column NAME, e.g.
    /// --table-column covariates_over_time.period_start=week_start; repeatable.
    #[arg(long = "table-column", value_name = "TABLE.NAME=SOURCE")]
    table_columns: Vec<String>,
    /// Score the input with this stored model (NAME@VERSION, NAME@ALIAS or NAME) instead of
    /// fitting its metric's model to it: the report of new customers under a model fitted
    /// before. With --server, the server's model.
    #[arg(long, value_name = "REF")]
    model: Option<String>,
    /// The model store --model reads (without --server): sqlite:///PATH or postgres://…;
    /// default: models.store in the configuration.
    #[arg(long, value_name = "URL", requires = "model")]
    store: Option<String>,
}

pub(crate) fn run(config: Option<&Path>, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let ReportArgs {
        input,
        params,
        group_by,
        metrics,
        output,
        charts,
        remote,
        table_inputs,
        table_columns,
        model,
        store,
    } = args;
    let (tables, table_columns) = parse_table_inputs(&table_inputs, &table_columns)?;
    let path = input.input.as_path();
    let text = path.to_string_lossy();
    if text == "-" || mittari_io::is_postgres_url(&text) || mittari_io::is_pattern(&text) {
        bail!(
            "--input {}: mittari report reads one file (CSV, Parquet, Arrow IPC or JSON \
                 Lines), once per metric; save standard input, a database query's rows or \
                 a pattern's files to one file first",
            mittari_io::redact_url(&text)
        );
    }
    if same_file(&output, path) {
        bail!(
            "--output {} is the input file; writing the report there would destroy the \
                 data: choose another file",
            output.display()
        );
    }
    let params = key_values(&params)?;
    let request = mittari_report::Request {
        input: path.to_owned(),
        options: input.reading.options(),
        params,
        group_by,
        metrics,
        tables: tables
            .into_iter()
            .map(|(name, file)| (name, PathBuf::from(file)))
            .collect(),
        table_columns,
        model: None,
    };
    let mut request = request;
    let report = if remote.server.is_some() {
        let runtime = runtime()?;
        // A lazily connecting channel needs the runtime's reactor when it is made.
        let mut backend = {
            let _runtime = runtime.enter();
            Backend::new(config, &remote)?
        };
        if let Some(reference) = &model {
            let info = runtime
                .block_on(backend.model_remote(reference))
                .map_err(|status| anyhow::anyhow!("--model {reference}: {}", status.message()))?;
            let params = serde_json::from_str(&info.parameters_json).with_context(|| {
                format!("--model {reference}: the server's model has unreadable parameters")
            })?;
            // Every section scores with the version the reference names now.
            request.model = Some(mittari_report::ScoringModel {
                metric: info.metric,
                fit: Arc::new(StoredFit {
                    reference: format!("{}@{}", info.name, info.version),
                    state: Vec::new(),
                    params,
                }),
            });
        }
        let remote = RemoteReport {
            runtime,
            backend: std::cell::RefCell::new(backend),
        };
        mittari_report::build(&remote, &request)?
    } else {
        let settings = Settings::load(config, &Overrides::default())?;
        if let Some(reference) = &model {
            let url = store.unwrap_or_else(|| settings.model_store());
            let stored = mittari_store::open(&url)?
                .get(&reference.parse()?)
                .with_context(|| format!("--model {reference}"))?;
            request.model = Some(mittari_report::ScoringModel {
                metric: stored.model.metric.clone(),
                fit: Arc::new(mittari_server::stored_fit(&stored)?),
            });
        }
        let engine = Engine::load(&settings.engine_config()?)?;
        mittari_report::build(&engine, &request)?
    };
    let written = mittari_report::write(&report, &output, charts.as_deref())?;
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    eprintln!(
        "wrote {} ({}, {}){}",
        output.display(),
        plural(report.sections.len(), "section", "sections"),
        plural(report.charts().count(), "chart", "charts"),
        match &charts {
            Some(dir) => format!("; {written} charts as SVG in {}", dir.display()),
            None => String::new(),
        }
    );
    for (metric, reason) in &report.not_computed {
        eprintln!("not computed: {metric}: {reason}");
    }
    Ok(ExitCode::SUCCESS)
}
