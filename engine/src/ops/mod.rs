//! The tensor operations, one family per file; each forward records its backward rule
//! beside it.

mod activation;
mod binary;
mod broadcast;
mod channels;
mod conv;
mod layout;
mod loss;
mod matmul;
mod norm;
mod pool;
mod reduce;
mod select;
mod unary;

pub use loss::Reduction;
pub use norm::RunningStats;
