//! The forward convolution of padded or strided layers: `output = weight x im2col(input) +
//! bias`, tile by tile (unit-stride, unpadded ones, pointwise included, run the implicit
//! product: see `conv/dense.rs`).

use std::ops::Range;

use rayon::prelude::*;

use super::Conv2dGeometry;
use super::plan::{Tiles, blocks_for_threads, split_range};
use crate::denormal::with_denormals_flushed;
use crate::gemm::{MatrixView, MatrixViewMut, sgemm_serial};
use crate::scratch::ScratchPerThread;
use crate::tuning::conv::BLOCK_ALIGN;

/// One task: output channels `channels` at positions `positions` of image `image`.
struct Task<'a> {
    image: usize,
    channels: Range<usize>,
    positions: Range<usize>,
    output: MatrixViewMut<'a>,
}

/// See [`super::conv2d_forward`]; lengths and geometry are already checked.
pub(super) fn forward(
    g: &Conv2dGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    let (out_channels, rows, positions) = (g.out_channels, g.col_rows(), g.positions());
    if output.is_empty() {
        return;
    }
    // NOTE: a small batch is cut into more tiles rather than into blocks of output
    // channels, which would each redo the tile's im2col; the forward's results do not depend
    // on the tiling, so the thread count may choose it.
    let tiles = Tiles::at_least(positions, rows, blocks_for_threads(g.batch));
    let channel_blocks = split_range(
        out_channels,
        blocks_for_threads(g.batch * tiles.count()),
        BLOCK_ALIGN,
    );
    // NOTE: matrixmultiply packs the left operand fastest when its columns are contiguous,
    // so the product reads the weight through a transposed copy (made once, shared by all
    // tasks) rather than gathering it anew in every task.
    let weight_t = transpose(weight, out_channels, rows);
    let weight = MatrixView::new(&weight_t, out_channels, rows, 1, out_channels);

    let mut tasks = Vec::with_capacity(g.batch * channel_blocks.len() * tiles.count());
    for (image, image_output) in output.chunks_mut(out_channels * positions).enumerate() {
        let mut rest = MatrixViewMut::row_major(image_output, out_channels, positions);
        for channels in &channel_blocks {
            let (mut block, below) = rest.split_at_row(channels.len());
            rest = below;
            for tile in tiles.iter() {
                let (output, right) = block.split_at_col(tile.len());
                block = right;
                tasks.push(Task {
                    image,
                    channels: channels.clone(),
                    positions: tile,
                    output,
                });
            }
        }
    }

    let scratch = ScratchPerThread::new();
    tasks.into_par_iter().for_each(|mut task| {
        scratch.with(|scratch| {
            with_denormals_flushed(|| {
                let image = &input[task.image * g.input_image_len()..][..g.input_image_len()];
                let tile = task.positions.len();
                let columns = MatrixView::row_major(
                    scratch.im2col(g, image, g.in_channels, task.positions),
                    rows,
                    tile,
                );
                let beta = match bias {
                    Some(bias) => {
                        for (row, &b) in bias[task.channels.clone()].iter().enumerate() {
                            task.output.row_mut(row).fill(b);
                        }
                        1.0
                    }
                    None => 0.0,
                };
                let weight = weight.submatrix(task.channels, 0..rows);
                sgemm_serial(1.0, weight, columns, beta, task.output);
            })
        })
    });
}

/// The `cols x rows` transpose of a row-major `rows x cols` matrix.
fn transpose(matrix: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; matrix.len()];
    for (r, row) in matrix.chunks_exact(cols.max(1)).enumerate().take(rows) {
        for (c, &value) in row.iter().enumerate() {
            out[c * rows + r] = value;
        }
    }
    out
}
