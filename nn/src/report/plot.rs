//! The report's main picture: gate histograms and threshold sweeps, each panel titled,
//! with described axes, tick labels and a legend, so that it reads without the Markdown
//! beside it.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::style::{self, COLORS, DrawResult, FONT, Figure, HEADLINE_SIZE, ImageFormat};
use super::{GateHistogram, PruneReport, ReportError};
use crate::prune::{GateKind, ZetaChoice};

const PANEL_WIDTH: u32 = 560;
const PANEL_HEIGHT: u32 = 420;
/// The band above the panels that holds the picture's headline.
const HEADLINE_HEIGHT: u32 = 44;
const COLUMNS: usize = 2;
const BINS: usize = 40;
/// The part of a panel's height its data may fill; the legend sits in the rest, above.
const DATA_HEIGHT: f64 = 0.62;

const BARS: RGBColor = COLORS[0];
const ZETA: RGBColor = COLORS[2];
const ACCURACY: RGBColor = COLORS[0];
const COMPUTE: RGBColor = COLORS[1];
const MEMORY: RGBColor = COLORS[3];
const BASELINE: RGBColor = RGBColor(128, 128, 128);

impl PruneReport {
    /// Draws a PNG under the headline "Pruning report: model on dataset", panels two to
    /// a row: for the first method with gates, a histogram of the gate magnitudes per gate
    /// layer, the threshold as a line; then for each method with a threshold sweep,
    /// validation accuracy (left axis) and the computation and memory savings (right
    /// axis) against zeta, the unpruned accuracy and the chosen zeta as lines.
    ///
    /// # Errors
    /// If the font cannot be loaded or the file cannot be written.
    pub fn draw(&self, path: &Path) -> Result<(), ReportError> {
        self.draw_as(path, ImageFormat::Png)
    }

    /// [`draw`](Self::draw) in `format`.
    ///
    /// # Errors
    /// If the font cannot be loaded or the file cannot be written.
    pub fn draw_as(&self, path: &Path, format: ImageFormat) -> Result<(), ReportError> {
        let mut panels: Vec<Panel<'_>> = Vec::new();
        if let Some(run) = self.runs.iter().find(|r| !r.gates.is_empty()) {
            panels.extend(run.gates.iter().map(|gates| Panel::Histogram {
                method: &run.method,
                kind: run.gate,
                gates,
                zeta: run.zeta,
            }));
        }
        panels.extend(self.runs.iter().filter_map(|run| {
            Some(Panel::Sweep {
                method: &run.method,
                choice: run.choice.as_ref()?,
                zeta: run.zeta,
            })
        }));
        let figure = ReportFigure {
            headline: format!("Pruning report: {} on {}", self.model, self.dataset),
            panels,
        };
        style::render(&figure, path, format)
    }
}

/// The headline above a grid of panels.
struct ReportFigure<'a> {
    headline: String,
    panels: Vec<Panel<'a>>,
}

/// One panel of the grid.
enum Panel<'a> {
    /// One gate layer's magnitudes.
    Histogram {
        method: &'a str,
        kind: Option<GateKind>,
        gates: &'a GateHistogram,
        zeta: f32,
    },
    /// One method's threshold sweep.
    Sweep {
        method: &'a str,
        choice: &'a ZetaChoice,
        zeta: f32,
    },
}

impl ReportFigure<'_> {
    fn grid(&self) -> (usize, usize) {
        let columns = self.panels.len().clamp(1, COLUMNS);
        (self.panels.len().div_ceil(columns).max(1), columns)
    }
}

