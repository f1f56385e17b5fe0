//! Fully connected layers: `y = x W^T + b` with a fused epilogue, on inputs
//! `[batch, in_features]` and weights `[out_features, in_features]` as PyTorch stores them.
//!
//! Two families, written once against the vector interface of [`crate::simd`]:
//! - [`PackedLinear`]: the active part of the weight transposed once, when an inference
//!   plan is built, into the layout its register tiles stream;
//! - [`linear_forward_active`] and [`linear_backward_active`]: channel skipping on the full
//!   layer's weight, read in place (dot products for a small batch, register tiles for a
//!   larger one).

use std::ops::Range;

use crate::skip::runs;

mod dot;
mod packed;
mod skip;

pub use packed::PackedLinear;
pub use skip::{ActiveLinear, LinearGradients, linear_backward_active, linear_forward_active};

/// The sizes of a fully connected layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearGeometry {
    /// Rows of the input and output.
    pub batch: usize,
    /// Features of each input row.
    pub in_features: usize,
    /// Features of each output row.
    pub out_features: usize,
    /// Consecutive input features per input channel (at least 1, dividing `in_features`).
    pub group: usize,
}

impl LinearGeometry {
    /// The number of input channels, `in_features / group`.
    pub fn in_channels(&self) -> usize {
        self.in_features / self.group.max(1)
    }

    #[track_caller]
    pub(crate) fn assert_valid(&self, op: &str) {
        assert!(
            self.group >= 1 && self.in_features.is_multiple_of(self.group),
            "{op}: {} input features are not channels of {} features",
            self.in_features,
            self.group
        );
    }

    /// The active input features, as runs of consecutive features.
    pub(crate) fn feature_runs(&self, inputs: &[usize]) -> Vec<Range<usize>> {
        runs(inputs)
            .into_iter()
            .map(|r| r.start * self.group..r.end * self.group)
            .collect()
    }
}
