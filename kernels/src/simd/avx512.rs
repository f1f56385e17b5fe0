//! The vector interface on AVX-512F: `__m512`, masks as `__mmask16`.

use std::arch::x86_64::{
    __m512, __mmask16, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_storeu_ps,
    _mm512_maskz_loadu_ps, _mm512_max_ps, _mm512_mul_ps, _mm512_permutex2var_ps,
    _mm512_reduce_add_ps, _mm512_set1_ps, _mm512_setr_epi32, _mm512_setzero_ps, _mm512_storeu_ps,
};

use super::vector::{Kernel, Vector};

/// Sixteen floats in a `zmm` register.
#[derive(Clone, Copy)]
pub(crate) struct F32x16(__m512);

/// Runs `kernel` compiled for AVX-512F.
///
/// # Safety
/// The CPU must have AVX-512F, AVX2 and FMA; the rest as the kernel documents.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn run<K: Kernel>(kernel: K) -> K::Output {
    // SAFETY: compiled with the set's features, which the caller guarantees.
    unsafe { kernel.run::<F32x16>() }
}

// SAFETY (every method): the intrinsics need AVX-512F, which the trait's contract
// guarantees; pointer methods touch the lanes the caller vouches for.
#[allow(unsafe_op_in_unsafe_fn)]
impl Vector for F32x16 {
    const LANES: usize = 16;
    type Mask = __mmask16;

    #[inline(always)]
    unsafe fn first(n: usize) -> __mmask16 {
        ((1_u32 << n.min(16)) - 1) as __mmask16
    }
    #[inline(always)]
    unsafe fn zero() -> Self {
        Self(_mm512_setzero_ps())
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        Self(_mm512_set1_ps(x))
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Self(unsafe { _mm512_loadu_ps(p) })
    }
    #[inline(always)]
    unsafe fn load_masked(p: *const f32, mask: __mmask16) -> Self {
        Self(unsafe { _mm512_maskz_loadu_ps(mask, p) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { _mm512_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn store_masked(self, p: *mut f32, mask: __mmask16) {
        unsafe { _mm512_mask_storeu_ps(p, mask, self.0) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        Self(_mm512_fmadd_ps(self.0, b.0, c.0))
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        Self(_mm512_add_ps(self.0, b.0))
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        Self(_mm512_mul_ps(self.0, b.0))
    }
    #[inline(always)]
    unsafe fn relu(self) -> Self {
        // `max(a, b)` returns `b` when either is NaN.
        Self(_mm512_max_ps(_mm512_setzero_ps(), self.0))
    }
    #[inline(always)]
    unsafe fn max(self, b: Self) -> Self {
        // `max(a, b)` is `if a > b { a } else { b }`, NaN included.
        Self(_mm512_max_ps(self.0, b.0))
    }
    #[inline(always)]
    unsafe fn pair_max(lo: Self, hi: Self) -> Self {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        Self(_mm512_max_ps(
            _mm512_permutex2var_ps(lo.0, even, hi.0),
            _mm512_permutex2var_ps(lo.0, odd, hi.0),
        ))
    }
    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        _mm512_reduce_add_ps(self.0)
    }
    #[inline(always)]
    unsafe fn transpose(rows: &[*const f32], target: *mut f32, stride: usize) {
        // By 8x8 quarters on AVX2 (which the set includes): the top right quarter of the
        // rows is the bottom left of the target, and so on.
        for (first_row, first_column) in [(0, 0), (0, 8), (8, 0), (8, 8)] {
            let at = target.add(first_column * stride + first_row);
            super::avx2::transpose_8x8(&rows[first_row..16], first_column, at, stride);
        }
    }
}
