//! Moving between an image and the columns of its convolution windows.
//!
//! For a block of channels `c` and a tile of output positions `p = y * out_w + x`, the
//! im2col matrix has one row per `(c, i, j)` (channel, kernel row, kernel column: the
//! weight's order) and one column per position:
//!
//! ```text
//! col[(c, i, j), p] = image[c, y * stride_h + i - pad_h, x * stride_w + j - pad_w]   (0 outside)
//! ```
//!
//! so that a convolution is the matrix product `weight (out_channels x rows) x col`.
//!
//! NOTE: for each channel, the input rows a tile reads are first copied into a small
//! zero-padded strip, so that every run of the im2col matrix (one output row's positions for
//! one kernel tap) is a plain copy with no padding tests, from a strip that is still in the
//! L1 cache. The runs are short (an output row), and per-run work is what im2col's time goes
//! into.

use std::ops::Range;

use super::Conv2dGeometry;
use crate::scratch::{Scratch, grown};

/// The runs of the im2col matrix of one tile, within one channel.
struct TileRuns {
    /// Rows `first_row..first_row + rows` of the zero-padded input plane (padded
    /// coordinates, `width = in_w + 2 pad_w` wide) hold every element the tile reads.
    first_row: usize,
    rows: usize,
    width: usize,
    /// The tile cut at output-row boundaries.
    segments: Vec<Segment>,
}

/// The part of a tile on one output row: `len` positions stored from column `start` of the
/// tile, whose first window starts at element `strip_offset` of the strip (for kernel tap
/// `(0, 0)`).
#[derive(Clone, Copy)]
struct Segment {
    start: usize,
    len: usize,
    strip_offset: usize,
}

impl TileRuns {
    /// # Panics
    /// If `positions` is empty.
    fn new(g: &Conv2dGeometry, positions: &Range<usize>) -> Self {
        let out_w = g.out_w();
        let (first_y, last_y) = (positions.start / out_w, (positions.end - 1) / out_w);
        let first_row = first_y * g.stride_h;
        let width = g.in_w + 2 * g.pad_w;
        let mut segments = Vec::with_capacity(last_y - first_y + 1);
        let mut p = positions.start;
        while p < positions.end {
            let (y, x0) = (p / out_w, p % out_w);
            let len = (out_w - x0).min(positions.end - p);
            segments.push(Segment {
                start: p - positions.start,
                len,
                strip_offset: (y * g.stride_h - first_row) * width + x0 * g.stride_w,
            });
            p += len;
        }
        Self {
            first_row,
            rows: (last_y - first_y) * g.stride_h + g.kernel_h,
            width,
            segments,
        }
    }

    fn strip_len(&self) -> usize {
        self.rows * self.width
    }

    /// The input row (within a channel plane) behind strip row `r`, or `None` in the padding.
    fn input_row(&self, g: &Conv2dGeometry, r: usize) -> Option<usize> {
        (self.first_row + r)
            .checked_sub(g.pad_h)
            .filter(|&iy| iy < g.in_h)
    }

    /// Calls `run(row, strip_offset, segment)` for every run of one channel: `row` is the
    /// run's row of the channel's im2col block (`i * kernel_w + j`), `strip_offset` where in
    /// the strip its first window element lies.
    ///
    /// NOTE: the kernel column loop is outside the segment loop, so that the column buffer
    /// is written (or read) in order, and col2im's consecutive runs add into different strip
    /// rows rather than into a copy of the previous run shifted by one element, which would
    /// defeat store-to-load forwarding.
    fn for_each_run(&self, g: &Conv2dGeometry, mut run: impl FnMut(usize, usize, &Segment)) {
        for i in 0..g.kernel_h {
            for j in 0..g.kernel_w {
                for s in &self.segments {
                    run(i * g.kernel_w + j, s.strip_offset + i * self.width + j, s);
                }
            }
        }
    }
}

impl Scratch {
    /// The im2col matrix of `channels` channels of one image (`image` holds them as
    /// `[channels, in_h, in_w]`) for `positions`: `channels * kernel_h * kernel_w` rows by
    /// `positions.len()` columns, row-major.
    ///
    /// # Panics
    /// If `positions` is empty or reaches past the output plane, or `image` is shorter than
    /// `channels` input planes.
    pub(super) fn im2col(
        &mut self,
        g: &Conv2dGeometry,
        image: &[f32],
        channels: usize,
        positions: Range<usize>,
    ) -> &[f32] {
        let tile = positions.len();
        let col = grown(&mut self.col, channels * g.kernel_h * g.kernel_w * tile);
        let target = ColumnBlock {
            row_stride: tile,
            offset: 0,
        };
        im2col_into(
            g,
            image,
            0..channels,
            positions,
            &mut self.strip,
            col,
            target,
        );
        col
    }

