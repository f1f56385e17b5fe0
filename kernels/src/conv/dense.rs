//! The dense training convolutions on the implicit product of `implicit.rs`: the forward
//! with every channel active, and the input gradient of a unit-stride convolution as a
//! forward convolution of its own.
//!
//! NOTE: with unit strides, `grad_input[n, c, h, w]` sums `weight[o, c, i, j] *
//! grad_output[n, o, h + pad_h - i, w + pad_w - j]`, which is the unpadded, unit-stride
//! convolution of `grad_output`, zero-padded by `kernel - 1 - pad` on each side, with the
//! filters `weight[o, c, kernel_h - 1 - i, kernel_w - 1 - j]` read as `in_channels`
//! filters of `out_channels` channels. The implicit product then replaces the matrix
//! product and col2im, which wrote and re-read an im2col-sized gradient per tile. Each
//! output element is one sum over `(o, i, j)` in a fixed order whatever the tiling, so the
//! result does not depend on the number of threads.

use rayon::prelude::*;

use super::skip::{ActiveForward, forward_active};
use super::{ActiveConv2d, Conv2dGeometry};
use crate::scratch::{grown, with_kept_buffer};
use crate::skip::{ActiveChannels, Epilogue, SkipScratch};
use crate::tuning::implicit::MIN_INPUT_GRADIENT_FILTERS;

/// [`super::conv2d_forward`] with every channel active; lengths and geometry are already
/// checked.
pub(super) fn forward(
    g: &Conv2dGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    let inputs: Vec<usize> = (0..g.in_channels).collect();
    let outputs: Vec<usize> = (0..g.out_channels).collect();
    let layer = ActiveConv2d {
        geometry: *g,
        active: ActiveChannels {
            inputs: &inputs,
            outputs: &outputs,
        },
        weight,
        bias,
        epilogue: Epilogue::Identity,
    };
    let call = ActiveForward {
        layer: &layer,
        input,
        pool: false,
    };
    forward_active(&call, None, &mut SkipScratch::new(), output);
}

/// The convolution whose output is the input gradient of `g` (see the module's note),
/// where running it on the implicit product pays: `g` has unit strides, pads at least half
/// its kernel (less than all of it) on each side, is not pointwise, and has at least
/// [`MIN_INPUT_GRADIENT_FILTERS`] input channels. Else `None`, and the input gradient is
/// col2im's.
///
/// NOTE: measured against col2im on the Xeon with AVX-512, 2 threads, 3x3 and 5x5
/// kernels: "same" padding with 8 to 32 input channels took 0.6 to 0.9 times as long
/// (16 channels, 32x32, 3x3 pad 1: 600 -> 400 µs; 5x5 pad 2: 1500 -> 920 µs). Unpadded
/// layers lose: padded by a whole kernel less one, the gradient grows (24x24 to 28x28
/// for MnistNet's second layer, 7.0 -> 7.7 to 8.2 ms at batch 64, 130 -> 170 µs at batch
/// 1). So do layers with 3 to 6 input channels (blocks of filters mostly empty: 360 ->
/// 500 µs with 3), and pointwise ones, whose col2im is a plain matrix product (210 -> 350
/// µs, 200 -> 20 channels).
pub(super) fn input_gradient_geometry(g: &Conv2dGeometry) -> Option<Conv2dGeometry> {
    let pays = |kernel: usize, pad: usize| 2 * pad + 1 >= kernel && pad < kernel;
    let implicit = (g.stride_h, g.stride_w) == (1, 1)
        && pays(g.kernel_h, g.pad_h)
        && pays(g.kernel_w, g.pad_w)
        && !g.is_pointwise()
        && g.in_channels >= MIN_INPUT_GRADIENT_FILTERS;
    implicit.then(|| {
        let (extra_h, extra_w) = (g.kernel_h - 1 - g.pad_h, g.kernel_w - 1 - g.pad_w);
        Conv2dGeometry {
            batch: g.batch,
            in_channels: g.out_channels,
            out_channels: g.in_channels,
            in_h: g.out_h() + 2 * extra_h,
            in_w: g.out_w() + 2 * extra_w,
            kernel_h: g.kernel_h,
            kernel_w: g.kernel_w,
            stride_h: 1,
            stride_w: 1,
            pad_h: 0,
            pad_w: 0,
        }
    })
}

