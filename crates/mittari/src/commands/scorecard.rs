//! `mittari scorecard`: the monthly CX page for a management team, from the files each part
//! reads (survey answers, CSAT answers, contacts, purchases, order lines).

use crate::*;

#[derive(Debug, clap::Args)]
pub(crate) struct ScorecardArgs {
    /// Survey answers: score (0-10, likelihood to recommend), timestamp, and rating_* columns
    /// for what drives it.
    #[arg(long, value_name = "FILE")]
    survey: Option<PathBuf>,
    /// CSAT answers: score on the CSAT scale and timestamp.
    #[arg(long, value_name = "FILE")]
    csat: Option<PathBuf>,
    /// The contact log (customer_id, opened_at, first_response_at, resolved_at).
    #[arg(long, value_name = "FILE")]
    contacts: Option<PathBuf>,
    /// The purchase log (customer_id, timestamp, amount), for customers and revenue lost.
    #[arg(long, value_name = "FILE")]
    purchases: Option<PathBuf>,
    /// Order lines (timestamp, quantity, target_price, realized_price), for what discounts cost.
    #[arg(long = "order-lines", value_name = "FILE")]
    order_lines: Option<PathBuf>,
    /// The month, e.g. 2024-12; default: the survey's (or contact log's) latest.
    #[arg(long, value_name = "YYYY-MM")]
    month: Option<String>,
    /// A parameter, repeatable, e.g. --param response_sla_hours=8; it goes to every part's
    /// metric that takes it.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// The HTML file to write.
    #[arg(long, value_name = "FILE.html")]
    output: PathBuf,
    /// Compute on a server (--server URL) instead of in this process.
    #[command(flatten)]
    remote: ServerArgs,
    #[command(flatten)]
    reading: ReadingArgs,
}

pub(crate) fn run(config: Option<&Path>, args: ScorecardArgs) -> anyhow::Result<ExitCode> {
    let ScorecardArgs {
        survey,
        csat,
        contacts,
        purchases,
        order_lines,
        month,
        params,
        output,
        remote,
        reading,
    } = args;
    let inputs = [&survey, &csat, &contacts, &purchases, &order_lines];
    if inputs.iter().all(|i| i.is_none()) {
        bail!("give at least one file: --survey, --csat, --contacts, --purchases or --order-lines");
    }
    for input in inputs.into_iter().flatten() {
        if same_file(&output, input) {
            bail!(
                "--output {} is an input file; writing the scorecard there would destroy the data: choose another file",
                output.display()
            );
        }
    }
    let valid = |month: &str| {
        month.split_once('-').is_some_and(|(year, m)| {
            year.len() == 4
                && year.parse::<u16>().is_ok()
                && m.parse::<u8>().is_ok_and(|m| (1..=12).contains(&m))
                && m.len() == 2
        })
    };
    if let Some(month) = &month
        && !valid(month)
    {
        bail!("--month {month:?}: write the month as YYYY-MM, e.g. 2024-12");
    }
    let params = key_values(&params)?;
    let request = mittari_report::ScorecardRequest {
        survey,
        csat,
        contacts,
        purchases,
        order_lines,
        month,
        options: reading.options(),
        params,
    };
    let report = if remote.server.is_some() {
        let runtime = runtime()?;
        let backend = {
            let _runtime = runtime.enter();
            Backend::new(config, &remote)?
        };
        let remote = RemoteReport {
            runtime,
            backend: std::cell::RefCell::new(backend),
        };
        mittari_report::scorecard(&remote, &request)?
    } else {
        let settings = Settings::load(config, &Overrides::default())?;
        let engine = Engine::load(&settings.engine_config()?)?;
        mittari_report::scorecard(&engine, &request)?
    };
    mittari_report::write(&report, &output, None)?;
    eprintln!(
        "wrote {} ({} parts)",
        output.display(),
        report.sections.len().saturating_sub(1)
    );
    for (part, reason) in &report.not_computed {
        eprintln!("not computed: {part}: {reason}");
    }
    Ok(ExitCode::SUCCESS)
}
