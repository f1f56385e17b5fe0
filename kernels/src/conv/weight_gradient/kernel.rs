//! The micro-kernel of the implicit weight gradient, written once for every instruction
//! set, and the tile shape each set runs it with.

use std::ops::Range;

use super::Layout;
use crate::simd::Isa;
use crate::simd::vector::{Kernel, Vector, dispatch};

/// The micro-kernel of one instruction set: tiles of [`rows`](Self::rows) im2col rows by a
/// few vectors of output channels.
#[derive(Clone, Copy)]
pub(super) struct MicroKernel {
    isa: Isa,
    rows: usize,
    compute: fn(Isa, Pass<'_>),
}

impl MicroKernel {
    /// The micro-kernel of `isa`.
    ///
    /// NOTE: tile shapes, `R` rows by `N` vectors of output channels, all accumulators in
    /// registers with the `N` gradient vectors and one broadcast input element beside them;
    /// per position `N` loads and `R` broadcasts feed `R * N` multiply-adds.
    /// - AVX-512 (32 registers of 16): 6 x 4, 24 accumulators; MnistNet's 64 filters are
    ///   one tile wide. Measured on a 2-core Intel Xeon on MnistNet's second convolution.
    /// - AVX2 (16 registers of 8): 6 x 2, 12 accumulators, 2 gradient vectors and the
    ///   broadcast in 15 registers (the implicit forward's lesson: filling all 16 made the
    ///   compiler spill).
    /// - NEON (32 registers of 4): 6 x 4, as AVX-512's register budget; not measured on
    ///   hardware (tested under emulation).
    /// - Portable (8-float arrays, two SSE registers each on a default x86-64 build): 4 x 2.
    pub(super) fn for_isa(isa: Isa) -> Self {
        match isa {
            Isa::Avx512 | Isa::Neon => Self::of::<6, 4>(isa),
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

    /// Im2col rows per tile: the layout's row offsets come in blocks of this many.
    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    /// Adds one image's products into `pass.sums`.
    ///
    /// # Panics
    /// If a read would leave the image or the transposed gradient, a write would leave the
    /// sums, or the CPU lacks the set.
    pub(super) fn run(&self, pass: Pass<'_>) {
        (self.compute)(self.isa, pass);
    }
}

/// One image's share of a task: its output gradient rearranged into `transposed`, then
/// `sums[r, i] += transposed[p, i] * image[offsets[k] + at(p)]` for the rows `k` of
/// `blocks` (`r` counted from the first of them), every output channel `i` and every
/// position `p`.
pub(super) struct Pass<'a> {
    pub(super) layout: &'a Layout,
    /// The image's input, zero-padded if the layer pads.
    pub(super) image: &'a [f32],
    /// The image's output gradient, `[channel, position]`, all channels.
    pub(super) grads: &'a [f32],
    /// Its active channels.
    pub(super) outputs: &'a [usize],
    /// Room for the active channels of `grads` as `[position, channel]`, `layout.stride`
    /// floats per position.
    pub(super) transposed: &'a mut [f32],
    /// Blocks of [`MicroKernel::rows`] rows of the layout's offsets.
    pub(super) blocks: Range<usize>,
    /// `[row, channel]`, `layout.stride` floats per row, one row per row of `blocks`.
    pub(super) sums: &'a mut [f32],
}

/// [`MicroKernel::run`] for `R x N` tiles.
fn compute<const R: usize, const N: usize>(isa: Isa, pass: Pass<'_>) {
    let layout = pass.layout;
    let rows = pass.blocks.start * R..pass.blocks.end * R;
    let last = (layout.out_h - 1) * layout.row_step + (layout.out_w - 1) * layout.col_step;
    let reach = layout.offsets[rows.clone()]
        .iter()
        .max()
        .map_or(0, |&o| o + last);
    assert!(
        rows.is_empty() || reach < pass.image.len(),
        "weight gradient: reads past the image"
    );
    let positions = layout.out_h * layout.out_w;
    assert!(
        layout.stride.is_multiple_of(16)
            && pass.outputs.len() == layout.channels
            && layout.channels <= layout.stride
            && pass
                .outputs
                .iter()
                .all(|&o| (o + 1) * positions <= pass.grads.len())
            && pass.transposed.len() >= positions * layout.stride,
        "weight gradient: reads past the gradient"
    );
    assert!(
        pass.sums.len() >= rows.len() * layout.stride,
        "weight gradient: writes past the sums"
    );
    // SAFETY: the reads of `image` and `grads` and the writes of `transposed` and `sums`
    // stay within them (asserted above: vectors never pass `stride`, a multiple of every
    // set's width).
    unsafe { dispatch(isa, Accumulate::<R, N>(pass)) };
}

/// [`compute`]'s work as a [`Kernel`].
struct Accumulate<'a, const R: usize, const N: usize>(Pass<'a>);

impl<const R: usize, const N: usize> Kernel for Accumulate<'_, R, N> {
    type Output = ();

