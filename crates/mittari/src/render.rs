//! Prints results. Both CLI paths (embedded engine and `--server`) produce a
//! `mittari.v1.ComputeResponse` and print it through these functions, so their output is
//! identical by construction.

use std::fmt::Write as _;

use mittari_proto::admin::v1 as admin_pb;
use mittari_proto::v1 as pb;
use serde_json::{Map, Value as Json, json};

use mittari_engine::MetricDescriptor;

/// An integral value prints as an integer (`"responses": 10`), any other as a float.
fn number(value: f64) -> Json {
    match as_integer(value) {
        Some(integer) => json!(integer),
        None => json!(value),
    }
}

/// The value as an integer when it is one exactly representable (|v| < 2⁵³).
fn as_integer(value: f64) -> Option<i64> {
    (value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0).then_some(value as i64)
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

/// Appends `text` as one CSV field, quoted when it holds a delimiter, quote or line break.
fn push_csv_field(out: &mut String, text: &str) {
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

/// Appends a number as the JSON output writes it: integral values as integers, others in
/// their shortest exact form.
fn push_number(out: &mut String, value: f64) {
    match as_integer(value) {
        Some(integer) => out.push_str(itoa::Buffer::new().format(integer)),
        None => out.push_str(ryu::Buffer::new().format(value)),
    }
}

/// One row (per group) of scalar outputs, with interval bounds as `<name>_lower`/`<name>_upper`.
/// The columns are every scalar any group returned, in order of first appearance, with bounds
/// when any group has an interval for it; a cell a group does not have stays empty, so every
/// row has the header's columns.
pub(crate) fn csv(response: &pb::ComputeResponse) -> String {
    let all_results = || {
        response
            .results
            .iter()
            .chain(response.groups.iter().filter_map(|g| g.results.as_ref()))
    };
    // (name, has an interval somewhere)
    let mut columns: Vec<(&str, bool)> = Vec::new();
    let mut column_of: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for results in all_results() {
        for (position, scalar) in results.scalars.iter().enumerate() {
            // Groups usually return the same scalars in the same order: no lookup needed.
            let index = match columns.get(position) {
                Some((name, _)) if *name == scalar.name => position,
                _ => *column_of.entry(&scalar.name).or_insert_with(|| {
                    columns.push((&scalar.name, false));
                    columns.len() - 1
                }),
            };
            columns[index].1 |= scalar.confidence_interval.is_some();
        }
    }
    let mut out = String::new();
    let write_header = |out: &mut String, leading: &[&str]| {
        let mut fields: Vec<String> = leading.iter().map(|f| (*f).to_owned()).collect();
        for (name, interval) in &columns {
            fields.push((*name).to_owned());
            if *interval {
                fields.extend([format!("{name}_lower"), format!("{name}_upper")]);
            }
        }
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_csv_field(out, field);
        }
        out.push('\n');
    };
    let mut cells: Vec<Option<&pb::Scalar>> = vec![None; columns.len()];
    if let Some(results) = &response.results {
        write_header(&mut out, &[]);
        let start = out.len();
        write_scalars(&mut out, &columns, &column_of, Some(results), &mut cells);
        // Without leading key columns the row begins with the first scalar, not a comma.
        if out[start..].starts_with(',') {
            out.remove(start);
        }
    }
    if let Some(first) = response.groups.first() {
        let mut leading: Vec<&str> = first.key.iter().map(|k| k.column.as_str()).collect();
        leading.push("rows");
        write_header(&mut out, &leading);
        out.reserve(response.groups.len() * (16 + 12 * columns.len()));
        for group in &response.groups {
            for (i, key) in group.key.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_value(&mut out, key.value.as_ref());
            }
            if !group.key.is_empty() {
                out.push(',');
            }
            out.push_str(itoa::Buffer::new().format(group.rows));
            write_scalars(
                &mut out,
                &columns,
                &column_of,
                group.results.as_ref(),
                &mut cells,
            );
        }
    }
    out
}

/// Appends one row's scalar cells (each after a comma) in `columns` order, and the line end.
fn write_scalars<'a>(
    out: &mut String,
    columns: &[(&str, bool)],
    column_of: &std::collections::HashMap<&str, usize>,
    results: Option<&'a pb::Results>,
    cells: &mut [Option<&'a pb::Scalar>],
) {
    cells.iter_mut().for_each(|c| *c = None);
    for (position, scalar) in results.iter().flat_map(|r| r.scalars.iter().enumerate()) {
        let index = match columns.get(position) {
            Some((name, _)) if *name == scalar.name => position,
            _ => column_of[scalar.name.as_str()],
        };
        cells[index] = Some(scalar);
    }
    for (cell, (_, interval)) in cells.iter().zip(columns) {
        out.push(',');
        if let Some(value) = cell.and_then(|s| s.value) {
            push_number(out, value);
        }
        if *interval {
            let ci = cell.and_then(|s| s.confidence_interval.as_ref());
            out.push(',');
            if let Some(ci) = ci {
                push_number(out, ci.lower);
            }
            out.push(',');
            if let Some(ci) = ci {
                push_number(out, ci.upper);
            }
        }
    }
    out.push('\n');
}

