//! 2-D pooling over NCHW planes: max pooling (with the argmax its backward needs), average
//! pooling with padding counted in the divisor, and global average pooling.
//!
//! Every kernel is parallel over groups of whole (image, channel) planes, which are
//! independent; each task runs as every elementwise task does (`run_task`): with denormals
//! flushed, its loops compiled for the chosen instruction set.

use crate::activation::{pass_where_positive, relu};
use crate::elementwise::reduce::beats;
use crate::elementwise::tasks::{items_per_task, run_task};
use rayon::prelude::*;

/// Shape of a 2-D pooling: input `[batch, channels, in_h, in_w]`, output
/// `[batch, channels, out_h, out_w]` with `out = (in + 2 pad - kernel) / stride + 1` per axis.
///
/// A window at output `(y, x)` covers input rows `y * stride_h - pad_h ..` (`kernel_h` of
/// them) and columns likewise; positions outside the input are padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dGeometry {
    pub batch: usize,
    pub channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_h: usize,
    pub pad_w: usize,
}

impl Pool2dGeometry {
    /// Whether the pooling kernels accept this geometry: per axis `in >= 1`, `kernel >= 1`,
    /// `stride >= 1`, `pad <= kernel / 2` and `kernel <= in + 2 pad`, and the input plane
    /// has at most `u32::MAX` elements.
    ///
    /// NOTE: `pad <= kernel / 2` with `in >= 1` guarantees every window holds at least one
    /// input element, so a maximum always exists and padding never has to win.
    pub fn is_valid(&self) -> bool {
        let axis_ok = |input: usize, kernel: usize, stride: usize, pad: usize| {
            input >= 1
                && kernel >= 1
                && stride >= 1
                && pad <= kernel / 2
                && kernel <= input + 2 * pad
        };
        axis_ok(self.in_h, self.kernel_h, self.stride_h, self.pad_h)
            && axis_ok(self.in_w, self.kernel_w, self.stride_w, self.pad_w)
            && u32::try_from(self.in_h * self.in_w).is_ok()
    }

    /// Output height, `(in_h + 2 pad_h - kernel_h) / stride_h + 1`.
    ///
    /// # Panics
    /// If `stride_h == 0` or `kernel_h > in_h + 2 pad_h`.
    pub fn out_h(&self) -> usize {
        out_extent(self.in_h, self.kernel_h, self.stride_h, self.pad_h)
    }

    /// Output width, `(in_w + 2 pad_w - kernel_w) / stride_w + 1`.
    ///
    /// # Panics
    /// If `stride_w == 0` or `kernel_w > in_w + 2 pad_w`.
    pub fn out_w(&self) -> usize {
        out_extent(self.in_w, self.kernel_w, self.stride_w, self.pad_w)
    }

    /// Number of input elements, `batch * channels * in_h * in_w`.
    pub fn input_len(&self) -> usize {
        self.batch * self.channels * self.in_h * self.in_w
    }

    /// Number of output elements, `batch * channels * out_h * out_w`.
    ///
    /// # Panics
    /// As [`Self::out_h`] and [`Self::out_w`].
    pub fn output_len(&self) -> usize {
        self.batch * self.channels * self.out_h() * self.out_w()
    }

    fn assert_valid(&self) {
        assert!(self.is_valid(), "invalid pooling geometry {self:?}");
    }
}

fn out_extent(input: usize, kernel: usize, stride: usize, pad: usize) -> usize {
    assert!(stride >= 1, "pooling stride must be at least 1");
    assert!(
        kernel <= input + 2 * pad,
        "pooling kernel {kernel} exceeds the padded input {input} + 2 * {pad}"
    );
    (input + 2 * pad - kernel) / stride + 1
}

/// For each output position along one axis, the clipped input range `start..end` its window
/// covers (padding excluded).
fn window_ranges(input: usize, kernel: usize, stride: usize, pad: usize) -> Vec<(usize, usize)> {
    (0..out_extent(input, kernel, stride, pad))
        .map(|o| {
            let start = o * stride;
            // NOTE: kernel > pad (from pad <= kernel / 2), so the end never underflows.
            (start.saturating_sub(pad), (start + kernel - pad).min(input))
        })
        .collect()
}

