//! Running the tasks of one call on the calling thread and rayon's pool together.
//!
//! NOTE: a rayon parallel iterator started from a thread outside the pool hands the whole
//! job to the pool and puts the calling thread to sleep until the pool is done, and a pool
//! thread that ran out of work sleeps too. On the 2-core virtual machine the project is
//! measured on, waking a sleeping thread costs tens of microseconds: a `rayon::join` of two
//! 20 µs halves from outside the pool took 50 µs at the median, and MnistNet's inference at
//! batch 1 (three parallel layers, about 250 µs in all) paid it on every layer. Here the
//! calling thread starts on the tasks at once, while helpers spawned on the pool claim
//! tasks from the same counter as soon as they wake; the caller then waits, spinning for a
//! bounded time, only for the tasks the helpers are still running, so that a call rarely
//! puts a thread to sleep.

use crate::tuning::parallel::{SPINS_BEFORE_YIELD, YIELDS};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Runs `run(participant, task)` on every task, each exactly once, on the calling thread
/// and up to `rayon::current_num_threads() - 1` helpers from rayon's pool; returns when all
/// have run. `participant` is 0 on the calling thread and `1..` on the helpers, and no two
/// tasks run at the same time with the same `participant`, so it can index per-thread
/// buffers. Tasks are taken in order, each by whichever participant is free first.
///
/// Called from within a task of another call, the tasks run one after another on the
/// calling thread.
///
/// # Panics
/// If a task panics: the panic is passed on once every other task has run.
pub fn for_each_task<T: Send>(tasks: Vec<T>, run: impl Fn(usize, T) + Sync) {
    let count = tasks.len();
    let participants = rayon::current_num_threads().min(count);
    // NOTE: a call from within a task runs on its own thread: the outer call already keeps
    // every core busy, and helpers spawned here would wake a pool thread that is idle only
    // because the calling thread took its place, putting three threads on two cores.
    if participants <= 1 || RUNNING_A_TASK.get() {
        for task in tasks {
            run(0, task);
        }
        return;
    }
    let slots: Vec<Mutex<Option<T>>> = tasks.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let work = |participant: usize| {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = slots.get(i) else {
                break;
            };
            let task = slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
                .expect("each task is claimed once");
            // Counted even if `run` panics, so that the caller does not wait for it forever.
            let _done = Finished(&finished);
            let _inside = RunningATask::enter();
            run(participant, task);
        }
    };
    rayon::in_place_scope(|scope| {
        for participant in 1..participants {
            let work = &work;
            scope.spawn(move |_| work(participant));
        }
        work(0);
        // NOTE: bounded, so that a long task on a busy machine ends in the scope's
        // blocking wait rather than in a loop that keeps a core.
        let mut checks = 0;
        while finished.load(Ordering::Acquire) < count && checks < SPINS_BEFORE_YIELD + YIELDS {
            if checks < SPINS_BEFORE_YIELD {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
            checks += 1;
        }
    });
}

thread_local! {
    /// Whether this thread is running a task of [`for_each_task`].
    static RUNNING_A_TASK: Cell<bool> = const { Cell::new(false) };
}

/// Marks the thread as running a task until dropped.
struct RunningATask {
    outer: bool,
}

impl RunningATask {
    fn enter() -> Self {
        Self {
            outer: RUNNING_A_TASK.replace(true),
        }
    }
}

impl Drop for RunningATask {
    fn drop(&mut self) {
        RUNNING_A_TASK.set(self.outer);
    }
}

/// Counts a task as finished when dropped.
struct Finished<'a>(&'a AtomicUsize);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::for_each_task;

    #[test]
    fn every_task_runs_once_with_participants_in_range() {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a thread pool");
            for count in [0, 1, 2, 5, 64] {
                let runs: Vec<AtomicUsize> = (0..count).map(|_| AtomicUsize::new(0)).collect();
                pool.install(|| {
                    for_each_task((0..count).collect(), |participant, i: usize| {
                        assert!(participant < threads.max(1));
                        runs[i].fetch_add(1, Ordering::Relaxed);
                    });
                });
                assert!(runs.iter().all(|r| r.load(Ordering::Relaxed) == 1));
            }
        }
    }

    #[test]
    fn nested_calls_run_on_the_calling_thread() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a thread pool");
        let runs = AtomicUsize::new(0);
        pool.install(|| {
            for_each_task((0..4).collect(), |_, _: usize| {
                let outer = std::thread::current().id();
                for_each_task((0..8).collect(), |participant, _: usize| {
                    assert_eq!(participant, 0);
                    assert_eq!(std::thread::current().id(), outer);
                    runs.fetch_add(1, Ordering::Relaxed);
                });
            });
        });
        assert_eq!(runs.load(Ordering::Relaxed), 32);
    }

    #[test]
    fn a_panicking_task_is_passed_on_after_the_others_ran() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a thread pool");
        let ran = AtomicUsize::new(0);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.install(|| {
                for_each_task((0..16).collect(), |_, i: usize| {
                    assert_ne!(i, 3, "task 3 fails");
                    ran.fetch_add(1, Ordering::Relaxed);
                });
            });
        }));
        assert!(result.is_err());
        assert_eq!(ran.load(Ordering::Relaxed), 15);
    }
}
