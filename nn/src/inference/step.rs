//! The operations of a compiled plan, each running one layer (or a fused run of layers) on a
//! batch, from one buffer into the next.

use rotor_kernels::activation::{
    gelu_forward, relu_forward, rotated_gelu_forward, rotated_relu_forward,
};
use rotor_kernels::elementwise::ChannelShape;
use rotor_kernels::norm::{BatchNormGeometry, BatchNormParams, batch_norm_forward_eval};
use rotor_kernels::pool::{
    Pool2dGeometry, avg_pool2d_forward, global_avg_pool2d_forward, max_pool2d_forward,
};
use rotor_kernels::skip::Epilogue;
use rotor_kernels::skip::SkipScratch;

use std::sync::Arc;

use rotor_engine::{Error, Result, Tensor};

use super::weights::{ConvWeights, LinearWeights, Output};
use crate::layers::CustomLayer;

/// The activation fused into a convolution or linear step.
#[derive(Clone)]
pub(super) enum Fused {
    Identity,
    Relu,
    /// A rotated ReLU with one slope per output channel.
    RotatedRelu(Vec<f32>),
}

impl Fused {
    fn epilogue(&self) -> Epilogue<'_> {
        match self {
            Fused::Identity => Epilogue::Identity,
            Fused::Relu => Epilogue::Relu,
            Fused::RotatedRelu(slope) => Epilogue::RotatedRelu(slope),
        }
    }
}

/// A per-channel parameter set of a batch normalisation that could not be folded.
#[derive(Clone)]
pub(super) struct Normalization {
    pub(super) gamma: Vec<f32>,
    pub(super) beta: Vec<f32>,
    pub(super) mean: Vec<f32>,
    pub(super) var: Vec<f32>,
    pub(super) eps: f32,
}

/// One operation of a plan. Geometries are stored for a batch of one and scaled at run time.
#[derive(Clone)]
pub(super) enum Step {
    /// A convolution (batch norm folded in), its activation and optionally a 2x2 max pool.
    Conv {
        conv: ConvWeights,
        bias: Option<Vec<f32>>,
        fused: Fused,
        pool: bool,
    },
    /// A linear layer (batch norm folded in) and its activation.
    Linear {
        layer: LinearWeights,
        bias: Option<Vec<f32>>,
        fused: Fused,
    },
    Relu,
    Gelu,
    RotatedRelu {
        slope: Vec<f32>,
        plane: usize,
    },
    RotatedGelu {
        slope: Vec<f32>,
        plane: usize,
    },
    BatchNorm {
        norm: Normalization,
        plane: usize,
    },
    MaxPool(Pool2dGeometry),
    AvgPool(Pool2dGeometry),
    GlobalAvgPool {
        channels: usize,
        plane: usize,
    },
    /// A user's layer, run through its evaluation forward on tensors.
    Custom {
        /// Its dotted path, for errors.
        name: String,
        layer: Arc<dyn CustomLayer>,
        /// Per-sample input and output shapes.
        input_shape: Vec<usize>,
        output_shape: Vec<usize>,
    },
}

/// Buffers a step may need besides its input and output.
pub(super) struct StepScratch<'a> {
    pub(super) skip: &'a mut SkipScratch,
    pub(super) argmax: &'a mut Vec<u32>,
}

