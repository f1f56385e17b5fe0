//! The AVX-512 kernel of [`PackedLinear`](super::PackedLinear), and the per-feature
//! activation it fuses.

use std::ops::Range;

use crate::skip::Epilogue;

/// Rows of the batch computed together: with 3 vectors (48) of output features that is 24
/// accumulators, of the 32 vector registers.
pub(super) const ROWS: usize = 8;
/// Lanes of one vector.
const LANES: usize = 16;
/// Input features per block: a block of the transposed weight (128 KiB for 128 outputs)
/// stays in L2 while every row of a thread's share reads it.
const FEATURE_BLOCK: usize = 256;

/// Whether this CPU runs the kernel.
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
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
        let (scale, relu) = match epilogue {
            Epilogue::Identity => (None, false),
            Epilogue::Relu => (None, true),
            Epilogue::RotatedRelu(slope) => (Some(gather(slope)), true),
        };
        Self {
            bias: bias.map(gather),
            scale,
            relu,
        }
    }

    /// Applies the activation to one row of active outputs, in place.
    pub(super) fn apply(&self, row: &mut [f32]) {
        for (i, y) in row.iter_mut().enumerate() {
            let mut value = *y + self.bias.as_ref().map_or(0.0, |b| b[i]);
            if self.relu {
                value = if value <= 0.0 { 0.0 } else { value };
            }
            if let Some(scale) = &self.scale {
                value *= scale[i];
            }
            *y = value;
        }
    }
}

/// The packed weight and how its rows map to input features.
pub(super) struct Layer<'a> {
    /// `[packed rows, width]`.
    pub(super) weight_t: &'a [f32],
    /// Packed row `k` is the `k`-th feature of these runs.
    pub(super) runs: &'a [Range<usize>],
    pub(super) in_features: usize,
    /// Active outputs.
    pub(super) width: usize,
}

