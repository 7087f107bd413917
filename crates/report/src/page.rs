//! The HTML page: a header, a contents list, one section per metric, and the metrics left
//! out. Style is inline and there is no script: the file opens anywhere, offline, and prints.

use std::fmt::Write as _;

use crate::{Chart, Report};

/// One metric's part of the report.
#[derive(Debug, Clone)]
pub struct Section {
    /// The HTML id, lowercase with dashes.
    pub id: String,
    pub title: String,
    /// What the numbers mean for the business, in a sentence or two.
    pub lead: String,
    /// The section's key figures for the top of the page: (what, value).
    pub headline: Vec<(String, String)>,
    /// The metric's warnings, in words, shown under the lead before any number.
    pub warnings: Vec<String>,
    /// Tables and charts in page order, each table before the chart drawn from it.
    pub blocks: Vec<Block>,
}

/// A part of a section.
#[derive(Debug, Clone)]
pub enum Block {
    Numbers(Numbers),
    Chart(Chart),
}

impl Section {
    pub(crate) fn new(id: &str, title: &str, lead: impl Into<String>) -> Section {
        Section {
            id: id.to_owned(),
            title: title.to_owned(),
            lead: lead.into(),
            headline: Vec::new(),
            warnings: Vec::new(),
            blocks: Vec::new(),
        }
    }

    /// A section of tables followed by charts.
    pub(crate) fn of(
        (id, title, lead): (&str, &str, String),
        numbers: Vec<Numbers>,
        charts: Vec<Chart>,
    ) -> Section {
        let mut section = Section::new(id, title, lead);
        section
            .blocks
            .extend(numbers.into_iter().map(Block::Numbers));
        section.blocks.extend(charts.into_iter().map(Block::Chart));
        section
    }

    /// A warning a reader must see before the numbers.
    pub(crate) fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }

    pub(crate) fn numbers(&mut self, numbers: Numbers) {
        self.blocks.push(Block::Numbers(numbers));
    }

    pub(crate) fn chart(&mut self, chart: Chart) {
        self.blocks.push(Block::Chart(chart));
    }

    /// A key figure, when the metric gave it.
    pub(crate) fn headline(&mut self, what: &str, value: Option<f64>, unit: &str) {
        if value.is_some() {
            self.headline
                .push((what.to_owned(), format_value(value, unit)));
        }
    }

    pub fn charts(&self) -> impl Iterator<Item = &Chart> {
        self.blocks.iter().filter_map(|b| match b {
            Block::Chart(chart) => Some(chart),
            Block::Numbers(_) => None,
        })
    }
}

/// A small table of numbers, already formatted.
#[derive(Debug, Clone)]
pub struct Numbers {
    pub caption: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Numbers {
    /// Scalar outputs `names` of `results` with their meaning from the descriptor; outputs
    /// the results lack are left out, undefined ones say why. A column of intervals is added
    /// when any of them has one.
    pub(crate) fn outputs(
        caption: impl Into<String>,
        descriptor: &mittari_engine::MetricDescriptor,
        results: &mittari_engine::MetricResults,
        names: &[&str],
    ) -> Numbers {
        let shown: Vec<(&mittari_engine::ResultScalar, &mittari_engine::OutputSpec)> = names
            .iter()
            .filter_map(|name| {
                let scalar = results.scalars.iter().find(|s| s.name == *name)?;
                Some((scalar, descriptor.output_spec(name)?))
            })
            .collect();
        let intervals = shown.iter().any(|(s, _)| s.confidence_interval.is_some());
        let rows =
            shown
                .iter()
                .map(|(scalar, spec)| {
                    let value = match (&scalar.value, &scalar.undefined_reason) {
                        (None, Some(reason)) => format!("undefined: {reason}"),
                        _ => format_value(scalar.value, &spec.unit),
                    };
                    let mut row = vec![scalar.name.clone(), value];
                    if intervals {
                        row.push(scalar.confidence_interval.as_ref().map_or_else(
                            String::new,
                            |ci| {
                                format!(
                                    "{} %: {} to {}",
                                    grouped(100.0 * ci.level, 0),
                                    format_value(Some(ci.lower), &spec.unit),
                                    format_value(Some(ci.upper), &spec.unit)
                                )
                            },
                        ));
                    }
                    row.push(spec.description.clone());
                    row
                })
                .collect();
        let mut header = vec!["output".to_owned(), "value".to_owned()];
        if intervals {
            header.push("interval".to_owned());
        }
        header.push("meaning".to_owned());
        Numbers {
            caption: caption.into(),
            header,
            rows,
        }
    }
}

/// HTML text with `&`, `<`, `>` and quotes escaped.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A value as the page shows it: thousands grouped, as many decimals as the unit needs.
pub(crate) fn format_value(value: Option<f64>, unit: &str) -> String {
    let Some(v) = value else {
        return "–".to_owned();
    };
    match unit {
        "count" | "customers" => grouped(v, if v.fract() == 0.0 { 0 } else { 1 }),
        "currency" => grouped(v, 2),
        "%" => format!("{} %", grouped(v, 1)),
        "points" => grouped(v, 1),
        "periods" | "per year" | "transactions" | "time units" | "opportunities" => grouped(v, 2),
        "probability" => grouped(v, 3),
        // Waiting times read best in minutes below an hour.
        "hours" if v.abs() < 1.0 => format!("{} min", grouped(60.0 * v, 1)),
        "hours" => format!("{} h", grouped(v, 1)),
        _ => significant(v),
    }
}

/// Four significant digits, for model parameters.
fn significant(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    // Beyond what digits can show readably: 4 significant digits and a power of ten.
    if !(1e-4..1e9).contains(&v.abs()) {
        let text = format!("{:.3e}", v.abs());
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        let sign = if v < 0.0 { "−" } else { "" };
        let exponent = exponent.replace('-', "−");
        return format!("{sign}{mantissa} × 10^{exponent}");
    }
    let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
    grouped(v, digits)
}

/// `v` with `decimals` decimals and a thin space between groups of thousands.
pub(crate) fn grouped(v: f64, decimals: usize) -> String {
    let text = format!("{:.*}", decimals, v.abs());
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let mut out = String::new();
    if v < 0.0 && text.bytes().any(|b| b.is_ascii_digit() && b != b'0') {
        out.push('−');
    }
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push('\u{2009}');
        }
        out.push(c);
    }
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    out
}

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; color: #1d1d1f;
  max-width: 1040px; margin: 0 auto; padding: 24px 32px 64px; line-height: 1.45; }
