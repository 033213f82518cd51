//! The report's charts, drawn with plotters as SVG text.
//!
//! plotters is built without its font features, so it estimates label widths from the
//! character count and the SVG keeps text as `<text>` elements for the browser to render.
//! plotters escapes that text for XML.

use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentedCoord;
use plotters::coord::types::RangedCoordusize;
use plotters::prelude::*;

use crate::error::{Error, Result};

const WIDTH: u32 = 760;
const HEIGHT: u32 = 360;
const FONT: &str = "sans-serif";

/// Colour of predicted values: the curve, its band and predicted bars.
pub const PREDICTED: RGBColor = RGBColor(31, 119, 180);
/// Colour of actual values from the nightly runs.
pub const ACTUAL: RGBColor = RGBColor(214, 96, 0);
/// Colour of the control arm.
pub const CONTROL: RGBColor = RGBColor(110, 110, 110);
/// Colours of features that raise and lower the odds of performing the events.
pub const INCREASE: RGBColor = RGBColor(44, 160, 44);
pub const DECREASE: RGBColor = RGBColor(214, 39, 40);

/// One x position of a daily chart: the day's index from the goal's start and its label.
#[derive(Debug, Clone)]
pub struct Day {
    pub index: i32,
    pub label: String,
}

/// Draws into an SVG string of the default size and returns it.
fn draw_svg(
    chart: &'static str,
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> std::result::Result<(), String>,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let result = root
            .fill(&WHITE)
            .map_err(|error| error.to_string())
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(|error| error.to_string()));
        result.map_err(|message| Error::Chart { chart, message })?;
    }
    Ok(svg)
}

/// Converts a plotters error to the message that [`draw_svg`] reports.
fn message<E: std::fmt::Display>(error: E) -> String {
    error.to_string()
}

/// Returns the label of the day at `index`, or an empty label between days.
fn day_label(days: &[Day], value: f64) -> String {
    let index = value.round();
    if (value - index).abs() > 1e-6 {
        return String::new();
    }
    days.iter()
        .find(|day| f64::from(day.index) == index)
        .map(|day| day.label.clone())
        .unwrap_or_default()
}

/// Draws the predicted cumulative curve with its interval band, and the actual curve when
/// there is one.
pub fn cumulative(
    days: &[Day],
    predicted: &[(i32, f64, f64, f64)],
    actual: &[(i32, f64)],
) -> Result<String> {
    let last_day = days.last().map_or(1, |day| day.index.max(1));
    let top = predicted
        .iter()
        .map(|&(_, _, _, high)| high)
        .chain(actual.iter().map(|&(_, value)| value))
        .fold(1.0_f64, f64::max)
        * 1.05;
    draw_svg("cumulative", |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..f64::from(last_day), 0.0..top)
            .map_err(message)?;
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&|value| day_label(days, *value))
            .y_label_formatter(&|value| format!("{value:.0}"))
            .y_desc("users who performed the events")
            .label_style((FONT, 13))
            .draw()
            .map_err(message)?;

        let mut band: Vec<(f64, f64)> = predicted
            .iter()
            .map(|&(index, _, low, _)| (f64::from(index), low))
            .collect();
        band.extend(
            predicted
                .iter()
                .rev()
                .map(|&(index, _, _, high)| (f64::from(index), high)),
        );
        chart
            .draw_series(std::iter::once(Polygon::new(band, PREDICTED.mix(0.2))))
            .map_err(message)?
            .label("90% interval")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 18, y + 5)], PREDICTED.mix(0.2).filled())
            });
        chart
            .draw_series(LineSeries::new(
                predicted
                    .iter()
                    .map(|&(index, expected, _, _)| (f64::from(index), expected)),
                PREDICTED.stroke_width(2),
            ))
            .map_err(message)?
            .label("predicted")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], PREDICTED.stroke_width(2)));
        if !actual.is_empty() {
            chart
                .draw_series(LineSeries::new(
                    actual
                        .iter()
                        .map(|&(index, value)| (f64::from(index), value)),
                    ACTUAL.stroke_width(3),
                ))
                .map_err(message)?
                .label("actual")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], ACTUAL.stroke_width(3)));
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

