//! The channel-skipping forward of unit-stride, unpadded convolutions as an implicit matrix
//! product, on every instruction set (the micro-kernel and its per-set tile shapes are in
//! `implicit/kernel.rs`).
//!
//! NOTE: computed `in_w` wide (junk columns `x >= out_w` dropped by the epilogue), row
//! `k = (c, i, j)` of the im2col matrix at output position `p = y * in_w + x` is input
//! element `c * plane + i * in_w + j + p`: each row is the input plane shifted by a fixed
//! offset. The micro-kernel therefore loads its right-hand vectors straight from the input
//! image at `offset[k] + p`, and neither an im2col matrix nor a packed copy of one is ever
//! written: the im2col path copied every input element `taps` times, twice, and the copies
//! cost as much as the arithmetic once few channels remain. Only the filters are packed,
//! once per call.
//!
//! Tiles of the batch's positions are cut as in `skip.rs` (whole rows, or pairs of rows when
//! pooling); within a tile each block of active filters is computed for one image
//! segment, bias and activation applied in registers, into a small product buffer that
//! stays in L1, from which its rows are copied (or max-pooled) into the output at once.

use std::ops::Range;

use super::skip::{ActiveForward, Segment, active_sizes, cut_into_tiles, run_tiles};
use super::{ActiveConv2d, Conv2dGeometry};
use crate::gemm::MatrixViewMut;
use crate::scratch::{Scratch, ScratchPerThread, grown};
use crate::skip::{ActiveChannels, Epilogue};

mod kernel;

use crate::tuning::conv::TASKS_PER_THREAD;
use crate::tuning::implicit::{GROUPS_PER_TASK, SERIAL_MACS, TILE_POSITIONS};
pub(super) use kernel::MicroKernel;
use kernel::{Blocks, RowActivation};

/// The active filters packed for a micro-kernel (see [`pack_filters`]) and the input
/// offsets of the active im2col rows (see [`input_offsets`]).
#[derive(Clone, Copy)]
pub(super) struct Filters<'a> {
    pub(super) kernel: MicroKernel,
    pub(super) packed: &'a [f32],
    pub(super) offsets: &'a [usize],
}

/// See [`super::conv2d_forward_active`]; lengths, lists and geometry are already checked,
/// and the geometry is unit-stride and unpadded (see `Conv2dGeometry::is_shifted_plane`).
/// With `call.pool`, `output` holds the 2x2 max-pooled maps.
pub(super) fn forward_implicit(
    call: &ActiveForward<'_>,
    filters: Filters<'_>,
    threads: &ScratchPerThread,
    output: &mut [f32],
) {
    let ActiveForward { layer, input, pool } = *call;
    let ActiveConv2d {
        geometry: ref g,
        active,
        bias,
        epilogue,
        ..
    } = *layer;
    let (_, outputs, inner) = active_sizes(g, active);
    let (out_h, out_w, row_w) = (g.out_h(), g.out_w(), g.in_w);
    let positions = out_h * row_w;
    let total = g.batch * positions;
    if output.is_empty() || outputs == 0 {
        return;
    }
    let Filters {
        kernel,
        packed,
        offsets,
    } = filters;
    let rows = kernel.rows();
    assert!(
        packed.len() == outputs.div_ceil(rows) * inner * rows && offsets.len() == inner,
        "implicit conv: filters packed for another layer"
    );

    let parallel = total * inner * outputs >= SERIAL_MACS && rayon::current_num_threads() > 1;
    let tasks_wanted = if parallel {
        rayon::current_num_threads() * TASKS_PER_THREAD
    } else {
        1
    };
    let align = if pool { 2 * row_w } else { row_w };
    let count = total
        .div_ceil(TILE_POSITIONS)
        .max(tasks_wanted)
        .min(total / align)
        .max(1);
    let tile = total.div_ceil(count).next_multiple_of(align);
    let stored = |len: usize| {
        if pool {
            len / (2 * row_w) * (out_w / 2)
        } else {
            len / row_w * out_w
        }
    };
    // NOTE: the last row's junk columns would read past the image's last plane; they are
    // not computed (their product entries are never read).
    let computed = (out_h - 1) * row_w + out_w;
    let image_len = g.input_image_len();
    let layer = Layer {
        packed,
        offsets,
        bias,
        epilogue,
        active,
        pool,
        row_w,
        out_w,
    };
    let blocks = outputs.div_ceil(rows);
    // NOTE: a batch of fewer images than tasks wanted is split by blocks of filters, each
    // task computing whole images: cut by positions, one image of MnistNet's second layer
    // gave tiles of two row pairs, mostly partial strips (104 positions as 48 + 48 + 8),
    // and the second thread took only a sixth off the time.
    let groups = if parallel && g.batch < tasks_wanted {
        (GROUPS_PER_TASK * tasks_wanted)
            .div_ceil(g.batch)
            .min(blocks)
    } else {
        1
    };
    if groups > 1 {
        let per_image = g.out_channels * stored(positions);
        let group_blocks = blocks.div_ceil(groups);
        let mut tasks = Vec::with_capacity(g.batch * groups);
        for (image, maps) in output.chunks_mut(per_image).enumerate() {
            let mut rest = MatrixViewMut::row_major(maps, g.out_channels, stored(positions));
            let mut first_channel = 0;
            for start in (0..blocks).step_by(group_blocks) {
                let end = (start + group_blocks).min(blocks);
                // The group's maps: up to the next group's first filter.
                let next = active
                    .outputs
                    .get(end * rows)
                    .copied()
                    .unwrap_or(g.out_channels);
                let (maps, others) = rest.split_at_row(next - first_channel);
                tasks.push(FilterGroup {
                    image,
                    maps,
                    first_channel,
                    blocks: start..end,
                });
                rest = others;
                first_channel = next;
            }
        }
        let run = |scratch: &mut Scratch, task: &mut FilterGroup<'_>| {
            let image = &input[task.image * image_len..][..image_len];
            let maps = Maps {
                view: &mut task.maps,
                first_channel: task.first_channel,
            };
            let (_, _, product) = scratch.parts(0, rows * positions);
            kernel.run(Blocks {
                layer: &layer,
                image,
                columns: 0..computed,
                width: positions,
                blocks: task.blocks.clone(),
                maps,
                product,
            });
        };
        run_tiles(tasks, parallel, threads, run);
        return;
    }

    let tasks = cut_into_tiles(output, g.out_channels, positions, total, tile, stored);
    let run = |scratch: &mut Scratch, segments: &mut Vec<Segment<'_>>| {
        for s in segments.iter_mut() {
            let image = &input[s.image * image_len..][..image_len];
            let end = s.positions.end.min(computed).max(s.positions.start);
            let columns = s.positions.start..end;
            let maps = Maps {
                view: &mut s.output,
                first_channel: 0,
            };
            let width = s.positions.len();
            let (_, _, product) = scratch.parts(0, rows * width);
            kernel.run(Blocks {
                layer: &layer,
                image,
                columns,
                width,
                blocks: 0..blocks,
                maps,
                product,
            });
        }
    };
    run_tiles(tasks, parallel, threads, run);
}

