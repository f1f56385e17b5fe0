//! The report as Markdown tables (also what a command-line program prints).

use std::fmt::Write;
use std::path::Path;

use super::{PruneReport, RunReport};
use crate::adversarial::Robustness;
use crate::prune::SavingsRow;

impl PruneReport {
    /// The report as Markdown: a summary row per method, then per method its layers, its
    /// threshold sweep and its measured speed.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Pruning report: {} on {}\n", self.model, self.dataset);
        md.push_str(
            "| method | zeta | test accuracy dense / pruned / fine-tuned | parameters \
             before / after | memory saving | FLOPs before / after | computation saving |\n\
             |---|---:|---:|---:|---:|---:|---:|\n",
        );
        for run in &self.runs {
            let t = &run.savings.total;
            let _ = writeln!(
                md,
                "| {} | {} | {} / {} / {} | {} / {} | {:.2}% | {} / {} | {:.2}% |",
                run.method,
                run.zeta,
                percent(run.accuracy.dense),
                percent(run.accuracy.pruned),
                run.accuracy.finetuned.map_or("-".into(), percent),
                t.params_before,
                t.params_after,
                run.memory_saving_percent(),
                mflops(t.flops_before),
                mflops(t.flops_after),
                run.compute_saving_percent(),
            );
        }
        robustness_section(&mut md, &self.runs);
        for run in &self.runs {
            run_section(&mut md, run);
        }
        md
    }
}

/// The table of clean and robust accuracies, a row per method and network, and what the
/// attacks cost.
fn robustness_section(md: &mut String, runs: &[RunReport]) {
    let rows: Vec<(&str, &str, &Robustness)> = runs
        .iter()
        .filter_map(|run| Some((run, run.robustness.as_ref()?)))
        .flat_map(|(run, r)| {
            let pruned = r.pruned.as_ref().map(|p| {
                let stage = if run.accuracy.finetuned.is_some() {
                    "pruned, fine-tuned"
                } else {
                    "pruned"
                };
                (run.method.as_str(), stage, p)
            });
            [Some((run.method.as_str(), "dense", &r.dense)), pruned]
        })
        .flatten()
        .collect();
    let Some((_, _, first)) = rows.first() else {
        return;
    };
    let _ = writeln!(
        md,
        "\n## Robustness\n\nAccuracy on {} test images under untargeted L-infinity attacks \
         (evaluation mode, each image moved by at most epsilon in the data's units, then \
         clipped to the valid range).\n",
        first.images
    );
    let columns: Vec<String> = first
        .curves
        .iter()
        .flat_map(|c| {
            c.points
                .iter()
                .map(move |p| format!("{} {}", c.attack.name(), p.epsilon))
        })
        .collect();
    let _ = writeln!(md, "| method | network | clean | {} |", columns.join(" | "));
    let _ = writeln!(md, "|---|---|---:|{}", "---:|".repeat(columns.len()));
    for (method, stage, r) in &rows {
        let cells: Vec<String> = r
            .curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| percent(p.accuracy)))
            .collect();
        let _ = writeln!(
            md,
            "| {method} | {stage} | {} | {} |",
            percent(r.clean_accuracy),
            cells.join(" | ")
        );
    }
    md.push_str("\nCost per image, in forward and backward passes to the input (one pass measured on the clean images of the same run):\n\n");
    for (method, stage, r) in &rows {
        let costs: Vec<String> = r
            .curves
            .iter()
            .map(|c| {
                let passes: Vec<String> = c
                    .points
                    .iter()
                    .map(|p| format!("{:.1}", r.cost_in_gradient_passes(p)))
                    .collect();
                format!("{} {}", c.attack.name(), passes.join(" / "))
            })
            .collect();
        let _ = writeln!(
            md,
            "- {method}, {stage}: one pass {:.3} ms; {}",
            1e3 * r.seconds_per_gradient_pass,
            costs.join("; ")
        );
    }
}

/// The Markdown that shows the main picture written next to it.
pub(super) fn figure_section(figure: &Path) -> String {
    format!(
        "\n## Figure\n\n![gate histograms and threshold sweeps]({})\n",
        file_name(figure)
    )
}

/// The Markdown that shows the robustness picture.
pub(super) fn robustness_figure_section(figure: &Path) -> String {
    format!(
        "\n![robust accuracy against epsilon]({})\n",
        file_name(figure)
    )
}

/// A picture's name as Markdown beside it refers to it.
fn file_name(figure: &Path) -> String {
    figure.file_name().map_or_else(
        || figure.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn run_section(md: &mut String, run: &RunReport) {
    let _ = writeln!(md, "\n## {}\n", run.method);
    let _ = writeln!(
        md,
        "Per example of shape {:?}; FLOPs are twice the multiply-accumulates of \
         convolution and linear layers.\n",
        run.savings.input_shape
    );
    md.push_str(
        "| layer | kind | channels kept | parameters before | after | FLOPs before | after \
         | bytes before | after |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in run.savings.rows.iter().chain([&run.savings.total]) {
        layer_row(md, row);
    }
    if let Some(choice) = &run.choice {
        let _ = writeln!(
            md,
            "\nzeta chosen on the validation split: the largest candidate whose accuracy is \
             at most {} points below the unpruned {}.\n",
            choice.max_drop_points,
            percent(choice.baseline_accuracy)
        );
        md.push_str(
            "| zeta | validation accuracy | computation saving | memory saving |\n\
             |---:|---:|---:|---:|\n",
        );
        for p in &choice.sweep {
            let _ = writeln!(
                md,
                "| {} | {} | {:.2}% | {:.2}% |",
                p.zeta,
                percent(p.accuracy),
                p.compute_saving_percent,
                p.memory_saving_percent
            );
        }
    }
    if let Some(t) = &run.throughput {
        let _ = writeln!(
            md,
            "\nInference (compiled inference plan, {} images in batches of {}, {} threads, best of {} \
             alternating rounds): dense {:.0} images/s, compacted {:.0} images/s ({:.2}x).",
            t.images,
            t.batch_size,
            t.threads,
            t.rounds,
            t.dense_images_per_second,
            t.compacted_images_per_second,
            t.compacted_images_per_second / t.dense_images_per_second.max(f64::MIN_POSITIVE)
        );
    }
}

fn layer_row(md: &mut String, r: &SavingsRow) {
    let _ = writeln!(
        md,
        "| {} | {} | {} / {} | {} | {} | {} | {} | {} | {} |",
        r.layer,
        r.kind,
        r.channels_kept,
        r.channels_total,
        r.params_before,
        r.params_after,
        r.flops_before,
        r.flops_after,
        r.bytes_before,
        r.bytes_after
    );
}

fn percent(fraction: f64) -> String {
    format!("{:.2}%", 100.0 * fraction)
}

fn mflops(flops: u64) -> String {
    format!("{:.2} M", flops as f64 / 1e6)
}
