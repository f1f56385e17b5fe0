//! The weight gradient of a convolution as an implicit product, on every instruction set
//! (the micro-kernel and its per-set tile shapes are in `weight_gradient/kernel.rs`).
//!
//! NOTE: `grad_weight[o, k]`, for the im2col row `k = (c, i, j)`, sums `grad_output[n, o,
//! y, x] * input[n, c, y * stride_h + i, x * stride_w + j]` (input zero-padded) over images
//! and positions: a product whose right-hand operand, read at position `(y, x)`, is the
//! input element at `offset[k] + y * row_step + x * col_step`. The micro-kernel keeps a
//! tile of rows by vectors of output channels in registers and, per position, multiplies
//! the gradient's channels there by the rows' input elements, each broadcast straight from
//! the image. The im2col + GEMM path it replaced wrote an im2col tile, and the GEMM packed
//! it again, for every tile of every image: a third of its time on MnistNet's second
//! convolution. Only the image's output gradient is rearranged, once, to `[position,
//! channel]`, so that each position's channels are contiguous vectors.
//!
//! Images are summed in [`WEIGHT_GRADIENT_GROUPS`] partial sums, each a sequence over its
//! images and their positions in order whatever the tiling, then added in a fixed order:
//! the result does not depend on the number of threads.

use std::ops::Range;

use rayon::prelude::*;

use super::Conv2dGeometry;
use super::plan::{blocks_for_threads, split_range};
use super::skip::active_sizes;
use crate::denormal::with_denormals_flushed;
use crate::scratch::{ScratchPerThread, grown, with_kept_buffer};
use crate::simd;
use crate::skip::ActiveChannels;
use crate::tuning::conv::{WEIGHT_GRADIENT_CHUNK_POSITIONS, WEIGHT_GRADIENT_GROUPS};

mod kernel;

use kernel::{MicroKernel, Pass};

/// Where the micro-kernel reads: the im2col rows as offsets into an image, the output
/// channels as lanes of the transposed gradient, and how positions step through the image.
pub(super) struct Layout {
    /// Input offset of each im2col row of the active inputs, then copies of the first up
    /// to a whole number of the micro-kernel's blocks (their sums are dropped).
    offsets: Vec<usize>,
    /// Active output channels.
    channels: usize,
    /// Floats per position of the transposed gradient and per row of the sums: the
    /// channels rounded up to 16, a whole number of vectors of every set.
    stride: usize,
    out_h: usize,
    out_w: usize,
    /// Input floats from one output row to the next, and from one column to the next.
    row_step: usize,
    col_step: usize,
    /// Output rows per pass over the blocks, so that their transposed gradient stays in L1.
    chunk_rows: usize,
}

impl Layout {
    fn new(g: &Conv2dGeometry, active: ActiveChannels<'_>, block_rows: usize) -> Self {
        let (in_h, in_w) = (g.in_h + 2 * g.pad_h, g.in_w + 2 * g.pad_w);
        let padded = g.pad_h > 0 || g.pad_w > 0;
        let mut offsets = Vec::with_capacity(active.inputs.len() * g.kernel_h * g.kernel_w);
        for (index, &c) in active.inputs.iter().enumerate() {
            // A padded image holds the active channels only, one after another.
            let plane = if padded { index } else { c };
            for i in 0..g.kernel_h {
                for j in 0..g.kernel_w {
                    offsets.push((plane * in_h + i) * in_w + j);
                }
            }
        }
        let rows = offsets.len().next_multiple_of(block_rows);
        offsets.resize(rows, offsets.first().copied().unwrap_or(0));
        let out_w = g.out_w();
        Self {
            offsets,
            channels: active.outputs.len(),
            stride: active.outputs.len().next_multiple_of(16),
            out_h: g.out_h(),
            out_w,
            row_step: g.stride_h * in_w,
            col_step: g.stride_w,
            chunk_rows: (WEIGHT_GRADIENT_CHUNK_POSITIONS / out_w).max(1),
        }
    }
}

/// One task: the images of one group, for the rows of some blocks, into those rows of the
/// group's partial sum.
struct Task<'a> {
    images: Range<usize>,
    blocks: Range<usize>,
    sums: &'a mut [f32],
}

