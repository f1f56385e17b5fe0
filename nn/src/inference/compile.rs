//! Turning a `Sequential` into the steps of a plan: shapes checked once, batch norms folded
//! into the convolution or linear layer before them, activations (and a following 2x2 max
//! pool) fused into the convolution or linear layer's epilogue, and, with a threshold,
//! channels whose rotated slope is at most the threshold skipped.

use std::sync::Arc;

use rotor_engine::{Error, Result, Tensor};
use rotor_kernels::conv::Conv2dGeometry;
use rotor_kernels::linear::LinearGeometry;
use rotor_kernels::pool::Pool2dGeometry;

use super::step::{Fused, Normalization, Step};
use super::weights::{Channels, ConvWeights, LinearWeights};
use crate::layers::{BatchNorm2d, Conv2d, CustomLayer, Layer, Linear, MaxPool2d, Sequential};

const OP: &str = "inference plan";

/// The shape of one sample between steps, and which of its channels can be non-zero.
struct Flow {
    /// Per-sample shape (`[C, H, W]`, `[F]`, ...).
    shape: Vec<usize>,
    /// The channels (of `group` consecutive elements each) that may be non-zero; `None`:
    /// all of them.
    live: Option<Vec<usize>>,
    /// Elements per channel of `live`.
    group: usize,
}

impl Flow {
    fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The live channels as a list, for a consumer that sees `channels` channels.
    fn live_list(&self, channels: usize) -> Vec<usize> {
        self.live.clone().unwrap_or_else(|| (0..channels).collect())
    }

    /// `[C, H, W]`, or an error naming the layer.
    fn image(&self, layer: &str) -> Result<[usize; 3]> {
        match self.shape[..] {
            [c, h, w] => Ok([c, h, w]),
            _ => Err(shape_error(
                layer,
                &self.shape,
                "expected a sample of shape [C, H, W]",
            )),
        }
    }
}

fn shape_error(layer: &str, shape: &[usize], reason: &str) -> Error {
    Error::Shape {
        op: OP,
        operands: format!("{shape:?}"),
        reason: format!("layer `{layer}`: {reason}"),
    }
}

fn invalid(layer: &str, reason: &str) -> Error {
    Error::InvalidArgument {
        op: OP,
        reason: format!("layer `{layer}`: {reason}"),
    }
}

/// The layers of `model` in order, nested sequences flattened, with their dotted names.
fn flatten_layers<'a>(model: &'a Sequential, prefix: &str, out: &mut Vec<(String, &'a Layer)>) {
    for (name, layer) in model.layers() {
        let path = crate::param::join_path(prefix, name);
        match layer {
            Layer::Sequential(inner) => flatten_layers(inner, &path, out),
            _ => out.push((path, layer)),
        }
    }
}

/// The per-channel scale and shift of an evaluation-mode batch norm:
/// `y = x * scale + shift`.
fn norm_affine(norm: &BatchNorm2d) -> (Vec<f32>, Vec<f32>) {
    let gamma = norm.weight.value().to_vec();
    let beta = norm.bias.value().to_vec();
    let scale: Vec<f32> = gamma
        .iter()
        .zip(&norm.stats.var)
        .map(|(g, v)| g / (v + norm.eps).sqrt())
        .collect();
    let shift = beta
        .iter()
        .zip(&norm.stats.mean)
        .zip(&scale)
        .map(|((b, m), s)| b - m * s)
        .collect();
    (scale, shift)
}

/// Folds `y = x * scale + shift` (per output channel) into a weight `[out, ...]` and bias.
fn fold(weight: &mut [f32], bias: &mut Option<Vec<f32>>, scale: &[f32], shift: &[f32]) {
    let per_out = weight.len() / scale.len().max(1);
    for (row, s) in weight.chunks_exact_mut(per_out.max(1)).zip(scale) {
        row.iter_mut().for_each(|w| *w *= s);
    }
    let folded = match bias.take() {
        Some(b) => b
            .iter()
            .zip(scale.iter().zip(shift))
            .map(|(b, (s, t))| b * s + t)
            .collect(),
        None => shift.to_vec(),
    };
    *bias = Some(folded);
}

/// What follows a convolution or linear layer that its step can absorb.
struct Tail {
    /// The batch norm's affine map, if one comes first.
    norm: Option<(Vec<f32>, Vec<f32>)>,
    fused: Fused,
    /// Layers consumed after the convolution or linear layer itself.
    consumed: usize,
}

/// Looks at the layers after a convolution or linear layer with `channels` outputs.
fn tail(rest: &[(String, &Layer)], channels: usize) -> Tail {
    let mut at = 0;
    let norm = match rest.first() {
        Some((_, Layer::BatchNorm2d(norm))) if norm.channels() == channels => {
            at += 1;
            Some(norm_affine(norm))
        }
        _ => None,
    };
    let fused = match rest.get(at) {
        Some((_, Layer::Relu(_))) => Fused::Relu,
        Some((_, Layer::RotatedRelu(act))) if act.channels() == channels => {
            Fused::RotatedRelu(act.slope.value().to_vec())
        }
        _ => Fused::Identity,
    };
    if !matches!(fused, Fused::Identity) {
        at += 1;
    }
    Tail {
        norm,
        fused,
        consumed: at,
    }
}

