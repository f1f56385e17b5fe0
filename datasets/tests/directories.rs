//! Loading MNIST-style directories: the shipped MNIST, Fashion-MNIST when installed, and
//! the accepted file-name schemes.

mod common;

use std::path::Path;

use common::{gzip, idx_bytes};
use rotor_datasets::{
    DEBIAN_FASHION_MNIST_DIR, DatasetError, MNIST_CLASSES, SHIPPED_MNIST_DIR, Subset, load_idx_dir,
    load_idx_dir_with_classes, load_mnist,
};

#[test]
fn shipped_mnist_training_set_loads_with_its_known_content() {
    let train = load_mnist(Subset::Train).expect("shipped MNIST");
    assert_eq!((train.len(), train.rows(), train.cols()), (60_000, 28, 28));
    assert_eq!(train.images().len(), 60_000 * 784);
    assert_eq!(train.labels()[..4], [5, 0, 4, 1]);
    assert_eq!(train.num_classes(), 10);
    // NOTE: the statistics everyone normalises MNIST with double as a checksum of every pixel.
    let statistics = train.pixel_statistics();
    assert!((statistics.mean - 0.1307).abs() < 1e-4, "{statistics:?}");
    assert!((statistics.std - 0.3081).abs() < 1e-4, "{statistics:?}");
}

#[test]
fn shipped_mnist_test_set_loads_with_its_known_content() {
    let test = load_mnist(Subset::Test).expect("shipped MNIST");
    assert_eq!((test.len(), test.rows(), test.cols()), (10_000, 28, 28));
    assert_eq!(test.labels()[..4], [7, 2, 1, 0]);
    assert!(test.labels().iter().all(|&label| label <= 9));
    let mut per_class = [0usize; 10];
    test.labels()
        .iter()
        .for_each(|&label| per_class[usize::from(label)] += 1);
    assert_eq!(
        per_class,
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    let explicit = load_idx_dir(Path::new(SHIPPED_MNIST_DIR), Subset::Test).unwrap();
    assert_eq!(explicit, test);
}

#[test]
fn fashion_mnist_loads_when_installed() {
    let dir = Path::new(DEBIAN_FASHION_MNIST_DIR);
    if !dir.is_dir() {
        eprintln!(
            "skipped: {DEBIAN_FASHION_MNIST_DIR} absent (Debian package dataset-fashion-mnist)"
        );
        return;
    }
    let train = load_idx_dir(dir, Subset::Train).expect("installed Fashion-MNIST");
    assert_eq!((train.len(), train.rows(), train.cols()), (60_000, 28, 28));
    assert_eq!(train.labels()[..4], [9, 0, 0, 3]);
    let test = load_idx_dir(dir, Subset::Test).expect("installed Fashion-MNIST");
    assert_eq!((test.len(), test.rows(), test.cols()), (10_000, 28, 28));
    assert_eq!(test.labels()[..4], [9, 2, 1, 1]);
    assert_eq!(test.num_classes(), 10);
}

#[test]
fn both_naming_schemes_and_both_encodings_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let images = idx_bytes(&[3, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    // NOTE: dotted names, raw training files, gzipped test files.
    std::fs::write(dir.path().join("train-images.idx3-ubyte"), &images).unwrap();
    std::fs::write(
        dir.path().join("train-labels.idx1-ubyte"),
        idx_bytes(&[3], &[2, 0, 1]),
    )
    .unwrap();
    std::fs::write(dir.path().join("t10k-images-idx3-ubyte.gz"), gzip(&images)).unwrap();
    std::fs::write(
        dir.path().join("t10k-labels-idx1-ubyte"),
        idx_bytes(&[3], &[1, 1, 0]),
    )
    .unwrap();

    let train = load_idx_dir(dir.path(), Subset::Train).unwrap();
    assert_eq!((train.len(), train.rows(), train.cols()), (3, 2, 2));
    assert_eq!(train.image(2), [8, 9, 10, 11]);
    assert_eq!(train.labels(), [2, 0, 1]);
    let test = load_idx_dir(dir.path(), Subset::Test).unwrap();
    assert_eq!(test.images(), train.images());
    assert_eq!(test.labels(), [1, 1, 0]);
}

#[test]
fn a_missing_file_lists_the_names_tried() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t10k-images-idx3-ubyte"),
        idx_bytes(&[1, 1, 1], &[0]),
    )
    .unwrap();
    let error = load_idx_dir(dir.path(), Subset::Test).unwrap_err();
    let DatasetError::MissingFile { what, tried, .. } = &error else {
        panic!("expected a missing file, got {error}");
    };
    assert_eq!(*what, "test labels");
    assert_eq!(
        tried,
        &[
            "t10k-labels-idx1-ubyte.gz",
            "t10k-labels-idx1-ubyte",
            "t10k-labels.idx1-ubyte.gz",
            "t10k-labels.idx1-ubyte"
        ]
    );
    let missing_train = load_idx_dir(dir.path(), Subset::Train).unwrap_err();
    assert!(
        missing_train
            .to_string()
            .contains("no training images file"),
        "{missing_train}"
    );
}

#[test]
fn mismatched_counts_name_both_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte"),
        idx_bytes(&[2, 1, 1], &[0, 0]),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("train-labels-idx1-ubyte"),
        idx_bytes(&[1], &[0]),
    )
    .unwrap();
    let error = load_idx_dir(dir.path(), Subset::Train).unwrap_err();
    assert!(
        matches!(
            error,
            DatasetError::CountMismatch {
                images: 2,
                labels: 1,
                ..
            }
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("train-images-idx3-ubyte") && message.contains("train-labels-idx1-ubyte")
    );
}

#[test]
fn a_label_out_of_range_names_the_file_the_index_and_the_label() {
    let dir = tempfile::tempdir().unwrap();
    let count = 400;
    let mut labels: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
    labels[345] = 12;
    std::fs::write(
        dir.path().join("t10k-images-idx3-ubyte"),
        idx_bytes(&[count, 1, 1], &vec![0; count as usize]),
    )
    .unwrap();
    let labels_path = dir.path().join("t10k-labels-idx1-ubyte.gz");
    std::fs::write(&labels_path, gzip(&idx_bytes(&[count], &labels))).unwrap();

    let error = load_idx_dir(dir.path(), Subset::Test).unwrap_err();
    let DatasetError::LabelOutOfRange {
        file,
        index,
        label,
        classes,
    } = &error
    else {
        panic!("expected a label out of range, got {error}");
    };
    assert_eq!(file.path(), Some(labels_path.as_path()));
    assert_eq!((*index, *label, *classes), (345, 12, MNIST_CLASSES));
    let message = error.to_string();
    assert!(
        message.contains("t10k-labels-idx1-ubyte.gz")
            && message.contains("label 12 at index 345 is out of range for 10 classes"),
        "{message}"
    );

    // NOTE: the same files are a valid dataset of 13 classes, and say so.
    let wider = load_idx_dir_with_classes(dir.path(), Subset::Test, 13).unwrap();
    assert_eq!((wider.len(), wider.num_classes()), (400, 13));
    let narrower = load_idx_dir_with_classes(dir.path(), Subset::Test, 3).unwrap_err();
    assert!(
        matches!(
            narrower,
            DatasetError::LabelOutOfRange {
                index: 3,
                label: 3,
                classes: 3,
                ..
            }
        ),
        "{narrower}"
    );
}
