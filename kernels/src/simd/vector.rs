//! The vector interface every micro-kernel is written against, once, and how a kernel is
//! run on the chosen instruction set.
//!
//! A micro-kernel is a [`Kernel`]: a value whose `run::<V>` does the work with the
//! vector type `V`. [`dispatch`] calls it through a function compiled with the features of
//! the set (`#[target_feature]`), into which `run` and the vector methods, all
//! `#[inline(always)]`, are inlined: the generic code becomes the set's own machine code.

use super::Isa;

/// A register of [`LANES`](Self::LANES) floats and the operations the micro-kernels use.
///
/// # Safety
/// Every method may use the instructions of the set the type belongs to: it must only run
/// inside a function compiled with the set's features on a CPU that has them (what
/// [`dispatch`] ensures). The pointer methods read or write the lanes they name and no others.
pub(crate) trait Vector: Copy {
    /// Floats per register.
    const LANES: usize;
    /// Which lanes a masked load or store touches (the first `n`).
    type Mask: Copy;

    /// The mask of the first `n` lanes (`n` at most [`LANES`](Self::LANES)).
    unsafe fn first(n: usize) -> Self::Mask;
    /// Every lane zero.
    unsafe fn zero() -> Self;
    /// Every lane `x`.
    unsafe fn splat(x: f32) -> Self;
    /// [`LANES`](Self::LANES) floats from `p` (no alignment needed).
    unsafe fn load(p: *const f32) -> Self;
    /// The lanes of `mask` from `p`, zero elsewhere; the other lanes' memory is not read.
    unsafe fn load_masked(p: *const f32, mask: Self::Mask) -> Self;
    /// Stores every lane at `p`.
    unsafe fn store(self, p: *mut f32);
    /// Stores the lanes of `mask` at `p`; the other lanes' memory is not written.
    unsafe fn store_masked(self, p: *mut f32, mask: Self::Mask);
    /// `self * b + c`, fused where the set has it.
    unsafe fn mul_add(self, b: Self, c: Self) -> Self;
    /// `self + b`.
    unsafe fn add(self, b: Self) -> Self;
    /// `self * b`.
    unsafe fn mul(self, b: Self) -> Self;
    /// `max(0, self)`, a NaN lane staying NaN (as the scalar ReLU `if x <= 0 { 0 } else { x }`).
    unsafe fn relu(self) -> Self;
    /// `if self > b { self } else { b }` lane by lane.
    unsafe fn max(self, b: Self) -> Self;
    /// Lane `j` is the larger of elements `2j` and `2j + 1` of `lo` followed by `hi`
    /// (`if a > b { a } else { b }`): horizontal pairs, as 2x2 pooling takes them.
    unsafe fn pair_max(lo: Self, hi: Self) -> Self;
    /// The sum of the lanes.
    unsafe fn sum(self) -> f32;
    /// Transposes a square block: lane `j` of row `i` (the [`LANES`](Self::LANES) floats
    /// at `rows[i]`, for `i < LANES`) goes to lane `i` of the row at `target + j * stride`.
    unsafe fn transpose(rows: &[*const f32], target: *mut f32, stride: usize);
}

/// A computation written once for any vector type.
pub(crate) trait Kernel {
    /// What it returns.
    type Output;
    /// Does the work with vectors `V`. Implementations are `#[inline(always)]`, so that
    /// [`dispatch`] compiles them with the set's features.
    ///
    /// # Safety
    /// The CPU must have `V`'s instruction set, and the caller's function must be compiled with its
    /// features; beyond that, as the implementation documents.
    unsafe fn run<V: Vector>(self) -> Self::Output;
}

/// Runs `kernel` with the vectors of `isa`.
///
/// # Safety
/// As the kernel's [`Kernel::run`] documents, apart from the instruction set, which this
/// function checks.
///
/// # Panics
/// If the CPU lacks `isa`.
#[inline]
pub(crate) unsafe fn dispatch<K: Kernel>(isa: Isa, kernel: K) -> K::Output {
    assert!(
        isa.is_supported(),
        "internal: {isa} kernels on a CPU without {isa}"
    );
    // SAFETY: the CPU has the set (asserted above); the rest is the caller's.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => super::avx512::run(kernel),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => super::avx2::run(kernel),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => super::neon::run(kernel),
            _ => kernel.run::<super::portable::F32x8>(),
        }
    }
}
