//! Rotor's compute kernels: plain functions on `f32` slices plus sizes.
//!
//! Nothing here knows about tensors or graphs. Every kernel documents its formula, its
//! memory layout and its preconditions, and is tested against the plain scalar definition
//! in [`reference`](mod@reference). Parallel kernels use the global rayon pool (so `RAYON_NUM_THREADS`
//! and any pool the caller installs are honoured); no kernel spawns threads of its own.
//!
//! Instruction sets: the compute-bound kernels of training (GEMM and the convolutions built
//! on it) go through `matrixmultiply`, which picks AVX-512, AVX2/FMA or AVX micro-kernels
//! at run time. Inference has its own AVX-512 kernels, chosen at run time with a GEMM
//! fallback: the implicit convolution (`conv::PackedConv2d`, `conv::conv2d_forward_active`)
//! and the packed linear layer ([`packed_linear`]). The memory-bound kernels use `wide`'s
//! portable vectors, whose width is fixed when this crate
//! is compiled; [`simd::describe`] tells which paths a binary runs.

pub mod activation;
pub mod aligned;
pub mod conv;
pub mod denormal;
pub mod elementwise;
pub mod gemm;
pub mod loss;
pub mod norm;
pub mod packed_linear;
pub mod parallel;
pub mod pool;
pub mod reference;
pub mod simd;
pub mod skip;

#[cfg(test)]
mod testing;
