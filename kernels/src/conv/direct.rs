//! The channel-skipping forward for convolutions with few input taps (a network's first
//! layer: one or three input channels), computed directly from the input planes.
//!
//! NOTE: with `active inputs * taps` of 9 (MnistNet's first layer) the im2col matrix is nine
//! copies of the image and the matrix product does 9 multiply-accumulates per output, so
//! copying and packing the columns costs more than the arithmetic. Here each output plane is
//! computed straight from the input plane, which stays in L1: with unit strides and no
//! padding, tap `(i, j)` of output position `y * in_w + x` reads input element
//! `y * in_w + x + i * in_w + j`, so when a plane is computed `in_w` wide (the last
//! `kernel_w - 1` columns of each row are junk, dropped by the epilogue) every run of eight
//! positions goes through all taps as eight-lane vector operations on contiguous inputs.

use rayon::prelude::*;

use super::Conv2dGeometry;
use super::skip::epilogue_max_pool;
use crate::denormal::with_denormals_flushed;
use crate::skip::{ActiveChannels, Epilogue};

/// Up to this many `active inputs * taps`, and this many active outputs, the direct path is
/// faster than im2col (with more outputs the matrix product's efficiency wins back the
/// copies).
pub(super) const MAX_DIRECT_TAPS: usize = 27;
pub(super) const MAX_DIRECT_OUTPUTS: usize = 16;

/// Below this many multiply-accumulates a call runs on the calling thread.
const SERIAL_MACS: usize = 1 << 20;

/// Whether [`forward_direct`] handles this geometry and channel selection.
pub(super) fn applies(g: &Conv2dGeometry, active: ActiveChannels<'_>) -> bool {
    let taps = g.kernel_h * g.kernel_w;
    g.pad_h == 0
        && g.pad_w == 0
        && g.stride_h == 1
        && g.stride_w == 1
        && active.inputs.len() * taps <= MAX_DIRECT_TAPS
        && active.outputs.len() <= MAX_DIRECT_OUTPUTS
}

/// See [`super::conv2d_forward_active`]; lengths, lists and geometry are already checked
/// and [`applies`] holds. With `pool`, `output` holds the 2x2 max-pooled maps.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_direct(
    g: &Conv2dGeometry,
    active: ActiveChannels<'_>,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    epilogue: Epilogue<'_>,
    pool: bool,
    output: &mut [f32],
) {
    let (out_h, out_w) = (g.out_h(), g.out_w());
    let out_plane = if pool {
        (out_h / 2) * (out_w / 2)
    } else {
        out_h * out_w
    };
    let image_out = g.out_channels * out_plane;
    if image_out == 0 || g.batch == 0 {
        return;
    }
    let image_len = g.input_image_len();
    let layer = DirectConv {
        g,
        active,
        weight,
        bias,
        epilogue,
        pool,
    };
    let run = |(image, out): (usize, &mut [f32])| {
        let image = &input[image * image_len..][..image_len];
        with_denormals_flushed(|| image_forward(&layer, image, out));
    };
    let macs = g.batch * out_h * out_w * g.kernel_h * g.kernel_w * active.inputs.len();
    let macs = macs * active.outputs.len();
    if macs >= SERIAL_MACS && g.batch > 1 && rayon::current_num_threads() > 1 {
        output.par_chunks_mut(image_out).enumerate().for_each(run);
    } else {
        output.chunks_mut(image_out).enumerate().for_each(run);
    }
}

/// What every image of a [`forward_direct`] call shares: the layer and its epilogue.
struct DirectConv<'a> {
    g: &'a Conv2dGeometry,
    active: ActiveChannels<'a>,
    weight: &'a [f32],
    bias: Option<&'a [f32]>,
    epilogue: Epilogue<'a>,
    pool: bool,
}

/// One image: every active output channel, row (pair) by row (pair).
fn image_forward(layer: &DirectConv<'_>, image: &[f32], output: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the features `image_forward_fma` is compiled for.
            unsafe { image_forward_fma(layer, image, output) };
            return;
        }
    }
    image_forward_body(layer, image, output, |w, x, acc| acc + w * x);
}

/// [`image_forward_body`] compiled for AVX2 with fused multiply-adds.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn image_forward_fma(layer: &DirectConv<'_>, image: &[f32], output: &mut [f32]) {
    image_forward_body(layer, image, output, f32::mul_add);
}

#[inline(always)]
fn image_forward_body(
    layer: &DirectConv<'_>,
    image: &[f32],
    output: &mut [f32],
    step: impl Fn(f32, f32, f32) -> f32 + Copy,
) {
    let &DirectConv {
        g,
        active,
        weight,
        bias,
        epilogue,
        pool,
    } = layer;
    let (out_h, out_w) = (g.out_h(), g.out_w());
    let (taps, plane, in_w) = (g.kernel_h * g.kernel_w, g.in_h * g.in_w, g.in_w);
    if out_h == 0 || out_w == 0 {
        return;
    }
    // The accumulator, `in_w` wide, ends at the last valid output so that every tap reads
    // inside the plane.
    let wide = (out_h - 1) * in_w + out_w;
    let mut acc = vec![0.0_f32; wide];
    let stored_w = if pool { out_w / 2 } else { out_w };
    let out_plane = if pool { out_h / 2 } else { out_h } * stored_w;
    // Each active tap as (offset of its first input element in the image, weight).
    let mut filter_taps: Vec<(usize, f32)> = Vec::with_capacity(active.inputs.len() * taps);
    for &o in active.outputs {
        let filter = &weight[o * g.col_rows()..][..g.col_rows()];
        filter_taps.clear();
        for &c in active.inputs {
            for i in 0..g.kernel_h {
                for j in 0..g.kernel_w {
                    let w = filter[c * taps + i * g.kernel_w + j];
                    filter_taps.push((c * plane + i * in_w + j, w));
                }
            }
        }
        // NOTE: eight positions at a time through every tap, the sums held in registers,
        // rather than one pass over the accumulator per tap.
        let mut blocks = acc.chunks_exact_mut(8);
        for (index, block) in (&mut blocks).enumerate() {
            let mut sums = [0.0_f32; 8];
            for &(offset, w) in &filter_taps {
                let source: &[f32; 8] = image[offset + 8 * index..][..8]
                    .try_into()
                    .expect("8 floats");
                for lane in 0..8 {
                    sums[lane] = step(w, source[lane], sums[lane]);
                }
            }
            block.copy_from_slice(&sums);
        }
        let done = wide - blocks.into_remainder().len();
        for (p, a) in acc.iter_mut().enumerate().skip(done) {
            *a = filter_taps
                .iter()
                .fold(0.0, |sum, &(offset, w)| step(w, image[offset + p], sum));
        }
        let b = bias.map_or(0.0, |b| b[o]);
        let channel_out = &mut output[o * out_plane..][..out_plane];
        if pool {
            epilogue_max_pool(&epilogue, o, b, &mut acc, in_w, out_w, channel_out);
        } else {
            for (y, out_row) in channel_out.chunks_exact_mut(out_w).enumerate() {
                epilogue.apply(o, b, &acc[y * in_w..][..out_w], out_row);
            }
        }
    }
}
