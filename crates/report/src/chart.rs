//! The report's chart kinds, drawn by plotters into SVG text.
//!
//! Every chart is a function of plain numbers (no engine types), so each can be tested alone
//! and the sections only decide what to show. Charts are 760 × 420 SVG with the same palette,
//! fonts and margins, so a page of them reads as one document.

use std::ops::Range;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// A drawn chart: its id (the file name under `--charts`), title, caption and SVG.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Lowercase with dashes; `--charts DIR` writes `DIR/<id>.svg`.
    pub id: String,
    pub title: String,
    /// What the chart shows and how to read it, in a sentence or two.
    pub caption: String,
    pub svg: String,
}

/// A chart that plotters could not draw.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw chart {chart}: {message}")]
pub struct ChartError {
    chart: String,
    message: String,
}

impl ChartError {
    pub(crate) fn new(chart: &str, message: impl Into<String>) -> ChartError {
        ChartError {
            chart: chart.to_owned(),
            message: message.into(),
        }
    }
}

const WIDTH: u32 = 760;
const HEIGHT: u32 = 420;
const FONT: &str = "sans-serif";

/// Colour-blind-safe (Okabe–Ito) series colours.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

pub(crate) fn color(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

/// A line of a [`lines`] chart.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) points: Vec<(f64, f64)>,
    pub(crate) color: usize,
    /// Dashed lines are model fits and projections; solid ones are observed.
    pub(crate) dashed: bool,
    /// Observed points are also marked with dots.
    pub(crate) dots: bool,
}

/// Axis titles and, for charts over time, a labelled vertical rule (a holdout's start).
#[derive(Clone, Default)]
pub(crate) struct Axes<'a> {
    pub(crate) x: &'a str,
    pub(crate) y: &'a str,
    pub(crate) rule: Option<(f64, &'a str)>,
    /// Formats x-axis labels; numbers as they are when `None`.
    pub(crate) x_label: Option<&'a dyn Fn(f64) -> String>,
    /// Where the legend goes: the corner the lines leave empty (upper left for rising ones).
    pub(crate) legend_left: bool,
}

type Result<T> = std::result::Result<T, ChartError>;

fn fail<E: std::fmt::Debug>(chart: &str) -> impl Fn(E) -> ChartError + '_ {
    move |e| ChartError {
        chart: chart.to_owned(),
        message: format!("{e:?}"),
    }
}

/// The range of `values` with a margin, always including `floor` when it is given (bars and
/// shares start at zero), never empty.
pub(crate) fn padded_range(
    values: impl IntoIterator<Item = f64>,
    floor: Option<f64>,
) -> Range<f64> {
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        low = low.min(v);
        high = high.max(v);
    }
    if let Some(floor) = floor {
        low = low.min(floor);
        high = high.max(floor);
    }
    if !low.is_finite() {
        return 0.0..1.0;
    }
    let span = if high > low {
        high - low
    } else {
        low.abs().max(1.0)
    };
    let pad = span * 0.06;
    let start = if floor == Some(low) { low } else { low - pad };
    let end = if floor == Some(high) {
        high
    } else {
        high + pad
    };
    start..end
}

type Area<'b> = DrawingArea<SVGBackend<'b>, plotters::coord::Shift>;
type Plot<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws a chart into SVG text: a white canvas, `draw`'s marks, and nothing else.
fn svg(name: &str, draw: impl FnOnce(&Area<'_>) -> Result<()>) -> Result<String> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(fail(name))?;
        draw(&root)?;
        root.present().map_err(fail(name))?;
    }
    Ok(text)
}

/// What a chart's axes say, and which grid lines it has.
struct Mesh<'a> {
    x_desc: &'a str,
    y_desc: &'a str,
    x_label: &'a dyn Fn(&f64) -> String,
    y_label: &'a dyn Fn(&f64) -> String,
    /// How many labels each axis has at most.
    labels: (usize, usize),
    /// Whether the grid has vertical and horizontal lines.
    grid: (bool, bool),
    /// Room for the y-axis labels, in pixels.
    y_label_width: u32,
    /// Blank space around the plot, in pixels.
    margin: u32,
}

fn plain(v: &f64) -> String {
    number_label(*v)
}

