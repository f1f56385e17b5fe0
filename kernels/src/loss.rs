//! Softmax, log-softmax and the fused softmax + cross-entropy loss over the rows of a
//! `rows x cols` row-major matrix.
//!
//! Every row is shifted by its maximum before exponentiating, so no logit overflows `exp`
//! (logits of +-1e4 are fine) and the largest term of each row's sum is exactly 1. Row sums
//! accumulate in `f64`. Kernels are parallel over blocks of rows when there is enough work;
//! every task runs as the elementwise ones do (`run_task`): denormals flushed, loops
//! compiled for the chosen instruction set, the same bits on every set.

use crate::elementwise::lanes::{map_sum, window};
use crate::elementwise::math::exp;
use crate::elementwise::tasks::{items_per_task, run_task};
use rayon::prelude::*;

/// Elements per task: a whole number of rows.
fn task_len(cols: usize) -> usize {
    items_per_task(cols) * cols
}

/// Row-wise softmax: `y[r, j] = exp(x[r, j] - max_r) / sum_k exp(x[r, k] - max_r)`.
///
/// `x` and `y` (overwritten) are `rows x cols`.
///
/// # Panics
/// If a slice length is not `rows * cols`.
pub fn softmax_forward(rows: usize, cols: usize, x: &[f32], y: &mut [f32]) {
    check_matrices(
        "softmax_forward",
        rows,
        cols,
        [("x", x.len()), ("y", y.len())],
    );
    for_each_row(
        cols,
        [x],
        y,
        #[inline(always)]
        |[x], y| {
            softmax_row(x, y);
        },
    );
}

/// Backward of [`softmax_forward`] given its output `y`:
/// `grad_x[r, j] = y[r, j] * (grad_y[r, j] - sum_k grad_y[r, k] * y[r, k])`.
///
/// All slices are `rows x cols`; `grad_x` is overwritten.
///
/// # Panics
/// If a slice length is not `rows * cols`.
pub fn softmax_backward(rows: usize, cols: usize, y: &[f32], grad_y: &[f32], grad_x: &mut [f32]) {
    check_matrices(
        "softmax_backward",
        rows,
        cols,
        [
            ("y", y.len()),
            ("grad_y", grad_y.len()),
            ("grad_x", grad_x.len()),
        ],
    );
    for_each_row(cols, [y, grad_y], grad_x, softmax_backward_row);
}

/// Row-wise log-softmax: `y[r, j] = (x[r, j] - max_r) - ln sum_k exp(x[r, k] - max_r)`.
///
/// `x` and `y` (overwritten) are `rows x cols`.
///
/// # Panics
/// If a slice length is not `rows * cols`.
pub fn log_softmax_forward(rows: usize, cols: usize, x: &[f32], y: &mut [f32]) {
    check_matrices(
        "log_softmax_forward",
        rows,
        cols,
        [("x", x.len()), ("y", y.len())],
    );
    for_each_row(cols, [x], y, log_softmax_row);
}

/// Backward of [`log_softmax_forward`] given its output `y` (the log-probabilities):
/// `grad_x[r, j] = grad_y[r, j] - exp(y[r, j]) * sum_k grad_y[r, k]`.
///
/// All slices are `rows x cols`; `grad_x` is overwritten.
///
/// # Panics
/// If a slice length is not `rows * cols`.
pub fn log_softmax_backward(
    rows: usize,
    cols: usize,
    y: &[f32],
    grad_y: &[f32],
    grad_x: &mut [f32],
) {
    check_matrices(
        "log_softmax_backward",
        rows,
        cols,
        [
            ("y", y.len()),
            ("grad_y", grad_y.len()),
            ("grad_x", grad_x.len()),
        ],
    );
    for_each_row(cols, [y, grad_y], grad_x, log_softmax_backward_row);
}

