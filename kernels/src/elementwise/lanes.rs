//! The drivers every elementwise kernel goes through: an operation written once for one
//! element, run over slices in loops that the compiler vectorises for the chosen
//! instruction set ([`map`], [`update`]), and sums of per-element terms in an order fixed
//! by the positions alone ([`map_sum`]).
//!
//! A kernel's operation takes and returns plain `f32`s. The drivers run inside
//! [`run_task`](super::tasks::run_task), which compiles them (with the operation inlined)
//! for the chosen set ([`chosen_isa`]: [`simd::active`](crate::simd::active)'s), so each
//! loop becomes that set's vectors: 16 lanes on AVX-512, 8 on AVX2, 4 on SSE2 (the portable
//! path of an x86-64 build) and NEON, with a scalar loop for the last few elements.
//! [`map_sum`] adds its partial sums with the set's [`Vector`]s. An operation must be
//! `#[inline(always)]` all the way down (closures too: `#[inline(always)] |x| ...`), free of
//! branches the compiler cannot turn into selects (`||` and `&&` short-circuit: use `|`
//! and `&` on `bool`s) and of calls it cannot vectorise (`libm` functions, `f32::exp`,
//! `f32::mul_add` without FMA): the vectorisable `exp` and `ln` are in `math`.
//!
//! NOTE: every set gives the same bits. Each element goes through the same IEEE operations
//! whatever the vector width (Rust never fuses a multiply and an add, nor reorders float
//! arithmetic, on its own), the scalar tail computes exactly what a vector lane would, and
//! a sum adds element `i` of a run into partial sum `i % SUM_LANES`, whatever the width.
//! `isa_tests` checks it on every set the CPU runs.
//!
//! NOTE: the compiler, not `wide` or the [`Vector`] methods, picks the instructions of the
//! per-element loops: an operation is written once as plain Rust, and the exp, GELU and
//! compare-and-select code came out at the full width of each set (checked in the
//! assembly). `wide` fixes its width when the crate is compiled (two SSE halves in a
//! default x86-64 build, whatever the CPU), and [`Vector`] has no compares, selects or
//! integer lanes.

use super::PARTIAL_TERMS;
use super::tasks::{chosen_isa, split_tasks};
use crate::simd::vector::{Kernel, Vector, dispatch};

/// Partial sums a reduction keeps: element `i` of a run goes into partial sum
/// `i % SUM_LANES`, so that the additions pipeline and each partial sum stays short.
///
/// NOTE: 32 lanes fill two AVX-512 registers, four AVX2 ones, eight SSE2 or NEON ones.
pub(crate) const SUM_LANES: usize = 32;

/// Element `i` of every input.
#[inline(always)]
pub(crate) fn gather<const N: usize>(inputs: &[&[f32]; N], i: usize) -> [f32; N] {
    // NOTE: a plain loop, not `std::array::from_fn`, whose closure the compiler may leave
    // out of line.
    let mut values = [0.0; N];
    for (value, input) in values.iter_mut().zip(inputs) {
        *value = input[i];
    }
    values
}

/// The first `len` elements of every input.
#[inline(always)]
pub(crate) fn prefix<const N: usize>(inputs: [&[f32]; N], len: usize) -> [&[f32]; N] {
    let mut cut = inputs;
    for (c, input) in cut.iter_mut().zip(inputs) {
        *c = &input[..len];
    }
    cut
}

/// The elements `start..start + len` of every input.
#[inline(always)]
pub(crate) fn window<const N: usize>(inputs: [&[f32]; N], start: usize, len: usize) -> [&[f32]; N] {
    let mut cut = inputs;
    for (c, input) in cut.iter_mut().zip(inputs) {
        *c = &input[start..start + len];
    }
    cut
}

/// `out[i] = op(inputs[0][i], ..., inputs[N - 1][i])` on the calling thread.
#[inline(always)]
pub(crate) fn map_run<const N: usize>(
    inputs: [&[f32]; N],
    out: &mut [f32],
    op: &impl Fn([f32; N]) -> f32,
) {
    let inputs = prefix(inputs, out.len());
    for (i, o) in out.iter_mut().enumerate() {
        *o = op(gather(&inputs, i));
    }
}

/// `inout[i] = op(inout[i], [inputs[0][i], ..., inputs[N - 1][i]])` on the calling thread.
#[inline(always)]
pub(crate) fn update_run<const N: usize>(
    inputs: [&[f32]; N],
    inout: &mut [f32],
    op: &impl Fn(f32, [f32; N]) -> f32,
) {
    let inputs = prefix(inputs, inout.len());
    for (i, v) in inout.iter_mut().enumerate() {
        *v = op(*v, gather(&inputs, i));
    }
}

