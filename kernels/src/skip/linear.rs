//! Channel-skipping fully connected layer, forward and backward.
//!
//! Layouts: input `[batch, in_features]`, weight `[out_features, in_features]`, output
//! `[batch, out_features]` (`y = x W^T + b`). Input features come in channels of `group`
//! consecutive features (`group = H * W` after flattening a `[C, H, W]` map, 1 otherwise),
//! and the active input channels are listed by channel.
//!
//! The forward has three paths, none keeping a compacted copy of the layer:
//! - a small batch runs as dot products of the active weight rows with the active runs of
//!   each input row, reading the weights in place, once;
//! - a larger batch on a CPU with AVX-512 runs register tiles of input rows by active
//!   weight rows (in the `avx512` submodule), which read the weights in place too and
//!   each block of a tile's input rows gathered;
//! - a larger batch elsewhere gathers the active rows and columns into a [`PackedLinear`]
//!   (reused from call to call through the scratch) and runs its portable product.

use std::ops::Range;

use super::dot::dot;
use super::{ActiveChannels, Epilogue, check_forward_operands, runs};
use crate::conv::SkipScratch;
use crate::conv::im2col_grown as grown;
use crate::denormal::with_denormals_flushed;
use crate::gemm::{MatrixView, MatrixViewMut, sgemm_strided};
use crate::packed_linear::PackedLinear;
use crate::parallel::for_each_task;

mod avx512;

// NOTE: tuning constants, chosen for MnistNet's first linear layer (9216 -> 128).
// - Up to DOT_MAX_BATCH rows the dot products should win: each weight row is read once from
//   memory, in place, and reused from L1 for every row of the batch. A larger batch runs
//   the AVX-512 tiles, which reuse each vector of weights for 8 rows and each vector of
//   inputs for 3 weight rows; without AVX-512 it gathers the active weights into the packed
//   layer's layout first.
// - Below PARALLEL_MACS multiply-accumulates a call runs on the calling thread.
const DOT_MAX_BATCH: usize = 4;
const PARALLEL_MACS: usize = 1 << 17;

/// The sizes of a fully connected layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearGeometry {
    /// Rows of the input and output.
    pub batch: usize,
    /// Features of each input row.
    pub in_features: usize,
    /// Features of each output row.
    pub out_features: usize,
    /// Consecutive input features per input channel (at least 1, dividing `in_features`).
    pub group: usize,
}

impl LinearGeometry {
    /// The number of input channels, `in_features / group`.
    pub fn in_channels(&self) -> usize {
        self.in_features / self.group.max(1)
    }

    #[track_caller]
    pub(crate) fn assert_valid(&self, op: &str) {
        assert!(
            self.group >= 1 && self.in_features.is_multiple_of(self.group),
            "{op}: {} input features are not channels of {} features",
            self.in_features,
            self.group
        );
    }

    /// The active input features, as runs of consecutive features.
    pub(crate) fn feature_runs(&self, inputs: &[usize]) -> Vec<Range<usize>> {
        runs(inputs)
            .into_iter()
            .map(|r| r.start * self.group..r.end * self.group)
            .collect()
    }
}

/// Copies the listed `runs` of columns of the listed `rows` of `matrix` (rows `row_len`
/// long) into a row-major `rows x total run length` matrix.
fn gather_runs<'a>(
    matrix: &[f32],
    row_len: usize,
    rows: impl ExactSizeIterator<Item = usize>,
    runs: &[Range<usize>],
    buffer: &'a mut Vec<f32>,
) -> &'a [f32] {
    let width: usize = runs.iter().map(Range::len).sum();
    let gathered = grown(buffer, rows.len() * width);
    for (dst, row) in gathered.chunks_exact_mut(width.max(1)).zip(rows) {
        let src = &matrix[row * row_len..][..row_len];
        let mut at = 0;
        for run in runs {
            dst[at..at + run.len()].copy_from_slice(&src[run.clone()]);
            at += run.len();
        }
    }
    gathered
}

/// Writes a matrix laid out as [`gather_runs`] makes it back into the listed rows and runs
/// of columns of `matrix`.
fn scatter_runs(
    gathered: &[f32],
    matrix: &mut [f32],
    row_len: usize,
    rows: impl Iterator<Item = usize>,
    runs: &[Range<usize>],
) {
    let width: usize = runs.iter().map(Range::len).sum();
    for (src, row) in gathered.chunks_exact(width.max(1)).zip(rows) {
        let dst = &mut matrix[row * row_len..][..row_len];
        let mut at = 0;
        for run in runs {
            dst[run.clone()].copy_from_slice(&src[at..at + run.len()]);
            at += run.len();
        }
    }
}

