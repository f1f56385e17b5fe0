//! The register tiles of [`PackedLinear`](super::PackedLinear), written once for every
//! instruction set, the tile shapes each set runs them with, and the per-output activation
//! they fuse.

use std::ops::Range;

use crate::simd::Isa;
use crate::simd::vector::{Kernel, Vector, dispatch};
use crate::skip::{Epilogue, activate};
use crate::tuning::packed_linear::FEATURE_BLOCK;

/// The tiles of one instruction set: rows of the batch by vectors of active outputs, in
/// three shapes (tall, half as tall, and a single row).
#[derive(Clone, Copy)]
pub(super) struct MicroKernel {
    isa: Isa,
    rows: usize,
    compute: fn(Isa, Rows<'_>),
}

impl std::fmt::Debug for MicroKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MicroKernel")
            .field("isa", &self.isa)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl MicroKernel {
    /// The tiles of `isa`.
    ///
    /// NOTE: tile shapes `R x N` (rows by vectors of outputs): all accumulators in
    /// registers with the tile's `N` weight vectors and one broadcast input beside them.
    /// Rows go through the tall tile, then the half-height one, then single rows, which
    /// take wider strips to keep enough multiply-add chains in flight. Measured on the
    /// 2-core AMD EPYC (Zen 4), each set forced, MnistNet's first linear layer with half its
    /// channels packed at batch 64, one thread, CPU time per call:
    /// - AVX-512 (32 registers of 16): 8 x 3 (24 accumulators), 4 x 3, 1 x 8: 335 µs;
    ///   7 x 3 340, 6 x 4 365, 12 x 2 393, 8 x 4 490.
    /// - AVX2 (16 registers of 8): 6 x 2 (12 accumulators, 2 weight vectors and the
    ///   broadcast in 15 registers), 3 x 2, 1 x 8: 375-380 µs; 4 x 2 and 5 x 2 within 2%,
    ///   3 x 2 470. 4 x 3 fills all 16 registers, and the compiler then moved the
    ///   accumulators between registers and spilled one on every step (seen in the
    ///   assembly): 690-705 µs.
    /// - NEON (32 registers of 4): AVX-512's shapes, by the same register budget; not
    ///   measured on hardware (tested under emulation).
    /// - Portable (8-float arrays, two SSE registers each on a default x86-64 build): 2 x 2,
    ///   1 x 2, 1 x 4: 1,070-1,120 µs; 2 x 3 and 1 x 4 within noise of it, 4 x 1 and 4 x 2
    ///   1,100, 3 x 1 1,140. The general matrix product this replaced (matrixmultiply
    ///   built for SSE2 only, as on a CPU without AVX) took 1,375 µs.
    pub(super) fn for_isa(isa: Isa) -> Self {
        match isa {
            Isa::Avx512 | Isa::Neon => Self::of::<8, 3, 4, 8>(isa),
            Isa::Avx2 => Self::of::<6, 2, 3, 8>(isa),
            Isa::Portable => Self::of::<2, 2, 1, 4>(isa),
        }
    }

    /// Tiles of `R x N`, `H x N` and `1 x S`.
    fn of<const R: usize, const N: usize, const H: usize, const S: usize>(isa: Isa) -> Self {
        Self {
            isa,
            rows: R,
            compute: compute::<R, N, H, S>,
        }
    }

    /// The instruction set.
    pub(super) fn isa(&self) -> Isa {
        self.isa
    }

    /// Rows of the tall tile: a thread's share of the batch is best a multiple of it.
    pub(super) fn rows(&self) -> usize {
        self.rows
    }
}

/// Bias and epilogue per active output, gathered into lanes: `y = scale[i] * max(0, x +
/// bias[i])` with `relu` (`scale` 1 without slopes), `y = x + bias[i]` without.
pub(super) struct LaneActivation {
    bias: Option<Vec<f32>>,
    scale: Option<Vec<f32>>,
    relu: bool,
}

impl LaneActivation {
    /// The activation of `epilogue` with `bias` (both of the full layer, already checked)
    /// for the active `outputs`.
    pub(super) fn new(bias: Option<&[f32]>, epilogue: Epilogue<'_>, outputs: &[usize]) -> Self {
        let gather = |values: &[f32]| outputs.iter().map(|&o| values[o]).collect::<Vec<_>>();
        let scale = matches!(epilogue, Epilogue::RotatedRelu(_))
            .then(|| outputs.iter().map(|&o| epilogue.scale(o)).collect());
        Self {
            bias: bias.map(gather),
            scale,
            relu: epilogue.relu(),
        }
    }

