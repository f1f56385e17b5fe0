//! The engine's one error type.

use std::fmt;

/// What went wrong in a tensor operation.
///
/// Every variant names the operation and, where shapes are involved, the shapes, so a message
/// reads like `matmul: [2, 3] x [4, 5]: inner dimensions 3 and 4 differ`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operands' shapes do not fit the operation.
    #[error("{op}: {operands}: {reason}")]
    Shape {
        /// The operation, as the user calls it (`matmul`, `conv2d`, ...).
        op: &'static str,
        /// The operands' shapes, formatted.
        operands: String,
        /// What does not fit.
        reason: String,
    },
    /// An argument other than a shape is out of its domain (a stride of 0, a class index
    /// beyond the number of classes, ...).
    #[error("{op}: {reason}")]
    InvalidArgument {
        /// The operation.
        op: &'static str,
        /// What is wrong with which argument.
        reason: String,
    },
}

impl Error {
    /// A shape error for `op` whose operands have the given shapes.
    pub(crate) fn shape(op: &'static str, shapes: &[&[usize]], reason: impl fmt::Display) -> Self {
        let operands = shapes
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(" x ");
        Error::Shape {
            op,
            operands,
            reason: reason.to_string(),
        }
    }

    /// An invalid-argument error for `op`.
    pub(crate) fn invalid(op: &'static str, reason: impl fmt::Display) -> Self {
        Error::InvalidArgument {
            op,
            reason: reason.to_string(),
        }
    }
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
