//! The channel-skipping forward convolution with a fused epilogue.
//!
//! The output positions of the whole batch (`image * positions + position`) are cut into
//! tiles; a tile may span several small images, so that layers with few positions per image
//! still get wide matrix products. Each tile is one task:
//!
//! 1. im2col of the active input channels only, image segment by image segment, into one
//!    `active_inputs * taps x tile` matrix;
//! 2. `product = weight_active x columns`, with the active filters gathered (transposed, as
//!    the dense forward also does) once per call;
//! 3. the epilogue moves each product row, plus its bias and through the activation, into
//!    its output channel while the tile is still in cache, optionally max-pooling 2x2
//!    windows on the way (tiles then hold whole pairs of output rows).
//!
//! Unit-stride, unpadded layers, the common case, run the implicit product of
//! `implicit.rs` instead, which never writes an im2col matrix; [`forward_active`] is the one
//! place that chooses.

use std::ops::Range;

use super::im2col::{ColumnBlock, im2col_into, im2col_wide_into};
use super::implicit::{self, MicroKernel};
use super::{ActiveConv2d, Conv2dGeometry};
use crate::denormal::with_denormals_flushed;
use crate::gemm::{MatrixView, MatrixViewMut, sgemm_serial};
use crate::parallel::for_each_task;
use crate::scratch::{Scratch, ScratchPerThread, grown};
use crate::simd;
use crate::skip::{ActiveChannels, Epilogue, SkipScratch};
use crate::tuning::conv::{MIN_TILE, TASKS_PER_THREAD};
use crate::tuning::conv_im2col::{SERIAL_MACS, TILE_ALIGN, TILE_FLOATS};

/// One image's share of a tile: `positions` of image `image`, stored from column `column`
/// of the tile's matrices, and the output block they fill.
pub(super) struct Segment<'a> {
    pub(super) image: usize,
    pub(super) positions: Range<usize>,
    column: usize,
    pub(super) output: MatrixViewMut<'a>,
}

/// Gathers the active filters, transposed: row `k * taps + t` of the result holds tap `t` of
/// the `k`-th active input channel of every active filter, so that the result read with
/// strides `(1, outputs)` is the `outputs x inputs * taps` left operand.
pub(super) fn gather_filters_transposed<'a>(
    g: &Conv2dGeometry,
    active: ActiveChannels<'_>,
    weight: &[f32],
    buffer: &'a mut Vec<f32>,
) -> &'a [f32] {
    let taps = g.kernel_h * g.kernel_w;
    let rows = g.col_rows();
    let outputs = active.outputs.len();
    let gathered = grown(buffer, active.inputs.len() * taps * outputs);
    for (k, &c) in active.inputs.iter().enumerate() {
        for t in 0..taps {
            let row = &mut gathered[(k * taps + t) * outputs..][..outputs];
            for (d, &o) in row.iter_mut().zip(active.outputs) {
                *d = weight[o * rows + c * taps + t];
            }
        }
    }
    gathered
}

/// `(taps, outputs, inner)`: the taps of one filter plane, the active output channels, and
/// the rows of the active part of the im2col matrix (active inputs times taps), the sizes
/// of the matrix products a channel-skipping kernel runs.
pub(super) fn active_sizes(
    g: &Conv2dGeometry,
    active: ActiveChannels<'_>,
) -> (usize, usize, usize) {
    let taps = g.kernel_h * g.kernel_w;
    (taps, active.outputs.len(), active.inputs.len() * taps)
}

/// One channel-skipping forward call: the layer, its input, and whether its output is 2x2
/// max-pooled (`out_h` then even).
#[derive(Clone, Copy)]
pub(super) struct ActiveForward<'a> {
    pub(super) layer: &'a ActiveConv2d<'a>,
    pub(super) input: &'a [f32],
    pub(super) pool: bool,
}

/// Whether a convolution runs as the implicit product (unit-stride, unpadded layers) rather
/// than im2col and a matrix product: the one test that chooses, which [`forward_active`]
/// applies and `PackedConv2d` asks to know whether to pack filters for it.
pub(super) fn runs_implicit(g: &Conv2dGeometry) -> bool {
    g.is_shifted_plane()
}

