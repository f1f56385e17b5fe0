//! Arrays seen as `[batch, channels, plane]` (NCHW with `plane = H * W`, or an `[N, C]`
//! matrix with `plane = 1`) with one parameter per channel: the driver every per-channel
//! kernel (these helpers, the rotated activations) runs on, and the helpers themselves.

use super::PARTIAL_TERMS;
use super::lanes::{LANES, for_each_chunk, keep_lanes, load_all, load_n, store_n};
use super::tasks::{items_per_task, run_tasks};
use wide::f32x8;

/// The sizes of a `[batch, channels, plane]` array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChannelShape {
    pub batch: usize,
    pub channels: usize,
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

/// Planes smaller than this go through the row path of [`map_reduce_channels`].
///
/// NOTE: a plane of `p` elements costs `ceil(p / 8)` vector steps, so below 16 elements
/// (and above all at `plane == 1`, an `[N, C]` matrix) most lanes of the last step would
/// be padding; the row path vectorises across channels instead.
const SMALL_PLANE: usize = 16;

/// The driver of every per-channel kernel. For each element `(n, c, p)`, with `s` the
/// lanes of `param[c]` (zero when `param` is `None`):
/// `(o, t) = op([inputs[k][n, c, p] for k], s)`; `outs[m][n, c, p] = o[m]`; and
/// `sums[c] = sum over (n, p) of t`.
///
/// `outs` and `sums` are overwritten. Every input and output has `shape.len()` elements;
/// `param` and `sums` have `shape.channels` (the public callers check).
///
/// Work is split by the sizes alone (groups of whole planes, or of whole images when planes
/// are small). Sums are kept as `f32` partial sums of at most 32 terms, added in `f64` in
/// image order, so `sums` is accurate and does not depend on the number of threads.
pub(crate) fn map_reduce_channels<const N: usize, const M: usize>(
    shape: ChannelShape,
    inputs: [&[f32]; N],
    param: Option<&[f32]>,
    outs: [&mut [f32]; M],
    sums: Option<&mut [f32]>,
    op: impl Fn([f32x8; N], f32x8) -> ([f32x8; M], f32x8) + Sync,
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

/// One pass over a run of `len` elements: `params(start, n)` gives the parameter lanes of
/// the chunk of `n` elements at `start`, and `sink(start, n, t)` receives its summands
/// (padding lanes zeroed).
#[inline(always)]
fn run<const N: usize, const M: usize>(
    len: usize,
    inputs: [&[f32]; N],
    mut outs: [&mut [f32]; M],
    params: impl Fn(usize, usize) -> f32x8,
    op: &impl Fn([f32x8; N], f32x8) -> ([f32x8; M], f32x8),
    mut sink: impl FnMut(usize, usize, f32x8),
) {
    for_each_chunk(len, |start, n| {
        let (values, summand) = op(load_all(&inputs, start, n), params(start, n));
        for (out, v) in outs.iter_mut().zip(values) {
            store_n(v, out, start, n);
        }
        sink(start, n, keep_lanes(summand, n));
    });
}

/// The path for planes of at least [`SMALL_PLANE`] elements: tasks of whole planes, the
/// parameter a constant per plane, one partial sum per plane.
fn by_planes<const N: usize, const M: usize>(
    shape: ChannelShape,
    inputs: [&[f32]; N],
    param: Option<&[f32]>,
    outs: [&mut [f32]; M],
    sums: Option<&mut [f32]>,
    op: &(impl Fn([f32x8; N], f32x8) -> ([f32x8; M], f32x8) + Sync),
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
    run_tasks(work, shape.len(), |task, (mut outs, mut partial)| {
        let first = task * per_task;
        for q in first..(first + per_task).min(planes) {
            let s = f32x8::splat(param.map_or(0.0, |p| p[q % channels]));
            let at = (q - first) * plane;
            let plane_inputs = inputs.map(|x| &x[q * plane..(q + 1) * plane]);
            let plane_outs = outs.each_mut().map(|o| &mut o[at..at + plane]);
            match partial.as_deref_mut() {
                Some(partial) => {
                    let (mut acc, mut total) = (f32x8::ZERO, 0.0_f64);
                    run(
                        plane,
                        plane_inputs,
                        plane_outs,
                        |_, _| s,
                        op,
                        |start, len, t| {
                            acc += t;
                            if (start + len) % (LANES * PARTIAL_TERMS) == 0 {
                                total += f64::from(acc.reduce_add());
                                acc = f32x8::ZERO;
                            }
                        },
                    );
                    partial[q - first] = total + f64::from(acc.reduce_add());
                }
                None => run(plane, plane_inputs, plane_outs, |_, _| s, op, |_, _, _| {}),
            }
        }
    });
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
fn by_rows<const N: usize, const M: usize>(
    shape: ChannelShape,
    inputs: [&[f32]; N],
    param: Option<&[f32]>,
    outs: [&mut [f32]; M],
    sums: Option<&mut [f32]>,
    op: &(impl Fn([f32x8; N], f32x8) -> ([f32x8; M], f32x8) + Sync),
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
    let partials = run_tasks(work, shape.len(), |task, mut outs| {
        let first = task * per_task;
        let mut acc = vec![0.0_f32; if want_sums { row } else { 0 }];
        let mut totals = vec![0.0_f64; acc.len()];
        for image in first..(first + per_task).min(batch) {
            let at = (image - first) * row;
            let row_inputs = inputs.map(|x| &x[image * row..(image + 1) * row]);
            let row_outs = outs.each_mut().map(|o| &mut o[at..at + row]);
            let params = |start, len| load_n(&expanded, start, len);
            if want_sums {
                run(row, row_inputs, row_outs, params, op, |start, len, t| {
                    store_n(load_n(&acc, start, len) + t, &mut acc, start, len);
                });
                if (image - first + 1).is_multiple_of(PARTIAL_TERMS) {
                    flush(&mut acc, &mut totals);
                }
            } else {
                run(row, row_inputs, row_outs, params, op, |_, _, _| {});
            }
        }
        flush(&mut acc, &mut totals);
        totals
            .chunks_exact(plane)
            .map(|per_channel| per_channel.iter().sum::<f64>())
            .collect::<Vec<f64>>()
    });
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
    map_reduce_channels(shape, [x], Some(scale), [out], None, |[x], s| {
        ([x * s], f32x8::ZERO)
    });
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
    map_reduce_channels(shape, [x], Some(bias), [out], None, |[x], b| {
        ([x + b], f32x8::ZERO)
    });
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
    map_reduce_channels(shape, [x], None, [], Some(out), |[x], _| ([], x));
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
    map_reduce_channels(shape, [a, b], None, [], Some(out), |[a, b], _| ([], a * b));
}

#[cfg(test)]
mod tests {
    use super::{ChannelShape, map_reduce_channels};
    use wide::f32x8;

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
                ([], f32x8::ONE)
            });
            assert_eq!(counts, vec![(batch * plane) as f32; channels], "{shape:?}");
        }
    }
}
