//! The vector interface in plain Rust: eight floats in an array, every operation a loop
//! over the lanes that the compiler vectorises for whatever target the crate is built for.

use super::vector::Vector;

/// Eight floats.
#[derive(Clone, Copy)]
pub(crate) struct F32x8([f32; 8]);

impl F32x8 {
    #[inline(always)]
    fn map(self, f: impl Fn(f32) -> f32) -> Self {
        Self(self.0.map(f))
    }

    #[inline(always)]
    fn zip(self, b: Self, f: impl Fn(f32, f32) -> f32) -> Self {
        Self(std::array::from_fn(|i| f(self.0[i], b.0[i])))
    }
}

// SAFETY (every method): plain Rust, which runs on every CPU; pointer methods touch the
// lanes the caller vouches for.
#[allow(unsafe_op_in_unsafe_fn)]
impl Vector for F32x8 {
    const LANES: usize = 8;
    type Mask = usize;

    #[inline(always)]
    unsafe fn first(n: usize) -> usize {
        n.min(8)
    }
    #[inline(always)]
    unsafe fn zero() -> Self {
        Self([0.0; 8])
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        Self([x; 8])
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Self(unsafe { p.cast::<[f32; 8]>().read_unaligned() })
    }
    #[inline(always)]
    unsafe fn load_masked(p: *const f32, n: usize) -> Self {
        if n == 8 {
            return unsafe { Self::load(p) };
        }
        let mut lanes = [0.0; 8];
        unsafe { std::ptr::copy_nonoverlapping(p, lanes.as_mut_ptr(), n) };
        Self(lanes)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { p.cast::<[f32; 8]>().write_unaligned(self.0) }
    }
    #[inline(always)]
    unsafe fn store_masked(self, p: *mut f32, n: usize) {
        unsafe { std::ptr::copy_nonoverlapping(self.0.as_ptr(), p, n) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        // Not `f32::mul_add`: without FMA in the target that is a library call per lane.
        Self(std::array::from_fn(|i| self.0[i] * b.0[i] + c.0[i]))
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        self.zip(b, |a, b| a + b)
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        self.zip(b, |a, b| a * b)
    }
    #[inline(always)]
    unsafe fn relu(self) -> Self {
        self.map(|x| if x <= 0.0 { 0.0 } else { x })
    }
    #[inline(always)]
    unsafe fn max(self, b: Self) -> Self {
        self.zip(b, |a, b| if a > b { a } else { b })
    }
    #[inline(always)]
    unsafe fn pair_max(lo: Self, hi: Self) -> Self {
        let both = |i: usize| if i < 8 { lo.0[i] } else { hi.0[i - 8] };
        Self(std::array::from_fn(|j| {
            let (a, b) = (both(2 * j), both(2 * j + 1));
            if a > b { a } else { b }
        }))
    }
    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        // Pairwise, as the vector sets reduce.
        let quad: [f32; 4] = std::array::from_fn(|i| self.0[i] + self.0[i + 4]);
        (quad[0] + quad[2]) + (quad[1] + quad[3])
    }
    #[inline(always)]
    unsafe fn transpose(rows: &[*const f32], target: *mut f32, stride: usize) {
        for (i, &row) in rows[..8].iter().enumerate() {
            for j in 0..8 {
                *target.add(j * stride + i) = *row.add(j);
            }
        }
    }
}
