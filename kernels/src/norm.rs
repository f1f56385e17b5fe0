//! Batch normalisation over `[batch, channels, plane]` data (NCHW with `plane = H * W`, or an
//! `[N, C]` matrix with `plane = 1`): statistics per channel over batch and plane.
//!
//! Each kernel is made of two kinds of pass: per-channel sums, parallel over blocks of
//! channels (of rows when `plane == 1`), accumulated in `f32` lanes over short blocks and in
//! `f64` across blocks; and a per-channel affine map, parallel over groups of planes (of rows
//! when `plane == 1`). Statistics take two passes (mean, then the sum of squared deviations
//! from it), so a large mean never cancels the variance away. Every task runs as the
//! elementwise ones do (`run_task`): denormals flushed, loops compiled for the chosen
//! instruction set, the same bits on every set.

use crate::elementwise::lanes::map_sum;
use crate::elementwise::tasks::{items_per_task, run_task};
use rayon::prelude::*;

/// Shape of batch-normalised data: `[batch, channels, plane]`, statistics per channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchNormGeometry {
    /// Images (or rows) in the batch.
    pub batch: usize,
    /// Channels, each with its own statistics and parameters.
    pub channels: usize,
    /// Elements of one channel of one image: `H * W`, or 1 for an `[N, C]` matrix.
    pub plane: usize,
}

impl BatchNormGeometry {
    /// Number of data elements, `batch * channels * plane`.
    pub fn input_len(&self) -> usize {
        self.batch * self.channels * self.plane
    }

    /// Number of elements each channel's statistics cover, `batch * plane`.
    fn per_channel(&self) -> usize {
        self.batch * self.plane
    }

    /// Asserts that the training kernel `op` has at least 2 values per channel, as the
    /// unbiased variance divides by `batch * plane - 1`.
    #[track_caller]
    fn check_trainable(&self, op: &str) {
        assert!(
            self.per_channel() >= 2,
            "{op}: needs at least 2 values per channel, got {self:?}"
        );
    }
}

/// A batch-norm layer's parameters: the learned per-channel scale `gamma` and shift `beta`
/// (`channels` elements each), and the `eps` added to every variance before its square
/// root.
#[derive(Clone, Copy, Debug)]
pub struct BatchNormParams<'a> {
    /// Scale per channel.
    pub gamma: &'a [f32],
    /// Shift per channel.
    pub beta: &'a [f32],
    /// Added to the variance, so that a constant channel does not divide by zero.
    pub eps: f32,
}

/// The running statistics a training forward moves towards the batch's (`channels`
/// elements each): `stat <- (1 - momentum) stat + momentum batch_stat`.
#[derive(Debug)]
pub struct RunningStatsUpdate<'a> {
    /// Running mean per channel.
    pub mean: &'a mut [f32],
    /// Running variance per channel, unbiased (PyTorch's convention).
    pub var: &'a mut [f32],
    /// Weight of the batch's statistics in the update.
    pub momentum: f32,
}

/// Where a batch-norm backward writes its gradients, all overwritten.
#[derive(Debug)]
pub struct BatchNormGradients<'a> {
    /// Gradient of the data, `[batch, channels, plane]`.
    pub input: &'a mut [f32],
    /// Gradient of `gamma`, one per channel.
    pub gamma: &'a mut [f32],
    /// Gradient of `beta`, one per channel.
    pub beta: &'a mut [f32],
}

impl BatchNormGradients<'_> {
    /// Asserts the lengths of the gradients of kernel `op`.
    #[track_caller]
    fn check(&self, op: &str, g: &BatchNormGeometry) {
        check_lengths(
            op,
            g,
            [("grad_input", self.input.len())],
            [
                ("grad_gamma", self.gamma.len()),
                ("grad_beta", self.beta.len()),
            ],
        );
    }
}

