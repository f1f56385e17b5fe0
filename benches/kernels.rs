//! Throughput of the compute-bound kernels: GEMM, MnistNet's two convolutions (training
//! forward and backward, and through the inference kernel) and its first linear layer
//! (their "elements" are floating-point operations, so criterion's
//! `Gelem/s` reads GFLOP/s), plus the activation kernels. The linear and activation groups
//! are registered from `kernels/`.
//!
//! Run with `RAYON_NUM_THREADS=2 cargo bench --bench kernels`, or select groups with one
//! regular expression: `cargo bench --bench kernels -- 'sgemm|conv2d'`. The instruction-set
//! paths in use are printed first.

// NOTE: a crate root looks for modules beside itself; the family's files live in kernels/.
#[path = "kernels/activation.rs"]
mod activation;
#[path = "kernels/conv.rs"]
mod conv_implicit;
#[path = "kernels/linear.rs"]
mod linear;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};
use rotor::kernels::conv::{self, Conv2dGeometry};
use rotor::kernels::gemm::{self, MatrixView, MatrixViewMut};

/// Deterministic values in [-1, 1) without a random-number dependency.
fn filled(len: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 8) as f32 / (1 << 23) as f32 - 1.0
        })
        .collect()
}

fn sgemm(c: &mut Criterion) {
    let size = 1024;
    let a = filled(size * size, 1);
    let b = filled(size * size, 2);
    let mut out = vec![0.0; size * size];
    let mut group = c.benchmark_group("sgemm");
    group.throughput(Throughput::Elements(2 * (size as u64).pow(3)));
    group.bench_function(size.to_string(), |bench| {
        bench.iter(|| {
            let a = MatrixView::row_major(black_box(&a), size, size);
            let b = MatrixView::row_major(black_box(&b), size, size);
            gemm::sgemm(
                1.0,
                a,
                b,
                0.0,
                MatrixViewMut::row_major(&mut out, size, size),
            )
        })
    });
    group.finish();
}

/// MnistNet's convolutions at batch 64, 3x3, unit-stride and unpadded: `conv1` (1 -> 32
/// channels on 28x28 maps) and `conv2` (32 -> 64 channels on 26x26).
fn mnist_conv(in_channels: usize, out_channels: usize, side: usize) -> Conv2dGeometry {
    Conv2dGeometry {
        batch: 64,
        in_channels,
        out_channels,
        in_h: side,
        in_w: side,
        kernel_h: 3,
        kernel_w: 3,
        stride_h: 1,
        stride_w: 1,
        pad_h: 0,
        pad_w: 0,
    }
}

/// The training convolutions: `conv2d/forward`, `conv2d/weight_gradient` and
/// `conv2d/backward` (all gradients) on MnistNet's second convolution, and the same with
/// `conv2d/conv1_` on its first (whose backward computes no input gradient, as in
/// training, where the images need none).
fn conv2d(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv2d");
    for (prefix, g, input_gradient) in [
        ("", mnist_conv(32, 64, 26), true),
        ("conv1_", mnist_conv(1, 32, 28), false),
    ] {
        let input = filled(g.input_len(), 3);
        let weight = filled(g.weight_len(), 4);
        let bias = filled(g.out_channels, 5);
        let grad_output = filled(g.output_len(), 6);
        let mut output = vec![0.0; g.output_len()];
        let mut grad_input = vec![0.0; g.input_len()];
        let mut grad_weight = vec![0.0; g.weight_len()];
        let mut grad_bias = vec![0.0; g.out_channels];

        group.throughput(Throughput::Elements(g.flops()));
        group.bench_function(format!("{prefix}forward"), |bench| {
            bench.iter(|| {
                conv::conv2d_forward(
                    &g,
                    black_box(&input),
                    black_box(&weight),
                    Some(&bias),
                    &mut output,
                )
            })
        });
        group.bench_function(format!("{prefix}weight_gradient"), |bench| {
            bench.iter(|| {
                let grads = conv::Conv2dGradients {
                    input: None,
                    weight: Some(&mut grad_weight),
                    bias: None,
                };
                conv::conv2d_backward(
                    &g,
                    black_box(&input),
                    black_box(&weight),
                    black_box(&grad_output),
                    grads,
                )
            })
        });
        // NOTE: the input gradient and the weight gradient each cost one forward's FLOPs.
        let gradients = if input_gradient { 2 } else { 1 };
        group.throughput(Throughput::Elements(gradients * g.flops()));
        group.bench_function(format!("{prefix}backward"), |bench| {
            bench.iter(|| {
                let grads = conv::Conv2dGradients {
                    input: input_gradient.then_some(&mut grad_input[..]),
                    weight: Some(&mut grad_weight),
                    bias: Some(&mut grad_bias),
                };
                conv::conv2d_backward(
                    &g,
                    black_box(&input),
                    black_box(&weight),
                    black_box(&grad_output),
                    grads,
                )
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    sgemm,
    conv2d,
    conv_implicit::implicit,
    linear::linear,
    activation::rotated_relu,
    activation::gelu,
    activation::memory_bound
);

fn main() {
    println!("SIMD paths: {}", rotor::kernels::simd::describe());
    benches();
    Criterion::default().configure_from_args().final_summary();
}
