//! Arrays seen as `[batch, channels, plane]` (NCHW with `plane = H * W`, or an `[N, C]`
//! matrix with `plane = 1`) with one parameter per channel: the driver every per-channel
//! kernel (these helpers, the rotated activations) runs on, and the helpers themselves.

use super::PARTIAL_TERMS;
use super::lanes::{gather, map_sum, window};
use super::tasks::{items_per_task, run_tasks};
use crate::tuning::memory_bound::SMALL_PLANE;

/// The sizes of a `[batch, channels, plane]` array: NCHW data with `plane = H * W`, or an
/// `[N, C]` matrix with `plane = 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelShape {
    /// Images (or rows) in the batch.
    pub batch: usize,
    /// Channels of each image, one per-channel parameter each.
    pub channels: usize,
    /// Elements of one channel of one image: `H * W`, or 1 for a matrix.
    pub plane: usize,
}

impl ChannelShape {
    /// `batch * channels * plane`.
    ///
    /// # Panics
    /// If the product overflows `usize`.
    #[track_caller]
    pub(crate) fn len(&self) -> usize {
        self.batch
            .checked_mul(self.channels)
            .and_then(|n| n.checked_mul(self.plane))
            .unwrap_or_else(|| panic!("{self:?} has more elements than usize can count"))
    }

    /// Asserts that the array `name` of kernel `op` has `len()` elements.
    #[track_caller]
    pub(crate) fn check(&self, op: &str, name: &str, len: usize) {
        let expected = self.len();
        assert_eq!(
            len, expected,
            "{op}: {name} has {len} elements, expected batch {} x channels {} x plane {} = {expected}",
            self.batch, self.channels, self.plane
        );
    }

    /// Asserts that the per-channel array `name` of kernel `op` has `channels` elements.
    #[track_caller]
    pub(crate) fn check_channels(&self, op: &str, name: &str, len: usize) {
        assert_eq!(
            len, self.channels,
            "{op}: {name} has {len} elements, expected one per channel ({})",
            self.channels
        );
    }
}

/// The driver of every per-channel kernel. For each element `(n, c, p)`, with `s =
/// param[c]` (zero when `param` is `None`):
/// `(o, t) = op([inputs[k][n, c, p] for k], s)`; `outs[m][n, c, p] = o[m]`; and
/// `sums[c] = sum over (n, p) of t`.
///
/// `outs` and `sums` are overwritten. Every input and output has `shape.len()` elements;
/// `param` and `sums` have `shape.channels` (the public callers check). `op` must be
/// `#[inline(always)]` (see [`lanes`](super::lanes)).
///
/// Work is split by the sizes alone (groups of whole planes, or of whole images when planes
/// are small). Sums are kept as `f32` partial sums of at most 32 terms, added in `f64` in
/// image order, so `sums` is accurate and depends neither on the number of threads nor on
/// the instruction set.
#[inline(always)]
pub(crate) fn map_reduce_channels<const N: usize, const M: usize>(
    shape: ChannelShape,
    inputs: [&[f32]; N],
    param: Option<&[f32]>,
    outs: [&mut [f32]; M],
    sums: Option<&mut [f32]>,
    op: impl Fn([f32; N], f32) -> ([f32; M], f32) + Sync,
) {
    let len = shape.len();
    debug_assert!(
        inputs.iter().all(|s| s.len() == len),
        "internal: input length"
    );
    debug_assert!(
        outs.iter().all(|s| s.len() == len),
        "internal: output length"
    );
    if len == 0 {
        if let Some(sums) = sums {
            sums.fill(0.0);
        }
        return;
    }
    if shape.plane < SMALL_PLANE {
        by_rows(shape, inputs, param, outs, sums, &op);
    } else {
        by_planes(shape, inputs, param, outs, sums, &op);
    }
}

/// Splits each output into consecutive parts of `part_len` elements, one set per task.
fn split_outputs<const M: usize>(
    outs: [&mut [f32]; M],
    part_len: usize,
    tasks: usize,
) -> Vec<[&mut [f32]; M]> {
    let mut parts = outs.map(|o| o.chunks_mut(part_len));
    (0..tasks)
        .map(|_| {
            parts
                .each_mut()
                .map(|it| it.next().expect("internal: one output part per task"))
        })
        .collect()
}

/// One pass over a run of elements: `outs[m][i] = o[m]` and, if `sums` is given,
/// `sums[i] += t`, where `(o, t) = op(inputs[..][i], params(i))`.
#[inline(always)]
fn run<const N: usize, const M: usize>(
    inputs: [&[f32]; N],
    mut outs: [&mut [f32]; M],
    params: impl Fn(usize) -> f32,
    op: &impl Fn([f32; N], f32) -> ([f32; M], f32),
    sums: Option<&mut [f32]>,
) {
    let len = inputs.first().map_or(0, |s| s.len());
    for out in outs.iter_mut() {
        // NOTE: the same length for every slice lets the compiler drop the bounds checks.
        *out = &mut std::mem::take(out)[..len];
    }
    match sums.map(|s| &mut s[..len]) {
        Some(sums) => {
            for (i, t) in sums.iter_mut().enumerate() {
                let (values, summand) = op(gather(&inputs, i), params(i));
                for (out, v) in outs.iter_mut().zip(values) {
                    out[i] = v;
                }
                *t += summand;
            }
        }
        None => {
            for i in 0..len {
                let (values, _) = op(gather(&inputs, i), params(i));
                for (out, v) in outs.iter_mut().zip(values) {
                    out[i] = v;
                }
            }
        }
    }
}

