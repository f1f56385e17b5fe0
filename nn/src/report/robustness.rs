//! The robustness picture: robust accuracy against epsilon, a panel per attack, with
//! labelled axes and a legend in the style of the report's other picture.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::style::{self, COLORS, DrawResult, Figure, ImageFormat};
use super::{PruneReport, ReportError};
use crate::adversarial::Robustness;

const PANEL_WIDTH: u32 = 560;
const HEIGHT: u32 = 440;

impl PruneReport {
    /// Draws robust accuracy (percent) against epsilon (the data's units), one panel per
    /// attack: a line per method and network, one colour per method (dense solid with
    /// circles, pruned dashed with triangles), starting at epsilon 0 from the clean
    /// accuracy.
    ///
    /// # Errors
    /// If no run measured robustness, the font cannot be loaded or the file cannot be
    /// written.
    pub fn draw_robustness(&self, path: &Path) -> Result<(), ReportError> {
        self.draw_robustness_as(path, ImageFormat::Png)
    }

    /// [`draw_robustness`](Self::draw_robustness) in `format`.
    ///
    /// # Errors
    /// If no run measured robustness, the font cannot be loaded or the file cannot be
    /// written.
    pub fn draw_robustness_as(&self, path: &Path, format: ImageFormat) -> Result<(), ReportError> {
        let series = self.robustness_series();
        let Some((_, _, first)) = series.first() else {
            return Err(ReportError::Plot {
                path: path.to_path_buf(),
                reason: "no run measured robustness".into(),
            });
        };
        let attacks = first.curves.iter().map(|c| c.attack.name()).collect();
        style::render(&RobustnessFigure { attacks, series }, path, format)
    }

    /// Every measured network as (method, stage, measurements), in report order.
    fn robustness_series(&self) -> Vec<(&str, &'static str, &Robustness)> {
        self.runs
            .iter()
            .filter_map(|run| Some((run.method.as_str(), run.robustness.as_ref()?)))
            .flat_map(|(method, r)| {
                [
                    Some((method, "dense", &r.dense)),
                    r.pruned.as_ref().map(|p| (method, "pruned", p)),
                ]
            })
            .flatten()
            .collect()
    }
}

/// One panel per attack, side by side.
struct RobustnessFigure<'a> {
    attacks: Vec<String>,
    series: Vec<(&'a str, &'static str, &'a Robustness)>,
}

impl Figure for RobustnessFigure<'_> {
    fn size(&self) -> (u32, u32) {
        let panels = u32::try_from(self.attacks.len().max(1)).unwrap_or(1);
        (PANEL_WIDTH * panels, HEIGHT)
    }

    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let areas = root.split_evenly((1, self.attacks.len().max(1)));
        for (a, (attack, area)) in self.attacks.iter().zip(&areas).enumerate() {
            panel(area, attack, a, &self.series)?;
        }
        Ok(())
    }
}

/// One attack's panel: the `attack`-th curve of every series.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    attack: &str,
    index: usize,
    series: &[(&str, &'static str, &Robustness)],
) -> DrawResult<DB> {
    let x_max = series
        .iter()
        .filter_map(|(_, _, r)| r.curves.get(index))
        .flat_map(|c| c.points.iter().map(|p| f64::from(p.epsilon)))
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.05;
    let mut chart = style::chart(area, &format!("{attack} (L-infinity, untargeted)"))
        .build_cartesian_2d(0.0..x_max, 0.0..100.0)?;
    style::axes(
        &mut chart.configure_mesh(),
        "epsilon (data units)",
        "accuracy (%)",
    )
    .y_label_formatter(&|v| format!("{v:.0}"))
    .draw()?;
    let mut methods: Vec<&str> = Vec::new();
    for (method, _, _) in series {
        if !methods.contains(method) {
            methods.push(method);
        }
    }
    for (method, stage, r) in series {
        let Some(curve) = r.curves.get(index) else {
            continue;
        };
        // NOTE: one colour per method, so its dense and pruned lines read as a pair.
        let method_index = methods.iter().position(|m| m == method).unwrap_or(0);
        let color = COLORS[method_index % COLORS.len()];
        let points: Vec<(f64, f64)> = std::iter::once((0.0, 100.0 * r.clean_accuracy))
            .chain(
                curve
                    .points
                    .iter()
                    .map(|p| (f64::from(p.epsilon), 100.0 * p.accuracy)),
            )
            .collect();
        let style = color.stroke_width(2);
        let label = format!("{method}, {stage}");
        if *stage == "dense" {
            chart
                .draw_series(LineSeries::new(points.clone(), style))?
                .label(label)
                .legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (24, 0)], style)
                        + Circle::new((12, 0), 4, color.filled())
                });
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        } else {
            chart
                .draw_series(DashedLineSeries::new(points.clone(), 8, 5, style))?
                .label(label)
                .legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (7, 0)], style)
                        + PathElement::new(vec![(17, 0), (24, 0)], style)
                        + TriangleMarker::new((12, 0), 5, color.filled())
                });
            chart.draw_series(
                points
                    .iter()
                    .map(|&p| TriangleMarker::new(p, 5, color.filled())),
            )?;
        }
    }
    style::legend(&mut chart, SeriesLabelPosition::UpperRight)
}