impl Step {
    /// Runs the step on `batch` samples: `input` and `output` hold exactly the batch.
    ///
    /// # Errors
    /// Only a custom layer's step fails: if its forward does, or returns another shape than
    /// it did when the plan was compiled.
    pub(super) fn run(
        &self,
        batch: usize,
        input: &[f32],
        output: &mut [f32],
        scratch: StepScratch<'_>,
    ) -> Result<()> {
        match self {
            Step::Conv {
                conv,
                bias,
                fused,
                pool,
            } => {
                let out = Output {
                    bias: bias.as_deref(),
                    epilogue: fused.epilogue(),
                };
                conv.forward(batch, input, out, *pool, scratch.skip, output);
            }
            Step::Linear { layer, bias, fused } => {
                let out = Output {
                    bias: bias.as_deref(),
                    epilogue: fused.epilogue(),
                };
                layer.forward(batch, input, out, scratch.skip, output);
            }
            Step::Relu => relu_forward(input, output),
            Step::Gelu => gelu_forward(input, output),
            Step::RotatedRelu { slope, plane } => {
                let shape = channel_shape(batch, slope, *plane);
                rotated_relu_forward(&shape, input, slope, output);
            }
            Step::RotatedGelu { slope, plane } => {
                let shape = channel_shape(batch, slope, *plane);
                rotated_gelu_forward(&shape, input, slope, output);
            }
            Step::BatchNorm { norm, plane } => {
                let g = BatchNormGeometry {
                    batch,
                    channels: norm.gamma.len(),
                    plane: *plane,
                };
                let params = BatchNormParams {
                    gamma: &norm.gamma,
                    beta: &norm.beta,
                    eps: norm.eps,
                };
                batch_norm_forward_eval(&g, input, params, &norm.mean, &norm.var, output);
            }
            Step::MaxPool(geometry) => {
                let g = Pool2dGeometry { batch, ..*geometry };
                scratch.argmax.resize(output.len(), 0);
                max_pool2d_forward(&g, input, output, scratch.argmax);
            }
            Step::AvgPool(geometry) => {
                let g = Pool2dGeometry { batch, ..*geometry };
                avg_pool2d_forward(&g, input, output);
            }
            Step::GlobalAvgPool { channels, plane } => {
                global_avg_pool2d_forward(batch, *channels, *plane, input, output);
            }
            Step::Custom {
                name,
                layer,
                input_shape,
                output_shape,
            } => {
                let batched = |shape: &[usize]| [&[batch], shape].concat();
                let x = Tensor::from_slice(input, &batched(input_shape))?;
                let y = layer.forward(&x).map_err(|e| e.in_layer(name))?;
                if y.shape() != batched(output_shape) {
                    return Err(Error::Shape {
                        op: "inference plan run",
                        operands: format!("{:?}", y.shape()),
                        reason: format!(
                            "custom layer `{name}` returned another shape than the {:?} it returned when the plan was compiled",
                            batched(output_shape)
                        ),
                    });
                }
                output.copy_from_slice(y.as_slice());
            }
        }
        Ok(())
    }

    /// A short name of what the step runs.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Step::Conv { pool: true, .. } => "conv2d + activation + max_pool2d",
            Step::Conv { .. } => "conv2d + activation",
            Step::Linear { .. } => "linear + activation",
            Step::Relu => "relu",
            Step::Gelu => "gelu",
            Step::RotatedRelu { .. } => "rotated_relu",
            Step::RotatedGelu { .. } => "rotated_gelu",
            Step::BatchNorm { .. } => "batch_norm",
            Step::MaxPool(_) => "max_pool2d",
            Step::AvgPool(_) => "avg_pool2d",
            Step::GlobalAvgPool { .. } => "global_avg_pool2d",
            Step::Custom { .. } => "custom layer",
        }
    }

    /// Floating-point operations per sample of the convolutions and linear layers (2 per
    /// multiply-accumulate of the channels actually computed); 0 for other steps.
    pub(super) fn flops(&self) -> u64 {
        match self {
            Step::Conv { conv, .. } => {
                let (g, active) = (conv.geometry(), conv.active());
                let taps = (g.kernel_h * g.kernel_w) as u64;
                let positions = (g.out_h() * g.out_w()) as u64;
                let (inputs, outputs) = (active.inputs.len() as u64, active.outputs.len() as u64);
                2 * positions * taps * inputs * outputs
            }
            Step::Linear { layer, .. } => 2 * layer.macs_per_row() as u64,
            _ => 0,
        }
    }
}

/// The shape of a batch of `batch` samples of `[channels, plane]`, with one `slope` value
/// per channel.
fn channel_shape(batch: usize, slope: &[f32], plane: usize) -> ChannelShape {
    ChannelShape {
        batch,
        channels: slope.len(),
        plane,
    }
}
