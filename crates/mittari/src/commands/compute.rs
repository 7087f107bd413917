//! `mittari compute`: read an input, compute a metric here or on a server, print or write
//! the result.

use crate::*;

#[derive(Debug, clap::Args)]
pub(crate) struct ComputeCommand {
    /// The metric, e.g. nps.
    pub(crate) metric: String,
    #[command(flatten)]
    pub(crate) args: ComputeArgs,
}

/// What the command does with its input: compute the metric, fit a model to store, or score
/// with a stored one.
pub(crate) enum Purpose<'a> {
    Compute,
    /// Fit and store the model as the next version of `name`: in `store`, or with --server in
    /// the server's.
    Fit {
        store: Option<&'a dyn mittari_store::ModelStore>,
        name: &'a str,
    },
    /// Score with a stored model: `model` from the local store, or with --server the server's
    /// model `reference`.
    Score {
        reference: &'a str,
        model: Option<&'a mittari_store::StoredModel>,
    },
}

/// The input and how to compute over it: shared by `compute`, `model fit` and `model score`.
#[derive(Debug, clap::Args)]
pub(crate) struct ComputeArgs {
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
    /// A per-customer table (CSV, Parquet, Arrow or JSON Lines, one row per customer_id) to
    /// take the columns that parameters name from (clv's covariates), joined onto the
    /// input's rows by customer_id: e.g. --join customers.csv --param covariates=gender.
    #[arg(long, value_name = "FILE")]
    join: Option<PathBuf>,
    /// A table the metric reads beside the input (`mittari metrics NAME` lists them), from a
    /// CSV, Parquet, Arrow or JSON Lines file, e.g. --table-input
    /// covariates_over_time=weeks.csv; repeatable. Read with the input's date format and
    /// decimal separator.
    #[arg(long = "table-input", value_name = "NAME=FILE")]
    table_inputs: Vec<String>,
    /// Read a --table-input file's column SOURCE as that table's column NAME, e.g.
    /// --table-column covariates_over_time.period_start=week_start; repeatable.
    #[arg(long = "table-column", value_name = "TABLE.NAME=SOURCE")]
    table_columns: Vec<String>,
    /// Rows with an empty cell in a column the metric reads or groups by: `error` lets
    /// the metric refuse them, `skip` leaves them out and counts them in the result.
    #[arg(long, value_enum, default_value_t = OnMissing::Error)]
    on_missing: OnMissing,
}

impl ComputeArgs {
    /// Whether the command runs on a server (--server).
    pub(crate) fn is_remote(&self) -> bool {
        self.remote.server.is_some()
    }
}