impl Figure for ReportFigure<'_> {
    fn size(&self) -> (u32, u32) {
        if self.panels.is_empty() {
            return (PANEL_WIDTH, HEADLINE_HEIGHT + 40);
        }
        let (rows, columns) = self.grid();
        let rows = u32::try_from(rows).unwrap_or(u32::MAX / PANEL_HEIGHT);
        let columns = u32::try_from(columns).unwrap_or(1);
        (PANEL_WIDTH * columns, HEADLINE_HEIGHT + PANEL_HEIGHT * rows)
    }

    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let body = root.titled(&self.headline, (FONT, HEADLINE_SIZE))?;
        if self.panels.is_empty() {
            return body.draw(&Text::new(
                "no run has gates or a threshold sweep",
                (20, 20),
                (FONT, style::AXIS_SIZE),
            ));
        }
        for (panel, area) in self.panels.iter().zip(body.split_evenly(self.grid())) {
            match *panel {
                Panel::Histogram {
                    method,
                    kind,
                    gates,
                    zeta,
                } => histogram(&area, method, kind, gates, zeta)?,
                Panel::Sweep {
                    method,
                    choice,
                    zeta,
                } => sweep(&area, method, choice, zeta)?,
            }
        }
        Ok(())
    }
}

fn histogram<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    method: &str,
    kind: Option<GateKind>,
    gates: &GateHistogram,
    zeta: f32,
) -> DrawResult<DB> {
    let top = gates.magnitudes.iter().copied().fold(zeta, f32::max);
    let x_max = if top > 0.0 {
        f64::from(top) * 1.05
    } else {
        1.0
    };
    let width = x_max / BINS as f64;
    let mut counts = [0u32; BINS];
    for &a in &gates.magnitudes {
        let bin = ((f64::from(a) / width) as usize).min(BINS - 1);
        counts[bin] += 1;
    }
    let highest = counts.iter().copied().max().unwrap_or(0).max(1);
    let y_max = (f64::from(highest) / DATA_HEIGHT).ceil() as u32;
    let mut chart = style::chart(area, &format!("{method}: gates of {}", gates.layer))
        .build_cartesian_2d(0.0..x_max, 0..y_max)?;
    let magnitude = match kind {
        Some(GateKind::Slope) => "gate magnitude |slope|",
        Some(GateKind::NormScale) => "gate magnitude |gamma|",
        None => "gate magnitude",
    };
    style::axes(&mut chart.configure_mesh(), magnitude, "channels").draw()?;
    let bars = BARS.mix(0.7).filled();
    chart
        .draw_series(
            counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, &c)| {
                    let x0 = i as f64 * width;
                    Rectangle::new([(x0, 0), (x0 + width, c)], bars)
                }),
        )?
        .label(format!(
            "{} channels, bins of {}",
            gates.magnitudes.len(),
            short(width)
        ))
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 20, y + 6)], bars));
    let z = f64::from(zeta);
    let removed = gates.magnitudes.iter().filter(|a| **a <= zeta).count();
    let line = ZETA.stroke_width(2);
    chart
        .draw_series([PathElement::new(vec![(z, 0), (z, y_max)], line)])?
        .label(format!("chosen zeta = {}: {removed} removed", short(z)))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], line));
    style::legend(&mut chart, SeriesLabelPosition::UpperRight)
}