header { border-bottom: 2px solid #0072b2; margin-bottom: 16px; }
h1 { font-size: 28px; margin: 0 0 4px; }
h2 { font-size: 22px; margin: 40px 0 6px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta, figcaption, .lead { color: #555; }
.lead { max-width: 820px; }
nav ul { padding-left: 20px; columns: 2; }
.scroll { max-width: 100%; overflow-x: auto; }
td small { color: #555; }
table { border-collapse: collapse; margin: 12px 0 20px; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding-bottom: 4px; }
th, td { padding: 4px 12px; border-bottom: 1px solid #e5e5e5; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td { white-space: nowrap; }
td.text, th.text { text-align: left; white-space: normal; color: #555; }
th { background: #f4f6f8; }
figure.chart { margin: 16px 0 28px; break-inside: avoid; }
figure.chart h3 { font-size: 17px; margin: 0 0 6px; }
figure.chart svg { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { max-width: 760px; font-size: 14px; }
.notes li { margin-bottom: 4px; }
.warning { max-width: 820px; border-left: 4px solid #d55e00; background: #fdf3ec;
  padding: 8px 12px; margin: 10px 0; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0 8px; }
.card { display: flex; flex-direction: column; min-width: 150px; padding: 10px 14px;
  border: 1px solid #d8dde3; border-radius: 6px; color: inherit; text-decoration: none; }
.card .value { font-size: 24px; font-weight: 600; color: #0072b2; white-space: nowrap; }
.card .what { font-size: 13px; color: #555; }
@media print { nav { display: none; } h2 { break-before: page; } }
";

pub(crate) fn html(report: &Report) -> String {
    let mut out = String::new();
    let charts = report.charts().count();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Mittari report: {input}</title>\n<style>{STYLE}</style>\n</head>\n\
         <body data-charts=\"{charts}\">\n<header>\n<h1>{title}</h1>\n\
         <p class=\"meta\">{input} · {rows} rows · made by mittari {version}</p>\n</header>\n",
        title = escape(&report.title),
        input = escape(&report.input),
        rows = grouped(report.rows as f64, 0),
        version = env!("CARGO_PKG_VERSION"),
    );
    out.push_str("<nav>\n<ul>\n");
    for section in &report.sections {
        let _ = writeln!(
            out,
            "<li><a href=\"#{}\">{}</a></li>",
            section.id,
            escape(&section.title)
        );
    }
    if !report.not_computed.is_empty() {
        out.push_str("<li><a href=\"#not-computed\">Not computed</a></li>\n");
    }
    out.push_str("</ul>\n</nav>\n");
    glance_html(&mut out, report);
    for section in &report.sections {
        let _ = write!(
            out,
            "<section id=\"{}\">\n<h2>{}</h2>\n<p class=\"lead\">{}</p>\n",
            section.id,
            escape(&section.title),
            escape(&section.lead)
        );
        for warning in &section.warnings {
            let _ = writeln!(
                out,
                "<p class=\"warning\" role=\"note\"><strong>Warning:</strong> {}</p>",
                escape(warning)
            );
        }
        for block in &section.blocks {
            let chart = match block {
                Block::Numbers(numbers) => {
                    numbers_html(&mut out, numbers);
                    continue;
                }
                Block::Chart(chart) => chart,
            };
            let _ = write!(
                out,
                "<figure class=\"chart\" id=\"chart-{id}\">\n<h3>{title}</h3>\n{svg}\n\
                 <figcaption>{caption}</figcaption>\n</figure>\n",
                id = chart.id,
                title = escape(&chart.title),
                svg = chart.svg.trim(),
                caption = escape(&chart.caption),
            );
        }
        out.push_str("</section>\n");
    }
    if !report.not_computed.is_empty() {
        out.push_str(
            "<section id=\"not-computed\" class=\"notes\">\n<h2>Not computed</h2>\n\
             <p class=\"lead\">These metrics read columns this input has, but refused its \
             values; the reason says what to change.</p>\n<ul>\n",
        );
        for (metric, reason) in &report.not_computed {
            let _ = writeln!(
                out,
                "<li><strong>{}</strong>: {}</li>",
                escape(metric),
                escape(reason)
            );
        }
        out.push_str("</ul>\n</section>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// The sections' key figures as cards, each linking to its section.
fn glance_html(out: &mut String, report: &Report) {
    if report.sections.iter().all(|s| s.headline.is_empty()) {
        return;
    }
    out.push_str("<section class=\"glance\">\n<h2>At a glance</h2>\n<div class=\"cards\">\n");
    for section in &report.sections {
        for (what, value) in &section.headline {
            let _ = writeln!(
                out,
                "<a class=\"card\" href=\"#{}\"><span class=\"value\">{}</span>\
                 <span class=\"what\">{}</span></a>",
                section.id,
                escape(value),
                escape(what)
            );
        }
    }
    out.push_str("</div>\n</section>\n");
}

fn numbers_html(out: &mut String, numbers: &Numbers) {
    let _ = write!(
        out,
        "<div class=\"scroll\"><table>\n<caption>{}</caption>\n<thead><tr>",
        escape(&numbers.caption)
    );
    // Explanations read as text, not as figures.
    let class = |column: usize| {
        if numbers.header.get(column).is_some_and(|h| h == "meaning") {
            " class=\"text\""
        } else {
            ""
        }
    };
    for (column, cell) in numbers.header.iter().enumerate() {
        let _ = write!(out, "<th{}>{}</th>", class(column), escape(cell));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &numbers.rows {
        out.push_str("<tr>");
        for (column, cell) in row.iter().enumerate() {
            // A second line (an interval under its value) in small print.
            match cell.split_once('\n') {
                Some((value, under)) => {
                    let _ = write!(
                        out,
                        "<td{}>{}<br><small>{}</small></td>",
                        class(column),
                        escape(value),
                        escape(under)
                    );
                }
                None => {
                    let _ = write!(out, "<td{}>{}</td>", class(column), escape(cell));
                }
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table></div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: Option<f64>, unit: &str, expect: &str) {
        assert_eq!(format_value(value, unit), expect, "{value:?} {unit}");
    }

    #[test]
    fn values_are_formatted_by_unit() {
        check(Some(1234567.891), "currency", "1\u{2009}234\u{2009}567.89");
        check(Some(-1500.0), "currency", "−1\u{2009}500.00");
        check(Some(-0.001), "currency", "0.00");
        check(Some(300.0), "count", "300");
        check(Some(40.8537), "%", "40.9 %");
        check(Some(-12.345), "points", "−12.3");
        check(Some(0.66012), "parameter", "0.6601");
        check(Some(17.8941), "parameter", "17.89");
        check(Some(4467.3), "parameter", "4\u{2009}467");
        // An interval of a parameter the data do not pin down spans hundreds of decades.
        check(Some(9.414_446_9e184), "parameter", "9.414 × 10^184");
        check(Some(1.062e-173), "parameter", "1.062 × 10^−173");
        check(Some(-2.5e12), "parameter", "−2.500 × 10^12");
        check(None, "count", "–");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<b>\"a\" & 'b'</b>"),
            "&lt;b&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/b&gt;"
        );
    }
}