/// Runs the command. `metric` is `None` only to score with a server's stored model, whose
/// metric the server says.
pub(crate) fn run(
    config: Option<&Path>,
    metric: Option<&str>,
    args: ComputeArgs,
    purpose: Purpose<'_>,
) -> anyhow::Result<ExitCode> {
    let ComputeArgs {
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
        join,
        table_inputs,
        table_columns,
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
    if !matches!(purpose, Purpose::Compute) && !group_by.is_empty() {
        bail!(
            "--group-by: a model is fitted to, and scores, the whole input; fit one model per segment under its own name"
        );
    }
    // A stored model's own parameters (JSON): the columns they name (its covariates) are read
    // from the input as the fit read them.
    let (metric, stored_parameters) = match (metric, &purpose) {
        (Some(metric), Purpose::Score { model, .. }) => {
            (metric.to_owned(), model.map(|m| m.model.parameters.clone()))
        }
        (Some(metric), _) => (metric.to_owned(), None),
        (None, Purpose::Score { reference, .. }) => {
            match rt.block_on(backend.model_remote(reference)) {
                Ok(model) => (model.metric, Some(model.parameters_json)),
                Err(status) => return Ok(report(&status, None)),
            }
        }
        (None, _) => bail!("no metric to compute"),
    };
    let metric = metric.as_str();
    let descriptor = match rt.block_on(backend.describe(metric)) {
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
    if let Some(stored) = stored_parameters {
        for named in stored_named_columns(&descriptor, &stored)? {
            if !options.named_columns.iter().any(|(_, c)| *c == named.1) {
                options.named_columns.push(named);
            }
        }
    }
    if join.is_some() && options.named_columns.is_empty() {
        bail!(
            "--join takes the columns that parameters name (such as clv's covariates) from another file, and no parameter names any"
        );
    }
    let tables = read_table_inputs(
        &descriptor,
        &params,
        &table_inputs,
        &table_columns,
        &options,
    )?;
    // Where the log is in a database or a data lake, its summary is computed there and
    // only one row per customer travels; per-group summaries are not pushed down.
    // Rows left out for empty cells are left out of the rows read, so a summary
    // computed at the source (which would count them) is not used then.
    // Nor are summaries that would need per-customer covariates beside them, or table
    // inputs (covariates over time are matched to each purchase).
    let pushdown = match (input.no_pushdown, input.pushdown) {
        (true, _) | (_, Pushdown::Never) => false,
        (false, Pushdown::Always) => true,
        // Measured (BENCHMARKS.md, Step 12): with no network between them, reading 5M rows
        // and summarizing them here takes a third of the time the database or DataFusion
        // takes for the summary.
        (false, Pushdown::Auto) => match &source {
            mittari_io::Source::Postgres { url, .. } => {
                let remote = !mittari_io::is_local_database(url);
                if !remote {
                    tracing::info!(
                        "reading the rows: the database is on this machine, where that is faster than summarizing there (--pushdown always summarizes in the database)"
                    );
                }
                remote
            }
            _ => {
                if input.pattern().is_some() {
                    tracing::info!(
                        "reading the rows: DataFusion runs in this process, where summarizing them here is faster (--pushdown always summarizes in DataFusion)"
                    );
                }
                false
            }
        },
    };
    // A summary stands for the log where the metric reads one for these parameters and
    // nothing needs the rows themselves (groups, skipped cells, covariates, table inputs);
    // `--join` takes covariates, so it needs the rows too.
    let summarizable = if !group_by.is_empty()
        || on_missing == OnMissing::Skip
        || !options.named_columns.is_empty()
        || !tables.is_empty()
    {
        None
    } else {
        mittari_io::RfmPeriods::of_request(&descriptor, |name| {
            params.get(name).and_then(convert::value_from_proto)
        })
        .map_err(|e| anyhow::anyhow!("--param {e}"))?
    };
    let periods = summarizable.filter(|_| pushdown);
    let lake = match input.pattern() {
        Some(pattern) => Some(rt.block_on(lake::Lake::open(pattern, input.lake_memory_limit()))?),
        None => None,
    };
    // The limit holds DataFusion's summary only: elsewhere it changes nothing, and says so.
    let lake_memory_unused = input
        .lake_memory_mib
        .filter(|_| periods.is_none() || lake.is_none());
    let summary = match (periods, &lake) {
        (None, _) => None,
        (Some(periods), Some(lake)) => {
            rt.block_on(lake.read_rfm_summary(&descriptor, &options, periods))?
        }
        (Some(periods), None) => {
            mittari_io::read_rfm_summary(&source, &descriptor, &options, periods)?
        }
    };
    // With --join the named columns come from the joined file, not the input.
    let mut main_options = options.clone();
    if join.is_some() {
        main_options.named_columns.clear();
    }
    // A log read here (not summarized at its source) whose summary can stand for it is
    // summarized as it is read, so its size is not bounded by memory (--in-chunks). A fit
    // keeps the log's first and last transaction with the model: it reads the log whole.
    let chunkable = match (&purpose, &summary, &lake) {
        (Purpose::Compute, None, None) => summarizable,
        _ => None,
    };
    // `--in-chunks never` changes nothing where the log would be read whole anyway.
    let in_chunks_unused = input.in_chunks == InChunks::Never && chunkable.is_none();
    let in_chunks = chunkable.filter(|_| input.in_chunks == InChunks::Auto);
    let mut log_rows = None;
    let table = match (summary, &lake, in_chunks) {
        (Some(summary), _, _) => {
            // The summary has applied them.
            params.remove("observation_end");
            params.remove("holdout_start");
            summary
        }
        (None, Some(lake), _) => rt.block_on(lake.read(&descriptor, &group_by, &main_options))?,
        (None, None, Some(periods)) => {
            let counters = Arc::new(mittari_io::ReadProgress::default());
            progress.counting(Arc::clone(&counters));
            let check =
                |chunk: &mittari_io::Chunk| check_log_part(&descriptor, &source_name, chunk);
            match mittari_io::summarize_in_chunks(
                &source,
                &descriptor,
                &main_options,
                periods,
                mittari_io::KEEP_BYTES,
                &counters,
                &check,
            )? {
                mittari_io::ChunkedRead::Summary { table, rows } => {
                    tracing::info!(input = %source_name, rows, customers = table.batch.num_rows(), "summarized the log as it was read");
                    params.remove("observation_end");
                    params.remove("holdout_start");
                    log_rows = Some(rows);
                    release_freed_memory();
                    table
                }
                mittari_io::ChunkedRead::Whole { table, why } => {
                    tracing::info!(input = %source_name, why, "read the input whole");
                    table
                }
                mittari_io::ChunkedRead::BadParameter { parameter, message } => {
                    drop(progress);
                    let violation = mittari_engine::Violation::new(
                        mittari_engine::Field::Parameter {
                            name: parameter.to_owned(),
                        },
                        message,
                    );
                    let error = mittari_engine::EngineError::InvalidArgument {
                        violations: vec![violation],
                    };
                    return Ok(report(&to_status(&ServiceError::Engine(error)), None));
                }
            }
        }
        (None, None, None) => mittari_io::read(source, &descriptor, &group_by, &main_options)?,
    };
    let table = match &join {
        Some(path) => join_columns(table, &source_name, path, &options.named_columns)?,
        None => table,
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
    let doing = match &purpose {
        Purpose::Compute => format!("computing {metric}"),
        Purpose::Fit { name, .. } => format!("fitting {name} ({metric})"),
        Purpose::Score { reference, .. } => format!("scoring with {reference}"),
    };
    progress.phase(&match &remote.server {
        Some(url) => format!("{doing} on {url}"),
        None => doing,
    });
    let (table_batches, table_origins): (Vec<_>, Vec<_>) = tables
        .into_iter()
        .map(|(name, file, read)| ((name.clone(), read.batch), (name, file, read.origins)))
        .unzip();
    let fit_params = describe_params(&params);
    let chunk_rows = chunk_rows as usize;
    let stored = |name: &str, version: u64, place: &str, bytes: u64| {
        eprintln!(
            "stored {name}@{version} in {place}: {metric} {fit_params} ({bytes} bytes of state); score with `mittari model score {name}@{version} --input FILE`"
        );
    };
    let result = match &purpose {
        Purpose::Fit { name, store: None } => rt
            .block_on(backend.fit_remote(name, metric, params, table.batch, chunk_rows))
            .map(|fitted| {
                if let Some(model) = &fitted.model {
                    let place = format!(
                        "the model store of {}",
                        remote.server.as_deref().unwrap_or("the server")
                    );
                    stored(name, model.version, &place, model.state_bytes);
                }
                fitted.results.unwrap_or_default()
            }),
        Purpose::Score {
            reference,
            model: None,
        } => rt.block_on(backend.score_remote(reference, params, table.batch, chunk_rows)),
        _ => {
            let mode = match &purpose {
                Purpose::Score {
                    model: Some(model), ..
                } => Mode::Score(Arc::new(mittari_server::stored_fit(model)?)),
                Purpose::Fit { .. } => Mode::Fit,
                _ => Mode::Compute,
            };
            match rt.block_on(backend.run(
                metric,
                params,
                table.batch,
                table_batches,
                group_by,
                chunk_rows,
                mode,
            )) {
                Ok((response, fitted)) => {
                    if let (
                        Purpose::Fit {
                            store: Some(store),
                            name,
                        },
                        Some(fitted),
                    ) = (&purpose, fitted)
                    {
                        let model =
                            mittari_server::new_model(metric, &response, fitted, local_user())?;
                        let version = store.put(name, &model)?;
                        stored(name, version, &store.describe(), model.state.len() as u64);
                    }
                    Ok(response)
                }
                Err(status) => Err(status),
            }
        }
    };
    let response = match result {
        Ok(response) => response,
        Err(status) => {
            drop(progress);
            // The file's own columns, for a column the metric found missing: read
            // again only now, from the header or schema.
            let file_columns = match input.source() {
                Ok(mittari_io::Source::Path(path)) => mittari_io::column_names(path, &options).ok(),
                _ => None,
            };
            return Ok(report_with_tables(
                &status,
                Some((&source_name, &table.origins, file_columns.as_deref())),
                &table_origins,
            ));
        }
    };
    let mut response = response;
    // The metric saw one summary row per customer; the input was the log's rows.
    if let Some(rows) = log_rows {
        response.rows = rows;
    }
    if let Some(skipped) = skipped.filter(|s| s.rows > 0) {
        add_warning(&mut response, rows_skipped_warning(&source_name, &skipped));
    }
    if let Some(mib) = lake_memory_unused {
        add_warning(
            &mut response,
            pb::Warning {
                code: "lake_memory_unused".to_owned(),
                message: format!(
                    "--lake-memory-mib {mib} changed nothing: it limits DataFusion's summary of a Parquet pattern, and this input was read as rows"
                ),
            },
        );
    }
    if in_chunks_unused {
        add_warning(
            &mut response,
            pb::Warning {
                code: "in_chunks_unused".to_owned(),
                message: "--in-chunks never changed nothing: a log is summarized as it is read only for a metric that reads its summary (clv's bgnbd, mbgnbd, pareto_nbd) and without --group-by, --on-missing skip, covariates, --join or --table-input; this input was read whole anyway".to_owned(),
            },
        );
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

/// The checks the metric makes of a log's cells, made of each part of a log summarized as it
/// is read (the metric sees only the summary): no empty cell in the log's columns, and each
/// column's type, finite numbers, timestamps and range as its descriptor declares them.
fn check_log_part(
    descriptor: &MetricDescriptor,
    source_name: &str,
    chunk: &mittari_io::Chunk,
) -> Result<(), mittari_io::ReadError> {
    use arrow_array::Array as _;
    for column in mittari_io::LOG_COLUMNS {
        if let Some(values) = chunk.batch.column_by_name(column)
            && values.null_count() > 0
            && let Some(row) = (0..values.len()).find(|&row| values.is_null(row))
        {
            return Err(mittari_io::ReadError::cell(
                source_name,
                chunk.location(row),
                column,
                format!("{column} is empty; give every row a value"),
            ));
        }
    }
    let rows_before = chunk.first_row.saturating_sub(1);
    let violations = mittari_engine::check_part(
        descriptor,
        &chunk.batch,
        &mittari_io::LOG_COLUMNS,
        rows_before,
    );
    match violations.into_iter().next() {
        None => Ok(()),
        Some(violation) => {
            let (column, row) = match &violation.field {
                mittari_engine::Field::Column { name, row } => (name.clone(), *row),
                _ => (String::new(), None),
            };
            let at = chunk.location(row.map_or(0, |row| row.saturating_sub(rows_before) as usize));
            Err(mittari_io::ReadError::cell(
                source_name,
                at,
                &column,
                violation.description,
            ))
        }
    }
}

/// Gives the memory freed so far back to the system. The running summaries of a large log
/// (gigabytes, in many allocations) are freed once the summary is built, and glibc keeps such
/// memory for later allocations of the same sizes; the metric's large columns are mapped
/// afresh instead, so without this the process would hold both at its peak.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of glibc's heaps to the system; it reads or
    // writes no memory of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Who runs the CLI, as the store records a local fit's author.
fn local_user() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("local:{user}")
}

/// The request's parameters for a line of text, `(model="pareto_nbd", …)`, or "(defaults)".
fn describe_params(params: &HashMap<String, pb::Value>) -> String {
    let mut named: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| Some(format!("{k}={}", convert::value_from_proto(v)?)))
        .collect();
    named.sort();
    if named.is_empty() {
        "(defaults)".to_owned()
    } else {
        format!("({})", named.join(", "))
    }
}

/// Reads the `--table-input NAME=FILE` tables, each typed by the descriptor's table input of
/// that name and carrying the columns parameters name in it: (name, file, table).
fn read_table_inputs(
    descriptor: &MetricDescriptor,
    params: &HashMap<String, pb::Value>,
    table_inputs: &[String],
    table_columns: &[String],
    main: &mittari_io::ReadOptions,
) -> anyhow::Result<Vec<(String, String, mittari_io::Table)>> {
    let declared = || {
        let names: Vec<&str> = descriptor
            .table_inputs
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        if names.is_empty() {
            format!("metric {} reads no table inputs", descriptor.name)
        } else {
            format!("metric {} reads: {}", descriptor.name, names.join(", "))
        }
    };
    let (files, mappings) = parse_table_inputs(table_inputs, table_columns)?;
    let mut tables: Vec<(String, String, mittari_io::Table)> = Vec::new();
    for (name, file) in &files {
        let name = name.as_str();
        if descriptor.table_input_spec(name).is_none() {
            bail!("--table-input {name}: unknown table input; {}", declared());
        }
        let texts: Vec<(String, String)> = params
            .iter()
            .filter_map(|(k, v)| match &v.kind {
                Some(pb::value::Kind::StringValue(s)) => Some((k.clone(), s.clone())),
                _ => None,
            })
            .collect();
        let path = Path::new(file.as_str());
        let read = mittari_io::read_table_input(
            path,
            descriptor,
            name,
            texts.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            main,
            mappings
                .iter()
                .filter(|(table, _)| table == name)
                .map(|(_, mapping)| mapping.clone())
                .collect(),
        )
        .with_context(|| format!("--table-input {name}"))?
        .ok_or_else(|| anyhow::anyhow!("--table-input {name}: unknown table input"))?;
        tables.push((name.to_owned(), path.display().to_string(), read));
    }
    Ok(tables)
}

/// The input with the `named` columns of the per-customer table at `path` joined onto its
/// rows by customer_id. A customer twice in that table, or a customer of the input missing
/// from it, is an error naming the line.
fn join_columns(
    table: mittari_io::Table,
    input_name: &str,
    path: &Path,
    named: &[(String, String)],
) -> anyhow::Result<mittari_io::Table> {
    use mittari_sdk::arrow_array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array};
    let join_name = path.display().to_string();
    let Some(ids) = table
        .batch
        .column_by_name("customer_id")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
    else {
        bail!("--join {join_name}: the input has no customer_id column to join on");
    };
    let key = mittari_sdk::MetricDescriptor::new("join", "0", "a per-customer table").input(
        mittari_sdk::ColumnSpec::string("customer_id", "the customer the row describes").required(),
    );
    let options = mittari_io::ReadOptions {
        named_columns: named.to_vec(),
        ..mittari_io::ReadOptions::default()
    };
    let customers = mittari_io::read(mittari_io::Source::Path(path), &key, &[], &options)?;
    let Some(customer_ids) = customers
        .batch
        .column_by_name("customer_id")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
    else {
        bail!("--join {join_name}: its customer_id column is not text");
    };
    let at = |origins: &mittari_io::Origins, row: usize| {
        origins
            .of(row)
            .map_or_else(|| format!("row {}", row + 1), |at| at.to_string())
    };
    let mut row_of: HashMap<&str, u32> = HashMap::with_capacity(customer_ids.len());
    for row in 0..customer_ids.len() {
        let id = customer_ids.value(row);
        if let Some(first) = row_of.insert(id, row as u32) {
            bail!(
                "--join {join_name}: customer {id:?} appears twice, at {} and {}; give one row per customer",
                at(&customers.origins, first as usize),
                at(&customers.origins, row)
            );
        }
    }
    let mut indices = Vec::with_capacity(ids.len());
    for row in 0..ids.len() {
        if ids.is_null(row) {
            indices.push(None);
            continue;
        }
        match row_of.get(ids.value(row)) {
            Some(&at) => indices.push(Some(at)),
            None => bail!(
                "{input_name} ({}): customer {:?} is not in --join {join_name}; every customer of the input needs a row there",
                at(&table.origins, row),
                ids.value(row)
            ),
        }
    }
    let indices = UInt32Array::from(indices);
    let schema = table.batch.schema();
    let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
    let mut columns: Vec<ArrayRef> = table.batch.columns().to_vec();
    for (_, name) in named {
        let Some(column) = customers.batch.column_by_name(name) else {
            continue;
        };
        let taken = arrow_select::take::take(column.as_ref(), &indices, None)?;
        let field = std::sync::Arc::new(mittari_sdk::arrow_schema::Field::new(
            name,
            taken.data_type().clone(),
            true,
        ));
        match fields.iter().position(|f| f.name() == name) {
            Some(at) => {
                fields[at] = field;
                columns[at] = taken;
            }
            None => {
                fields.push(field);
                columns.push(taken);
            }
        }
    }
    let batch = RecordBatch::try_new(
        std::sync::Arc::new(mittari_sdk::arrow_schema::Schema::new(fields)),
        columns,
    )?;
    Ok(mittari_io::Table {
        batch,
        origins: table.origins,
    })
}

/// (parameter, column) for every column a stored model's parameters (`parameters_json`) name.
fn stored_named_columns(
    descriptor: &MetricDescriptor,
    parameters_json: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let parameters: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_str(parameters_json)
            .context("the stored model's parameters are not a JSON object")?;
    // Each value as the store writes it: {"string": "…"}, {"double": …}…
    Ok(
        descriptor.columns_named_by(parameters.iter().filter_map(|(parameter, value)| {
            let value = value.get("string").and_then(serde_json::Value::as_str)?;
            Some((parameter.as_str(), value))
        })),
    )
}