    /// # Safety
    /// As [`compute`] asserts.
    #[inline(always)]
    unsafe fn run<V: Vector>(self) {
        let Pass {
            layout,
            image,
            grads,
            outputs,
            transposed,
            blocks,
            sums,
        } = self.0;
        // SAFETY: within `grads` and `transposed` (as `compute` asserts); the CPU runs `V`.
        unsafe { transpose::<V>(layout, grads, outputs, transposed) };
        let grads = &*transposed;
        let vectors = layout.channels.div_ceil(V::LANES);
        let positions_before = |y: usize| y * layout.out_w * layout.stride;
        for y in (0..layout.out_h).step_by(layout.chunk_rows) {
            let lines = y..(y + layout.chunk_rows).min(layout.out_h);
            let mut first = 0;
            while first < vectors {
                let count = (vectors - first).min(N);
                let grads = grads[positions_before(y) + first * V::LANES..].as_ptr();
                for (index, block) in blocks.clone().enumerate() {
                    let offsets = &layout.offsets[block * R..][..R];
                    let sums = sums[index * R * layout.stride + first * V::LANES..].as_mut_ptr();
                    let at = Tile {
                        sums,
                        grads,
                        image: image.as_ptr(),
                        offsets,
                        lines: lines.clone(),
                    };
                    // SAFETY (each call): in bounds as `compute` asserts, the CPU runs `V`
                    // (caller).
                    unsafe {
                        match count {
                            1 => tile::<V, R, 1>(layout, at),
                            2 if N > 2 => tile::<V, R, 2>(layout, at),
                            3 if N > 3 => tile::<V, R, 3>(layout, at),
                            _ => tile::<V, R, N>(layout, at),
                        }
                    }
                }
                first += count;
            }
        }
    }
}

/// The channels `outputs` of `grads` (`[channel, position]`) into `transposed` as
/// `[position, channel]`, `layout.stride` floats per position, by square blocks; lanes
/// past the last channel up to a whole vector are zero.
///
/// # Safety
/// As [`compute`] asserts; the CPU must run `V`.
#[inline(always)]
unsafe fn transpose<V: Vector>(
    layout: &Layout,
    grads: &[f32],
    outputs: &[usize],
    transposed: &mut [f32],
) {
    /// What the rows past the last channel read.
    static ZEROS: [f32; 16] = [0.0; 16];
    let lanes = V::LANES;
    let (positions, stride) = (layout.out_h * layout.out_w, layout.stride);
    let whole = positions - positions % lanes;
    let mut rows = [ZEROS.as_ptr(); 16];
    for (block, channels) in outputs.chunks(lanes).enumerate() {
        let first = block * lanes;
        for p in (0..whole).step_by(lanes) {
            for (row, &o) in rows.iter_mut().zip(channels) {
                *row = grads[o * positions + p..].as_ptr();
            }
            // SAFETY: each row holds `lanes` floats from `p` (at most `whole`), or is
            // `ZEROS`; the target's rows hold `first + lanes <= stride` floats.
            unsafe {
                V::transpose(
                    &rows[..lanes],
                    transposed[p * stride + first..].as_mut_ptr(),
                    stride,
                );
            }
        }
        for p in whole..positions {
            let target = &mut transposed[p * stride + first..][..lanes];
            for (i, value) in target.iter_mut().enumerate() {
                *value = channels.get(i).map_or(0.0, |&o| grads[o * positions + p]);
            }
        }
    }
}

/// Where one tile reads and writes: its first sum and first gradient vector, the image,
/// the offsets of its rows, and the output rows it covers.
struct Tile<'a> {
    sums: *mut f32,
    grads: *const f32,
    image: *const f32,
    offsets: &'a [usize],
    lines: Range<usize>,
}

/// `R` rows by `N` vectors of channels, accumulated in registers over the positions of
/// `at.lines` (starting from what `at.sums` holds) and stored back.
///
/// # Safety
/// `at.sums + r * stride` must be writable and `at.grads + p * stride` readable for `N`
/// vectors (`p` counted from the first line's first position), `at.image + offsets[r] +
/// at(p)` readable for each row and position, and the CPU run `V`.
#[inline(always)]
unsafe fn tile<V: Vector, const R: usize, const N: usize>(layout: &Layout, at: Tile<'_>) {
    let stride = layout.stride;
    // SAFETY (every intrinsic and pointer step): in bounds as the caller vouches; the CPU
    // runs `V` (caller).
    unsafe {
        let bases: [*const f32; R] = std::array::from_fn(|r| at.image.add(at.offsets[r]));
        let mut acc: [[V; N]; R] = std::array::from_fn(|r| {
            std::array::from_fn(|v| V::load(at.sums.add(r * stride + v * V::LANES)))
        });
        let mut grads = at.grads;
        for y in at.lines {
            let mut position = y * layout.row_step;
            for _ in 0..layout.out_w {
                let g: [V; N] = std::array::from_fn(|v| V::load(grads.add(v * V::LANES)));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = V::splat(*bases[r].add(position));
                    for v in 0..N {
                        acc[v] = x.mul_add(g[v], acc[v]);
                    }
                }
                grads = grads.add(stride);
                position += layout.col_step;
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (v, acc) in acc.iter().enumerate() {
                acc.store(at.sums.add(r * stride + v * V::LANES));
            }
        }
    }
}