/// The path for planes of at least [`SMALL_PLANE`] elements: tasks of whole planes, the
/// parameter a constant per plane, one partial sum per plane.
#[inline(always)]
fn by_planes<const N: usize, const M: usize>(
    shape: ChannelShape,
    inputs: [&[f32]; N],
    param: Option<&[f32]>,
    outs: [&mut [f32]; M],
    sums: Option<&mut [f32]>,
    op: &(impl Fn([f32; N], f32) -> ([f32; M], f32) + Sync),
) {
    let ChannelShape {
        batch,
        channels,
        plane,
    } = shape;
    let planes = batch * channels;
    let per_task = items_per_task(plane);
    let tasks = planes.div_ceil(per_task);
    let mut partials = vec![0.0_f64; if sums.is_some() { planes } else { 0 }];
    let mut partial_parts = partials.chunks_mut(per_task);
    let work: Vec<_> = split_outputs(outs, per_task * plane, tasks)
        .into_iter()
        .map(|outs| (outs, partial_parts.next()))
        .collect();
    run_tasks(
        work,
        shape.len(),
        #[inline(always)]
        |task, (mut outs, partial)| {
            let first = task * per_task;
            let count = per_task.min(planes - first);
            let task_inputs = window(inputs, first * plane, count * plane);
            let mut task_outs = outs.each_mut().map(|o| &mut o[..count * plane]);
            let s = |q: usize| param.map_or(0.0, |p| p[(first + q) % channels]);
            match partial {
                Some(partial) => map_sum(
                    task_inputs,
                    task_outs,
                    (count, plane),
                    s,
                    #[inline(always)]
                    |values, s| {
                        let (o, t) = op(values, s);
                        (o, [t])
                    },
                    |q, [total]| partial[q] = total,
                ),
                None => {
                    for q in 0..count {
                        let plane_outs = task_outs
                            .each_mut()
                            .map(|o| &mut o[q * plane..(q + 1) * plane]);
                        let plane_inputs = window(task_inputs, q * plane, plane);
                        let s = s(q);
                        run(plane_inputs, plane_outs, |_| s, op, None);
                    }
                }
            }
        },
    );
    if let Some(sums) = sums {
        add_partials(partials.chunks_exact(channels), sums);
    }
}

/// `sums[c] = sum over parts of part[c]`, added in the parts' order in `f64`.
fn add_partials<'a>(parts: impl Iterator<Item = &'a [f64]>, sums: &mut [f32]) {
    let mut totals = vec![0.0_f64; sums.len()];
    for part in parts {
        for (total, value) in totals.iter_mut().zip(part) {
            *total += value;
        }
    }
    for (sum, total) in sums.iter_mut().zip(totals) {
        *sum = total as f32;
    }
}

/// The path for planes below [`SMALL_PLANE`] elements: tasks of whole images, each image a
/// row of `channels * plane` elements vectorised across channels, with the parameter
/// expanded to one value per element of the row.
#[inline(always)]
fn by_rows<const N: usize, const M: usize>(
    shape: ChannelShape,
    inputs: [&[f32]; N],
    param: Option<&[f32]>,
    outs: [&mut [f32]; M],
    sums: Option<&mut [f32]>,
    op: &(impl Fn([f32; N], f32) -> ([f32; M], f32) + Sync),
) {
    let ChannelShape {
        batch,
        channels,
        plane,
    } = shape;
    let row = channels * plane;
    let expanded: Vec<f32> = match param {
        Some(p) => (0..row).map(|j| p[j / plane]).collect(),
        None => vec![0.0; row],
    };
    let per_task = items_per_task(row);
    let tasks = batch.div_ceil(per_task);
    let want_sums = sums.is_some();
    let work = split_outputs(outs, per_task * row, tasks);
    let partials = run_tasks(
        work,
        shape.len(),
        #[inline(always)]
        |task, mut outs| {
            let first = task * per_task;
            let mut acc = vec![0.0_f32; if want_sums { row } else { 0 }];
            let mut totals = vec![0.0_f64; acc.len()];
            let params = &expanded[..row];
            for image in first..(first + per_task).min(batch) {
                let at = (image - first) * row;
                let row_inputs = window(inputs, image * row, row);
                let row_outs = outs.each_mut().map(|o| &mut o[at..at + row]);
                if want_sums {
                    run(row_inputs, row_outs, |j| params[j], op, Some(&mut acc));
                    if (image - first + 1).is_multiple_of(PARTIAL_TERMS) {
                        flush(&mut acc, &mut totals);
                    }
                } else {
                    run(row_inputs, row_outs, |j| params[j], op, None);
                }
            }
            flush(&mut acc, &mut totals);
            totals
                .chunks_exact(plane)
                .map(|per_channel| per_channel.iter().sum::<f64>())
                .collect::<Vec<f64>>()
        },
    );
    if let Some(sums) = sums {
        add_partials(partials.iter().map(Vec::as_slice), sums);
    }
}