/// Batch normalisation, training mode. Per channel `c`, over all `(n, p)`:
/// `mean = sum x / m`, `var = sum (x - mean)^2 / m` (biased) with `m = batch * plane`,
/// `invstd = 1 / sqrt(var + eps)`, and
/// `output[n, c, p] = (input[n, c, p] - mean) * invstd * gamma[c] + beta[c]`.
///
/// Writes `save_mean[c] = mean` and `save_invstd[c] = invstd` for the backward, and updates
/// the running mean with `mean` and the running variance with the unbiased variance
/// `var * m / (m - 1)` (PyTorch's convention).
///
/// `input` and `output` (overwritten) are `[batch, channels, plane]`; every other slice has
/// `channels` elements.
///
/// # Panics
/// If `batch * plane < 2` or a slice length differs from the geometry's.
pub fn batch_norm_forward_train(
    g: &BatchNormGeometry,
    input: &[f32],
    params: BatchNormParams<'_>,
    running: RunningStatsUpdate<'_>,
    output: &mut [f32],
    save_mean: &mut [f32],
    save_invstd: &mut [f32],
) {
    let op = "batch_norm_forward_train";
    g.check_trainable(op);
    check_lengths(
        op,
        g,
        [("input", input.len()), ("output", output.len())],
        [
            ("gamma", params.gamma.len()),
            ("beta", params.beta.len()),
            ("running_mean", running.mean.len()),
            ("running_var", running.var.len()),
            ("save_mean", save_mean.len()),
            ("save_invstd", save_invstd.len()),
        ],
    );
    let count = g.per_channel() as f64;
    // NOTE: summing x - pilot[c], for a sample pilot[c] of the channel, keeps the f32 block
    // sums accurate relative to the spread of the data rather than to its distance from zero.
    let pilot: Vec<(f32, f32)> = (0..g.channels).map(|c| (input[c * g.plane], 0.0)).collect();
    let centers: Vec<(f32, f32)> = channel_sums(
        g,
        input,
        input,
        &pilot,
        #[inline(always)]
        |pilot, x, _| [centered(x, pilot)],
    )
    .iter()
    .zip(&pilot)
    .map(|([s], &(p, _))| split_f64(f64::from(p) + s / count))
    .collect();
    let squares = channel_sums(
        g,
        input,
        input,
        &centers,
        #[inline(always)]
        |center, x, _| {
            let d = centered(x, center);
            [d * d]
        },
    );
    let momentum = f64::from(running.momentum);
    let mut coefficients = Vec::with_capacity(g.channels);
    for c in 0..g.channels {
        let mean = f64::from(centers[c].0) + f64::from(centers[c].1);
        let var = squares[c][0] / count;
        let invstd = 1.0 / (var + f64::from(params.eps)).sqrt();
        save_mean[c] = mean as f32;
        save_invstd[c] = invstd as f32;
        running.mean[c] = ((1.0 - momentum) * f64::from(running.mean[c]) + momentum * mean) as f32;
        let unbiased = var * count / (count - 1.0);
        running.var[c] =
            ((1.0 - momentum) * f64::from(running.var[c]) + momentum * unbiased) as f32;
        coefficients.push(ChannelAffine {
            center: centers[c],
            scale: (f64::from(params.gamma[c]) * invstd) as f32,
            shift: params.beta[c],
            ..ChannelAffine::default()
        });
    }
    normalise(g, input, &coefficients, output);
}

/// Batch normalisation, evaluation mode, with `invstd = 1 / sqrt(running_var[c] + eps)`:
/// `output[n, c, p] = (input[n, c, p] - running_mean[c]) * invstd * gamma[c] + beta[c]`.
///
/// `input` and `output` (overwritten) are `[batch, channels, plane]`; the per-channel slices
/// have `channels` elements.
///
/// # Panics
/// If a slice length differs from the geometry's.
pub fn batch_norm_forward_eval(
    g: &BatchNormGeometry,
    input: &[f32],
    params: BatchNormParams<'_>,
    running_mean: &[f32],
    running_var: &[f32],
    output: &mut [f32],
) {
    check_lengths(
        "batch_norm_forward_eval",
        g,
        [("input", input.len()), ("output", output.len())],
        [
            ("gamma", params.gamma.len()),
            ("beta", params.beta.len()),
            ("running_mean", running_mean.len()),
            ("running_var", running_var.len()),
        ],
    );
    let coefficients: Vec<ChannelAffine> = (0..g.channels)
        .map(|c| ChannelAffine {
            center: (running_mean[c], 0.0),
            scale: (f64::from(params.gamma[c]) * eval_invstd(running_var[c], params.eps)) as f32,
            shift: params.beta[c],
            ..ChannelAffine::default()
        })
        .collect();
    normalise(g, input, &coefficients, output);
}

