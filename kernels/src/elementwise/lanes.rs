//! Moving slices in and out of `f32x8` lanes, and running a lane-wise operation over a slice.
//!
//! NOTE: a slice whose length is not a multiple of eight ends in a partial chunk. It is
//! copied into a zero-padded vector and goes through the same lane operation as the full
//! chunks, so each operation (exp, GELU, ...) has exactly one definition and the last few
//! elements get bit-for-bit the results they would get in a full chunk.

use super::tasks::split_tasks;
use wide::f32x8;

/// Number of `f32` lanes in one vector.
pub(crate) const LANES: usize = 8;

/// Loads the first eight values of `s`.
#[inline(always)]
pub(crate) fn load(s: &[f32]) -> f32x8 {
    let chunk: &[f32; LANES] = s[..LANES]
        .try_into()
        .expect("internal: a chunk has 8 lanes");
    f32x8::from(*chunk)
}

/// Loads `len <= 8` values of `s` from `start`, padding the missing lanes with zeros.
#[inline(always)]
pub(crate) fn load_n(s: &[f32], start: usize, len: usize) -> f32x8 {
    if len == LANES {
        load(&s[start..])
    } else {
        load_partial(&s[start..start + len])
    }
}

/// Stores the first `len <= 8` lanes of `v` into `s` from `start`.
#[inline(always)]
pub(crate) fn store_n(v: f32x8, s: &mut [f32], start: usize, len: usize) {
    if len == LANES {
        let chunk: &mut [f32; LANES] = (&mut s[start..start + LANES])
            .try_into()
            .expect("internal: a chunk has 8 lanes");
        *chunk = v.to_array();
    } else {
        store_partial(v, &mut s[start..start + len]);
    }
}

// NOTE: the partial-chunk paths stay out of line. Inlined, the compiler merged the full and
// the partial store into one `memcpy` call of variable length, paid on every chunk.

#[cold]
#[inline(never)]
fn load_partial(s: &[f32]) -> f32x8 {
    let mut lanes = [0.0_f32; LANES];
    lanes[..s.len()].copy_from_slice(s);
    f32x8::from(lanes)
}

#[cold]
#[inline(never)]
fn store_partial(v: f32x8, s: &mut [f32]) {
    let len = s.len();
    s.copy_from_slice(&v.as_array_ref()[..len]);
}

/// Zeroes every lane from `len` on, so the padding of a partial chunk adds nothing to a sum.
#[inline(always)]
pub(crate) fn keep_lanes(v: f32x8, len: usize) -> f32x8 {
    if len == LANES {
        v
    } else {
        let mut lanes = v.to_array();
        lanes[len..].fill(0.0);
        f32x8::from(lanes)
    }
}

/// Loads `len <= 8` values from `start` of every input.
#[inline(always)]
pub(crate) fn load_all<const N: usize>(
    inputs: &[&[f32]; N],
    start: usize,
    len: usize,
) -> [f32x8; N] {
    // NOTE: a plain loop, not `std::array::from_fn`, whose closure the compiler leaves as
    // an out-of-line call per vector (measured 6x slower on `add`).
    let mut lanes = [f32x8::ZERO; N];
    for (lane, input) in lanes.iter_mut().zip(inputs) {
        *lane = load_n(input, start, len);
    }
    lanes
}

/// Calls `step(start, n)` for consecutive chunks of a run of `len` elements: `n == 8`
/// except in the last chunk, which may be partial.
///
/// NOTE: `step` has a single call site, so the compiler inlines it (with two call sites,
/// one for the full chunks and one for the tail, it kept large steps such as the GELU out
/// of line and paid a call per chunk). The `n == 8` tests in the loads and stores are
/// taken the same way on every full chunk, so they predict perfectly.
#[inline(always)]
pub(crate) fn for_each_chunk(len: usize, mut step: impl FnMut(usize, usize)) {
    let mut start = 0;
    while start < len {
        let n = LANES.min(len - start);
        step(start, n);
        start += n;
    }
}

/// `out[i] = op(inputs[0][i], ..., inputs[N - 1][i])` on the calling thread.
#[inline(always)]
pub(crate) fn map_run<const N: usize>(
    inputs: [&[f32]; N],
    out: &mut [f32],
    op: &impl Fn([f32x8; N]) -> f32x8,
) {
    let inputs = inputs.map(|s| &s[..out.len()]);
    for_each_chunk(out.len(), |start, len| {
        store_n(op(load_all(&inputs, start, len)), out, start, len);
    });
}

/// `inout[i] = op(inout[i], [inputs[0][i], ..., inputs[N - 1][i]])` on the calling thread.
#[inline(always)]
pub(crate) fn update_run<const N: usize>(
    inputs: [&[f32]; N],
    inout: &mut [f32],
    op: &impl Fn(f32x8, [f32x8; N]) -> f32x8,
) {
    let inputs = inputs.map(|s| &s[..inout.len()]);
    for_each_chunk(inout.len(), |start, len| {
        let current = load_n(inout, start, len);
        store_n(
            op(current, load_all(&inputs, start, len)),
            inout,
            start,
            len,
        );
    });
}

/// `out[i] = op(inputs[0][i], ..., inputs[N - 1][i])`, in parallel tasks above the
/// threshold. Every input must have `out.len()` elements (the public callers check).
pub(crate) fn map<const N: usize>(
    inputs: [&[f32]; N],
    out: &mut [f32],
    op: impl Fn([f32x8; N]) -> f32x8 + Sync,
) {
    split_tasks(out, |start, part| {
        map_run(inputs.map(|s| &s[start..start + part.len()]), part, &op);
    });
}

/// `inout[i] = op(inout[i], [inputs[0][i], ...])`, in parallel tasks above the threshold.
/// Every input must have `inout.len()` elements (the public callers check).
pub(crate) fn update<const N: usize>(
    inputs: [&[f32]; N],
    inout: &mut [f32],
    op: impl Fn(f32x8, [f32x8; N]) -> f32x8 + Sync,
) {
    split_tasks(inout, |start, part| {
        update_run(inputs.map(|s| &s[start..start + part.len()]), part, &op);
    });
}

/// `sum over i of term(inputs[0][i], ...)` for a short run (up to a few thousand elements),
/// kept in 32 independent partial sums (four vectors) so that the additions pipeline and
/// each partial sum stays short.
#[inline(always)]
pub(crate) fn sum_run<const N: usize>(
    inputs: [&[f32]; N],
    term: &impl Fn([f32x8; N]) -> f32x8,
) -> f32 {
    let len = inputs.first().map_or(0, |s| s.len());
    let mut acc = [f32x8::ZERO; 4];
    let quads = len / (4 * LANES);
    for q in 0..quads {
        for (k, a) in acc.iter_mut().enumerate() {
            *a += term(load_all(&inputs, (4 * q + k) * LANES, LANES));
        }
    }
    let rest = inputs.map(|s| &s[quads * 4 * LANES..len]);
    for_each_chunk(len - quads * 4 * LANES, |start, n| {
        acc[0] += keep_lanes(term(load_all(&rest, start, n)), n);
    });
    ((acc[0] + acc[1]) + (acc[2] + acc[3])).reduce_add()
}
