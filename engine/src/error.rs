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
    /// An error raised inside a named layer of a network, wrapped with the layer's dotted
    /// path so that a message says where it happened (`block1.conv2: conv2d: ...`).
    #[error("{path}: {source}")]
    InLayer {
        /// The layer's dotted path from the network's root (`"block1.conv2"`).
        path: String,
        /// The error the layer raised.
        source: Box<Error>,
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

    /// This error as raised inside the layer `name`: the path grows outward, so an error
    /// wrapped by a nested network's layer `conv2` and then by the outer layer `block1`
    /// reads `block1.conv2: ...`.
    pub fn in_layer(self, name: &str) -> Self {
        match self {
            Error::InLayer { path, source } => Error::InLayer {
                path: format!("{name}.{path}"),
                source,
            },
            other => Error::InLayer {
                path: name.to_string(),
                source: Box::new(other),
            },
        }
    }

    /// The error underneath any layer paths: what the operation itself reported.
    pub fn root_cause(&self) -> &Error {
        match self {
            Error::InLayer { source, .. } => source.root_cause(),
            other => other,
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
