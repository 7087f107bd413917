//! Prints results. Both CLI paths (embedded engine and `--server`) produce a
//! `mittari.v1.ComputeResponse` and print it through these functions, so their output is
//! identical by construction.

use std::fmt::Write as _;
use std::io::Write;

use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};

use mittari_proto::admin::v1 as admin_pb;
use mittari_proto::v1 as pb;
use serde_json::{Value as Json, json};

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

/// A value as the JSON output writes it (see [`ValueJson`]).
fn value_json(value: Option<&pb::Value>) -> Json {
    serde_json::to_value(ValueJson(value)).unwrap_or(Json::Null)
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
    let rows = table_rows(table);
    let cell = |column: &pb::Column, row: usize| -> Json {
        serde_json::to_value(CellJson(column, row)).unwrap_or(Json::Null)
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

/// A number as JSON output writes it: integral values as integers, others as floats.
fn serialize_number<S: Serializer>(value: f64, serializer: S) -> Result<S::Ok, S::Error> {
    match as_integer(value) {
        Some(integer) => serializer.serialize_i64(integer),
        None => serializer.serialize_f64(value),
    }
}

// The response is serialized straight from the protobuf columns, never through a
// `serde_json::Value` tree: a million-row result table would be tens of millions of small
// allocations. Each wrapper below writes one piece.

/// A typed value; null when absent.
struct ValueJson<'a>(Option<&'a pb::Value>);

impl Serialize for ValueJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use pb::value::Kind;
        match self.0.and_then(|v| v.kind.as_ref()) {
            None => serializer.serialize_none(),
            Some(Kind::Int64Value(v)) => serializer.serialize_i64(*v),
            Some(Kind::DoubleValue(v)) => serialize_number(*v, serializer),
            Some(Kind::StringValue(v)) => serializer.serialize_str(v),
            Some(Kind::BoolValue(v)) => serializer.serialize_bool(*v),
            Some(Kind::TimestampValue(v)) => {
                serializer.serialize_str(&mittari_sdk::time::format_timestamp(*v))
            }
        }
    }
}

/// One cell of a wire column; null when the row is null.
struct CellJson<'a>(&'a pb::Column, usize);

impl Serialize for CellJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use pb::column::Values;
        let CellJson(column, row) = *self;
        if is_null(column, row) {
            return serializer.serialize_none();
        }
        match &column.values {
            Some(Values::Int64Values(v)) => match v.values.get(row) {
                Some(v) => serializer.serialize_i64(*v),
                None => serializer.serialize_none(),
            },
            Some(Values::TimestampValues(v)) => match v.values.get(row) {
                Some(v) => serializer.serialize_str(&mittari_sdk::time::format_timestamp(*v)),
                None => serializer.serialize_none(),
            },
            Some(Values::DoubleValues(v)) => match v.values.get(row) {
                Some(v) => serialize_number(*v, serializer),
                None => serializer.serialize_none(),
            },
            Some(Values::StringValues(v)) => match v.values.get(row) {
                Some(v) => serializer.serialize_str(v),
                None => serializer.serialize_none(),
            },
            Some(Values::BoolValues(v)) => match v.values.get(row) {
                Some(v) => serializer.serialize_bool(*v),
                None => serializer.serialize_none(),
            },
            None => serializer.serialize_none(),
        }
    }
}

/// A table's rows, each an object from column name to cell.
struct TableJson<'a>(&'a pb::Table);

/// One row of a table.
struct RowJson<'a>(&'a pb::Table, usize);

impl Serialize for RowJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.columns.len()))?;
        for column in &self.0.columns {
            map.serialize_entry(&column.name, &CellJson(column, self.1))?;
        }
        map.end()
    }
}

impl Serialize for TableJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let rows = table_rows(self.0);
        let mut seq = serializer.serialize_seq(Some(rows))?;
        for row in 0..rows {
            seq.serialize_element(&RowJson(self.0, row))?;
        }
        seq.end()
    }
}

/// An object with an entry per scalar that `entry` gives a value for.
struct ScalarsJson<'a>(&'a [pb::Scalar], fn(&pb::Scalar) -> Option<Json>);

impl Serialize for ScalarsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for scalar in self.0 {
            if let Some(value) = (self.1)(scalar) {
                map.serialize_entry(&scalar.name, &value)?;
            }
        }
        map.end()
    }
}

