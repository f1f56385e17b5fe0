//! MnistNet's linear layers at batch 64 through the two inference kernels: the first
//! (9216 -> 128, rotated-ReLU epilogue) on the full layer and on half of it, the second
//! (128 -> 10) reading a quarter of its inputs.

use criterion::{Criterion, Throughput};
use rotor_kernels::aligned::AlignedFloats;
use rotor_kernels::linear::PackedLinear;
use rotor_kernels::linear::{ActiveLinear, LinearGeometry, linear_forward_active};
use rotor_kernels::skip::{ActiveChannels, Epilogue, SkipScratch};
use std::hint::black_box;

use crate::filled;

/// The flattened `[64, 12, 12]` map of MnistNet's second convolution, into 128 outputs.
const GEOMETRY: LinearGeometry = LinearGeometry {
    batch: 64,
    in_features: 64 * 144,
    out_features: 128,
    group: 144,
};

/// Three ways to run the first layer (throughput in FLOPs, so `Gelem/s` reads GFLOP/s),
/// then the second layer:
///
/// - `packed/dense`: the whole layer, as a dense plan runs it;
/// - `packed/keep50`: every other input channel and output packed, as a compacted plan
///   runs it;
/// - `skipping/keep50`: the same active channels read in place from the full layer, as a
///   skipping plan runs it.
pub fn linear(c: &mut Criterion) {
    let g = GEOMETRY;
    let input = filled(g.batch * g.in_features, 7);
    // On a cache line, as an inference plan keeps a skipping layer's weight.
    let weight = AlignedFloats::from_slice(&filled(g.out_features * g.in_features, 8));
    let bias = filled(g.out_features, 9);
    let slope = filled(g.out_features, 10);
    let epilogue = Epilogue::RotatedRelu(&slope);
    let inputs: Vec<usize> = (0..g.in_channels()).step_by(2).collect();
    let outputs: Vec<usize> = (0..g.out_features).step_by(2).collect();
    let half = ActiveChannels {
        inputs: &inputs,
        outputs: &outputs,
    };
    let dense = PackedLinear::new(g.in_features, g.out_features, &weight);
    let packed_half = PackedLinear::with_active(&g, half, &weight);
    let mut scratch = SkipScratch::new();
    let mut output = vec![0.0; g.batch * g.out_features];

    let mut group = c.benchmark_group("linear/9216x128_batch64");
    let flops = |layer: &PackedLinear| 2 * (g.batch * layer.macs_per_row()) as u64;
    for (name, layer) in [("packed/dense", &dense), ("packed/keep50", &packed_half)] {
        group.throughput(Throughput::Elements(flops(layer)));
        group.bench_function(name, |bench| {
            bench.iter(|| {
                let x = black_box(&input);
                layer.forward(g.batch, x, Some(&bias), epilogue, &mut scratch, &mut output)
            })
        });
    }
    group.throughput(Throughput::Elements(flops(&packed_half)));
    group.bench_function("skipping/keep50", |bench| {
        bench.iter(|| {
            let layer = ActiveLinear {
                geometry: g,
                active: half,
                weight: black_box(&weight),
                bias: Some(&bias),
                epilogue,
            };
            linear_forward_active(&layer, black_box(&input), &mut scratch, &mut output)
        })
    });
    group.finish();
    second_layer(c);
}

/// MnistNet's second linear layer with every fourth input kept, as the skipping plan at
/// 25% runs it: its active inputs are 32 runs of one feature.
fn second_layer(c: &mut Criterion) {
    let g = LinearGeometry {
        batch: 64,
        in_features: 128,
        out_features: 10,
        group: 1,
    };
    let input = filled(g.batch * g.in_features, 11);
    let weight = filled(g.out_features * g.in_features, 12);
    let bias = filled(g.out_features, 13);
    let inputs: Vec<usize> = (0..g.in_features).step_by(4).collect();
    let outputs: Vec<usize> = (0..g.out_features).collect();
    let active = ActiveChannels {
        inputs: &inputs,
        outputs: &outputs,
    };
    let mut scratch = SkipScratch::new();
    let mut output = vec![0.0; g.batch * g.out_features];
    let mut group = c.benchmark_group("linear/128x10_batch64");
    group.throughput(Throughput::Elements(
        2 * (g.batch * inputs.len() * outputs.len()) as u64,
    ));
    group.bench_function("skipping/keep25", |bench| {
        bench.iter(|| {
            let layer = ActiveLinear {
                geometry: g,
                active,
                weight: black_box(&weight),
                bias: Some(&bias),
                epilogue: Epilogue::Identity,
            };
            linear_forward_active(&layer, black_box(&input), &mut scratch, &mut output)
        })
    });
    group.finish();
}
