//! Sums, the dot product, and sums and maxima along one axis.

use super::lanes::{map_sum, update_run, window};
use super::tasks::{items_per_task, run_tasks};
use super::{PARTIAL_TERMS, TASK_LEN, assert_same_len};
use crate::tuning::memory_bound::REDUCE_TILE;

/// Lanes of [`row_max`]: element `l` of a row is compared within lane `l % MAX_LANES`.
const MAX_LANES: usize = 16;

/// `sum over i of term(inputs[0][i], ...)` on the calling thread, as [`map_sum`] adds
/// (`f32` partial sums of at most 32 terms, added in `f64`).
#[inline(always)]
pub(crate) fn sum_terms<const N: usize>(
    inputs: [&[f32]; N],
    term: impl Fn([f32; N]) -> f32,
) -> f64 {
    let len = inputs.first().map_or(0, |s| s.len());
    let mut total = 0.0;
    map_sum(
        inputs,
        [],
        (1, len),
        |_| (),
        #[inline(always)]
        |values, ()| ([], [term(values)]),
        |_, [sum]| total = sum,
    );
    total
}

/// `sum over i of term(...)`, in tasks of [`TASK_LEN`] elements whose partial sums are
/// added in order.
#[inline(always)]
fn blocked_sum<const N: usize>(inputs: [&[f32]; N], term: impl Fn([f32; N]) -> f32 + Sync) -> f32 {
    let len = inputs.first().map_or(0, |s| s.len());
    let tasks = vec![(); len.div_ceil(TASK_LEN)];
    let partials = run_tasks(
        tasks,
        len,
        #[inline(always)]
        |task, ()| {
            let start = task * TASK_LEN;
            sum_terms(window(inputs, start, TASK_LEN.min(len - start)), &term)
        },
    );
    partials.iter().sum::<f64>() as f32
}

/// `sum over i of x[i]` (0 for an empty slice).
///
/// Accurate: runs of 1024 elements are summed in `f32` over 32 independent partial sums
/// and the run sums in `f64`, so the error stays within a few units in the last place of
/// `sum |x[i]|` for any length, and the result depends neither on the number of threads
/// nor on the instruction set.
pub fn sum(x: &[f32]) -> f32 {
    blocked_sum(
        [x],
        #[inline(always)]
        |[x]| x,
    )
}

/// `sum over i of a[i] * b[i]` (0 for empty slices), accumulated as [`sum`] is.
///
/// # Panics
/// If `a` and `b` differ in length.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_same_len("dot", ("a", a.len()), ("b", b.len()));
    blocked_sum(
        [a, b],
        #[inline(always)]
        |[a, b]| a * b,
    )
}

/// `outer * len * inner`, checked.
#[track_caller]
fn axis_volume(op: &str, outer: usize, len: usize, inner: usize) -> usize {
    outer
        .checked_mul(len)
        .and_then(|n| n.checked_mul(inner))
        .unwrap_or_else(|| panic!("{op}: [{outer}, {len}, {inner}] overflows usize"))
}

/// Groups `items` into consecutive tasks of `per_task` items.
fn group<T>(items: impl Iterator<Item = T>, per_task: usize) -> Vec<Vec<T>> {
    let mut groups: Vec<Vec<T>> = Vec::new();
    for item in items {
        match groups.last_mut() {
            Some(last) if last.len() < per_task => last.push(item),
            _ => groups.push(vec![item]),
        }
    }
    groups
}

