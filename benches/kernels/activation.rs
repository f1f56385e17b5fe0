//! The fused rotated ReLU against the same computation built from separate kernels.

use criterion::{Criterion, Throughput};
use rotor_kernels::{activation, elementwise};
use std::hint::black_box;

/// A feature map the size of MnistNet's second rotated ReLU at batch 64, with 64 channels:
/// `[64, 64, 24 x 24]`.
const BATCH: usize = 64;
const CHANNELS: usize = 64;
const PLANE: usize = 24 * 24;

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
    let x = values(len, 1);
    let grad_y = values(len, 2);
    let slope: Vec<f32> = values(CHANNELS, 3).iter().map(|v| 1.0 + 0.4 * v).collect();
    let mut y = vec![0.0; len];
    let mut grad_x = vec![0.0; len];
    let mut grad_slope = vec![0.0; CHANNELS];
    let mut relu_out = vec![0.0; len];
    let mut grad_relu_out = vec![0.0; len];

    let mut group = c.benchmark_group("rotated_relu/64x64x24x24");
    group.throughput(Throughput::Elements(len as u64));
    group.bench_function("fused", |b| {
        b.iter(|| {
            activation::rotated_relu_forward(BATCH, CHANNELS, PLANE, &x, &slope, &mut y);
            activation::rotated_relu_backward(
                BATCH,
                CHANNELS,
                PLANE,
                &x,
                &slope,
                &grad_y,
                &mut grad_x,
                &mut grad_slope,
            );
            black_box((&y, &grad_x, &grad_slope));
        })
    });
    group.bench_function("unfused", |b| {
        b.iter(|| {
            activation::relu_forward(&x, &mut relu_out);
            elementwise::mul_channels(BATCH, CHANNELS, PLANE, &relu_out, &slope, &mut y);
            elementwise::mul_channels(BATCH, CHANNELS, PLANE, &grad_y, &slope, &mut grad_relu_out);
            elementwise::dot_channels(BATCH, CHANNELS, PLANE, &relu_out, &grad_y, &mut grad_slope);
            activation::relu_backward(&x, &grad_relu_out, &mut grad_x);
            black_box((&y, &grad_x, &grad_slope));
        })
    });
    group.finish();
}