/// Result tables by name.
struct TablesJson<'a>(&'a [pb::ResultTable]);

impl Serialize for TablesJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for t in self.0 {
            match &t.table {
                Some(table) => map.serialize_entry(&t.name, &TableJson(table))?,
                None => map.serialize_entry(&t.name, &Json::Null)?,
            }
        }
        map.end()
    }
}

/// Writes the entries of one set of results (scalars, intervals, undefined reasons, units,
/// tables, warnings) into the enclosing object.
fn results_entries<M: SerializeMap>(map: &mut M, results: &pb::Results) -> Result<(), M::Error> {
    let scalars = results.scalars.as_slice();
    map.serialize_entry(
        "results",
        &ScalarsJson(scalars, |s| Some(s.value.map_or(Json::Null, number))),
    )?;
    if scalars.iter().any(|s| s.confidence_interval.is_some()) {
        let interval = |s: &pb::Scalar| {
            let ci = s.confidence_interval.as_ref()?;
            Some(
                json!({"lower": number(ci.lower), "upper": number(ci.upper), "level": number(ci.level)}),
            )
        };
        map.serialize_entry("confidence_intervals", &ScalarsJson(scalars, interval))?;
    }
    if scalars.iter().any(|s| s.value.is_none()) {
        let reason = |s: &pb::Scalar| s.value.is_none().then(|| json!(s.undefined_reason));
        map.serialize_entry("undefined", &ScalarsJson(scalars, reason))?;
    }
    map.serialize_entry("units", &ScalarsJson(scalars, |s| Some(json!(s.unit))))?;
    if !results.tables.is_empty() {
        map.serialize_entry("tables", &TablesJson(&results.tables))?;
    }
    let warnings: Vec<Json> = results
        .warnings
        .iter()
        .map(|w| json!({"code": w.code, "message": w.message}))
        .collect();
    map.serialize_entry("warnings", &warnings)
}

/// A group's key: an object from group column to value.
struct KeyJson<'a>(&'a [(String, Option<pb::Value>)]);

impl Serialize for KeyJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (column, value) in self.0 {
            map.serialize_entry(column, &ValueJson(value.as_ref()))?;
        }
        map.end()
    }
}

/// One group: its key, its rows and its results' entries.
struct GroupJson(GroupView);

impl Serialize for GroupJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("key", &KeyJson(&self.0.key))?;
        map.serialize_entry("rows", &self.0.rows)?;
        results_entries(&mut map, &self.0.results)?;
        map.end()
    }
}

/// The groups of a response, one object each.
struct GroupsJson<'a>(&'a pb::GroupedResults);

impl Serialize for GroupsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.rows.len()))?;
        for group in group_views(self.0) {
            seq.serialize_element(&GroupJson(group))?;
        }
        seq.end()
    }
}

/// The whole response: metric, rows, the results' entries, and the groups.
struct ResponseJson<'a>(&'a pb::ComputeResponse);

impl Serialize for ResponseJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let response = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("metric", &response.metric)?;
        map.serialize_entry("rows", &response.rows)?;
        if let Some(results) = &response.results {
            results_entries(&mut map, results)?;
        }
        if let Some(grouped) = &response.grouped {
            map.serialize_entry("groups", &GroupsJson(grouped))?;
        }
        map.end()
    }
}

/// Writes the response as pretty-printed JSON, and a line end.
pub(crate) fn write_json(response: &pb::ComputeResponse, out: impl Write) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    serde_json::to_writer_pretty(&mut out, &ResponseJson(response))?;
    out.write_all(b"\n")?;
    out.flush()
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
pub(crate) fn table(
    response: &pb::ComputeResponse,
    limit: Option<(&str, usize)>,
    width: Option<usize>,
) -> String {
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
                let interval = match (standard_error(&s.name), interval_text(s)) {
                    (Some(se), ci) if ci.is_empty() => format!("± {} (standard error)", human(se)),
                    (Some(se), ci) => format!("{ci}, ± {} (standard error)", human(se)),
                    (None, ci) => ci,
                };
                vec![s.name.clone(), scalar_text(s), s.unit.clone(), interval]
            })
            .collect();
        out.push_str(&aligned(&headers, &rows));
        // Before the tables, which can be long: a warning is about the numbers above.
        warnings_text(&mut out, "", &results.warnings);
        for t in &results.tables {
            let _ = writeln!(out, "\n{}:", t.name);
            let shown = match limit {
                Some((name, rows)) if name == t.name => rows,
                _ => TABLE_ROWS_SHOWN,
            };
            out.push_str(&json_rows_table(t.table.as_ref(), shown));
        }
    }
    if let Some(grouped) = &response.grouped {
        out.push_str(&grouped_table(grouped, width));
    }
    out
}