/// Draws one bar per bucket with its number of users.
pub fn bucket_sizes(buckets: &[(String, i64)]) -> Result<String> {
    let top = buckets.iter().map(|(_, users)| *users).max().unwrap_or(1) as f64 * 1.1;
    let names: Vec<&str> = buckets.iter().map(|(name, _)| name.as_str()).collect();
    draw_svg("bucket_sizes", |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(categories(names.len()), 0.0..top.max(1.0))
            .map_err(message)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|value| segment_label(&names, value))
            .y_label_formatter(&|value| format!("{value:.0}"))
            .y_desc("users")
            .label_style((FONT, 13))
            .draw()
            .map_err(message)?;
        chart
            .draw_series(buckets.iter().enumerate().map(|(index, (_, users))| {
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(index), 0.0),
                        (SegmentValue::Exact(index + 1), *users as f64),
                    ],
                    PREDICTED.filled(),
                );
                bar.set_margin(0, 0, 24, 24);
                bar
            }))
            .map_err(message)?;
        Ok(())
    })
}

/// Draws the predicted rate of each bucket beside its actual rate, when there is one.
pub fn bucket_rates(rates: &[(String, f64, Option<f64>)]) -> Result<String> {
    let top = rates
        .iter()
        .flat_map(|(_, predicted, actual)| [Some(*predicted), *actual])
        .flatten()
        .fold(0.01_f64, f64::max)
        * 1.15;
    let names: Vec<&str> = rates.iter().map(|(name, _, _)| name.as_str()).collect();
    let has_actual = rates.iter().any(|(_, _, actual)| actual.is_some());
    draw_svg("bucket_rates", |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(categories(names.len()), 0.0..top)
            .map_err(message)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|value| segment_label(&names, value))
            .y_label_formatter(&|value| format!("{:.0}%", 100.0 * value))
            .y_desc("share of the bucket's users")
            .label_style((FONT, 13))
            .draw()
            .map_err(message)?;
        // With actuals, each bucket's slot contains two bars: predicted left, actual right.
        let slot = chart.plotting_area().dim_in_pixel().0 / names.len().max(1) as u32;
        let (left, right) = if has_actual {
            (slot / 10, slot / 2 + slot / 50)
        } else {
            (slot / 10, slot / 10)
        };
        chart
            .draw_series(rates.iter().enumerate().map(|(index, (_, predicted, _))| {
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(index), 0.0),
                        (SegmentValue::Exact(index + 1), *predicted),
                    ],
                    PREDICTED.filled(),
                );
                bar.set_margin(0, 0, left, right);
                bar
            }))
            .map_err(message)?
            .label("predicted")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], PREDICTED.filled()));
        if has_actual {
            chart
                .draw_series(
                    rates
                        .iter()
                        .enumerate()
                        .filter_map(|(index, (_, _, actual))| {
                            let mut bar = Rectangle::new(
                                [
                                    (SegmentValue::Exact(index), 0.0),
                                    (SegmentValue::Exact(index + 1), (*actual)?),
                                ],
                                ACTUAL.filled(),
                            );
                            bar.set_margin(0, 0, right, left);
                            Some(bar)
                        }),
                )
                .map_err(message)?
                .label("actual")
                .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], ACTUAL.filled()));
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// Draws the share of users who performed the events over time in the test and control arms.
pub fn arms(days: &[Day], test: &[(i32, f64)], control: &[(i32, f64)]) -> Result<String> {
    let last_day = days.last().map_or(1, |day| day.index.max(1));
    let top = test
        .iter()
        .chain(control)
        .map(|&(_, rate)| rate)
        .fold(0.01_f64, f64::max)
        * 1.1;
    draw_svg("arms", |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..f64::from(last_day), 0.0..top)
            .map_err(message)?;
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&|value| day_label(days, *value))
            .y_label_formatter(&|value| format!("{:.1}%", 100.0 * value))
            .y_desc("share of the arm's users")
            .label_style((FONT, 13))
            .draw()
            .map_err(message)?;
        for (name, points, color) in [("test", test, ACTUAL), ("control", control, CONTROL)] {
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|&(index, rate)| (f64::from(index), rate)),
                    color.stroke_width(2),
                ))
                .map_err(message)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

