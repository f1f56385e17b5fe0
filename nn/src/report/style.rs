//! What the report's pictures share: the output format, the bundled font, text sizes,
//! colours and the look of a chart's frame, axes and legend, so that every picture reads
//! alike and no font need be installed on the machine that draws one.

use std::path::Path;
use std::sync::OnceLock;

use plotters::chart::MeshStyle;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::ReportError;

/// The file format of the report's pictures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// A bitmap, text rasterised in the bundled DejaVu Sans.
    #[default]
    Png,
    /// Vector graphics; text stays text (`<text>` elements in the reader's sans-serif
    /// font), so it can be searched, copied and scaled.
    Svg,
}

/// The family name the bundled font is registered under; an SVG names it as its font.
pub(super) const FONT: &str = "sans-serif";
/// A picture's headline.
pub(super) const HEADLINE_SIZE: u32 = 24;
/// A panel's title.
pub(super) const TITLE_SIZE: u32 = 20;
/// An axis' description.
pub(super) const AXIS_SIZE: u32 = 16;
/// Tick labels and legend entries.
pub(super) const LABEL_SIZE: u32 = 14;
/// Line colours, one per series: dark and far apart on white.
pub(super) const COLORS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// The result of drawing on a backend.
pub(super) type DrawResult<DB> =
    Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A picture that can be drawn on any backend, so that one drawing serves every
/// [`ImageFormat`].
pub(super) trait Figure {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);

    /// Draws on `root`, already filled white.
    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

/// Writes `figure` to `path` in `format`.
pub(super) fn render(
    figure: &impl Figure,
    path: &Path,
    format: ImageFormat,
) -> Result<(), ReportError> {
    let drawn = register_bundled_font().and_then(|()| match format {
        ImageFormat::Png => present(BitMapBackend::new(path, figure.size()), figure),
        ImageFormat::Svg => present(SVGBackend::new(path, figure.size()), figure),
    });
    drawn.map_err(|reason| ReportError::Plot {
        path: path.to_path_buf(),
        reason,
    })
}

fn present<DB: DrawingBackend>(backend: DB, figure: &impl Figure) -> Result<(), String> {
    let root = backend.into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    figure.draw_on(&root).map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
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

/// A chart on `area` under `title`, with room left of and below the plot for tick labels
/// and axis descriptions.
pub(super) fn chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    title: &str,
) -> ChartBuilder<'a, 'static, DB> {
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(title, (FONT, TITLE_SIZE))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(55);
    builder
}

/// Axes described as `x` and `y`, tick labels in the report's font, light grid lines
/// left out; the caller may add formatters before drawing.
pub(super) fn axes<'m, 'a, 'b, X, Y, DB>(
    mesh: &'m mut MeshStyle<'a, 'b, X, Y, DB>,
    x: &str,
    y: &str,
) -> &'m mut MeshStyle<'a, 'b, X, Y, DB>
where
    X: Ranged + ValueFormatter<X::ValueType>,
    Y: Ranged + ValueFormatter<Y::ValueType>,
    DB: DrawingBackend,
{
    mesh.x_desc(x)
        .y_desc(y)
        .light_line_style(WHITE)
        .label_style((FONT, LABEL_SIZE))
        .axis_desc_style((FONT, AXIS_SIZE))
}

/// Draws the legend of every labelled series at `position`, on a nearly opaque white box
/// so that lines behind it do not cross the text.
pub(super) fn legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> DrawResult<DB>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, LABEL_SIZE))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
}