/// Channel-skipping fully connected forward with a fused epilogue: for the active outputs
/// `o` only,
///
/// ```text
/// output[n, o] = epilogue_o(bias[o] + sum over active input features f of input[n, f] * weight[o, f])
/// ```
///
/// the dense layer's result on weights and inputs whose inactive channels are zero, passed
/// through `epilogue`. Inactive input features are not read; inactive outputs are not
/// written. No compacted copy of the layer is kept: the weight rows are read in place
/// (except for a larger batch on a CPU without AVX-512, which gathers the active part of
/// the weight on every call).
/// `scratch` is reused between calls. Runs on rayon's global pool when the work is large.
///
/// # Panics
/// If `g.group` does not divide `g.in_features`, a slice's length differs from
/// `batch * in_features` (input), `out_features * in_features` (weight), `out_features`
/// (bias, slopes) or `batch * out_features` (output), or an active list is not strictly
/// increasing within its channel count.
#[allow(clippy::too_many_arguments)]
pub fn linear_forward_active(
    g: &LinearGeometry,
    active: ActiveChannels<'_>,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    epilogue: Epilogue<'_>,
    scratch: &mut SkipScratch,
    output: &mut [f32],
) {
    let op = "linear_forward_active";
    g.assert_valid(op);
    let (batch, features, outs) = (g.batch, g.in_features, g.out_features);
    check_forward_operands(
        op,
        active,
        epilogue,
        (g.in_channels(), outs),
        input,
        batch * features,
        weight,
        outs * features,
        bias,
    );
    assert_eq!(output.len(), batch * outs, "{op}: output length");
    let outputs = active.outputs.len();
    if batch == 0 || outputs == 0 {
        return;
    }
    let runs = g.feature_runs(active.inputs);
    if batch > DOT_MAX_BATCH {
        if avx512::available() {
            let layer = avx512::Layer {
                weight,
                in_features: features,
                out_features: outs,
                runs: &runs,
                outputs: active.outputs,
                bias,
                epilogue,
            };
            forward_tiled(&layer, batch, input, &mut scratch.product, output);
        } else {
            forward_repacked(g, active, input, weight, bias, epilogue, scratch, output);
        }
        return;
    }
    let inner: usize = runs.iter().map(Range::len).sum();

    // `product` holds the active outputs before the epilogue, `[outputs, batch]`.
    let product = grown(&mut scratch.product, batch * outputs);
    let row_dots = |(i, out): (usize, &mut [f32])| {
        let row = &weight[active.outputs[i] * features..][..features];
        for (n, out) in out.iter_mut().enumerate() {
            let x = &input[n * features..][..features];
            *out = runs
                .iter()
                .map(|r| dot(&row[r.clone()], &x[r.clone()]))
                .sum();
        }
    };
    if outputs * inner * batch >= PARALLEL_MACS && rayon::current_num_threads() > 1 {
        let per_task = outputs.div_ceil(rayon::current_num_threads());
        let tasks = product.chunks_mut(per_task * batch).enumerate().collect();
        for_each_task(tasks, |_, (task, chunk): (usize, &mut [f32])| {
            with_denormals_flushed(|| {
                chunk
                    .chunks_mut(batch)
                    .enumerate()
                    .for_each(|(i, out)| row_dots((task * per_task + i, out)))
            })
        });
    } else {
        with_denormals_flushed(|| product.chunks_mut(batch).enumerate().for_each(row_dots));
    }

    with_denormals_flushed(|| {
        for n in 0..batch {
            let out_row = &mut output[n * outs..][..outs];
            for (i, &o) in active.outputs.iter().enumerate() {
                let b = bias.map_or(0.0, |b| b[o]);
                out_row[o] = product[i * batch + n];
                epilogue.apply_in_place(o, b, std::slice::from_mut(&mut out_row[o]));
            }
        }
    });
}

/// The batch path on CPUs with AVX-512: the tiles on the calling thread, or on each
/// thread's share of the rows when the work is large; `partial` is the tiles' buffer.
fn forward_tiled(
    layer: &avx512::Layer<'_>,
    batch: usize,
    input: &[f32],
    partial: &mut Vec<f32>,
    output: &mut [f32],
) {
    let inner: usize = layer.runs.iter().map(Range::len).sum();
    let width = layer.outputs.len();
    let partial = grown(partial, avx512::partial_len(batch, width));
    let threads = rayon::current_num_threads();
    if batch * width * inner < PARALLEL_MACS || threads == 1 {
        with_denormals_flushed(|| layer.rows(input, partial, output));
        return;
    }
    // NOTE: split by rows, so that each thread's rows stay in its L2 while every block of
    // weight rows goes through them; each thread reads the active weights once.
    let rows = batch.div_ceil(threads);
    let tasks = input
        .chunks(rows * layer.in_features)
        .zip(output.chunks_mut(rows * layer.out_features))
        .zip(partial.chunks_mut(avx512::partial_len(rows, width)))
        .collect();
    for_each_task(tasks, |_, ((x, y), p)| {
        with_denormals_flushed(|| layer.rows(x, p, y))
    });
}

