//! Channel-skipping fully connected layer, forward and backward.
//!
//! Layouts: input `[batch, in_features]`, weight `[out_features, in_features]`, output
//! `[batch, out_features]` (`y = x W^T + b`). Input features come in channels of `group`
//! consecutive features (`group = H * W` after flattening a `[C, H, W]` map, 1 otherwise),
//! and the active input channels are listed by channel.
//!
//! The forward has two paths, neither keeping a compacted copy of the layer, both on the
//! instruction set [`simd::active`] chooses:
//! - a small batch runs as dot products of the active weight rows with the active runs of
//!   each input row, reading the weights in place, once;
//! - a larger batch runs register tiles of input rows by active weight rows (in the `tile`
//!   submodule), which read the weights in place too and each block of a tile's input rows
//!   gathered.

use std::ops::Range;

use super::LinearGeometry;
use super::dot::Dots;
use crate::denormal::with_denormals_flushed;
use crate::gemm::{MatrixView, MatrixViewMut, sgemm};
use crate::parallel::for_each_task;
use crate::scratch::grown;
use crate::simd::{self, Isa};
use crate::skip::{ActiveChannels, Epilogue, SkipScratch, check_channel_operands};

mod tile;

use crate::tuning::skip_linear::{DOT_MAX_BATCH, PARALLEL_MACS};
use tile::{Layer, MicroKernel};

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

/// A fully connected layer as the channel-skipping forward reads it: the full layer's
/// weight, the channels to read and compute, and what follows the product.
///
/// Inactive input features of the weight, and the bias and slopes of inactive outputs, are
/// not read.
#[derive(Clone, Copy, Debug)]
pub struct ActiveLinear<'a> {
    /// The sizes, batch included.
    pub geometry: LinearGeometry,
    /// The input channels (of `geometry.group` features each) read and the outputs
    /// computed.
    pub active: ActiveChannels<'a>,
    /// The full layer's weight, `[out_features, in_features]`.
    pub weight: &'a [f32],
    /// One bias per output, or `None` for none.
    pub bias: Option<&'a [f32]>,
    /// What each computed output goes through after its bias.
    pub epilogue: Epilogue<'a>,
}

/// Channel-skipping fully connected forward with a fused epilogue: for the active outputs
/// `o` only,
///
/// ```text
/// output[n, o] = epilogue_o(bias[o] + sum over active input features f of input[n, f] * weight[o, f])
/// ```
///
/// the dense layer's result on weights and inputs whose inactive channels are zero, passed
/// through the layer's epilogue. Inactive input features are not read; inactive outputs
/// are not written. No compacted copy of the layer is kept: the weight rows are read in
/// place. `scratch` is reused between calls. Runs on rayon's global pool when the work is
/// large, with the instruction set [`simd::active`] chooses.
///
/// # Panics
/// If `group` does not divide `in_features`, a slice's length differs from `batch *
/// in_features` (input), `out_features * in_features` (weight), `out_features` (bias,
/// slopes) or `batch * out_features` (output), or an active list is not strictly
/// increasing within its channel count.
pub fn linear_forward_active(
    layer: &ActiveLinear<'_>,
    input: &[f32],
    scratch: &mut SkipScratch,
    output: &mut [f32],
) {
    let op = "linear_forward_active";
    let &ActiveLinear {
        geometry: ref g,
        active,
        weight,
        bias,
        epilogue,
    } = layer;
    g.assert_valid(op);
    let (batch, features, outs) = (g.batch, g.in_features, g.out_features);
    check_channel_operands(op, (g.in_channels(), outs), active, bias, epilogue);
    assert_eq!(input.len(), batch * features, "{op}: input length");
    assert_eq!(weight.len(), outs * features, "{op}: weight length");
    assert_eq!(output.len(), batch * outs, "{op}: output length");
    let outputs = active.outputs.len();
    if batch == 0 || outputs == 0 {
        return;
    }
    let runs = g.feature_runs(active.inputs);
    let layer = Layer {
        weight,
        in_features: features,
        out_features: outs,
        runs: &runs,
        outputs: active.outputs,
        bias,
        epilogue,
    };
    forward(
        simd::active(),
        &layer,
        batch,
        input,
        &mut scratch.product,
        output,
    );
}

/// The checked forward of [`linear_forward_active`] for the `batch` rows of `input`, on
/// `isa`; `buffer` holds the dot products or the tiles' sums.
fn forward(
    isa: Isa,
    layer: &Layer<'_>,
    batch: usize,
    input: &[f32],
    buffer: &mut Vec<f32>,
    output: &mut [f32],
) {
    if batch > DOT_MAX_BATCH {
        forward_tiled(
            MicroKernel::for_isa(isa),
            layer,
            batch,
            input,
            buffer,
            output,
        );
    } else {
        forward_dots(isa, layer, batch, input, buffer, output);
    }
}

