//! The micro-kernel of the implicit convolution, written once for every instruction set,
//! the tile shape each set runs it with, and the copies (or 2x2 max pooling) of its
//! results into the output maps.

use std::ops::Range;

use super::{Layer, Maps};
use crate::simd::Isa;
use crate::simd::vector::{Kernel, Vector, dispatch};

/// The micro-kernel of one instruction set: blocks of [`rows`](Self::rows) filters.
#[derive(Clone, Copy)]
pub(in crate::conv) struct MicroKernel {
    isa: Isa,
    rows: usize,
    compute: fn(Isa, Blocks<'_, '_>),
}

impl MicroKernel {
    /// The micro-kernel of `isa`.
    ///
    /// NOTE: tile shapes, `R` filters by `N` vectors of positions, all accumulators in
    /// registers with the `N` input vectors and one broadcast filter weight beside them.
    /// - AVX-512 (32 registers of 16): 8 x 3, 24 accumulators; measured on a 2-core Intel
    ///   Xeon and a 2-core AMD EPYC (Zen 4) on MnistNet's second convolution.
    /// - AVX2 (16 registers of 8): 6 x 2, 12 accumulators, 2 inputs and the broadcast in
    ///   15 registers. 4 x 3 fills all 16, and the compiler then shuffled accumulators
    ///   between registers and spilled one on every step of the inner loop (seen in the
    ///   assembly; half the speed, on the AMD EPYC (Zen 4) with AVX2 forced).
    /// - NEON (32 registers of 4): 8 x 3, as AVX-512's register budget; not measured on
    ///   hardware (tested under emulation).
    /// - Portable (8-float arrays, two SSE registers each on a default x86-64 build): 4 x 2.
    pub(in crate::conv) fn for_isa(isa: Isa) -> Self {
        match isa {
            Isa::Avx512 | Isa::Neon => Self::of::<8, 3>(isa),
            Isa::Avx2 => Self::of::<6, 2>(isa),
            Isa::Portable => Self::of::<4, 2>(isa),
        }
    }

    fn of<const R: usize, const N: usize>(isa: Isa) -> Self {
        Self {
            isa,
            rows: R,
            compute: compute::<R, N>,
        }
    }

    /// Filters per block: the packed panels hold this many weights per im2col row.
    pub(in crate::conv) fn rows(&self) -> usize {
        self.rows
    }

    /// Runs `blocks`.
    ///
    /// # Panics
    /// If the panels do not hold [`rows`](Self::rows) weights per offset, a read would leave
    /// the image, a write would leave the product or the output rows, or the CPU lacks
    /// the set.
    pub(super) fn run(&self, blocks: Blocks<'_, '_>) {
        (self.compute)(self.isa, blocks);
    }
}

/// What one block of filters produces: `y = scale[r] * max(0, x + bias[r])` per row `r`
/// with `relu`, `y = scale[r] * (x + bias[r])` without.
pub(super) struct RowActivation<const R: usize> {
    pub(super) bias: [f32; R],
    pub(super) scale: [f32; R],
    pub(super) relu: bool,
}

/// The work of one call of the micro-kernel: the filters of some blocks over one range of
/// positions of one image, each block followed by the copy (or pooling) of its rows into
/// the output maps.
pub(super) struct Blocks<'a, 'b> {
    pub(super) layer: &'a Layer<'a>,
    pub(super) image: &'a [f32],
    /// The positions `p` computed: `image[offsets[k] + p]` is read for each.
    pub(super) columns: Range<usize>,
    /// Positions of the tile (at least `columns.len()`), whole rows or pairs of rows: the
    /// product rows hold this many, and the maps' rows what they give.
    pub(super) width: usize,
    pub(super) blocks: Range<usize>,
    pub(super) maps: Maps<'a, 'b>,
    /// At least `rows * width` floats.
    pub(super) product: &'a mut [f32],
}

/// [`MicroKernel::run`] for `R x N` tiles.
fn compute<const R: usize, const N: usize>(isa: Isa, b: Blocks<'_, '_>) {
    let layer = b.layer;
    let reach = layer.offsets.iter().max().map_or(0, |&o| o + b.columns.end);
    assert!(
        b.columns.is_empty() || reach <= b.image.len(),
        "implicit conv: reads past the image"
    );
    assert!(
        b.columns.len() <= b.width && R * b.width <= b.product.len(),
        "implicit conv: writes past the product"
    );
    assert!(
        b.blocks.end * R * layer.offsets.len() <= layer.packed.len()
            && layer.packed.len()
                == layer.active.outputs.len().div_ceil(R) * R * layer.offsets.len(),
        "implicit conv: filters packed for another kernel"
    );
    // SAFETY: the reads of `image` and of the panels, and the writes of `product`, stay
    // within them (asserted above); the copies into the maps are bounds-checked.
    unsafe { dispatch(isa, Compute::<R, N>(b)) };
}

