//! Prints results. Both CLI paths (embedded engine and `--server`) produce a
//! `mittari.v1.ComputeResponse` and print it through these functions, so their output is
//! identical by construction.

use std::fmt::Write as _;

use mittari_proto::v1 as pb;
use serde_json::{Map, Value as Json, json};

use mittari_engine::MetricDescriptor;

/// An integral value prints as an integer (`"responses": 10`), any other as a float.
fn number(value: f64) -> Json {
    if value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

/// A number for people: integers as such, others to 4 decimals without trailing zeros.
fn human(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        let text = format!("{value:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn value_json(value: Option<&pb::Value>) -> Json {
    use pb::value::Kind;
    match value.and_then(|v| v.kind.as_ref()) {
        None => Json::Null,
        Some(Kind::Int64Value(v)) => json!(v),
        Some(Kind::DoubleValue(v)) => number(*v),
        Some(Kind::StringValue(v)) => json!(v),
        Some(Kind::BoolValue(v)) => json!(v),
        Some(Kind::TimestampValue(v)) => json!(mittari_sdk::time::format_timestamp(*v)),
    }
}

pub(crate) fn value_text(value: Option<&pb::Value>) -> String {
    match value_json(value) {
        Json::Null => String::new(),
        Json::String(s) => s,
        other => other.to_string(),
    }
}

fn table_rows(table: &pb::Table) -> usize {
    use pb::column::Values;
    table.columns.first().map_or(0, |c| match &c.values {
        Some(Values::Int64Values(v) | Values::TimestampValues(v)) => v.values.len(),
        Some(Values::DoubleValues(v)) => v.values.len(),
        Some(Values::StringValues(v)) => v.values.len(),
        Some(Values::BoolValues(v)) => v.values.len(),
        None => 0,
    })
}

/// The first `limit` rows of a table as JSON objects (all of them with `usize::MAX`).
fn table_json(table: &pb::Table, limit: usize) -> Json {
    use pb::column::Values;
    let rows = table_rows(table);
    let cell = |column: &pb::Column, row: usize| -> Json {
        if column
            .null_mask
            .get(row / 8)
            .is_some_and(|b| b & (1 << (row % 8)) != 0)
        {
            return Json::Null;
        }
        match &column.values {
            Some(Values::Int64Values(v)) => json!(v.values[row]),
            Some(Values::TimestampValues(v)) => {
                json!(mittari_sdk::time::format_timestamp(v.values[row]))
            }
            Some(Values::DoubleValues(v)) => number(v.values[row]),
            Some(Values::StringValues(v)) => json!(v.values[row]),
            Some(Values::BoolValues(v)) => json!(v.values[row]),
            None => Json::Null,
        }
    };
    Json::Array(
        (0..rows.min(limit))
            .map(|row| {
                Json::Object(
                    table
                        .columns
                        .iter()
                        .map(|c| (c.name.clone(), cell(c, row)))
                        .collect(),
                )
            })
            .collect(),
    )
}

fn results_json(results: &pb::Results) -> Map<String, Json> {
    let mut out = Map::new();
    out.insert(
        "results".into(),
        Json::Object(
            results
                .scalars
                .iter()
                .map(|s| (s.name.clone(), s.value.map_or(Json::Null, number)))
                .collect(),
        ),
    );
    let intervals: Map<String, Json> = results
        .scalars
        .iter()
        .filter_map(|s| {
            let ci = s.confidence_interval.as_ref()?;
            Some((s.name.clone(), json!({"lower": number(ci.lower), "upper": number(ci.upper), "level": number(ci.level)})))
        })
        .collect();
    if !intervals.is_empty() {
        out.insert("confidence_intervals".into(), Json::Object(intervals));
    }
    let undefined: Map<String, Json> = results
        .scalars
        .iter()
        .filter(|s| s.value.is_none())
        .map(|s| (s.name.clone(), json!(s.undefined_reason)))
        .collect();
    if !undefined.is_empty() {
        out.insert("undefined".into(), Json::Object(undefined));
    }
    out.insert(
        "units".into(),
        Json::Object(
            results
                .scalars
                .iter()
                .map(|s| (s.name.clone(), json!(s.unit)))
                .collect(),
        ),
    );
    if !results.tables.is_empty() {
        out.insert(
            "tables".into(),
            Json::Object(
                results
                    .tables
                    .iter()
                    .map(|t| {
                        (
                            t.name.clone(),
                            t.table
                                .as_ref()
                                .map_or(Json::Null, |t| table_json(t, usize::MAX)),
                        )
                    })
                    .collect(),
            ),
        );
    }
    out.insert(
        "warnings".into(),
        Json::Array(
            results
                .warnings
                .iter()
                .map(|w| json!({"code": w.code, "message": w.message}))
                .collect(),
        ),
    );
    out
}

pub(crate) fn json(response: &pb::ComputeResponse) -> String {
    let mut out = Map::new();
    out.insert("metric".into(), json!(response.metric));
    out.insert("rows".into(), json!(response.rows));
    if let Some(results) = &response.results {
        out.extend(results_json(results));
    }
    if !response.groups.is_empty() {
        let groups = response
            .groups
            .iter()
            .map(|g| {
                let mut group = Map::new();
                group.insert(
                    "key".into(),
                    Json::Object(
                        g.key
                            .iter()
                            .map(|k| (k.column.clone(), value_json(k.value.as_ref())))
                            .collect(),
                    ),
                );
                group.insert("rows".into(), json!(g.rows));
                if let Some(results) = &g.results {
                    group.extend(results_json(results));
                }
                Json::Object(group)
            })
            .collect();
        out.insert("groups".into(), Json::Array(groups));
    }
    let mut text = serde_json::to_string_pretty(&Json::Object(out)).unwrap_or_default();
    text.push('\n');
    text
}

/// Columns aligned under their headers.
fn aligned(headers: &[String], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([headers[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(headers).chain(rows.iter().map(Vec::as_slice)) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

fn interval_text(scalar: &pb::Scalar) -> String {
    scalar
        .confidence_interval
        .as_ref()
        .map_or(String::new(), |ci| {
            format!(
                "{}% [{}, {}]",
                human(ci.level * 100.0),
                human(ci.lower),
                human(ci.upper)
            )
        })
}

fn scalar_text(scalar: &pb::Scalar) -> String {
    scalar
        .value
        .map_or_else(|| format!("undefined: {}", scalar.undefined_reason), human)
}

fn warnings_text(out: &mut String, prefix: &str, warnings: &[pb::Warning]) {
    for w in warnings {
        let _ = writeln!(out, "warning{prefix}: {} ({})", w.message, w.code);
    }
}

/// The report for a terminal. Result tables show their first [`TABLE_ROWS_SHOWN`] rows, or
/// `limit`'s number for the table it names; a scalar `<name>_se` is shown as `± se` beside
/// `<name>` rather than on its own line.
pub(crate) fn table(response: &pb::ComputeResponse, limit: Option<(&str, usize)>) -> String {
    let mut out = format!("{} over {} rows\n", response.metric, response.rows);
    if let Some(results) = &response.results {
        let headers = ["output", "value", "unit", "interval"].map(String::from);
        let standard_error = |name: &str| {
            results
                .scalars
                .iter()
                .find(|s| s.name.strip_suffix("_se") == Some(name))
                .and_then(|s| s.value)
        };
        let is_shown_beside = |s: &pb::Scalar| {
            s.name.strip_suffix("_se").is_some_and(|base| {
                s.value.is_some() && results.scalars.iter().any(|o| o.name == base)
            })
        };
        let rows: Vec<Vec<String>> = results
            .scalars
            .iter()
            .filter(|s| !is_shown_beside(s))
            .map(|s| {
                let interval = match standard_error(&s.name) {
                    Some(se) => format!("± {} (standard error)", human(se)),
                    None => interval_text(s),
                };
                vec![s.name.clone(), scalar_text(s), s.unit.clone(), interval]
            })
            .collect();
        out.push_str(&aligned(&headers, &rows));
        for t in &results.tables {
            let _ = writeln!(out, "\n{}:", t.name);
            let shown = match limit {
                Some((name, rows)) if name == t.name => rows,
                _ => TABLE_ROWS_SHOWN,
            };
            out.push_str(&json_rows_table(t.table.as_ref(), shown));
        }
        warnings_text(&mut out, "", &results.warnings);
    }
    if let Some(first) = response.groups.first() {
        let mut headers: Vec<String> = first.key.iter().map(|k| k.column.clone()).collect();
        headers.push("rows".into());
        let scalars = first
            .results
            .as_ref()
            .map_or(&[][..], |r| r.scalars.as_slice());
        headers.extend(scalars.iter().map(|s| s.name.clone()));
        let rows: Vec<Vec<String>> = response
            .groups
            .iter()
            .map(|g| {
                let mut row: Vec<String> = g
                    .key
                    .iter()
                    .map(|k| match &k.value {
                        None => "(null)".to_owned(),
                        v => value_text(v.as_ref()),
                    })
                    .collect();
                row.push(g.rows.to_string());
                row.extend(
                    g.results
                        .iter()
                        .flat_map(|r| r.scalars.iter().map(scalar_text)),
                );
                row
            })
            .collect();
        out.push_str(&aligned(&headers, &rows));
        for g in &response.groups {
            let key: Vec<String> = g
                .key
                .iter()
                .map(|k| format!("{}={}", k.column, value_text(k.value.as_ref())))
                .collect();
            if let Some(results) = &g.results {
                warnings_text(
                    &mut out,
                    &format!(" [{}]", key.join(", ")),
                    &results.warnings,
                );
            }
        }
    }
    out
}

/// Result-table rows shown in table format; the rest are counted, and `--format json` or
/// `--format csv` gives them all.
const TABLE_ROWS_SHOWN: usize = 20;

fn json_rows_table(table: Option<&pb::Table>, shown: usize) -> String {
    let Some(table) = table else {
        return String::new();
    };
    let headers: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
    let total = table_rows(table);
    let rows: Vec<Vec<String>> = match table_json(table, shown) {
        Json::Array(rows) => rows
            .iter()
            .map(|row| {
                headers
                    .iter()
                    .map(|h| match &row[h] {
                        Json::Null => String::new(),
                        Json::String(s) => s.clone(),
                        Json::Number(n) => n.as_f64().map_or_else(|| n.to_string(), human),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .collect(),
        _ => Vec::new(),
    };
    let hidden = total - rows.len();
    let mut text = aligned(&headers, &rows);
    if hidden > 0 {
        let _ = writeln!(
            text,
            "… {hidden} more rows (--format json or --output FILE.csv gives them all)"
        );
    }
    text
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// One row (per group) of scalar outputs, with interval bounds as `<name>_lower`/`<name>_upper`.
pub(crate) fn csv(response: &pb::ComputeResponse) -> String {
    let exact = |v: Option<f64>| v.map_or(String::new(), |v| number(v).to_string());
    let scalar_columns = |results: &pb::Results| -> (Vec<String>, Vec<String>) {
        let mut headers = Vec::new();
        let mut cells = Vec::new();
        for s in &results.scalars {
            headers.push(s.name.clone());
            cells.push(exact(s.value));
            if let Some(ci) = &s.confidence_interval {
                headers.extend([format!("{}_lower", s.name), format!("{}_upper", s.name)]);
                cells.extend([exact(Some(ci.lower)), exact(Some(ci.upper))]);
            }
        }
        (headers, cells)
    };
    let mut lines: Vec<Vec<String>> = Vec::new();
    if let Some(results) = &response.results {
        let (headers, cells) = scalar_columns(results);
        lines.push(headers);
        lines.push(cells);
    }
    for (i, g) in response.groups.iter().enumerate() {
        let (headers, cells) = g.results.as_ref().map(scalar_columns).unwrap_or_default();
        if i == 0 {
            let mut h: Vec<String> = g.key.iter().map(|k| k.column.clone()).collect();
            h.push("rows".into());
            h.extend(headers);
            lines.push(h);
        }
        let mut row: Vec<String> = g.key.iter().map(|k| value_text(k.value.as_ref())).collect();
        row.push(g.rows.to_string());
        row.extend(cells);
        lines.push(row);
    }
    lines
        .iter()
        .map(|l| l.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(",") + "\n")
        .collect()
}

pub(crate) fn metric_list(metrics: &[pb::MetricSummary]) -> String {
    let headers = ["metric", "version", "summary"].map(String::from);
    let rows: Vec<Vec<String>> = metrics
        .iter()
        .map(|m| vec![m.name.clone(), m.version.clone(), m.summary.clone()])
        .collect();
    aligned(&headers, &rows)
}

pub(crate) fn metric_list_json(metrics: &[pb::MetricSummary]) -> String {
    let list: Vec<Json> = metrics
        .iter()
        .map(|m| json!({"name": m.name, "version": m.version, "summary": m.summary}))
        .collect();
    serde_json::to_string_pretty(&list).unwrap_or_default() + "\n"
}

pub(crate) fn descriptor_json(descriptor: &MetricDescriptor, library: &str) -> String {
    let mut value = serde_json::to_value(descriptor).unwrap_or_default();
    if let Json::Object(map) = &mut value {
        map.insert("library".into(), json!(library));
    }
    serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
}

pub(crate) fn descriptor_text(d: &MetricDescriptor, library: &str) -> String {
    let mut out = format!("{} {} ({library})\n{}\n", d.name, d.version, d.summary);
    if !d.description.is_empty() {
        let _ = writeln!(out, "\n{}", d.description);
    }
    let _ = writeln!(out, "\ninput columns:");
    let rows: Vec<Vec<String>> = d
        .inputs
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.data_type.to_string(),
                if c.required { "required" } else { "optional" }.to_owned(),
                c.range.map_or(String::new(), |r| r.to_string()),
                c.description.clone(),
            ]
        })
        .collect();
    out.push_str(&aligned(
        &["column", "type", "", "range", "meaning"].map(String::from),
        &rows,
    ));
    if !d.parameters.is_empty() {
        let _ = writeln!(out, "\nparameters:");
        let rows: Vec<Vec<String>> = d
            .parameters
            .iter()
            .map(|p| {
                let allowed = if p.allowed_values.is_empty() {
                    p.range.map_or(String::new(), |r| r.to_string())
                } else {
                    p.allowed_values.join("|")
                };
                let default = match (&p.default, p.required) {
                    (Some(v), _) => v.to_string(),
                    (None, true) => "(required)".to_owned(),
                    (None, false) => "(optional)".to_owned(),
                };
                vec![
                    p.name.clone(),
                    p.data_type.to_string(),
                    default,
                    allowed,
                    p.description.clone(),
                ]
            })
            .collect();
        out.push_str(&aligned(
            &["parameter", "type", "default", "allowed", "meaning"].map(String::from),
            &rows,
        ));
    }
    let _ = writeln!(out, "\noutputs:");
    let rows: Vec<Vec<String>> = d
        .outputs
        .iter()
        .map(|o| vec![o.name.clone(), o.unit.clone(), o.description.clone()])
        .collect();
    out.push_str(&aligned(
        &["output", "unit", "meaning"].map(String::from),
        &rows,
    ));
    if !d.tables.is_empty() {
        let _ = writeln!(out, "\nresult tables:");
        let rows: Vec<Vec<String>> = d
            .tables
            .iter()
            .map(|t| vec![t.name.clone(), t.description.clone()])
            .collect();
        out.push_str(&aligned(&["table", "meaning"].map(String::from), &rows));
    }
    out
}
