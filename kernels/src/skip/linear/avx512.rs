//! The AVX-512 kernel of [`linear_forward_active`](super::linear_forward_active) for a
//! batch: register tiles of input rows by active outputs, each accumulating dot products
//! over the active feature runs while reading the weight rows in place.
//!
//! NOTE: the features are taken in blocks of [`FEATURE_BLOCK`]: a tile's rows of a block,
//! gathered (16 KiB), stay in L1 while every block of weight rows goes through them, and
//! the weight rows of a block stay in L2 while every tile of rows uses them. Without blocks
//! every load of a tile came from L2 (11 lines for 24 multiply-adds), with them 3 do.
//! Between blocks a tile keeps its sums as vectors in a buffer, and adds their lanes after
//! the last.
//!
//! NOTE: the weight rows are read in place, and their streams break at every run of
//! active features. Measured before the weights were put on a cache line, for MnistNet's
//! first layer at batch 64 with every other 144-feature channel kept: the tiles took
//! about 196 µs reading the weight rows in place against 123 µs reading them gathered, but
//! gathering cost more than it saved (the copy waits on memory as the tiles did). Each
//! block's weight rows gathered before the tiles (300 to 360 µs in all against 250 to 280
//! µs in place), the vectors a thread's first tile of rows read stored for its later ones,
//! software prefetches of the next block, one loop over a block's vectors instead of one
//! per run, and tiles of 12 rows by 2 outputs, 6 by 4 or 16 by 1 were all no faster
//! (`cargo bench --bench kernels -- linear`).

use std::ops::Range;

use crate::aligned::AlignedFloats;
use crate::skip::Epilogue;

/// Input rows per tile: with [`OUTPUTS`] weight rows that is 24 accumulators, of the 32
/// vector registers, and 11 loads for every 24 multiply-adds.
const ROWS: usize = 8;
/// Active outputs (weight rows) per tile.
const OUTPUTS: usize = 3;
/// Lanes of one vector.
const LANES: usize = 16;
/// Active input features per block.
const FEATURE_BLOCK: usize = 512;
/// The most active outputs whose gathered weight rows of a block (runs shorter than a
/// vector) are kept for every tile of rows: 256 KiB of them.
const GATHERED_OUTPUTS: usize = 128;

/// Whether this CPU runs the kernel.
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The floats of the buffer in which [`Layer::rows`] keeps the sums of `rows` rows between
/// blocks of features.
pub(super) fn partial_len(rows: usize, outputs: usize) -> usize {
    rows * outputs * LANES
}

/// A layer as the kernel reads it: the weight of the full layer with its active runs of
/// features and active outputs, and what follows the product.
pub(super) struct Layer<'a> {
    /// `[out_features, in_features]` row-major.
    pub(super) weight: &'a [f32],
    pub(super) in_features: usize,
    pub(super) out_features: usize,
    /// The active input features, in order.
    pub(super) runs: &'a [Range<usize>],
    /// The active outputs, increasing.
    pub(super) outputs: &'a [usize],
    pub(super) bias: Option<&'a [f32]>,
    pub(super) epilogue: Epilogue<'a>,
}

/// Where a tile reads and keeps its sums: its rows' gathered features and its weight rows,
/// the runs of the current block, and its vectors of partial sums (`ldp` floats a row
/// apart).
#[cfg(target_arch = "x86_64")]
struct At<'a, const O: usize> {
    x: *const f32,
    ldx: usize,
    weight: [*const f32; O],
    runs: &'a [Range<usize>],
    partial: *mut f32,
    ldp: usize,
}