/// Max pooling: `output[n, c, y, x]` is the maximum of the input over window `(y, x)`;
/// padding never wins. `argmax[n, c, y, x]` is the index within the input plane
/// (`iy * in_w + ix`) of the chosen element: the first maximum in window order (row by row)
/// on ties, the first NaN if the window holds one.
///
/// `input` is `[batch, channels, in_h, in_w]`; `output` and `argmax` are
/// `[batch, channels, out_h, out_w]` and overwritten.
///
/// # Panics
/// If the geometry is not [valid](Pool2dGeometry::is_valid) or a slice length differs from
/// the geometry's.
pub fn max_pool2d_forward(
    g: &Pool2dGeometry,
    input: &[f32],
    output: &mut [f32],
    argmax: &mut [u32],
) {
    g.assert_valid();
    assert_eq!(
        input.len(),
        g.input_len(),
        "max_pool2d_forward: input length"
    );
    assert_eq!(
        output.len(),
        g.output_len(),
        "max_pool2d_forward: output length"
    );
    assert_eq!(
        argmax.len(),
        g.output_len(),
        "max_pool2d_forward: argmax length"
    );
    max_pool_mapped(g, input, output, argmax, |_| 1.0, |_, x| x);
}

/// Max pooling of `value(scale(c), x)` over the input `x` of each channel `c`: the plain
/// pool, or a rotated ReLU's output pooled without being written.
fn max_pool_mapped(
    g: &Pool2dGeometry,
    input: &[f32],
    output: &mut [f32],
    argmax: &mut [u32],
    scale: impl Fn(usize) -> f32 + Sync,
    value: impl Fn(f32, f32) -> f32 + Copy + Sync,
) {
    if output.is_empty() {
        return;
    }
    let in_plane = g.in_h * g.in_w;
    let out_plane = g.out_h() * g.out_w();
    let per_task = items_per_task(in_plane);
    let rows = window_ranges(g.in_h, g.kernel_h, g.stride_h, g.pad_h);
    let cols = window_ranges(g.in_w, g.kernel_w, g.stride_w, g.pad_w);
    let window = (
        g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, g.pad_h, g.pad_w,
    );
    let halving = window == (2, 2, 2, 2, 0, 0) && g.out_w() >= GROUP;
    input
        .par_chunks(in_plane * per_task)
        .zip(output.par_chunks_mut(out_plane * per_task))
        .zip(argmax.par_chunks_mut(out_plane * per_task))
        .enumerate()
        .for_each(|(task, ((input, output), argmax))| {
            run_task(
                #[inline(always)]
                || {
                    let planes = input
                        .chunks_exact(in_plane)
                        .zip(output.chunks_exact_mut(out_plane))
                        .zip(argmax.chunks_exact_mut(out_plane));
                    for (p, ((x, y), a)) in planes.enumerate() {
                        let s = scale((task * per_task + p) % g.channels);
                        let f = move |x| value(s, x);
                        if halving {
                            max_plane_2x2(g.in_w, g.out_w(), x, y, a, f);
                        } else {
                            max_plane(g.in_w, &rows, &cols, x, y, a, f);
                        }
                    }
                },
            );
        });
}

/// Max pooling of one plane, any geometry.
#[inline(always)]
fn max_plane(
    in_w: usize,
    rows: &[(usize, usize)],
    cols: &[(usize, usize)],
    x: &[f32],
    y: &mut [f32],
    a: &mut [u32],
    f: impl Fn(f32) -> f32,
) {
    let outputs = y
        .chunks_exact_mut(cols.len())
        .zip(a.chunks_exact_mut(cols.len()));
    for (&(y0, y1), (y_row, a_row)) in rows.iter().zip(outputs) {
        for (&(x0, x1), (out, arg)) in cols.iter().zip(y_row.iter_mut().zip(a_row)) {
            let mut best = f(x[y0 * in_w + x0]);
            let mut best_at = y0 * in_w + x0;
            for iy in y0..y1 {
                for (ix, &v) in x[iy * in_w..][x0..x1].iter().enumerate() {
                    let v = f(v);
                    if beats(v, best) {
                        best = v;
                        best_at = iy * in_w + x0 + ix;
                    }
                }
            }
            *out = best;
            *arg = best_at as u32;
        }
    }
}