impl<'a> Mesh<'a> {
    fn numbers(x_desc: &'a str, y_desc: &'a str) -> Mesh<'a> {
        Mesh {
            x_desc,
            y_desc,
            x_label: &plain,
            y_label: &plain,
            labels: (10, 10),
            grid: (true, true),
            y_label_width: 64,
            margin: 14,
        }
    }

    /// Categories along x (labelled by `label`, titled `x_desc`), numbers up y, horizontal
    /// grid lines only.
    fn over_categories(
        label: &'a dyn Fn(&f64) -> String,
        n: usize,
        x_desc: &'a str,
        y_desc: &'a str,
    ) -> Mesh<'a> {
        Mesh {
            x_label: label,
            labels: (n, 10),
            grid: (false, true),
            ..Mesh::numbers(x_desc, y_desc)
        }
    }
}

/// A plot over `x` × `y` in `area`, its axes and grid drawn in the report's style.
fn plot<'a, 'b>(
    name: &str,
    area: &'a Area<'b>,
    (x, y): (Range<f64>, Range<f64>),
    mesh: &Mesh<'_>,
) -> Result<Plot<'a, 'b>> {
    let mut chart = ChartBuilder::on(area)
        .margin(mesh.margin)
        .x_label_area_size(44)
        .y_label_area_size(mesh.y_label_width)
        .build_cartesian_2d(x, y)
        .map_err(fail(name))?;
    let mut style = chart.configure_mesh();
    style
        .x_desc(mesh.x_desc)
        .y_desc(mesh.y_desc)
        .x_labels(mesh.labels.0)
        .y_labels(mesh.labels.1)
        .x_label_formatter(mesh.x_label)
        .y_label_formatter(mesh.y_label)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .light_line_style(RGBColor(235, 235, 235));
    if !mesh.grid.0 {
        style.disable_x_mesh();
    }
    if !mesh.grid.1 {
        style.disable_y_mesh();
    }
    style.draw().map_err(fail(name))?;
    Ok(chart)
}

/// The legend of the labelled series, in the upper left or right corner.
fn legend<'a, 'b: 'a>(name: &str, chart: &mut Plot<'a, 'b>, left: bool) -> Result<()> {
    chart
        .configure_series_labels()
        .position(if left {
            SeriesLabelPosition::UpperLeft
        } else {
            SeriesLabelPosition::UpperRight
        })
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font((FONT, 13))
        .draw()
        .map_err(fail(name))
}

/// Lines over a numeric x axis, with a legend when more than one is named.
pub(crate) fn lines(
    name: &str,
    axes: &Axes<'_>,
    series: &[Series],
    y: Range<f64>,
) -> Result<String> {
    let x = padded_range(
        series.iter().flat_map(|s| s.points.iter().map(|p| p.0)),
        None,
    );
    let x_label = |v: &f64| axes.x_label.map_or_else(|| number_label(*v), |f| f(*v));
    let mesh = Mesh {
        x_label: &x_label,
        ..Mesh::numbers(axes.x, axes.y)
    };
    svg(name, |root| {
        let fail = fail(name);
        let mut chart = plot(name, root, (x, y.clone()), &mesh)?;
        if let Some((at, label)) = axes.rule {
            let grey = RGBColor(120, 120, 120);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(at, y.start), (at, y.end)],
                    grey.stroke_width(1),
                )))
                .map_err(&fail)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    label.to_owned(),
                    (at, y.end),
                    (FONT, 13).into_font().color(&grey),
                )))
                .map_err(&fail)?;
        }
        for s in series {
            let style = color(s.color).stroke_width(2);
            let drawn = if s.dashed {
                chart
                    .draw_series(DashedLineSeries::new(s.points.iter().copied(), 6, 4, style))
                    .map_err(&fail)?
            } else {
                chart
                    .draw_series(LineSeries::new(s.points.iter().copied(), style))
                    .map_err(&fail)?
            };
            let c = color(s.color);
            if !s.name.is_empty() {
                drawn.label(s.name.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            }
            if s.dots {
                chart
                    .draw_series(
                        s.points
                            .iter()
                            .map(|&p| Circle::new(p, 3, color(s.color).filled())),
                    )
                    .map_err(&fail)?;
            }
        }
        if series.iter().filter(|s| !s.name.is_empty()).count() > 1 {
            legend(name, &mut chart, axes.legend_left)?;
        }
        Ok(())
    })
}

/// The label of category `v` on an axis where category `i` sits at `i`: plotters places its
/// labels at round numbers, which on such an axis are the categories.
fn category_label(v: f64, categories: &[String]) -> String {
    let i = v.round();
    if (v - i).abs() > 1e-6 || i < 0.0 {
        return String::new();
    }
    categories.get(i as usize).cloned().unwrap_or_default()
}