/// Backward of [`batch_norm_forward_train`], the statistics depending on the input. With
/// `xhat = (x - save_mean[c]) * save_invstd[c]`, sums over `(n, p)` and `m = batch * plane`:
/// `grad_beta[c] = sum grad_output`, `grad_gamma[c] = sum grad_output * xhat`, and
/// `grad_input = gamma[c] * invstd * (grad_output - grad_beta[c] / m - xhat * grad_gamma[c] / m)`.
///
/// `input`, `grad_output` and `grads.input` are `[batch, channels, plane]`; the per-channel
/// slices have `channels` elements.
///
/// # Panics
/// If `batch * plane < 2` or a slice length differs from the geometry's.
pub fn batch_norm_backward_train(
    g: &BatchNormGeometry,
    input: &[f32],
    grad_output: &[f32],
    gamma: &[f32],
    save_mean: &[f32],
    save_invstd: &[f32],
    grads: BatchNormGradients<'_>,
) {
    let op = "batch_norm_backward_train";
    g.check_trainable(op);
    check_lengths(
        op,
        g,
        [("input", input.len()), ("grad_output", grad_output.len())],
        [
            ("gamma", gamma.len()),
            ("save_mean", save_mean.len()),
            ("save_invstd", save_invstd.len()),
        ],
    );
    grads.check(op, g);
    let count = g.per_channel() as f64;
    let sums = gradient_sums(g, grad_output, input, save_mean);
    let mut coefficients = Vec::with_capacity(g.channels);
    for c in 0..g.channels {
        let [sum, dot] = sums[c];
        let invstd = f64::from(save_invstd[c]);
        let gain = f64::from(gamma[c]) * invstd;
        grads.beta[c] = sum as f32;
        grads.gamma[c] = (dot * invstd) as f32;
        // NOTE: expanding xhat, grad_input = gain * d - gain * invstd^2 * dot / m * (x - mean)
        // - gain * sum / m: one multiply-add chain per element.
        coefficients.push(ChannelAffine {
            center: (save_mean[c], 0.0),
            scale: (-gain * invstd * invstd * dot / count) as f32,
            grad_scale: gain as f32,
            shift: (-gain * sum / count) as f32,
        });
    }
    map_channels(
        g,
        grad_output,
        input,
        &coefficients,
        grads.input,
        #[inline(always)]
        |k, d, x| k.grad_scale * d + k.scale * centered(x, k.center) + k.shift,
    );
}

/// Backward of [`batch_norm_forward_eval`], the running statistics being constants. With
/// `invstd = 1 / sqrt(running_var[c] + eps)` and sums over `(n, p)`:
/// `grad_input = grad_output * gamma[c] * invstd`, `grad_beta[c] = sum grad_output`,
/// `grad_gamma[c] = sum grad_output * (x - running_mean[c]) * invstd`. `params.beta` does
/// not enter the gradients.
///
/// `input`, `grad_output` and `grads.input` are `[batch, channels, plane]`; the per-channel
/// slices have `channels` elements.
///
/// # Panics
/// If a slice length differs from the geometry's.
pub fn batch_norm_backward_eval(
    g: &BatchNormGeometry,
    input: &[f32],
    grad_output: &[f32],
    params: BatchNormParams<'_>,
    running_mean: &[f32],
    running_var: &[f32],
    grads: BatchNormGradients<'_>,
) {
    let op = "batch_norm_backward_eval";
    check_lengths(
        op,
        g,
        [("input", input.len()), ("grad_output", grad_output.len())],
        [
            ("gamma", params.gamma.len()),
            ("running_mean", running_mean.len()),
            ("running_var", running_var.len()),
        ],
    );
    grads.check(op, g);
    let sums = gradient_sums(g, grad_output, input, running_mean);
    let mut coefficients = Vec::with_capacity(g.channels);
    for c in 0..g.channels {
        let [sum, dot] = sums[c];
        let invstd = eval_invstd(running_var[c], params.eps);
        grads.beta[c] = sum as f32;
        grads.gamma[c] = (dot * invstd) as f32;
        coefficients.push(ChannelAffine {
            grad_scale: (f64::from(params.gamma[c]) * invstd) as f32,
            ..ChannelAffine::default()
        });
    }
    map_channels(
        g,
        grad_output,
        grad_output,
        &coefficients,
        grads.input,
        #[inline(always)]
        |k, d, _| k.grad_scale * d,
    );
}