/// The weight gradient of the active `(output, input)` pairs, zero elsewhere; lengths and
/// geometry are already checked.
pub(super) fn weight_gradient(
    g: &Conv2dGeometry,
    active: ActiveChannels<'_>,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
) {
    let (taps, outputs, inner) = active_sizes(g, active);
    if outputs == 0 || inner == 0 || g.batch == 0 {
        grad_weight.fill(0.0);
        return;
    }
    let kernel = MicroKernel::for_isa(simd::active());
    let layout = Layout::new(g, active, kernel.rows());
    let group_len = layout.offsets.len() * layout.stride;
    let groups = split_range(g.batch, WEIGHT_GRADIENT_GROUPS, 1);
    let blocks = layout.offsets.len() / kernel.rows();
    let block_ranges = split_range(blocks, blocks_for_threads(groups.len()), 1);
    let threads = ScratchPerThread::new();

    with_kept_buffer(|buffer| {
        let partials = grown(buffer, groups.len() * group_len);
        let mut tasks = Vec::with_capacity(groups.len() * block_ranges.len());
        for (images, partial) in groups.iter().zip(partials.chunks_mut(group_len)) {
            let mut rest = partial;
            for range in &block_ranges {
                let (sums, below) = rest.split_at_mut(range.len() * kernel.rows() * layout.stride);
                rest = below;
                tasks.push(Task {
                    images: images.clone(),
                    blocks: range.clone(),
                    sums,
                });
            }
        }
        // NOTE: rayon's own scheduling, not `parallel::for_each_task`: with 8 tasks of about
        // 0.7 ms, a helper that woke late left the caller a task more than its share, and
        // the backward of MnistNet's second convolution took 17.8 ms instead of 14.3.
        tasks.into_par_iter().for_each(|task| {
            threads.with(|scratch| {
                with_denormals_flushed(|| {
                    task.sums.fill(0.0);
                    for n in task.images {
                        let image = &input[n * g.input_image_len()..][..g.input_image_len()];
                        let image = padded_image(g, active.inputs, image, &mut scratch.strip);
                        let len = g.out_channels * g.positions();
                        kernel.run(Pass {
                            layout: &layout,
                            image,
                            grads: &grad_output[n * len..][..len],
                            outputs: active.outputs,
                            transposed: grown(&mut scratch.col, g.positions() * layout.stride),
                            blocks: task.blocks.clone(),
                            sums: &mut *task.sums,
                        });
                    }
                })
            })
        });
        gather(g, active, taps, &layout, partials, grad_weight);
    });
}

/// `grad_weight[o, c, i, j]`: the sum of the partial sums' row `(c, i, j)` at channel `o`,
/// in order, for active pairs; zero elsewhere.
fn gather(
    g: &Conv2dGeometry,
    active: ActiveChannels<'_>,
    taps: usize,
    layout: &Layout,
    partials: &[f32],
    grad_weight: &mut [f32],
) {
    let group_len = layout.offsets.len() * layout.stride;
    grad_weight
        .par_chunks_mut(g.col_rows())
        .enumerate()
        .for_each(|(o, filter)| {
            filter.fill(0.0);
            let Ok(channel) = active.outputs.binary_search(&o) else {
                return;
            };
            for (index, &c) in active.inputs.iter().enumerate() {
                for t in 0..taps {
                    let at = (index * taps + t) * layout.stride + channel;
                    let mut sums = partials.chunks_exact(group_len).map(|sums| sums[at]);
                    let first = sums.next().unwrap_or(0.0);
                    filter[c * taps + t] = sums.fold(first, |total, sum| total + sum);
                }
            }
        });
}

/// `image` itself if the layer does not pad; else its active channels, one after another,
/// centred in zero planes of the padded size, in `buffer`.
fn padded_image<'a>(
    g: &Conv2dGeometry,
    inputs: &[usize],
    image: &'a [f32],
    buffer: &'a mut Vec<f32>,
) -> &'a [f32] {
    if g.pad_h == 0 && g.pad_w == 0 {
        return image;
    }
    let (in_h, in_w) = (g.in_h + 2 * g.pad_h, g.in_w + 2 * g.pad_w);
    let padded = grown(buffer, inputs.len() * in_h * in_w);
    padded.fill(0.0);
    for (plane, &c) in padded.chunks_exact_mut(in_h * in_w).zip(inputs) {
        let source = image[c * g.in_h * g.in_w..][..g.in_h * g.in_w].chunks_exact(g.in_w);
        let rows = plane[g.pad_h * in_w..].chunks_exact_mut(in_w);
        for (row, source) in rows.zip(source) {
            row[g.pad_w..][..g.in_w].copy_from_slice(source);
        }
    }
    padded
}
