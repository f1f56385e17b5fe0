//! Inference without autodiff: a `Sequential` compiled into a fixed plan of kernel calls.
//!
//! [`InferencePlan::compile`] checks every shape once, folds evaluation-mode batch norms into
//! the convolution or linear layer before them, and fuses each convolution or linear layer
//! with the ReLU or rotated ReLU after it (and a convolution with a following 2x2 max pool):
//! bias, slope and pooling are applied while the product tile is still in cache. The plan is
//! immutable (`Send + Sync`), so several threads can serve requests from one plan, each with
//! its own [`Workspace`], whose buffers are allocated once and reused from call to call.
//! The layers before the first linear layer run on chunks of the batch small enough for
//! each feature map to stay in cache until the next layer reads it, the chunks shared
//! between the calling thread and rayon's pool; a batch too small to chunk runs on the
//! calling thread, its kernels splitting their work between it and the pool.
//!
//! A layer that computes all its channels has its weight packed once, when the plan is
//! built, into the layout of the inference kernels (AVX-512 where the CPU has it).
//!
//! With [`PlanOptions::skip_threshold`] set to `zeta`, the output channels of a fused rotated
//! ReLU whose slope satisfies `|a| <= zeta` are skipped: their filters are not run, and the
//! next convolution or linear layer does not read them (through a flatten too). Such
//! layers run the channel-skipping kernels on their full weights, with the index lists
//! read on every call; no compacted copy of the model is made.
//! With `zeta` below every slope that is not exactly zero, the outputs are those of the
//! model; a larger `zeta` prunes the channels with small slopes as pruning would.
//!
//! Supported layers: `Conv2d`, `Linear`, `BatchNorm2d`, `Relu`, `Gelu`, `RotatedRelu`,
//! `RotatedGelu`, `MaxPool2d`, `AvgPool2d`, `GlobalAvgPool`, `Flatten`, `Dropout` (the
//! identity), nested `Sequential`s, and custom layers (run through their evaluation
//! forward, on tensors); `Residual` is rejected.
//!
//! [`compare_throughput`] times plans against each other on the same batches.

mod compile;
mod plan;
mod step;
mod throughput;
mod weights;

pub use plan::{InferencePlan, PlanOptions, Workspace};
pub use throughput::{compare_throughput, images_per_second};
