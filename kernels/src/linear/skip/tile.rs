//! The batch kernel of [`linear_forward_active`](super::linear_forward_active): register
//! tiles of input rows by active outputs, each accumulating dot products over the active
//! feature runs while reading the weight rows in place; written once for every instruction
//! set, with the tile shapes each set runs.
//!
//! NOTE: the features are taken in blocks of [`FEATURE_BLOCK`]: a tile's rows of a block,
//! gathered (16 KiB), stay in L1 while every block of weight rows goes through them, and
//! the weight rows of a block stay in L2 while every tile of rows uses them. Without blocks
//! every load of a tile came from L2 (11 lines for 24 multiply-adds), with them 3 do.
//! Between blocks a tile keeps its sums as vectors in a buffer; after the last, the lanes
//! of each are added (outside the tile's loop, which then keeps its registers).
//!
//! NOTE: the weight rows are read in place, and their streams break at every run of
//! active features. Measured with AVX-512 before the weights were put on a cache line, for
//! MnistNet's first layer at batch 64 with every other 144-feature channel kept: the tiles
//! took about 196 µs reading the weight rows in place against 123 µs reading them
//! gathered, but gathering cost more than it saved (the copy waits on memory as the tiles
//! did). Each block's weight rows gathered before the tiles (300 to 360 µs in all against
//! 250 to 280 µs in place), the vectors a thread's first tile of rows read stored for its
//! later ones, software prefetches of the next block, one loop over a block's vectors
//! instead of one per run, and tiles of 12 rows by 2 outputs, 6 by 4 or 16 by 1 were all
//! no faster (`cargo bench --bench kernels -- linear`).

use std::ops::Range;

use crate::aligned::AlignedFloats;
use crate::simd::Isa;
use crate::simd::vector::{Kernel, Vector, dispatch};
use crate::skip::Epilogue;
use crate::tuning::skip_linear::{FEATURE_BLOCK, GATHERED_OUTPUTS};

/// The most lanes of a vector of any instruction set: the partial sums are laid out for
/// the set's own, in a buffer sized for these.
const MAX_LANES: usize = 16;

/// The floats of the buffer in which [`Layer::rows`] keeps the sums of `rows` rows.
pub(super) fn partial_len(rows: usize, outputs: usize) -> usize {
    rows * outputs * MAX_LANES
}

/// The tiles of one instruction set: `R` (then `H`, `Q`, 1) input rows by `O` (then 2, 1)
/// active outputs.
#[derive(Clone, Copy)]
pub(super) struct MicroKernel {
    isa: Isa,
    compute: fn(Isa, Rows<'_, '_>),
}

impl MicroKernel {
    /// The tiles of `isa`.
    ///
    /// NOTE: tile shapes `R x O` (input rows by weight rows): `R * O` vectors of sums in
    /// registers, beside the `O` weight vectors and the input vector of a step. Measured on
    /// the 2-core AMD EPYC (Zen 4), each set forced, MnistNet's first linear layer with
    /// every other channel and output active at batch 64, one thread, CPU time per call:
    /// - AVX-512 (32 registers of 16): 8 x 3, 24 sums, 11 loads for 24 multiply-adds:
    ///   440 µs (445 before the kernel was generic); then 4, 2 and single rows.
    /// - AVX2 (16 registers of 8): 4 x 3, 12 sums: 447 µs; 6 x 2 452, 5 x 2 461, 4 x 2
    ///   464, 3 x 3 480, 2 x 2 721.
    /// - NEON (32 registers of 4): AVX-512's shapes, by the same register budget; not
    ///   measured on hardware (tested under emulation).
    /// - Portable (8-float arrays, two SSE registers each on a default x86-64 build):
    ///   4 x 1: 1,290 µs; 2 x 2 1,360, 2 x 3 1,430, 3 x 1 1,515, 2 x 1 1,660.
    pub(super) fn for_isa(isa: Isa) -> Self {
        match isa {
            Isa::Avx512 | Isa::Neon => Self::of::<8, 4, 2, 3>(isa),
            Isa::Avx2 => Self::of::<4, 2, 1, 3>(isa),
            Isa::Portable => Self::of::<4, 2, 1, 1>(isa),
        }
    }