/// Adds the `f32` partial sums `acc` into `totals` and restarts them from zero.
fn flush(acc: &mut [f32], totals: &mut [f64]) {
    for (partial, total) in acc.iter_mut().zip(totals) {
        *total += f64::from(*partial);
        *partial = 0.0;
    }
}

/// `out[n, c, p] = x[n, c, p] * scale[c]` on a `[batch, channels, plane]` array.
///
/// # Panics
/// If `x` or `out` does not have `batch * channels * plane` elements or `scale` does not
/// have `channels`.
pub fn mul_channels(
    batch: usize,
    channels: usize,
    plane: usize,
    x: &[f32],
    scale: &[f32],
    out: &mut [f32],
) {
    let shape = ChannelShape {
        batch,
        channels,
        plane,
    };
    shape.check("mul_channels", "x", x.len());
    shape.check("mul_channels", "out", out.len());
    shape.check_channels("mul_channels", "scale", scale.len());
    map_reduce_channels(
        shape,
        [x],
        Some(scale),
        [out],
        None,
        #[inline(always)]
        |[x], s| ([x * s], 0.0),
    );
}

/// `out[n, c, p] = x[n, c, p] + bias[c]` on a `[batch, channels, plane]` array.
///
/// # Panics
/// If `x` or `out` does not have `batch * channels * plane` elements or `bias` does not
/// have `channels`.
pub fn add_channels(
    batch: usize,
    channels: usize,
    plane: usize,
    x: &[f32],
    bias: &[f32],
    out: &mut [f32],
) {
    let shape = ChannelShape {
        batch,
        channels,
        plane,
    };
    shape.check("add_channels", "x", x.len());
    shape.check("add_channels", "out", out.len());
    shape.check_channels("add_channels", "bias", bias.len());
    map_reduce_channels(
        shape,
        [x],
        Some(bias),
        [out],
        None,
        #[inline(always)]
        |[x], b| ([x + b], 0.0),
    );
}

/// `out[c] = sum over (n, p) of x[n, c, p]` on a `[batch, channels, plane]` array (`out`
/// overwritten; zero when `batch * plane == 0`).
///
/// # Panics
/// If `x` does not have `batch * channels * plane` elements or `out` does not have
/// `channels`.
pub fn sum_channels(batch: usize, channels: usize, plane: usize, x: &[f32], out: &mut [f32]) {
    let shape = ChannelShape {
        batch,
        channels,
        plane,
    };
    shape.check("sum_channels", "x", x.len());
    shape.check_channels("sum_channels", "out", out.len());
    map_reduce_channels(
        shape,
        [x],
        None,
        [],
        Some(out),
        #[inline(always)]
        |[x], _| ([], x),
    );
}

/// `out[c] = sum over (n, p) of a[n, c, p] * b[n, c, p]` on `[batch, channels, plane]`
/// arrays (`out` overwritten; zero when `batch * plane == 0`).
///
/// # Panics
/// If `a` or `b` does not have `batch * channels * plane` elements or `out` does not have
/// `channels`.
pub fn dot_channels(
    batch: usize,
    channels: usize,
    plane: usize,
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
) {
    let shape = ChannelShape {
        batch,
        channels,
        plane,
    };
    shape.check("dot_channels", "a", a.len());
    shape.check("dot_channels", "b", b.len());
    shape.check_channels("dot_channels", "out", out.len());
    map_reduce_channels(
        shape,
        [a, b],
        None,
        [],
        Some(out),
        #[inline(always)]
        |[a, b], _| ([], a * b),
    );
}

#[cfg(test)]
mod tests {
    use super::{ChannelShape, map_reduce_channels};

    /// A summand that is not zero at zero: the padding lanes of partial chunks would be
    /// counted if the driver did not drop them.
    #[test]
    fn padding_lanes_add_nothing_to_the_sums() {
        for (batch, channels, plane) in [(3, 5, 1), (2, 3, 7), (4, 2, 17), (3, 3, 33)] {
            let shape = ChannelShape {
                batch,
                channels,
                plane,
            };
            let x = vec![0.0; shape.len()];
            let mut counts = vec![f32::NAN; channels];
            map_reduce_channels(shape, [&x[..]], None, [], Some(&mut counts), |_, _| {
                ([], 1.0)
            });
            assert_eq!(counts, vec![(batch * plane) as f32; channels], "{shape:?}");
        }
    }
}