fn category_range(n: usize) -> Range<f64> {
    -0.5..(n as f64 - 0.5)
}

/// Vertical bars, one per category, in one or a few series side by side.
pub(crate) fn bars(
    name: &str,
    (x_desc, y_desc): (&str, &str),
    categories: &[String],
    series: &[(String, Vec<f64>)],
) -> Result<String> {
    let mut y = padded_range(series.iter().flat_map(|s| s.1.iter().copied()), Some(0.0));
    if series.len() > 1 {
        // Room above the bars for the legend.
        y.end += (y.end - y.start) * 0.2;
    }
    let category = |v: &f64| category_label(*v, categories);
    let mesh = Mesh::over_categories(&category, categories.len(), x_desc, y_desc);
    svg(name, |root| {
        let mut chart = plot(name, root, (category_range(categories.len()), y), &mesh)?;
        // Bars of one category share 80 % of its width.
        let width = 0.8 / series.len().max(1) as f64;
        for (s, (label, values)) in series.iter().enumerate() {
            let c = color(s);
            chart
                .draw_series(values.iter().enumerate().map(|(i, &v)| {
                    let left = i as f64 - 0.4 + width * s as f64;
                    Rectangle::new([(left, 0.0), (left + width * 0.92, v)], c.filled())
                }))
                .map_err(fail(name))?
                .label(label.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        }
        if series.len() > 1 {
            legend(name, &mut chart, false)?;
        }
        Ok(())
    })
}

/// Room for category labels of up to 24 characters at 8 pixels each.
fn label_width(labels: &[String], extra: u32) -> u32 {
    labels
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 24) as u32
        * 8
        + extra
}

/// Horizontal bars, largest first from the top: a ranking (price gaps by product).
pub(crate) fn ranked_bars(
    name: &str,
    x_desc: &str,
    categories: &[String],
    values: &[f64],
) -> Result<String> {
    let n = categories.len();
    // The first category is drawn at the top.
    let reversed: Vec<String> = categories.iter().rev().cloned().collect();
    let category = |v: &f64| category_label(*v, &reversed);
    let mesh = Mesh {
        y_label: &category,
        labels: (10, n),
        grid: (true, false),
        y_label_width: label_width(categories, 12),
        ..Mesh::numbers(x_desc, "")
    };
    let x = padded_range(values.iter().copied(), Some(0.0));
    svg(name, |root| {
        let mut chart = plot(name, root, (x, category_range(n)), &mesh)?;
        chart
            .draw_series(values.iter().enumerate().map(|(i, &v)| {
                let row = (n - 1 - i) as f64;
                Rectangle::new([(0.0, row - 0.38), (v, row + 0.38)], color(0).filled())
            }))
            .map_err(fail(name))?;
        Ok(())
    })
}

/// A value per category with its interval as an error bar (NPS by region).
pub(crate) fn intervals(
    name: &str,
    (x_desc, y_desc): (&str, &str),
    categories: &[String],
    points: &[(f64, f64, f64)],
) -> Result<String> {
    let y = padded_range(points.iter().flat_map(|&(low, _, high)| [low, high]), None);
    let category = |v: &f64| category_label(*v, categories);
    let mesh = Mesh::over_categories(&category, categories.len(), x_desc, y_desc);
    svg(name, |root| {
        let fail = fail(name);
        let mut chart = plot(
            name,
            root,
            (category_range(categories.len()), y.clone()),
            &mesh,
        )?;
        if y.start < 0.0 && y.end > 0.0 {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(-0.5, 0.0), (categories.len() as f64 - 0.5, 0.0)],
                    RGBColor(150, 150, 150).stroke_width(1),
                )))
                .map_err(&fail)?;
        }
        chart
            .draw_series(points.iter().enumerate().map(|(i, &(low, mid, high))| {
                ErrorBar::new_vertical(i as f64, low, mid, high, color(0).stroke_width(2), 14)
            }))
            .map_err(&fail)?;
        Ok(())
    })
}

/// Values whose spread is below this share of their magnitude are one colour: a scale
/// stretched over less would show rounding as a finding (every tick reading "1.00").
const LEAST_COLOURED_SPREAD: f64 = 0.01;

