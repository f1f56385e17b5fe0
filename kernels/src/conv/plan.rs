//! How a convolution is cut into cache-sized, parallel pieces of work.
//!
//! The unit of work is one image's output positions in a tile (a range of flattened
//! `y * out_w + x` indices), optionally restricted to a block of channels when a small batch
//! would otherwise leave threads idle. In the backward passes the position tiling depends
//! only on the geometry, never on the number of threads, so every gradient is summed in the
//! same order (and comes out bit-for-bit the same) whatever `RAYON_NUM_THREADS` says.

use crate::tuning::conv::{BLOCK_ALIGN, COL_TILE_FLOATS, MIN_TILE, TASKS_PER_THREAD};
use std::ops::Range;

/// The output positions `0..positions` cut into tiles of `tile` positions (the last one
/// shorter): as few as keep `col_rows x tile` floats within [`COL_TILE_FLOATS`], but no
/// narrower than [`MIN_TILE`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Tiles {
    positions: usize,
    tile: usize,
}

impl Tiles {
    /// Tiles for an im2col matrix of `col_rows` rows and `positions` columns.
    pub(super) fn new(positions: usize, col_rows: usize) -> Self {
        Self::at_least(positions, col_rows, 1)
    }

    /// As [`new`](Self::new), but at least `count` tiles (if they can be [`MIN_TILE`] wide).
    pub(super) fn at_least(positions: usize, col_rows: usize, count: usize) -> Self {
        let widest = (COL_TILE_FLOATS / col_rows.max(1) / BLOCK_ALIGN * BLOCK_ALIGN).max(MIN_TILE);
        let count = positions
            .div_ceil(widest)
            .max(count.min(positions / MIN_TILE))
            .max(1);
        // NOTE: even out the tiles rather than leave a thin last one.
        let tile = positions
            .div_ceil(count)
            .next_multiple_of(BLOCK_ALIGN)
            .min(positions)
            .max(1);
        Self { positions, tile }
    }

    /// Number of tiles.
    pub(super) fn count(&self) -> usize {
        self.positions.div_ceil(self.tile)
    }

    /// The tiles' position ranges, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        (0..self.count()).map(|t| t * self.tile..((t + 1) * self.tile).min(self.positions))
    }
}

/// Cuts `0..len` into `parts` consecutive ranges (fewer if `len` is small) whose inner
/// boundaries are multiples of `align`; an empty `len` gives one empty range.
pub(super) fn split_range(len: usize, parts: usize, align: usize) -> Vec<Range<usize>> {
    let parts = parts.clamp(1, len.div_ceil(align).max(1));
    let mut ranges = Vec::with_capacity(parts);
    let mut start = 0;
    for part in 1..=parts {
        let end = if part == parts {
            len
        } else {
            (len * part / parts).next_multiple_of(align).min(len)
        };
        if end > start || (part == parts && ranges.is_empty()) {
            ranges.push(start..end);
        }
        start = end.max(start);
    }
    ranges
}

/// Into how many blocks to cut a dimension so that `units` independent pieces of work times
/// the blocks give every thread a few tasks.
pub(super) fn blocks_for_threads(units: usize) -> usize {
    (rayon::current_num_threads() * TASKS_PER_THREAD).div_ceil(units.max(1))
}