/// Max pooling of one plane with 2x2 windows, stride 2, no padding: MnistNet's case.
///
/// NOTE: [`GROUP`] windows at a time, in straight-line code without branches (each
/// candidate picks by [`beats`] with a select), which the compiler turns into vector
/// compares and blends at the chosen set's width (the general loop's data-dependent
/// branches mispredict on real data). A row whose width is not a multiple of the group
/// ends with a group overlapping the previous one, which rewrites a few outputs with the
/// same values instead of a scalar tail; so a row needs `out_w >= GROUP`.
///
/// NOTE: a plain loop over a row's outputs, left to the loop vectoriser, ran 7 times
/// slower on MnistNet's rows of 12: a row shorter than the vector went entirely through
/// the scalar remainder.
#[inline(always)]
fn max_plane_2x2(
    in_w: usize,
    out_w: usize,
    x: &[f32],
    y: &mut [f32],
    a: &mut [u32],
    f: impl Fn(f32) -> f32 + Copy,
) {
    debug_assert!(out_w >= GROUP, "internal: rows of at least one group");
    let outputs = y.chunks_exact_mut(out_w).zip(a.chunks_exact_mut(out_w));
    for (oy, (y_row, a_row)) in outputs.enumerate() {
        let top_at = 2 * oy * in_w;
        let top = &x[top_at..top_at + 2 * out_w];
        let bottom = &x[top_at + in_w..top_at + in_w + 2 * out_w];
        let last = (!out_w.is_multiple_of(GROUP)).then_some(out_w - GROUP);
        for ox in (0..out_w / GROUP).map(|g| GROUP * g).chain(last) {
            let pairs = 2 * ox..2 * (ox + GROUP);
            let outs = ox..ox + GROUP;
            max_group_2x2(
                top[pairs.clone()].try_into().expect("internal: a group"),
                bottom[pairs].try_into().expect("internal: a group"),
                (top_at + 2 * ox) as u32,
                in_w as u32,
                (&mut y_row[outs.clone()])
                    .try_into()
                    .expect("internal: a group"),
                (&mut a_row[outs]).try_into().expect("internal: a group"),
                f,
            );
        }
    }
}

/// Windows of [`max_plane_2x2`] handled together.
const GROUP: usize = 8;

/// [`GROUP`] 2x2 windows side by side: the maxima of the pairs of `top` over the pairs of
/// `bottom`, in window order, and their indices (`at` is the first one's, `below` the
/// offset of the row below).
#[inline(always)]
fn max_group_2x2(
    top: &[f32; 2 * GROUP],
    bottom: &[f32; 2 * GROUP],
    at: u32,
    below: u32,
    y: &mut [f32; GROUP],
    a: &mut [u32; GROUP],
    f: impl Fn(f32) -> f32,
) {
    for k in 0..GROUP {
        let first = at + 2 * k as u32;
        let (mut best, mut best_at) = (f(top[2 * k]), first);
        for (v, v_at) in [
            (f(top[2 * k + 1]), first + 1),
            (f(bottom[2 * k]), first + below),
            (f(bottom[2 * k + 1]), first + below + 1),
        ] {
            let take = beats(v, best);
            best = if take { v } else { best };
            best_at = if take { v_at } else { best_at };
        }
        y[k] = best;
        a[k] = best_at;
    }
}

