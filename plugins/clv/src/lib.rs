//! Customer lifetime value, from a transaction log or a summary of one.
//!
//! Descriptive models (`descriptive.rs`): `historic` (margin earned so far), `simple` (average
//! order value × purchases per year × margin × lifespan) and `retention` (m × r / (1 + d − r),
//! Gupta & Lehmann 2003). Predictive models (`predictive.rs`): `bgnbd` (Fader, Hardie & Lee
//! 2005), `mbgnbd` (Batislam et al. 2007) and `pareto_nbd` (Schmittlein et al. 1987) for
//! purchases in continuous time, with `spend_model=gamma_gamma` for their value; and
//! (`discrete.rs`) `bgbb` (Fader, Hardie & Shang 2010) for discrete opportunities.
#![forbid(unsafe_code)]

mod auto;
mod bootstrap;
mod covariates;
mod descriptive;
mod discrete;
mod dynamic;
mod fitted;
mod intervals;
mod predictive;

use mittari_sdk::arrow_array::{Float64Array, StringArray, TimestampMicrosecondArray};
use mittari_sdk::prelude::*;

struct Clv;

/// The transaction-log columns, checked present and without empty cells.
pub(crate) struct Transactions<'a> {
    pub(crate) customer: &'a StringArray,
    pub(crate) timestamp: &'a TimestampMicrosecondArray,
    pub(crate) amount: &'a Float64Array,
}

pub(crate) fn transactions<'a>(
    input: &Input<'a>,
    model: &str,
) -> Result<Transactions<'a>, MetricError> {
    let missing: Vec<&str> = ["customer_id", "timestamp", "amount"]
        .into_iter()
        .filter(|c| !input.has_column(c))
        .collect();
    if let Some(first) = missing.first() {
        // Named as the column at fault, so a client can say which of its columns to map.
        return Err(MetricError::invalid_column(
            first,
            format!(
                "model {model} needs a transaction log with columns customer_id, timestamp and amount; missing: {}",
                missing.join(", ")
            ),
        ));
    }
    let columns = Transactions {
        customer: input.string("customer_id")?,
        timestamp: input.timestamp("timestamp")?,
        amount: input.double("amount")?,
    };
    no_empty_cells(input, &["customer_id", "timestamp", "amount"])?;
    Ok(columns)
}

/// Fails on the first empty cell of the named columns, naming the row.
pub(crate) fn no_empty_cells(input: &Input<'_>, columns: &[&str]) -> Result<(), MetricError> {
    use mittari_sdk::arrow_array::Array as _;
    for &name in columns {
        if let Some(column) = input.batch().column_by_name(name)
            && let Some(row) = (0..column.len()).find(|&i| column.is_null(i))
        {
            return Err(MetricError::invalid_value(
                name,
                row,
                format!("{name} is empty; give every row a value"),
            ));
        }
    }
    Ok(())
}

