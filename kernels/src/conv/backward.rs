//! The backward convolution: bias, weight and input gradients, each its own pass.
//!
//! - bias: a sum over images and positions per output channel;
//! - weight: `grad_weight = sum over (image, tile) of grad_output_tile x im2col_tile^T`,
//!   accumulated in a fixed number of partial sums that are added in a fixed order;
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
use crate::tuning::conv::{BLOCK_ALIGN, REDUCE_CHUNK, WEIGHT_GRADIENT_GROUPS};

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

/// One weight-gradient task: rows `channels` of one partial sum, over a run of units.
struct WeightTask<'a> {
    units: &'a [(usize, Range<usize>)],
    channels: Range<usize>,
    sum: &'a mut [f32],
}

/// `grad_weight[o, r] = sum over (n, p) of grad_output[n, o, p] * col_n[r, p]`.
pub(super) fn weight_gradient(
    g: &Conv2dGeometry,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
) {
    let (out_channels, rows, positions) = (g.out_channels, g.col_rows(), g.positions());
    let filter_len = out_channels * rows;
    if filter_len == 0 {
        return;
    }
    if g.batch == 0 {
        grad_weight.fill(0.0);
        return;
    }
    let tiles = Tiles::new(positions, rows);
    let units: Vec<(usize, Range<usize>)> = (0..g.batch)
        .flat_map(|n| tiles.iter().map(move |tile| (n, tile)))
        .collect();
    let groups = split_range(units.len(), WEIGHT_GRADIENT_GROUPS, 1);
    let channel_blocks = split_range(out_channels, blocks_for_threads(groups.len()), BLOCK_ALIGN);

    // NOTE: the first group sums straight into grad_weight; the others into partial sums.
    let mut partials = vec![0.0; (groups.len() - 1) * filter_len];
    let sums = std::iter::once(&mut *grad_weight).chain(partials.chunks_mut(filter_len));
    let mut tasks = Vec::with_capacity(groups.len() * channel_blocks.len());
    for (group, sum) in groups.iter().zip(sums) {
        let mut rest = sum;
        for channels in &channel_blocks {
            let (block, below) = rest.split_at_mut(channels.len() * rows);
            rest = below;
            tasks.push(WeightTask {
                units: &units[group.clone()],
                channels: channels.clone(),
                sum: block,
            });
        }
    }

    let scratch = ScratchPerThread::new();
    tasks.into_par_iter().for_each(|task| {
        scratch.with(|scratch| {
            with_denormals_flushed(|| {
                for (index, (image, tile)) in task.units.iter().enumerate() {
                    let image_input = &input[image * g.input_image_len()..][..g.input_image_len()];
                    let columns = if g.is_pointwise() {
                        MatrixView::row_major(image_input, rows, positions)
                            .submatrix(0..rows, tile.clone())
                    } else {
                        let col = scratch.im2col(g, image_input, g.in_channels, tile.clone());
                        MatrixView::row_major(col, rows, tile.len())
                    };
                    let image_grad = &grad_output[image * out_channels * positions..]
                        [..out_channels * positions];
                    let grad = MatrixView::row_major(image_grad, out_channels, positions)
                        .submatrix(task.channels.clone(), tile.clone());
                    let sum = MatrixViewMut::row_major(&mut *task.sum, task.channels.len(), rows);
                    let beta = if index == 0 { 0.0 } else { 1.0 };
                    sgemm_serial(1.0, grad, columns.t(), beta, sum);
                }
            })
        })
    });

    if !partials.is_empty() {
        grad_weight
            .par_chunks_mut(REDUCE_CHUNK)
            .enumerate()
            .for_each(|(chunk_index, chunk)| {
                with_denormals_flushed(|| {
                    for partial in partials.chunks_exact(filter_len) {
                        let partial = &partial[chunk_index * REDUCE_CHUNK..][..chunk.len()];
                        for (sum, &value) in chunk.iter_mut().zip(partial) {
                            *sum += value;
                        }
                    }
                })
            });
    }
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
