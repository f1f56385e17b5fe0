//! MnistNet's two convolutions through the inference kernel (`PackedConv2d`: the implicit
//! product with the bias and rotated ReLU fused, the second one also 2x2 max-pooled), at
//! batch 64 and 1, dense and keeping every other channel; throughput in FLOPs, so
//! `Gelem/s` reads GFLOP/s.

use criterion::{Criterion, Throughput};
use rotor_kernels::conv::{Conv2dGeometry, PackedConv2d};
use rotor_kernels::skip::{ActiveChannels, Epilogue, SkipScratch};
use std::hint::black_box;

use crate::filled;

/// A 3x3, unit-stride, unpadded convolution of `in_channels` maps of `side` x `side`.
fn geometry(batch: usize, in_channels: usize, out_channels: usize, side: usize) -> Conv2dGeometry {
    Conv2dGeometry {
        batch,
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

/// `conv1` (1 -> 32 on 28x28) and `conv2` (32 -> 64 on 26x26, pooled), dense and with
/// every other input and output channel active (`keep50`), at batch 64 and 1.
pub fn implicit(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv_implicit");
    for batch in [64, 1] {
        for (name, g, pool) in [
            ("conv1", geometry(batch, 1, 32, 28), false),
            ("conv2", geometry(batch, 32, 64, 26), true),
        ] {
            let input = filled(g.input_len(), 11);
            let weight = filled(g.weight_len(), 12);
            let bias = filled(g.out_channels, 13);
            let slope = filled(g.out_channels, 14);
            let out_len = if pool {
                g.output_len() / 4
            } else {
                g.output_len()
            };
            let mut output = vec![0.0; out_len];
            for keep in [1, 2] {
                let inputs: Vec<usize> = (0..g.in_channels).step_by(keep).collect();
                let outputs: Vec<usize> = (0..g.out_channels).step_by(keep).collect();
                let active = ActiveChannels {
                    inputs: &inputs,
                    outputs: &outputs,
                };
                let layer = PackedConv2d::new(&g, active, &weight);
                let forward = if pool {
                    PackedConv2d::forward_max_pool2
                } else {
                    PackedConv2d::forward
                };
                let macs = g.output_len() / g.out_channels * outputs.len() * inputs.len() * 9;
                group.throughput(Throughput::Elements(2 * macs as u64));
                let mut scratch = SkipScratch::new();
                let label = if keep == 1 { "dense" } else { "keep50" };
                group.bench_function(format!("{name}/{label}/batch{batch}"), |bench| {
                    bench.iter(|| {
                        forward(
                            &layer,
                            batch,
                            black_box(&input),
                            Some(&bias),
                            Epilogue::RotatedRelu(&slope),
                            &mut scratch,
                            &mut output,
                        )
                    })
                });
            }
        }
    }
    group.finish();
}
