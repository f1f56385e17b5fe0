//! The built-in layers.

mod activation;
mod conv;
mod custom;
mod dropout;
mod linear;
mod norm;
mod pool;
mod sequential;

pub use activation::{Gelu, Relu, RotatedGelu, RotatedRelu};
pub use conv::{Conv2d, Conv2dOptions, Size2};
pub(crate) use custom::check_per_channel;
pub use custom::{ChannelFlow, CustomLayer};
pub use dropout::Dropout;
pub use linear::Linear;
pub use norm::BatchNorm2d;
pub use pool::{AvgPool2d, Flatten, GlobalAvgPool, MaxPool2d};
pub use sequential::{Layer, Residual, Sequential};