impl Metric for Clv {
    fn descriptor(&self) -> MetricDescriptor {
        MetricDescriptor::new("clv", env!("CARGO_PKG_VERSION"), "customer lifetime value: historic, simple, retention, or the BG/NBD, MBG/NBD, Pareto/NBD and BG/BB models")
            .expensive()
            .fitted(fitted::MODEL_PARAMETERS, fitted::DESCRIPTION)
            .reads_rfm_summary("model", &["bgnbd", "mbgnbd", "pareto_nbd"])
            .description(DESCRIPTION)
            .input(ColumnSpec::string("customer_id", "the buying customer (transaction log; optional label for a summary)"))
            .input(ColumnSpec::timestamp("timestamp", "when the transaction happened (transaction log)"))
            .input(ColumnSpec::quantity("amount", "transaction value, net of returns (transaction log)"))
            .input(ColumnSpec::double("margin", "gross margin of the transaction as a fraction of amount").range(0.0, 1.0))
            .input(ColumnSpec::quantity("frequency", "repeat purchases (summary)"))
            .input(ColumnSpec::quantity("recency", "time from the first to the last purchase, in time units (summary)"))
            .input(ColumnSpec::quantity("T", "time from the first purchase to the end of observation, in time units (summary)"))
            .input(ColumnSpec::quantity("monetary_value", "mean value of the repeat purchases (summary)"))
            .input(ColumnSpec::quantity("weight", "number of identical customers this summary row stands for (summary)"))
            .input(ColumnSpec::quantity("frequency_holdout", "purchases (distinct time units) in the holdout (summary with a holdout)"))
            .input(ColumnSpec::quantity("duration_holdout", "length of the holdout in time units, the same on every row (summary with a holdout)"))
            .input(ColumnSpec::quantity("n_periods", "transaction opportunities observed (bgbb)"))
            .parameter(
                ParameterSpec::string("model", "historic", "historic, simple, retention, bgnbd, mbgnbd, pareto_nbd, bgbb, or auto (fit bgnbd, mbgnbd and pareto_nbd, compare them, and report the one with the lowest holdout error, or BIC without a holdout)")
                    .allowed_values(&["historic", "simple", "retention", "bgnbd", "mbgnbd", "pareto_nbd", "bgbb", "auto"]),
            )
            .parameter(ParameterSpec::double("margin", 1.0, "gross margin as a fraction, for rows without a margin value").range(0.0, 1.0))
            .parameter(ParameterSpec::new("lifespan", DataType::Double, "expected customer lifespan in years (model=simple)").optional().range(0.0, 200.0))
            .parameter(
                ParameterSpec::new("retention", DataType::Double, "annual retention probability r (model=retention)").optional().range(0.0, 0.999),
            )
            .parameter(ParameterSpec::double("discount_rate", 0.1, "annual discount rate d (model retention, the value of predicted purchases, and DERT, continuously at ln(1 + d) a year)").range(0.0, 1.0))
            .parameter(
                ParameterSpec::new(
                    "annual_margin",
                    DataType::Double,
                    "annual margin per customer m (model=retention); default: derived from the transactions",
                )
                .optional()
                .range(0.0, 1e12),
            )
            .parameter(
                ParameterSpec::string("spend_model", "none", "model of the value per purchase (bgnbd, mbgnbd, pareto_nbd): none or gamma_gamma")
                    .allowed_values(&["none", "gamma_gamma"]),
            )
            .parameter(ParameterSpec::double("horizon", 52.0, "prediction horizon in time units (bgnbd, mbgnbd, pareto_nbd) or future opportunities (bgbb)").range(0.0, 100_000.0))
            .parameter(
                ParameterSpec::string("time_unit", "week", "grain of purchases and time of a transaction log: hour, day, week (Monday to Sunday), month, quarter or year, calendar periods in UTC (bgnbd, mbgnbd, pareto_nbd)").allowed_values(&["hour", "day", "week", "month", "quarter", "year"]),
            )
            .parameter(
                ParameterSpec::new("observation_end", DataType::Timestamp, "end of observation of a transaction log; default: its last timestamp")
                    .optional(),
            )
            .parameter(
                ParameterSpec::new("holdout_start", DataType::Timestamp, "start of a holdout period for validating the predictions (bgnbd, mbgnbd, pareto_nbd)")
                    .optional(),
            )
            .parameter(
                ParameterSpec::new("churn_window", DataType::Double, "window w of p_no_purchase and p_alive_at_window_end, in time units (bgnbd, mbgnbd, pareto_nbd) or opportunities (bgbb); default: horizon")
                    .optional()
                    .range(0.0, 100_000.0),
            )
            .parameter(
                ParameterSpec::new("interval", DataType::Double, "confidence level of intervals on every prediction and total, from the fits' uncertainty by the delta method: adds _lower and _upper columns (bgnbd, mbgnbd, pareto_nbd, bgbb)")
                    .optional()
                    .range(0.5, 0.999),
            )
            .parameter(ParameterSpec::bool("dert", false, "compute dert per customer (discounted expected residual transactions: every purchase to come, no horizon, discounted continuously at discount_rate) and, with a spend model, residual_value (bgnbd, mbgnbd, pareto_nbd)"))
            .parameter(
                ParameterSpec::string("uncertainty", "delta", "how intervals are computed: delta (the delta method on the fits' covariances) or bootstrap (resample customers, refit, predict: CLVTools' method)")
                    .allowed_values(&["delta", "bootstrap"]),
            )
            .parameter(ParameterSpec::int64("bootstrap_draws", 100, "draws of uncertainty=bootstrap").range(10.0, 10_000.0))
            .parameter(ParameterSpec::columns("covariates", "input columns constant per customer that may explain why customers differ, comma-separated, in both the purchase and the attrition process (bgnbd, mbgnbd, pareto_nbd; CLVTools' parameterisation): numbers used as given, text one 0/1 column per level but the first"))
            .parameter(ParameterSpec::columns("purchase_covariates", "covariates of the purchase process only (instead of covariates)"))
            .parameter(ParameterSpec::columns("attrition_covariates", "covariates of the attrition process only (instead of covariates)"))
            .parameter(ParameterSpec::columns_of("dynamic_covariates", dynamic::TABLE, "covariates that change over time, comma-separated columns of the table input covariates_over_time (numbers or booleans), in both the purchase and the dropout process of pareto_nbd (CLVTools' dynamic covariates): seasons, campaigns, contacts; static ones enter as columns constant over a customer's periods"))
            .table_input(dynamic::TABLE, "with dynamic_covariates: one row per customer and period, every period equally long and without gaps, from each customer's first purchase to the end of calibration plus the horizon (and churn window, holdout); the row holds for its period", [
                ColumnSpec::string("customer_id", "the customer; leave the column out for one calendar every customer shares (a season flag)"),
                ColumnSpec::timestamp("period_start", "the start of the period the row's covariates hold for").required(),
            ])
            .parameter(ParameterSpec::columns("spend_covariates", "covariates of the mean spend per purchase (spend_model=gamma_gamma)"))
            .parameter(ParameterSpec::double("covariate_penalty", 0.0, "L2 penalty lambda on the coefficients, lambda x sum of squares added to the mean negative log-likelihood (CLVTools' reg.lambdas); 0 for none").range(0.0, 1e6))
            .parameter(ParameterSpec::bool("equal_covariates", false, "one coefficient per covariate for both processes (CLVTools' constraint); needs covariates=…"))
            .parameter(ParameterSpec::int64("top", 0, "rows of the customers table, highest value first; 0 for all").range(0.0, 1e12))
            .output(OutputSpec::new("clv", "currency", "lifetime value per customer"))
            .output(OutputSpec::new("clv_total", "currency", "lifetime value of all customers"))
            .output(OutputSpec::new("clv_median", "currency", "median value per customer (historic)"))
            .output(OutputSpec::new("top_decile_share", "%", "share of the total value from the top 10% of customers (historic)"))
            .output(OutputSpec::new("customers", "count", "distinct customers"))
            .output(OutputSpec::new("revenue", "currency", "sum of amounts (transaction log)"))
            .output(OutputSpec::new("aov", "currency", "average order value (simple)"))
            .output(OutputSpec::new("purchase_frequency", "per year", "purchases per customer per year (simple)"))
            .output(OutputSpec::new("gross_margin", "fraction", "total margin / revenue (simple)"))
            .output(OutputSpec::new("annual_margin", "currency", "annual margin per customer m (retention)"))
            .output(OutputSpec::new("r", "parameter", "(M)BG/NBD, Pareto/NBD: shape of the purchase-rate distribution, Gamma(r, alpha)"))
            .output(OutputSpec::new("alpha", "parameter", "(M)BG/NBD, Pareto/NBD: rate of the purchase-rate distribution, in time units; BG/BB: transaction probability, Beta(alpha, beta)"))
            .output(OutputSpec::new("a", "parameter", "(M)BG/NBD: dropout-probability distribution, Beta(a, b)"))
            .output(OutputSpec::new("b", "parameter", "(M)BG/NBD: dropout-probability distribution, Beta(a, b)"))
            .output(OutputSpec::new("s", "parameter", "Pareto/NBD: shape of the dropout-rate distribution, Gamma(s, beta)"))
            .output(OutputSpec::new("beta", "parameter", "Pareto/NBD: rate of the dropout-rate distribution, in time units; BG/BB: transaction probability, Beta(alpha, beta)"))
            .output(OutputSpec::new("delta", "parameter", "BG/BB: dropout probability, Beta(gamma, delta)"))
            .output(OutputSpec::new("r_se", "parameter", "standard error of r"))
            .output(OutputSpec::new("alpha_se", "parameter", "standard error of alpha"))
            .output(OutputSpec::new("a_se", "parameter", "standard error of a"))
            .output(OutputSpec::new("b_se", "parameter", "standard error of b"))
            .output(OutputSpec::new("s_se", "parameter", "standard error of s"))
            .output(OutputSpec::new("beta_se", "parameter", "standard error of beta"))
            .output(OutputSpec::new("delta_se", "parameter", "standard error of delta"))
            .output(OutputSpec::new("log_likelihood", "log-likelihood", "purchase model log-likelihood at the estimate"))
            .output(OutputSpec::new("iterations", "count", "purchase model optimizer iterations"))
            .output(OutputSpec::new("expected_purchases", "count", "expected purchases of all customers over the horizon (predictive models)"))
            .output(OutputSpec::new("p", "parameter", "Gamma-Gamma: shape of a customer's transaction values"))
            .output(OutputSpec::new("q", "parameter", "Gamma-Gamma: shape of the distribution of customers' scales"))
            .output(OutputSpec::new("gamma", "parameter", "Gamma-Gamma: scale of the distribution of customers' scales; BG/BB: dropout probability, Beta(gamma, delta)"))
            .output(OutputSpec::new("p_se", "parameter", "standard error of p"))
            .output(OutputSpec::new("q_se", "parameter", "standard error of q"))
            .output(OutputSpec::new("gamma_se", "parameter", "standard error of gamma"))
            .output(OutputSpec::new("spend_log_likelihood", "log-likelihood", "Gamma-Gamma log-likelihood at the estimate"))
            .output(OutputSpec::new("expected_spend", "currency", "mean expected value per purchase over customers (gamma_gamma)"))
            .output(OutputSpec::new("expected_active", "customers", "expected customers still active at the end of observation, the sum of P(alive) (predictive models)"))
            .output(OutputSpec::new("expected_lapsing", "customers", "expected customers who make no purchase in the churn window, the sum of p_no_purchase: the non-contractual churn count (predictive models)"))
            .output(OutputSpec::new("expected_dropouts", "customers", "expected customers active now who drop out within the churn window (predictive models)"))
            .output(OutputSpec::new("expected_purchases_lost", "transactions", "purchases over the horizon lost to churn: what the customers active now would buy if none left (P(alive) x purchase rate if alive x horizon) less the expected purchases (bgnbd, mbgnbd, pareto_nbd)"))
            .output(OutputSpec::new("churn_cost", "currency", "the value of those lost purchases: expected_purchases_lost x expected spend x margin, summed over customers, not discounted (with gamma_gamma)"))
            .output(OutputSpec::new("dert_total", "transactions", "discounted expected residual transactions of all customers, no horizon (dert=true)"))
            .output(OutputSpec::new("residual_value_total", "currency", "the value of all purchases to come, no horizon: the sum of dert x expected_spend x margin (dert=true with gamma_gamma)"))
            .output(OutputSpec::new("chi_square", "statistic", "Pearson's chi-square of the repeat-purchase histogram, observed against expected, bins pooled to at least five expected (bgnbd, mbgnbd, pareto_nbd)"))
            .output(OutputSpec::new("chi_square_df", "count", "its degrees of freedom: bins - 1 - 4 parameters"))
            .output(OutputSpec::new("chi_square_p_value", "probability", "P(chi-square at least this large) if the model were right: small values say it does not reproduce the data"))
            .output(OutputSpec::new("holdout_mae", "transactions", "mean absolute error of the predicted holdout purchases per customer"))
            .output(OutputSpec::new("holdout_rmse", "transactions", "root mean squared error of the predicted holdout purchases per customer"))
            .output(OutputSpec::new("log_likelihood_without_covariates", "log-likelihood", "the purchase model's log-likelihood without its covariates (with covariates)"))
            .output(OutputSpec::new("covariates_lr_statistic", "statistic", "likelihood-ratio statistic of the purchase and attrition covariates: 2 x (log_likelihood - log_likelihood_without_covariates)"))
            .output(OutputSpec::new("covariates_lr_df", "count", "its degrees of freedom: the number of coefficients"))
            .output(OutputSpec::new("covariates_lr_p_value", "probability", "P(chi-square at least this large) if the covariates explained nothing: small values say they improve the fit"))
            .output(OutputSpec::new("spend_covariates_lr_statistic", "statistic", "likelihood-ratio statistic of the spend covariates"))
            .output(OutputSpec::new("spend_covariates_lr_df", "count", "its degrees of freedom"))
            .output(OutputSpec::new("spend_covariates_lr_p_value", "probability", "P(chi-square at least this large) if the spend covariates explained nothing"))
            .output(OutputSpec::new("holdout_purchases", "count", "purchases (distinct periods) customers made in the holdout"))
            .output(OutputSpec::new("predicted_holdout_purchases", "count", "BG/NBD prediction of the holdout purchases"))
            .table_with_columns("customers", "per customer: historic value (historic), or P(alive), expected purchases, spend and clv (predictive models)", customer_columns())
            .table_with_columns("repeat_purchases", "bgnbd, mbgnbd, pareto_nbd: customers by repeat purchases in calibration, observed against the fitted model's expectation", [
                OutputSpec::new("purchases", "transactions", "repeat purchases, from 0 to at least 7 (as far as nine customers in ten reach, at most 29); the last row counts that many or more"),
                OutputSpec::new("or_more", "id", "true on the last row, which counts that many purchases or more"),
                OutputSpec::new("observed", "customers", "customers with that many repeat purchases"),
                OutputSpec::new("expected", "customers", "the model's expectation: the sum over customers of P(X(T) = n), each at their own T"),
            ])
            .table_with_columns("model_comparison", "model=auto: every continuous-time model fitted to the data, and which was chosen and why", [
                OutputSpec::new("model", "id", "bgnbd, mbgnbd or pareto_nbd"),
                OutputSpec::new("chosen", "id", "true for the model whose results these are"),
                OutputSpec::new("identified", "id", "false where the fit does not identify its parameters (then it is not chosen while another is)"),
                OutputSpec::new("log_likelihood", "log-likelihood", "at the estimate"),
                OutputSpec::new("parameters", "count", "estimated parameters k (4, plus any covariate coefficients)"),
                OutputSpec::new("aic", "statistic", "2k - 2 log-likelihood"),
                OutputSpec::new("bic", "statistic", "k ln(customers) - 2 log-likelihood: what chooses without a holdout"),
                OutputSpec::new("chi_square_p_value", "probability", "the repeat-purchase histogram's chi-square test"),
                OutputSpec::new("holdout_mae", "transactions", "mean absolute error of holdout purchases per customer: what chooses with a holdout"),
                OutputSpec::new("holdout_rmse", "transactions", "root mean squared error of holdout purchases per customer"),
                OutputSpec::new("holdout_total_error", "transactions", "predicted minus actual holdout purchases of all customers"),
                OutputSpec::new("note", "id", "why the model was chosen, or could not be fitted"),
            ])
            .table_with_columns("coefficients", "with covariates: each covariate's coefficient per process (CLVTools' parameterisation: purchase rate x exp(coefficient x value); attrition: Pareto/NBD dropout rate, (M)BG/NBD both beta parameters; spend: mean spend)", [
                OutputSpec::new("process", "id", "purchase, attrition, both (equal_covariates) or spend"),
                OutputSpec::new("covariate", "id", "the input column, or column=level for a level of a text column (against the first level)"),
                OutputSpec::new("coefficient", "parameter", "the estimate"),
                OutputSpec::new("standard_error", "parameter", "its standard error, from the Hessian of the log-likelihood; empty at the edge of the searched range, where the coefficient is not an estimate"),
                OutputSpec::new("z", "statistic", "coefficient / standard_error"),
                OutputSpec::new("p_value", "probability", "two-sided Wald p-value"),
                OutputSpec::new("multiplier", "ratio", "exp(coefficient): the factor one unit multiplies the purchase rate, the dropout rate (Pareto/NBD), the dropout distribution's parameters ((M)BG/NBD) or mean spend by"),
                OutputSpec::new("at_boundary", "id", "true where the coefficient ran to the edge of the searched range: not an estimate"),
            ])
            .table("purchase_curve", "predictive models: expected cumulative purchases of a new customer and of as many new customers as the input has")
            .table("purchase_distribution", "bgnbd, mbgnbd, pareto_nbd: probability that a new customer makes n purchases within the horizon")
    }