impl Layer<'_> {
    /// For every row `n` of `input` (`[rows, in_features]`) and active output `o`:
    /// `output[n, o] = epilogue_o(bias[o] + sum over active features f of input[n, f] *
    /// weight[o, f])`; `output` is `[rows, out_features]`, its inactive outputs left as they
    /// are. `partial` holds [`partial_len`] floats for the rows. Each block of weight rows
    /// is used by every row of `input` in turn, so a thread's rows should fit in L2.
    ///
    /// # Panics
    /// If the lengths do not match the layer, a run or output lies outside it, or
    /// [`available`] is false.
    pub(super) fn rows(&self, input: &[f32], partial: &mut [f32], output: &mut [f32]) {
        let (ins, outs) = (self.in_features, self.out_features);
        let op = "linear_forward_active";
        assert_eq!(self.weight.len(), outs * ins, "{op}: weight length");
        assert!(
            self.runs
                .iter()
                .all(|run| run.start <= run.end && run.end <= ins),
            "{op}: features past the input"
        );
        assert!(
            self.outputs.iter().all(|&o| o < outs),
            "{op}: outputs past the layer"
        );
        let rows = output.len() / outs.max(1);
        assert!(
            output.len() == rows * outs && input.len() == rows * ins,
            "{op}: rows of input and output differ"
        );
        let width = self.outputs.len();
        assert!(
            partial.len() >= partial_len(rows, width),
            "{op}: partial sums buffer too short"
        );
        assert!(available(), "{op}: the CPU lacks AVX-512");
        let blocks = feature_blocks(self.runs);
        let mut gathered = AlignedFloats::zeroed(ROWS * FEATURE_BLOCK);
        let mut weights = AlignedFloats::zeroed(OUTPUTS * FEATURE_BLOCK);
        for (b, runs) in blocks.iter().enumerate() {
            let ends = (b == 0, b + 1 == blocks.len());
            // NOTE: when the weight rows are gathered (see `outputs_of`) and all fit, they
            // are gathered once for every tile of rows: gathered again for each, they took
            // most of a small layer's time (the second linear layer of MnistNet, 64 x 10).
            let once = gathers_weights(runs) && width <= GATHERED_OUTPUTS;
            if once {
                weights.grow(width * FEATURE_BLOCK);
                for (&o, dst) in self
                    .outputs
                    .iter()
                    .zip(weights.chunks_exact_mut(FEATURE_BLOCK))
                {
                    gather(&self.weight[o * ins..][..ins], runs, dst);
                }
            }
            let mut row = 0;
            while row < rows {
                let x = (input, row, &mut gathered[..], &mut weights[..], once);
                row += match rows - row {
                    8.. => self.outputs_of::<8>(runs, ends, x, partial, output),
                    4.. => self.outputs_of::<4>(runs, ends, x, partial, output),
                    2.. => self.outputs_of::<2>(runs, ends, x, partial, output),
                    _ => self.outputs_of::<1>(runs, ends, x, partial, output),
                };
            }
        }
    }

    /// Rows `row..row + R` of `input` over the features of `runs` (one block; `ends` tells
    /// whether it is the first and the last) for every active output; returns `R`.
    ///
    /// NOTE: the rows' features of the block are first gathered one after another into
    /// `gathered`: the rows of a flattened map are often a multiple of 4 KiB apart
    /// (MnistNet's 9216 features are 36 KiB), so that read in place the same features of
    /// every row, and of every weight row, fell into the same few sets of the L1 cache and
    /// evicted each other. When the runs are shorter than a vector on average (a layer
    /// after a pruned linear layer: runs of one feature), each tile's weight rows are
    /// gathered too, into `weights` (unless `gathered_once`: then `weights` holds every
    /// active output's row already), so that the tile reads whole vectors instead of one
    /// masked lane per run.
    #[allow(clippy::type_complexity)]
    fn outputs_of<const R: usize>(
        &self,
        runs: &[Range<usize>],
        ends: (bool, bool),
        (input, row, gathered, weights, gathered_once): (
            &[f32],
            usize,
            &mut [f32],
            &mut [f32],
            bool,
        ),
        partial: &mut [f32],
        output: &mut [f32],
    ) -> usize {
        let ins = self.in_features;
        for (r, dst) in gathered.chunks_exact_mut(FEATURE_BLOCK).take(R).enumerate() {
            gather(&input[(row + r) * ins..][..ins], runs, dst);
        }
        let whole = 0..runs.iter().map(Range::len).sum();
        let short = gathers_weights(runs);
        for (i, block) in self.outputs.chunks(OUTPUTS).enumerate() {
            let (runs, weights) = if short {
                let weight_rows = if gathered_once {
                    &mut weights[i * OUTPUTS * FEATURE_BLOCK..]
                } else {
                    for (&o, dst) in block.iter().zip(weights.chunks_exact_mut(FEATURE_BLOCK)) {
                        gather(&self.weight[o * ins..][..ins], runs, dst);
                    }
                    &mut weights[..]
                };
                (std::slice::from_ref(&whole), Some(&*weight_rows))
            } else {
                (runs, None)
            };
            let at = (runs, ends, &*gathered, row, i * OUTPUTS);
            match block.len() {
                3 => self.tile::<R, 3>(block, at, weights, partial, output),
                2 => self.tile::<R, 2>(block, at, weights, partial, output),
                _ => self.tile::<R, 1>(block, at, weights, partial, output),
            }
        }
        R
    }

    /// Rows `row..row + R` (their features of the block gathered in `gathered`,
    /// [`FEATURE_BLOCK`] apart) and the `O` outputs of `block` (the `first_output`-th active
    /// output on) over one block of features; after the last, the sums go through the bias
    /// and epilogue into `output`. The weight rows are read in place at the features of
    /// `runs`, or, given `weights`, are its rows ([`FEATURE_BLOCK`] apart) gathered as the
    /// input rows are, `runs` then being the one run of all the block's features.
    #[allow(clippy::type_complexity)]
    fn tile<const R: usize, const O: usize>(
        &self,
        block: &[usize],
        (runs, (first, last), gathered, row, first_output): (
            &[Range<usize>],
            (bool, bool),
            &[f32],
            usize,
            usize,
        ),
        weights: Option<&[f32]>,
        partial: &mut [f32],
        output: &mut [f32],
    ) {
        let (ins, outs) = (self.in_features, self.out_features);
        let ldp = self.outputs.len() * LANES;
        assert!(R <= ROWS && O <= OUTPUTS && block.len() == O);
        let features: usize = runs.iter().map(Range::len).sum();
        assert!(
            features <= FEATURE_BLOCK
                && R * FEATURE_BLOCK <= gathered.len()
                && (row + R) * ldp <= partial.len(),
            "tile rows past the input"
        );
        #[cfg(target_arch = "x86_64")]
        let sums = {
            let at = At {
                x: gathered.as_ptr(),
                ldx: FEATURE_BLOCK,
                weight: std::array::from_fn(|i| match weights {
                    Some(rows) => rows[i * FEATURE_BLOCK..][..FEATURE_BLOCK].as_ptr(),
                    None => self.weight[block[i] * ins..].as_ptr(),
                }),
                runs,
                partial: partial[row * ldp + first_output * LANES..].as_mut_ptr(),
                ldp,
            };
            // SAFETY: the CPU has AVX-512F (asserted by `rows`); the `R` gathered rows hold
            // the block's features (asserted here); rows `block` of the weight hold `ins`
            // features each and every run lies within `ins` (asserted by `rows`), or the
            // gathered weight rows hold `FEATURE_BLOCK` (sliced above) and the one run
            // reaches at most `features <= FEATURE_BLOCK`; and
            // rows `row..row + R` of `partial` hold `O` vectors from `first_output` (the
            // outputs of `block` are among the `ldp / LANES` active ones).
            unsafe { x86::tile::<R, O>(&at, first, last) }
        };
        #[cfg(not(target_arch = "x86_64"))]
        let sums = {
            // `rows` asserts `available`, which is false off x86-64.
            let _ = (runs, first, first_output);
            [[0.0_f32; O]; R]
        };
        if !last {
            return;
        }
        for (r, sums) in sums.iter().enumerate() {
            let out_row = &mut output[(row + r) * outs..][..outs];
            for (&o, &sum) in block.iter().zip(sums) {
                let bias = self.bias.map_or(0.0, |b| b[o]);
                out_row[o] = sum;
                self.epilogue
                    .apply_in_place(o, bias, std::slice::from_mut(&mut out_row[o]));
            }
        }
    }
}