fn sweep<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    method: &str,
    choice: &ZetaChoice,
    zeta: f32,
) -> DrawResult<DB> {
    let x_max = choice
        .sweep
        .iter()
        .map(|p| f64::from(p.zeta))
        .fold(f64::from(zeta), f64::max)
        .max(1e-3)
        * 1.05;
    let accuracies = choice.sweep.iter().map(|p| 100.0 * p.accuracy);
    let baseline = 100.0 * choice.baseline_accuracy;
    let low = accuracies.clone().fold(baseline, f64::min);
    let high = accuracies.fold(baseline, f64::max);
    let span = (high - low).max(0.1);
    let y_min = low - 0.1 * span;
    let y_top = high + 0.1 * span;
    let y_max = y_min + (y_top - y_min) / DATA_HEIGHT;
    let mut chart = style::chart(area, &format!("{method}: threshold sweep"))
        .right_y_label_area_size(55)
        .build_cartesian_2d(0.0..x_max, y_min..y_max)?
        .set_secondary_coord(0.0..x_max, 0.0..100.0 / DATA_HEIGHT);
    // NOTE: the legend's headroom has no ticks: there they would read as accuracies
    // never measured, or savings above 100%.
    let decimals = if span >= 5.0 { 0 } else { 2 };
    let accuracy_tick = |v: &f64| {
        if *v <= y_top {
            format!("{v:.decimals$}")
        } else {
            String::new()
        }
    };
    let saving_tick = |v: &f64| {
        if *v <= 100.0 {
            format!("{v:.0}")
        } else {
            String::new()
        }
    };
    style::axes(
        &mut chart.configure_mesh(),
        "threshold zeta",
        "validation accuracy (%)",
    )
    .y_label_formatter(&accuracy_tick)
    .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("saving (%)")
        .y_label_formatter(&saving_tick)
        .label_style((FONT, style::LABEL_SIZE))
        .axis_desc_style((FONT, style::AXIS_SIZE))
        .draw()?;

    let grey = BASELINE.stroke_width(1);
    chart
        .draw_series([PathElement::new(
            vec![(0.0, baseline), (x_max, baseline)],
            grey,
        )])?
        .label("unpruned accuracy")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
    let z = f64::from(zeta);
    let green = ZETA.stroke_width(2);
    chart
        .draw_series([PathElement::new(vec![(z, y_min), (z, y_max)], green)])?
        .label(format!("chosen zeta = {}", short(z)))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], green));

    let accuracy: Vec<(f64, f64)> = choice
        .sweep
        .iter()
        .map(|p| (f64::from(p.zeta), 100.0 * p.accuracy))
        .collect();
    let style = ACCURACY.stroke_width(2);
    chart
        .draw_series(LineSeries::new(accuracy.clone(), style))?
        .label("validation accuracy")
        .legend(move |(x, y)| {
            EmptyElement::at((x, y))
                + PathElement::new(vec![(0, 0), (20, 0)], style)
                + Circle::new((10, 0), 4, style.filled())
        });
    chart.draw_series(
        accuracy
            .into_iter()
            .map(|p| Circle::new(p, 4, style.filled())),
    )?;

    let compute: Vec<(f64, f64)> = choice
        .sweep
        .iter()
        .map(|p| (f64::from(p.zeta), p.compute_saving_percent))
        .collect();
    let style = COMPUTE.stroke_width(2);
    chart
        .draw_secondary_series(LineSeries::new(compute.clone(), style))?
        .label("computation saving (right)")
        .legend(move |(x, y)| {
            EmptyElement::at((x, y))
                + PathElement::new(vec![(0, 0), (20, 0)], style)
                + Circle::new((10, 0), 4, style.filled())
        });
    chart.draw_secondary_series(
        compute
            .into_iter()
            .map(|p| Circle::new(p, 4, style.filled())),
    )?;

    let memory: Vec<(f64, f64)> = choice
        .sweep
        .iter()
        .map(|p| (f64::from(p.zeta), p.memory_saving_percent))
        .collect();
    let style = MEMORY.stroke_width(2);
    chart
        .draw_secondary_series(DashedLineSeries::new(memory.clone(), 8, 5, style))?
        .label("memory saving (right)")
        .legend(move |(x, y)| {
            EmptyElement::at((x, y))
                + PathElement::new(vec![(0, 0), (5, 0)], style)
                + PathElement::new(vec![(15, 0), (20, 0)], style)
                + TriangleMarker::new((10, 0), 5, style.filled())
        });
    chart.draw_secondary_series(
        memory
            .into_iter()
            .map(|p| TriangleMarker::new(p, 5, style.filled())),
    )?;
    style::legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// `v` to three significant digits, which tells thresholds apart in a legend without
/// printing the float's full precision.
fn short(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(0, 8) as usize;
    format!("{v:.decimals$}")
}