impl Layer<'_> {
    /// For every row `n` of `input` (`[rows, in_features]`): `out[n, i] = sum over packed
    /// rows k in `packed` of input[n, feature(k)] * W^T[k, i]`, then `activation` if given
    /// (a partial sum without).
    ///
    /// # Panics
    /// If the lengths do not match the layer, `packed` leaves the packed rows, or
    /// [`available`] is false.
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
        assert!(available(), "PackedLinear: the CPU lacks AVX-512");
        let blocks = self.blocks(packed);
        if blocks.is_empty() {
            out.fill(0.0);
            if let Some(activation) = activation {
                out.chunks_exact_mut(width)
                    .for_each(|row| activation.apply(row));
            }
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let fused = activation.map(|a| x86::Fused {
                bias: a.bias.as_deref().map(<[f32]>::as_ptr),
                scale: a.scale.as_deref().map(<[f32]>::as_ptr),
                relu: a.relu,
            });
            for (b, &(k, feature, len)) in blocks.iter().enumerate() {
                let last = b + 1 == blocks.len();
                for row in (0..rows).step_by(ROWS) {
                    let height = ROWS.min(rows - row);
                    // SAFETY: the CPU has AVX-512F; rows `row..row + height` of `input`
                    // hold `ins` features each, of which `feature..feature + len` (within a
                    // run, so within `ins`) are read; the packed weight holds rows
                    // `k..k + len` of `width` (asserted above); rows `row..row + height` of
                    // `out` hold `width` values each, as do the activation's lanes.
                    unsafe {
                        x86::rows(
                            (input.as_ptr().add(row * ins + feature), ins),
                            (self.weight_t.as_ptr().add(k * width), len),
                            (out.as_mut_ptr().add(row * width), width),
                            height,
                            (b > 0, if last { fused.as_ref() } else { None }),
                        );
                    }
                }
            }
        }
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::LANES;
    use std::arch::x86_64::{
        __m512, __mmask16, _mm512_add_ps, _mm512_fmadd_ps, _mm512_mask_storeu_ps,
        _mm512_maskz_loadu_ps, _mm512_max_ps, _mm512_mul_ps, _mm512_set1_ps, _mm512_setzero_ps,
    };

    /// The activation as raw pointers to one value per active output.
    pub(super) struct Fused {
        pub(super) bias: Option<*const f32>,
        pub(super) scale: Option<*const f32>,
        pub(super) relu: bool,
    }

    /// The mask of the first `lanes` (at most [`LANES`]) lanes.
    #[inline(always)]
    fn first(lanes: usize) -> __mmask16 {
        ((1_u32 << lanes.min(LANES)) - 1) as __mmask16
    }

    /// `height <= ROWS` rows, all `ldc` outputs, over `len` features: `x` points at the
    /// first of them in the first row, `weight_t` at their first packed row. `accumulate`
    /// adds to what `out` holds, `fused` activates the result. Rows go through the tallest
    /// tile that fits (8, 4, then 1; a single row takes 128 columns a strip, to keep eight
    /// multiply-add chains in flight).
    ///
    /// # Safety
    /// The CPU must support AVX-512F; `x` must hold `height` rows `ldx` apart of `len`
    /// floats, `weight_t` `len` rows of `ldc` floats, `out` `height` rows of `ldc` floats,
    /// and `fused`'s pointers `ldc` floats.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn rows(
        (x, ldx): (*const f32, usize),
        (weight_t, len): (*const f32, usize),
        (out, ldc): (*mut f32, usize),
        height: usize,
        (accumulate, fused): (bool, Option<&Fused>),
    ) {
        let mut row = 0;
        while row < height {
            let at = Tile {
                x: x.wrapping_add(row * ldx),
                ldx,
                w: weight_t,
                len,
                out: out.wrapping_add(row * ldc),
                ldc,
                n: 0,
                col: 0,
            };
            // SAFETY: forwarded from the caller, for rows `row..row + R <= height`.
            unsafe {
                row += match height - row {
                    8.. => strips::<8, 3>(at, accumulate, fused),
                    4.. => strips::<4, 3>(at, accumulate, fused),
                    _ => strips::<1, 8>(at, accumulate, fused),
                };
            }
        }
    }

    /// `R` rows of `at` (its `n` and `col` unset), all columns in strips of up to
    /// `V * LANES`; returns `R`.
    ///
    /// # Safety
    /// As [`rows`], for `R` rows.
    #[target_feature(enable = "avx512f")]
    unsafe fn strips<const R: usize, const V: usize>(
        at: Tile,
        accumulate: bool,
        fused: Option<&Fused>,
    ) -> usize {
        let mut col = 0;
        while col < at.ldc {
            let n = (at.ldc - col).min(V * LANES);
            let strip = Tile {
                w: at.w.wrapping_add(col),
                out: at.out.wrapping_add(col),
                n,
                col,
                ..at
            };
            // SAFETY: forwarded from the caller; the strip's columns lie within `ldc`.
            unsafe { tile::<R, V>(&strip, accumulate, fused) };
            col += n;
        }
        R
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

    /// One `R x (V * LANES)` tile (`n` columns valid), accumulated in registers over the
    /// block of features.
    ///
    /// # Safety
    /// As [`rows`].
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const R: usize, const V: usize>(
        at: &Tile,
        accumulate: bool,
        fused: Option<&Fused>,
    ) {
        let masks: [__mmask16; V] = std::array::from_fn(|v| first(at.n.saturating_sub(v * LANES)));
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        if accumulate {
            for (r, acc) in acc.iter_mut().enumerate() {
                for v in 0..V {
                    // SAFETY: masked lanes are not read; the others are in `out` (caller).
                    acc[v] = unsafe {
                        _mm512_maskz_loadu_ps(masks[v], at.out.wrapping_add(r * at.ldc + v * LANES))
                    };
                }
            }
        }
        for f in 0..at.len {
            let row = at.w.wrapping_add(f * at.ldc);
            // SAFETY: as above, in the weight.
            let w: [__m512; V] = std::array::from_fn(|v| unsafe {
                _mm512_maskz_loadu_ps(masks[v], row.wrapping_add(v * LANES))
            });
            for (r, acc) in acc.iter_mut().enumerate() {
                // SAFETY: feature `f` of row `r` lies within `x` (caller).
                let value = _mm512_set1_ps(unsafe { *at.x.add(r * at.ldx + f) });
                for v in 0..V {
                    acc[v] = _mm512_fmadd_ps(value, w[v], acc[v]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for v in 0..V {
                let mut y = acc[v];
                if let Some(fused) = fused {
                    let lanes = at.col + v * LANES;
                    // SAFETY: masked lanes are not read; the others lie within the `ldc`
                    // values of bias and scale (caller).
                    unsafe {
                        if let Some(bias) = fused.bias {
                            y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(masks[v], bias.add(lanes)));
                        }
                        if fused.relu {
                            // NOTE: `max(0, y)` returns `y` when it is NaN, as the scalar
                            // ReLU does.
                            y = _mm512_max_ps(_mm512_setzero_ps(), y);
                        }
                        if let Some(scale) = fused.scale {
                            y = _mm512_mul_ps(y, _mm512_maskz_loadu_ps(masks[v], scale.add(lanes)));
                        }
                    }
                }
                // SAFETY: masked lanes are not written; the others are in `out` (caller).
                unsafe {
                    _mm512_mask_storeu_ps(at.out.wrapping_add(r * at.ldc + v * LANES), masks[v], y);
                }
            }
        }
    }
}