/// The output channels a step computes: with a threshold, those of a fused rotated ReLU
/// whose slope exceeds it in magnitude; otherwise all.
fn computed_outputs(fused: &Fused, channels: usize, threshold: Option<f32>) -> Vec<usize> {
    match (fused, threshold) {
        (Fused::RotatedRelu(slope), Some(zeta)) => {
            (0..channels).filter(|&c| slope[c].abs() > zeta).collect()
        }
        _ => (0..channels).collect(),
    }
}

/// Compiles `model` for samples of shape `input_shape` into steps, returning them with the
/// per-sample output shape.
pub(super) fn compile(
    model: &Sequential,
    input_shape: &[usize],
    threshold: Option<f32>,
) -> Result<(Vec<Step>, Vec<usize>)> {
    let mut layers = Vec::new();
    flatten_layers(model, "", &mut layers);
    let mut flow = Flow {
        shape: input_shape.to_vec(),
        live: None,
        group: 1,
    };
    let mut steps = Vec::new();
    let mut i = 0;
    while i < layers.len() {
        let (name, layer) = (&layers[i].0, layers[i].1);
        let rest = &layers[i + 1..];
        i += 1;
        match layer {
            Layer::Conv2d(conv) => {
                let (step, consumed) = conv_step(name, conv, rest, &mut flow, threshold)?;
                steps.push(step);
                i += consumed;
            }
            Layer::Linear(linear) => {
                let (step, consumed) = linear_step(name, linear, rest, &mut flow, threshold)?;
                steps.push(step);
                i += consumed;
            }
            Layer::BatchNorm2d(norm) => {
                let channels = flow.shape.first().copied().unwrap_or(0);
                if flow.shape.is_empty() || norm.channels() != channels {
                    return Err(shape_error(name, &flow.shape, "channels differ"));
                }
                steps.push(Step::BatchNorm {
                    norm: Normalization {
                        gamma: norm.weight.value().to_vec(),
                        beta: norm.bias.value().to_vec(),
                        mean: norm.stats.mean.clone(),
                        var: norm.stats.var.clone(),
                        eps: norm.eps,
                    },
                    plane: flow.numel() / channels.max(1),
                });
                flow.live = None;
            }
            Layer::Relu(_) => steps.push(Step::Relu),
            Layer::Gelu(_) => steps.push(Step::Gelu),
            Layer::RotatedRelu(act) => {
                let slope = act.slope.value().to_vec();
                let plane = channel_plane(name, &flow, slope.len())?;
                steps.push(Step::RotatedRelu { slope, plane });
            }
            Layer::RotatedGelu(act) => {
                let slope = act.slope.value().to_vec();
                let plane = channel_plane(name, &flow, slope.len())?;
                steps.push(Step::RotatedGelu { slope, plane });
            }
            Layer::MaxPool2d(pool) => {
                let g = pool_geometry(name, &flow, pool.kernel, pool.stride, pool.padding)?;
                flow.shape = vec![g.channels, g.out_h(), g.out_w()];
                flow.group = g.out_h() * g.out_w();
                steps.push(Step::MaxPool(g));
            }
            Layer::AvgPool2d(pool) => {
                let g = pool_geometry(name, &flow, pool.kernel, pool.stride, pool.padding)?;
                flow.shape = vec![g.channels, g.out_h(), g.out_w()];
                flow.group = g.out_h() * g.out_w();
                steps.push(Step::AvgPool(g));
            }
            Layer::GlobalAvgPool(_) => {
                let [c, h, w] = flow.image(name)?;
                steps.push(Step::GlobalAvgPool {
                    channels: c,
                    plane: h * w,
                });
                flow.shape = vec![c];
                flow.group = 1;
            }
            Layer::Flatten(_) => flow.shape = vec![flow.numel()],
            Layer::Dropout(_) => {}
            Layer::Residual(_) => return Err(invalid(name, "residual blocks are not supported")),
            Layer::Custom(custom) => {
                steps.push(custom_step(name, custom.as_ref(), &flow)?);
                if let Some(Step::Custom { output_shape, .. }) = steps.last() {
                    flow.shape.clone_from(output_shape);
                }
                // NOTE: nothing is known of which channels a custom layer keeps zero.
                flow.live = None;
            }
            Layer::Sequential(_) => unreachable!("nested sequences are flattened"),
        }
    }
    Ok((steps, flow.shape))
}

/// A step running the custom layer `layer` on samples of the flow's shape, which it is
/// tried on once (a zero sample) to learn its output shape.
fn custom_step(name: &str, layer: &dyn CustomLayer, flow: &Flow) -> Result<Step> {
    let input_shape = flow.shape.clone();
    let trial = Tensor::zeros(&[&[1], input_shape.as_slice()].concat())?;
    let output = layer.forward(&trial).map_err(|e| e.in_layer(name))?;
    let Some((1, output_shape)) = output.shape().split_first() else {
        return Err(shape_error(
            name,
            output.shape(),
            "a custom layer must keep the batch dimension",
        ));
    };
    Ok(Step::Custom {
        name: name.to_string(),
        layer: Arc::from(layer.clone_layer()),
        input_shape,
        output_shape: output_shape.to_vec(),
    })
}

