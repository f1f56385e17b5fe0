//! The pruning report: what each method kept, removed and scored, as JSON, Markdown and
//! pictures.
//!
//! A [`PruneReport`] holds one [`RunReport`] per method (the rotated ReLU, and baselines
//! such as the plain ReLU or Network Slimming). [`PruneReport::write`] puts three files
//! next to a checkpoint `model.safetensors`: `model.report.json` (serde),
//! `model.report.md` (the tables [`PruneReport::to_markdown`] prints) and
//! `model.report.png` (gate histograms and the threshold sweeps, see
//! [`PruneReport::draw`]); and, when a run measured adversarial robustness,
//! `model.robustness.png` (robust accuracy against epsilon, see
//! [`PruneReport::draw_robustness`]). [`PruneReport::write_with`] writes the pictures as
//! SVG instead ([`ImageFormat`]).

mod markdown;
mod plot;
mod robustness;
mod style;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::adversarial::Robustness;
use crate::prune::{GateKind, Savings, ZetaChoice};
pub use style::ImageFormat;

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// Writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Encoding or decoding JSON failed.
    #[error("report JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Drawing the picture failed.
    #[error("{path}: drawing failed: {reason}")]
    Plot {
        /// The picture's file.
        path: PathBuf,
        /// What the drawing library reported.
        reason: String,
    },
}

/// Test-set accuracies of one method, each in `[0, 1]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accuracies {
    /// The trained network before pruning.
    pub dense: f64,
    /// Right after pruning (masked or compacted: the same function).
    pub pruned: f64,
    /// After fine-tuning the pruned network, if it was fine-tuned.
    pub finetuned: Option<f64>,
}

/// The magnitudes of one layer's gates in the trained network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateHistogram {
    /// The gate layer's path.
    pub layer: String,
    /// `|a_c|` per channel.
    pub magnitudes: Vec<f32>,
}

/// Inference speed of the dense and the compacted network, measured in the same run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Images classified by each network.
    pub images: usize,
    /// Images per forward pass.
    pub batch_size: usize,
    /// Worker threads.
    pub threads: usize,
    /// Rounds in which the two networks took turns; each network's best round counts.
    pub rounds: usize,
    /// The dense network, images per second.
    pub dense_images_per_second: f64,
    /// The compacted network, images per second.
    pub compacted_images_per_second: f64,
}

/// One method's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The method (`"rotated ReLU"`, `"ReLU"`, `"Network Slimming"`).
    pub method: String,
    /// The gates that decide dead channels (`None`: the network has none).
    pub gate: Option<GateKind>,
    /// The threshold used.
    pub zeta: f32,
    /// How the threshold was chosen, when it was chosen on validation data.
    pub choice: Option<ZetaChoice>,
    /// Test-set accuracies.
    pub accuracy: Accuracies,
    /// Parameters, FLOPs and bytes per layer before and after pruning.
    pub savings: Savings,
    /// The trained gates' magnitudes, per gate layer.
    pub gates: Vec<GateHistogram>,
    /// Dense versus compacted inference speed, if measured.
    pub throughput: Option<Throughput>,
    /// Accuracy under adversarial attack, if measured.
    #[serde(default)]
    pub robustness: Option<RobustnessReport>,
}

/// One method's accuracy under attack, before and after pruning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RobustnessReport {
    /// The trained network.
    pub dense: Robustness,
    /// The pruned network (fine-tuned, if it was); `None` when nothing was pruned.
    pub pruned: Option<Robustness>,
}

impl RunReport {
    /// Removed parameters, percent of all.
    pub fn memory_saving_percent(&self) -> f64 {
        self.savings.memory_saving_percent()
    }

    /// Removed FLOPs, percent of all.
    pub fn compute_saving_percent(&self) -> f64 {
        self.savings.compute_saving_percent()
    }
}

/// The results of every method compared on one dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PruneReport {
    /// The model's name (`"MnistNet"`).
    pub model: String,
    /// The dataset's name.
    pub dataset: String,
    /// One entry per method; the first is the main one.
    pub runs: Vec<RunReport>,
}