/// The small-batch path: the dot products of the active weight rows with the `batch` rows
/// of `input`, split between the threads by weight rows when the work is large, then the
/// epilogue; `product` is their buffer.
fn forward_dots(
    isa: Isa,
    layer: &Layer<'_>,
    batch: usize,
    input: &[f32],
    product: &mut Vec<f32>,
    output: &mut [f32],
) {
    let (features, outs) = (layer.in_features, layer.out_features);
    let outputs = layer.outputs.len();
    if batch == 0 || outputs == 0 {
        return;
    }
    let inner: usize = layer.runs.iter().map(Range::len).sum();
    let dots = Dots {
        weight: layer.weight,
        input,
        batch,
        features,
        runs: layer.runs,
    };
    // `product` holds the active outputs before the epilogue, `[outputs, batch]`.
    let product = grown(product, batch * outputs);
    if outputs * inner * batch >= PARALLEL_MACS && rayon::current_num_threads() > 1 {
        let per_task = outputs.div_ceil(rayon::current_num_threads());
        let tasks = layer
            .outputs
            .chunks(per_task)
            .zip(product.chunks_mut(per_task * batch))
            .collect();
        for_each_task(tasks, |_, (rows, chunk)| {
            with_denormals_flushed(|| dots.rows(isa, rows, chunk))
        });
    } else {
        with_denormals_flushed(|| dots.rows(isa, layer.outputs, product));
    }

    with_denormals_flushed(|| {
        for n in 0..batch {
            let out_row = &mut output[n * outs..][..outs];
            for (i, &o) in layer.outputs.iter().enumerate() {
                let b = layer.bias.map_or(0.0, |b| b[o]);
                out_row[o] = product[i * batch + n];
                layer
                    .epilogue
                    .apply_in_place(o, b, std::slice::from_mut(&mut out_row[o]));
            }
        }
    });
}

/// The batch path: the tiles of `kernel` for the `batch` rows of `input` on the calling
/// thread, or on each thread's share of the rows when the work is large; `partial` is the
/// tiles' buffer.
fn forward_tiled(
    kernel: MicroKernel,
    layer: &Layer<'_>,
    batch: usize,
    input: &[f32],
    partial: &mut Vec<f32>,
    output: &mut [f32],
) {
    let inner: usize = layer.runs.iter().map(Range::len).sum();
    let width = layer.outputs.len();
    if batch == 0 || width == 0 {
        return;
    }
    let partial = grown(partial, tile::partial_len(batch, width));
    let threads = rayon::current_num_threads();
    if batch * width * inner < PARALLEL_MACS || threads == 1 {
        with_denormals_flushed(|| layer.rows(kernel, input, partial, output));
        return;
    }
    // NOTE: split by rows, so that each thread's rows stay in its L2 while every block of
    // weight rows goes through them; each thread reads the active weights once.
    let rows = batch.div_ceil(threads);
    let tasks = input
        .chunks(rows * layer.in_features)
        .zip(output.chunks_mut(rows * layer.out_features))
        .zip(partial.chunks_mut(tile::partial_len(rows, width)))
        .collect();
    for_each_task(tasks, |_, ((x, y), p)| {
        with_denormals_flushed(|| layer.rows(kernel, x, p, y))
    });
}

/// The gradients a channel-skipping fully connected backward computes: each is requested
/// by a buffer, which is overwritten (it may hold NaN on entry), and skipped when `None`.
#[derive(Debug, Default)]
pub struct LinearGradients<'a> {
    /// The input's gradient, `[batch, in_features]`.
    pub input: Option<&'a mut [f32]>,
    /// The weight's gradient, `[out_features, in_features]`.
    pub weight: Option<&'a mut [f32]>,
    /// The bias's gradient, `[out_features]`.
    pub bias: Option<&'a mut [f32]>,
}

/// Channel-skipping fully connected backward: the gradients of [`linear_forward_active`]
/// (identity epilogue), that is those of the dense layer on weights, inputs and output
/// gradients whose inactive channels are zero. Each gradient `grads` requests is
/// overwritten: the input's on the active input features, the weight's on the active
/// `(output, input feature)` pairs, the bias's on the active outputs, zero elsewhere.
/// Inactive parts of `input`, `weight` and `grad_output` are not read.
///
/// # Panics
/// As [`linear_forward_active`] for the inputs, if `grad_output`'s length differs from
/// `batch * out_features`, or if a gradient's length differs from its tensor's; nothing is
/// written then.
pub fn linear_backward_active(
    g: &LinearGeometry,
    active: ActiveChannels<'_>,
    input: &[f32],
    weight: &[f32],
    grad_output: &[f32],
    grads: LinearGradients<'_>,
) {
    let op = "linear_backward_active";
    g.assert_valid(op);
    active.check(op, g.in_channels(), g.out_features);
    let (batch, features, outs) = (g.batch, g.in_features, g.out_features);
    assert_eq!(input.len(), batch * features, "{op}: input length");
    assert_eq!(weight.len(), outs * features, "{op}: weight length");
    assert_eq!(grad_output.len(), batch * outs, "{op}: grad_output length");
    let LinearGradients {
        input: grad_input,
        weight: grad_weight,
        bias: grad_bias,
    } = grads;
    let requested = [
        ("grad_input", grad_input.as_deref(), batch * features),
        ("grad_weight", grad_weight.as_deref(), outs * features),
        ("grad_bias", grad_bias.as_deref(), outs),
    ];
    for (what, grad, len) in requested {
        if let Some(grad) = grad {
            assert_eq!(grad.len(), len, "{op}: {what} length");
        }
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
        sgemm(1.0, grad.t(), x, 0.0, view);
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
        sgemm(1.0, grad, w, 0.0, view);
        scatter_runs(&active_grad, grad_input, features, 0..batch, &runs);
    }
}

#[cfg(test)]
mod tests;
