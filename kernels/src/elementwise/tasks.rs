//! Splitting a kernel's work into rayon tasks, each run with denormals flushed.

use super::{PARALLEL_THRESHOLD, TASK_LEN};
use crate::denormal::with_denormals_flushed;
use rayon::prelude::*;

/// Calls `body(start, part)` on consecutive parts of `out` that cover it: the whole slice on
/// the calling thread below [`PARALLEL_THRESHOLD`] elements, else parts of [`TASK_LEN`]
/// elements as rayon tasks.
pub(crate) fn split_tasks(out: &mut [f32], body: impl Fn(usize, &mut [f32]) + Sync) {
    if out.len() < PARALLEL_THRESHOLD {
        with_denormals_flushed(|| body(0, out));
    } else {
        out.par_chunks_mut(TASK_LEN)
            .enumerate()
            .for_each(|(task, part)| with_denormals_flushed(|| body(task * TASK_LEN, part)));
    }
}

/// Runs `body(index, task)` for every task and returns the results in task order: on the
/// calling thread when `elements` (the work of all tasks together) is below
/// [`PARALLEL_THRESHOLD`], else as rayon tasks.
///
/// NOTE: callers size their tasks from the problem's dimensions only, never from the number
/// of threads, and combine the results in order, so a reduction gives the same bits on any
/// number of threads.
pub(crate) fn run_tasks<T: Send, R: Send>(
    tasks: Vec<T>,
    elements: usize,
    body: impl Fn(usize, T) -> R + Sync,
) -> Vec<R> {
    if elements < PARALLEL_THRESHOLD {
        with_denormals_flushed(|| {
            tasks
                .into_iter()
                .enumerate()
                .map(|(index, task)| body(index, task))
                .collect()
        })
    } else {
        tasks
            .into_par_iter()
            .enumerate()
            .map(|(index, task)| with_denormals_flushed(|| body(index, task)))
            .collect()
    }
}

/// How many items of `item_len` elements make one task of about [`TASK_LEN`] elements.
pub(crate) fn items_per_task(item_len: usize) -> usize {
    (TASK_LEN / item_len.max(1)).max(1)
}
