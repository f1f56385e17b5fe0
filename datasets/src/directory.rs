//! Loading an MNIST-style directory of four IDX files, and the MNIST copy shipped with the
//! crate.

use std::path::{Path, PathBuf};

use crate::dataset::{ImageDataset, MNIST_CLASSES};
use crate::error::DatasetError;
use crate::idx::IdxArray;

/// The directory of the MNIST copy shipped with this crate (`data/mnist/` beside its
/// `Cargo.toml`), fixed when the crate is compiled.
///
/// It holds the four original gzipped IDX files of the MNIST database of handwritten digits
/// (Yann LeCun, Corinna Cortes, Christopher J.C. Burges; CC BY-SA 3.0). The path points into
/// the source tree, so it holds for programs built from the workspace or with this crate as
/// a path dependency, not for a binary moved to another machine: pass a directory to
/// [`load_idx_dir`] there.
pub const SHIPPED_MNIST_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist");

/// Where Debian's package `dataset-fashion-mnist` installs Fashion-MNIST.
pub const DEBIAN_FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Which of the two sets of an MNIST-style dataset to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subset {
    /// The training set (`train-*` files; 60,000 examples in MNIST).
    Train,
    /// The test set (`t10k-*` files; 10,000 examples in MNIST).
    Test,
}

/// Loads the MNIST copy shipped in [`SHIPPED_MNIST_DIR`]: no set-up, no network.
///
/// # Errors
/// As [`load_idx_dir`].
pub fn load_mnist(subset: Subset) -> Result<ImageDataset, DatasetError> {
    load_idx_dir(Path::new(SHIPPED_MNIST_DIR), subset)
}

/// Loads one subset of an MNIST-style directory of [`MNIST_CLASSES`] classes: MNIST or
/// Fashion-MNIST (for example from [`DEBIAN_FASHION_MNIST_DIR`]).
///
/// # Errors
/// As [`load_idx_dir_with_classes`].
pub fn load_idx_dir(dir: &Path, subset: Subset) -> Result<ImageDataset, DatasetError> {
    load_idx_dir_with_classes(dir, subset, MNIST_CLASSES)
}

/// Loads one subset of any pair of IDX files named as MNIST's, whose labels are below
/// `classes`.
///
/// Accepted names, tried in this order for the training images (likewise `t10k` for the
/// test set and `labels-idx1` for labels):
/// `train-images-idx3-ubyte.gz`, `train-images-idx3-ubyte` (the original distribution's,
/// Zalando's and Debian's), `train-images.idx3-ubyte.gz`, `train-images.idx3-ubyte` (a
/// dotted variant common in unpacked copies). Each file may be gzipped or raw whatever its
/// name says.
///
/// # Errors
/// [`DatasetError::MissingFile`] listing the names tried when none exists; any IDX parse
/// error; [`DatasetError::UnexpectedShape`] or [`DatasetError::CountMismatch`] when the
/// images and labels do not form a dataset; [`DatasetError::LabelOutOfRange`] naming the
/// label file for the first label `>= classes`.
pub fn load_idx_dir_with_classes(
    dir: &Path,
    subset: Subset,
    classes: usize,
) -> Result<ImageDataset, DatasetError> {
    let (prefix, images_role, labels_role) = match subset {
        Subset::Train => ("train", "training images", "training labels"),
        Subset::Test => ("t10k", "test images", "test labels"),
    };
    let images = find_file(dir, &format!("{prefix}-images"), 3, images_role)?;
    let labels = find_file(dir, &format!("{prefix}-labels"), 1, labels_role)?;
    ImageDataset::from_idx_with_classes(IdxArray::open(images)?, IdxArray::open(labels)?, classes)
}

/// The first existing file among the accepted names of one IDX file, `base` being for
/// example `train-images`.
fn find_file(
    dir: &Path,
    base: &str,
    rank: u8,
    role: &'static str,
) -> Result<PathBuf, DatasetError> {
    let tried: Vec<String> = [
        format!("{base}-idx{rank}-ubyte"),
        format!("{base}.idx{rank}-ubyte"),
    ]
    .into_iter()
    .flat_map(|stem| [format!("{stem}.gz"), stem])
    .collect();
    match tried
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
    {
        Some(path) => Ok(path),
        None => Err(DatasetError::MissingFile {
            dir: dir.to_path_buf(),
            what: role,
            tried,
        }),
    }
}