/// The files [`PruneReport::write`] and [`PruneReport::write_with`] write: each picture
/// has a path per [`ImageFormat`], and only the chosen format's is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportPaths {
    /// The JSON report.
    pub json: PathBuf,
    /// The Markdown report.
    pub markdown: PathBuf,
    /// The picture as PNG.
    pub png: PathBuf,
    /// The robustness picture as PNG, written only when a run measured robustness.
    pub robustness_png: PathBuf,
    /// The picture as SVG.
    pub svg: PathBuf,
    /// The robustness picture as SVG, written only when a run measured robustness.
    pub robustness_svg: PathBuf,
}

impl ReportPaths {
    /// The paths next to `checkpoint`: its extension replaced by `report.json`,
    /// `report.md`, `report.png`, `robustness.png`, `report.svg` and `robustness.svg`.
    pub fn next_to(checkpoint: &Path) -> Self {
        Self {
            json: checkpoint.with_extension("report.json"),
            markdown: checkpoint.with_extension("report.md"),
            png: checkpoint.with_extension("report.png"),
            robustness_png: checkpoint.with_extension("robustness.png"),
            svg: checkpoint.with_extension("report.svg"),
            robustness_svg: checkpoint.with_extension("robustness.svg"),
        }
    }

    /// The picture's path in `format`.
    pub fn figure(&self, format: ImageFormat) -> &Path {
        match format {
            ImageFormat::Png => &self.png,
            ImageFormat::Svg => &self.svg,
        }
    }

    /// The robustness picture's path in `format`.
    pub fn robustness_figure(&self, format: ImageFormat) -> &Path {
        match format {
            ImageFormat::Png => &self.robustness_png,
            ImageFormat::Svg => &self.robustness_svg,
        }
    }
}

impl PruneReport {
    /// The report as pretty-printed JSON.
    ///
    /// # Errors
    /// If serialisation fails (a non-finite number has no JSON form; it becomes `null`).
    pub fn to_json(&self) -> Result<String, ReportError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// A report read back from [`PruneReport::to_json`]'s output.
    ///
    /// # Errors
    /// If `json` is not a report.
    pub fn from_json(json: &str) -> Result<Self, ReportError> {
        Ok(serde_json::from_str(json)?)
    }

    /// Whether a run measured adversarial robustness.
    pub fn has_robustness(&self) -> bool {
        self.runs.iter().any(|r| r.robustness.is_some())
    }

    /// Writes the JSON, Markdown and PNG reports next to `checkpoint` (see
    /// [`ReportPaths::next_to`]; the robustness picture only if
    /// [`has_robustness`](Self::has_robustness)).
    ///
    /// # Errors
    /// If a file cannot be written or a picture cannot be drawn.
    pub fn write(&self, checkpoint: &Path) -> Result<ReportPaths, ReportError> {
        self.write_with(checkpoint, ImageFormat::Png)
    }

    /// [`write`](Self::write) with the pictures in `format`; the Markdown shows those.
    ///
    /// # Errors
    /// If a file cannot be written or a picture cannot be drawn.
    pub fn write_with(
        &self,
        checkpoint: &Path,
        format: ImageFormat,
    ) -> Result<ReportPaths, ReportError> {
        let paths = ReportPaths::next_to(checkpoint);
        write_file(&paths.json, &self.to_json()?)?;
        let mut markdown = self.to_markdown();
        markdown.push_str(&markdown::figure_section(paths.figure(format)));
        if self.has_robustness() {
            let robustness = paths.robustness_figure(format);
            markdown.push_str(&markdown::robustness_figure_section(robustness));
            self.draw_robustness_as(robustness, format)?;
        }
        write_file(&paths.markdown, &markdown)?;
        self.draw_as(paths.figure(format), format)?;
        Ok(paths)
    }
}

fn write_file(path: &Path, contents: &str) -> Result<(), ReportError> {
    std::fs::write(path, contents).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })
}
