//! One MnistNet SGD training step at batch 64: forward, cross-entropy, backward and the
//! optimizer update. Reported as images per second.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rotor::datasets::{BatchOptions, Subset, load_mnist};
use rotor::engine::{SeedableRng, SeededRng};
use rotor::nn::{Activation, MnistNet, Module, Optimizer, Sgd};

const BATCH: usize = 64;

fn train_step(c: &mut Criterion) {
    eprintln!("{}", rotor::kernels::simd::describe());
    let data = load_mnist(Subset::Test).expect("the shipped MNIST loads");
    let options = BatchOptions {
        batch_size: BATCH,
        ..BatchOptions::default()
    };
    let batch = data.batches(&options, 0).next().expect("one batch");
    let (images, labels) = batch.into_tensor().expect("a well-formed batch");

    let mut group = c.benchmark_group("train_step");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(30);
    for (name, activation) in [("rotated", Activation::Rotated), ("relu", Activation::Relu)] {
        let mut model = MnistNet::new(activation, &mut SeededRng::seed_from_u64(0)).unwrap();
        let mut sgd = Sgd::new(0.01).momentum(0.9);
        group.bench_function(format!("mnistnet_{name}_sgd_batch64"), |b| {
            b.iter(|| {
                let loss = model
                    .forward_train(black_box(&images))
                    .and_then(|y| y.cross_entropy(&labels))
                    .unwrap();
                let grads = loss.backward().unwrap();
                sgd.step(&mut model, &grads);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
