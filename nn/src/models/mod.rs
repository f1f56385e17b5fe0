//! Ready-made models.

mod mnist;
mod resnet;

pub use mnist::{Activation, MnistNet};
pub use resnet::cifar_resnet;