/// See [`super::conv2d_forward_active`]; lengths, lists and geometry are already checked.
/// With `call.pool`, `output` holds the 2x2 max-pooled maps. The implicit product runs
/// on `prepacked` filters when the caller keeps them, else on filters packed into
/// `scratch` for the process's instruction set.
pub(super) fn forward_active(
    call: &ActiveForward<'_>,
    prepacked: Option<implicit::Filters<'_>>,
    scratch: &mut SkipScratch,
    output: &mut [f32],
) {
    let ActiveConv2d {
        geometry: ref g,
        active,
        weight,
        ..
    } = *call.layer;
    if output.is_empty() || active.outputs.is_empty() {
        return;
    }
    if !runs_implicit(g) {
        forward_im2col(call, scratch, output);
        return;
    }
    let SkipScratch {
        threads,
        weight: packed,
        offsets,
        ..
    } = scratch;
    let filters = match prepacked {
        Some(filters) => filters,
        None => {
            let kernel = MicroKernel::for_isa(simd::active());
            implicit::Filters {
                kernel,
                packed: implicit::pack_filters(g, active, weight, kernel, packed),
                offsets: implicit::input_offsets(g, active, offsets),
            }
        }
    };
    implicit::forward_implicit(call, filters, threads, output);
}

/// The im2col path of [`forward_active`], for any geometry.
pub(super) fn forward_im2col(
    call: &ActiveForward<'_>,
    scratch: &mut SkipScratch,
    output: &mut [f32],
) {
    let ActiveForward { layer, input, pool } = *call;
    let ActiveConv2d {
        geometry: ref g,
        active,
        weight,
        bias,
        epilogue,
    } = *layer;
    let (_, outputs, inner) = active_sizes(g, active);
    if output.is_empty() || outputs == 0 {
        return;
    }
    let filters = gather_filters_transposed(g, active, weight, &mut scratch.weight);
    let filters = MatrixView::new(filters, outputs, inner, 1, outputs);

    // NOTE: an unpadded, unit-stride convolution is computed `in_w` wide (see
    // `im2col_wide_into`): im2col then copies whole runs of the input instead of one short
    // run per output row and tap, which costs more than the `kernel_w - 1` junk columns.
    let wide = g.is_shifted_plane();
    let out_w = g.out_w();
    let row_w = if wide { g.in_w } else { out_w };
    let positions = g.out_h() * row_w;
    let total = g.batch * positions;
    let macs = total * inner * outputs;
    let parallel = macs >= SERIAL_MACS && rayon::current_num_threads() > 1;
    let align = match (pool, wide) {
        (true, _) => 2 * row_w,
        (false, true) => row_w,
        (false, false) => TILE_ALIGN,
    };
    // NOTE: the product tile counts too: with few im2col rows (a first layer) a tile sized
    // by the columns alone would leave the epilogue reading its product from memory.
    let widest = ((TILE_FLOATS / (inner + outputs)).max(MIN_TILE) / align).max(1) * align;
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    // NOTE: a multiple of the thread count, so that no thread is left with an extra tile.
    let count = total
        .div_ceil(widest)
        .max((threads * TASKS_PER_THREAD).min(total / MIN_TILE))
        .max(1)
        .next_multiple_of(threads);
    let tile = total.div_ceil(count).next_multiple_of(align);
    // Output positions stored for `len` computed ones (whole rows, or pairs when pooling,
    // except for a plain convolution, whose tiles may cut rows).
    let stored = |len: usize| match (pool, wide) {
        (true, _) => len / (2 * row_w) * (out_w / 2),
        (false, true) => len / row_w * out_w,
        (false, false) => len,
    };
    let tasks = cut_into_tiles(output, g.out_channels, positions, total, tile, stored);

    let image_len = g.input_image_len();
    let run = |scratch: &mut Scratch, segments: &mut Vec<Segment<'_>>| {
        let width: usize = segments.iter().map(|s| s.positions.len()).sum();
        let (strip, col, product) = scratch.parts(inner * width, outputs * width);
        for s in segments.iter() {
            let image = &input[s.image * image_len..][..image_len];
            let target = ColumnBlock {
                row_stride: width,
                offset: s.column,
            };
            let channels = active.inputs.iter().copied();
            if wide {
                im2col_wide_into(g, image, channels, s.positions.clone(), col, target);
            } else {
                im2col_into(g, image, channels, s.positions.clone(), strip, col, target);
            }
        }
        let columns = MatrixView::row_major(col, inner, width);
        let product_view = MatrixViewMut::row_major(&mut *product, outputs, width);
        sgemm_serial(1.0, filters, columns, 0.0, product_view);
        for s in segments.iter_mut() {
            let len = s.positions.len();
            for (i, &o) in active.outputs.iter().enumerate() {
                let src = &mut product[i * width + s.column..][..len];
                let b = bias.map_or(0.0, |b| b[o]);
                let dst = s.output.row_mut(o);
                if pool {
                    epilogue_max_pool(&epilogue, o, b, src, row_w, out_w, dst);
                } else if wide {
                    for (row, out) in src.chunks_exact(row_w).zip(dst.chunks_exact_mut(out_w)) {
                        epilogue.apply(o, b, &row[..out_w], out);
                    }
                } else {
                    epilogue.apply(o, b, src, dst);
                }
            }
        }
    };

    run_tiles(tasks, parallel, &scratch.threads, run);
}

