//! Covariates of a model fitted per entity (customer, cohort): columns whose value is constant
//! for each entity, encoded as numbers. Numbers (and booleans, as 0/1) are used as given; text
//! is categorical, one 0/1 column per level but the first in sorted order (the reference, as
//! R's model matrices have it). Entities that share their encoded values form a profile, which
//! shares its parameters. Used by clv (customers) and retention_forecast (cohorts).

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow_schema::DataType as Arrow;

use crate::{MetricError, result_table};

/// The encoded covariates: for each selection of columns (a model's processes), its design
/// column names; each profile's values per selection; each entity's profile.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Encoded {
    pub names: Vec<Vec<String>>,
    pub profiles: Vec<Vec<Vec<f64>>>,
    pub profile_of: Vec<u32>,
    /// How each input column was encoded: what encodes other entities the same way later
    /// (a stored model scoring new customers).
    pub columns: Vec<ColumnEncoding>,
}

/// How one covariate column becomes design columns, as a fit saw it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ColumnEncoding {
    pub name: String,
    /// Text levels in sorted order, the first the reference; `None` for numbers.
    pub levels: Option<Vec<String>>,
}

/// Which entities the rows describe: each row's entity id, and what an entity is called in
/// messages ("customer", "cohort").
#[derive(Debug, Clone, Copy)]
pub struct Entities<'a> {
    pub ids: Option<&'a StringArray>,
    pub noun: &'a str,
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

/// The most levels a text covariate may have: each is a coefficient, and the fit's cost
/// grows with their square (a column of customer-specific values would otherwise make
/// thousands).
const MAX_LEVELS: usize = 50;

/// How one input column becomes design columns.
enum Encoding {
    Numeric,
    /// Every level, the reference first; the others are a 0/1 column each.
    Levels(Vec<String>),
}