/// Fused softmax and cross-entropy, mean over rows:
/// `loss = (1 / rows) * sum_r -ln softmax(logits)[r, targets[r]]`, computed as
/// `ln sum_k exp(logits[r, k] - max_r) - (logits[r, t] - max_r)` so it stays finite. Writes
/// the softmax of `logits` into `probs` (overwritten) for [`cross_entropy_backward`].
///
/// `logits` and `probs` are `rows x cols`; `targets` has `rows` class indices. With
/// `rows == 0` the mean is over nothing and the loss is NaN (as PyTorch's).
///
/// # Panics
/// If a slice length differs from the sizes or a target is `>= cols`.
pub fn cross_entropy_forward(
    rows: usize,
    cols: usize,
    logits: &[f32],
    targets: &[u32],
    probs: &mut [f32],
) -> f32 {
    check_matrices(
        "cross_entropy_forward",
        rows,
        cols,
        [("logits", logits.len()), ("probs", probs.len())],
    );
    assert_targets("cross_entropy_forward", rows, cols, targets);
    if rows == 0 {
        return f32::NAN;
    }
    let task_rows = task_len(cols) / cols;
    // NOTE: per-task partial sums are added in task order, so the loss does not depend on
    // how rayon schedules the tasks.
    let partials: Vec<f64> = logits
        .par_chunks(task_rows * cols)
        .zip(probs.par_chunks_mut(task_rows * cols))
        .zip(targets.par_chunks(task_rows))
        .map(|((logits, probs), targets)| {
            run_task(
                #[inline(always)]
                || {
                    let rows = logits
                        .chunks_exact(cols)
                        .zip(probs.chunks_exact_mut(cols))
                        .zip(targets);
                    // NOTE: a plain loop, not `map(..).sum()`, whose fold the compiler left
                    // out of line, outside the set's features (the softmax ran at the
                    // build's baseline width).
                    let mut total = 0.0_f64;
                    for ((x, p), &t) in rows {
                        let (max, sum) = softmax_row(x, p);
                        total += sum.ln() - f64::from(x[t as usize] - max);
                    }
                    total
                },
            )
        })
        .collect();
    (partials.iter().sum::<f64>() / rows as f64) as f32
}

/// Backward of [`cross_entropy_forward`]:
/// `grad_logits[r, j] = grad_loss / rows * (probs[r, j] - [j == targets[r]])` (overwritten).
///
/// # Panics
/// If a slice length differs from the sizes or a target is `>= cols`.
pub fn cross_entropy_backward(
    rows: usize,
    cols: usize,
    probs: &[f32],
    targets: &[u32],
    grad_loss: f32,
    grad_logits: &mut [f32],
) {
    check_matrices(
        "cross_entropy_backward",
        rows,
        cols,
        [("probs", probs.len()), ("grad_logits", grad_logits.len())],
    );
    assert_targets("cross_entropy_backward", rows, cols, targets);
    if rows == 0 {
        return;
    }
    let scale = grad_loss / rows as f32;
    let task_rows = task_len(cols) / cols;
    grad_logits
        .par_chunks_mut(task_rows * cols)
        .zip(probs.par_chunks(task_rows * cols))
        .zip(targets.par_chunks(task_rows))
        .for_each(|((grad_logits, probs), targets)| {
            run_task(
                #[inline(always)]
                || {
                    let rows = grad_logits
                        .chunks_exact_mut(cols)
                        .zip(probs.chunks_exact(cols))
                        .zip(targets);
                    for ((gx, p), &t) in rows {
                        for (gx, &p) in gx.iter_mut().zip(p) {
                            *gx = scale * p;
                        }
                        gx[t as usize] = scale * (p[t as usize] - 1.0);
                    }
                },
            );
        });
}

/// Runs `row([inputs' rows], out's row)` on every row of `cols` elements, in parallel
/// tasks of whole rows, each through `run_task`. Every input has `out.len()` elements.
#[inline(always)]
fn for_each_row<const N: usize>(
    cols: usize,
    inputs: [&[f32]; N],
    out: &mut [f32],
    row: impl Fn([&[f32]; N], &mut [f32]) + Sync,
) {
    if out.is_empty() {
        return;
    }
    let task = task_len(cols);
    out.par_chunks_mut(task)
        .enumerate()
        .for_each(|(index, out)| {
            let inputs = window(inputs, index * task, out.len());
            run_task(
                #[inline(always)]
                || {
                    for (r, out) in out.chunks_exact_mut(cols).enumerate() {
                        row(window(inputs, r * cols, cols), out);
                    }
                },
            );
        });
}