/// `out[i] = op(inputs[0][i], ..., inputs[N - 1][i])`, in parallel tasks above the
/// threshold. Every input must have `out.len()` elements (the public callers check).
#[inline(always)]
pub(crate) fn map<const N: usize>(
    inputs: [&[f32]; N],
    out: &mut [f32],
    op: impl Fn([f32; N]) -> f32 + Sync,
) {
    split_tasks(
        out,
        #[inline(always)]
        |start, part| map_run(window(inputs, start, part.len()), part, &op),
    );
}

/// `inout[i] = op(inout[i], [inputs[0][i], ...])`, in parallel tasks above the threshold.
/// Every input must have `inout.len()` elements (the public callers check).
#[inline(always)]
pub(crate) fn update<const N: usize>(
    inputs: [&[f32]; N],
    inout: &mut [f32],
    op: impl Fn(f32, [f32; N]) -> f32 + Sync,
) {
    split_tasks(
        inout,
        #[inline(always)]
        |start, part| update_run(window(inputs, start, part.len()), part, &op),
    );
}

/// The driver of every sum: `runs` consecutive runs of `run_len` elements (the inputs and
/// outputs hold `runs * run_len`), run `r` with the parameter `params(r)`. For each
/// element, `(o, t) = op([inputs[k][i] for k], params(r))`; `outs[m][i] = o[m]`; and
/// `sink(r, totals)` receives `totals[k] = sum over the run of t[k]`, on the calling thread.
///
/// Order: element `i` of a run goes into partial sum `i % SUM_LANES` (`f32`); after every
/// [`PARTIAL_TERMS`] rounds of [`SUM_LANES`] elements, and at the end of the run, the
/// partial sums are added pairwise and join the run's `f64` total. So a sum depends on the
/// sizes alone, and every set gives the same bits.
///
/// NOTE: each round of 32 elements goes through `op` in a loop the compiler vectorises
/// (the summands into a small buffer), and the summands into the partial sums with the
/// vectors of [`Vector`]. Left to the compiler, 32 partial sums in a plain array came out
/// as 64-bit pieces and scalar code whenever `op` was simple (a sum, a product), and
/// writing a plane's summands out to sum them in a second pass ran memory-bound kernels
/// up to twice as slow.
#[inline(always)]
pub(crate) fn map_sum<const N: usize, const M: usize, const K: usize, P: Copy>(
    inputs: [&[f32]; N],
    outs: [&mut [f32]; M],
    (runs, run_len): (usize, usize),
    params: impl Fn(usize) -> P,
    op: impl Fn([f32; N], P) -> ([f32; M], [f32; K]),
    sink: impl FnMut(usize, [f64; K]),
) {
    let len = runs * run_len;
    let inputs = prefix(inputs, len);
    let mut outs = outs;
    for out in outs.iter_mut() {
        *out = &mut std::mem::take(out)[..len];
    }
    let kernel = MapSum {
        inputs,
        outs,
        runs,
        run_len,
        params,
        op,
        sink,
    };
    // SAFETY: `MapSum` reads and writes within the slices, cut to `runs * run_len` above.
    unsafe { dispatch(chosen_isa(), kernel) }
}

