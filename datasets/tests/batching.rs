//! Splits, normalisation and batches: layouts, values and seeded determinism.

use rotor_datasets::{
    BatchOptions, DatasetError, ImageDataset, Normalization, Origin, ValidationSize,
};

/// `count` images of 2x3 pixels; image `i` has pixels `i, i+1, ..., i+5` (so its first pixel
/// names it) and label `i % 3`.
fn numbered(count: usize) -> ImageDataset {
    assert!(count + 5 <= 255);
    let images = (0..count)
        .flat_map(|i| (i..i + 6).map(|p| p as u8))
        .collect();
    let labels = (0..count).map(|i| (i % 3) as u8).collect();
    ImageDataset::new(images, labels, 2, 3, 3).unwrap()
}

/// The dataset index of each image of a batch, read back from its first pixel.
fn identities(batch: &rotor_datasets::Batch, normalization: Normalization) -> Vec<usize> {
    batch
        .images
        .chunks(6)
        .map(|image| ((image[0] * normalization.std + normalization.mean) * 255.0).round() as usize)
        .collect()
}

#[test]
fn batches_in_dataset_order_are_nchw_and_normalised() {
    let dataset = numbered(10);
    let options = BatchOptions {
        batch_size: 4,
        ..BatchOptions::default()
    };
    let batches: Vec<_> = dataset.batches(&options, 0).collect();
    assert_eq!(
        batches.iter().map(|b| b.shape()).collect::<Vec<_>>(),
        [[4, 1, 2, 3], [4, 1, 2, 3], [2, 1, 2, 3]]
    );
    let (mean, std) = (0.1307f32, 0.3081f32);
    let mut expected_images = Vec::new();
    for &pixel in dataset.images() {
        expected_images.push((f32::from(pixel) / 255.0 - mean) / std);
    }
    let images: Vec<f32> = batches.iter().flat_map(|b| b.images.clone()).collect();
    assert_eq!(images.len(), expected_images.len());
    for (got, want) in images.iter().zip(&expected_images) {
        assert!((got - want).abs() < 1e-6, "{got} != {want}");
    }
    let labels: Vec<u32> = batches.iter().flat_map(|b| b.labels.clone()).collect();
    assert_eq!(labels, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]);
}

#[test]
fn the_last_partial_batch_is_kept_or_dropped() {
    let dataset = numbered(10);
    let keep = BatchOptions {
        batch_size: 4,
        ..BatchOptions::default()
    };
    let drop = BatchOptions {
        drop_last: true,
        ..keep
    };
    assert_eq!(dataset.batches(&keep, 0).len(), 3);
    assert_eq!(
        dataset
            .batches(&drop, 0)
            .map(|b| b.len())
            .collect::<Vec<_>>(),
        [4, 4]
    );
    let exact = BatchOptions {
        batch_size: 5,
        drop_last: true,
        ..keep
    };
    assert_eq!(dataset.batches(&exact, 0).len(), 2);
    let too_big = BatchOptions {
        batch_size: 11,
        drop_last: true,
        ..keep
    };
    assert_eq!(dataset.batches(&too_big, 0).count(), 0);
    let empty = numbered(0);
    assert_eq!(empty.batches(&keep, 0).count(), 0);
}

#[test]
fn shuffled_epochs_are_reproducible_permutations() {
    let dataset = numbered(50);
    let options = BatchOptions {
        batch_size: 8,
        shuffle_seed: Some(1234),
        normalization: Normalization::UNIT_INTERVAL,
        ..BatchOptions::default()
    };
    let order = |options: &BatchOptions, epoch| -> Vec<usize> {
        dataset
            .batches(options, epoch)
            .flat_map(|batch| {
                let ids = identities(&batch, options.normalization);
                for (id, label) in ids.iter().zip(&batch.labels) {
                    assert_eq!(*label as usize, id % 3, "label travels with its image");
                }
                ids
            })
            .collect()
    };
    let first = order(&options, 0);
    assert_eq!(
        first,
        order(&options, 0),
        "same seed and epoch, same batches"
    );
    let mut sorted = first.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..50).collect::<Vec<_>>(),
        "each example once per epoch"
    );
    assert_ne!(first, (0..50).collect::<Vec<_>>(), "shuffled");
    assert_ne!(first, order(&options, 1), "each epoch its own order");
    let other_seed = BatchOptions {
        shuffle_seed: Some(1235),
        ..options
    };
    assert_ne!(first, order(&other_seed, 0), "each seed its own order");

    let dropping = BatchOptions {
        drop_last: true,
        ..options
    };
    let dropped = order(&dropping, 0);
    assert_eq!(
        dropped,
        first[..48],
        "dropping the tail keeps the same order"
    );
}

