//! The report as Markdown tables (also what a command-line program prints).

use std::fmt::Write;
use std::path::Path;

use super::{PruneReport, RunReport};
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
        for run in &self.runs {
            run_section(&mut md, run);
        }
        md
    }
}

/// The Markdown that shows the PNG written next to it and says how to read it (the
/// picture carries no text, so that drawing it needs no fonts).
pub(super) fn figure_section(png: &Path) -> String {
    let name = png.file_name().map_or_else(
        || png.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    format!(
        "\n## Figure\n\n![gate histograms and threshold sweep]({name})\n\n\
         Top panels, one per gate layer: histogram of the gate magnitudes |a_c| (blue), the \
         chosen zeta (red line). Bottom panels, one per method with a sweep: validation \
         accuracy against zeta (blue, between the lowest and highest accuracy seen; the \
         unpruned accuracy as a grey line), computation saving (red, 0 to 100%), the chosen \
         zeta (green).\n"
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
