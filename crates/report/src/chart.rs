//! The report's chart kinds, drawn by plotters into SVG text.
//!
//! Every chart is a function of plain numbers (no engine types), so each can be tested alone
//! and the sections only decide what to show. Charts are 760 × 420 SVG with the same palette,
//! fonts and margins, so a page of them reads as one document.

use std::ops::Range;

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

/// Lines over a numeric x axis, with a legend when there is more than one.
pub(crate) fn lines(
    name: &str,
    axes: &Axes<'_>,
    series: &[Series],
    y: Range<f64>,
) -> Result<String> {
    let fail = fail(name);
    let x = padded_range(
        series.iter().flat_map(|s| s.points.iter().map(|p| p.0)),
        None,
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(&fail)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(x.clone(), y.clone())
            .map_err(&fail)?;
        let plain = |v: &f64| number_label(*v);
        let custom = |v: &f64| axes.x_label.map_or_else(|| number_label(*v), |f| f(*v));
        chart
            .configure_mesh()
            .x_desc(axes.x)
            .y_desc(axes.y)
            .x_label_formatter(&custom)
            .y_label_formatter(&plain)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(&fail)?;
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
            chart
                .configure_series_labels()
                .position(if axes.legend_left {
                    SeriesLabelPosition::UpperLeft
                } else {
                    SeriesLabelPosition::UpperRight
                })
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .label_font((FONT, 13))
                .draw()
                .map_err(&fail)?;
        }
        root.present().map_err(&fail)?;
    }
    Ok(svg)
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
    y_desc: &str,
    categories: &[String],
    series: &[(String, Vec<f64>)],
) -> Result<String> {
    let fail = fail(name);
    let mut y = padded_range(series.iter().flat_map(|s| s.1.iter().copied()), Some(0.0));
    if series.len() > 1 {
        // Room above the bars for the legend.
        y.end += (y.end - y.start) * 0.2;
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(&fail)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(category_range(categories.len()), y.clone())
            .map_err(&fail)?;
        let category = |v: &f64| category_label(*v, categories);
        let plain = |v: &f64| number_label(*v);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc(y_desc)
            .x_labels(categories.len())
            .x_label_formatter(&category)
            .y_label_formatter(&plain)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(&fail)?;
        // Bars of one category share 80 % of its width.
        let width = 0.8 / series.len().max(1) as f64;
        for (s, (label, values)) in series.iter().enumerate() {
            let c = color(s);
            chart
                .draw_series(values.iter().enumerate().map(|(i, &v)| {
                    let left = i as f64 - 0.4 + width * s as f64;
                    Rectangle::new([(left, 0.0), (left + width * 0.92, v)], c.filled())
                }))
                .map_err(&fail)?
                .label(label.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .label_font((FONT, 13))
                .draw()
                .map_err(&fail)?;
        }
        root.present().map_err(&fail)?;
    }
    Ok(svg)
}

/// Horizontal bars, largest first from the top: a ranking (price gaps by product).
pub(crate) fn ranked_bars(
    name: &str,
    x_desc: &str,
    categories: &[String],
    values: &[f64],
) -> Result<String> {
    let fail = fail(name);
    let x = padded_range(values.iter().copied(), Some(0.0));
    let n = categories.len();
    // The first category is drawn at the top.
    let reversed: Vec<String> = categories.iter().rev().cloned().collect();
    let label_width = categories
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 24) as u32
        * 8
        + 12;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(&fail)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(label_width)
            .build_cartesian_2d(x.clone(), category_range(n))
            .map_err(&fail)?;
        let category = |v: &f64| category_label(*v, &reversed);
        let plain = |v: &f64| number_label(*v);
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc(x_desc)
            .y_labels(n)
            .y_label_formatter(&category)
            .x_label_formatter(&plain)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(&fail)?;
        chart
            .draw_series(values.iter().enumerate().map(|(i, &v)| {
                let row = (n - 1 - i) as f64;
                Rectangle::new([(0.0, row - 0.38), (v, row + 0.38)], color(0).filled())
            }))
            .map_err(&fail)?;
        root.present().map_err(&fail)?;
    }
    Ok(svg)
}

/// A value per category with its interval as an error bar (NPS by region).
pub(crate) fn intervals(
    name: &str,
    y_desc: &str,
    categories: &[String],
    points: &[(f64, f64, f64)],
) -> Result<String> {
    let fail = fail(name);
    let y = padded_range(points.iter().flat_map(|&(low, _, high)| [low, high]), None);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(&fail)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(category_range(categories.len()), y.clone())
            .map_err(&fail)?;
        let category = |v: &f64| category_label(*v, categories);
        let plain = |v: &f64| number_label(*v);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc(y_desc)
            .x_labels(categories.len())
            .x_label_formatter(&category)
            .y_label_formatter(&plain)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(&fail)?;
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
        root.present().map_err(&fail)?;
    }
    Ok(svg)
}

