//! Covariates of the predictive models: which columns, how they are encoded, and the profiles
//! of customers who share their values. Numbers (and booleans, as 0/1) are used as given; text
//! is categorical, one 0/1 column per level but the first in sorted order (the reference, as
//! R's model matrices have it). A covariate is a property of the customer: one whose value
//! changes between a customer's transactions is refused, naming the customer and both values.

use std::collections::HashMap;
use std::sync::Arc;

use mittari_models::Fit;
use mittari_models::covariates::CovariateFit;
use mittari_models::special::gamma_q;

use mittari_sdk::arrow_array::cast::AsArray;
use mittari_sdk::arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use mittari_sdk::arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray};
use mittari_sdk::arrow_schema::DataType as Arrow;
use mittari_sdk::{Input, MetricError, Params, result_table};

/// The covariate columns of each process, as the request names them.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Request {
    pub(crate) purchase: Vec<String>,
    pub(crate) attrition: Vec<String>,
    pub(crate) spend: Vec<String>,
    pub(crate) penalty: f64,
    pub(crate) equal: bool,
}

fn list(params: &Params, name: &str) -> Result<Vec<String>, MetricError> {
    Ok(match params.get(name) {
        Some(_) => {
            let mut columns: Vec<String> = Vec::new();
            for column in params.str(name)?.split(',').map(str::trim) {
                if column.is_empty() {
                    continue;
                }
                if columns.iter().any(|c| c == column) {
                    return Err(MetricError::invalid_parameter(
                        name,
                        format!("{column} is named twice"),
                    ));
                }
                columns.push(column.to_owned());
            }
            columns
        }
        None => Vec::new(),
    })
}

/// The request's covariates; `None` when it names none.
pub(crate) fn request(params: &Params) -> Result<Option<Request>, MetricError> {
    let both = list(params, "covariates")?;
    let purchase = list(params, "purchase_covariates")?;
    let attrition = list(params, "attrition_covariates")?;
    let spend = list(params, "spend_covariates")?;
    let separate = !purchase.is_empty() || !attrition.is_empty();
    if !both.is_empty() && separate {
        return Err(MetricError::invalid_parameter(
            "covariates",
            "covariates names the covariates of both processes; give it, or purchase_covariates and attrition_covariates, not both",
        ));
    }
    let (purchase, attrition) = if both.is_empty() {
        (purchase, attrition)
    } else {
        (both.clone(), both)
    };
    let equal = params.bool("equal_covariates")?;
    if equal && purchase != attrition {
        return Err(MetricError::invalid_parameter(
            "equal_covariates",
            "one coefficient per covariate for both processes needs the same covariates in both: use covariates=…",
        ));
    }
    if purchase.is_empty() && attrition.is_empty() && spend.is_empty() {
        return Ok(None);
    }
    Ok(Some(Request {
        purchase,
        attrition,
        spend,
        penalty: params.f64("covariate_penalty")?,
        equal,
    }))
}

/// A covariate column's value in one row: a number, or a category.
#[derive(Debug, Clone, PartialEq)]
enum Cell<'a> {
    Number(f64),
    Text(&'a str),
}

impl std::fmt::Display for Cell<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Number(v) => write!(f, "{v}"),
            Cell::Text(t) => write!(f, "{t:?}"),
        }
    }
}

/// Reads a covariate column's cells.
struct Column<'a> {
    name: &'a str,
    array: &'a ArrayRef,
}