    /// Adds the im2col-shaped gradient left in the column buffer by [`col_mut`](Self::col_mut)
    /// (`channels * kernel_h * kernel_w` rows by `positions.len()` columns) into the image
    /// gradient `image` (`[channels, in_h, in_w]`): each entry that did not read padding is
    /// added to the input element it read.
    ///
    /// # Panics
    /// If `positions` is empty or reaches past the output plane, the column buffer is
    /// shorter than the matrix, or `image` is shorter than `channels` input planes.
    pub(super) fn col2im_add(
        &mut self,
        g: &Conv2dGeometry,
        channels: usize,
        positions: Range<usize>,
        image: &mut [f32],
    ) {
        let tile = positions.len();
        let col = &self.col[..channels * g.kernel_h * g.kernel_w * tile];
        let source = ColumnBlock {
            row_stride: tile,
            offset: 0,
        };
        col2im_add_from(
            g,
            col,
            source,
            0..channels,
            positions,
            &mut self.strip,
            image,
        );
    }
}

/// Where a tile's columns sit in a wider row-major matrix: row `r` of the tile starts at
/// element `r * row_stride + offset`.
#[derive(Clone, Copy, Debug)]
pub(super) struct ColumnBlock {
    pub(super) row_stride: usize,
    pub(super) offset: usize,
}

/// Writes the im2col rows of the listed `channels` of one image (`image` holds all its
/// planes, `[in_channels, in_h, in_w]`) for `positions` into `col`: the `k`-th listed
/// channel fills rows `k * taps..(k + 1) * taps` (`taps = kernel_h * kernel_w`), placed as
/// `target` says. `strip` is scratch.
///
/// # Panics
/// If `positions` is empty or reaches past the output plane, a channel's plane lies
/// outside `image`, or a row lies outside `col`.
pub(super) fn im2col_into(
    g: &Conv2dGeometry,
    image: &[f32],
    channels: impl Iterator<Item = usize>,
    positions: Range<usize>,
    strip: &mut Vec<f32>,
    col: &mut [f32],
    target: ColumnBlock,
) {
    let runs = TileRuns::new(g, &positions);
    let taps = g.kernel_h * g.kernel_w;
    let plane = g.in_h * g.in_w;
    let strip = grown(strip, runs.strip_len());
    // NOTE: without padding the rows a tile reads are a contiguous part of the plane, which
    // serves as the strip directly.
    let unpadded = g.pad_h == 0 && g.pad_w == 0;
    for (k, c) in channels.enumerate() {
        let channel = &image[c * plane..(c + 1) * plane];
        let strip: &[f32] = if unpadded {
            &channel[runs.first_row * g.in_w..]
        } else {
            fill_strip(g, &runs, channel, strip);
            strip
        };
        runs.for_each_run(g, |row, offset, s| {
            let start = (k * taps + row) * target.row_stride + target.offset + s.start;
            let dst = &mut col[start..][..s.len];
            if g.stride_w == 1 {
                copy_short(dst, &strip[offset..offset + s.len]);
            } else {
                let source = strip[offset..].iter().step_by(g.stride_w);
                for (d, &v) in dst.iter_mut().zip(source) {
                    *d = v;
                }
            }
        });
    }
}

/// [`im2col_into`] for an unpadded, unit-stride convolution computed `in_w` wide: output
/// position `y * in_w + x` (columns `x >= out_w` are junk, to be dropped) of tap `(i, j)`
/// reads input element `y * in_w + x + i * in_w + j`, so each row of the tile is one
/// contiguous run of the input plane (zero past its end, which only junk columns reach).
///
/// # Panics
/// If a channel's plane lies outside `image`, or a row lies outside `col`.
pub(super) fn im2col_wide_into(
    g: &Conv2dGeometry,
    image: &[f32],
    channels: impl Iterator<Item = usize>,
    positions: Range<usize>,
    col: &mut [f32],
    target: ColumnBlock,
) {
    let (taps, plane, in_w) = (g.kernel_h * g.kernel_w, g.in_h * g.in_w, g.in_w);
    for (k, c) in channels.enumerate() {
        let channel = &image[c * plane..(c + 1) * plane];
        for i in 0..g.kernel_h {
            for j in 0..g.kernel_w {
                let row = k * taps + i * g.kernel_w + j;
                let dst = &mut col[row * target.row_stride + target.offset..][..positions.len()];
                let start = i * in_w + j + positions.start;
                let available = plane.saturating_sub(start).min(dst.len());
                if available > 0 {
                    dst[..available].copy_from_slice(&channel[start..start + available]);
                }
                dst[available..].fill(0.0);
            }
        }
    }
}