/// Elements per channel for a per-channel activation with `channels` slopes.
fn channel_plane(name: &str, flow: &Flow, channels: usize) -> Result<usize> {
    match flow.shape.first() {
        Some(&c) if c == channels => Ok(flow.numel() / c.max(1)),
        _ => Err(shape_error(
            name,
            &flow.shape,
            &format!("expected {channels} channels"),
        )),
    }
}

fn pool_geometry(
    name: &str,
    flow: &Flow,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Pool2dGeometry> {
    let [channels, in_h, in_w] = flow.image(name)?;
    let g = Pool2dGeometry {
        batch: 1,
        channels,
        in_h,
        in_w,
        kernel_h: kernel,
        kernel_w: kernel,
        stride_h: stride,
        stride_w: stride,
        pad_h: padding,
        pad_w: padding,
    };
    if g.is_valid() {
        Ok(g)
    } else {
        Err(shape_error(name, &flow.shape, "invalid pooling window"))
    }
}

fn conv_step(
    name: &str,
    conv: &Conv2d,
    rest: &[(String, &Layer)],
    flow: &mut Flow,
    threshold: Option<f32>,
) -> Result<(Step, usize)> {
    let [channels, in_h, in_w] = flow.image(name)?;
    let shape = conv.weight.shape();
    let (kernel_h, kernel_w) = (shape[2], shape[3]);
    let ([stride_h, stride_w], [pad_h, pad_w]) = (conv.stride, conv.padding);
    if conv.in_channels() != channels {
        return Err(shape_error(name, &flow.shape, "input channels differ"));
    }
    if stride_h == 0
        || stride_w == 0
        || kernel_h == 0
        || kernel_w == 0
        || kernel_h > in_h + 2 * pad_h
        || kernel_w > in_w + 2 * pad_w
    {
        return Err(shape_error(
            name,
            &flow.shape,
            "the kernel does not fit the padded input",
        ));
    }
    let geometry = Conv2dGeometry {
        batch: 1,
        in_channels: channels,
        out_channels: conv.out_channels(),
        in_h,
        in_w,
        kernel_h,
        kernel_w,
        stride_h,
        stride_w,
        pad_h,
        pad_w,
    };
    let out = geometry.out_channels;
    let tail = tail(rest, out);
    let mut weight = conv.weight.value().to_vec();
    let mut bias = conv.bias.as_ref().map(|b| b.value().to_vec());
    if let Some((scale, shift)) = &tail.norm {
        fold(&mut weight, &mut bias, scale, shift);
    }
    let (out_h, out_w) = (geometry.out_h(), geometry.out_w());
    let pool = matches!(
        rest.get(tail.consumed),
        Some((
            _,
            Layer::MaxPool2d(MaxPool2d {
                kernel: 2,
                stride: 2,
                padding: 0
            })
        ))
    ) && out_h % 2 == 0
        && out_w >= 2;
    let inputs = flow.live_list(channels);
    let outputs = computed_outputs(&tail.fused, out, threshold);
    let (h, w) = if pool {
        (out_h / 2, out_w / 2)
    } else {
        (out_h, out_w)
    };
    flow.shape = vec![out, h, w];
    flow.group = h * w;
    flow.live = (outputs.len() < out).then(|| outputs.clone());
    let step = Step::Conv {
        conv: ConvWeights::new(geometry, weight, Channels { inputs, outputs }),
        bias,
        fused: tail.fused,
        pool,
    };
    Ok((step, tail.consumed + usize::from(pool)))
}

fn linear_step(
    name: &str,
    linear: &Linear,
    rest: &[(String, &Layer)],
    flow: &mut Flow,
    threshold: Option<f32>,
) -> Result<(Step, usize)> {
    let features = linear.in_features();
    if flow.shape.len() != 1 || flow.shape[0] != features {
        return Err(shape_error(
            name,
            &flow.shape,
            &format!("expected {features} features"),
        ));
    }
    let (group, inputs) = match &flow.live {
        Some(live) => (flow.group, live.clone()),
        None => (features.max(1), if features > 0 { vec![0] } else { vec![] }),
    };
    let out = linear.out_features();
    let tail = tail(rest, out);
    let mut weight = linear.weight.value().to_vec();
    let mut bias = linear.bias.as_ref().map(|b| b.value().to_vec());
    if let Some((scale, shift)) = &tail.norm {
        fold(&mut weight, &mut bias, scale, shift);
    }
    let outputs = computed_outputs(&tail.fused, out, threshold);
    flow.shape = vec![out];
    flow.group = 1;
    flow.live = (outputs.len() < out).then(|| outputs.clone());
    let geometry = LinearGeometry {
        batch: 1,
        in_features: features,
        out_features: out,
        group,
    };
    let step = Step::Linear {
        layer: LinearWeights::new(geometry, weight, Channels { inputs, outputs }),
        bias,
        fused: tail.fused,
    };
    Ok((step, tail.consumed))
}
