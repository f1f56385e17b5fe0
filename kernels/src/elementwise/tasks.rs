//! Splitting a kernel's work into rayon tasks, and running each task as every kernel task
//! runs: with denormals flushed, compiled for the chosen instruction set.

use super::{PARALLEL_THRESHOLD, TASK_LEN};
use crate::denormal::with_denormals_flushed;
use crate::simd::vector::{Kernel, Vector, dispatch};
use crate::simd::{self, Isa};
use rayon::prelude::*;

/// A task body as a [`Kernel`] that ignores the vector type: what matters is that
/// [`dispatch`] calls it from a function compiled for the chosen set.
struct Body<F>(F);

impl<R, F: FnOnce() -> R> Kernel for Body<F> {
    type Output = R;

    #[inline(always)]
    unsafe fn run<V: Vector>(self) -> R {
        (self.0)()
    }
}

/// The instruction set the memory-bound kernels run: [`simd::active`]'s, or in this
/// crate's unit tests the one [`testing::with_isa`] sets.
#[inline(always)]
pub(crate) fn chosen_isa() -> Isa {
    #[cfg(test)]
    if let Some(isa) = testing::isa() {
        return isa;
    }
    simd::active()
}

/// Runs `body` with denormals flushed, inside a function compiled for the instruction set
/// of [`chosen_isa`]: with the sums of `lanes::map_sum`, the one place where the
/// memory-bound kernels (elementwise, activations, pooling, batch norm, losses) take the
/// chosen set.
///
/// NOTE: `body` and everything it calls up to the innermost loops must be
/// `#[inline(always)]` (closures too: `#[inline(always)] || ...`). Inlined, the loops are
/// compiled with the set's features and LLVM vectorises them at its width (16 lanes on
/// AVX-512, 8 on AVX2, 4 on SSE2 and NEON); a function left out of line would be compiled
/// for the build's baseline instead.
#[inline(always)]
pub(crate) fn run_task<R>(body: impl FnOnce() -> R) -> R {
    with_denormals_flushed(
        #[inline(always)]
        || {
            // SAFETY: `Body::run` has no requirement beyond the CPU having the set, which
            // `dispatch` checks.
            unsafe { dispatch(chosen_isa(), Body(body)) }
        },
    )
}

/// Calls `body(start, part)` on consecutive parts of `out` that cover it: the whole slice on
/// the calling thread below [`PARALLEL_THRESHOLD`] elements, else parts of [`TASK_LEN`]
/// elements as rayon tasks; each part through [`run_task`].
#[inline(always)]
pub(crate) fn split_tasks(out: &mut [f32], body: impl Fn(usize, &mut [f32]) + Sync) {
    if out.len() < PARALLEL_THRESHOLD {
        run_task(
            #[inline(always)]
            || body(0, out),
        );
    } else {
        out.par_chunks_mut(TASK_LEN)
            .enumerate()
            .for_each(|(task, part)| {
                run_task(
                    #[inline(always)]
                    || body(task * TASK_LEN, part),
                )
            });
    }
}

/// Runs `body(index, task)` for every task, each through [`run_task`], and returns the
/// results in task order: on the calling thread when `elements` (the work of all tasks
/// together) is below [`PARALLEL_THRESHOLD`], else as rayon tasks.
///
/// NOTE: callers size their tasks from the problem's dimensions only, never from the number
/// of threads, and combine the results in order, so a reduction gives the same bits on any
/// number of threads.
#[inline(always)]
pub(crate) fn run_tasks<T: Send, R: Send>(
    tasks: Vec<T>,
    elements: usize,
    body: impl Fn(usize, T) -> R + Sync,
) -> Vec<R> {
    if elements < PARALLEL_THRESHOLD {
        run_task(
            #[inline(always)]
            || {
                // NOTE: a plain loop, not an iterator `collect`, which the compiler may
                // leave out of line (and so `body` outside the set's features).
                let mut results = Vec::with_capacity(tasks.len());
                for (index, task) in tasks.into_iter().enumerate() {
                    results.push(body(index, task));
                }
                results
            },
        )
    } else {
        tasks
            .into_par_iter()
            .enumerate()
            .map(|(index, task)| {
                run_task(
                    #[inline(always)]
                    || body(index, task),
                )
            })
            .collect()
    }
}

/// How many items of `item_len` elements make one task of about [`TASK_LEN`] elements.
pub(crate) fn items_per_task(item_len: usize) -> usize {
    (TASK_LEN / item_len.max(1)).max(1)
}

/// Running the kernels on a given instruction set within one process, for the unit tests
/// that compare the sets (the process-wide choice of [`simd::active`] is fixed once).
#[cfg(test)]
pub(crate) mod testing {
    use crate::simd::Isa;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// `1 +` the index in [`Isa::ALL`] of the set in force, 0 for none.
    static FORCED: AtomicUsize = AtomicUsize::new(0);
    /// One [`with_isa`] at a time.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    /// The set [`with_isa`] put in force, if any.
    pub(crate) fn isa() -> Option<Isa> {
        FORCED
            .load(Ordering::Relaxed)
            .checked_sub(1)
            .map(|index| Isa::ALL[index])
    }

    /// Runs `f` with the memory-bound kernels on `isa` (which the CPU must have). Other
    /// tests running meanwhile use it too, which changes none of their results: every set
    /// gives the same bits.
    pub(crate) fn with_isa<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
        assert!(isa.is_supported(), "{isa} is not supported here");
        let _one = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        struct Restore;
        impl Drop for Restore {
            fn drop(&mut self) {
                FORCED.store(0, Ordering::Relaxed);
            }
        }
        let _restore = Restore;
        let index = Isa::ALL
            .iter()
            .position(|&i| i == isa)
            .expect("internal: every set is in Isa::ALL");
        FORCED.store(index + 1, Ordering::Relaxed);
        f()
    }
}
