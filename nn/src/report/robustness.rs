//! The robustness picture: robust accuracy against epsilon, a panel per attack, with
//! labelled axes and a legend (in a font bundled with the library, so no font need be
//! installed on the machine that draws it).

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::{PruneReport, ReportError};
use crate::adversarial::Robustness;

const PANEL_WIDTH: u32 = 560;
const HEIGHT: u32 = 440;
/// The family name the bundled font is registered under.
const FONT: &str = "sans-serif";
/// Line colours, one per method: dark and far apart on white.
const COLORS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

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
        let fail = |reason: String| ReportError::Plot {
            path: path.to_path_buf(),
            reason,
        };
        let series = self.robustness_series();
        let Some((_, _, first)) = series.first() else {
            return Err(fail("no run measured robustness".into()));
        };
        register_bundled_font().map_err(fail)?;
        let attacks: Vec<String> = first.curves.iter().map(|c| c.attack.name()).collect();
        let panels = u32::try_from(attacks.len().max(1)).unwrap_or(1);
        let root = BitMapBackend::new(path, (PANEL_WIDTH * panels, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
        let areas = root.split_evenly((1, attacks.len().max(1)));
        for (a, (attack, area)) in attacks.iter().zip(&areas).enumerate() {
            panel(area, attack, a, &series).map_err(|e| fail(e.to_string()))?;
        }
        root.present().map_err(|e| fail(e.to_string()))
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

/// Registers DejaVu Sans once per process.
fn register_bundled_font() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
                .map_err(|_| "the bundled DejaVu Sans font did not load".to_string())
        })
        .clone()
}

type DrawResult =
    Result<(), DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>>;

/// One attack's panel: the `attack`-th curve of every series.
fn panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    attack: &str,
    index: usize,
    series: &[(&str, &'static str, &Robustness)],
) -> DrawResult {
    let x_max = series
        .iter()
        .filter_map(|(_, _, r)| r.curves.get(index))
        .flat_map(|c| c.points.iter().map(|p| f64::from(p.epsilon)))
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.05;
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{attack} (L-infinity, untargeted)"), (FONT, 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..x_max, 0.0..100.0)?;
    chart
        .configure_mesh()
        .x_desc("epsilon (data units)")
        .y_desc("accuracy (%)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(WHITE)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
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
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