/// Cells coloured by value (viridis) over two categorical axes, with a colour scale; `None`
/// cells (not observed, or impossible) stay blank.
pub(crate) fn heatmap(
    name: &str,
    axes: (&str, &str),
    x_labels: &[String],
    y_labels: &[String],
    cells: &[Vec<Option<f64>>],
    value_desc: &str,
) -> Result<String> {
    let fail = fail(name);
    let values = cells.iter().flatten().flatten().copied();
    let range = padded_range(values, None);
    let (low, high) = (
        cells
            .iter()
            .flatten()
            .flatten()
            .copied()
            .fold(f64::INFINITY, f64::min),
        cells
            .iter()
            .flatten()
            .flatten()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max),
    );
    let (low, high) = if low.is_finite() && high > low {
        (low, high)
    } else {
        (range.start, range.end)
    };
    let (nx, ny) = (x_labels.len(), y_labels.len());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(&fail)?;
        let (main, scale) = root.split_horizontally(WIDTH - 96);
        let y_label_width = y_labels
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(4)
            .clamp(3, 16) as u32
            * 8
            + 40;
        let mut chart = ChartBuilder::on(&main)
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(y_label_width)
            .build_cartesian_2d(category_range(nx), category_range(ny))
            .map_err(&fail)?;
        // Row 0 at the top, as a table reads.
        let reversed: Vec<String> = y_labels.iter().rev().cloned().collect();
        let x_category = |v: &f64| category_label(*v, x_labels);
        let y_category = |v: &f64| category_label(*v, &reversed);
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(axes.0)
            .y_desc(axes.1)
            .x_labels(nx.min(24))
            .y_labels(ny.min(24))
            .x_label_formatter(&x_category)
            .y_label_formatter(&y_category)
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 14))
            .draw()
            .map_err(&fail)?;
        chart
            .draw_series(cells.iter().enumerate().flat_map(|(row, line)| {
                let y = (ny - 1 - row) as f64;
                line.iter().enumerate().filter_map(move |(x, v)| {
                    v.map(|v| {
                        let x = x as f64;
                        Rectangle::new(
                            [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                            ViridisRGB::get_color_normalized(v, low, high).filled(),
                        )
                    })
                })
            }))
            .map_err(&fail)?;
        if nx <= MAX_LABELLED_CELLS && ny <= MAX_LABELLED_CELLS {
            // Few cells: each says its value, as a cohort table does.
            chart
                .draw_series(cells.iter().enumerate().flat_map(|(row, line)| {
                    let y = (ny - 1 - row) as f64;
                    line.iter().enumerate().filter_map(move |(x, v)| {
                        v.map(|v| {
                            let light = (v - low) / (high - low).max(f64::MIN_POSITIVE) > 0.6;
                            let ink = if light { BLACK } else { WHITE };
                            Text::new(
                                cell_label(v),
                                (x as f64, y),
                                (FONT, 11)
                                    .into_font()
                                    .color(&ink)
                                    .pos(Pos::new(HPos::Center, VPos::Center)),
                            )
                        })
                    })
                }))
                .map_err(&fail)?;
        }
        let mut bar = ChartBuilder::on(&scale)
            .margin_top(14)
            .margin_bottom(58)
            .margin_right(8)
            .y_label_area_size(52)
            .caption(value_desc, (FONT, 12))
            .build_cartesian_2d(0.0..1.0, low..high)
            .map_err(&fail)?;
        let plain = |v: &f64| number_label(*v);
        bar.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_label_formatter(&plain)
            .label_style((FONT, 12))
            .draw()
            .map_err(&fail)?;
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
        root.present().map_err(&fail)?;
    }
    Ok(svg)
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
    fn every_kind_of_chart_draws_marks() {
        let categories: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let drawn = [
            bars(
                "bars",
                "y",
                &categories,
                &[("s".into(), vec![1.0, 2.0, 3.0])],
            ),
            ranked_bars("ranked", "x", &categories, &[3.0, 2.0, 1.0]),
            intervals("intervals", "y", &categories, &[(-1.0, 0.0, 1.0); 3]),
            heatmap(
                "heatmap",
                ("x", "y"),
                &categories,
                &categories,
                &vec![vec![Some(1.0), None, Some(2.0)]; 3],
                "value",
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
