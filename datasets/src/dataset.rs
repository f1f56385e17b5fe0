//! A labelled set of single-channel images kept as bytes, and its train/validation split.

use std::fmt;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::DatasetError;
use crate::error::Origin;
use crate::idx::IdxArray;
use crate::normalization::Normalization;

/// Number of classes of MNIST and of Fashion-MNIST (digits 0 to 9, ten kinds of clothing):
/// what [`ImageDataset::from_idx`], [`load_idx_dir`](crate::load_idx_dir) and
/// [`load_mnist`](crate::load_mnist) check labels against.
pub const MNIST_CLASSES: usize = 10;

/// Labelled grey-level images, all of `rows x cols` pixels, each label below a declared class
/// count.
///
/// Layout: `images` holds `len() * rows * cols` bytes, image after image, each row-major
/// (0 = black, 255 = white, as in MNIST); `labels[i]` is the class of image `i`, in
/// `0..num_classes()`. Bytes take a quarter of the memory of floats; batches convert to
/// normalised `f32` on the way out (see
/// [`ImageDataset::batches`](crate::ImageDataset::batches)).
#[derive(Clone, PartialEq, Eq)]
pub struct ImageDataset {
    images: Vec<u8>,
    labels: Vec<u8>,
    rows: usize,
    cols: usize,
    classes: usize,
}

/// How much of a dataset [`ImageDataset::split`] holds out for validation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValidationSize {
    /// This fraction of the examples, in [0, 1], rounded to the nearest count.
    Fraction(f64),
    /// Exactly this many examples.
    Count(usize),
}

impl ImageDataset {
    /// A dataset of `classes` classes from its buffers (layout in the type's documentation).
    ///
    /// # Errors
    /// [`DatasetError::InconsistentBuffers`] unless
    /// `images.len() == labels.len() * rows * cols` with `rows` and `cols` positive;
    /// [`DatasetError::LabelOutOfRange`] for the first label `>= classes`.
    pub fn new(
        images: Vec<u8>,
        labels: Vec<u8>,
        rows: usize,
        cols: usize,
        classes: usize,
    ) -> Result<Self, DatasetError> {
        let consistent = rows > 0
            && cols > 0
            && rows
                .checked_mul(cols)
                .and_then(|pixels| pixels.checked_mul(labels.len()))
                == Some(images.len());
        if !consistent {
            return Err(DatasetError::InconsistentBuffers {
                images_len: images.len(),
                labels_len: labels.len(),
                rows,
                cols,
            });
        }
        check_labels(&labels, classes, &Origin::memory())?;
        Ok(ImageDataset {
            images,
            labels,
            rows,
            cols,
            classes,
        })
    }

    /// A dataset of [`MNIST_CLASSES`] classes from an IDX image array `[n, rows, cols]` and an
    /// IDX label array `[n]`, as MNIST and Fashion-MNIST store them.
    ///
    /// # Errors
    /// As [`ImageDataset::from_idx_with_classes`].
    pub fn from_idx(images: IdxArray, labels: IdxArray) -> Result<Self, DatasetError> {
        Self::from_idx_with_classes(images, labels, MNIST_CLASSES)
    }

