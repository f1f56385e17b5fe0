//! Rotor's neural-network building blocks: parameters, modules, layers, models,
//! optimizers, learning-rate schedules, checkpoints, pruning and adversarial attacks.
//!
//! The pruning report's pictures and tables (`report`) need the `report` feature, off by
//! default: it brings in plotting, a font and PNG encoding, which a program that only
//! trains, prunes or runs a model has no use for. Data-parallel training on MPI
//! (`distributed`) needs the `mpi` feature, and an MPI library to build against.

pub mod adversarial;
pub mod architecture;
pub mod checkpoint;
#[cfg(feature = "mpi")]
pub mod distributed;
pub mod inference;
pub mod init;
pub mod layers;
pub mod metrics;
pub mod models;
pub mod module;
pub mod optim;
pub mod param;
pub mod prune;
#[cfg(feature = "report")]
pub mod report;
pub mod train;

pub use checkpoint::CheckpointError;
pub use layers::{
    AvgPool2d, BatchNorm2d, Conv2d, Conv2dOptions, Dropout, Flatten, Gelu, GlobalAvgPool, Layer,
    Linear, MaxPool2d, Relu, Residual, RotatedGelu, RotatedRelu, Sequential, Size2,
};
pub use models::{Activation, MnistNet, cifar_resnet, cifar_vgg};
pub use module::{Module, ModuleExt};
pub use optim::{Adam, AdamW, CosineAnnealingLr, LrSchedule, MultiStepLr, Optimizer, Sgd, StepLr};
pub use param::{Param, ParamKind};
