//! Rotor: a CPU deep-learning engine that trains rotated-ReLU networks, removes the
//! channels they switch off, and turns the saved FLOPs into saved wall-clock time.
//!
//! This crate re-exports the workspace's crates under short names.
//!
//! Features, all off by default so that an embedding program compiles no image or plotting
//! code: `datasets` (`rotor::datasets`: IDX files, the shipped MNIST, picture decoding),
//! `report` (`nn::report`: the pruning report's tables and pictures), `full` (both), and
//! `mpi` (`nn::distributed`: data-parallel training on MPI, which needs an MPI library and
//! libclang to build, so `full` leaves it out).

#[cfg(feature = "datasets")]
pub use rotor_datasets as datasets;
pub use rotor_engine as engine;
pub use rotor_kernels as kernels;
pub use rotor_nn as nn;

// The README's code is compiled and run as a doctest so that it cannot drift from the API.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

// So is the embedding walk-through.
#[doc = include_str!("../docs/embedding.md")]
#[cfg(doctest)]
pub struct EmbeddingDoctests;