/// A column of the grouped table: its name, unit (or interval level) line and cells.
struct GroupedColumn {
    name: String,
    unit: String,
    cells: Vec<String>,
}

/// `n` in superscript digits, for footnote marks.
fn superscript(n: usize) -> String {
    const DIGITS: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    n.to_string()
        .bytes()
        .map(|b| DIGITS[usize::from(b - b'0')])
        .collect()
}

/// One row per group: its key, its rows, each output with its unit on the line under the
/// name and, where the output has intervals, an interval column beside it. An undefined value
/// is `undefined` with a footnote mark, its reason once under the table. With a `width`, the
/// outputs are split into panels no wider (each repeating the key columns), as R prints a wide
/// data frame; the warnings follow.
fn grouped_table(grouped: &pb::GroupedResults, width: Option<usize>) -> String {
    let views: Vec<GroupView> = group_views(grouped).collect();
    let mut keys: Vec<GroupedColumn> = grouped
        .keys
        .iter()
        .enumerate()
        .map(|(k, key)| GroupedColumn {
            name: key.name.clone(),
            unit: String::new(),
            cells: views
                .iter()
                .map(|g| match &g.key[k].1 {
                    None => "(null)".to_owned(),
                    v => value_text(v.as_ref()),
                })
                .collect(),
        })
        .collect();
    keys.push(GroupedColumn {
        name: "rows".into(),
        unit: "count".into(),
        cells: views.iter().map(|g| g.rows.to_string()).collect(),
    });
    // Footnotes: each distinct reason once, with the outputs it is given for, numbered in
    // order of appearance.
    let mut notes: Vec<(Vec<String>, String)> = Vec::new();
    // Each output with its interval column, kept together when panels split.
    let mut outputs: Vec<Vec<GroupedColumn>> = Vec::new();
    for (c, column) in grouped.scalars.iter().enumerate() {
        let mut cells = Vec::with_capacity(views.len());
        let mut intervals = Vec::with_capacity(views.len());
        let mut level = None;
        for g in &views {
            let scalar = &g.results.scalars[c];
            cells.push(match scalar.value {
                // A true/false output (a group comparison's verdict) reads as words.
                Some(value) if column.unit == "flag" => {
                    if value == 1.0 { "yes" } else { "no" }.to_owned()
                }
                Some(value) => human(value),
                None => {
                    let reason = &scalar.undefined_reason;
                    let n = match notes.iter().position(|(_, r)| r == reason) {
                        Some(i) => i,
                        None => {
                            notes.push((Vec::new(), reason.clone()));
                            notes.len() - 1
                        }
                    };
                    if !notes[n].0.contains(&column.name) {
                        notes[n].0.push(column.name.clone());
                    }
                    format!("undefined{}", superscript(n + 1))
                }
            });
            intervals.push(match &scalar.confidence_interval {
                Some(ci) if ci.level > 0.0 => {
                    level.get_or_insert(ci.level);
                    format!("[{}, {}]", human(ci.lower), human(ci.upper))
                }
                _ => String::new(),
            });
        }
        let mut group = vec![GroupedColumn {
            name: column.name.clone(),
            unit: column.unit.clone(),
            cells,
        }];
        if let Some(level) = level {
            group.push(GroupedColumn {
                name: format!("{} interval", column.name),
                unit: format!("{}%", human(100.0 * level)),
                cells: intervals,
            });
        }
        outputs.push(group);
    }
    let column_width = |c: &GroupedColumn| {
        c.cells
            .iter()
            .map(|s| s.chars().count())
            .chain([c.name.chars().count(), c.unit.chars().count()])
            .max()
            .unwrap_or(0)
    };
    let span = |columns: &[&GroupedColumn]| -> usize {
        columns.iter().map(|c| column_width(c) + 2).sum::<usize>()
    };
    // Panels of outputs, each within `width` beside the key columns (at least one output
    // each, however wide).
    let key_refs: Vec<&GroupedColumn> = keys.iter().collect();
    let mut panels: Vec<Vec<&GroupedColumn>> = Vec::new();
    let mut current: Vec<&GroupedColumn> = Vec::new();
    for group in &outputs {
        let refs: Vec<&GroupedColumn> = group.iter().collect();
        let fits = width.is_none_or(|w| span(&key_refs) + span(&current) + span(&refs) <= w);
        if !fits && !current.is_empty() {
            panels.push(std::mem::take(&mut current));
        }
        current.extend(refs);
    }
    panels.push(current);
    let mut out = String::new();
    for (p, panel) in panels.iter().enumerate() {
        if p > 0 {
            out.push('\n');
        }
        let columns: Vec<&GroupedColumn> = key_refs.iter().chain(panel).copied().collect();
        let headers: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let mut rows: Vec<Vec<String>> = vec![columns.iter().map(|c| c.unit.clone()).collect()];
        rows.extend((0..views.len()).map(|g| columns.iter().map(|c| c.cells[g].clone()).collect()));
        out.push_str(&aligned(&headers, &rows));
    }
    for (n, (outputs, reason)) in notes.iter().enumerate() {
        let _ = writeln!(
            out,
            "{} {} undefined: {reason}",
            superscript(n + 1),
            outputs.join(", ")
        );
    }
    // A warning about every group (about the input as a whole) once; others per group.
    let shared: Vec<pb::Warning> = grouped
        .warnings
        .iter()
        .filter(|gw| views.len() > 1 && gw.groups.len() == views.len())
        .filter_map(|gw| gw.warning.clone())
        .collect();
    for g in &views {
        let key: Vec<String> = g
            .key
            .iter()
            .map(|(column, value)| format!("{column}={}", value_text(value.as_ref())))
            .collect();
        let own: Vec<pb::Warning> = g
            .results
            .warnings
            .iter()
            .filter(|w| !shared.contains(w))
            .cloned()
            .collect();
        warnings_text(&mut out, &format!(" [{}]", key.join(", ")), &own);
    }
    warnings_text(&mut out, " [every group]", &shared);
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

/// Scalar outputs as CSV: one row over the whole input, or one per group led by the group's
/// key and row count. A scalar with an interval gets `<name>_lower` and `<name>_upper` columns
/// (empty for a group without one); an undefined value is an empty cell.
pub(crate) fn csv(response: &pb::ComputeResponse) -> String {
    let mut out = String::new();
    if let Some(results) = &response.results {
        let columns: Vec<(&str, bool)> = results
            .scalars
            .iter()
            .map(|s| (s.name.as_str(), s.confidence_interval.is_some()))
            .collect();
        write_csv_header(&mut out, &[], &columns);
        for (i, scalar) in results.scalars.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if let Some(value) = scalar.value {
                push_number(&mut out, value);
            }
            if let Some(ci) = &scalar.confidence_interval {
                out.push(',');
                push_number(&mut out, ci.lower);
                out.push(',');
                push_number(&mut out, ci.upper);
            }
        }
        out.push('\n');
    }
    if let Some(grouped) = &response.grouped {
        let columns: Vec<(&str, bool)> = grouped
            .scalars
            .iter()
            .map(|c| (c.name.as_str(), c.confidence_intervals.is_some()))
            .collect();
        let mut leading: Vec<&str> = grouped.keys.iter().map(|k| k.name.as_str()).collect();
        leading.push("rows");
        write_csv_header(&mut out, &leading, &columns);
        out.reserve(grouped.rows.len() * (16 + 12 * columns.len()));
        for (group, rows) in grouped.rows.iter().enumerate() {
            for key in &grouped.keys {
                push_cell(&mut out, key, group);
                out.push(',');
            }
            out.push_str(itoa::Buffer::new().format(*rows));
            for column in &grouped.scalars {
                out.push(',');
                if let Some(value) = column_scalar_value(column, group) {
                    push_number(&mut out, value);
                }
                if let Some(ci) = &column.confidence_intervals {
                    let has = ci.level.get(group).is_some_and(|l| *l != 0.0);
                    for bound in [&ci.lower, &ci.upper] {
                        out.push(',');
                        if let Some(value) = bound.get(group).filter(|_| has) {
                            push_number(&mut out, *value);
                        }
                    }
                }
            }
            out.push('\n');
        }
    }
    out
}

