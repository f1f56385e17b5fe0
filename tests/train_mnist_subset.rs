//! End to end: a short seeded training run of the rotated-ReLU `MnistNet` on a 2,000-image
//! subset of the shipped MNIST learns (> 90% test accuracy) and is reproducible.

use rotor::datasets::{Batch, BatchOptions, ImageDataset, Subset, load_mnist};
use rotor::engine::{SeedableRng, SeededRng};
use rotor::nn::ModuleExt;
use rotor::nn::models::{Activation, MnistNet};
use rotor::nn::optim::Adam;
use rotor::nn::train::{Trainer, evaluate};

const TRAIN_IMAGES: usize = 2_000;
const TEST_IMAGES: usize = 2_000;
const EPOCHS: usize = 3;

fn first(data: &ImageDataset, n: usize) -> ImageDataset {
    data.subset(&(0..n).collect::<Vec<_>>())
}

/// Trains from seed 7 and returns the test accuracy and the final slopes of `act1`.
fn train(train: &ImageDataset, test: &ImageDataset) -> (f64, Vec<f32>) {
    let mut rng = SeededRng::seed_from_u64(7);
    let mut model = MnistNet::new(Activation::Rotated, &mut rng).unwrap();
    let options = BatchOptions {
        batch_size: 64,
        shuffle_seed: Some(7),
        ..BatchOptions::default()
    };
    let history = Trainer::new(Adam::new(2e-3), EPOCHS)
        .fit(
            &mut model,
            |epoch| {
                train
                    .batches(&options, epoch as u64)
                    .map(Batch::into_tensor)
            },
            &mut [],
        )
        .unwrap();
    assert_eq!(history.epochs.len(), EPOCHS);
    assert!(history.epochs.iter().all(|e| e.images == train.len()));
    let eval = BatchOptions {
        batch_size: 500,
        ..BatchOptions::default()
    };
    let evaluation = evaluate(&model, test.batches(&eval, 0).map(Batch::into_tensor)).unwrap();
    assert_eq!(evaluation.images, test.len());
    let slopes = model
        .named_params()
        .into_iter()
        .find(|(name, _)| name.starts_with("act1"))
        .map(|(_, p)| p.tensor().to_vec())
        .unwrap();
    (evaluation.accuracy(), slopes)
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