/// [`compute`]'s work as a [`Kernel`].
struct Compute<'a, 'b, const R: usize, const N: usize>(Blocks<'a, 'b>);

impl<const R: usize, const N: usize> Kernel for Compute<'_, '_, R, N> {
    type Output = ();

    /// # Safety
    /// As [`compute`] asserts.
    #[inline(always)]
    unsafe fn run<V: Vector>(self) {
        let Blocks {
            layer,
            image,
            columns,
            width,
            blocks,
            maps,
            product,
        } = self.0;
        let inner = layer.offsets.len();
        let all = layer.active.outputs.chunks(R).enumerate();
        for (block, outputs) in all.skip(blocks.start).take(blocks.len()) {
            let panel = &layer.packed[block * inner * R..][..inner * R];
            let at = (panel.as_ptr(), R, layer.offsets, image.as_ptr());
            // NOTE: a last block short of `R` filters (64 filters in blocks of 6, or the 32
            // a half-pruned layer keeps) runs a shorter tile over the first rows of its
            // panel instead of multiplying zero filters: 2 or 4 rows, so that few tiles are
            // compiled.
            // SAFETY (each call): forwarded from `compute`'s assertions; the shorter tiles
            // read the first rows of the panel and write the first rows of the product.
            unsafe {
                match outputs.len() {
                    rows if rows <= 2 && R > 2 => {
                        tile_block::<V, 2, N>(layer, outputs, at, columns.clone(), product, width)
                    }
                    rows if rows <= 4 && R > 4 => {
                        tile_block::<V, 4, N>(layer, outputs, at, columns.clone(), product, width)
                    }
                    _ => tile_block::<V, R, N>(layer, outputs, at, columns.clone(), product, width),
                }
            }
            for (r, &o) in outputs.iter().enumerate() {
                let src = &product[r * width..][..width];
                let dst = maps.view.row_mut(o - maps.first_channel);
                // SAFETY: the CPU runs `V` (caller).
                unsafe {
                    if layer.pool {
                        max_pool_rows::<V>(src, layer.row_w, layer.out_w, dst);
                    } else {
                        copy_rows::<V>(src, layer.row_w, layer.out_w, dst);
                    }
                }
            }
        }
    }
}

/// The filters `outputs` (at most `Q`) over `columns`, `Q x N` tiles, into the first rows of
/// `product` (rows `width` long).
///
/// # Safety
/// As [`strips`] for `Q` rows.
#[inline(always)]
unsafe fn tile_block<V: Vector, const Q: usize, const N: usize>(
    layer: &Layer<'_>,
    outputs: &[usize],
    at: (*const f32, usize, &[usize], *const f32),
    columns: Range<usize>,
    product: &mut [f32],
    width: usize,
) {
    let activation = layer.activation::<Q>(outputs);
    // SAFETY: forwarded from the caller.
    unsafe { strips::<V, Q, N>(at, columns, &activation, product.as_mut_ptr(), width) }
}

/// Cuts `columns` into strips of `N` vectors of positions: whole strips with plain loads,
/// the last one masked.
///
/// # Safety
/// `image + offsets[k] + p` must be readable for every `k` and `p` in `columns`, `product +
/// r * ldc + (p - columns.start)` writable for every `r < R`, the panel (`at.0`) hold `R`
/// weights at the start of every `at.1` (its stride, at least `R`) per offset, and the CPU
/// run `V`.
#[inline(always)]
unsafe fn strips<V: Vector, const R: usize, const N: usize>(
    at: (*const f32, usize, &[usize], *const f32),
    columns: Range<usize>,
    activation: &RowActivation<R>,
    product: *mut f32,
    ldc: usize,
) {
    let (panel, stride, offsets, image) = at;
    let mut p = columns.start;
    while p < columns.end {
        let n = (columns.end - p).min(N * V::LANES);
        // NOTE: wrapping arithmetic: the pointers are only dereferenced for the lanes the
        // strip reads and writes, which the caller vouches for.
        let source = image.wrapping_add(p);
        let target = product.wrapping_add(p - columns.start);
        // SAFETY: forwarded from the caller.
        unsafe {
            if n == N * V::LANES {
                let at = (panel, stride, offsets, source);
                strip::<V, R, N, false>(at, activation, target, ldc, n);
            } else {
                let at = (panel, stride, offsets, source);
                strip::<V, R, N, true>(at, activation, target, ldc, n);
            }
        }
        p += n;
    }
}