fn write_csv_header(out: &mut String, leading: &[&str], columns: &[(&str, bool)]) {
    let mut fields: Vec<String> = leading.iter().map(|f| (*f).to_owned()).collect();
    for (name, interval) in columns {
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
}

/// Whether row `row` of a wire column is null.
fn is_null(column: &pb::Column, row: usize) -> bool {
    column
        .null_mask
        .get(row / 8)
        .is_some_and(|b| b & (1 << (row % 8)) != 0)
}

/// Appends row `row` of a wire column as a CSV field, as [`value_text`] writes it.
fn push_cell(out: &mut String, column: &pb::Column, row: usize) {
    use pb::column::Values;
    if is_null(column, row) {
        return;
    }
    match &column.values {
        Some(Values::Int64Values(v)) => {
            if let Some(v) = v.values.get(row) {
                out.push_str(itoa::Buffer::new().format(*v));
            }
        }
        Some(Values::TimestampValues(v)) => {
            if let Some(v) = v.values.get(row) {
                out.push_str(&mittari_sdk::time::format_timestamp(*v));
            }
        }
        Some(Values::DoubleValues(v)) => {
            if let Some(v) = v.values.get(row) {
                push_number(out, *v);
            }
        }
        Some(Values::StringValues(v)) => {
            if let Some(v) = v.values.get(row) {
                push_csv_field(out, v);
            }
        }
        Some(Values::BoolValues(v)) => {
            if let Some(v) = v.values.get(row) {
                out.push_str(if *v { "true" } else { "false" });
            }
        }
        None => {}
    }
}

/// Row `row` of a wire column as a value; `None` for null.
fn column_value(column: &pb::Column, row: usize) -> Option<pb::Value> {
    use pb::column::Values;
    use pb::value::Kind;
    if is_null(column, row) {
        return None;
    }
    let kind = match column.values.as_ref()? {
        Values::Int64Values(v) => Kind::Int64Value(*v.values.get(row)?),
        Values::TimestampValues(v) => Kind::TimestampValue(*v.values.get(row)?),
        Values::DoubleValues(v) => Kind::DoubleValue(*v.values.get(row)?),
        Values::StringValues(v) => Kind::StringValue(v.values.get(row)?.clone()),
        Values::BoolValues(v) => Kind::BoolValue(*v.values.get(row)?),
    };
    Some(pb::Value { kind: Some(kind) })
}

/// Group `group`'s value in a scalar column; `None` when undefined.
fn column_scalar_value(column: &pb::ScalarColumn, group: usize) -> Option<f64> {
    match column.undefined.get(group) {
        Some(&reason) if reason != 0 => None,
        _ => column.values.get(group).copied(),
    }
}

/// Group `group` of a scalar column as a scalar.
fn column_scalar(column: &pb::ScalarColumn, group: usize) -> pb::Scalar {
    let undefined_reason = match column.undefined.get(group) {
        Some(&reason) if reason != 0 => column
            .undefined_reasons
            .get(reason as usize - 1)
            .cloned()
            .unwrap_or_default(),
        _ => String::new(),
    };
    let confidence_interval = column.confidence_intervals.as_ref().and_then(|ci| {
        let level = *ci.level.get(group)?;
        (level != 0.0).then(|| pb::ConfidenceInterval {
            lower: ci.lower.get(group).copied().unwrap_or_default(),
            upper: ci.upper.get(group).copied().unwrap_or_default(),
            level,
        })
    });
    pb::Scalar {
        name: column.name.clone(),
        value: column_scalar_value(column, group),
        unit: column.unit.clone(),
        confidence_interval,
        undefined_reason,
    }
}

/// One group of columnar grouped results, as the renderings that print group by group use it.
pub(crate) struct GroupView {
    /// `(column, value)` per group column; `None` for the null group.
    pub(crate) key: Vec<(String, Option<pb::Value>)>,
    pub(crate) rows: u64,
    pub(crate) results: pb::Results,
}

/// The groups of `grouped`, in order; one pass over the columns, warnings and tables.
pub(crate) fn group_views(grouped: &pb::GroupedResults) -> impl Iterator<Item = GroupView> + '_ {
    // (group, warning) pairs and tables, by group; sorting is stable, so each group's
    // warnings and tables keep their order.
    let mut warnings: Vec<(u32, usize)> = grouped
        .warnings
        .iter()
        .enumerate()
        .flat_map(|(w, gw)| gw.groups.iter().map(move |&g| (g, w)))
        .collect();
    warnings.sort_by_key(|&(group, _)| group);
    let mut tables: Vec<&pb::GroupTable> = grouped.tables.iter().collect();
    tables.sort_by_key(|t| t.group);
    let (mut next_warning, mut next_table) = (0, 0);
    grouped.rows.iter().enumerate().map(move |(group, &rows)| {
        let mut results = pb::Results {
            scalars: grouped
                .scalars
                .iter()
                .map(|c| column_scalar(c, group))
                .collect(),
            ..pb::Results::default()
        };
        while let Some(&(g, w)) = warnings.get(next_warning)
            && g as usize <= group
        {
            if g as usize == group {
                let warning = grouped.warnings[w].warning.clone().unwrap_or_default();
                results.warnings.push(warning);
            }
            next_warning += 1;
        }
        while let Some(table) = tables.get(next_table)
            && table.group as usize <= group
        {
            if table.group as usize == group {
                results.tables.push(pb::ResultTable {
                    name: table.name.clone(),
                    table: table.table.clone(),
                });
            }
            next_table += 1;
        }
        GroupView {
            key: grouped
                .keys
                .iter()
                .map(|k| (k.name.clone(), column_value(k, group)))
                .collect(),
            rows,
            results,
        }
    })
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

/// Declared columns as an aligned table: name, type, required, range, meaning.
fn column_table(columns: &[mittari_sdk::ColumnSpec]) -> String {
    let rows: Vec<Vec<String>> = columns
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
    aligned(
        &["column", "type", "", "range", "meaning"].map(String::from),
        &rows,
    )
}

pub(crate) fn descriptor_text(d: &MetricDescriptor, library: &str) -> String {
    let mut out = format!("{} {} ({library})\n{}\n", d.name, d.version, d.summary);
    if !d.description.is_empty() {
        let _ = writeln!(out, "\n{}", d.description);
    }
    let _ = writeln!(out, "\ninput columns:");
    out.push_str(&column_table(&d.inputs));
    // Tables sent beside the input (--table-input NAME=FILE), each with its columns.
    for table in &d.table_inputs {
        let _ = writeln!(
            out,
            "\ntable input {} ({}; --table-input {}=FILE):\n{}",
            table.name,
            if table.required {
                "required"
            } else {
                "optional"
            },
            table.name,
            table.description
        );
        out.push_str(&column_table(&table.columns));
    }
    if !d.parameters.is_empty() {
        let _ = writeln!(out, "\nparameters:");
        let rows: Vec<Vec<String>> = d
            .parameters
            .iter()
            .map(|p| {
                let allowed =
                    if let Some(table) = p.columns_table.as_ref().filter(|_| p.names_columns) {
                        format!("columns of {table}, comma-separated")
                    } else if p.names_columns {
                        "input columns, comma-separated".to_owned()
                    } else if p.allowed_values.is_empty() {
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
        // The columns of each table that declares them, with their units.
        for table in d.tables.iter().filter(|t| !t.columns.is_empty()) {
            let _ = writeln!(
                out,
                "
{} columns:",
                table.name
            );
            let rows: Vec<Vec<String>> = table
                .columns
                .iter()
                .map(|c| vec![c.name.clone(), c.unit.clone(), c.description.clone()])
                .collect();
            out.push_str(&aligned(
                &["column", "unit", "meaning"].map(String::from),
                &rows,
            ));
        }
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

    /// NPS by region over three groups: `"a,b"` has no interval and no `b`, `north` has both,
    /// `south` has no NPS value; the first and last groups carry a warning.
    fn grouped() -> pb::GroupedResults {
        use pb::column::Values;
        pb::GroupedResults {
            keys: vec![pb::Column {
                name: "region".to_owned(),
                values: Some(Values::StringValues(pb::StringValues {
                    values: vec!["a,b".to_owned(), "north".to_owned(), "south".to_owned()],
                })),
                null_mask: Vec::new(),
            }],
            rows: vec![2, 2, 2],
            scalars: vec![
                pb::ScalarColumn {
                    name: "nps".to_owned(),
                    unit: "points".to_owned(),
                    values: vec![40.0, -12.5, 0.0],
                    undefined: vec![0, 0, 1],
                    undefined_reasons: vec!["no responses".to_owned()],
                    confidence_intervals: Some(pb::ConfidenceIntervals {
                        lower: vec![0.0, -30.25, 0.0],
                        upper: vec![0.0, 5.0, 0.0],
                        level: vec![0.0, 0.95, 0.0],
                    }),
                },
                pb::ScalarColumn {
                    name: "b".to_owned(),
                    unit: String::new(),
                    values: vec![0.0, 1e-300, 3.0],
                    undefined: vec![1, 0, 0],
                    undefined_reasons: vec!["no value".to_owned()],
                    confidence_intervals: None,
                },
            ],
            warnings: vec![pb::GroupedWarning {
                warning: Some(pb::Warning {
                    code: "small_sample".to_owned(),
                    message: "only 2".to_owned(),
                }),
                groups: vec![0, 2],
            }],
            tables: Vec::new(),
        }
    }

    fn check_grouped_table(width: Option<usize>, expect: &str) {
        let response = pb::ComputeResponse {
            metric: "nps".to_owned(),
            results: None,
            grouped: Some(grouped()),
            rows: 6,
        };
        assert_eq!(table(&response, None, width), expect);
    }

    #[test]
    fn grouped_tables_keep_units_and_intervals_and_footnote_undefined_values() {
        check_grouped_table(
            None,
            "nps over 6 rows\n\
             region  rows   nps         nps interval  b\n\
             \x20       count  points      95%\n\
             a,b     2      40                        undefined²\n\
             north   2      -12.5       [-30.25, 5]   0\n\
             south   2      undefined¹                3\n\
             ¹ nps undefined: no responses\n\
             ² b undefined: no value\n\
             warning [region=a,b]: only 2 (small_sample)\n\
             warning [region=south]: only 2 (small_sample)\n",
        );
        // Narrower than the whole: the outputs go to panels that fit, each with the keys.
        check_grouped_table(
            Some(40),
            "nps over 6 rows\n\
             region  rows   nps         nps interval\n\
             \x20       count  points      95%\n\
             a,b     2      40\n\
             north   2      -12.5       [-30.25, 5]\n\
             south   2      undefined¹\n\
             \n\
             region  rows   b\n\
             \x20       count\n\
             a,b     2      undefined²\n\
             north   2      0\n\
             south   2      3\n\
             ¹ nps undefined: no responses\n\
             ² b undefined: no value\n\
             warning [region=a,b]: only 2 (small_sample)\n\
             warning [region=south]: only 2 (small_sample)\n",
        );
    }

    fn check_csv(response: pb::ComputeResponse, expect: &str) {
        assert_eq!(csv(&response), expect);
    }

    #[test]
    fn csv_has_a_row_per_group_with_empty_cells_for_what_a_group_lacks() {
        check_csv(
            pb::ComputeResponse {
                metric: "nps".to_owned(),
                results: None,
                grouped: Some(grouped()),
                rows: 6,
            },
            "region,rows,nps,nps_lower,nps_upper,b\n\
             \"a,b\",2,40,,,\n\
             north,2,-12.5,-30.25,5,1e-300\n\
             south,2,,,,3\n",
        );
    }

    #[test]
    fn group_views_give_each_group_its_scalars_and_warnings() {
        let grouped = grouped();
        let views: Vec<(String, Vec<String>, usize)> = group_views(&grouped)
            .map(|g| {
                (
                    value_text(g.key[0].1.as_ref()),
                    g.results
                        .scalars
                        .iter()
                        .map(|s| {
                            let text =
                                format!("{}={} {}", s.name, scalar_text(s), interval_text(s));
                            text.trim_end().to_owned()
                        })
                        .collect(),
                    g.results.warnings.len(),
                )
            })
            .collect();
        let s = |v: &[&str]| v.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            views,
            vec![
                ("a,b".to_owned(), s(&["nps=40", "b=undefined: no value"]), 1),
                (
                    "north".to_owned(),
                    s(&["nps=-12.5 95% [-30.25, 5]", "b=0"]),
                    0
                ),
                (
                    "south".to_owned(),
                    s(&["nps=undefined: no responses", "b=3"]),
                    1
                ),
            ]
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
                grouped: None,
                rows: 4,
            },
            "nps,nps_lower,nps_upper\n25,-1.5,51.5\n",
        );
    }
}
