//! The vector interface on AVX2 with FMA: `__m256`, masks as lane vectors for
//! `vmaskmovps`.

use std::arch::x86_64::{
    __m256, __m256i, _mm_add_ps, _mm_add_ss, _mm_cvtss_f32, _mm_movehl_ps, _mm_shuffle_ps,
    _mm256_add_ps, _mm256_castpd_ps, _mm256_castps_pd, _mm256_castps256_ps128,
    _mm256_extractf128_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_loadu_si256,
    _mm256_maskload_ps, _mm256_maskstore_ps, _mm256_max_ps, _mm256_mul_ps, _mm256_permute2f128_ps,
    _mm256_permute4x64_pd, _mm256_set1_ps, _mm256_setzero_ps, _mm256_shuffle_ps, _mm256_storeu_ps,
    _mm256_unpackhi_ps, _mm256_unpacklo_ps,
};

use super::vector::{Kernel, Vector};

/// Eight floats in a `ymm` register.
#[derive(Clone, Copy)]
pub(crate) struct F32x8(__m256);

/// Eight lanes of all ones then eight of zeros: the mask of the first `n` lanes is the
/// eight words from `8 - n`.
static MASKS: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];

/// Runs `kernel` compiled for AVX2 and FMA.
///
/// # Safety
/// The CPU must have AVX2 and FMA; the rest as the kernel documents.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn run<K: Kernel>(kernel: K) -> K::Output {
    // SAFETY: compiled with the set's features, which the caller guarantees.
    unsafe { kernel.run::<F32x8>() }
}

// SAFETY (every method): the intrinsics need AVX2 and FMA, which the trait's contract
// guarantees; pointer methods touch the lanes the caller vouches for.
#[allow(unsafe_op_in_unsafe_fn)]
impl Vector for F32x8 {
    const LANES: usize = 8;
    type Mask = __m256i;

    #[inline(always)]
    unsafe fn first(n: usize) -> __m256i {
        // SAFETY: `8 - min(n, 8)` plus eight words stay within the 16 of MASKS.
        unsafe { _mm256_loadu_si256(MASKS.as_ptr().add(8 - n.min(8)).cast()) }
    }
    #[inline(always)]
    unsafe fn zero() -> Self {
        Self(_mm256_setzero_ps())
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        Self(_mm256_set1_ps(x))
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Self(unsafe { _mm256_loadu_ps(p) })
    }
    #[inline(always)]
    unsafe fn load_masked(p: *const f32, mask: __m256i) -> Self {
        Self(unsafe { _mm256_maskload_ps(p, mask) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { _mm256_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn store_masked(self, p: *mut f32, mask: __m256i) {
        unsafe { _mm256_maskstore_ps(p, mask, self.0) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        Self(_mm256_fmadd_ps(self.0, b.0, c.0))
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        Self(_mm256_add_ps(self.0, b.0))
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        Self(_mm256_mul_ps(self.0, b.0))
    }
    #[inline(always)]
    unsafe fn relu(self) -> Self {
        // `max(a, b)` returns `b` when either is NaN.
        Self(_mm256_max_ps(_mm256_setzero_ps(), self.0))
    }
    #[inline(always)]
    unsafe fn max(self, b: Self) -> Self {
        // `max(a, b)` is `if a > b { a } else { b }`, NaN included.
        Self(_mm256_max_ps(self.0, b.0))
    }
    #[inline(always)]
    unsafe fn pair_max(lo: Self, hi: Self) -> Self {
        // Within each 128-bit half: lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6 (and the odd ones),
        // so the pairs come out as 0 1 4 5 | 2 3 6 7 and 64-bit swaps put them in order.
        let even = _mm256_shuffle_ps::<0b10_00_10_00>(lo.0, hi.0);
        let odd = _mm256_shuffle_ps::<0b11_01_11_01>(lo.0, hi.0);
        let pairs = _mm256_castps_pd(_mm256_max_ps(even, odd));
        Self(_mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(
            pairs,
        )))
    }
    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        let quad = _mm_add_ps(
            _mm256_castps256_ps128(self.0),
            _mm256_extractf128_ps::<1>(self.0),
        );
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps::<0b01>(pair, pair)))
    }
    #[inline(always)]
    unsafe fn transpose(rows: &[*const f32], target: *mut f32, stride: usize) {
        transpose_8x8(&rows[..8], 0, target, stride);
    }
}

/// [`Vector::transpose`] of the 8x8 block at column `column` of `rows` (8 pointers): lane
/// `column + j` of row `i` to lane `i` of `target + j * stride`. Also AVX-512's, by
/// quarters.
///
/// # Safety
/// The CPU must have AVX; the rows must be readable and the targets writable for 8 floats.
#[inline(always)]
#[allow(unsafe_op_in_unsafe_fn)]
pub(super) unsafe fn transpose_8x8(
    rows: &[*const f32],
    column: usize,
    target: *mut f32,
    stride: usize,
) {
    let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(rows[i].add(column)));
    // Pairs of rows interleaved, then quadruples, within each 128-bit half: `quads[j]`
    // holds column `j` of rows 0-3 in its low half and column `j + 4` in its high half
    // (`quads[j + 4]` the same for rows 4-7); the halves are then swapped into place.
    let pairs: [__m256; 8] = std::array::from_fn(|k| {
        let (a, b) = (r[2 * (k / 2)], r[2 * (k / 2) + 1]);
        if k % 2 == 0 {
            _mm256_unpacklo_ps(a, b)
        } else {
            _mm256_unpackhi_ps(a, b)
        }
    });
    let quads: [__m256; 8] = std::array::from_fn(|k| {
        let (rows_at, column) = (4 * (k / 4), k % 4);
        let (a, b) = (pairs[rows_at + column / 2], pairs[rows_at + 2 + column / 2]);
        if column % 2 == 0 {
            _mm256_shuffle_ps::<0b01_00_01_00>(a, b)
        } else {
            _mm256_shuffle_ps::<0b11_10_11_10>(a, b)
        }
    });
    for j in 0..4 {
        let low = _mm256_permute2f128_ps::<0x20>(quads[j], quads[j + 4]);
        let high = _mm256_permute2f128_ps::<0x31>(quads[j], quads[j + 4]);
        _mm256_storeu_ps(target.add(j * stride), low);
        _mm256_storeu_ps(target.add((j + 4) * stride), high);
    }
}
