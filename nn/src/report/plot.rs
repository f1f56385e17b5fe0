//! The report's picture: gate histograms and threshold sweeps, drawn without text (no
//! font is needed on the machine that writes it).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{GateHistogram, PruneReport, ReportError};
use crate::prune::ZetaChoice;

const WIDTH: u32 = 800;
const PANEL_HEIGHT: u32 = 160;
const BINS: usize = 40;

type Panel<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

impl PruneReport {
    /// Draws a PNG of stacked panels, top to bottom: for the first method with gates, one
    /// histogram of `|a_c|` per gate layer (blue bars, the threshold as a red line); then
    /// for each method with a threshold sweep, validation accuracy (blue, scaled between
    /// the lowest and the highest accuracy seen, the unpruned accuracy as a grey line)
    /// and computation saving (red, 0 to 100%) against zeta, the chosen zeta in green.
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn draw(&self, path: &Path) -> Result<(), ReportError> {
        let fail = |e: &dyn std::fmt::Display| ReportError::Plot {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let histograms = self
            .runs
            .iter()
            .find(|r| !r.gates.is_empty())
            .map(|r| (r.gates.as_slice(), r.zeta));
        let sweeps: Vec<&ZetaChoice> = self.runs.iter().filter_map(|r| r.choice.as_ref()).collect();
        let chosen: Vec<f32> = self
            .runs
            .iter()
            .filter(|r| r.choice.is_some())
            .map(|r| r.zeta)
            .collect();
        let n_hist = histograms.map_or(0, |(g, _)| g.len());
        let panels = (n_hist + sweeps.len()).max(1);
        let height = PANEL_HEIGHT * u32::try_from(panels).unwrap_or(u32::MAX / PANEL_HEIGHT);
        let root = BitMapBackend::new(path, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let areas = root.split_evenly((panels, 1));
        if let Some((gates, zeta)) = histograms {
            for (gate, area) in gates.iter().zip(&areas) {
                histogram(area, gate, zeta).map_err(|e| fail(&e))?;
            }
        }
        for ((choice, zeta), area) in sweeps.iter().zip(chosen).zip(&areas[n_hist..]) {
            sweep(area, choice, zeta).map_err(|e| fail(&e))?;
        }
        root.present().map_err(|e| fail(&e))
    }
}

type DrawResult =
    Result<(), DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>>;

fn histogram(area: &Panel<'_>, gate: &GateHistogram, zeta: f32) -> DrawResult {
    let top = gate.magnitudes.iter().copied().fold(zeta, f32::max);
    let x_max = if top > 0.0 {
        f64::from(top) * 1.05
    } else {
        1.0
    };
    let width = x_max / BINS as f64;
    let mut counts = [0usize; BINS];
    for &a in &gate.magnitudes {
        let bin = ((f64::from(a) / width) as usize).min(BINS - 1);
        counts[bin] += 1;
    }
    let y_max = counts.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart.draw_series(
        counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, &c)| {
                let x0 = i as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, c as f64)], BLUE.mix(0.7).filled())
            }),
    )?;
    let z = f64::from(zeta);
    chart.draw_series([PathElement::new(
        vec![(z, 0.0), (z, y_max)],
        RED.stroke_width(2),
    )])?;
    chart.draw_series([frame(x_max, y_max)])?;
    Ok(())
}

fn sweep(area: &Panel<'_>, choice: &ZetaChoice, zeta: f32) -> DrawResult {
    let x_max = choice
        .sweep
        .iter()
        .map(|p| f64::from(p.zeta))
        .fold(f64::from(zeta), f64::max)
        .max(1e-3)
        * 1.05;
    let accuracies = choice.sweep.iter().map(|p| p.accuracy);
    let low = accuracies.clone().fold(choice.baseline_accuracy, f64::min);
    let high = accuracies.fold(choice.baseline_accuracy, f64::max);
    let span = (high - low).max(1e-4);
    let scaled = |a: f64| 0.05 + 0.9 * (a - low) / span;
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .build_cartesian_2d(0.0..x_max, 0.0..1.0)?;
    let base = scaled(choice.baseline_accuracy);
    chart.draw_series([PathElement::new(
        vec![(0.0, base), (x_max, base)],
        BLACK.mix(0.3),
    )])?;
    let z = f64::from(zeta);
    chart.draw_series([PathElement::new(
        vec![(z, 0.0), (z, 1.0)],
        GREEN.stroke_width(2),
    )])?;
    let acc: Vec<(f64, f64)> = choice
        .sweep
        .iter()
        .map(|p| (f64::from(p.zeta), scaled(p.accuracy)))
        .collect();
    let saving: Vec<(f64, f64)> = choice
        .sweep
        .iter()
        .map(|p| (f64::from(p.zeta), p.compute_saving_percent / 100.0))
        .collect();
    for (points, color) in [(acc, BLUE), (saving, RED)] {
        chart.draw_series([PathElement::new(points.clone(), color.stroke_width(2))])?;
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )?;
    }
    chart.draw_series([frame(x_max, 1.0)])?;
    Ok(())
}

fn frame(x_max: f64, y_max: f64) -> Rectangle<(f64, f64)> {
    Rectangle::new([(0.0, 0.0), (x_max, y_max)], BLACK.stroke_width(1))
}
