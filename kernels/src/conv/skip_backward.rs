//! The channel-skipping backward convolution, for fine-tuning a partly pruned model: the
//! gradients of the active part only, every inactive entry set to zero.
//!
//! - bias: sums of the active output channels' gradient planes;
//! - weight: the implicit product of `weight_gradient.rs` over the active channels;
//! - input: `columns_grad = weight_active^T x grad_output_active`, added back into the
//!   active input channels by col2im, one task per image.

use rayon::prelude::*;

use super::Conv2dGeometry;
use super::backward::plane_sum;
use super::im2col::{ColumnBlock, col2im_add_from};
use super::plan::Tiles;
use super::skip::{active_sizes, gather_filters_transposed};
use crate::denormal::with_denormals_flushed;
use crate::gemm::{MatrixView, MatrixViewMut, sgemm_serial};
use crate::scratch::{ScratchPerThread, grown};
use crate::skip::ActiveChannels;

/// Copies the active output channels' planes of one image's gradient, restricted to
/// `tile`, into a row-major `outputs x tile.len()` matrix.
fn gather_grad_rows<'a>(
    image_grad: &[f32],
    positions: usize,
    outputs: &[usize],
    tile: &std::ops::Range<usize>,
    buffer: &'a mut Vec<f32>,
) -> &'a [f32] {
    let gathered = grown(buffer, outputs.len() * tile.len());
    for (row, &o) in gathered.chunks_exact_mut(tile.len().max(1)).zip(outputs) {
        row.copy_from_slice(&image_grad[o * positions + tile.start..o * positions + tile.end]);
    }
    gathered
}

/// `grad_bias[o] = sum over (n, p) of grad_output[n, o, p]` for active `o`, else 0.
pub(super) fn bias_gradient_active(
    g: &Conv2dGeometry,
    outputs: &[usize],
    grad_output: &[f32],
    grad_bias: &mut [f32],
) {
    let positions = g.positions();
    grad_bias.fill(0.0);
    with_denormals_flushed(|| {
        for &o in outputs {
            let total: f64 = (0..g.batch)
                .map(|n| {
                    let plane = &grad_output[(n * g.out_channels + o) * positions..][..positions];
                    f64::from(plane_sum(plane))
                })
                .sum();
            grad_bias[o] = total as f32;
        }
    });
}

/// The input gradient of the active input channels (through the active filters only),
/// zero elsewhere.
pub(super) fn input_gradient_active(
    g: &Conv2dGeometry,
    active: ActiveChannels<'_>,
    weight: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
) {
    grad_input.fill(0.0);
    let (_, outputs, inner) = active_sizes(g, active);
    if outputs * inner == 0 || grad_input.is_empty() {
        return;
    }
    let mut buffer = Vec::new();
    let filters_t = gather_filters_transposed(g, active, weight, &mut buffer);
    // The gathered filters are `inner x outputs` row-major: the transposed left operand.
    let filters_t = MatrixView::row_major(filters_t, inner, outputs);
    let positions = g.positions();
    let tiles = Tiles::new(positions, inner);
    let grad_len = g.out_channels * positions;
    let scratch = ScratchPerThread::new();
    grad_input
        .par_chunks_mut(g.input_image_len())
        .enumerate()
        .for_each(|(image, image_grad_input)| {
            scratch.with(|scratch| {
                with_denormals_flushed(|| {
                    let image_grad = &grad_output[image * grad_len..][..grad_len];
                    let mut grad_rows = Vec::new();
                    for tile in tiles.iter() {
                        let width = tile.len();
                        let grad = gather_grad_rows(
                            image_grad,
                            positions,
                            active.outputs,
                            &tile,
                            &mut grad_rows,
                        );
                        let grad = MatrixView::row_major(grad, outputs, width);
                        let (strip, col, _) = scratch.parts(inner * width, 0);
                        let col_view = MatrixViewMut::row_major(&mut *col, inner, width);
                        sgemm_serial(1.0, filters_t, grad, 0.0, col_view);
                        let source = ColumnBlock {
                            row_stride: width,
                            offset: 0,
                        };
                        let channels = active.inputs.iter().copied();
                        col2im_add_from(g, col, source, channels, tile, strip, image_grad_input);
                    }
                })
            })
        });
}
