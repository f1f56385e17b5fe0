//! A fully connected layer whose weight is transposed once, when an inference plan is built,
//! into the layout its forward kernel streams.
//!
//! NOTE: a general matrix product copies (packs) both operands on every call; for a linear
//! layer at inference the weight is the large operand (MnistNet's first layer: 4.7 MB) and
//! never changes, so repacking it on every batch cost as much as the arithmetic. Here the
//! weight is stored `[in_features, out_features]`: the kernel broadcasts input features
//! straight from the input rows and multiplies them by whole contiguous rows of the
//! transposed weight, with the bias and activation applied as results leave the registers.
//! With a small batch the weight is read once, split between the threads by input feature;
//! with a large one the rows of the batch are split between the threads and the weight is
//! read in blocks that stay in L2 while every row of a thread's share uses them.
//!
//! The register tiles are written once for every instruction set (`tile.rs`); a layer runs
//! those of the set it was packed for, [`simd::active`]'s unless
//! [`with_isa`](PackedLinear::with_isa) chose another.

use std::ops::Range;

use rayon::prelude::*;

use super::LinearGeometry;
use crate::aligned::AlignedFloats;
use crate::denormal::with_denormals_flushed;
use crate::parallel::for_each_task;
use crate::scratch::grown;
use crate::simd::{self, Isa, IsaError};
use crate::skip::{ActiveChannels, Epilogue, SkipScratch};

mod tile;

use crate::tuning::packed_linear::{
    FEATURE_PARTS_PER_THREAD, PARALLEL_MACS, PARALLEL_REPACK, ROW_BATCH, TILE_FEATURES,
    TILE_OUTPUTS,
};
use tile::{LaneActivation, Layer, MicroKernel};

/// A fully connected layer `y = x W^T + b` with the active part of its weight `W`
/// (`[out_features, in_features]`, as PyTorch stores it) transposed once for
/// [`forward`](Self::forward).
#[derive(Clone)]
pub struct PackedLinear {
    in_features: usize,
    out_features: usize,
    /// The active input features as runs, in order; packed row `k` is the `k`-th of them.
    runs: Vec<Range<usize>>,
    /// The active outputs, increasing.
    outputs: Vec<usize>,
    /// `W^T` restricted to the active features and outputs, `[runs' total length,
    /// outputs.len()]` row-major.
    weight_t: AlignedFloats,
    /// The tiles [`forward`](Self::forward) runs.
    kernel: MicroKernel,
}

impl std::fmt::Debug for PackedLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedLinear")
            .field("in_features", &self.in_features)
            .field("out_features", &self.out_features)
            .field("active_outputs", &self.outputs.len())
            .field("isa", &self.isa())
            .finish_non_exhaustive()
    }
}

impl PackedLinear {
    /// Packs `weight`, `[out_features, in_features]` row-major, every feature active, for
    /// the instruction set [`simd::active`] chooses.
    ///
    /// # Panics
    /// If `weight.len() != out_features * in_features`.
    pub fn new(in_features: usize, out_features: usize, weight: &[f32]) -> Self {
        let g = LinearGeometry {
            batch: 0,
            in_features,
            out_features,
            group: in_features.max(1),
        };
        let inputs: Vec<usize> = (0..usize::from(in_features > 0)).collect();
        let outputs: Vec<usize> = (0..out_features).collect();
        let active = ActiveChannels {
            inputs: &inputs,
            outputs: &outputs,
        };
        Self::with_active(&g, active, weight)
    }