#[test]
fn split_is_a_seeded_partition_keeping_order() {
    let dataset = numbered(100);
    let (train, validation) = dataset.split(ValidationSize::Fraction(0.2), 9);
    assert_eq!((train.len(), validation.len()), (80, 20));
    let first_pixels = |d: &ImageDataset| (0..d.len()).map(|i| d.image(i)[0]).collect::<Vec<_>>();
    let (train_ids, validation_ids) = (first_pixels(&train), first_pixels(&validation));
    assert!(train_ids.is_sorted() && validation_ids.is_sorted());
    let mut all = [train_ids.clone(), validation_ids.clone()].concat();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..100).map(|i| i as u8).collect::<Vec<_>>(),
        "disjoint and complete"
    );
    for (i, &id) in train_ids.iter().enumerate() {
        assert_eq!(train.labels()[i], id % 3, "label travels with its image");
    }

    assert_eq!(
        dataset.split(ValidationSize::Fraction(0.2), 9),
        (train.clone(), validation)
    );
    let (other_train, _) = dataset.split(ValidationSize::Fraction(0.2), 10);
    assert_ne!(other_train, train, "another seed, another split");

    let (count_train, count_validation) = dataset.split(ValidationSize::Count(7), 9);
    assert_eq!((count_train.len(), count_validation.len()), (93, 7));
    let (all_train, none) = dataset.split(ValidationSize::Count(0), 9);
    assert_eq!((all_train, none.len()), (dataset.clone(), 0));
    let (no_train, everything) = dataset.split(ValidationSize::Fraction(1.0), 9);
    assert_eq!((no_train.len(), everything), (0, dataset));
}

#[test]
#[should_panic(expected = "outside [0, 1]")]
fn a_fraction_above_one_panics() {
    numbered(4).split(ValidationSize::Fraction(1.5), 0);
}

#[test]
#[should_panic(expected = "exceeds")]
fn a_count_above_the_size_panics() {
    numbered(4).split(ValidationSize::Count(5), 0);
}

#[test]
#[should_panic(expected = "batch size must be positive")]
fn a_zero_batch_size_panics() {
    numbered(4).batches(
        &BatchOptions {
            batch_size: 0,
            ..BatchOptions::default()
        },
        0,
    );
}

#[test]
fn inconsistent_buffers_are_rejected() {
    for (images, labels, rows, cols) in [
        (vec![0u8; 11], vec![0u8; 2], 2, 3),
        (vec![0; 12], vec![0; 3], 2, 3),
        (vec![], vec![], 0, 3),
        (vec![], vec![0], usize::MAX, 2),
    ] {
        let error = ImageDataset::new(images, labels, rows, cols, 10).unwrap_err();
        assert!(
            matches!(error, DatasetError::InconsistentBuffers { .. }),
            "{error}"
        );
    }
}

#[test]
fn pixel_statistics_are_mean_and_population_std() {
    let dataset = ImageDataset::new(vec![0, 255, 0, 255], vec![0, 1], 1, 2, 2).unwrap();
    assert_eq!(
        dataset.pixel_statistics(),
        Normalization {
            mean: 0.5,
            std: 0.5
        }
    );
    let flat = ImageDataset::new(vec![7; 4], vec![0, 1], 1, 2, 2).unwrap();
    assert_eq!(flat.pixel_statistics(), Normalization::UNIT_INTERVAL);
    assert_eq!(numbered(0).pixel_statistics(), Normalization::UNIT_INTERVAL);
}

#[test]
fn subset_repeats_and_reorders() {
    let dataset = numbered(5);
    let picked = dataset.subset(&[4, 0, 4]);
    assert_eq!(picked.labels(), [1, 0, 1]);
    assert_eq!(picked.image(0), dataset.image(4));
    assert_eq!(picked.image(1), dataset.image(0));
    assert_eq!(dataset.num_classes(), 3);
}

#[test]
fn labels_must_stay_below_the_declared_class_count() {
    let error = ImageDataset::new(vec![0; 4], vec![1, 0, 2, 5], 1, 1, 5).unwrap_err();
    assert!(
        matches!(
            &error,
            DatasetError::LabelOutOfRange {
                file,
                index: 3,
                label: 5,
                classes: 5,
            } if *file == Origin::memory()
        ),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "in-memory input: label 5 at index 3 is out of range for 5 classes"
    );
    assert!(ImageDataset::new(vec![0], vec![0], 1, 1, 0).is_err());
    assert!(ImageDataset::new(vec![], vec![], 1, 1, 0).is_ok());
}

#[test]
fn the_class_count_is_the_declared_one_and_survives_splits() {
    let dataset = ImageDataset::new(vec![0; 4], vec![0, 1, 1, 0], 1, 1, 10).unwrap();
    assert_eq!(dataset.num_classes(), 10);
    let (train, validation) = dataset.split(ValidationSize::Count(1), 3);
    assert_eq!((train.num_classes(), validation.num_classes()), (10, 10));
    assert_eq!(dataset.subset(&[]).num_classes(), 10);
}