/// Appends a group key's value as a CSV field, as [`value_text`] writes it.
fn push_value(out: &mut String, value: Option<&pb::Value>) {
    use pb::value::Kind;
    match value.and_then(|v| v.kind.as_ref()) {
        None => {}
        Some(Kind::Int64Value(v)) => out.push_str(itoa::Buffer::new().format(*v)),
        Some(Kind::DoubleValue(v)) => push_number(out, *v),
        Some(Kind::StringValue(v)) => push_csv_field(out, v),
        Some(Kind::BoolValue(v)) => {
            let _ = write!(out, "{v}");
        }
        Some(Kind::TimestampValue(v)) => {
            out.push_str(&mittari_sdk::time::format_timestamp(*v));
        }
    }
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

/// When a library was loaded, as the CLI prints timestamps (UTC).
fn loaded_at(library: &admin_pb::PluginLibrary) -> String {
    library.loaded_at.map_or(String::new(), |t| {
        mittari_sdk::time::format_timestamp(t.seconds.saturating_mul(1_000_000))
    })
}

/// The admin's plugin list: a line per metric (a library without metrics gets one line).
pub(crate) fn libraries(libraries: &[admin_pb::PluginLibrary]) -> String {
    let headers = [
        "library",
        "sha256",
        "abi",
        "metric",
        "version",
        "enabled",
        "loaded at",
    ]
    .map(String::from);
    let mut rows = Vec::new();
    for library in libraries {
        let file = std::path::Path::new(&library.path)
            .file_name()
            .map_or(library.path.clone(), |f| f.to_string_lossy().into_owned());
        let sha = library
            .sha256
            .get(..12)
            .unwrap_or(&library.sha256)
            .to_owned();
        if !library.refused_reason.is_empty() {
            rows.push(vec![
                file,
                String::new(),
                String::new(),
                format!("refused: {}", library.refused_reason),
                String::new(),
                String::new(),
                loaded_at(library),
            ]);
            continue;
        }
        for metric in &library.metrics {
            rows.push(vec![
                file.clone(),
                sha.clone(),
                library.abi_version.to_string(),
                metric.name.clone(),
                metric.version.clone(),
                if metric.enabled { "yes" } else { "no" }.to_owned(),
                loaded_at(library),
            ]);
        }
    }
    aligned(&headers, &rows)
}

pub(crate) fn libraries_json(libraries: &[admin_pb::PluginLibrary]) -> String {
    let list: Vec<Json> = libraries
        .iter()
        .map(|l| {
            json!({
                "path": l.path,
                "sha256": l.sha256,
                "abi_version": l.abi_version,
                "metrics": l.metrics.iter().map(|m| json!({
                    "name": m.name, "version": m.version, "enabled": m.enabled,
                })).collect::<Vec<_>>(),
                "loaded_at": loaded_at(l),
                "refused_reason": l.refused_reason,
            })
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(name: &str, value: Option<f64>, interval: Option<(f64, f64)>) -> pb::Scalar {
        pb::Scalar {
            name: name.to_owned(),
            value,
            unit: String::new(),
            confidence_interval: interval.map(|(lower, upper)| pb::ConfidenceInterval {
                lower,
                upper,
                level: 0.95,
            }),
            undefined_reason: String::new(),
        }
    }

    fn group(key: &str, scalars: Vec<pb::Scalar>) -> pb::GroupResults {
        pb::GroupResults {
            key: vec![pb::GroupKey {
                column: "region".to_owned(),
                value: Some(pb::Value {
                    kind: Some(pb::value::Kind::StringValue(key.to_owned())),
                }),
            }],
            results: Some(pb::Results {
                scalars,
                tables: Vec::new(),
                warnings: Vec::new(),
            }),
            rows: 2,
        }
    }

    fn check_csv(response: pb::ComputeResponse, expect: &str) {
        assert_eq!(csv(&response), expect);
    }

    #[test]
    fn csv_rows_keep_the_header_columns_when_groups_differ() {
        let groups = vec![
            // No interval, no `b`: empty cells where the others have them.
            group("a,b", vec![scalar("nps", Some(40.0), None)]),
            group(
                "north",
                vec![
                    scalar("nps", Some(-12.5), Some((-30.25, 5.0))),
                    scalar("b", Some(1e-300), None),
                ],
            ),
            // Another order, and an undefined value.
            group(
                "south",
                vec![scalar("b", Some(3.0), None), scalar("nps", None, None)],
            ),
        ];
        check_csv(
            pb::ComputeResponse {
                metric: "nps".to_owned(),
                results: None,
                groups,
                rows: 6,
            },
            "region,rows,nps,nps_lower,nps_upper,b\n\
             \"a,b\",2,40,,,\n\
             north,2,-12.5,-30.25,5,1e-300\n\
             south,2,,,,3\n",
        );
    }

    #[test]
    fn csv_without_groups_is_one_header_and_one_row() {
        check_csv(
            pb::ComputeResponse {
                metric: "nps".to_owned(),
                results: Some(pb::Results {
                    scalars: vec![scalar("nps", Some(25.0), Some((-1.5, 51.5)))],
                    tables: Vec::new(),
                    warnings: Vec::new(),
                }),
                groups: Vec::new(),
                rows: 4,
            },
            "nps,nps_lower,nps_upper\n25,-1.5,51.5\n",
        );
    }
}