/// The batch path on other CPUs: the active part of the weight gathered into a
/// [`PackedLinear`] and its forward run.
///
/// NOTE: gathering the active weights into the packed layout costs what a general matrix
/// product's packing of them does, and the product then reads the inputs in place instead
/// of packing them too.
#[allow(clippy::too_many_arguments)]
fn forward_repacked(
    g: &LinearGeometry,
    active: ActiveChannels<'_>,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    epilogue: Epilogue<'_>,
    scratch: &mut SkipScratch,
    output: &mut [f32],
) {
    let packed = match scratch.linear.take() {
        Some(mut packed) => {
            packed.repack(g, active, weight);
            packed
        }
        None => Box::new(PackedLinear::with_active(g, active, weight)),
    };
    packed.forward(g.batch, input, bias, epilogue, scratch, output);
    scratch.linear = Some(packed);
}

/// Channel-skipping fully connected backward: the gradients of [`linear_forward_active`]
/// (identity epilogue), that is those of the dense layer on weights, inputs and output
/// gradients whose inactive channels are zero. Each requested buffer is overwritten:
/// `grad_input` on the active input features, `grad_weight` on the active
/// `(output, input feature)` pairs, `grad_bias` on the active outputs, zero elsewhere.
/// Inactive parts of `input`, `weight` and `grad_output` are not read.
///
/// # Panics
/// As [`linear_forward_active`] for the inputs; if a gradient's length differs from its
/// tensor's.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward_active(
    g: &LinearGeometry,
    active: ActiveChannels<'_>,
    input: &[f32],
    weight: &[f32],
    grad_output: &[f32],
    grad_input: Option<&mut [f32]>,
    grad_weight: Option<&mut [f32]>,
    grad_bias: Option<&mut [f32]>,
) {
    let op = "linear_backward_active";
    g.assert_valid(op);
    active.check(op, g.in_channels(), g.out_features);
    let (batch, features, outs) = (g.batch, g.in_features, g.out_features);
    assert_eq!(input.len(), batch * features, "{op}: input length");
    assert_eq!(weight.len(), outs * features, "{op}: weight length");
    assert_eq!(grad_output.len(), batch * outs, "{op}: grad_output length");
    if let Some(grad_input) = grad_input.as_deref() {
        assert_eq!(
            grad_input.len(),
            batch * features,
            "{op}: grad_input length"
        );
    }
    if let Some(grad_weight) = grad_weight.as_deref() {
        assert_eq!(
            grad_weight.len(),
            outs * features,
            "{op}: grad_weight length"
        );
    }
    if let Some(grad_bias) = grad_bias.as_deref() {
        assert_eq!(grad_bias.len(), outs, "{op}: grad_bias length");
    }
    let runs = g.feature_runs(active.inputs);
    let inner: usize = runs.iter().map(Range::len).sum();
    let outputs = active.outputs.len();
    // The active output gradients, `[batch, outputs]`.
    let grad: Vec<f32> = (0..batch)
        .flat_map(|n| {
            active
                .outputs
                .iter()
                .map(move |&o| grad_output[n * outs + o])
        })
        .collect();
    let grad = MatrixView::row_major(&grad, batch, outputs);

    if let Some(grad_bias) = grad_bias {
        grad_bias.fill(0.0);
        for (i, &o) in active.outputs.iter().enumerate() {
            grad_bias[o] = (0..batch).map(|n| grad.get(n, i)).sum();
        }
    }
    if let Some(grad_weight) = grad_weight {
        grad_weight.fill(0.0);
        let mut buffer = Vec::new();
        let x = gather_runs(input, features, 0..batch, &runs, &mut buffer);
        let x = MatrixView::row_major(x, batch, inner);
        let mut active_grad = vec![0.0; outputs * inner];
        let view = MatrixViewMut::row_major(&mut active_grad, outputs, inner);
        sgemm_strided(1.0, grad.t(), x, 0.0, view);
        let rows = active.outputs.iter().copied();
        scatter_runs(&active_grad, grad_weight, features, rows, &runs);
    }
    if let Some(grad_input) = grad_input {
        grad_input.fill(0.0);
        let mut buffer = Vec::new();
        let rows = active.outputs.iter().copied();
        let w = gather_runs(weight, features, rows, &runs, &mut buffer);
        let w = MatrixView::row_major(w, outputs, inner);
        let mut active_grad = vec![0.0; batch * inner];
        let view = MatrixViewMut::row_major(&mut active_grad, batch, inner);
        sgemm_strided(1.0, grad, w, 0.0, view);
        scatter_runs(&active_grad, grad_input, features, 0..batch, &runs);
    }
}

#[cfg(test)]
mod tests;