/// Whether the tiles read a block of `runs` from gathered weight rows: when its runs are
/// shorter than a vector on average.
fn gathers_weights(runs: &[Range<usize>]) -> bool {
    runs.len() * LANES > runs.iter().map(Range::len).sum()
}

/// Copies the features of `runs` of `row` one after another to the front of `dst`.
fn gather(row: &[f32], runs: &[Range<usize>], dst: &mut [f32]) {
    let mut at = 0;
    for run in runs {
        // A run of one feature (a linear layer after a linear layer) is copied in line:
        // `copy_from_slice` would call `memcpy` for each.
        match run.len() {
            1 => dst[at] = row[run.start],
            len => dst[at..at + len].copy_from_slice(&row[run.clone()]),
        }
        at += run.len();
    }
}

/// `runs` cut into blocks of at most [`FEATURE_BLOCK`] features (one empty block when
/// there are none).
fn feature_blocks(runs: &[Range<usize>]) -> Vec<Vec<Range<usize>>> {
    let mut blocks = vec![Vec::new()];
    let mut room = FEATURE_BLOCK;
    for run in runs {
        let mut start = run.start;
        while start < run.end {
            if room == 0 {
                blocks.push(Vec::new());
                room = FEATURE_BLOCK;
            }
            let end = run.end.min(start + room);
            blocks.last_mut().expect("a block").push(start..end);
            room -= end - start;
            start = end;
        }
    }
    blocks
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{At, LANES};
    use std::arch::x86_64::{
        __m512, __mmask16, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_maskz_loadu_ps,
        _mm512_reduce_add_ps, _mm512_setzero_ps, _mm512_storeu_ps,
    };

    /// Adds `x[r, f] * weight[o][f]` over the features `f` of `at.runs` to the tile's sums,
    /// where row `r` of `at.x` (`ldx` apart) holds the runs' features one after another:
    /// starting from zero if `first`, else from its vectors in `partial`; returning the sums
    /// if `last` (zeros otherwise), else storing the vectors back.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; `at.x` must hold `R` rows `ldx` apart of the runs'
    /// total length, and each pointer of `at.weight` one row reaching past every run's end;
    /// `at.partial` must hold `R` rows `ldp` apart of `O` vectors.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile<const R: usize, const O: usize>(
        at: &At<'_, O>,
        first: bool,
        last: bool,
    ) -> [[f32; O]; R] {
        let slot = |r: usize, o: usize| at.partial.wrapping_add(r * at.ldp + o * LANES);
        let mut acc = [[_mm512_setzero_ps(); O]; R];
        if !first {
            for (r, acc) in acc.iter_mut().enumerate() {
                for (o, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: the slot lies within `partial` (caller).
                    *acc = unsafe { _mm512_loadu_ps(slot(r, o)) };
                }
            }
        }
        let (weight, mut gathered) = (&at.weight, at.x);
        for run in at.runs {
            // The run's features start at `gathered` in the rows, at `run.start` in the
            // weight rows.
            let x = gathered.wrapping_sub(run.start);
            gathered = gathered.wrapping_add(run.len());
            let mut f = run.start;
            // NOTE: whole vectors take plain loads and only a run's tail a masked one, which
            // may cost a vector operation besides the load on some CPUs.
            while f + LANES <= run.end {
                // SAFETY: the features `f..f + LANES` are in the run (caller).
                let w: [__m512; O] =
                    std::array::from_fn(|o| unsafe { _mm512_loadu_ps(weight[o].add(f)) });
                for (r, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: as above, in row `r`.
                    let v = unsafe { _mm512_loadu_ps(x.wrapping_add(r * at.ldx + f)) };
                    for o in 0..O {
                        acc[o] = _mm512_fmadd_ps(v, w[o], acc[o]);
                    }
                }
                f += LANES;
            }
            if f < run.end {
                let mask = ((1_u32 << (run.end - f)) - 1) as __mmask16;
                // SAFETY: the lanes of `mask` are features of the run (caller); the others
                // are not read.
                let w: [__m512; O] = std::array::from_fn(|o| unsafe {
                    _mm512_maskz_loadu_ps(mask, weight[o].add(f))
                });
                for (r, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: as above, in row `r`.
                    let v = unsafe { _mm512_maskz_loadu_ps(mask, x.wrapping_add(r * at.ldx + f)) };
                    for o in 0..O {
                        acc[o] = _mm512_fmadd_ps(v, w[o], acc[o]);
                    }
                }
            }
        }
        if last {
            // SAFETY: the CPU supports AVX-512F (caller).
            return unsafe { lane_sums(acc) };
        }
        for (r, acc) in acc.iter().enumerate() {
            for (o, &acc) in acc.iter().enumerate() {
                // SAFETY: as above.
                unsafe { _mm512_storeu_ps(slot(r, o), acc) };
            }
        }
        [[0.0; O]; R]
    }

    /// The sums of the lanes of each vector of a tile.
    ///
    /// NOTE: out of line: written into [`tile`] the reductions made the first linear layer
    /// of MnistNet 50% slower, and the closures of `map`, which are not inlined into a
    /// function with another target feature, cost a call per vector (a small layer's
    /// tiles are mostly these sums).
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[inline(never)]
    unsafe fn lane_sums<const R: usize, const O: usize>(acc: [[__m512; O]; R]) -> [[f32; O]; R] {
        let mut sums = [[0.0; O]; R];
        for (sums, acc) in sums.iter_mut().zip(acc) {
            for (sum, acc) in sums.iter_mut().zip(acc) {
                *sum = _mm512_reduce_add_ps(acc);
            }
        }
        sums
    }
}