/// The values the colour scale runs between: `domain` when the quantity has a natural range
/// (a probability, a percentage), else the data's, but never narrower than
/// [`LEAST_COLOURED_SPREAD`] of their magnitude.
fn colour_domain(
    values: impl Iterator<Item = f64> + Clone,
    domain: Option<(f64, f64)>,
) -> (f64, f64) {
    if let Some(domain) = domain {
        return domain;
    }
    let (low, high) = (
        values.clone().fold(f64::INFINITY, f64::min),
        values.clone().fold(f64::NEG_INFINITY, f64::max),
    );
    if !low.is_finite() || !high.is_finite() {
        let range = padded_range(values, None);
        return (range.start, range.end);
    }
    let least = LEAST_COLOURED_SPREAD * low.abs().max(high.abs()).max(1e-9);
    if high - low >= least {
        (low, high)
    } else {
        let middle = (low + high) / 2.0;
        (middle - least / 2.0, middle + least / 2.0)
    }
}

/// Cells coloured by value (viridis) over two categorical axes, with a colour scale running
/// over `domain` (or the values'); `None` cells (not observed, or impossible) stay blank.
pub(crate) fn heatmap(
    name: &str,
    axes: (&str, &str),
    x_labels: &[String],
    y_labels: &[String],
    cells: &[Vec<Option<f64>>],
    (value_desc, domain): (&str, Option<(f64, f64)>),
) -> Result<String> {
    let values = || cells.iter().flatten().flatten().copied();
    let (low, high) = colour_domain(values(), domain);
    let (nx, ny) = (x_labels.len(), y_labels.len());
    // Row 0 at the top, as a table reads.
    let reversed: Vec<String> = y_labels.iter().rev().cloned().collect();
    let x_category = |v: &f64| category_label(*v, x_labels);
    let y_category = |v: &f64| category_label(*v, &reversed);
    let mesh = Mesh {
        x_label: &x_category,
        y_label: &y_category,
        labels: (nx.min(24), ny.min(24)),
        grid: (false, false),
        y_label_width: label_width(y_labels, 40),
        ..Mesh::numbers(axes.0, axes.1)
    };
    let scale_mesh = Mesh {
        labels: (0, 10),
        grid: (false, false),
        y_label_width: 40,
        margin: 4,
        ..Mesh::numbers("", "")
    };
    svg(name, |root| {
        let fail = fail(name);
        let (main, scale) = root.split_horizontally(WIDTH - 96);
        let mut chart = plot(name, &main, (category_range(nx), category_range(ny)), &mesh)?;
        let cell = |row: usize, x: usize, v: f64| ((x as f64), (ny - 1 - row) as f64, v);
        let filled = || {
            cells.iter().enumerate().flat_map(move |(row, line)| {
                line.iter()
                    .enumerate()
                    .filter_map(move |(x, v)| v.map(|v| cell(row, x, v)))
            })
        };
        chart
            .draw_series(filled().map(|(x, y, v)| {
                Rectangle::new(
                    [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                    ViridisRGB::get_color_normalized(v, low, high).filled(),
                )
            }))
            .map_err(&fail)?;
        if nx <= MAX_LABELLED_CELLS && ny <= MAX_LABELLED_CELLS {
            // Few cells: each says its value, as a cohort table does.
            chart
                .draw_series(filled().map(|(x, y, v)| {
                    let light = (v - low) / (high - low).max(f64::MIN_POSITIVE) > 0.6;
                    let ink = if light { BLACK } else { WHITE };
                    Text::new(
                        cell_label(v),
                        (x, y),
                        (FONT, 11)
                            .into_font()
                            .color(&ink)
                            .pos(Pos::new(HPos::Center, VPos::Center)),
                    )
                }))
                .map_err(&fail)?;
        }
        let scale = scale.margin(10, 0, 0, 8);
        scale
            .draw(&Text::new(
                value_desc.to_owned(),
                (8, 14),
                (FONT, 12).into_font(),
            ))
            .map_err(&fail)?;
        let scale = scale.margin(26, 10, 0, 0);
        let mut bar = plot(name, &scale, (0.0..1.0, low..high), &scale_mesh)?;
        let steps = 64;
        bar.draw_series((0..steps).map(|i| {
            let a = low + (high - low) * i as f64 / steps as f64;
            let b = low + (high - low) * (i + 1) as f64 / steps as f64;
            Rectangle::new(
                [(0.0, a), (1.0, b)],
                ViridisRGB::get_color_normalized((a + b) / 2.0, low, high).filled(),
            )
        }))
        .map_err(&fail)?;
        Ok(())
    })
}

/// Heatmaps with at most this many rows and columns print each cell's value.
const MAX_LABELLED_CELLS: usize = 16;

/// A heatmap cell's value: whole numbers from 10 up, two digits below.
fn cell_label(v: f64) -> String {
    if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// An axis label: whole numbers without decimals, others with as few as tell them apart.
pub(crate) fn number_label(v: f64) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    let magnitude = v.abs();
    if magnitude >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if magnitude >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else if magnitude >= 10.0 {
        format!("{v:.1}")
    } else if magnitude >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_label(v: f64, expect: &str) {
        assert_eq!(number_label(v), expect, "{v}");
    }

    #[test]
    fn axis_labels_are_short() {
        check_label(0.0, "0");
        check_label(20.0, "20");
        check_label(-40.0, "-40");
        check_label(2.5, "2.50");
        check_label(12.25, "12.2");
        check_label(0.05, "0.050");
        check_label(25_000.0, "25k");
        check_label(1_250_000.0, "1.2M");
    }

    #[test]
    fn categories_label_only_their_own_position() {
        let categories = ["north".to_owned(), "south".to_owned()];
        assert_eq!(category_label(0.0, &categories), "north");
        assert_eq!(category_label(1.0, &categories), "south");
        assert_eq!(category_label(0.5, &categories), "");
        assert_eq!(category_label(2.0, &categories), "");
        assert_eq!(category_label(-1.0, &categories), "");
    }

    #[test]
    fn ranges_have_margins_and_keep_their_floor() {
        assert_eq!(padded_range([10.0, 20.0], Some(0.0)), 0.0..21.2);
        assert_eq!(padded_range([-10.0, 10.0], None), -11.2..11.2);
        assert_eq!(padded_range([f64::NAN], None), 0.0..1.0);
        // One value: a band of 6 % of it either side.
        let single = padded_range([5.0], None);
        assert!((single.start - 4.7).abs() < 1e-12 && (single.end - 5.3).abs() < 1e-12);
    }

    #[test]
    fn bars_and_intervals_title_both_axes() {
        let categories: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        for svg in [
            bars(
                "bars",
                ("tier", "share"),
                &categories,
                &[("s".into(), vec![1.0, 2.0])],
            ),
            intervals(
                "intervals",
                ("tier", "share"),
                &categories,
                &[(0.0, 1.0, 2.0); 2],
            ),
        ] {
            let svg = svg.unwrap();
            assert!(
                svg.contains("\ntier\n</text>") && svg.contains("\nshare\n</text>"),
                "{svg}"
            );
        }
    }

    #[test]
    fn colour_scales_never_stretch_over_rounding() {
        let check = |values: &[f64], domain, expect: (f64, f64)| {
            let (low, high) = colour_domain(values.iter().copied(), domain);
            assert!(
                (low - expect.0).abs() < 1e-12 && (high - expect.1).abs() < 1e-12,
                "{values:?}: ({low}, {high}), expected {expect:?}"
            );
        };
        // P(alive) of a degenerate fit: all but 1, differing in the fifth decimal.
        check(&[0.99991, 0.99999, 1.0], Some((0.0, 1.0)), (0.0, 1.0));
        check(&[0.99991, 0.99999, 1.0], None, (0.994955, 1.004955));
        check(&[2.0, 5.0], None, (2.0, 5.0));
        check(&[-3.0, -3.0], None, (-3.015, -2.985));
    }

    #[test]
    fn every_kind_of_chart_draws_marks() {
        let categories: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let drawn = [
            bars(
                "bars",
                ("x", "y"),
                &categories,
                &[("s".into(), vec![1.0, 2.0, 3.0])],
            ),
            ranked_bars("ranked", "x", &categories, &[3.0, 2.0, 1.0]),
            intervals("intervals", ("x", "y"), &categories, &[(-1.0, 0.0, 1.0); 3]),
            heatmap(
                "heatmap",
                ("x", "y"),
                &categories,
                &categories,
                &vec![vec![Some(1.0), None, Some(2.0)]; 3],
                ("value", None),
            ),
            lines(
                "lines",
                &Axes::default(),
                &[Series {
                    name: "s".into(),
                    points: vec![(0.0, 1.0), (1.0, 2.0)],
                    color: 0,
                    dashed: true,
                    dots: true,
                }],
                0.0..3.0,
            ),
        ];
        for svg in drawn {
            let svg = svg.unwrap_or_else(|e| panic!("{e}"));
            assert!(svg.starts_with("<svg"), "{svg}");

            assert!(
                svg.matches("<rect").count() + svg.matches("<circle").count() >= 3,
                "{svg}"
            );
        }
    }
}
