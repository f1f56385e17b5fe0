//! End to end: a short seeded training run of the rotated-ReLU `MnistNet` on a 2,000-image
//! subset of the shipped MNIST learns (> 90% test accuracy) and is reproducible.

use rotor::datasets::{BatchOptions, ImageDataset, Subset, load_mnist};
use rotor::engine::{SeedableRng, SeededRng};
use rotor::nn::metrics::count_correct;
use rotor::nn::models::{Activation, MnistNet};
use rotor::nn::optim::{Adam, Optimizer};
use rotor::nn::{Module, ModuleExt};

const TRAIN_IMAGES: usize = 2_000;
const TEST_IMAGES: usize = 2_000;
const EPOCHS: u64 = 3;

fn first(data: &ImageDataset, n: usize) -> ImageDataset {
    data.subset(&(0..n).collect::<Vec<_>>())
}

/// Trains from seed 7 and returns the test accuracy and the final slopes of `act1`.
fn train(train: &ImageDataset, test: &ImageDataset) -> (f64, Vec<f32>) {
    let mut rng = SeededRng::seed_from_u64(7);
    let mut model = MnistNet::new(Activation::Rotated, &mut rng).unwrap();
    let mut optimizer = Adam::new(2e-3);
    let options = BatchOptions {
        batch_size: 64,
        shuffle_seed: Some(7),
        ..BatchOptions::default()
    };
    for epoch in 0..EPOCHS {
        for batch in train.batches(&options, epoch) {
            let (images, labels) = batch.into_tensor().unwrap();
            let loss = model
                .forward_train(&images)
                .unwrap()
                .cross_entropy(&labels)
                .unwrap();
            let grads = loss.backward().unwrap();
            optimizer.step(&mut model, &grads);
        }
    }
    let mut correct = 0;
    let eval = BatchOptions {
        batch_size: 500,
        ..BatchOptions::default()
    };
    for batch in test.batches(&eval, 0) {
        let (images, labels) = batch.into_tensor().unwrap();
        correct += count_correct(&model.forward(&images).unwrap(), &labels).unwrap();
    }
    let slopes = model
        .named_params()
        .into_iter()
        .find(|(name, _)| name.starts_with("act1"))
        .map(|(_, p)| p.tensor().to_vec())
        .unwrap();
    (correct as f64 / test.len() as f64, slopes)
}

#[test]
fn a_short_seeded_run_learns_and_repeats_exactly() {
    let train_set = first(&load_mnist(Subset::Train).unwrap(), TRAIN_IMAGES);
    let test_set = first(&load_mnist(Subset::Test).unwrap(), TEST_IMAGES);
    let (accuracy, slopes) = train(&train_set, &test_set);
    assert!(accuracy > 0.90, "test accuracy {accuracy}");
    let (again, slopes_again) = train(&train_set, &test_set);
    assert_eq!(accuracy, again);
    assert_eq!(
        slopes.iter().map(|s| s.to_bits()).collect::<Vec<_>>(),
        slopes_again.iter().map(|s| s.to_bits()).collect::<Vec<_>>()
    );
}