/// Backward of max pooling: `grad_input` (overwritten) is zero except that each
/// `grad_output[n, c, y, x]` is added at `argmax[n, c, y, x]` of its plane (overlapping
/// windows that chose the same element add up).
///
/// `grad_output` and `argmax` are `[batch, channels, out_h, out_w]`; `grad_input` is
/// `[batch, channels, in_h, in_w]`.
///
/// # Panics
/// If the geometry is not [valid](Pool2dGeometry::is_valid), a slice length differs from
/// the geometry's, or an argmax is `>= in_h * in_w`.
pub fn max_pool2d_backward(
    g: &Pool2dGeometry,
    grad_output: &[f32],
    argmax: &[u32],
    grad_input: &mut [f32],
) {
    g.assert_valid();
    assert_eq!(
        grad_output.len(),
        g.output_len(),
        "max_pool2d_backward: grad_output length"
    );
    assert_eq!(
        argmax.len(),
        g.output_len(),
        "max_pool2d_backward: argmax length"
    );
    assert_eq!(
        grad_input.len(),
        g.input_len(),
        "max_pool2d_backward: grad_input length"
    );
    if grad_input.is_empty() {
        return;
    }
    let in_plane = g.in_h * g.in_w;
    let out_plane = g.out_h() * g.out_w();
    let per_task = items_per_task(in_plane);
    grad_input
        .par_chunks_mut(in_plane * per_task)
        .zip(grad_output.par_chunks(out_plane * per_task))
        .zip(argmax.par_chunks(out_plane * per_task))
        .for_each(|((grad_input, grad_output), argmax)| {
            run_task(
                #[inline(always)]
                || {
                    let planes = grad_input
                        .chunks_exact_mut(in_plane)
                        .zip(grad_output.chunks_exact(out_plane))
                        .zip(argmax.chunks_exact(out_plane));
                    for ((gi, go), a) in planes {
                        gi.fill(0.0);
                        for (&d, &at) in go.iter().zip(a) {
                            gi[at as usize] += d;
                        }
                    }
                },
            );
        });
}

/// The rotated ReLU and max pooling in one pass, for training: `output` is
/// `max_pool2d(slope[c] * max(0, input))` and `argmax` its choices, as
/// [`max_pool2d_forward`] gives them on the rotated ReLU's output, which is never written.
///
/// # Panics
/// As [`max_pool2d_forward`], or if `slope` does not have `g.channels` elements.
pub fn rotated_relu_max_pool2d_forward(
    g: &Pool2dGeometry,
    input: &[f32],
    slope: &[f32],
    output: &mut [f32],
    argmax: &mut [u32],
) {
    g.assert_valid();
    let op = "rotated_relu_max_pool2d_forward";
    assert_eq!(input.len(), g.input_len(), "{op}: input length");
    assert_eq!(slope.len(), g.channels, "{op}: slope length");
    assert_eq!(output.len(), g.output_len(), "{op}: output length");
    assert_eq!(argmax.len(), g.output_len(), "{op}: argmax length");
    max_pool_mapped(g, input, output, argmax, |c| slope[c], |a, x| a * relu(x));
}

/// Backward of [`rotated_relu_max_pool2d_forward`]: `grad_input` (overwritten) is zero
/// except `grad_output * slope[c]` added at each window's choice where the input is
/// positive, and `grad_slope[c]` (overwritten) is the sum of `grad_output * max(0, x)` at
/// the choices of channel `c`, added in a fixed order whatever the thread count.
///
/// # Panics
/// As [`max_pool2d_backward`], or if `input` does not have the input's length or the
/// slope and its gradient do not have `g.channels` elements.
pub fn rotated_relu_max_pool2d_backward(
    g: &Pool2dGeometry,
    input: &[f32],
    slope: &[f32],
    grad_output: &[f32],
    argmax: &[u32],
    grad_input: &mut [f32],
    grad_slope: &mut [f32],
) {
    g.assert_valid();
    let op = "rotated_relu_max_pool2d_backward";
    assert_eq!(input.len(), g.input_len(), "{op}: input length");
    assert_eq!(slope.len(), g.channels, "{op}: slope length");
    assert_eq!(grad_slope.len(), g.channels, "{op}: grad_slope length");
    assert_eq!(
        grad_output.len(),
        g.output_len(),
        "{op}: grad_output length"
    );
    assert_eq!(argmax.len(), g.output_len(), "{op}: argmax length");
    assert_eq!(grad_input.len(), g.input_len(), "{op}: grad_input length");
    let in_plane = g.in_h * g.in_w;
    let out_plane = g.out_h() * g.out_w();
    let planes = g.batch * g.channels;
    if in_plane == 0 || out_plane == 0 || planes == 0 {
        grad_input.fill(0.0);
        grad_slope.fill(0.0);
        return;
    }
    // One slope-gradient term per plane, summed per channel afterwards in image order.
    let mut plane_sums = vec![0.0f64; planes];
    let per_task = items_per_task(in_plane);
    grad_input
        .par_chunks_mut(in_plane * per_task)
        .zip(plane_sums.par_chunks_mut(per_task))
        .enumerate()
        .for_each(|(task, (grad_input, sums))| {
            run_task(
                #[inline(always)]
                || {
                    let first = task * per_task;
                    let planes = grad_input.chunks_exact_mut(in_plane).zip(sums);
                    for (p, (gi, sum)) in planes.enumerate() {
                        let plane = first + p;
                        let a = slope[plane % g.channels];
                        let x = &input[plane * in_plane..][..in_plane];
                        let go = &grad_output[plane * out_plane..][..out_plane];
                        let at = &argmax[plane * out_plane..][..out_plane];
                        gi.fill(0.0);
                        let mut total = 0.0f32;
                        for (&d, &at) in go.iter().zip(at) {
                            let v = x[at as usize];
                            gi[at as usize] += pass_where_positive(v, d * a);
                            total += d * relu(v);
                        }
                        *sum = f64::from(total);
                    }
                },
            );
        });
    for (c, grad) in grad_slope.iter_mut().enumerate() {
        let total: f64 = (0..g.batch).map(|n| plane_sums[n * g.channels + c]).sum();
        *grad = total as f32;
    }
}