    /// Packs the active part of `weight` (`[out_features, in_features]` row-major): the
    /// active outputs' rows, and the features of the active input channels (channels of
    /// `g.group` features, as [`linear_forward_active`](super::linear_forward_active)
    /// takes them). `g.batch` is ignored. Inactive outputs are never written by
    /// [`forward`](Self::forward) and inactive features never read. The layer runs the
    /// instruction set [`simd::active`] chooses.
    ///
    /// # Panics
    /// If `g.group` does not divide `g.in_features`, the weight's length differs from
    /// `out_features * in_features`, or an active list is not strictly increasing within
    /// its channel count.
    pub fn with_active(g: &LinearGeometry, active: ActiveChannels<'_>, weight: &[f32]) -> Self {
        let mut packed = Self {
            in_features: 0,
            out_features: 0,
            runs: Vec::new(),
            outputs: Vec::new(),
            weight_t: AlignedFloats::default(),
            kernel: MicroKernel::for_isa(simd::active()),
        };
        packed.repack(g, active, weight);
        packed
    }

    /// The same layer running the tiles of `isa` (for tests and measurements: the packed
    /// weight is the same for every set).
    ///
    /// # Panics
    /// If this CPU cannot run `isa`.
    #[must_use]
    pub fn with_isa(mut self, isa: Isa) -> Self {
        if !isa.is_supported() {
            let e = IsaError::Unsupported {
                wanted: isa,
                supported: Isa::supported(),
            };
            panic!("PackedLinear: {e}");
        }
        self.kernel = MicroKernel::for_isa(isa);
        self
    }

    /// The instruction set whose tiles [`forward`](Self::forward) runs.
    pub fn isa(&self) -> Isa {
        self.kernel.isa()
    }

    /// Packs another layer (or the same one with other active channels) into `self`,
    /// reusing its buffers: [`with_active`](Self::with_active) without the allocations.
    ///
    /// # Panics
    /// As [`with_active`](Self::with_active).
    pub fn repack(&mut self, g: &LinearGeometry, active: ActiveChannels<'_>, weight: &[f32]) {
        let op = "PackedLinear";
        g.assert_valid(op);
        let (ins, outs) = (g.in_features, g.out_features);
        assert_eq!(
            weight.len(),
            ins * outs,
            "{op}: weight length vs {outs} x {ins}"
        );
        active.check(op, g.in_channels(), outs);
        self.in_features = ins;
        self.out_features = outs;
        self.runs = g.feature_runs(active.inputs);
        self.outputs.clear();
        self.outputs.extend_from_slice(active.outputs);
        let width = active.outputs.len();
        let inner: usize = self.runs.iter().map(Range::len).sum();
        self.weight_t = AlignedFloats::zeroed(inner * width);
        // NOTE: transposed in tiles of TILE_FEATURES features x TILE_OUTPUTS outputs, whose
        // rows and columns both stay in L1 (column by column, the reads of one feature from
        // every active row missed the cache each time), and in parallel when large: a
        // skipping layer repacks on every call.
        let mut tiles = Vec::new();
        let mut rest = &mut self.weight_t[..];
        for run in &self.runs {
            for start in run.clone().step_by(TILE_FEATURES) {
                let features = start..(start + TILE_FEATURES).min(run.end);
                let (tile, after) = rest.split_at_mut(features.len() * width);
                tiles.push((features, tile));
                rest = after;
            }
        }
        let transpose = |(features, tile): (Range<usize>, &mut [f32])| {
            for (block, outputs) in active.outputs.chunks(TILE_OUTPUTS).enumerate() {
                for (j, &o) in outputs.iter().enumerate() {
                    let column = block * TILE_OUTPUTS + j;
                    for (f, &w) in weight[o * ins..][features.clone()].iter().enumerate() {
                        tile[f * width + column] = w;
                    }
                }
            }
        };
        if inner * width >= PARALLEL_REPACK {
            tiles.into_par_iter().for_each(transpose);
        } else {
            tiles.into_iter().for_each(transpose);
        }
    }

    /// Input features per row.
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// Output features per row.
    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// Multiply-accumulates per row: active features times active outputs.
    pub fn macs_per_row(&self) -> usize {
        self.weight_t.len()
    }