impl<'a> Column<'a> {
    fn cell(&self, row: usize) -> Result<Cell<'a>, MetricError> {
        if self.array.is_null(row) {
            return Err(MetricError::invalid_value(
                self.name,
                row,
                format!(
                    "covariate {} is empty at row {row}; give every row a value, or leave the column out of the covariates",
                    self.name
                ),
            ));
        }
        let array = self.array;
        Ok(match array.data_type() {
            Arrow::Int64 => Cell::Number(array.as_primitive::<Int64Type>().value(row) as f64),
            Arrow::Float64 => Cell::Number(array.as_primitive::<Float64Type>().value(row)),
            Arrow::Boolean => Cell::Number(f64::from(u8::from(array.as_boolean().value(row)))),
            Arrow::Timestamp(..) => {
                Cell::Number(array.as_primitive::<TimestampMicrosecondType>().value(row) as f64)
            }
            _ => match array.as_any().downcast_ref::<StringArray>() {
                Some(text) => Cell::Text(text.value(row)),
                None => {
                    return Err(MetricError::invalid_input(format!(
                        "covariate {} is {}; it must hold numbers, booleans or text",
                        self.name,
                        array.data_type()
                    )));
                }
            },
        })
    }
}

/// The encoded covariates: each process's design columns, each profile's values, and each
/// customer's profile.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Design {
    pub(crate) purchase: Vec<String>,
    pub(crate) attrition: Vec<String>,
    pub(crate) spend: Vec<String>,
    pub(crate) profiles: Vec<ProfileValues>,
    pub(crate) profile_of: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ProfileValues {
    pub(crate) purchase: Vec<f64>,
    pub(crate) attrition: Vec<f64>,
    pub(crate) spend: Vec<f64>,
}

/// The most levels a text covariate may have: each is a coefficient, and the fit's cost
/// grows with their square (a column of customer-specific values would otherwise make
/// thousands).
const MAX_LEVELS: usize = 50;

/// How one input column becomes design columns.
enum Encoding {
    Numeric,
    /// The non-reference levels, each a 0/1 column.
    Levels(Vec<String>),
}

