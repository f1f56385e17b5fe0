//! One MnistNet training step at batch 64: forward, cross-entropy, backward and the
//! optimizer update, as the library's `Trainer` runs it. Reported as images per second.
//!
//! Besides the full-width nets (rotated ReLU and plain ReLU), a keep sweep times the
//! rotated-ReLU nets that keep 75%, 50% and 25% of the channels of every hidden layer, with
//! SGD and with Adam, two ways: *masked*, the full-width net with the other channels'
//! slopes zero and frozen, which training skips (masked fine-tuning), and *compacted*, the
//! smaller net compaction while training (`CompactEvery`) leaves.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rotor::datasets::{BatchOptions, Subset, load_mnist};
use rotor::engine::{SeedableRng, SeededRng, Tensor};
use rotor::nn::prune::{GateKind, freeze_dead};
use rotor::nn::train::loss_and_gradients;
use rotor::nn::{Activation, Adam, Layer, MnistNet, Module, Optimizer, Sgd};

const BATCH: usize = 64;
/// Hidden widths of MnistNet at full width.
const FULL: [usize; 3] = [32, 64, 128];

/// A fresh optimizer of one kind.
type MakeOptimizer = fn() -> Box<dyn Optimizer>;

/// A full-width net whose hidden layers keep only their first `keep` percent of channels
/// live: the others' slopes are zero and frozen, as after masking and `freeze_dead`.
fn masked(keep: usize, rng: &mut SeededRng) -> MnistNet {
    let mut model = MnistNet::new(Activation::Rotated, rng).unwrap();
    let net = model.sequential_mut().expect("MnistNet is a sequence");
    for (_, layer) in net.layers_mut() {
        if let Layer::RotatedRelu(act) = layer {
            act.slope.update(|a| {
                let live = a.len() * keep / 100;
                a[live..].fill(0.0);
            });
        }
    }
    freeze_dead(net, GateKind::Slope);
    model
}

/// One step of `model` on the batch, as the trainer takes it.
fn step(model: &mut MnistNet, optimizer: &mut dyn Optimizer, images: &Tensor, labels: &[u32]) {
    let (_, grads) = loss_and_gradients(model, black_box(images), labels).unwrap();
    optimizer.step(model, &grads);
}

fn train_step(c: &mut Criterion) {
    eprintln!("{}", rotor::kernels::simd::describe());
    let data = load_mnist(Subset::Test).expect("the shipped MNIST loads");
    let options = BatchOptions {
        batch_size: BATCH,
        ..BatchOptions::default()
    };
    let batch = data.batches(&options, 0).next().expect("one batch");
    let (images, labels) = batch.into_tensor().expect("a well-formed batch");
    let optimizers: [(&str, MakeOptimizer); 2] = [
        ("sgd", || Box::new(Sgd::new(0.01).momentum(0.9))),
        ("adam", || Box::new(Adam::new(1e-3))),
    ];

    let mut group = c.benchmark_group("train_step");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(30);
    let mut relu = MnistNet::new(Activation::Relu, &mut SeededRng::seed_from_u64(0)).unwrap();
    let mut sgd = Sgd::new(0.01).momentum(0.9);
    group.bench_function("mnistnet_relu_sgd_batch64", |b| {
        b.iter(|| step(&mut relu, &mut sgd, &images, &labels))
    });
    for (optimizer_name, make) in optimizers {
        for keep in [100, 75, 50, 25] {
            let widths = FULL.map(|w| w * keep / 100);
            let mut rng = SeededRng::seed_from_u64(0);
            let mut model = MnistNet::with_widths(Activation::Rotated, widths, &mut rng).unwrap();
            let mut optimizer = make();
            let name = match keep {
                100 => format!("mnistnet_rotated_{optimizer_name}_batch64"),
                _ => format!("mnistnet_rotated_keep{keep}_compacted_{optimizer_name}_batch64"),
            };
            group.bench_function(name, |b| {
                b.iter(|| step(&mut model, optimizer.as_mut(), &images, &labels))
            });
            if keep < 100 {
                let mut model = masked(keep, &mut SeededRng::seed_from_u64(0));
                let mut optimizer = make();
                let name = format!("mnistnet_rotated_keep{keep}_masked_{optimizer_name}_batch64");
                group.bench_function(name, |b| {
                    b.iter(|| step(&mut model, optimizer.as_mut(), &images, &labels))
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