/// Average pooling with padding counted (PyTorch's `count_include_pad=True` default):
/// `output[n, c, y, x] = sum of the input over window (y, x) / (kernel_h * kernel_w)`,
/// padding contributing zeros.
///
/// `input` is `[batch, channels, in_h, in_w]`; `output` is `[batch, channels, out_h, out_w]`
/// and overwritten.
///
/// # Panics
/// If the geometry is not [valid](Pool2dGeometry::is_valid) or a slice length differs from
/// the geometry's.
pub fn avg_pool2d_forward(g: &Pool2dGeometry, input: &[f32], output: &mut [f32]) {
    g.assert_valid();
    assert_eq!(
        input.len(),
        g.input_len(),
        "avg_pool2d_forward: input length"
    );
    assert_eq!(
        output.len(),
        g.output_len(),
        "avg_pool2d_forward: output length"
    );
    if output.is_empty() {
        return;
    }
    let in_plane = g.in_h * g.in_w;
    let out_plane = g.out_h() * g.out_w();
    let per_task = items_per_task(in_plane);
    let rows = window_ranges(g.in_h, g.kernel_h, g.stride_h, g.pad_h);
    let cols = window_ranges(g.in_w, g.kernel_w, g.stride_w, g.pad_w);
    let inv_area = 1.0 / (g.kernel_h * g.kernel_w) as f32;
    input
        .par_chunks(in_plane * per_task)
        .zip(output.par_chunks_mut(out_plane * per_task))
        .for_each(|(input, output)| {
            run_task(
                #[inline(always)]
                || {
                    for (x, y) in input
                        .chunks_exact(in_plane)
                        .zip(output.chunks_exact_mut(out_plane))
                    {
                        for (&(y0, y1), y_row) in rows.iter().zip(y.chunks_exact_mut(cols.len())) {
                            for (&(x0, x1), out) in cols.iter().zip(y_row) {
                                let total: f32 = (y0..y1)
                                    .map(|iy| x[iy * g.in_w..][x0..x1].iter().sum::<f32>())
                                    .sum();
                                *out = total * inv_area;
                            }
                        }
                    }
                },
            );
        });
}