    /// Applies the activation to one row of active outputs, in place.
    pub(super) fn apply(&self, row: &mut [f32]) {
        for (i, y) in row.iter_mut().enumerate() {
            let bias = self.bias.as_ref().map_or(0.0, |b| b[i]);
            let scale = self.scale.as_ref().map_or(1.0, |s| s[i]);
            *y = activate(*y, bias, self.relu, scale);
        }
    }

    /// Whether it holds a value per output for `width` outputs.
    fn fits(&self, width: usize) -> bool {
        let fits = |values: &Option<Vec<f32>>| values.as_ref().is_none_or(|v| v.len() == width);
        fits(&self.bias) && fits(&self.scale)
    }
}

/// The packed weight, how its rows map to input features, and the tiles that read it.
pub(super) struct Layer<'a> {
    /// `[packed rows, width]`.
    pub(super) weight_t: &'a [f32],
    /// Packed row `k` is the `k`-th feature of these runs.
    pub(super) runs: &'a [Range<usize>],
    pub(super) in_features: usize,
    /// Active outputs.
    pub(super) width: usize,
    pub(super) kernel: MicroKernel,
}

impl Layer<'_> {
    /// For every row `n` of `input` (`[rows, in_features]`): `out[n, i] = sum over packed
    /// rows k in `packed` of input[n, feature(k)] * W^T[k, i]`, then `activation` if given
    /// (a partial sum without).
    ///
    /// # Panics
    /// If the lengths do not match the layer, `packed` leaves the packed rows, or the CPU
    /// lacks the kernel's instruction set.
    pub(super) fn rows(
        &self,
        input: &[f32],
        packed: Range<usize>,
        activation: Option<&LaneActivation>,
        out: &mut [f32],
    ) {
        let (ins, width) = (self.in_features, self.width);
        assert!(
            width > 0 && packed.end * width <= self.weight_t.len(),
            "PackedLinear: rows past the packed weight"
        );
        assert!(
            self.runs.iter().all(|run| run.end <= ins),
            "PackedLinear: features past the input"
        );
        let rows = out.len() / width;
        assert!(
            out.len() == rows * width && input.len() == rows * ins,
            "PackedLinear: rows of input and output differ"
        );
        assert!(
            activation.is_none_or(|a| a.fits(width)),
            "PackedLinear: activation of another width"
        );
        let blocks = self.blocks(packed);
        if blocks.is_empty() {
            out.fill(0.0);
            if let Some(activation) = activation {
                out.chunks_exact_mut(width)
                    .for_each(|row| activation.apply(row));
            }
            return;
        }
        let work = Rows {
            input,
            weight_t: self.weight_t,
            in_features: ins,
            width,
            blocks: &blocks,
            activation,
            out,
        };
        (self.kernel.compute)(self.kernel.isa, work);
    }

    /// The packed rows `packed` as blocks `(first packed row, its feature, length)` that lie
    /// within one run and hold at most [`FEATURE_BLOCK`] rows.
    fn blocks(&self, packed: Range<usize>) -> Vec<(usize, usize, usize)> {
        let mut blocks = Vec::new();
        let mut k = 0;
        for run in self.runs {
            let (start, end) = (packed.start.max(k), packed.end.min(k + run.len()));
            let mut at = start;
            while at < end {
                let len = (end - at).min(FEATURE_BLOCK);
                blocks.push((at, run.start + (at - k), len));
                at += len;
            }
            k += run.len();
        }
        blocks
    }
}

