//! Plain scalar implementations: the definitions the fast kernels are tested against.
//!
//! Each function here is written for clarity, one loop per index of the formula, with no
//! SIMD, blocking or threading. They are public so that the tests of other crates can
//! use them too; they are far too slow for anything else.

pub mod activation;
pub mod conv;
pub mod elementwise;
pub mod gemm;
pub mod loss;
pub mod norm;
pub mod pool;