    fn of<const R: usize, const H: usize, const Q: usize, const O: usize>(isa: Isa) -> Self {
        Self {
            isa,
            compute: compute::<R, H, Q, O>,
        }
    }
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

impl Layer<'_> {
    /// For every row `n` of `input` (`[rows, in_features]`) and active output `o`:
    /// `output[n, o] = epilogue_o(bias[o] + sum over active features f of input[n, f] *
    /// weight[o, f])`; `output` is `[rows, out_features]`, its inactive outputs left as they
    /// are. `partial` holds [`partial_len`] floats for the rows. Each block of weight rows
    /// is used by every row of `input` in turn, so a thread's rows should fit in L2.
    ///
    /// # Panics
    /// If the lengths do not match the layer, a run or output lies outside it, or the CPU
    /// lacks the kernel's instruction set.
    pub(super) fn rows(
        &self,
        kernel: MicroKernel,
        input: &[f32],
        partial: &mut [f32],
        output: &mut [f32],
    ) {
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
        let work = Rows {
            layer: self,
            input,
            rows,
            partial,
            output,
        };
        (kernel.compute)(kernel.isa, work);
    }
}

/// The work of one call of the tiles, checked by [`Layer::rows`].
pub(super) struct Rows<'a, 'b> {
    layer: &'a Layer<'b>,
    input: &'a [f32],
    rows: usize,
    partial: &'a mut [f32],
    output: &'a mut [f32],
}

/// [`Layer::rows`]'s tiles, once its checks are made.
fn compute<const R: usize, const H: usize, const Q: usize, const O: usize>(
    isa: Isa,
    work: Rows<'_, '_>,
) {
    // SAFETY: `Layer::rows` checked the lengths of the input, output and partial sums, and
    // that every run and output lies within the layer.
    unsafe { dispatch(isa, Compute::<R, H, Q, O>(work)) }
}

/// [`compute`]'s work as a [`Kernel`].
struct Compute<'a, 'b, const R: usize, const H: usize, const Q: usize, const O: usize>(
    Rows<'a, 'b>,
);

impl<const R: usize, const H: usize, const Q: usize, const O: usize> Kernel
    for Compute<'_, '_, R, H, Q, O>
{
    type Output = ();

    /// # Safety
    /// As [`Layer::rows`] checks.
    #[inline(always)]
    unsafe fn run<V: Vector>(self) {
        let Rows {
            layer,
            input,
            rows,
            partial,
            output,
        } = self.0;
        let (ins, width) = (layer.in_features, layer.outputs.len());
        let blocks = feature_blocks(layer.runs);
        let mut gathered = AlignedFloats::zeroed(R * FEATURE_BLOCK);
        let mut weights = AlignedFloats::zeroed(O * FEATURE_BLOCK);
        for (b, runs) in blocks.iter().enumerate() {
            let ends = (b == 0, b + 1 == blocks.len());
            // NOTE: when the weight rows are gathered (see `outputs_of`) and all fit, they
            // are gathered once for every tile of rows: gathered again for each, they took
            // most of a small layer's time (the second linear layer of MnistNet, 64 x 10).
            let once = gathers_weights::<V>(runs) && width <= GATHERED_OUTPUTS;
            if once {
                weights.grow(width * FEATURE_BLOCK);
                for (&o, dst) in layer
                    .outputs
                    .iter()
                    .zip(weights.chunks_exact_mut(FEATURE_BLOCK))
                {
                    gather(&layer.weight[o * ins..][..ins], runs, dst);
                }
            }
            let mut row = 0;
            while row < rows {
                let at = Block {
                    runs,
                    ends,
                    input,
                    row,
                    gathered: &mut gathered,
                    weights: &mut weights,
                    gathered_once: once,
                };
                // SAFETY: forwarded; rows `row..row + R` (or `H`, `Q`, 1) lie within `rows`.
                row += unsafe {
                    match rows - row {
                        left if left >= R => outputs_of::<V, R, O>(layer, at, partial, output),
                        left if left >= H => outputs_of::<V, H, O>(layer, at, partial, output),
                        left if left >= Q => outputs_of::<V, Q, O>(layer, at, partial, output),
                        _ => outputs_of::<V, 1, O>(layer, at, partial, output),
                    }
                };
            }
        }
    }
}