/// The work of one call of the tiles: rows of the input (`in_features` each) into as many
/// rows of `width` outputs, over blocks `(first packed row, its feature, length)` of the
/// weight.
pub(super) struct Rows<'a> {
    input: &'a [f32],
    weight_t: &'a [f32],
    in_features: usize,
    width: usize,
    blocks: &'a [(usize, usize, usize)],
    activation: Option<&'a LaneActivation>,
    out: &'a mut [f32],
}

/// [`Layer::rows`]'s tiles, `R x N`, `H x N` and `1 x S`, once its checks are made.
fn compute<const R: usize, const N: usize, const H: usize, const S: usize>(
    isa: Isa,
    work: Rows<'_>,
) {
    // SAFETY: `Layer::rows` checked that every block's features lie within the input rows
    // and its packed rows within the weight, and the lengths of the output and activation.
    unsafe { dispatch(isa, Compute::<R, N, H, S>(work)) }
}

/// [`compute`]'s work as a [`Kernel`].
struct Compute<'a, const R: usize, const N: usize, const H: usize, const S: usize>(Rows<'a>);

impl<const R: usize, const N: usize, const H: usize, const S: usize> Kernel
    for Compute<'_, R, N, H, S>
{
    type Output = ();

    /// # Safety
    /// As [`Layer::rows`] checks.
    #[inline(always)]
    unsafe fn run<V: Vector>(self) {
        let Rows {
            input,
            weight_t,
            in_features: ins,
            width,
            blocks,
            activation,
            out,
        } = self.0;
        let rows = out.len() / width;
        for (b, &(k, feature, len)) in blocks.iter().enumerate() {
            let last = b + 1 == blocks.len();
            let epilogue = (b > 0, if last { activation } else { None });
            let mut row = 0;
            while row < rows {
                // NOTE: wrapping arithmetic: the pointers are only dereferenced within the
                // rows, features and outputs that `Layer::rows` checked.
                let at = Tile {
                    x: input.as_ptr().wrapping_add(row * ins + feature),
                    ldx: ins,
                    w: weight_t.as_ptr().wrapping_add(k * width),
                    len,
                    out: out.as_mut_ptr().wrapping_add(row * width),
                    ldc: width,
                    n: 0,
                    col: 0,
                };
                // SAFETY: rows `row..row + R` (or `H`, or 1) lie within `rows`.
                row += unsafe {
                    match rows - row {
                        left if left >= R => strips::<V, R, N>(at, epilogue),
                        left if left >= H => strips::<V, H, N>(at, epilogue),
                        _ => strips::<V, 1, S>(at, epilogue),
                    }
                };
            }
        }
    }
}

/// Where a tile reads and writes: `len` features of rows of `x` (`ldx` apart), as many
/// rows of the weight (`ldc` apart) from column `col` (`w` already points there), `n`
/// output columns of `out` (`ldc` apart).
#[derive(Clone, Copy)]
struct Tile {
    x: *const f32,
    ldx: usize,
    w: *const f32,
    len: usize,
    out: *mut f32,
    ldc: usize,
    n: usize,
    col: usize,
}

/// `R` rows of `at` (its `n` and `col` unset), all columns in strips of `N` vectors: whole
/// strips with plain loads, the last one masked (and as narrow as its columns need, up to
/// two vectors). `accumulate` adds to what `out` holds, `fused` activates the result.
/// Returns `R`.
///
/// # Safety
/// The CPU must run `V`; `x` must hold `R` rows `ldx` apart of `len` features, `w` `len`
/// rows of `ldc` floats, `out` `R` rows of `ldc` floats, and `fused` `ldc` values.
#[inline(always)]
unsafe fn strips<V: Vector, const R: usize, const N: usize>(
    at: Tile,
    (accumulate, fused): (bool, Option<&LaneActivation>),
) -> usize {
    let mut col = 0;
    while col < at.ldc {
        let n = (at.ldc - col).min(N * V::LANES);
        let strip = Tile {
            w: at.w.wrapping_add(col),
            out: at.out.wrapping_add(col),
            n,
            col,
            ..at
        };
        // SAFETY: forwarded from the caller; the strip's columns lie within `ldc`.
        unsafe {
            if n == N * V::LANES {
                tile::<V, R, N, false>(&strip, accumulate, fused);
            } else if n <= V::LANES {
                tile::<V, R, 1, true>(&strip, accumulate, fused);
            } else if n <= 2 * V::LANES {
                tile::<V, R, 2, true>(&strip, accumulate, fused);
            } else {
                tile::<V, R, N, true>(&strip, accumulate, fused);
            }
        }
        col += n;
    }
    R
}

