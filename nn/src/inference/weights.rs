//! How a plan holds the weights of a convolution or linear layer: packed once for the
//! inference kernels when every channel is computed, or in full with index lists for the
//! channel-skipping kernels when some are skipped.

use rotor_kernels::aligned::AlignedFloats;
use rotor_kernels::conv::{
    ActiveConv2d, Conv2dGeometry, PackedConv2d, conv2d_forward_active,
    conv2d_forward_active_max_pool2,
};
use rotor_kernels::linear::{ActiveLinear, LinearGeometry, PackedLinear, linear_forward_active};
use rotor_kernels::skip::{ActiveChannels, Epilogue, SkipScratch};

/// The channels a skipping layer reads and computes.
#[derive(Clone)]
pub(super) struct Channels {
    pub(super) inputs: Vec<usize>,
    pub(super) outputs: Vec<usize>,
}

impl Channels {
    pub(super) fn active(&self) -> ActiveChannels<'_> {
        ActiveChannels {
            inputs: &self.inputs,
            outputs: &self.outputs,
        }
    }

    /// Whether these are all `inputs` input and `outputs` output channels.
    fn all(&self, inputs: usize, outputs: usize) -> bool {
        self.inputs.len() == inputs && self.outputs.len() == outputs
    }
}

/// The bias and fused activation a layer's forward applies.
#[derive(Clone, Copy)]
pub(super) struct Output<'a> {
    pub(super) bias: Option<&'a [f32]>,
    pub(super) epilogue: Epilogue<'a>,
}

/// A convolution's weights.
#[derive(Clone)]
pub(super) enum ConvWeights {
    /// Every channel computed: filters packed once.
    Packed(PackedConv2d),
    /// Some channels skipped: the full weight, read through the index lists on every call.
    Skipping {
        geometry: Conv2dGeometry,
        weight: Vec<f32>,
        channels: Channels,
    },
}

impl ConvWeights {
    /// The weights of convolution `geometry` computing `channels`.
    pub(super) fn new(geometry: Conv2dGeometry, weight: Vec<f32>, channels: Channels) -> Self {
        if channels.all(geometry.in_channels, geometry.out_channels) {
            ConvWeights::Packed(PackedConv2d::new(&geometry, channels.active(), &weight))
        } else {
            ConvWeights::Skipping {
                geometry,
                weight,
                channels,
            }
        }
    }

    /// The geometry (of some batch size).
    pub(super) fn geometry(&self) -> &Conv2dGeometry {
        match self {
            ConvWeights::Packed(conv) => conv.geometry(),
            ConvWeights::Skipping { geometry, .. } => geometry,
        }
    }

    /// The channels read and computed.
    pub(super) fn active(&self) -> ActiveChannels<'_> {
        match self {
            ConvWeights::Packed(conv) => conv.active(),
            ConvWeights::Skipping { channels, .. } => channels.active(),
        }
    }

    /// Runs the convolution on `batch` images, 2x2 max-pooled with `pool`.
    pub(super) fn forward(
        &self,
        batch: usize,
        input: &[f32],
        out: Output<'_>,
        pool: bool,
        scratch: &mut SkipScratch,
        output: &mut [f32],
    ) {
        match self {
            ConvWeights::Packed(conv) => {
                let run = if pool {
                    PackedConv2d::forward_max_pool2
                } else {
                    PackedConv2d::forward
                };
                run(conv, batch, input, out.bias, out.epilogue, scratch, output);
            }
            ConvWeights::Skipping {
                geometry,
                weight,
                channels,
            } => {
                let layer = ActiveConv2d {
                    geometry: Conv2dGeometry { batch, ..*geometry },
                    active: channels.active(),
                    weight,
                    bias: out.bias,
                    epilogue: out.epilogue,
                };
                let run = if pool {
                    conv2d_forward_active_max_pool2
                } else {
                    conv2d_forward_active
                };
                run(&layer, input, scratch, output);
            }
        }
    }
}

/// A linear layer's weights.
#[derive(Clone)]
pub(super) enum LinearWeights {
    /// Every feature computed: the weight packed once.
    Packed(PackedLinear),
    /// Some channels skipped: the full weight (on a cache line, as the kernel reads it a
    /// vector at a time), read through the index lists on every call.
    Skipping {
        geometry: LinearGeometry,
        weight: AlignedFloats,
        channels: Channels,
    },
}

impl LinearWeights {
    /// The weights of linear layer `geometry` computing `channels`.
    pub(super) fn new(geometry: LinearGeometry, weight: Vec<f32>, channels: Channels) -> Self {
        if channels.all(geometry.in_channels(), geometry.out_features) {
            LinearWeights::Packed(PackedLinear::with_active(
                &geometry,
                channels.active(),
                &weight,
            ))
        } else {
            LinearWeights::Skipping {
                geometry,
                weight: AlignedFloats::from_slice(&weight),
                channels,
            }
        }
    }

    /// Output features per row.
    pub(super) fn out_features(&self) -> usize {
        match self {
            LinearWeights::Packed(layer) => layer.out_features(),
            LinearWeights::Skipping { geometry, .. } => geometry.out_features,
        }
    }

    /// Multiply-accumulates per row of the features computed.
    pub(super) fn macs_per_row(&self) -> usize {
        match self {
            LinearWeights::Packed(layer) => layer.macs_per_row(),
            LinearWeights::Skipping {
                geometry, channels, ..
            } => geometry.group * channels.inputs.len() * channels.outputs.len(),
        }
    }

    /// Runs the layer on `batch` rows.
    pub(super) fn forward(
        &self,
        batch: usize,
        input: &[f32],
        out: Output<'_>,
        scratch: &mut SkipScratch,
        output: &mut [f32],
    ) {
        match self {
            LinearWeights::Packed(layer) => {
                layer.forward(batch, input, out.bias, out.epilogue, scratch, output);
            }
            LinearWeights::Skipping {
                geometry,
                weight,
                channels,
            } => {
                let layer = ActiveLinear {
                    geometry: LinearGeometry { batch, ..*geometry },
                    active: channels.active(),
                    weight,
                    bias: out.bias,
                    epilogue: out.epilogue,
                };
                linear_forward_active(&layer, input, scratch, output);
            }
        }
    }
}