/// The input gradient of `g` as the forward convolution `transposed`
/// (`input_gradient_geometry(g)`): `grad_output` padded, the filters flipped and
/// transposed, into `grad_input`, which is overwritten.
pub(super) fn input_gradient(
    g: &Conv2dGeometry,
    transposed: &Conv2dGeometry,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
) {
    let filters = flipped_transposed(g, weight);
    with_kept_buffer(|buffer| {
        let padded = pad_planes(g, transposed, grad_output, buffer);
        forward(transposed, padded, &filters, None, grad_input);
    });
}

/// `grad_output`'s planes centred in zero planes of `transposed`'s input size, in `buffer`.
fn pad_planes<'a>(
    g: &Conv2dGeometry,
    transposed: &Conv2dGeometry,
    grad_output: &[f32],
    buffer: &'a mut Vec<f32>,
) -> &'a [f32] {
    let (out_h, out_w) = (g.out_h(), g.out_w());
    let (in_h, in_w) = (transposed.in_h, transposed.in_w);
    let (top, left) = ((in_h - out_h) / 2, (in_w - out_w) / 2);
    let padded = grown(buffer, transposed.input_len());
    padded
        .par_chunks_mut(in_h * in_w)
        .zip(grad_output.par_chunks(out_h * out_w))
        .for_each(|(plane, source)| {
            let (above, rest) = plane.split_at_mut(top * in_w);
            above.fill(0.0);
            let (rows, below) = rest.split_at_mut(out_h * in_w);
            below.fill(0.0);
            for (row, source) in rows.chunks_exact_mut(in_w).zip(source.chunks_exact(out_w)) {
                let (before, rest) = row.split_at_mut(left);
                before.fill(0.0);
                let (middle, after) = rest.split_at_mut(out_w);
                middle.copy_from_slice(source);
                after.fill(0.0);
            }
        });
    padded
}

/// `filters[c, o, i, j] = weight[o, c, kernel_h - 1 - i, kernel_w - 1 - j]`: the
/// `in_channels` filters of the input gradient's convolution.
fn flipped_transposed(g: &Conv2dGeometry, weight: &[f32]) -> Vec<f32> {
    let taps = g.kernel_h * g.kernel_w;
    let mut filters = vec![0.0; weight.len()];
    for o in 0..g.out_channels {
        for c in 0..g.in_channels {
            let source = &weight[(o * g.in_channels + c) * taps..][..taps];
            let target = &mut filters[(c * g.out_channels + o) * taps..][..taps];
            // A plane read backwards is the plane turned by 180 degrees.
            for (t, &s) in target.iter_mut().zip(source.iter().rev()) {
                *t = s;
            }
        }
    }
    filters
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(in_channels: usize, kernel: usize, stride: usize, pad: usize) -> Conv2dGeometry {
        Conv2dGeometry {
            batch: 2,
            in_channels,
            out_channels: 5,
            in_h: 11,
            in_w: 9,
            kernel_h: kernel,
            kernel_w: kernel,
            stride_h: stride,
            stride_w: stride,
            pad_h: pad,
            pad_w: pad,
        }
    }

    /// The layers the input-gradient tests of `tests/conv.rs` must reach both paths with.
    #[test]
    fn padded_unit_stride_layers_with_enough_channels_take_the_transposed_convolution() {
        for (g, implicit) in [
            (layer(8, 3, 1, 1), true),
            (layer(13, 5, 1, 2), true),
            (layer(9, 5, 1, 4), true),
            (layer(13, 3, 1, 0), false),
            (layer(13, 5, 1, 1), false),
            (layer(13, 3, 1, 3), false),
            (layer(13, 3, 2, 1), false),
            (layer(13, 1, 1, 0), false),
            (layer(7, 3, 1, 1), false),
        ] {
            let transposed = input_gradient_geometry(&g);
            assert_eq!(transposed.is_some(), implicit, "{g:?}");
            if let Some(t) = transposed {
                assert_eq!((t.out_h(), t.out_w()), (g.in_h, g.in_w), "{g:?}");
            }
        }
    }

    #[test]
    fn flipped_transposed_turns_each_plane_and_swaps_channels() {
        let g = Conv2dGeometry {
            out_channels: 2,
            ..layer(3, 2, 1, 1)
        };
        let weight: Vec<f32> = (0..g.weight_len()).map(|i| i as f32).collect();
        let filters = flipped_transposed(&g, &weight);
        // weight[o = 1, c = 2] is 20, 21, 22, 23; filters[c = 2, o = 1] holds it turned.
        assert_eq!(&filters[(2 * 2 + 1) * 4..][..4], &[23.0, 22.0, 21.0, 20.0]);
    }
}