/// One `R x (N * LANES)` tile (`n` columns valid, all of them unless `MASKED`),
/// accumulated in registers over the block of features.
///
/// # Safety
/// As [`strips`], for the tile's `n` columns.
#[inline(always)]
unsafe fn tile<V: Vector, const R: usize, const N: usize, const MASKED: bool>(
    at: &Tile,
    accumulate: bool,
    fused: Option<&LaneActivation>,
) {
    // SAFETY (every vector operation): the CPU runs `V` (caller); masked lanes are neither
    // read nor written, the others lie within the rows the caller vouches for.
    unsafe {
        let mut masks = [V::first(V::LANES); N];
        if MASKED {
            for (v, mask) in masks.iter_mut().enumerate() {
                *mask = V::first(at.n.saturating_sub(v * V::LANES));
            }
        }
        let mut acc = [[V::zero(); N]; R];
        if accumulate {
            for (r, acc) in acc.iter_mut().enumerate() {
                for (v, acc) in acc.iter_mut().enumerate() {
                    *acc =
                        load::<V, MASKED>(at.out.wrapping_add(r * at.ldc + v * V::LANES), masks[v]);
                }
            }
        }
        for f in 0..at.len {
            let row = at.w.wrapping_add(f * at.ldc);
            let mut w = [V::zero(); N];
            for (v, w) in w.iter_mut().enumerate() {
                *w = load::<V, MASKED>(row.wrapping_add(v * V::LANES), masks[v]);
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let value = V::splat(*at.x.add(r * at.ldx + f));
                for v in 0..N {
                    acc[v] = value.mul_add(w[v], acc[v]);
                }
            }
        }
        // NOTE: the sums are stored as they are, then activated in place: with the
        // activation in the same loop, its body was too large for the compiler to unroll,
        // and to index the accumulators it kept them in memory, storing every one on every
        // step of the loop above (AVX-512 8 x 3: a third slower).
        for (r, acc) in acc.iter().enumerate() {
            for (v, &y) in acc.iter().enumerate() {
                let p = at.out.wrapping_add(r * at.ldc + v * V::LANES);
                if MASKED {
                    y.store_masked(p, masks[v]);
                } else {
                    y.store(p);
                }
            }
        }
        if let Some(fused) = fused {
            for r in 0..R {
                for (v, &mask) in masks.iter().enumerate() {
                    let lanes = at.col + v * V::LANES;
                    let p = at.out.wrapping_add(r * at.ldc + v * V::LANES);
                    let mut y = load::<V, MASKED>(p, mask);
                    if let Some(bias) = &fused.bias {
                        y = y.add(load::<V, MASKED>(bias.as_ptr().wrapping_add(lanes), mask));
                    }
                    if fused.relu {
                        y = y.relu();
                    }
                    if let Some(scale) = &fused.scale {
                        y = y.mul(load::<V, MASKED>(scale.as_ptr().wrapping_add(lanes), mask));
                    }
                    if MASKED {
                        y.store_masked(p, mask);
                    } else {
                        y.store(p);
                    }
                }
            }
        }
    }
}

/// A vector from `p`: the lanes of `mask` if `MASKED` (zero elsewhere), else all.
///
/// # Safety
/// The CPU must run `V`, and the lanes read lie in memory the caller may read.
#[inline(always)]
unsafe fn load<V: Vector, const MASKED: bool>(p: *const f32, mask: V::Mask) -> V {
    // SAFETY: as the caller vouches.
    unsafe {
        if MASKED {
            V::load_masked(p, mask)
        } else {
            V::load(p)
        }
    }
}