/// One strip of `n <= N * LANES` positions for the `R` rows, accumulated in registers over
/// all offsets, activated and stored once; `MASKED` when `n` is short of the full strip.
///
/// # Safety
/// `source + offsets[k]` must be readable for `n` floats for every `k`, `target + r * ldc`
/// writable for `n` floats for every row `r`, `panel + k * stride + r` readable for every
/// `k` and `r`, and the CPU run `V`.
#[inline(always)]
unsafe fn strip<V: Vector, const R: usize, const N: usize, const MASKED: bool>(
    (panel, stride, offsets, source): (*const f32, usize, &[usize], *const f32),
    activation: &RowActivation<R>,
    target: *mut f32,
    ldc: usize,
    n: usize,
) {
    // SAFETY (every intrinsic): the CPU runs `V` (caller); masked lanes are neither read
    // nor written, the others are in bounds (caller).
    unsafe {
        let masks: [V::Mask; N] = std::array::from_fn(|v| V::first(n.saturating_sub(v * V::LANES)));
        let mut acc = [[V::zero(); N]; R];
        for (k, &offset) in offsets.iter().enumerate() {
            let row = source.wrapping_add(offset);
            let mut x = [V::zero(); N];
            for v in 0..N {
                let at = row.wrapping_add(v * V::LANES);
                x[v] = if MASKED {
                    V::load_masked(at, masks[v])
                } else {
                    V::load(at)
                };
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let w = V::splat(*panel.add(k * stride + r));
                for v in 0..N {
                    acc[v] = w.mul_add(x[v], acc[v]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let bias = V::splat(activation.bias[r]);
            let scale = V::splat(activation.scale[r]);
            for v in 0..N {
                let mut y = acc[v].add(bias);
                if activation.relu {
                    y = y.relu();
                }
                y = y.mul(scale);
                let at = target.wrapping_add(r * ldc + v * V::LANES);
                if MASKED {
                    y.store_masked(at, masks[v]);
                } else {
                    y.store(at);
                }
            }
        }
    }
}

/// Copies the first `width` elements of each row of `rows` (one every `row_stride`
/// elements) one after another into `out`, which holds `width` per row.
///
/// NOTE: rows are short (26 floats in MnistNet's first layer): a `copy_from_slice` per
/// row called the C library's `memmove`, whose call and size dispatch showed as 5-7% of a
/// pruned MnistNet's inference in profiles; masked vector moves do it in line.
///
/// # Safety
/// The CPU must run `V`.
#[inline(always)]
unsafe fn copy_rows<V: Vector>(rows: &[f32], row_stride: usize, width: usize, out: &mut [f32]) {
    if width == 0 {
        return;
    }
    for (i, dst) in out.chunks_exact_mut(width).enumerate() {
        let src = &rows[i * row_stride..][..width];
        let mut j = 0;
        while j < width {
            // SAFETY: the CPU runs `V` (caller); the lanes of the mask lie within both
            // slices.
            unsafe {
                let mask = V::first(width - j);
                let v = V::load_masked(src.as_ptr().add(j), mask);
                v.store_masked(dst.as_mut_ptr().add(j), mask);
            }
            j += V::LANES;
        }
    }
}

/// 2x2 max pooling (stride 2, floor mode) of `rows`, rows `width` long one every
/// `row_stride` elements: each pair of rows gives one row of `width / 2` in `pooled`.
/// Maxima are taken as `if a > b { a } else { b }`.
///
/// # Safety
/// The CPU must run `V`.
#[inline(always)]
unsafe fn max_pool_rows<V: Vector>(
    rows: &[f32],
    row_stride: usize,
    width: usize,
    pooled: &mut [f32],
) {
    let half = width / 2;
    if half == 0 {
        return;
    }
    for (pair, out) in pooled.chunks_exact_mut(half).enumerate() {
        let top = &rows[2 * pair * row_stride..][..2 * half];
        let bottom = &rows[(2 * pair + 1) * row_stride..][..2 * half];
        let mut j = 0;
        while j < half {
            let lanes = (half - j).min(V::LANES);
            // SAFETY: the CPU runs `V` (caller); the masks cover `2 * lanes` inputs of
            // each row from `2 * j` and `lanes` outputs from `j`, all within the slices.
            unsafe {
                let (low, high) = (
                    V::first(2 * lanes),
                    V::first((2 * lanes).saturating_sub(V::LANES)),
                );
                let (t, b) = (top.as_ptr().add(2 * j), bottom.as_ptr().add(2 * j));
                let lo = V::load_masked(t, low).max(V::load_masked(b, low));
                let hi = V::load_masked(t.wrapping_add(V::LANES), high)
                    .max(V::load_masked(b.wrapping_add(V::LANES), high));
                V::pair_max(lo, hi).store_masked(out.as_mut_ptr().add(j), V::first(lanes));
            }
            j += lanes;
        }
    }
}