/// Encodes the covariates of the customers whose rows are `customer_rows` (each customer's
/// first row, as in the histories) over the input's rows, where `customer_of_row` gives each
/// row's customer (for a transaction log; `None` for a summary, one row per customer).
pub(crate) fn design(
    input: &Input<'_>,
    request: &Request,
    customer_rows: &[usize],
    ids: Option<&StringArray>,
) -> Result<Design, MetricError> {
    let mut names: Vec<&str> = Vec::new();
    for name in request
        .purchase
        .iter()
        .chain(&request.attrition)
        .chain(&request.spend)
    {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    let batch = input.batch();
    let mut columns: Vec<Column<'_>> = Vec::new();
    for &name in &names {
        let array = batch.column_by_name(name).ok_or_else(|| {
            MetricError::invalid_column(name, format!("the input has no covariate column {name}"))
        })?;
        columns.push(Column { name, array });
    }
    // A covariate belongs to the customer: every row of a customer must agree with the first.
    if let Some(ids) = ids {
        let mut first_of: HashMap<&str, usize> = HashMap::with_capacity(customer_rows.len());
        for &row in customer_rows {
            first_of.insert(ids.value(row), row);
        }
        for column in &columns {
            for row in 0..batch.num_rows() {
                if ids.is_null(row) {
                    continue;
                }
                let Some(&first) = first_of.get(ids.value(row)) else {
                    continue;
                };
                if first == row {
                    continue;
                }
                let (a, b) = (column.cell(first)?, column.cell(row)?);
                if a != b {
                    return Err(MetricError::invalid_value(
                        column.name,
                        row,
                        format!(
                            "covariate {} changes within customer {}: {b} here, {a} in the customer's first row (input row {first}); a covariate must be constant per customer (join a per-customer table, or drop the column from the covariates)",
                            column.name,
                            ids.value(row)
                        ),
                    ));
                }
            }
        }
    }
    // Each column's encoding, from the customers' values.
    let mut encodings: Vec<Encoding> = Vec::new();
    for column in &columns {
        let mut levels: Vec<&str> = Vec::new();
        let mut numbers: Vec<f64> = Vec::new();
        for &row in customer_rows {
            match column.cell(row)? {
                Cell::Text(t) => {
                    if levels.len() <= MAX_LEVELS && !levels.contains(&t) {
                        levels.push(t);
                    }
                }
                Cell::Number(v) => {
                    if !numbers.contains(&v) && numbers.len() < 2 {
                        numbers.push(v);
                    }
                }
            }
        }
        if levels.len() + numbers.len() < 2 {
            return Err(MetricError::invalid_parameter(
                "covariates",
                format!(
                    "covariate {} has the same value for every customer, so it cannot explain why they differ; leave it out",
                    column.name
                ),
            ));
        }
        if levels.len() > MAX_LEVELS {
            return Err(MetricError::invalid_column(
                column.name,
                format!(
                    "covariate {} has {} distinct text values or more; as a category that is one coefficient per level, and at most {} levels can be estimated: group its levels, or give it as numbers",
                    column.name,
                    levels.len(),
                    MAX_LEVELS
                ),
            ));
        }
        encodings.push(if levels.is_empty() {
            Encoding::Numeric
        } else {
            levels.sort_unstable();
            Encoding::Levels(levels[1..].iter().map(|l| (*l).to_owned()).collect())
        });
    }
    let design_names = |selected: &[String]| -> Vec<String> {
        let mut out = Vec::new();
        for name in selected {
            let at = names.iter().position(|n| n == name).unwrap_or(0);
            match &encodings[at] {
                Encoding::Numeric => out.push(name.clone()),
                Encoding::Levels(levels) => {
                    out.extend(levels.iter().map(|l| format!("{name}={l}")));
                }
            }
        }
        out
    };
    let encode = |selected: &[String], row: usize| -> Result<Vec<f64>, MetricError> {
        let mut out = Vec::new();
        for name in selected {
            let at = names.iter().position(|n| n == name).unwrap_or(0);
            match (&encodings[at], columns[at].cell(row)?) {
                (Encoding::Numeric, Cell::Number(v)) => out.push(v),
                (Encoding::Levels(levels), Cell::Text(t)) => {
                    out.extend(levels.iter().map(|l| f64::from(u8::from(l == t))));
                }
                _ => {
                    return Err(MetricError::invalid_value(
                        name,
                        row,
                        format!("covariate {name} mixes numbers and text"),
                    ));
                }
            }
        }
        Ok(out)
    };
    let mut profiles: Vec<ProfileValues> = Vec::new();
    let mut index: HashMap<Vec<u64>, u32> = HashMap::new();
    let mut profile_of = Vec::with_capacity(customer_rows.len());
    for &row in customer_rows {
        let values = ProfileValues {
            purchase: encode(&request.purchase, row)?,
            attrition: encode(&request.attrition, row)?,
            spend: encode(&request.spend, row)?,
        };
        let key: Vec<u64> = values
            .purchase
            .iter()
            .chain(&values.attrition)
            .chain(&values.spend)
            .map(|v| v.to_bits())
            .collect();
        let next = profiles.len() as u32;
        let profile = *index.entry(key).or_insert_with(|| {
            profiles.push(values);
            next
        });
        profile_of.push(profile);
    }
    Ok(Design {
        purchase: design_names(&request.purchase),
        attrition: design_names(&request.attrition),
        spend: design_names(&request.spend),
        profiles,
        profile_of,
    })
}

/// A covariate fit's base parameters as a [`Fit`], for the parameter outputs and the
/// identification check the fit without covariates has: the reference profile's parameters
/// (all covariates zero), their standard errors and covariance in natural units.
pub(crate) fn base_fit<const N: usize>(fit: &CovariateFit<N>) -> Fit<N> {
    let base = fit.base;
    let covariance = fit
        .fit
        .covariance
        .as_ref()
        .map(|c| std::array::from_fn(|i| std::array::from_fn(|j| c[i][j] * base[i] * base[j])));
    Fit {
        params: base,
        standard_errors: covariance.map(|c: [[f64; N]; N]| std::array::from_fn(|i| c[i][i].sqrt())),
        covariance,
        log_likelihood: fit.log_likelihood,
        iterations: fit.fit.iterations,
        evaluations: fit.fit.evaluations,
        converged: fit.fit.converged,
        status: fit.fit.status.clone(),
        at_boundary: std::array::from_fn(|i| fit.fit.at_boundary[i]),
    }
}

/// One row of the coefficients table.
pub(crate) struct Coefficient {
    pub(crate) process: &'static str,
    pub(crate) covariate: String,
    pub(crate) estimate: f64,
    pub(crate) standard_error: Option<f64>,
    pub(crate) at_boundary: bool,
}

/// The coefficients of a covariate fit, in the order of its free parameters after the base
/// ones: purchase (or spend), then attrition unless shared.
pub(crate) fn coefficients<const N: usize>(
    fit: &CovariateFit<N>,
    processes: (&'static str, &'static str),
    names: (&[String], &[String]),
    shared: bool,
) -> Vec<Coefficient> {
    let mut rows = Vec::new();
    let se = |k: usize| fit.standard_errors.as_ref().map(|s| s[k]);
    for (k, (name, &estimate)) in names.0.iter().zip(&fit.purchase).enumerate() {
        rows.push(Coefficient {
            process: if shared { "both" } else { processes.0 },
            covariate: name.clone(),
            estimate,
            standard_error: se(N + k),
            at_boundary: fit.fit.at_boundary[N + k],
        });
    }
    if !shared {
        let at = N + fit.purchase.len();
        for (k, (name, &estimate)) in names.1.iter().zip(&fit.attrition).enumerate() {
            rows.push(Coefficient {
                process: processes.1,
                covariate: name.clone(),
                estimate,
                standard_error: se(at + k),
                at_boundary: fit.fit.at_boundary[at + k],
            });
        }
    }
    rows
}

/// The `coefficients` table: each covariate's coefficient with its standard error, Wald z,
/// two-sided p-value, and the factor exp(coefficient) by which one unit of it multiplies the
/// process's rate (purchase rate, dropout rate or probability scale, mean spend).
pub(crate) fn coefficients_table(rows: &[Coefficient]) -> Result<RecordBatch, MetricError> {
    let se: Vec<Option<f64>> = rows.iter().map(|r| r.standard_error).collect();
    let z: Vec<Option<f64>> = rows
        .iter()
        .map(|r| r.standard_error.map(|s| r.estimate / s))
        .collect();
    let p: Vec<Option<f64>> = z
        .iter()
        // P(|Z| ≥ |z|) = P(χ²₁ ≥ z²) = Q(1/2, z²/2).
        .map(|z| z.map(|z| gamma_q(0.5, z * z / 2.0)))
        .collect();
    result_table(
        "coefficients",
        vec![
            (
                "process",
                Arc::new(
                    rows.iter()
                        .map(|r| Some(r.process))
                        .collect::<StringArray>(),
                ) as ArrayRef,
            ),
            (
                "covariate",
                Arc::new(
                    rows.iter()
                        .map(|r| Some(r.covariate.as_str()))
                        .collect::<StringArray>(),
                ),
            ),
            (
                "coefficient",
                Arc::new(rows.iter().map(|r| r.estimate).collect::<Float64Array>()),
            ),
            ("standard_error", Arc::new(Float64Array::from(se))),
            ("z", Arc::new(Float64Array::from(z))),
            ("p_value", Arc::new(Float64Array::from(p))),
            (
                "multiplier",
                Arc::new(
                    rows.iter()
                        .map(|r| r.estimate.exp())
                        .collect::<Float64Array>(),
                ),
            ),
            (
                "at_boundary",
                Arc::new(
                    rows.iter()
                        .map(|r| Some(r.at_boundary))
                        .collect::<mittari_sdk::arrow_array::BooleanArray>(),
                ),
            ),
        ],
    )
}
