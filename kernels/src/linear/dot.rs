//! The dot products of the small-batch linear kernel, which is limited by how fast it
//! streams the weights, written once for every instruction set.
//!
//! NOTE: the portable build targets SSE2, where a product and a sum take two instructions
//! on four lanes; with a batch of one the weights are read once per call and the loop runs
//! near memory speed only with fused multiply-adds on wider vectors, so it runs on the
//! instruction set [`simd::active`](crate::simd::active) chooses, like the tiles.

use std::ops::Range;

use crate::simd::Isa;
use crate::simd::vector::{Kernel, Vector, dispatch};

/// Independent accumulators, in vectors: enough to hide the latency of the fused
/// multiply-add.
const ACCUMULATORS: usize = 4;

/// Dot products of weight rows with input rows over runs of features.
pub(crate) struct Dots<'a> {
    /// `[rows, features]` row-major.
    pub(crate) weight: &'a [f32],
    /// `[batch, features]` row-major.
    pub(crate) input: &'a [f32],
    pub(crate) batch: usize,
    pub(crate) features: usize,
    /// The features summed over.
    pub(crate) runs: &'a [Range<usize>],
}

impl Dots<'_> {
    /// `out[i * batch + n] = sum over the features f of the runs of weight[rows[i], f] *
    /// input[n, f]` for every listed weight row `rows[i]` and input row `n`, with the
    /// vectors of `isa`.
    ///
    /// # Panics
    /// If a run or row lies outside the weight or input, `out` does not hold
    /// `rows.len() * batch` sums, or the CPU lacks `isa`.
    pub(crate) fn rows(&self, isa: Isa, rows: &[usize], out: &mut [f32]) {
        let (batch, features) = (self.batch, self.features);
        assert!(
            self.runs
                .iter()
                .all(|r| r.start <= r.end && r.end <= features)
                && self.input.len() == batch * features
                && rows
                    .iter()
                    .all(|&o| (o + 1) * features <= self.weight.len())
                && out.len() == rows.len() * batch,
            "dot products past their operands"
        );
        let work = Rows {
            dots: self,
            rows,
            batch,
            out,
        };
        // SAFETY: every run lies within the rows of the weight and of the input (asserted
        // above).
        unsafe { dispatch(isa, work) }
    }
}

/// [`Dots::rows`]'s work as a [`Kernel`].
struct Rows<'a, 'b> {
    dots: &'a Dots<'b>,
    rows: &'a [usize],
    batch: usize,
    out: &'a mut [f32],
}

impl Kernel for Rows<'_, '_> {
    type Output = ();

    /// # Safety
    /// As [`Dots::rows`] checks.
    #[inline(always)]
    unsafe fn run<V: Vector>(self) {
        let Dots {
            weight,
            input,
            features,
            runs,
            ..
        } = *self.dots;
        for (&o, out) in self.rows.iter().zip(self.out.chunks_exact_mut(self.batch)) {
            let row = &weight[o * features..][..features];
            for (n, out) in out.iter_mut().enumerate() {
                let x = &input[n * features..][..features];
                // SAFETY: the CPU runs `V` (caller); the runs lie within both rows.
                *out = unsafe {
                    let mut acc = [V::zero(); ACCUMULATORS];
                    for run in runs {
                        accumulate(&row[run.clone()], &x[run.clone()], &mut acc);
                    }
                    let mut total = acc[0];
                    for &a in &acc[1..] {
                        total = total.add(a);
                    }
                    total.sum()
                };
            }
        }
    }
}

/// Adds `a[i] * b[i]` to the lanes of `acc`: [`ACCUMULATORS`] vectors at a time, then
/// single vectors (a channel of a flattened map is often a multiple of 8 but not of 32
/// long), then the masked tail.
///
/// # Safety
/// The CPU must run `V`; the slices must be of equal length.
#[inline(always)]
unsafe fn accumulate<V: Vector>(a: &[f32], b: &[f32], acc: &mut [V; ACCUMULATORS]) {
    let len = a.len().min(b.len());
    let (a, b) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    // SAFETY (every load): the CPU runs `V` (caller); every lane read lies below `len` in
    // both slices, masked lanes are not read.
    unsafe {
        while i + ACCUMULATORS * V::LANES <= len {
            for (k, acc) in acc.iter_mut().enumerate() {
                let at = i + k * V::LANES;
                *acc = V::load(a.add(at)).mul_add(V::load(b.add(at)), *acc);
            }
            i += ACCUMULATORS * V::LANES;
        }
        while i + V::LANES <= len {
            acc[0] = V::load(a.add(i)).mul_add(V::load(b.add(i)), acc[0]);
            i += V::LANES;
        }
        if i < len {
            let mask = V::first(len - i);
            let (x, y) = (
                V::load_masked(a.add(i), mask),
                V::load_masked(b.add(i), mask),
            );
            acc[1] = x.mul_add(y, acc[1]);
        }
    }
}
