//! Rotor's tensors and define-by-run reverse-mode automatic differentiation.
//!
//! A [`Tensor`] is an immutable, reference-counted `f32` array. Operations on tensors that
//! track gradients record themselves; [`Tensor::backward`] returns [`Gradients`] for every
//! leaf. Operations call the kernels of `rotor-kernels` for their arithmetic.
//!
//! ```
//! use rotor_engine::Tensor;
//!
//! let w = Tensor::from_vec(vec![1.0, -2.0, 3.0, 0.5], &[2, 2])?.requires_grad();
//! let x = Tensor::from_vec(vec![0.5, 1.0], &[1, 2])?;
//! // x w = [3.5, -0.5]: the ReLU passes only the first column's gradient back.
//! let loss = x.matmul(&w)?.relu().sum();
//! let grads = loss.backward()?;
//! assert_eq!(grads.get(&w).unwrap().as_slice(), &[0.5, 0.0, 1.0, 0.0]);
//! # Ok::<(), rotor_engine::Error>(())
//! ```

mod autograd;
mod error;
mod ops;
mod random;
mod shape;
pub mod storage;
mod tensor;

pub use autograd::Gradients;
pub use error::{Error, Result};
pub use ops::{Reduction, RunningStats};
pub use rand::{Rng, SeedableRng};
pub use random::SeededRng;
pub use tensor::{Tensor, TensorId};
