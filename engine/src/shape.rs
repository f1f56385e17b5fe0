//! Shapes: the dimensions of a contiguous row-major tensor.

use crate::error::{Error, Result};

/// Number of elements of a tensor with dimensions `dims`, or an error naming `op` if the
/// product overflows `usize`.
pub(crate) fn checked_numel(op: &'static str, dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::shape(op, &[dims], "the number of elements overflows usize"))
}

/// Row-major strides (in elements) of a contiguous tensor with dimensions `dims`.
pub(crate) fn contiguous_strides(dims: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; dims.len()];
    let mut stride = 1;
    for (s, &d) in strides.iter_mut().zip(dims).rev() {
        *s = stride;
        stride *= d;
    }
    strides
}

/// The shape two operands broadcast to, by NumPy's rules: dimensions are aligned from the
/// right, and each pair must be equal or contain a 1.
pub(crate) fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            (x, y) => {
                return Err(Error::shape(
                    op,
                    &[a, b],
                    format!(
                        "cannot broadcast: dimension {i} (from the right: {}) is {x} and {y}",
                        rank - i
                    ),
                ));
            }
        };
    }
    Ok(out)
}

/// Resolves a possibly negative dimension index (`-1` is the last) against `rank`.
pub(crate) fn resolve_dim(op: &'static str, shape: &[usize], dim: isize) -> Result<usize> {
    let rank = shape.len() as isize;
    let resolved = if dim < 0 { dim + rank } else { dim };
    if (0..rank).contains(&resolved) {
        Ok(resolved as usize)
    } else {
        Err(Error::shape(
            op,
            &[shape],
            format!("dimension {dim} is out of range for rank {rank}"),
        ))
    }
}
