//! The AVX-512 micro-kernel of the implicit convolution, and the 2x2 max pooling of its
//! results.

use std::ops::Range;

/// Filters computed together: with [`VECTORS`] vectors of positions that is 24
/// accumulators, of the 32 vector registers.
pub(super) const ROWS: usize = 8;
/// Lanes of one vector.
const LANES: usize = 16;
/// Vectors of positions per strip (48 positions).
const VECTORS: usize = 3;

/// Whether this CPU runs the micro-kernel.
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

/// The activation applied to each row of a block as it leaves the registers:
/// `y = scale[r] * max(0, x + bias[r])` with `relu`, `y = scale[r] * (x + bias[r])`
/// without.
pub(super) struct RowActivation {
    pub(super) bias: [f32; ROWS],
    pub(super) scale: [f32; ROWS],
    pub(super) relu: bool,
}

/// `product[r * ldc + (p - columns.start)] = activation_r(sum over k of panel[k * ROWS + r]
/// * image[offsets[k] + p])` for the [`ROWS`] rows and the positions `p` of `columns`; the
/// rest of `product` is left alone.
///
/// # Panics
/// If the panel does not hold `ROWS` weights per offset, a read would leave `image`, a
/// write would leave `product`, or [`available`] is false.
pub(super) fn block(
    panel: &[f32],
    image: &[f32],
    offsets: &[usize],
    columns: Range<usize>,
    activation: &RowActivation,
    product: &mut [f32],
    ldc: usize,
) {
    assert_eq!(
        panel.len(),
        offsets.len() * ROWS,
        "implicit conv: panel length"
    );
    if columns.is_empty() {
        return;
    }
    let reach = offsets.iter().max().map_or(0, |&o| o + columns.end);
    assert!(reach <= image.len(), "implicit conv: reads past the image");
    assert!(
        columns.len() <= ldc && (ROWS - 1) * ldc + columns.len() <= product.len(),
        "implicit conv: writes past the product"
    );
    assert!(available(), "implicit conv: the CPU lacks AVX-512");
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the CPU has AVX-512F; every load reads `image[offsets[k] + p]` for `p` in
        // `columns` (masked lanes are not read), within `image` by the assertion above, and
        // every store writes `product[r * ldc + p - columns.start]`, within `product`.
        unsafe {
            x86::strips(
                panel.as_ptr(),
                offsets,
                image.as_ptr(),
                columns,
                activation,
                product.as_mut_ptr(),
                ldc,
            );
        }
    }
}

/// 2x2 max pooling (stride 2, floor mode) of `rows`, rows `width` long one every
/// `row_stride` elements: each pair of rows gives one row of `width / 2` in `pooled`.
/// Maxima are taken as `if a > b { a } else { b }`.
///
/// # Panics
/// If `rows` holds fewer than two rows per pooled row, or [`available`] is false.
pub(super) fn max_pool_rows(rows: &[f32], row_stride: usize, width: usize, pooled: &mut [f32]) {
    let half = width / 2;
    if half == 0 {
        return;
    }
    assert!(available(), "implicit conv: the CPU lacks AVX-512");
    #[cfg(target_arch = "x86_64")]
    for (pair, out) in pooled.chunks_exact_mut(half).enumerate() {
        let top = &rows[2 * pair * row_stride..][..width];
        let bottom = &rows[(2 * pair + 1) * row_stride..][..width];
        // SAFETY: the CPU has AVX-512F; the rows and `out` are slices of the lengths the
        // function reads and writes.
        unsafe { x86::pool_pair(top, bottom, out) };
    }
}

