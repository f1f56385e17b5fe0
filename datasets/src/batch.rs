//! Mini-batches of normalised `f32` images, in a seeded shuffled order per epoch.

use std::fmt;
use std::ops::Range;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::dataset::ImageDataset;
use crate::normalization::Normalization;

/// How [`ImageDataset::batches`] cuts an epoch into batches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchOptions {
    /// Examples per batch; positive.
    pub batch_size: usize,
    /// `Some(seed)`: visit the examples in an order shuffled by a ChaCha8 generator seeded
    /// with `seed` on stream `epoch`, so each epoch has its own order and the same
    /// `(seed, epoch)` always gives the same batches. `None`: dataset order.
    pub shuffle_seed: Option<u64>,
    /// Whether to drop the last batch when it holds fewer than `batch_size` examples.
    pub drop_last: bool,
    /// The map from bytes to the floats a network sees.
    pub normalization: Normalization,
}

impl Default for BatchOptions {
    /// 64 examples per batch, dataset order, last partial batch kept, MNIST normalisation.
    fn default() -> Self {
        BatchOptions {
            batch_size: 64,
            shuffle_seed: None,
            drop_last: false,
            normalization: Normalization::MNIST,
        }
    }
}

/// One mini-batch as plain buffers.
///
/// Layout: `images` is NCHW `[len(), 1, rows, cols]`, row-major (`images.len() ==
/// len() * rows * cols`), each value `(byte / 255 - mean) / std`; `labels[i]` is the class
/// of image `i`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Normalised pixels, NCHW `[len(), 1, rows, cols]`.
    pub images: Vec<f32>,
    /// One class per image.
    pub labels: Vec<u32>,
    /// Rows of each image.
    pub rows: usize,
    /// Columns of each image.
    pub cols: usize,
}

impl Batch {
    /// Number of examples in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch holds no example.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The NCHW shape of `images`: `[len(), 1, rows, cols]`.
    pub fn shape(&self) -> [usize; 4] {
        [self.len(), 1, self.rows, self.cols]
    }

    /// The images as an `[N, 1, rows, cols]` tensor, consuming the batch; the labels are
    /// returned beside it.
    ///
    /// # Errors
    /// If the buffers do not match the batch's shape (only possible for a batch built by
    /// hand).
    pub fn into_tensor(self) -> rotor_engine::Result<(rotor_engine::Tensor, Vec<u32>)> {
        let shape = self.shape();
        Ok((
            rotor_engine::Tensor::from_vec(self.images, &shape)?,
            self.labels,
        ))
    }
}

/// The batches of one epoch, built on demand; see [`ImageDataset::batches`].
#[derive(Clone)]
pub struct Batches<'a> {
    dataset: &'a ImageDataset,
    order: Option<Vec<usize>>,
    batch_size: usize,
    scale: f32,
    offset: f32,
    next_start: usize,
    end: usize,
}

impl ImageDataset {
    /// The batches of epoch `epoch` (see [`BatchOptions::shuffle_seed`] for the order).
    ///
    /// The order is drawn once here (a shuffle of `len()` indices); each batch then costs
    /// one pass over its bytes, `y = byte * scale + offset`.
    ///
    /// # Panics
    /// When `options.batch_size` is 0, or as [`Normalization::affine`].
    pub fn batches(&self, options: &BatchOptions, epoch: u64) -> Batches<'_> {
        assert!(options.batch_size > 0, "batch size must be positive");
        let (scale, offset) = options.normalization.affine();
        let order = options.shuffle_seed.map(|seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(epoch);
            let mut order: Vec<usize> = (0..self.len()).collect();
            order.shuffle(&mut rng);
            order
        });
        let end = if options.drop_last {
            self.len() - self.len() % options.batch_size
        } else {
            self.len()
        };
        Batches {
            dataset: self,
            order,
            batch_size: options.batch_size,
            scale: scale / 255.0,
            offset,
            next_start: 0,
            end,
        }
    }
}

impl fmt::Debug for Batches<'_> {
    // NOTE: a summary; the dataset and the epoch's order are too long to print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batches")
            .field("dataset", self.dataset)
            .field("batch_size", &self.batch_size)
            .field("shuffled", &self.order.is_some())
            .field("remaining", &self.len())
            .finish_non_exhaustive()
    }
}

impl Batches<'_> {
    fn assemble(&self, positions: Range<usize>) -> Batch {
        let dataset = self.dataset;
        let pixels = dataset.pixels_per_image();
        let mut images = Vec::with_capacity(positions.len() * pixels);
        let mut labels = Vec::with_capacity(positions.len());
        for position in positions {
            let index = self
                .order
                .as_ref()
                .map_or(position, |order| order[position]);
            let (scale, offset) = (self.scale, self.offset);
            images.extend(
                dataset
                    .image(index)
                    .iter()
                    .map(|&p| f32::from(p) * scale + offset),
            );
            labels.push(u32::from(dataset.labels()[index]));
        }
        Batch {
            images,
            labels,
            rows: dataset.rows(),
            cols: dataset.cols(),
        }
    }
}

impl Iterator for Batches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next_start >= self.end {
            return None;
        }
        let stop = (self.next_start + self.batch_size).min(self.end);
        let batch = self.assemble(self.next_start..stop);
        self.next_start = stop;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = (self.end - self.next_start).div_ceil(self.batch_size);
        (remaining, Some(remaining))
    }
}

impl ExactSizeIterator for Batches<'_> {}