/// `x` seen as `[outer, len, inner]` (row-major): `out[o, i] = sum over l of x[o, l, i]`;
/// `out` (`[outer, inner]`) overwritten, zero when `len == 0`.
///
/// Accurate as [`sum`] is: `f32` partial sums of at most 32 terms, added in `f64`. Parallel
/// over outputs, each computed by one task in a fixed order.
///
/// # Panics
/// If `x` does not have `outer * len * inner` elements or `out` does not have
/// `outer * inner`.
pub fn sum_axis(outer: usize, len: usize, inner: usize, x: &[f32], out: &mut [f32]) {
    let total = axis_volume("sum_axis", outer, len, inner);
    assert_same_len("sum_axis", ("outer * len * inner", total), ("x", x.len()));
    assert_same_len(
        "sum_axis",
        ("outer * inner", outer * inner),
        ("out", out.len()),
    );
    if out.is_empty() {
        return;
    }
    let per_row = inner.div_ceil(REDUCE_TILE);
    let tiles = out
        .chunks_mut(inner)
        .flat_map(|row| row.chunks_mut(REDUCE_TILE))
        .enumerate();
    let groups = group(tiles, items_per_task(len * inner.min(REDUCE_TILE)));
    run_tasks(
        groups,
        total,
        #[inline(always)]
        |_, group| {
            for (t, tile) in group {
                let (o, i0) = (t / per_row, t % per_row * REDUCE_TILE);
                let slab = &x[o * len * inner..(o + 1) * len * inner];
                if inner == 1 {
                    tile[0] = sum_terms([slab], |[v]| v) as f32;
                } else {
                    column_sums(slab, inner, i0, tile);
                }
            }
        },
    );
}

/// `tile[j] = sum over l of slab[l, i0 + j]` for a `[len, inner]` slab: blocks of
/// [`PARTIAL_TERMS`] rows are added in `f32` (vectorised along the row), and the block
/// sums in `f64`.
#[inline(always)]
fn column_sums(slab: &[f32], inner: usize, i0: usize, tile: &mut [f32]) {
    let width = tile.len();
    let row = |l: usize| &slab[l * inner + i0..l * inner + i0 + width];
    let mut block = [0.0_f32; REDUCE_TILE];
    let block = &mut block[..width];
    let mut totals = [0.0_f64; REDUCE_TILE];
    let totals = &mut totals[..width];
    let len = slab.len() / inner;
    for first in (0..len).step_by(PARTIAL_TERMS) {
        block.copy_from_slice(row(first));
        for l in first + 1..(first + PARTIAL_TERMS).min(len) {
            update_run([row(l)], block, &|b, [r]| b + r);
        }
        for (total, &partial) in totals.iter_mut().zip(block.iter()) {
            *total += f64::from(partial);
        }
    }
    for (out, total) in tile.iter_mut().zip(totals.iter()) {
        *out = *total as f32;
    }
}

/// `v > best`, where NaN counts as greater than every number (so a maximum propagates NaN,
/// as PyTorch's does).
///
/// NOTE: `|` and `&`, not `||` and `&&`, whose short circuits are branches: they kept the
/// compiler from vectorising straight-line code and mispredict in scalar loops.
#[inline(always)]
pub(crate) fn beats(v: f32, best: f32) -> bool {
    (v > best) | (v.is_nan() & !best.is_nan())
}