/// Copies the first `width` elements of each row of `rows` (one every `row_stride`
/// elements) one after another into `out`, which holds `width` per row.
///
/// NOTE: rows are short (26 floats in MnistNet's first layer): a `copy_from_slice` per
/// row called the C library's `memmove`, whose call and size dispatch showed as 5-7% of a
/// pruned MnistNet's inference in profiles; two masked vector moves do it in line.
///
/// # Panics
/// If `rows` holds fewer rows than `out`, or [`available`] is false.
pub(super) fn copy_rows(rows: &[f32], row_stride: usize, width: usize, out: &mut [f32]) {
    if width == 0 {
        return;
    }
    assert!(available(), "implicit conv: the CPU lacks AVX-512");
    #[cfg(target_arch = "x86_64")]
    for (i, dst) in out.chunks_exact_mut(width).enumerate() {
        let src = &rows[i * row_stride..][..width];
        // SAFETY: the CPU has AVX-512F; `src` and `dst` are `width` long.
        unsafe { x86::copy(src, dst) };
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m512, __mmask16, _mm512_add_ps, _mm512_fmadd_ps, _mm512_mask_storeu_ps,
        _mm512_maskz_loadu_ps, _mm512_max_ps, _mm512_mul_ps, _mm512_permutex2var_ps,
        _mm512_set1_ps, _mm512_setr_epi32, _mm512_setzero_ps,
    };
    use std::ops::Range;

    use super::{LANES, ROWS, RowActivation, VECTORS};

    /// The mask of the first `lanes` (at most [`LANES`]) lanes.
    #[inline(always)]
    fn first(lanes: usize) -> __mmask16 {
        ((1_u32 << lanes.min(LANES)) - 1) as __mmask16
    }

    /// Cuts `columns` into strips of up to `VECTORS * LANES` positions, each computed by
    /// the narrowest kernel that covers it.
    ///
    /// # Safety
    /// As [`super::block`] checks.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn strips(
        panel: *const f32,
        offsets: &[usize],
        image: *const f32,
        columns: Range<usize>,
        activation: &RowActivation,
        product: *mut f32,
        ldc: usize,
    ) {
        let mut p = columns.start;
        while p < columns.end {
            let n = (columns.end - p).min(VECTORS * LANES);
            // NOTE: wrapping arithmetic: the pointers are only dereferenced through the
            // masked loads and stores, which touch the first `n` lanes.
            let source = image.wrapping_add(p);
            let target = product.wrapping_add(p - columns.start);
            let at = (panel, offsets, source);
            // SAFETY: forwarded from the caller.
            unsafe {
                match n.div_ceil(LANES) {
                    3 => strip::<3>(at, activation, target, ldc, n),
                    2 => strip::<2>(at, activation, target, ldc, n),
                    _ => strip::<1>(at, activation, target, ldc, n),
                }
            }
            p += n;
        }
    }

    /// One strip of `n <= V * LANES` positions for the [`ROWS`] rows, accumulated in
    /// registers over all offsets, activated and stored once.
    ///
    /// # Safety
    /// `source + offsets[k]` must be readable for `n` floats for every `k`, and
    /// `target + r * ldc` writable for `n` floats for every row `r`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn strip<const V: usize>(
        (panel, offsets, source): (*const f32, &[usize], *const f32),
        activation: &RowActivation,
        target: *mut f32,
        ldc: usize,
        n: usize,
    ) {
        let masks: [__mmask16; V] = std::array::from_fn(|v| first(n.saturating_sub(v * LANES)));
        let mut acc = [[_mm512_setzero_ps(); V]; ROWS];
        for (k, &offset) in offsets.iter().enumerate() {
            let row = source.wrapping_add(offset);
            // SAFETY: masked lanes are not read; the others are in bounds (caller).
            let x: [__m512; V] = std::array::from_fn(|v| unsafe {
                _mm512_maskz_loadu_ps(masks[v], row.wrapping_add(v * LANES))
            });
            for (r, acc) in acc.iter_mut().enumerate() {
                // SAFETY: the panel holds `ROWS` weights per offset (checked by `block`).
                let w = _mm512_set1_ps(unsafe { *panel.add(k * ROWS + r) });
                for v in 0..V {
                    acc[v] = _mm512_fmadd_ps(w, x[v], acc[v]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let bias = _mm512_set1_ps(activation.bias[r]);
            let scale = _mm512_set1_ps(activation.scale[r]);
            for v in 0..V {
                let mut y = _mm512_add_ps(acc[v], bias);
                if activation.relu {
                    // NOTE: `max(0, y)` returns `y` when it is NaN, as the scalar ReLU does.
                    y = _mm512_max_ps(_mm512_setzero_ps(), y);
                }
                y = _mm512_mul_ps(y, scale);
                // SAFETY: masked lanes are not written; the others are in bounds (caller).
                unsafe {
                    _mm512_mask_storeu_ps(target.wrapping_add(r * ldc + v * LANES), masks[v], y);
                }
            }
        }
    }

    /// `dst.copy_from_slice(src)` in masked vector moves.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; the slices must have the same length.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn copy(src: &[f32], dst: &mut [f32]) {
        let mut j = 0;
        while j < dst.len() {
            let mask = first((dst.len() - j).min(LANES));
            // SAFETY: masked lanes are not read or written; the others lie within both
            // slices.
            unsafe {
                let v = _mm512_maskz_loadu_ps(mask, src.as_ptr().add(j));
                _mm512_mask_storeu_ps(dst.as_mut_ptr().add(j), mask, v);
            }
            j += LANES;
        }
    }

    /// `out[j] = max of top[2j], top[2j + 1], bottom[2j], bottom[2j + 1]`.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; `top` and `bottom` must hold `2 * out.len()` floats.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn pool_pair(top: &[f32], bottom: &[f32], out: &mut [f32]) {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let mut j = 0;
        while j < out.len() {
            let lanes = (out.len() - j).min(LANES);
            let (low, high) = (first(2 * lanes), first((2 * lanes).saturating_sub(LANES)));
            // SAFETY: masked lanes are not read or written; the others lie within the
            // slices (`2 * j + 2 * lanes <= top.len()`, `j + lanes <= out.len()`).
            unsafe {
                let (t, b) = (top.as_ptr().add(2 * j), bottom.as_ptr().add(2 * j));
                let lo =
                    _mm512_max_ps(_mm512_maskz_loadu_ps(low, t), _mm512_maskz_loadu_ps(low, b));
                let hi = _mm512_max_ps(
                    _mm512_maskz_loadu_ps(high, t.wrapping_add(LANES)),
                    _mm512_maskz_loadu_ps(high, b.wrapping_add(LANES)),
                );
                let pairs = _mm512_max_ps(
                    _mm512_permutex2var_ps(lo, even, hi),
                    _mm512_permutex2var_ps(lo, odd, hi),
                );
                _mm512_mask_storeu_ps(out.as_mut_ptr().add(j), first(lanes), pairs);
            }
            j += lanes;
        }
    }
}
