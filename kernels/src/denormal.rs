//! Flushing denormal floats to zero inside hot loops.
//!
//! NOTE: training drives dead rotated-ReLU slopes, and the weights behind them, towards
//! zero; products of such values fall into the denormal range, where many CPUs take a
//! microcode assist costing ~100 cycles per operation. Kernels therefore run their inner
//! loops with the CPU's flush-to-zero and denormals-are-zero modes on. The modes are per
//! thread, so each parallel task sets them itself, and restores the caller's state after.

/// Runs `f` with denormal inputs and results treated as zero on the current thread, then
/// restores the thread's previous floating-point mode (also when `f` panics).
///
/// On targets other than x86-64 and AArch64 this simply runs `f`.
pub fn with_denormals_flushed<R>(f: impl FnOnce() -> R) -> R {
    let _guard = FlushGuard::new();
    f()
}

/// Restores the saved floating-point control state on drop.
struct FlushGuard {
    #[cfg_attr(
        not(any(target_arch = "x86_64", target_arch = "aarch64")),
        allow(dead_code)
    )]
    saved: u64,
}

impl FlushGuard {
    #[cfg(target_arch = "x86_64")]
    fn new() -> Self {
        // MXCSR bit 15 is flush-to-zero, bit 6 is denormals-are-zero.
        const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);
        let saved = read_mxcsr();
        if saved & FTZ_DAZ != FTZ_DAZ {
            write_mxcsr(saved | FTZ_DAZ);
        }
        Self {
            saved: u64::from(saved),
        }
    }

    #[cfg(target_arch = "aarch64")]
    fn new() -> Self {
        // FPCR bit 24 (FZ) flushes denormal inputs and outputs to zero.
        const FZ: u64 = 1 << 24;
        let saved = read_fpcr();
        if saved & FZ == 0 {
            write_fpcr(saved | FZ);
        }
        Self { saved }
    }

    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    fn new() -> Self {
        Self { saved: 0 }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        {
            let saved = self.saved as u32;
            if read_mxcsr() != saved {
                write_mxcsr(saved);
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if read_fpcr() != self.saved {
                write_fpcr(self.saved);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn read_mxcsr() -> u32 {
    let mut csr: u32 = 0;
    // SAFETY: stmxcsr stores the 32-bit MXCSR register to the given, valid address.
    unsafe {
        core::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
    }
    csr
}

#[cfg(target_arch = "x86_64")]
fn write_mxcsr(csr: u32) {
    // SAFETY: only the FTZ/DAZ mode bits differ from a value read from MXCSR itself, so no
    // reserved bit is set (which would fault) and no exception is unmasked.
    unsafe {
        core::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags));
    }
}

#[cfg(target_arch = "aarch64")]
fn read_fpcr() -> u64 {
    let fpcr: u64;
    // SAFETY: reading FPCR has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack, preserves_flags));
    }
    fpcr
}

#[cfg(target_arch = "aarch64")]
fn write_fpcr(fpcr: u64) {
    // SAFETY: only the FZ mode bit differs from a value read from FPCR itself.
    unsafe {
        core::arch::asm!("msr fpcr, {}", in(reg) fpcr, options(nomem, nostack, preserves_flags));
    }
}

#[cfg(test)]
mod tests {
    use super::with_denormals_flushed;
    use std::hint::black_box;

    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn denormal_products_become_zero_inside_and_not_outside() {
        let tiny = black_box(f32::MIN_POSITIVE);
        let half = black_box(0.5_f32);
        assert!(
            (tiny * half) > 0.0,
            "without flushing the product is denormal"
        );
        // NOTE: the compiler does not know that MXCSR affects arithmetic; passing operands
        // and result through black_box pins the multiply between the mode switches.
        let flushed = with_denormals_flushed(|| black_box(black_box(tiny) * black_box(half)));
        assert_eq!(flushed, 0.0);
        assert!((tiny * half) > 0.0, "the previous mode is restored");
    }
}