    /// `output[n, o] = epilogue_o(bias[o] + sum over active features f of input[n, f] *
    /// W[o, f])` for the active outputs `o` of the `batch` rows of `input` (`[batch,
    /// in_features]`); `output` is `[batch, out_features]`, its inactive outputs left as
    /// they are. `scratch` is reused between calls. Runs on rayon's global pool when the
    /// work is large.
    ///
    /// # Panics
    /// If a slice's length differs from `batch * in_features` (input), `out_features`
    /// (bias, slopes) or `batch * out_features` (output).
    pub fn forward(
        &self,
        batch: usize,
        input: &[f32],
        bias: Option<&[f32]>,
        epilogue: Epilogue<'_>,
        scratch: &mut SkipScratch,
        output: &mut [f32],
    ) {
        let op = "PackedLinear::forward";
        let (features, outs) = (self.in_features, self.out_features);
        assert_eq!(input.len(), batch * features, "{op}: input length");
        assert_eq!(output.len(), batch * outs, "{op}: output length");
        if let Some(bias) = bias {
            assert_eq!(bias.len(), outs, "{op}: bias length");
        }
        epilogue.check(op, outs);
        let width = self.outputs.len();
        if batch == 0 || width == 0 {
            return;
        }
        let activation = LaneActivation::new(bias, epilogue, &self.outputs);
        let SkipScratch {
            product, gathered, ..
        } = scratch;
        // The active outputs are computed into `gathered` and scattered, unless all are.
        if width == outs {
            self.forward_tiles(batch, input, &activation, product, output);
        } else {
            let target = grown(gathered, batch * width);
            self.forward_tiles(batch, input, &activation, product, target);
            for (row, values) in output
                .chunks_exact_mut(outs)
                .zip(target.chunks_exact(width))
            {
                for (&o, &v) in self.outputs.iter().zip(values) {
                    row[o] = v;
                }
            }
        }
    }

    /// The forward with the tiles into `target` (`[batch, active outputs]`).
    fn forward_tiles(
        &self,
        batch: usize,
        input: &[f32],
        activation: &LaneActivation,
        partials: &mut Vec<f32>,
        target: &mut [f32],
    ) {
        let width = self.outputs.len();
        let inner = self.weight_t.len() / width;
        let layer = Layer {
            weight_t: &self.weight_t,
            runs: &self.runs,
            in_features: self.in_features,
            width,
            kernel: self.kernel,
        };
        let threads = if batch * self.weight_t.len() >= PARALLEL_MACS {
            rayon::current_num_threads()
        } else {
            1
        };
        if threads == 1 {
            with_denormals_flushed(|| layer.rows(input, 0..inner, Some(activation), target));
        } else if batch >= ROW_BATCH * threads {
            let rows = batch.div_ceil(threads).next_multiple_of(self.kernel.rows());
            let tasks = input
                .chunks(rows * self.in_features)
                .zip(target.chunks_mut(rows * width))
                .collect();
            for_each_task(tasks, |_, (x, out)| {
                with_denormals_flushed(|| layer.rows(x, 0..inner, Some(activation), out))
            });
        } else {
            // Each part of the features is summed into its own partial result; the partials
            // are then added in a fixed order and activated. Several parts per thread, so
            // that a thread that starts late takes fewer of them.
            let parts = threads * FEATURE_PARTS_PER_THREAD;
            let partials = grown(partials, parts * batch * width);
            let tasks = partials.chunks_mut(batch * width).enumerate().collect();
            for_each_task(tasks, |_, (part, partial)| {
                let share = inner * part / parts..inner * (part + 1) / parts;
                with_denormals_flushed(|| layer.rows(input, share, None, partial));
            });
            let (first, rest) = partials.split_at(batch * width);
            target.copy_from_slice(first);
            for partial in rest.chunks_exact(batch * width) {
                target.iter_mut().zip(partial).for_each(|(t, &p)| *t += p);
            }
            for row in target.chunks_exact_mut(width) {
                activation.apply(row);
            }
        }
    }
}

#[cfg(test)]
mod tests;
