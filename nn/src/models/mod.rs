//! Ready-made models.

mod mnist;

pub use mnist::{Activation, MnistNet};