/// Copies the rows of `channel` (one input plane) that `runs` reads into `strip`, with the
/// padding as zeros.
fn fill_strip(g: &Conv2dGeometry, runs: &TileRuns, channel: &[f32], strip: &mut [f32]) {
    for (r, row) in strip.chunks_exact_mut(runs.width).enumerate() {
        let Some(iy) = runs.input_row(g, r) else {
            row.fill(0.0);
            continue;
        };
        let (left, rest) = row.split_at_mut(g.pad_w);
        let (body, right) = rest.split_at_mut(g.in_w);
        left.fill(0.0);
        copy_short(body, &channel[iy * g.in_w..(iy + 1) * g.in_w]);
        right.fill(0.0);
    }
}

/// The inverse of [`im2col_into`] as a sum: adds the im2col-shaped gradient in `col`
/// (placed as `source` says, the `k`-th listed channel in rows `k * taps..(k + 1) * taps`)
/// into the planes of the listed `channels` of the image gradient `image`
/// (`[in_channels, in_h, in_w]`). `strip` is scratch.
///
/// # Panics
/// As [`im2col_into`].
pub(super) fn col2im_add_from(
    g: &Conv2dGeometry,
    col: &[f32],
    source: ColumnBlock,
    channels: impl Iterator<Item = usize>,
    positions: Range<usize>,
    strip: &mut Vec<f32>,
    image: &mut [f32],
) {
    let runs = TileRuns::new(g, &positions);
    let taps = g.kernel_h * g.kernel_w;
    let plane = g.in_h * g.in_w;
    let strip = grown(strip, runs.strip_len());
    for (k, c) in channels.enumerate() {
        strip.fill(0.0);
        runs.for_each_run(g, |row, offset, s| {
            let start = (k * taps + row) * source.row_stride + source.offset + s.start;
            let src = &col[start..][..s.len];
            if g.stride_w == 1 {
                add_short(&mut strip[offset..offset + s.len], src);
            } else {
                let target = strip[offset..].iter_mut().step_by(g.stride_w);
                for (d, &v) in target.zip(src) {
                    *d += v;
                }
            }
        });
        let channel = &mut image[c * plane..(c + 1) * plane];
        for (r, row) in strip.chunks_exact(runs.width).enumerate() {
            if let Some(iy) = runs.input_row(g, r) {
                add_short(
                    &mut channel[iy * g.in_w..(iy + 1) * g.in_w],
                    &row[g.pad_w..g.pad_w + g.in_w],
                );
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for the short runs of im2col (one output row, typically a few
/// dozen floats), where a call to `memcpy` costs more than the copy itself.
fn copy_short(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "copy_short: lengths differ");
    let len = dst.len();
    if len < 8 {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s;
        }
        return;
    }
    // NOTE: 8-float blocks, the last one overlapping its predecessor, in a loop whose exit
    // test the optimiser does not turn back into a memcpy call.
    let mut done = 0;
    loop {
        let at = done.min(len - 8);
        let block: [f32; 8] = src[at..at + 8].try_into().expect("8 floats");
        dst[at..at + 8].copy_from_slice(&block);
        done += 8;
        if done >= len {
            return;
        }
    }
}

/// `dst += src` elementwise for the short runs of col2im, in 8-float blocks.
fn add_short(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "add_short: lengths differ");
    let mut dst_blocks = dst.chunks_exact_mut(8);
    let mut src_blocks = src.chunks_exact(8);
    for (d, s) in (&mut dst_blocks).zip(&mut src_blocks) {
        let d: &mut [f32; 8] = d.try_into().expect("8 floats");
        let s: [f32; 8] = s.try_into().expect("8 floats");
        let mut sum = *d;
        for (sum, s) in sum.iter_mut().zip(s) {
            *sum += s;
        }
        *d = sum;
    }
    for (d, &s) in dst_blocks
        .into_remainder()
        .iter_mut()
        .zip(src_blocks.remainder())
    {
        *d += s;
    }
}