/// `1 / sqrt(running_var + eps)`, the evaluation mode's inverse standard deviation.
fn eval_invstd(running_var: f32, eps: f32) -> f64 {
    1.0 / (f64::from(running_var) + f64::from(eps)).sqrt()
}

/// `output[n, c, p] = (input[n, c, p] - center[c]) * scale[c] + shift[c]`, the forwards'
/// affine pass.
fn normalise(
    g: &BatchNormGeometry,
    input: &[f32],
    coefficients: &[ChannelAffine],
    output: &mut [f32],
) {
    map_channels(
        g,
        input,
        input,
        coefficients,
        output,
        #[inline(always)]
        |k, x, _| centered(x, k.center) * k.scale + k.shift,
    );
}

/// Per channel, the sums over `(n, p)` of `grad_output` and of
/// `grad_output * (input - means[c])`, which both backwards take their gradients from.
fn gradient_sums(
    g: &BatchNormGeometry,
    grad_output: &[f32],
    input: &[f32],
    means: &[f32],
) -> Vec<[f64; 2]> {
    let centers: Vec<(f32, f32)> = means.iter().map(|&m| (m, 0.0)).collect();
    channel_sums(
        g,
        grad_output,
        input,
        &centers,
        #[inline(always)]
        |mean, d, x| [d, d * centered(x, mean)],
    )
}

/// Asserts that every `data` slice of kernel `op` has the geometry's `input_len()` elements
/// and every `per_channel` one `channels`.
#[track_caller]
fn check_lengths<const D: usize, const C: usize>(
    op: &str,
    g: &BatchNormGeometry,
    data: [(&str, usize); D],
    per_channel: [(&str, usize); C],
) {
    for (name, len) in data {
        assert_eq!(len, g.input_len(), "{op}: {name} length");
    }
    for (name, len) in per_channel {
        assert_eq!(len, g.channels, "{op}: {name} length");
    }
}

/// Per-channel coefficients of the elementwise passes, each of which uses some of
/// `scale * (x - center) + grad_scale * grad + shift`.
#[derive(Clone, Copy, Debug, Default)]
struct ChannelAffine {
    /// The center as an unevaluated sum `hi + lo` of two `f32`s.
    center: (f32, f32),
    scale: f32,
    grad_scale: f32,
    shift: f32,
}

/// `x - center` for a center given as `hi + lo`, accurate to about one rounding of the
/// result.
///
/// NOTE: the batch mean of data far from zero is not an `f32`; rounding it first would cost
/// `|mean| * 2^-24` of every centred value, which is large against a small spread. `x - hi`
/// is exact when `x` is near `hi`, and `lo` carries the rest of the mean.
#[inline(always)]
fn centered(x: f32, (hi, lo): (f32, f32)) -> f32 {
    (x - hi) - lo
}

/// `value` as `hi + lo` with `hi` the nearest `f32` and `lo` the rounded remainder.
fn split_f64(value: f64) -> (f32, f32) {
    let hi = value as f32;
    (hi, (value - f64::from(hi)) as f32)
}

/// Per channel `c`, the `K` sums over all `(n, p)` of
/// `term(centers[c], a[n, c, p], b[n, c, p])`.
///
/// NOTE: the channel's center comes in as a value, not looked up by the term in a slice it
/// captures: in the plane loop the compiler could not prove that slice unchanged by the
/// stores of the terms, reloaded and bounds-checked it every element, and left the loop
/// scalar.
///
/// Parallel over blocks of channels; each task walks its channels' planes image by image,
/// so it reads memory in contiguous runs. Within a plane, terms add up as every sum does
/// (the elementwise `map_sum`: `f32` partial sums of at most 32 terms fixed by position,
/// joined in `f64`), and planes in `f64`. Matrices (`plane == 1`) go to [`row_sums`]
/// instead.
#[inline(always)]
fn channel_sums<const K: usize>(
    g: &BatchNormGeometry,
    a: &[f32],
    b: &[f32],
    centers: &[(f32, f32)],
    term: impl Fn((f32, f32), f32, f32) -> [f32; K] + Sync,
) -> Vec<[f64; K]> {
    if g.input_len() == 0 {
        return vec![[0.0; K]; g.channels];
    }
    if g.plane == 1 {
        return row_sums(g, a, b, centers, term);
    }
    let per_task = items_per_task(g.per_channel());
    let blocks: Vec<Vec<[f64; K]>> = (0..g.channels.div_ceil(per_task))
        .into_par_iter()
        .map(|block| {
            run_task(
                #[inline(always)]
                || {
                    let channels = block * per_task..((block + 1) * per_task).min(g.channels);
                    let mut totals = vec![[0.0_f64; K]; channels.len()];
                    for n in 0..g.batch {
                        let start = (n * g.channels + channels.start) * g.plane;
                        let len = channels.len() * g.plane;
                        map_sum(
                            [&a[start..start + len], &b[start..start + len]],
                            [],
                            (channels.len(), g.plane),
                            |q| centers[channels.start + q],
                            #[inline(always)]
                            |[x, y], center| ([], term(center, x, y)),
                            |q, sums| add_into(&mut totals[q], sums),
                        );
                    }
                    totals
                },
            )
        })
        .collect();
    blocks.concat()
}