/// Asserts that every named slice of kernel `op` has `rows * cols` elements.
#[track_caller]
fn check_matrices<const N: usize>(op: &str, rows: usize, cols: usize, lengths: [(&str, usize); N]) {
    for (name, len) in lengths {
        assert_eq!(len, rows * cols, "{op}: {name} length");
    }
}

fn assert_targets(op: &str, rows: usize, cols: usize, targets: &[u32]) {
    assert_eq!(targets.len(), rows, "{op}: targets length");
    if let Some((r, &t)) = targets
        .iter()
        .enumerate()
        .find(|&(_, &t)| t as usize >= cols)
    {
        panic!("{op}: target {t} of row {r} is not below the {cols} classes");
    }
}

/// Largest element of a row (NaNs are skipped; they reach the output through the
/// exponentials anyway), over eight independent lanes so the comparisons pipeline.
#[inline(always)]
fn row_max(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let groups = x.chunks_exact(8);
    let mut max = f32::NEG_INFINITY;
    for &v in groups.remainder() {
        max = max.max(v);
    }
    for group in groups {
        for (lane, &v) in lanes.iter_mut().zip(group) {
            *lane = lane.max(v);
        }
    }
    for v in lanes {
        max = max.max(v);
    }
    max
}

/// Writes `y[k] = exp(x[k] - max)` and returns the sum of the `y[k]`.
///
/// NOTE: the vectorisable `exp` of the elementwise kernels (within 2 ulp, whole range,
/// NaN kept), summed as every sum is (the elementwise `map_sum`: `f32` partial sums of at
/// most 32 terms fixed by position, joined in `f64`).
#[inline(always)]
fn exp_shifted(x: &[f32], max: f32, y: &mut [f32]) -> f64 {
    let mut sum = 0.0;
    map_sum(
        [x],
        [y],
        (1, x.len()),
        |_| max,
        #[inline(always)]
        |[v], max| {
            let e = exp(v - max);
            ([e], [e])
        },
        |_, [total]| sum = total,
    );
    sum
}

/// One row of [`softmax_backward`]: `gx = y * (gy - sum_k gy[k] * y[k])`.
#[inline(always)]
fn softmax_backward_row([y, gy]: [&[f32]; 2], gx: &mut [f32]) {
    let dot = y
        .iter()
        .zip(gy)
        .map(|(&p, &d)| f64::from(p) * f64::from(d))
        .sum::<f64>() as f32;
    for ((gx, &p), &d) in gx.iter_mut().zip(y).zip(gy) {
        *gx = p * (d - dot);
    }
}

/// One row of [`log_softmax_forward`]: `y = (x - max) - ln sum_k exp(x[k] - max)`.
#[inline(always)]
fn log_softmax_row([x]: [&[f32]; 1], y: &mut [f32]) {
    let max = row_max(x);
    // NOTE: y holds the exponentials only until their sum is known.
    let log_sum = exp_shifted(x, max, y).ln() as f32;
    for (y, &v) in y.iter_mut().zip(x) {
        *y = (v - max) - log_sum;
    }
}

/// One row of [`log_softmax_backward`]: `gx = gy - exp(y) * sum_k gy[k]`.
#[inline(always)]
fn log_softmax_backward_row([y, gy]: [&[f32]; 2], gx: &mut [f32]) {
    let total = gy.iter().map(|&d| f64::from(d)).sum::<f64>() as f32;
    // NOTE: gx holds exp(y) until the gradient replaces it.
    exp_shifted(y, 0.0, gx);
    for (gx, &d) in gx.iter_mut().zip(gy) {
        *gx = d - *gx * total;
    }
}

/// Writes the softmax of row `x` into `y`; returns the row maximum and the sum of the shifted
/// exponentials.
#[inline(always)]
fn softmax_row(x: &[f32], y: &mut [f32]) -> (f32, f64) {
    let max = row_max(x);
    let sum = exp_shifted(x, max, y);
    let inv = (1.0 / sum) as f32;
    for y in y.iter_mut() {
        *y *= inv;
    }
    (max, sum)
}
