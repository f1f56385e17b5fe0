//! The fused rotated ReLU against the same computation built from separate kernels; GELU;
//! and the other memory-bound kernels (elementwise, pooling, batch norm, softmax + loss).

use criterion::{Criterion, Throughput};
use rotor_kernels::elementwise::ChannelShape;
use rotor_kernels::{activation, elementwise};
use std::hint::black_box;

/// A feature map the size of MnistNet's second rotated ReLU at batch 64, with 64 channels:
/// `[64, 64, 24 x 24]`.
const BATCH: usize = 64;
const CHANNELS: usize = 64;
const PLANE: usize = 24 * 24;
const SHAPE: ChannelShape = ChannelShape {
    batch: BATCH,
    channels: CHANNELS,
    plane: PLANE,
};

/// Deterministic values uniform in `[-1, 1)`, about half of them negative as in a
/// pre-activation map.
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// The buffers of a rotated activation's forward and backward on the `[64, 64, 24 x 24]`
/// map: inputs `x`, `grad_y` and slopes around 1, and the outputs they are written to.
struct RotatedBuffers {
    x: Vec<f32>,
    grad_y: Vec<f32>,
    slope: Vec<f32>,
    y: Vec<f32>,
    grad_x: Vec<f32>,
    grad_slope: Vec<f32>,
}

impl RotatedBuffers {
    fn new() -> Self {
        let len = BATCH * CHANNELS * PLANE;
        Self {
            x: values(len, 1),
            grad_y: values(len, 2),
            slope: values(CHANNELS, 3).iter().map(|v| 1.0 + 0.4 * v).collect(),
            y: vec![0.0; len],
            grad_x: vec![0.0; len],
            grad_slope: vec![0.0; CHANNELS],
        }
    }

    /// `y` from `x` and `slope` by a rotated forward.
    fn forward(&mut self, forward: impl Fn(&ChannelShape, &[f32], &[f32], &mut [f32])) {
        forward(&SHAPE, &self.x, &self.slope, &mut self.y);
        black_box(&self.y);
    }

    /// `grad_x` and `grad_slope` from `x`, `slope` and `grad_y` by a rotated backward.
    fn backward(
        &mut self,
        backward: impl Fn(&ChannelShape, &[f32], &[f32], &[f32], &mut [f32], &mut [f32]),
    ) {
        let (x, slope, grad_y) = (&self.x, &self.slope, &self.grad_y);
        backward(
            &SHAPE,
            x,
            slope,
            grad_y,
            &mut self.grad_x,
            &mut self.grad_slope,
        );
        black_box((&self.grad_x, &self.grad_slope));
    }
}

/// One training step's worth of rotated ReLU (forward, then backward) on a
/// `[64, 64, 24 x 24]` map, two ways:
///
/// - `fused`: `rotated_relu_forward` and `rotated_relu_backward`, whose single pass over
///   `x` and `grad_y` yields both `grad_x` and the slope gradient;
/// - `unfused`: what an autodiff graph of separate ops runs, each at its best with our
///   kernels: forward `relu_forward` then `mul_channels` (the ReLU output kept for the
///   backward); backward `mul_channels` (gradient of the product with respect to the ReLU
///   output), `dot_channels` (the slope gradient from the kept ReLU output), then
///   `relu_backward`.
///
/// Throughput counts the map's elements.
pub fn rotated_relu(c: &mut Criterion) {
    let len = BATCH * CHANNELS * PLANE;
    let mut buffers = RotatedBuffers::new();
    let mut relu_out = vec![0.0; len];
    let mut grad_relu_out = vec![0.0; len];

    let mut group = c.benchmark_group("rotated_relu/64x64x24x24");
    group.throughput(Throughput::Elements(len as u64));
    group.bench_function("fused", |b| {
        b.iter(|| {
            buffers.forward(activation::rotated_relu_forward);
            buffers.backward(activation::rotated_relu_backward);
        })
    });
    group.bench_function("unfused", |b| {
        b.iter(|| {
            activation::relu_forward(&buffers.x, &mut relu_out);
            elementwise::mul_channels(
                BATCH,
                CHANNELS,
                PLANE,
                &relu_out,
                &buffers.slope,
                &mut buffers.y,
            );
            elementwise::mul_channels(
                BATCH,
                CHANNELS,
                PLANE,
                &buffers.grad_y,
                &buffers.slope,
                &mut grad_relu_out,
            );
            elementwise::dot_channels(
                BATCH,
                CHANNELS,
                PLANE,
                &relu_out,
                &buffers.grad_y,
                &mut buffers.grad_slope,
            );
            activation::relu_backward(&buffers.x, &grad_relu_out, &mut buffers.grad_x);
            black_box((&buffers.y, &buffers.grad_x, &buffers.grad_slope));
        })
    });
    group.finish();
}