/// One block of features for one tile of rows: the block's runs, whether it is the first
/// and the last, the rows from `row` and the buffers their features and the weight rows'
/// are gathered in.
struct Block<'a> {
    runs: &'a [Range<usize>],
    ends: (bool, bool),
    input: &'a [f32],
    row: usize,
    gathered: &'a mut [f32],
    weights: &'a mut [f32],
    /// Whether `weights` holds every active output's row of the block already.
    gathered_once: bool,
}

/// Rows `row..row + R` of `input` over the features of one block for every active output;
/// after the last block, the sums go through the bias and epilogue into `output`. Returns
/// `R`.
///
/// NOTE: the rows' features of the block are first gathered one after another into
/// `gathered`: the rows of a flattened map are often a multiple of 4 KiB apart (MnistNet's
/// 9216 features are 36 KiB), so that read in place the same features of every row, and of
/// every weight row, fell into the same few sets of the L1 cache and evicted each other.
/// When the runs are shorter than a vector on average (a layer after a pruned linear layer:
/// runs of one feature), each tile's weight rows are gathered too, into `weights` (unless
/// `gathered_once`: then `weights` holds every active output's row already), so that the
/// tile reads whole vectors instead of one masked lane per run.
///
/// # Safety
/// The CPU must run `V`; the rows lie within the input and output, and `partial` holds
/// their vectors ([`Layer::rows`] checks).
#[inline(always)]
unsafe fn outputs_of<V: Vector, const R: usize, const O: usize>(
    layer: &Layer<'_>,
    at: Block<'_>,
    partial: &mut [f32],
    output: &mut [f32],
) -> usize {
    let Block {
        runs,
        ends: (first, last),
        input,
        row,
        gathered,
        weights,
        gathered_once,
    } = at;
    let (ins, outs) = (layer.in_features, layer.out_features);
    for (r, dst) in gathered.chunks_exact_mut(FEATURE_BLOCK).take(R).enumerate() {
        gather(&input[(row + r) * ins..][..ins], runs, dst);
    }
    let whole = 0..runs.iter().map(Range::len).sum();
    let short = gathers_weights::<V>(runs);
    let ldp = layer.outputs.len() * V::LANES;
    assert!(
        whole.end <= FEATURE_BLOCK && R * FEATURE_BLOCK <= gathered.len(),
        "tile rows past the input"
    );
    assert!((row + R) * ldp <= partial.len(), "tile rows past the sums");
    for (i, block) in layer.outputs.chunks(O).enumerate() {
        let (runs, weight_rows) = if short {
            let weight_rows = if gathered_once {
                &weights[i * O * FEATURE_BLOCK..]
            } else {
                for (&o, dst) in block.iter().zip(weights.chunks_exact_mut(FEATURE_BLOCK)) {
                    gather(&layer.weight[o * ins..][..ins], runs, dst);
                }
                &weights[..]
            };
            (std::slice::from_ref(&whole), Some(weight_rows))
        } else {
            (runs, None)
        };
        let weight_row = |j: usize| match weight_rows {
            Some(rows) => rows[j * FEATURE_BLOCK..][..FEATURE_BLOCK].as_ptr(),
            None => layer.weight[block[j] * ins..][..ins].as_ptr(),
        };
        let tile = Tile {
            x: gathered.as_ptr(),
            ldx: FEATURE_BLOCK,
            runs,
            partial: partial[row * ldp + i * O * V::LANES..].as_mut_ptr(),
            ldp,
        };
        // SAFETY: the CPU runs `V` (caller); the `R` gathered rows hold the block's
        // features (asserted above); rows `block` of the weight hold `ins` features each
        // and every run lies within `ins` (`Layer::rows` checks), or the gathered weight
        // rows hold `FEATURE_BLOCK` (sliced above) and the one run reaches at most
        // `whole.end <= FEATURE_BLOCK`; rows `row..row + R` of `partial` hold `O` vectors
        // from the `i * O`-th (the outputs of `block` are among the `ldp / LANES` active
        // ones).
        unsafe {
            match block.len() {
                3 if O >= 3 => {
                    let w = [weight_row(0), weight_row(1), weight_row(2)];
                    tile_sums::<V, R, 3>(&tile, &w, first);
                }
                2 if O >= 2 => tile_sums::<V, R, 2>(&tile, &[weight_row(0), weight_row(1)], first),
                1 => tile_sums::<V, R, 1>(&tile, &[weight_row(0)], first),
                _ => unreachable!("internal: tiles of at most {O} outputs"),
            }
        }
    }
    if last {
        for r in 0..R {
            let sums = &partial[(row + r) * ldp..][..ldp];
            let out_row = &mut output[(row + r) * outs..][..outs];
            for (&o, lanes) in layer.outputs.iter().zip(sums.chunks_exact(V::LANES)) {
                // SAFETY: the CPU runs `V` (caller); the chunk holds a vector.
                let sum = unsafe { V::load(lanes.as_ptr()).sum() };
                let bias = layer.bias.map_or(0.0, |b| b[o]);
                out_row[o] = sum;
                layer
                    .epilogue
                    .apply_in_place(o, bias, std::slice::from_mut(&mut out_row[o]));
            }
        }
    }
    R
}

