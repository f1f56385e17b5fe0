//! The backward convolution's bias gradient and its input gradient on im2col + GEMM (the
//! weight gradient is `weight_gradient.rs`, the input gradient of some padded layers
//! `dense.rs`'s):
//!
//! - bias: a sum over images and positions per output channel;
//! - input: `im2col_grad_tile = weight^T x grad_output_tile`, added back into the image by
//!   col2im, with tasks over (image, block of input channels), which write disjoint parts of
//!   the input gradient.

use std::ops::Range;

use rayon::prelude::*;

use super::Conv2dGeometry;
use super::plan::{Tiles, blocks_for_threads, split_range};
use crate::denormal::with_denormals_flushed;
use crate::gemm::{MatrixView, MatrixViewMut, sgemm_serial};
use crate::scratch::ScratchPerThread;

/// `grad_bias[o] = sum over (n, p) of grad_output[n, o, p]`, one task per output channel.
pub(super) fn bias_gradient(g: &Conv2dGeometry, grad_output: &[f32], grad_bias: &mut [f32]) {
    let (out_channels, positions) = (g.out_channels, g.positions());
    grad_bias.par_iter_mut().enumerate().for_each(|(o, grad)| {
        with_denormals_flushed(|| {
            let total: f64 = (0..g.batch)
                .map(|n| {
                    f64::from(plane_sum(
                        &grad_output[(n * out_channels + o) * positions..][..positions],
                    ))
                })
                .sum();
            *grad = total as f32;
        })
    });
}

/// Sum of a plane in eight interleaved partial sums (vectorisable, and more accurate than
/// one running sum).
pub(super) fn plane_sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0_f32; 8];
    let chunks = values.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, &value) in lanes.iter_mut().zip(chunk) {
            *lane += value;
        }
    }
    lanes.iter().sum::<f32>() + rest
}

/// One input-gradient task: input channels `channels` of image `image`.
struct InputTask<'a> {
    image: usize,
    channels: Range<usize>,
    grad: &'a mut [f32],
}

/// `grad_input = col2im(weight^T x grad_output)`, image by image and tile by tile.
pub(super) fn input_gradient(
    g: &Conv2dGeometry,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
) {
    let (out_channels, rows, positions) = (g.out_channels, g.col_rows(), g.positions());
    if grad_input.is_empty() {
        return;
    }
    let taps = g.kernel_h * g.kernel_w;
    let plane = g.in_h * g.in_w;
    // NOTE: tiles follow the whole im2col matrix, not the channel block, so that they (and
    // with them the order in which col2im adds into each element) do not depend on the
    // number of threads.
    let tiles = Tiles::new(positions, rows);
    // NOTE: channel blocks need not be multiples of 8 rows for the result to stay the same
    // whatever the thread count: with alpha = 1 and beta = 0 matrixmultiply's edge tiles
    // round exactly as its full ones do.
    let channel_blocks = split_range(g.in_channels, blocks_for_threads(g.batch), 1);
    let mut tasks = Vec::with_capacity(g.batch * channel_blocks.len());
    for (image, image_grad) in grad_input.chunks_mut(g.input_image_len()).enumerate() {
        let mut rest = image_grad;
        for channels in &channel_blocks {
            let (grad, below) = rest.split_at_mut(channels.len() * plane);
            rest = below;
            tasks.push(InputTask {
                image,
                channels: channels.clone(),
                grad,
            });
        }
    }

    // NOTE: weight^T viewed column-major is what matrixmultiply packs fastest.
    let weight_t = MatrixView::row_major(weight, out_channels, rows).t();
    let scratch = ScratchPerThread::new();
    tasks.into_par_iter().for_each(|task| {
        scratch.with(|scratch| {
            with_denormals_flushed(|| {
                let image_grad = &grad_output[task.image * out_channels * positions..]
                    [..out_channels * positions];
                let grad = MatrixView::row_major(image_grad, out_channels, positions);
                let block_rows = task.channels.start * taps..task.channels.end * taps;
                let weight_t = weight_t.submatrix(block_rows.clone(), 0..out_channels);
                if g.is_pointwise() {
                    let out = MatrixViewMut::row_major(task.grad, task.channels.len(), positions);
                    sgemm_serial(1.0, weight_t, grad, 0.0, out);
                    return;
                }
                task.grad.fill(0.0);
                for tile in tiles.iter() {
                    let col = scratch.col_mut(block_rows.len() * tile.len());
                    let grad = grad.submatrix(0..out_channels, tile.clone());
                    sgemm_serial(
                        1.0,
                        weight_t,
                        grad,
                        0.0,
                        MatrixViewMut::row_major(col, block_rows.len(), tile.len()),
                    );
                    scratch.col2im_add(g, task.channels.len(), tile, task.grad);
                }
            })
        })
    });
}