/// `x` seen as `[outer, len, inner]` (row-major): `out[o, i] = max over l of x[o, l, i]`
/// and `argmax[o, i]` = that `l`, the first on ties. NaN counts as the greatest value, so
/// a slice holding NaN yields NaN and the index of its first NaN (as PyTorch's `max`).
/// `out` and `argmax` (`[outer, inner]`) are overwritten. Parallel over outputs.
///
/// # Panics
/// If `len == 0`, if `len - 1` does not fit `u32`, if `x` does not have
/// `outer * len * inner` elements, or if `out` or `argmax` does not have `outer * inner`.
pub fn max_axis(
    outer: usize,
    len: usize,
    inner: usize,
    x: &[f32],
    out: &mut [f32],
    argmax: &mut [u32],
) {
    assert!(len >= 1, "max_axis: the reduced axis is empty");
    assert!(
        u32::try_from(len - 1).is_ok(),
        "max_axis: an axis of {len} elements has indices beyond u32"
    );
    let total = axis_volume("max_axis", outer, len, inner);
    assert_same_len("max_axis", ("outer * len * inner", total), ("x", x.len()));
    assert_same_len(
        "max_axis",
        ("outer * inner", outer * inner),
        ("out", out.len()),
    );
    assert_same_len(
        "max_axis",
        ("outer * inner", outer * inner),
        ("argmax", argmax.len()),
    );
    if out.is_empty() {
        return;
    }
    let per_row = inner.div_ceil(REDUCE_TILE);
    let out_tiles = out
        .chunks_mut(inner)
        .flat_map(|row| row.chunks_mut(REDUCE_TILE));
    let arg_tiles = argmax
        .chunks_mut(inner)
        .flat_map(|row| row.chunks_mut(REDUCE_TILE));
    let tiles = out_tiles.zip(arg_tiles).enumerate();
    let groups = group(tiles, items_per_task(len * inner.min(REDUCE_TILE)));
    run_tasks(
        groups,
        total,
        #[inline(always)]
        |_, group| {
            for (t, (tile, arg_tile)) in group {
                let (o, i0) = (t / per_row, t % per_row * REDUCE_TILE);
                let slab = &x[o * len * inner..(o + 1) * len * inner];
                if inner == 1 {
                    let (value, index) = row_max(slab);
                    tile[0] = value;
                    arg_tile[0] = index;
                } else {
                    column_max(slab, inner, i0, tile, arg_tile);
                }
            }
        },
    );
}

/// The maximum of a non-empty row and the index of its first occurrence: lane `j` keeps
/// the first maximum of the elements `l` with `l % MAX_LANES == j`, then the lanes are
/// merged (lower index wins a tie), and the elements after the last whole group of lanes
/// are scanned one by one.
#[inline(always)]
fn row_max(row: &[f32]) -> (f32, u32) {
    let full = row.len() - row.len() % MAX_LANES;
    let (mut best, mut at, mut rest) = (row[0], 0_u32, 1);
    if full > 0 {
        let mut best_lanes = [0.0_f32; MAX_LANES];
        best_lanes.copy_from_slice(&row[..MAX_LANES]);
        let mut at_lanes: [u32; MAX_LANES] = std::array::from_fn(|j| j as u32);
        for start in (MAX_LANES..full).step_by(MAX_LANES) {
            let group = &row[start..start + MAX_LANES];
            for (j, ((b, a), &v)) in best_lanes
                .iter_mut()
                .zip(&mut at_lanes)
                .zip(group)
                .enumerate()
            {
                let take = beats(v, *b);
                *b = if take { v } else { *b };
                *a = if take { (start + j) as u32 } else { *a };
            }
        }
        (best, at) = (best_lanes[0], at_lanes[0]);
        for (&v, &i) in best_lanes.iter().zip(&at_lanes).skip(1) {
            if beats(v, best) || (!beats(best, v) && i < at) {
                (best, at) = (v, i);
            }
        }
        rest = full;
    }
    for (l, &v) in row.iter().enumerate().skip(rest) {
        if beats(v, best) {
            (best, at) = (v, l as u32);
        }
    }
    (best, at)
}

/// `tile[j] = max over l of slab[l, i0 + j]` and `arg_tile[j]` its first `l`, for a
/// `[len, inner]` slab.
#[inline(always)]
fn column_max(slab: &[f32], inner: usize, i0: usize, tile: &mut [f32], arg_tile: &mut [u32]) {
    let width = tile.len();
    let row = |l: usize| &slab[l * inner + i0..l * inner + i0 + width];
    tile.copy_from_slice(row(0));
    arg_tile.fill(0);
    for l in 1..slab.len() / inner {
        let values = row(l);
        let index = l as u32;
        for ((b, a), &v) in tile.iter_mut().zip(arg_tile.iter_mut()).zip(values) {
            let take = beats(v, *b);
            *b = if take { v } else { *b };
            *a = if take { index } else { *a };
        }
    }
}
