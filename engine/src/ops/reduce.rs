//! Reductions: sums, means and maxima, over everything or along one dimension.

use rotor_kernels::elementwise;

use crate::autograd::record;
use crate::error::{Error, Result};
use crate::shape::resolve_dim;
use crate::storage;
use crate::tensor::Tensor;

/// `shape` seen as `[outer, len, inner]` around dimension `dim`.
fn split_at_dim(shape: &[usize], dim: usize) -> (usize, usize, usize) {
    (
        shape[..dim].iter().product(),
        shape[dim],
        shape[dim + 1..].iter().product(),
    )
}

/// The shape after reducing `dim`, kept as size 1 or dropped.
fn reduced_shape(shape: &[usize], dim: usize, keepdim: bool) -> Vec<usize> {
    let mut out = shape.to_vec();
    if keepdim {
        out[dim] = 1;
    } else {
        out.remove(dim);
    }
    out
}

/// Spreads `g` (`[outer, inner]`) over the reduced axis, times `factor`.
fn spread(g: &[f32], outer: usize, len: usize, inner: usize, factor: f32) -> Vec<f32> {
    let mut d = storage::zeroed(outer * len * inner);
    for o in 0..outer {
        let src = &g[o * inner..(o + 1) * inner];
        for l in 0..len {
            let dst = &mut d[(o * len + l) * inner..(o * len + l + 1) * inner];
            elementwise::scale(src, factor, dst);
        }
    }
    d
}

impl Tensor {
    /// The sum of all elements, as a rank-0 tensor.
    pub fn sum(&self) -> Tensor {
        let total = elementwise::sum(self.as_slice());
        let n = self.numel();
        record("sum", Vec::new(), vec![total], &[self], move |_, g| {
            vec![Some(vec![g[0]; n])]
        })
    }

    /// The mean of all elements, as a rank-0 tensor (NaN for an empty tensor).
    pub fn mean(&self) -> Tensor {
        let n = self.numel();
        self.sum().mul_scalar(1.0 / n as f32)
    }

    /// Sums along dimension `dim` (negative counts from the end), keeping it as size 1 if
    /// `keepdim`.
    ///
    /// # Errors
    /// If `dim` is out of range.
    pub fn sum_dim(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        let d = resolve_dim("sum_dim", self.shape(), dim)?;
        let (outer, len, inner) = split_at_dim(self.shape(), d);
        let mut out = storage::zeroed(outer * inner);
        elementwise::sum_axis(outer, len, inner, self.as_slice(), &mut out);
        let shape = reduced_shape(self.shape(), d, keepdim);
        Ok(record("sum_dim", shape, out, &[self], move |_, g| {
            vec![Some(spread(g, outer, len, inner, 1.0))]
        }))
    }

    /// Means along dimension `dim`, keeping it as size 1 if `keepdim`.
    ///
    /// # Errors
    /// If `dim` is out of range.
    pub fn mean_dim(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        let d = resolve_dim("mean_dim", self.shape(), dim)?;
        let len = self.shape()[d];
        Ok(self.sum_dim(dim, keepdim)?.mul_scalar(1.0 / len as f32))
    }

    /// Maxima along dimension `dim`, keeping it as size 1 if `keepdim`. The gradient goes
    /// to the first maximal element.
    ///
    /// # Errors
    /// If `dim` is out of range or has size 0.
    pub fn max_dim(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        let d = resolve_dim("max_dim", self.shape(), dim)?;
        let (outer, len, inner) = split_at_dim(self.shape(), d);
        if len == 0 {
            return Err(Error::shape(
                "max_dim",
                &[self.shape()],
                format!("dimension {d} is empty"),
            ));
        }
        let mut out = storage::zeroed(outer * inner);
        let mut argmax = vec![0u32; outer * inner];
        elementwise::max_axis(outer, len, inner, self.as_slice(), &mut out, &mut argmax);
        let shape = reduced_shape(self.shape(), d, keepdim);
        Ok(record("max_dim", shape, out, &[self], move |_, g| {
            let mut d = storage::zeroed(outer * len * inner);
            for o in 0..outer {
                for i in 0..inner {
                    let l = argmax[o * inner + i] as usize;
                    d[(o * len + l) * inner + i] = g[o * inner + i];
                }
            }
            vec![Some(d)]
        }))
    }

    /// The index of the first maximum along dimension `dim`, for each position of the
    /// other dimensions (row-major). Not differentiable.
    ///
    /// # Errors
    /// If `dim` is out of range or has size 0.
    pub fn argmax(&self, dim: isize) -> Result<Vec<usize>> {
        let d = resolve_dim("argmax", self.shape(), dim)?;
        let (outer, len, inner) = split_at_dim(self.shape(), d);
        if len == 0 {
            return Err(Error::shape(
                "argmax",
                &[self.shape()],
                format!("dimension {d} is empty"),
            ));
        }
        let mut out = storage::zeroed(outer * inner);
        let mut argmax = vec![0u32; outer * inner];
        elementwise::max_axis(outer, len, inner, self.as_slice(), &mut out, &mut argmax);
        Ok(argmax.into_iter().map(|i| i as usize).collect())
    }
}