/// GELU on the same `[64, 64, 24 x 24]` map: the flat forward and backward, and the rotated
/// (per-channel slope) forms, whose backward also reduces the slope gradient. GELU is the
/// arithmetic-heavy activation (a degree-8 polynomial, a division and an `exp` per
/// element), so it shows the vector width more than the memory-bound kernels do.
///
/// Throughput counts the map's elements.
pub fn gelu(c: &mut Criterion) {
    let len = BATCH * CHANNELS * PLANE;
    let mut buffers = RotatedBuffers::new();

    let mut group = c.benchmark_group("gelu/64x64x24x24");
    group.throughput(Throughput::Elements(len as u64));
    group.bench_function("forward", |b| {
        b.iter(|| {
            activation::gelu_forward(&buffers.x, &mut buffers.y);
            black_box(&buffers.y);
        })
    });
    group.bench_function("backward", |b| {
        b.iter(|| {
            activation::gelu_backward(&buffers.x, &buffers.grad_y, &mut buffers.grad_x);
            black_box(&buffers.grad_x);
        })
    });
    group.bench_function("rotated_forward", |b| {
        b.iter(|| {
            buffers.forward(activation::rotated_gelu_forward);
        })
    });
    group.bench_function("rotated_backward", |b| {
        b.iter(|| {
            buffers.backward(activation::rotated_gelu_backward);
        })
    });
    group.finish();
}

/// The other memory-bound kernels on the same map (and, for the loss, 2048 rows of 1000
/// classes): elementwise `add`, `exp` and `sum`, 2x2 max pooling, a training batch norm
/// (forward and backward), and softmax + cross-entropy (forward and backward).
///
/// Throughput counts the input's elements.
pub fn memory_bound(c: &mut Criterion) {
    use rotor_kernels::loss;
    use rotor_kernels::norm::{
        self, BatchNormGeometry, BatchNormGradients, BatchNormParams, RunningStatsUpdate,
    };
    use rotor_kernels::pool::{self, Pool2dGeometry};

    let len = BATCH * CHANNELS * PLANE;
    let a = values(len, 1);
    let b2 = values(len, 2);
    let mut out = vec![0.0; len];
    let mut group = c.benchmark_group("memory_bound/64x64x24x24");
    group.throughput(Throughput::Elements(len as u64));
    group.bench_function("add", |b| {
        b.iter(|| {
            elementwise::add(&a, &b2, &mut out);
            black_box(&out);
        })
    });
    group.bench_function("exp", |b| {
        b.iter(|| {
            elementwise::exp(&a, &mut out);
            black_box(&out);
        })
    });
    group.bench_function("sum", |b| {
        b.iter(|| black_box(elementwise::sum(black_box(&a))))
    });

    let pool_g = Pool2dGeometry {
        batch: BATCH,
        channels: CHANNELS,
        in_h: 24,
        in_w: 24,
        kernel_h: 2,
        kernel_w: 2,
        stride_h: 2,
        stride_w: 2,
        pad_h: 0,
        pad_w: 0,
    };
    let mut pooled = vec![0.0; pool_g.output_len()];
    let mut argmax = vec![0_u32; pool_g.output_len()];
    group.bench_function("max_pool2x2_forward", |b| {
        b.iter(|| {
            pool::max_pool2d_forward(&pool_g, &a, &mut pooled, &mut argmax);
            black_box((&pooled, &argmax));
        })
    });

    let bn = BatchNormGeometry {
        batch: BATCH,
        channels: CHANNELS,
        plane: PLANE,
    };
    let gamma = vec![1.0; CHANNELS];
    let beta = vec![0.0; CHANNELS];
    let (mut running_mean, mut running_var) = (vec![0.0; CHANNELS], vec![1.0; CHANNELS]);
    let (mut mean, mut invstd) = (vec![0.0; CHANNELS], vec![0.0; CHANNELS]);
    let (mut grad_gamma, mut grad_beta) = (vec![0.0; CHANNELS], vec![0.0; CHANNELS]);
    let mut grad_input = vec![0.0; len];
    group.bench_function("batch_norm_train", |b| {
        b.iter(|| {
            let params = BatchNormParams {
                gamma: &gamma,
                beta: &beta,
                eps: 1e-5,
            };
            let running = RunningStatsUpdate {
                mean: &mut running_mean,
                var: &mut running_var,
                momentum: 0.1,
            };
            norm::batch_norm_forward_train(
                &bn,
                &a,
                params,
                running,
                &mut out,
                &mut mean,
                &mut invstd,
            );
            let grads = BatchNormGradients {
                input: &mut grad_input,
                gamma: &mut grad_gamma,
                beta: &mut grad_beta,
            };
            norm::batch_norm_backward_train(&bn, &a, &b2, &gamma, &mean, &invstd, grads);
            black_box((&out, &grad_input, &grad_gamma, &grad_beta));
        })
    });
    group.finish();

    let (rows, cols) = (2048, 1000);
    let logits = values(rows * cols, 4);
    let targets: Vec<u32> = (0..rows as u32).map(|r| r * 7 % cols as u32).collect();
    let mut probs = vec![0.0; rows * cols];
    let mut grad_logits = vec![0.0; rows * cols];
    let mut group = c.benchmark_group("memory_bound/2048x1000");
    group.throughput(Throughput::Elements((rows * cols) as u64));
    group.bench_function("softmax_cross_entropy", |b| {
        b.iter(|| {
            let loss = loss::cross_entropy_forward(rows, cols, &logits, &targets, &mut probs);
            loss::cross_entropy_backward(rows, cols, &probs, &targets, 1.0, &mut grad_logits);
            black_box((loss, &grad_logits));
        })
    });
    group.finish();
}