/// Encodes the covariate columns named in `selections` for the entities whose first rows are
/// `entity_rows`, over `batch`'s rows: with `entities.ids`, every row of an entity must agree
/// with its first (else an error naming the entity and both values). `parameter` is the
/// parameter named in errors about the choice of columns. With `fixed` (a stored fit's
/// [`Encoded::columns`]) the columns are encoded as the fit encoded them, whatever these
/// entities' values, and a level the fit never saw is refused (it has no coefficient).
pub fn encode(
    batch: &RecordBatch,
    selections: &[&[String]],
    entity_rows: &[usize],
    entities: Entities<'_>,
    parameter: &str,
    fixed: Option<&[ColumnEncoding]>,
) -> Result<Encoded, MetricError> {
    let noun = entities.noun;
    let mut names: Vec<&str> = Vec::new();
    for name in selections.iter().flat_map(|s| s.iter()) {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    let mut columns: Vec<Column<'_>> = Vec::new();
    for &name in &names {
        let array = batch.column_by_name(name).ok_or_else(|| {
            MetricError::invalid_column(name, format!("the input has no covariate column {name}"))
        })?;
        columns.push(Column { name, array });
    }
    // A covariate belongs to the entity: every row of an entity must agree with the first.
    if let Some(ids) = entities.ids {
        let mut first_of: HashMap<&str, usize> = HashMap::with_capacity(entity_rows.len());
        for &row in entity_rows {
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
                            "covariate {} changes within {noun} {}: {b} here, {a} in the {noun}'s first row (input row {first}); a covariate must be constant per {noun} (join a per-{noun} table, or drop the column from the covariates)",
                            column.name,
                            ids.value(row)
                        ),
                    ));
                }
            }
        }
    }
    // Each column's encoding: the fit's, or from the entities' values.
    let mut encodings: Vec<Encoding> = Vec::new();
    if let Some(fixed) = fixed {
        for column in &columns {
            let kept = fixed
                .iter()
                .find(|c| c.name == column.name)
                .ok_or_else(|| {
                    MetricError::invalid_parameter(
                        parameter,
                        format!(
                            "the stored fit has no covariate {}; its covariates are {}",
                            column.name,
                            fixed
                                .iter()
                                .map(|c| c.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
            encodings.push(match &kept.levels {
                None => Encoding::Numeric,
                Some(levels) => Encoding::Levels(levels.clone()),
            });
        }
    }
    for column in columns.iter().skip(encodings.len()) {
        let mut levels: Vec<&str> = Vec::new();
        let mut numbers: Vec<f64> = Vec::new();
        for &row in entity_rows {
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
                parameter,
                format!(
                    "covariate {} has the same value for every {noun}, so it cannot explain why they differ; leave it out",
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
            Encoding::Levels(levels.iter().map(|l| (*l).to_owned()).collect())
        });
    }
    let design_names = |selected: &[String]| -> Vec<String> {
        let mut out = Vec::new();
        for name in selected {
            let at = names.iter().position(|n| n == name).unwrap_or(0);
            match &encodings[at] {
                Encoding::Numeric => out.push(name.clone()),
                Encoding::Levels(levels) => {
                    out.extend(levels[1..].iter().map(|l| format!("{name}={l}")));
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
                    if !levels.iter().any(|l| l == t) {
                        return Err(MetricError::invalid_value(
                            name,
                            row,
                            format!(
                                "covariate {name} is {t:?} at row {row}, a level the stored fit never saw (its levels: {}), so the model has no coefficient for it; score customers of those levels, or fit again with data that has this one",
                                levels.join(", ")
                            ),
                        ));
                    }
                    out.extend(levels[1..].iter().map(|l| f64::from(u8::from(l == t))));
                }
                (Encoding::Numeric, Cell::Text(_)) if fixed.is_some() => {
                    return Err(MetricError::invalid_value(
                        name,
                        row,
                        format!(
                            "covariate {name} is text at row {row}, but the stored fit's {name} was numbers"
                        ),
                    ));
                }
                (Encoding::Levels(_), Cell::Number(_)) if fixed.is_some() => {
                    return Err(MetricError::invalid_value(
                        name,
                        row,
                        format!(
                            "covariate {name} is a number at row {row}, but the stored fit's {name} was text (levels)"
                        ),
                    ));
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
    let mut profiles: Vec<Vec<Vec<f64>>> = Vec::new();
    let mut index: HashMap<Vec<u64>, u32> = HashMap::new();
    let mut profile_of = Vec::with_capacity(entity_rows.len());
    for &row in entity_rows {
        let values: Vec<Vec<f64>> = selections
            .iter()
            .map(|selected| encode(selected, row))
            .collect::<Result<_, _>>()?;
        let key: Vec<u64> = values.iter().flatten().map(|v| v.to_bits()).collect();
        let next = profiles.len() as u32;
        let profile = *index.entry(key).or_insert_with(|| {
            profiles.push(values);
            next
        });
        profile_of.push(profile);
    }
    Ok(Encoded {
        names: selections.iter().map(|s| design_names(s)).collect(),
        profiles,
        profile_of,
        columns: names
            .iter()
            .zip(&encodings)
            .map(|(name, encoding)| ColumnEncoding {
                name: (*name).to_owned(),
                levels: match encoding {
                    Encoding::Numeric => None,
                    Encoding::Levels(levels) => Some(levels.clone()),
                },
            })
            .collect(),
    })
}

/// One row of the coefficients table.
#[derive(Debug, Clone, PartialEq)]
pub struct Coefficient {
    pub process: &'static str,
    pub covariate: String,
    pub estimate: f64,
    pub standard_error: Option<f64>,
    pub at_boundary: bool,
}

/// "process covariate" of each coefficient at the edge of the searched range, joined with
/// ", "; `None` when there is none. What the warning `covariate_not_identified` names.
pub fn at_edge(rows: &[Coefficient]) -> Option<String> {
    let edge: Vec<String> = rows
        .iter()
        .filter(|c| c.at_boundary)
        .map(|c| format!("{} {}", c.process, c.covariate))
        .collect();
    (!edge.is_empty()).then(|| edge.join(", "))
}

/// The `coefficients` table: each covariate's coefficient with its standard error, Wald z,
/// two-sided p-value, and the factor exp(coefficient) by which one unit of it multiplies the
/// process's rate (purchase rate, dropout rate or probability scale, mean spend).
pub fn coefficients_table(
    rows: &[Coefficient],
    two_sided_p: impl Fn(f64) -> f64,
) -> Result<RecordBatch, MetricError> {
    // A coefficient at the edge of the searched range is not an estimate: no standard error,
    // z or p-value is shown for it.
    let se: Vec<Option<f64>> = rows
        .iter()
        .map(|r| r.standard_error.filter(|_| !r.at_boundary))
        .collect();
    let z: Vec<Option<f64>> = rows
        .iter()
        .zip(&se)
        .map(|(r, se)| se.map(|s| r.estimate / s))
        .collect();
    let p: Vec<Option<f64>> = z.iter().map(|z| z.map(&two_sided_p)).collect();
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
                        .collect::<arrow_array::BooleanArray>(),
                ),
            ),
        ],
    )
}