/// [`channel_sums`] of an `[N, C]` matrix: parallel over blocks of rows, each adding its rows
/// into `f64` totals per channel (the channels are the independent lanes); the blocks'
/// totals are then added in block order, so the result does not depend on scheduling.
///
/// NOTE: splitting a matrix by channels instead would have every task stride through all
/// the rows for a few columns each.
#[inline(always)]
fn row_sums<const K: usize>(
    g: &BatchNormGeometry,
    a: &[f32],
    b: &[f32],
    centers: &[(f32, f32)],
    term: impl Fn((f32, f32), f32, f32) -> [f32; K] + Sync,
) -> Vec<[f64; K]> {
    let task_len = items_per_task(g.channels) * g.channels;
    let partials: Vec<Vec<[f64; K]>> = a
        .par_chunks(task_len)
        .zip(b.par_chunks(task_len))
        .map(|(a, b)| {
            run_task(
                #[inline(always)]
                || {
                    let mut totals = vec![[0.0_f64; K]; g.channels];
                    for (a, b) in a.chunks_exact(g.channels).zip(b.chunks_exact(g.channels)) {
                        let channels = totals.iter_mut().zip(centers).zip(a).zip(b);
                        for (((total, &center), &x), &y) in channels {
                            add_into(total, term(center, x, y).map(f64::from));
                        }
                    }
                    totals
                },
            )
        })
        .collect();
    let mut totals = vec![[0.0_f64; K]; g.channels];
    for partial in &partials {
        for (total, &values) in totals.iter_mut().zip(partial) {
            add_into(total, values);
        }
    }
    totals
}

#[inline(always)]
fn add_into<const K: usize>(total: &mut [f64; K], values: [f64; K]) {
    for (t, v) in total.iter_mut().zip(values) {
        *t += v;
    }
}

/// `out[n, c, p] = f(&coefficients[c], a[n, c, p], b[n, c, p])`, parallel over groups of
/// planes, or of rows when `plane == 1` so that the loop runs along the channels.
#[inline(always)]
fn map_channels(
    g: &BatchNormGeometry,
    a: &[f32],
    b: &[f32],
    coefficients: &[ChannelAffine],
    out: &mut [f32],
    f: impl Fn(&ChannelAffine, f32, f32) -> f32 + Sync,
) {
    if out.is_empty() {
        return;
    }
    let unit = if g.plane == 1 { g.channels } else { g.plane };
    let task_len = items_per_task(unit) * unit;
    out.par_chunks_mut(task_len)
        .zip(a.par_chunks(task_len))
        .zip(b.par_chunks(task_len))
        .enumerate()
        .for_each(|(task, ((out, a), b))| {
            run_task(
                #[inline(always)]
                || {
                    let units = out
                        .chunks_exact_mut(unit)
                        .zip(a.chunks_exact(unit))
                        .zip(b.chunks_exact(unit));
                    if g.plane == 1 {
                        for ((out, a), b) in units {
                            for (((o, &x), &y), k) in out.iter_mut().zip(a).zip(b).zip(coefficients)
                            {
                                *o = f(k, x, y);
                            }
                        }
                    } else {
                        let first_plane = task * task_len / unit;
                        for (i, ((out, a), b)) in units.enumerate() {
                            let k = &coefficients[(first_plane + i) % g.channels];
                            for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                                *o = f(k, x, y);
                            }
                        }
                    }
                },
            );
        });
}