    fn compute(&self, input: &Input<'_>, params: &Params) -> Result<Output, MetricError> {
        let model = params.str("model")?;
        let (output, model) = match model {
            _ if params.get("dynamic_covariates").is_some() => {
                (dynamic::compute(input, params)?, "pareto_nbd")
            }
            "bgnbd" | "mbgnbd" | "pareto_nbd" => (predictive::compute(input, params)?, model),
            "auto" => auto::compute(input, params)?,
            "bgbb" => (discrete::compute(input, params)?, model),
            _ => (descriptive::compute(input, params)?, model),
        };
        finish(model, input, params, |_, _| Ok(output))
    }

    fn fit(&self, input: &Input<'_>, params: &Params) -> Result<FittedModel, MetricError> {
        fitted::fit(input, params)
    }

    fn score(
        &self,
        state: &StoredState<'_>,
        input: &Input<'_>,
        params: &Params,
    ) -> Result<Output, MetricError> {
        fitted::score(state, input, params)
    }
}

/// Runs `compute` for `model` and adds the warnings every computation carries: parameters
/// that change nothing, and CLV that is revenue because no margin was given.
pub(crate) fn finish(
    model: &str,
    input: &Input<'_>,
    params: &Params,
    compute: impl FnOnce(&Input<'_>, &Params) -> Result<Output, MetricError>,
) -> Result<Output, MetricError> {
    let output = compute(input, params)?;
    let output = ignored_parameters(model, input, params)?.into_iter().fold(
        output,
        |output, (name, why)| {
            output.warning(
                "parameter_ignored",
                format!("{name} has no effect here: {why}"),
            )
        },
    );
    Ok(match clv_is_revenue(model, params)? {
        Some(message) => output.warning("clv_is_revenue", message),
        None => output,
    })
}

/// The columns the customers table may have, by model; each model returns those it computes.
fn customer_columns() -> Vec<OutputSpec> {
    [
        ("customer_id", "id", "the customer"),
        ("row", "id", "the input row of the customer, where the input has no customer_id"),
        ("frequency", "count", "repeat purchases: distinct time units with a purchase after the first (predictive models); transactions (bgbb)"),
        ("recency", "time units", "from the first purchase to the last (predictive models); the opportunity of the last transaction (bgbb)"),
        ("T", "time units", "from the first purchase to the end of observation (predictive models)"),
        ("n_periods", "opportunities", "opportunities observed (bgbb)"),
        ("weight", "customers", "identical customers the row stands for (bgbb)"),
        ("monetary_value", "currency", "mean value of the repeat purchases (predictive models)"),
        ("clv", "currency", "margin earned so far (historic); expected margin to the horizon, discounted monthly (gamma_gamma)"),
        ("p_alive", "probability", "P(the customer is still active at the end of observation; bgbb: at the next opportunity)"),
        ("expected_purchases", "transactions", "expected purchases over the horizon (time units, or opportunities for bgbb)"),
        ("p_no_purchase", "probability", "P(no purchase in the churn window after the end of observation)"),
        ("p_alive_at_window_end", "probability", "P(still active at the end of the churn window; bgbb: at its last opportunity)"),
        ("dert", "transactions", "discounted expected residual transactions: all purchases to come, no horizon, discounted continuously at discount_rate (dert=true)"),
        ("expected_spend", "currency", "expected value of one purchase (gamma_gamma)"),
        ("residual_value", "currency", "dert x expected_spend x margin: the value of all purchases to come, as CLVTools' predicted CLV (dert=true with gamma_gamma)"),
        ("holdout_purchases", "transactions", "purchases (distinct time units) in the holdout"),
        ("predicted_holdout_purchases", "transactions", "the model's expected purchases in the holdout"),
    ]
    .into_iter()
    .flat_map(|(name, unit, description)| {
        let mut columns = vec![OutputSpec::new(name, unit, description)];
        if WITH_INTERVALS.contains(&name) {
            for end in ["lower", "upper"] {
                columns.push(OutputSpec::new(
                    &format!("{name}_{end}"),
                    unit,
                    &format!("the {end} end of {name}'s interval at the level of the interval parameter (bgnbd, mbgnbd, pareto_nbd with interval)"),
                ));
            }
        }
        if name == "clv" {
            for end in ["lower", "upper"] {
                columns.push(OutputSpec::new(
                    &format!("purchase_value_{end}"),
                    "currency",
                    &format!("the {end} end of the prediction interval of the value (margin x spend, not discounted) of the purchases the customer will make over the horizon: their purchase distribution combined with the Gamma-Gamma spend distribution, given the fitted parameters (gamma_gamma with interval)"),
                ));
            }
        }
        if name == "expected_purchases" {
            for end in ["lower", "upper"] {
                columns.push(OutputSpec::new(
                    &format!("purchases_{end}"),
                    "transactions",
                    &format!("the {end} end of the prediction interval of the purchases the customer will make over the horizon, at the level of the interval parameter, given the fitted parameters (bgnbd, mbgnbd, pareto_nbd with interval)"),
                ));
            }
        }
        columns
    })
    .collect()
}

/// The customers table's columns that get `_lower` and `_upper` columns with `interval`.
pub(crate) const WITH_INTERVALS: [&str; 8] = [
    "p_alive",
    "expected_purchases",
    "p_no_purchase",
    "p_alive_at_window_end",
    "dert",
    "expected_spend",
    "clv",
    "residual_value",
];

/// [`Params::given`] against this metric's descriptor, built once.
fn given(params: &Params, name: &str) -> Option<String> {
    static DESCRIPTOR: std::sync::OnceLock<MetricDescriptor> = std::sync::OnceLock::new();
    params.given(name, DESCRIPTOR.get_or_init(|| Clv.descriptor()))
}

/// The parameters given that change nothing for `model` on this input, each with why: a
/// parameter that silently does nothing misleads more than one that is refused.
fn ignored_parameters(
    model: &str,
    input: &Input<'_>,
    params: &Params,
) -> Result<Vec<(String, String)>, MetricError> {
    let predictive = matches!(model, "bgnbd" | "mbgnbd" | "pareto_nbd");
    let valued = predictive && params.str("spend_model")? != "none";
    let mut ignored = Vec::new();
    let mut unless = |name: &str, applies: bool, why: String| {
        if !applies && let Some(shown) = given(params, name) {
            ignored.push((shown, why));
        }
    };
    let only = |models: &str| format!("it applies to model {models}, and this is model {model}");
    unless("lifespan", model == "simple", only("simple"));
    unless("retention", model == "retention", only("retention"));
    unless("annual_margin", model == "retention", only("retention"));
    unless(
        "spend_model",
        predictive,
        only("bgnbd, mbgnbd or pareto_nbd"),
    );
    unless("time_unit", predictive, only("bgnbd, mbgnbd or pareto_nbd"));
    unless(
        "holdout_start",
        predictive,
        only("bgnbd, mbgnbd or pareto_nbd"),
    );
    unless(
        "observation_end",
        predictive,
        only("bgnbd, mbgnbd or pareto_nbd"),
    );
    unless(
        "horizon",
        predictive || model == "bgbb",
        only("bgnbd, mbgnbd, pareto_nbd or bgbb"),
    );
    unless(
        "top",
        predictive || matches!(model, "historic" | "bgbb"),
        format!("model {model} has no customers table"),
    );
    let dert = predictive && params.bool("dert")?;
    unless(
        "discount_rate",
        valued || dert || model == "retention",
        if predictive {
            "without spend_model=gamma_gamma or dert=true nothing is discounted".to_owned()
        } else {
            only("retention, or a predictive model with spend_model=gamma_gamma or dert=true")
        },
    );
    unless("dert", predictive, only("bgnbd, mbgnbd or pareto_nbd"));
    for name in ["covariates", "purchase_covariates", "attrition_covariates"] {
        unless(name, predictive, only("bgnbd, mbgnbd or pareto_nbd"));
    }
    unless(
        "spend_covariates",
        valued,
        "it applies to a predictive model with spend_model=gamma_gamma".to_owned(),
    );
    let with_covariates = predictive
        && (["covariates", "purchase_covariates", "attrition_covariates"]
            .iter()
            .any(|name| params.get(name).is_some())
            || (valued && params.get("spend_covariates").is_some()));
    unless(
        "covariate_penalty",
        with_covariates,
        "no covariates are given".to_owned(),
    );
    unless(
        "equal_covariates",
        with_covariates && params.get("covariates").is_some(),
        "it applies with covariates=…".to_owned(),
    );
    unless(
        "interval",
        predictive || model == "bgbb",
        only("bgnbd, mbgnbd, pareto_nbd or bgbb"),
    );
    let intervals = predictive && params.get("interval").is_some();
    unless(
        "uncertainty",
        intervals,
        if model == "bgbb" {
            "bgbb's intervals are the delta method's; the bootstrap applies to bgnbd, mbgnbd or pareto_nbd".to_owned()
        } else {
            "it applies where interval is given, to model bgnbd, mbgnbd or pareto_nbd".to_owned()
        },
    );
    unless(
        "bootstrap_draws",
        intervals && params.str("uncertainty")? == "bootstrap",
        "it applies with interval and uncertainty=bootstrap".to_owned(),
    );
    unless(
        "churn_window",
        predictive || model == "bgbb",
        only("bgnbd, mbgnbd, pareto_nbd or bgbb"),
    );
    let full_margin_column = input
        .optional_double("margin")?
        .is_some_and(|m| mittari_sdk::arrow_array::Array::null_count(m) == 0);
    let margin_applies = match model {
        "bgbb" => false,
        "retention" => params.get("annual_margin").is_none() && !full_margin_column,
        "historic" | "simple" => !full_margin_column,
        _ => valued,
    };
    let margin_why = match model {
        "bgbb" => "model bgbb predicts transactions, not value".to_owned(),
        "retention" if params.get("annual_margin").is_some() => {
            "annual_margin is given, so the transactions' margins are not used".to_owned()
        }
        "historic" | "simple" | "retention" => {
            "every row has a value in the margin column, and margin only fills in rows without one"
                .to_owned()
        }
        _ => "without spend_model=gamma_gamma no value is computed".to_owned(),
    };
    unless("margin", margin_applies, margin_why);
    Ok(ignored)
}

/// The predictive models value purchases at the margin parameter for every customer and do
/// not read a margin column (per-transaction margins are not part of the RFM summary they fit,
/// nor of the summary a database computes for them). At the default margin of 1 their values
/// are revenue: say so with the values, whatever the input's columns, or a reader takes
/// revenue for margin.
fn clv_is_revenue(model: &str, params: &Params) -> Result<Option<String>, MetricError> {
    let predictive = matches!(model, "bgnbd" | "mbgnbd" | "pareto_nbd");
    if !predictive || params.str("spend_model")? == "none" || params.f64("margin")? != 1.0 {
        return Ok(None);
    }
    Ok(Some(format!(
        "clv and clv_total are revenue, not margin: model {model} values purchases at the margin parameter (1 by default) and does not read a margin column; pass --param margin=F to value them at a margin rate F"
    )))
}

mittari_sdk::export_plugin!(Clv);

/// `clv`'s description: one string, joined with single spaces.
const DESCRIPTION: &str = concat!(
    "Input is either a transaction log (customer_id, timestamp, amount, optional margin as a ",
    "fraction) or, for the predictive models bgnbd, mbgnbd and pareto_nbd, a summary with one ",
    "row per customer (frequency, recency, T, optional monetary_value, optional weight = ",
    "number of identical customers, and for a holdout frequency_holdout and duration_holdout: ",
    "the column names of Python's lifetimes). The metric tells them apart by the columns ",
    "present. A transaction's margin is amount * margin (the margin parameter where there is ",
    "no margin column; the default 1 makes values revenue). model=historic: the margin each ",
    "customer has earned so far; clv is the mean per customer, clv_median its median, ",
    "clv_total the sum, top_decile_share the share earned by the top 10% of customers. ",
    "model=simple: clv = aov * purchase_frequency * gross margin * lifespan (years observed ",
    "from first to last transaction). model=retention: clv = m * r / (1 + d - r) (Gupta & ",
    "Lehmann 2003), m = annual_margin or the margin per customer per year observed. ",
    "model=bgnbd, mbgnbd or pareto_nbd: the BG/NBD (Fader, Hardie & Lee 2005), MBG/NBD ",
    "(Batislam, Denizel & Filiztekin 2007) or Pareto/NBD (Schmittlein, Morrison & Colombo ",
    "1987) model fitted by maximum likelihood: a transaction log is first summarized (repeat ",
    "purchases counted in distinct hours, days, Monday-to-Sunday weeks, calendar months, ",
    "quarters or years, time_unit); per customer, P(alive), expected purchases over the ",
    "horizon, P(no purchase in the churn window) and P(alive at its end), and with dert=true DERT, the ",
    "discounted expected residual transactions with no horizon (continuous discounting at ",
    "ln(1 + discount_rate) a year; Pareto/NBD in Fader, Hardie & Lee's closed form, BG/NBD and ",
    "MBG/NBD by numerical integration); with spend_model=gamma_gamma (Fader, ",
    "Hardie & Lee 2005, RFM and CLV) the expected value per purchase, and clv = expected ",
    "margin over the horizon, discounted monthly at the annual discount_rate, and ",
    "with dert=true residual_value = dert x expected spend x margin (CLVTools' predicted CLV). ",
    "With interval=L every prediction and total has its interval at level L, by the delta ",
    "method on the fits' covariances or, with uncertainty=bootstrap, by resampling customers. With ",
    "holdout_start, the model is fitted on the transactions before it and its predictions for ",
    "the holdout are compared with what customers bought there. model=bgbb: the BG/BB model ",
    "(Fader, Hardie & Shang 2010) of transactions at discrete opportunities (yearly ",
    "donations, renewals); input one row per customer or group with frequency (transactions), ",
    "recency (the opportunity of the last one, 0 without any), n_periods (opportunities ",
    "observed) and optional weight; horizon is then a number of future opportunities. Fit ",
    "parameters are reported under the papers' names with standard errors from the Hessian and ",
    "95% intervals; a fit that does not converge is an error, and one that does not identify its ",
    "parameters (too few customers, a parameter at the edge of its range, standard errors ",
    "larger than the estimates) is flagged with the warning fit_not_identified. A parameter ",
    "that changes nothing for the model asked for is a warning, parameter_ignored.",
);