    /// A dataset of `classes` classes from an IDX image array `[n, rows, cols]` and an IDX
    /// label array `[n]`.
    ///
    /// # Errors
    /// [`DatasetError::UnexpectedShape`] for other ranks or an image side of 0,
    /// [`DatasetError::CountMismatch`] when the two counts differ,
    /// [`DatasetError::LabelOutOfRange`] naming the label file for the first label
    /// `>= classes`.
    pub fn from_idx_with_classes(
        images: IdxArray,
        labels: IdxArray,
        classes: usize,
    ) -> Result<Self, DatasetError> {
        let [count, rows, cols] = *images.dims() else {
            return Err(unexpected_shape(
                &images,
                "images of rank 3 [count, rows, cols]",
            ));
        };
        if rows == 0 || cols == 0 {
            return Err(unexpected_shape(&images, "images of at least 1x1 pixel"));
        }
        let [label_count] = *labels.dims() else {
            return Err(unexpected_shape(&labels, "labels of rank 1 [count]"));
        };
        if label_count != count {
            return Err(DatasetError::CountMismatch {
                images_file: images.origin().clone(),
                images: count,
                labels_file: labels.origin().clone(),
                labels: label_count,
            });
        }
        check_labels(labels.data(), classes, labels.origin())?;
        Ok(ImageDataset {
            images: images.into_data(),
            labels: labels.into_data(),
            rows,
            cols,
            classes,
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the dataset holds no example.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Rows of every image.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of every image.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Pixels of one image, `rows * cols`.
    pub fn pixels_per_image(&self) -> usize {
        self.rows * self.cols
    }

    /// All images, `len() * rows * cols` bytes, image after image, each row-major.
    pub fn images(&self) -> &[u8] {
        &self.images
    }

    /// All labels, one per image.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// Image `index`, `rows * cols` bytes, row-major.
    ///
    /// # Panics
    /// When `index >= len()`.
    pub fn image(&self, index: usize) -> &[u8] {
        assert!(
            index < self.len(),
            "image {index} of a dataset of {}",
            self.len()
        );
        let pixels = self.pixels_per_image();
        &self.images[index * pixels..(index + 1) * pixels]
    }

    /// Number of classes declared when the dataset was made; every label is below it. A
    /// class may have no example (a small subset, say), so this is the width a classifier's
    /// output needs, not a count of the labels present.
    pub fn num_classes(&self) -> usize {
        self.classes
    }

    /// The examples at `indices`, in that order (an index may repeat).
    ///
    /// # Panics
    /// When an index is `>= len()`.
    pub fn subset(&self, indices: &[usize]) -> ImageDataset {
        let mut images = Vec::with_capacity(indices.len() * self.pixels_per_image());
        let mut labels = Vec::with_capacity(indices.len());
        for &index in indices {
            images.extend_from_slice(self.image(index));
            labels.push(self.labels[index]);
        }
        ImageDataset {
            images,
            labels,
            rows: self.rows,
            cols: self.cols,
            classes: self.classes,
        }
    }

    /// Splits into `(train, validation)`: `validation` examples drawn at random with a
    /// ChaCha8 generator seeded by `seed`, the rest for training. Both keep the original
    /// order of their examples. Same seed, same split.
    ///
    /// # Panics
    /// When a fraction is outside [0, 1] or a count exceeds `len()`.
    pub fn split(&self, validation: ValidationSize, seed: u64) -> (ImageDataset, ImageDataset) {
        let held_out = match validation {
            ValidationSize::Fraction(fraction) => {
                assert!(
                    (0.0..=1.0).contains(&fraction),
                    "validation fraction {fraction} outside [0, 1]"
                );
                // NOTE: exact for any realistic count (below 2^53).
                (self.len() as f64 * fraction).round() as usize
            }
            ValidationSize::Count(count) => {
                assert!(
                    count <= self.len(),
                    "validation count {count} exceeds the {} examples",
                    self.len()
                );
                count
            }
        };
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let (validation, train) = order.split_at_mut(held_out);
        validation.sort_unstable();
        train.sort_unstable();
        (self.subset(train), self.subset(validation))
    }

    /// Mean and standard deviation of all pixels on the [0, 1] scale, ready to normalise
    /// a dataset other than MNIST (Fashion-MNIST: about 0.2860 and 0.3530).
    ///
    /// Returns [`Normalization::UNIT_INTERVAL`] for an empty dataset or one whose pixels
    /// are all equal (no spread to divide by).
    pub fn pixel_statistics(&self) -> Normalization {
        let mut histogram = [0u64; 256];
        for &pixel in &self.images {
            histogram[usize::from(pixel)] += 1;
        }
        let count = self.images.len() as f64;
        let (sum, sum_squares) =
            histogram
                .iter()
                .enumerate()
                .fold((0.0f64, 0.0f64), |(sum, squares), (level, &n)| {
                    let x = level as f64 / 255.0;
                    (sum + n as f64 * x, squares + n as f64 * x * x)
                });
        let mean = sum / count;
        let variance = sum_squares / count - mean * mean;
        if self.images.is_empty() || variance <= 0.0 {
            return Normalization::UNIT_INTERVAL;
        }
        Normalization {
            mean: mean as f32,
            std: variance.sqrt() as f32,
        }
    }
}

impl fmt::Debug for ImageDataset {
    // NOTE: a summary; printing tens of megabytes of pixels helps nobody.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageDataset")
            .field("len", &self.len())
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("num_classes", &self.num_classes())
            .finish_non_exhaustive()
    }
}

/// Checks every label against the class count; the error names the first one out of range.
fn check_labels(labels: &[u8], classes: usize, origin: &Origin) -> Result<(), DatasetError> {
    match labels
        .iter()
        .position(|&label| usize::from(label) >= classes)
    {
        Some(index) => Err(DatasetError::LabelOutOfRange {
            file: origin.clone(),
            index,
            label: labels[index],
            classes,
        }),
        None => Ok(()),
    }
}

fn unexpected_shape(array: &IdxArray, expected: &'static str) -> DatasetError {
    DatasetError::UnexpectedShape {
        file: array.origin().clone(),
        expected,
        found: array.dims().to_vec(),
    }
}