/// The output maps of the filters of blocks `blocks` for one whole image.
struct FilterGroup<'a> {
    image: usize,
    /// Channels `first_channel..` of the image's output maps, one per row.
    maps: MatrixViewMut<'a>,
    first_channel: usize,
    blocks: Range<usize>,
}

/// Where a computation stores its outputs: row `c - first_channel` of `view` holds channel
/// `c`'s part of the tile.
struct Maps<'a, 'b> {
    view: &'a mut MatrixViewMut<'b>,
    first_channel: usize,
}

/// What every segment of one call shares.
struct Layer<'a> {
    packed: &'a [f32],
    offsets: &'a [usize],
    bias: Option<&'a [f32]>,
    epilogue: Epilogue<'a>,
    active: ActiveChannels<'a>,
    pool: bool,
    row_w: usize,
    out_w: usize,
}

impl Layer<'_> {
    /// The bias and epilogue of the filters `outputs` (one block of at most `R`) as row
    /// activations; rows past the block get bias 0 and scale 1.
    fn activation<const R: usize>(&self, outputs: &[usize]) -> RowActivation<R> {
        let mut activation = RowActivation {
            bias: [0.0; R],
            scale: [1.0; R],
            relu: self.epilogue.relu(),
        };
        for (r, &o) in outputs.iter().enumerate() {
            activation.bias[r] = self.bias.map_or(0.0, |b| b[o]);
            activation.scale[r] = self.epilogue.scale(o);
        }
        activation
    }
}

/// The active filters in `kernel`'s order: for each block of `kernel.rows()` active
/// outputs, for each row `k` of the active im2col matrix, the block's weights (zero past
/// the last output).
pub(super) fn pack_filters<'a>(
    g: &Conv2dGeometry,
    active: ActiveChannels<'_>,
    weight: &[f32],
    kernel: MicroKernel,
    buffer: &'a mut Vec<f32>,
) -> &'a [f32] {
    let (taps, outputs, inner) = active_sizes(g, active);
    let (rows, filter_len) = (kernel.rows(), g.col_rows());
    let packed = grown(buffer, outputs.div_ceil(rows) * inner * rows);
    // NOTE: with no active input the panels are empty and the products zero.
    for (block, panel) in packed.chunks_exact_mut((inner * rows).max(1)).enumerate() {
        let filters = &active.outputs[block * rows..][..rows.min(outputs - block * rows)];
        for (k, column) in panel.chunks_exact_mut(rows).enumerate() {
            let (c, t) = (active.inputs[k / taps], k % taps);
            column.fill(0.0);
            for (d, &o) in column.iter_mut().zip(filters) {
                *d = weight[o * filter_len + c * taps + t];
            }
        }
    }
    packed
}

/// `offset[k]`: where row `k = (c, i, j)` of the active im2col matrix starts in the input
/// image, `c * plane + i * in_w + j`.
pub(super) fn input_offsets<'a>(
    g: &Conv2dGeometry,
    active: ActiveChannels<'_>,
    buffer: &'a mut Vec<usize>,
) -> &'a [usize] {
    let plane = g.in_h * g.in_w;
    buffer.clear();
    for &c in active.inputs {
        for i in 0..g.kernel_h {
            for j in 0..g.kernel_w {
                buffer.push(c * plane + i * g.in_w + j);
            }
        }
    }
    buffer
}

#[cfg(test)]
mod tests;
