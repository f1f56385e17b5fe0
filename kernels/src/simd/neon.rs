//! The vector interface on AArch64's NEON: `float32x4_t`. NEON has no masked loads or
//! stores: partial vectors go through a small array.

use std::arch::aarch64::{
    float32x4_t, vaddq_f32, vaddvq_f32, vbslq_f32, vcgtq_f32, vcleq_f32, vdupq_n_f32, vfmaq_f32,
    vld1q_f32, vmulq_f32, vreinterpretq_f32_f64, vreinterpretq_f64_f32, vst1q_f32, vtrn1q_f32,
    vtrn1q_f64, vtrn2q_f32, vtrn2q_f64, vuzp1q_f32, vuzp2q_f32,
};

use super::vector::{Kernel, Vector};

/// Four floats in a `v` register.
#[derive(Clone, Copy)]
pub(crate) struct F32x4(float32x4_t);

/// Runs `kernel` compiled for NEON.
///
/// # Safety
/// The CPU must have NEON; the rest as the kernel documents.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn run<K: Kernel>(kernel: K) -> K::Output {
    // SAFETY: compiled with the set's features, which the caller guarantees.
    unsafe { kernel.run::<F32x4>() }
}

// SAFETY (every method): the intrinsics need NEON, which the trait's contract guarantees;
// pointer methods touch the lanes the caller vouches for.
#[allow(unsafe_op_in_unsafe_fn)]
impl Vector for F32x4 {
    const LANES: usize = 4;
    type Mask = usize;

    #[inline(always)]
    unsafe fn first(n: usize) -> usize {
        n.min(4)
    }
    #[inline(always)]
    unsafe fn zero() -> Self {
        Self(vdupq_n_f32(0.0))
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        Self(vdupq_n_f32(x))
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Self(unsafe { vld1q_f32(p) })
    }
    #[inline(always)]
    unsafe fn load_masked(p: *const f32, n: usize) -> Self {
        if n == 4 {
            return unsafe { Self::load(p) };
        }
        let mut lanes = [0.0_f32; 4];
        unsafe {
            std::ptr::copy_nonoverlapping(p, lanes.as_mut_ptr(), n);
            Self(vld1q_f32(lanes.as_ptr()))
        }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { vst1q_f32(p, self.0) }
    }
    #[inline(always)]
    unsafe fn store_masked(self, p: *mut f32, n: usize) {
        if n == 4 {
            return unsafe { self.store(p) };
        }
        let mut lanes = [0.0_f32; 4];
        unsafe {
            vst1q_f32(lanes.as_mut_ptr(), self.0);
            std::ptr::copy_nonoverlapping(lanes.as_ptr(), p, n);
        }
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        Self(vfmaq_f32(c.0, self.0, b.0))
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        Self(vaddq_f32(self.0, b.0))
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        Self(vmulq_f32(self.0, b.0))
    }
    #[inline(always)]
    unsafe fn relu(self) -> Self {
        // A select, not `vmaxq_f32`, so that NaN stays NaN as in the scalar rule.
        let zero = vdupq_n_f32(0.0);
        Self(vbslq_f32(vcleq_f32(self.0, zero), zero, self.0))
    }
    #[inline(always)]
    unsafe fn max(self, b: Self) -> Self {
        Self(vbslq_f32(vcgtq_f32(self.0, b.0), self.0, b.0))
    }
    #[inline(always)]
    unsafe fn pair_max(lo: Self, hi: Self) -> Self {
        unsafe { Self(vuzp1q_f32(lo.0, hi.0)).max(Self(vuzp2q_f32(lo.0, hi.0))) }
    }
    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        vaddvq_f32(self.0)
    }
    #[inline(always)]
    unsafe fn transpose(rows: &[*const f32], target: *mut f32, stride: usize) {
        let r: [float32x4_t; 4] = std::array::from_fn(|i| vld1q_f32(rows[i]));
        // Pairs of rows interleaved (a0 b0 a2 b2, a1 b1 a3 b3, ...), then 64-bit halves.
        let (ab_even, ab_odd) = (vtrn1q_f32(r[0], r[1]), vtrn2q_f32(r[0], r[1]));
        let (cd_even, cd_odd) = (vtrn1q_f32(r[2], r[3]), vtrn2q_f32(r[2], r[3]));
        let halves = |a: float32x4_t, b: float32x4_t, high: bool| {
            let (a, b) = (vreinterpretq_f64_f32(a), vreinterpretq_f64_f32(b));
            vreinterpretq_f32_f64(if high {
                vtrn2q_f64(a, b)
            } else {
                vtrn1q_f64(a, b)
            })
        };
        let columns = [
            halves(ab_even, cd_even, false),
            halves(ab_odd, cd_odd, false),
            halves(ab_even, cd_even, true),
            halves(ab_odd, cd_odd, true),
        ];
        for (j, column) in columns.into_iter().enumerate() {
            vst1q_f32(target.add(j * stride), column);
        }
    }
}
