//! Rotor's compute kernels: plain functions on `f32` slices plus sizes.
//!
//! Nothing here knows about tensors or graphs. Every kernel documents its formula, its
//! memory layout and its preconditions, and is tested against the plain scalar definition
//! in [`reference`](mod@reference). Parallel kernels use the global rayon pool (so `RAYON_NUM_THREADS`
//! and any pool the caller installs are honoured); no kernel spawns threads of its own.
//!
//! Instruction sets: [`simd`] chooses one per process at run time (AVX-512, AVX2 + FMA,
//! NEON, or portable Rust), or takes the one a program forces with [`simd::force`] or the
//! environment variable `ROTOR_ISA`. Rotor's own micro-kernels (the implicit convolution,
//! the packed and channel-skipping linear layers, dot products) are written once against
//! the vector interface of `simd`, with one tile shape per set, and so are the memory-bound
//! kernels' lanes. GEMM (and the training convolutions built on it) goes through
//! `matrixmultiply`, which picks its own micro-kernel at run time. [`simd::describe`] tells
//! which paths a binary runs.

pub mod activation;
pub mod aligned;
pub mod conv;
pub mod denormal;
pub mod elementwise;
pub mod gemm;
pub mod linear;
pub mod loss;
pub mod norm;
pub mod parallel;
pub mod pool;
pub mod reference;
mod scratch;
pub mod simd;
pub mod skip;
mod tuning;

#[cfg(test)]
mod testing;