/// [`map_sum`] as a kernel of the chosen set.
struct MapSum<'a, 'b, const N: usize, const M: usize, Params, Op, Sink> {
    inputs: [&'a [f32]; N],
    outs: [&'b mut [f32]; M],
    runs: usize,
    run_len: usize,
    params: Params,
    op: Op,
    sink: Sink,
}

impl<const N: usize, const M: usize, const K: usize, P, Params, Op, Sink> Kernel
    for MapSum<'_, '_, N, M, Params, Op, Sink>
where
    P: Copy,
    Params: Fn(usize) -> P,
    Op: Fn([f32; N], P) -> ([f32; M], [f32; K]),
    Sink: FnMut(usize, [f64; K]),
{
    type Output = ();

    /// # Safety
    /// Every input and output has `runs * run_len` elements.
    #[inline(always)]
    unsafe fn run<V: Vector>(self) {
        let MapSum {
            inputs,
            mut outs,
            runs,
            run_len,
            params,
            op,
            mut sink,
        } = self;
        for r in 0..runs {
            let p = params(r);
            // SAFETY: the kernel runs on a CPU with `V`'s instruction set (its contract).
            let mut acc = [[unsafe { V::zero() }; MAX_VECTORS]; K];
            let mut totals = [0.0_f64; K];
            let start = r * run_len;
            let rounds = run_len / SUM_LANES;
            for q in 0..rounds {
                let at = start + q * SUM_LANES;
                // NOTE: whole rounds as arrays, so that the lane loop has no bounds checks.
                let mut round_in: [&[f32; SUM_LANES]; N] = [&[0.0; SUM_LANES]; N];
                for (chunk, input) in round_in.iter_mut().zip(&inputs) {
                    *chunk = input[at..at + SUM_LANES]
                        .try_into()
                        .expect("internal: a round");
                }
                let mut round_out = outs.each_mut().map(|out| {
                    <&mut [f32; SUM_LANES]>::try_from(&mut out[at..at + SUM_LANES])
                        .expect("internal: a round")
                });
                let mut summands = [[0.0_f32; SUM_LANES]; K];
                for lane in 0..SUM_LANES {
                    let mut values = [0.0; N];
                    for (value, chunk) in values.iter_mut().zip(&round_in) {
                        *value = chunk[lane];
                    }
                    let (o, t) = op(values, p);
                    for (out, o) in round_out.iter_mut().zip(o) {
                        out[lane] = o;
                    }
                    for (summands, t) in summands.iter_mut().zip(t) {
                        summands[lane] = t;
                    }
                }
                // SAFETY: as the kernel's.
                unsafe { add_summands(&mut acc, &summands) };
                if (q + 1) % PARTIAL_TERMS == 0 {
                    // SAFETY: as the kernel's.
                    unsafe { flush_sums(&mut acc, &mut totals) };
                }
            }
            let at = start + rounds * SUM_LANES;
            let rest = start + run_len - at;
            if rest > 0 {
                // NOTE: the lanes past the end add +0, which leaves a partial sum unchanged
                // (one that started at +0 is never -0).
                let mut summands = [[0.0; SUM_LANES]; K];
                for lane in 0..rest {
                    let (o, t) = op(gather(&inputs, at + lane), p);
                    for (out, o) in outs.iter_mut().zip(o) {
                        out[at + lane] = o;
                    }
                    for (summands, t) in summands.iter_mut().zip(t) {
                        summands[lane] = t;
                    }
                }
                // SAFETY: as the kernel's.
                unsafe { add_summands(&mut acc, &summands) };
            }
            // SAFETY: as the kernel's.
            unsafe { flush_sums(&mut acc, &mut totals) };
            sink(r, totals);
        }
    }
}

/// Vectors of the 32 partial sums at most: 8 of NEON's 4 lanes (2 of AVX-512's 16).
const MAX_VECTORS: usize = SUM_LANES / 4;

/// `acc[k] += summands[k]`, vector by vector: the first `SUM_LANES / V::LANES` of `acc[k]`
/// hold the 32 partial sums in order.
///
/// # Safety
/// The CPU must have `V`'s instruction set, and the caller be compiled with its features.
#[inline(always)]
unsafe fn add_summands<V: Vector, const K: usize>(
    acc: &mut [[V; MAX_VECTORS]; K],
    summands: &[[f32; SUM_LANES]; K],
) {
    for (acc, summands) in acc.iter_mut().zip(summands) {
        for (v, a) in acc[..SUM_LANES / V::LANES].iter_mut().enumerate() {
            // SAFETY: the lanes `v * LANES..(v + 1) * LANES` are within the 32 summands.
            *a = unsafe { a.add(V::load(summands.as_ptr().add(v * V::LANES))) };
        }
    }
}

/// Adds each `acc[k]`'s 32 partial sums pairwise into `totals[k]` and restarts them from
/// zero.
///
/// # Safety
/// As [`add_summands`].
#[inline(always)]
unsafe fn flush_sums<V: Vector, const K: usize>(
    acc: &mut [[V; MAX_VECTORS]; K],
    totals: &mut [f64; K],
) {
    for (acc, total) in acc.iter_mut().zip(totals.iter_mut()) {
        let mut lanes = [0.0_f32; SUM_LANES];
        for (v, a) in acc[..SUM_LANES / V::LANES].iter_mut().enumerate() {
            // SAFETY: the lanes `v * LANES..(v + 1) * LANES` are within `lanes`.
            unsafe {
                a.store(lanes.as_mut_ptr().add(v * V::LANES));
                *a = V::zero();
            }
        }
        *total += f64::from(pairwise_sum(lanes));
    }
}

/// The sum of the partial sums, added pairwise: lane `j` with lane `j + 16`, then
/// `j + 8`, and so on.
#[inline(always)]
fn pairwise_sum(mut acc: [f32; SUM_LANES]) -> f32 {
    let mut width = SUM_LANES / 2;
    while width > 0 {
        let (low, high) = acc.split_at_mut(width);
        for (a, b) in low.iter_mut().zip(&high[..width]) {
            *a += *b;
        }
        width /= 2;
    }
    acc[0]
}