/// Draws the observed rate against the mean predicted probability of each decile, with the
/// diagonal of perfect calibration.
pub fn calibration(deciles: &[(f64, f64)]) -> Result<String> {
    let top = deciles
        .iter()
        .flat_map(|&(predicted, observed)| [predicted, observed])
        .fold(0.01_f64, f64::max)
        * 1.1;
    let top = top.min(1.0);
    draw_svg("calibration", |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..top, 0.0..top)
            .map_err(message)?;
        chart
            .configure_mesh()
            .x_desc("mean predicted probability")
            .y_desc("observed rate")
            .x_label_formatter(&|value| format!("{:.0}%", 100.0 * value))
            .y_label_formatter(&|value| format!("{:.0}%", 100.0 * value))
            .label_style((FONT, 13))
            .draw()
            .map_err(message)?;
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (top, top)], CONTROL.mix(0.6)))
            .map_err(message)?
            .label("perfect calibration")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], CONTROL.mix(0.6)));
        chart
            .draw_series(LineSeries::new(
                deciles.iter().copied(),
                PREDICTED.stroke_width(2),
            ))
            .map_err(message)?
            .label("deciles of the held-out window")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], PREDICTED.stroke_width(2)));
        chart
            .draw_series(
                deciles
                    .iter()
                    .map(|&point| Circle::new(point, 4, PREDICTED.filled())),
            )
            .map_err(message)?;
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

/// Draws one horizontal bar per feature: its odds ratio per standard deviation, on a log
/// scale centred on 1.
pub fn features(odds_ratios: &[(String, f64)]) -> Result<String> {
    let logs: Vec<f64> = odds_ratios.iter().map(|(_, ratio)| ratio.ln()).collect();
    let reach = logs.iter().fold(0.1_f64, |reach, log| reach.max(log.abs())) * 1.1;
    // The first feature is drawn at the top.
    let names: Vec<&str> = odds_ratios
        .iter()
        .rev()
        .map(|(name, _)| name.as_str())
        .collect();
    draw_svg("features", |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(230)
            .build_cartesian_2d(-reach..reach, categories(names.len()))
            .map_err(message)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc("odds ratio per standard deviation (log scale)")
            .x_label_formatter(&|value| format!("{:.2}", value.exp()))
            .y_label_formatter(&|value| segment_label(&names, value))
            .label_style((FONT, 13))
            .draw()
            .map_err(message)?;
        let rows = logs.len();
        chart
            .draw_series(logs.iter().enumerate().map(|(rank, log)| {
                let row = rows - 1 - rank;
                let color = if *log >= 0.0 { INCREASE } else { DECREASE };
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(row)),
                        (*log, SegmentValue::Exact(row + 1)),
                    ],
                    color.filled(),
                );
                bar.set_margin(3, 3, 0, 0);
                bar
            }))
            .map_err(message)?;
        Ok(())
    })
}

/// Returns a segmented axis of `count` categories. plotters includes the end of an integer
/// range, so `0..count - 1` gives exactly `count` segments.
fn categories(count: usize) -> SegmentedCoord<RangedCoordusize> {
    (0..count.max(1) - 1).into_segmented()
}

fn segment_label(names: &[&str], value: &SegmentValue<usize>) -> String {
    match value {
        SegmentValue::CenterOf(index) => names.get(*index).copied().unwrap_or("").to_string(),
        _ => String::new(),
    }
}

fn draw_legend<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> std::result::Result<(), String>
where
    X: plotters::coord::ranged1d::Ranged,
    Y: plotters::coord::ranged1d::Ranged,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(message)
}