/// Backward of [`avg_pool2d_forward`]: `grad_input[n, c, iy, ix]` (overwritten) is the sum,
/// over the windows containing `(iy, ix)`, of `grad_output / (kernel_h * kernel_w)`.
///
/// `grad_output` is `[batch, channels, out_h, out_w]`; `grad_input` is
/// `[batch, channels, in_h, in_w]`.
///
/// # Panics
/// If the geometry is not [valid](Pool2dGeometry::is_valid) or a slice length differs from
/// the geometry's.
pub fn avg_pool2d_backward(g: &Pool2dGeometry, grad_output: &[f32], grad_input: &mut [f32]) {
    g.assert_valid();
    assert_eq!(
        grad_output.len(),
        g.output_len(),
        "avg_pool2d_backward: grad_output length"
    );
    assert_eq!(
        grad_input.len(),
        g.input_len(),
        "avg_pool2d_backward: grad_input length"
    );
    if grad_input.is_empty() {
        return;
    }
    let in_plane = g.in_h * g.in_w;
    let out_plane = g.out_h() * g.out_w();
    let per_task = items_per_task(in_plane);
    let rows = window_ranges(g.in_h, g.kernel_h, g.stride_h, g.pad_h);
    let cols = window_ranges(g.in_w, g.kernel_w, g.stride_w, g.pad_w);
    let inv_area = 1.0 / (g.kernel_h * g.kernel_w) as f32;
    grad_input
        .par_chunks_mut(in_plane * per_task)
        .zip(grad_output.par_chunks(out_plane * per_task))
        .for_each(|(grad_input, grad_output)| {
            run_task(
                #[inline(always)]
                || {
                    for (gi, go) in grad_input
                        .chunks_exact_mut(in_plane)
                        .zip(grad_output.chunks_exact(out_plane))
                    {
                        gi.fill(0.0);
                        for (&(y0, y1), go_row) in rows.iter().zip(go.chunks_exact(cols.len())) {
                            for (&(x0, x1), &d) in cols.iter().zip(go_row) {
                                let share = d * inv_area;
                                for iy in y0..y1 {
                                    for v in &mut gi[iy * g.in_w..][x0..x1] {
                                        *v += share;
                                    }
                                }
                            }
                        }
                    }
                },
            );
        });
}

/// Global average pooling: `output[n, c] = (1 / plane) * sum over p of input[n, c, p]`,
/// summed in `f64`.
///
/// `input` is `[batch, channels, plane]` (NCHW with `plane = H * W`); `output` is
/// `[batch, channels]` and overwritten.
///
/// # Panics
/// If `plane == 0` while `batch * channels > 0`, or a slice length differs from the sizes.
pub fn global_avg_pool2d_forward(
    batch: usize,
    channels: usize,
    plane: usize,
    input: &[f32],
    output: &mut [f32],
) {
    assert_eq!(
        input.len(),
        batch * channels * plane,
        "global_avg_pool2d_forward: input length"
    );
    assert_eq!(
        output.len(),
        batch * channels,
        "global_avg_pool2d_forward: output length"
    );
    if output.is_empty() {
        return;
    }
    assert!(plane >= 1, "global_avg_pool2d_forward: empty plane");
    let per_task = items_per_task(plane);
    let inv_plane = 1.0 / plane as f64;
    input
        .par_chunks(plane * per_task)
        .zip(output.par_chunks_mut(per_task))
        .for_each(|(input, output)| {
            run_task(
                #[inline(always)]
                || {
                    for (x, out) in input.chunks_exact(plane).zip(output) {
                        *out = (sum_f64(x) * inv_plane) as f32;
                    }
                },
            );
        });
}

/// Backward of [`global_avg_pool2d_forward`]: `grad_input[n, c, p] = grad_output[n, c] / plane`
/// (overwritten).
///
/// # Panics
/// If a slice length differs from the sizes.
pub fn global_avg_pool2d_backward(
    batch: usize,
    channels: usize,
    plane: usize,
    grad_output: &[f32],
    grad_input: &mut [f32],
) {
    assert_eq!(
        grad_output.len(),
        batch * channels,
        "global_avg_pool2d_backward: grad_output length"
    );
    assert_eq!(
        grad_input.len(),
        batch * channels * plane,
        "global_avg_pool2d_backward: grad_input length"
    );
    if grad_input.is_empty() {
        return;
    }
    let per_task = items_per_task(plane);
    let inv_plane = 1.0 / plane as f32;
    grad_input
        .par_chunks_mut(plane * per_task)
        .zip(grad_output.par_chunks(per_task))
        .for_each(|(grad_input, grad_output)| {
            run_task(
                #[inline(always)]
                || {
                    for (gi, &d) in grad_input.chunks_exact_mut(plane).zip(grad_output) {
                        gi.fill(d * inv_plane);
                    }
                },
            );
        });
}

/// Sum in `f64` over eight independent lanes, so the additions pipeline (and vectorise)
/// instead of waiting on one running total.
#[inline(always)]
fn sum_f64(x: &[f32]) -> f64 {
    let mut lanes = [0.0_f64; 8];
    let mut chunks = x.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f64::from(v);
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| f64::from(v)).sum();
    lanes.iter().sum::<f64>() + tail
}
