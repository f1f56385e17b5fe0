//! Rotor's datasets: IDX files (MNIST, Fashion-MNIST), the MNIST copy shipped with the
//! crate, seeded train/validation splits, shuffled mini-batches as plain `f32` buffers, and
//! single pictures turned into network inputs.
//!
//! Everything here works on plain buffers; nothing depends on the engine.
//!
//! ```no_run
//! use rotor_datasets::{load_mnist, BatchOptions, Subset, ValidationSize};
//!
//! let train = load_mnist(Subset::Train)?;
//! let (train, validation) = train.split(ValidationSize::Count(5_000), 42);
//! let options = BatchOptions { batch_size: 64, shuffle_seed: Some(7), ..BatchOptions::default() };
//! for epoch in 0..2 {
//!     for batch in train.batches(&options, epoch) {
//!         assert_eq!(batch.shape()[1..], [1, 28, 28]);
//!     }
//! }
//! # let _ = validation;
//! # Ok::<(), rotor_datasets::DatasetError>(())
//! ```
//!
//! Untrusted bytes (IDX files, pictures) never panic: every malformation is a
//! [`DatasetError`] naming the input and what was wrong.

mod batch;
mod dataset;
mod directory;
mod error;
mod idx;
mod normalization;
mod picture;

pub use batch::{Batch, BatchOptions, Batches};
pub use dataset::{ImageDataset, MNIST_CLASSES, ValidationSize};
pub use directory::{
    DEBIAN_FASHION_MNIST_DIR, SHIPPED_MNIST_DIR, Subset, load_idx_dir, load_idx_dir_with_classes,
    load_mnist,
};
pub use error::{DatasetError, Origin};
pub use idx::IdxArray;
pub use normalization::Normalization;
pub use picture::{Inversion, PICTURE_SIDE, PictureOptions, decode_picture, load_picture};
