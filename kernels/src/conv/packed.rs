//! A convolution prepared once for repeated channel-skipping inference.

use super::implicit::{self, MicroKernel};
use super::skip::{ActiveForward, runs_implicit};
use super::{ActiveConv2d, Conv2dGeometry, forward_active_checked};
use crate::simd::{self, Isa};
use crate::skip::{ActiveChannels, Epilogue, SkipScratch};

/// A convolution's weight with its lists of active channels, and, where the implicit
/// kernel applies (unit strides, no padding), its active filters already packed for the
/// micro-kernel of the instruction set in use, so that no call packs them again (at batch 1
/// packing MnistNet's second layer cost a tenth of the call).
///
/// [`forward`](Self::forward) computes what [`conv2d_forward_active`](super::conv2d_forward_active)
/// computes with the same weight and lists, and [`forward_max_pool2`](Self::forward_max_pool2)
/// what [`conv2d_forward_active_max_pool2`](super::conv2d_forward_active_max_pool2) does.
#[derive(Clone)]
pub struct PackedConv2d {
    geometry: Conv2dGeometry,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    weight: Vec<f32>,
    /// The micro-kernel, its packed filters and the input offsets, if it applies.
    implicit: Option<(MicroKernel, Vec<f32>, Vec<usize>)>,
}

impl std::fmt::Debug for PackedConv2d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedConv2d")
            .field("geometry", &self.geometry)
            .field("active_inputs", &self.inputs.len())
            .field("active_outputs", &self.outputs.len())
            .finish_non_exhaustive()
    }
}

impl PackedConv2d {
    /// Prepares the convolution `g` (its `batch` ignored) with `weight` (`[out_channels,
    /// in_channels, kernel_h, kernel_w]`) computing the `active` channels, for the
    /// instruction set in use ([`simd::active`]).
    ///
    /// # Panics
    /// If the geometry is invalid, the weight's length differs from `g.weight_len()`, or an
    /// active list is not strictly increasing within its channel count.
    pub fn new(g: &Conv2dGeometry, active: ActiveChannels<'_>, weight: &[f32]) -> Self {
        Self::for_isa(g, active, weight, simd::active())
    }

    /// As [`new`](Self::new), for the instruction set `isa` (to compare sets in one
    /// process).
    ///
    /// # Panics
    /// As [`new`](Self::new), or if the CPU lacks `isa`.
    pub fn for_isa(
        g: &Conv2dGeometry,
        active: ActiveChannels<'_>,
        weight: &[f32],
        isa: Isa,
    ) -> Self {
        assert!(
            isa.is_supported(),
            "PackedConv2d: this CPU cannot run the {isa} kernels"
        );
        let geometry = Conv2dGeometry { batch: 0, ..*g };
        let layer = ActiveConv2d {
            geometry,
            active,
            weight,
            bias: None,
            epilogue: Epilogue::Identity,
        };
        layer.check("PackedConv2d", &[]);
        let implicit = runs_implicit(&geometry).then(|| {
            let kernel = MicroKernel::for_isa(isa);
            let (mut packed, mut offsets) = (Vec::new(), Vec::new());
            implicit::pack_filters(&geometry, active, weight, kernel, &mut packed);
            implicit::input_offsets(&geometry, active, &mut offsets);
            (kernel, packed, offsets)
        });
        Self {
            geometry,
            inputs: active.inputs.to_vec(),
            outputs: active.outputs.to_vec(),
            weight: weight.to_vec(),
            implicit,
        }
    }

    /// The geometry, for a batch of 0.
    pub fn geometry(&self) -> &Conv2dGeometry {
        &self.geometry
    }

    /// The channels computed and read.
    pub fn active(&self) -> ActiveChannels<'_> {
        ActiveChannels {
            inputs: &self.inputs,
            outputs: &self.outputs,
        }
    }

    /// Runs the convolution on `batch` images with `bias` and `epilogue` into `output`
    /// (inactive channels not written). `scratch` is reused between calls.
    ///
    /// # Panics
    /// As [`conv2d_forward_active`](super::conv2d_forward_active) for the batch's geometry.
    pub fn forward(
        &self,
        batch: usize,
        input: &[f32],
        bias: Option<&[f32]>,
        epilogue: Epilogue<'_>,
        scratch: &mut SkipScratch,
        output: &mut [f32],
    ) {
        let layer = self.layer(batch, bias, epilogue);
        let call = ActiveForward {
            layer: &layer,
            input,
            pool: false,
        };
        self.run("PackedConv2d::forward", &call, scratch, output);
    }

    /// [`forward`](Self::forward) followed by a 2x2, stride-2 max pooling, fused, as
    /// [`conv2d_forward_active_max_pool2`](super::conv2d_forward_active_max_pool2).
    ///
    /// # Panics
    /// As [`conv2d_forward_active_max_pool2`](super::conv2d_forward_active_max_pool2) for
    /// the batch's geometry.
    pub fn forward_max_pool2(
        &self,
        batch: usize,
        input: &[f32],
        bias: Option<&[f32]>,
        epilogue: Epilogue<'_>,
        scratch: &mut SkipScratch,
        output: &mut [f32],
    ) {
        let layer = self.layer(batch, bias, epilogue);
        let call = ActiveForward {
            layer: &layer,
            input,
            pool: true,
        };
        self.run("PackedConv2d::forward_max_pool2", &call, scratch, output);
    }

    /// The layer for `batch` images, with `bias` and `epilogue`.
    fn layer<'a>(
        &'a self,
        batch: usize,
        bias: Option<&'a [f32]>,
        epilogue: Epilogue<'a>,
    ) -> ActiveConv2d<'a> {
        ActiveConv2d {
            geometry: Conv2dGeometry {
                batch,
                ..self.geometry
            },
            active: self.active(),
            weight: &self.weight,
            bias,
            epilogue,
        }
    }

    /// Runs `call` on the packed filters, if the implicit kernel applies, checked in the
    /// name of `op`.
    fn run(
        &self,
        op: &str,
        call: &ActiveForward<'_>,
        scratch: &mut SkipScratch,
        output: &mut [f32],
    ) {
        let prepacked = self
            .implicit
            .as_ref()
            .map(|(kernel, packed, offsets)| implicit::Filters {
                kernel: *kernel,
                packed,
                offsets,
            });
        forward_active_checked(op, call, prepacked, scratch, output);
    }
}