/// Runs `run` on every tile with its thread's scratch and denormals flushed: spread over
/// the calling thread and the pool with `parallel`, else one after another on the calling
/// thread.
pub(super) fn run_tiles<T: Send>(
    tasks: Vec<T>,
    parallel: bool,
    threads: &ScratchPerThread,
    run: impl Fn(&mut Scratch, &mut T) + Sync,
) {
    if parallel {
        for_each_task(tasks, |participant, mut task| {
            threads.with_slot(participant, |scratch| {
                with_denormals_flushed(|| run(scratch, &mut task));
            });
        });
    } else {
        threads.with(|scratch| {
            with_denormals_flushed(|| {
                for mut task in tasks {
                    run(scratch, &mut task);
                }
            })
        });
    }
}

/// The epilogue and a 2x2 max pooling (stride 2, floor mode) of channel `channel`'s rows
/// `width` long, one every `row_stride` elements of `rows` (which is modified): each pair
/// of rows gives one row of `width / 2` in `pooled`.
fn epilogue_max_pool(
    epilogue: &Epilogue<'_>,
    channel: usize,
    bias: f32,
    rows: &mut [f32],
    row_stride: usize,
    width: usize,
    pooled: &mut [f32],
) {
    // NOTE: the epilogue and the vertical maxima run over whole rows, plain vectorisable
    // loops, leaving the horizontal pairs to one pass over half the elements.
    for (pair, out) in pooled.chunks_exact_mut((width / 2).max(1)).enumerate() {
        let (top, rest) = rows[2 * pair * row_stride..].split_at_mut(row_stride);
        let (top, bottom) = (&mut top[..width], &mut rest[..width]);
        epilogue.apply_in_place(channel, bias, top);
        epilogue.apply_in_place(channel, bias, bottom);
        for (t, &b) in top.iter_mut().zip(&*bottom) {
            *t = larger(*t, b);
        }
        for (out, window) in out.iter_mut().zip(top.chunks_exact(2)) {
            *out = larger(window[0], window[1]);
        }
    }
}

/// `max(a, b)` as one compare and select, which the compiler vectorises (`f32::max` also
/// orders NaN, at the price of extra instructions).
#[inline(always)]
fn larger(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

/// Cuts the `total` computed positions of the batch (`positions` per image) into tiles of
/// `tile` (the last shorter), each as its image segments with their output blocks;
/// `stored(len)` is how many output positions `len` computed ones fill.
pub(super) fn cut_into_tiles<'a>(
    output: &'a mut [f32],
    channels: usize,
    positions: usize,
    total: usize,
    tile: usize,
    stored: impl Fn(usize) -> usize,
) -> Vec<Vec<Segment<'a>>> {
    let mut images = output
        .chunks_mut(channels * stored(positions))
        .map(|o| MatrixViewMut::row_major(o, channels, stored(positions)))
        .enumerate();
    let mut current: Option<(usize, MatrixViewMut<'a>, usize)> = None;
    let mut tasks = Vec::with_capacity(total.div_ceil(tile));
    let mut start = 0;
    while start < total {
        let mut need = tile.min(total - start);
        start += need;
        let mut segments = Vec::new();
        let mut column = 0;
        while need > 0 {
            let (image, view, first) = match current.take() {
                Some(open) => open,
                None => {
                    let (image, view) = images.next().expect("tiles cover the batch exactly");
                    (image, view, 0)
                }
            };
            let len = need.min(positions - first);
            let (block, rest) = view.split_at_col(stored(len));
            segments.push(Segment {
                image,
                positions: first..first + len,
                column,
                output: block,
            });
            column += len;
            need -= len;
            if first + len < positions {
                current = Some((image, rest, first + len));
            }
        }
        tasks.push(segments);
    }
    tasks
}