/// Where a tile reads and keeps its sums: its rows' gathered features (`ldx` apart), the
/// runs of the current block, and its vectors of partial sums (`ldp` floats a row apart).
struct Tile<'a> {
    x: *const f32,
    ldx: usize,
    runs: &'a [Range<usize>],
    partial: *mut f32,
    ldp: usize,
}

/// Adds `x[r, f] * weight[o][f]` over the features `f` of `at.runs` to the tile's sums,
/// where row `r` of `at.x` holds the runs' features one after another: starting from zero
/// if `first`, else from its vectors in `partial`, and storing the vectors back.
///
/// # Safety
/// The CPU must run `V`; `at.x` must hold `R` rows `ldx` apart of the runs' total length,
/// and each pointer of `weight` one row reaching past every run's end; `at.partial` must
/// hold `R` rows `ldp` apart of `O` vectors.
#[inline(always)]
unsafe fn tile_sums<V: Vector, const R: usize, const O: usize>(
    at: &Tile<'_>,
    weight: &[*const f32; O],
    first: bool,
) {
    let slot = |r: usize, o: usize| at.partial.wrapping_add(r * at.ldp + o * V::LANES);
    // SAFETY (every vector operation): the CPU runs `V`; the slots lie within `partial`,
    // the features read within the rows and the runs (caller); masked lanes are not read.
    unsafe {
        let mut acc = [[V::zero(); O]; R];
        if !first {
            for (r, acc) in acc.iter_mut().enumerate() {
                for (o, acc) in acc.iter_mut().enumerate() {
                    *acc = V::load(slot(r, o));
                }
            }
        }
        let mut gathered = at.x;
        for run in at.runs {
            // The run's features start at `gathered` in the rows, at `run.start` in the
            // weight rows.
            let x = gathered.wrapping_sub(run.start);
            gathered = gathered.wrapping_add(run.len());
            let mut f = run.start;
            // NOTE: whole vectors take plain loads and only a run's tail a masked one, which
            // may cost a vector operation besides the load on some sets.
            while f + V::LANES <= run.end {
                let mut w = [V::zero(); O];
                for o in 0..O {
                    w[o] = V::load(weight[o].add(f));
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let v = V::load(x.wrapping_add(r * at.ldx + f));
                    for o in 0..O {
                        acc[o] = v.mul_add(w[o], acc[o]);
                    }
                }
                f += V::LANES;
            }
            if f < run.end {
                let mask = V::first(run.end - f);
                let mut w = [V::zero(); O];
                for o in 0..O {
                    w[o] = V::load_masked(weight[o].add(f), mask);
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let v = V::load_masked(x.wrapping_add(r * at.ldx + f), mask);
                    for o in 0..O {
                        acc[o] = v.mul_add(w[o], acc[o]);
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (o, &acc) in acc.iter().enumerate() {
                acc.store(slot(r, o));
            }
        }
    }
}

/// Whether the tiles read a block of `runs` from gathered weight rows: when its runs are
/// shorter than a vector on average.
fn gathers_weights<V: Vector>(runs: &[Range<usize>]) -> bool {
    runs.len() * V::LANES > runs.iter().map(Range::len).sum()
}

/// Copies the features of `runs` of `row` one after another to the front of `dst`.
#[inline(always)]
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
