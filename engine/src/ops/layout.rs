//! Operations that rearrange elements: reshape, permute, narrow, concat, broadcast.

use super::broadcast::{expand, reduce_to};
use crate::autograd::record;
use crate::error::{Error, Result};
use crate::shape::{broadcast_shape, checked_numel, contiguous_strides, resolve_dim};
use crate::tensor::Tensor;

impl Tensor {
    /// The same elements with another shape of the same size. Shares storage.
    ///
    /// # Errors
    /// If the number of elements differs.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let numel = checked_numel("reshape", shape)?;
        if numel != self.numel() {
            return Err(Error::shape(
                "reshape",
                &[self.shape(), shape],
                format!("{} elements cannot take a shape of {numel}", self.numel()),
            ));
        }
        Ok(record(
            "reshape",
            shape.to_vec(),
            self.0.data.clone(),
            &[self],
            |_, g| vec![Some(g.to_vec())],
        ))
    }

    /// Collapses dimensions `start_dim..` into one (PyTorch's `flatten(start_dim)`):
    /// `[N, C, H, W].flatten(1)` is `[N, C*H*W]`.
    ///
    /// # Errors
    /// If `start_dim` is out of range.
    pub fn flatten(&self, start_dim: isize) -> Result<Tensor> {
        let start = resolve_dim("flatten", self.shape(), start_dim)?;
        let mut shape = self.shape()[..start].to_vec();
        shape.push(self.shape()[start..].iter().product());
        self.reshape(&shape)
    }

    /// The dimensions reordered: output dimension `i` is input dimension `order[i]`.
    ///
    /// # Errors
    /// If `order` is not a permutation of `0..rank`.
    pub fn permute(&self, order: &[usize]) -> Result<Tensor> {
        let rank = self.rank();
        let mut seen = vec![false; rank];
        let valid = order.len() == rank
            && order
                .iter()
                .all(|&d| d < rank && !std::mem::replace(&mut seen[d], true));
        if !valid {
            return Err(Error::shape(
                "permute",
                &[self.shape()],
                format!("{order:?} is not a permutation of the {rank} dimensions"),
            ));
        }
        let out_shape: Vec<usize> = order.iter().map(|&d| self.shape()[d]).collect();
        let out = permute_data(self.as_slice(), self.shape(), order);
        let mut inverse = vec![0; rank];
        for (i, &d) in order.iter().enumerate() {
            inverse[d] = i;
        }
        let permuted_shape = out_shape.clone();
        Ok(record("permute", out_shape, out, &[self], move |_, g| {
            vec![Some(permute_data(g, &permuted_shape, &inverse))]
        }))
    }

    /// Swaps two dimensions (negative indices count from the end).
    ///
    /// # Errors
    /// If a dimension is out of range.
    pub fn transpose(&self, dim0: isize, dim1: isize) -> Result<Tensor> {
        let a = resolve_dim("transpose", self.shape(), dim0)?;
        let b = resolve_dim("transpose", self.shape(), dim1)?;
        let mut order: Vec<usize> = (0..self.rank()).collect();
        order.swap(a, b);
        self.permute(&order)
    }

    /// The slice `start..start + len` along dimension `dim`, copied.
    ///
    /// # Errors
    /// If `dim` is out of range or the slice does not fit in the dimension.
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        let d = resolve_dim("narrow", self.shape(), dim)?;
        let size = self.shape()[d];
        if start.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::shape(
                "narrow",
                &[self.shape()],
                format!("{start}..{start}+{len} does not fit in dimension {d} of size {size}"),
            ));
        }
        let outer: usize = self.shape()[..d].iter().product();
        let inner: usize = self.shape()[d + 1..].iter().product();
        let mut out = Vec::with_capacity(outer * len * inner);
        for o in 0..outer {
            let base = (o * size + start) * inner;
            out.extend_from_slice(&self.as_slice()[base..base + len * inner]);
        }
        let mut shape = self.shape().to_vec();
        shape[d] = len;
        Ok(record("narrow", shape, out, &[self], move |_, g| {
            let mut d_in = vec![0.0; outer * size * inner];
            for o in 0..outer {
                let base = (o * size + start) * inner;
                d_in[base..base + len * inner]
                    .copy_from_slice(&g[o * len * inner..(o + 1) * len * inner]);
            }
            vec![Some(d_in)]
        }))
    }

    /// Joins tensors along dimension `dim`; all other dimensions must agree.
    ///
    /// # Errors
    /// If `tensors` is empty, ranks or other dimensions differ, or `dim` is out of range.
    pub fn concat(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| Error::invalid("concat", "needs at least one tensor"))?;
        let d = resolve_dim("concat", first.shape(), dim)?;
        let shapes: Vec<&[usize]> = tensors.iter().map(|t| t.shape()).collect();
        for t in tensors {
            let same_rank = t.rank() == first.rank();
            let same_others =
                same_rank && (0..first.rank()).all(|i| i == d || t.shape()[i] == first.shape()[i]);
            if !same_others {
                return Err(Error::shape(
                    "concat",
                    &shapes,
                    format!("all dimensions but {d} must agree"),
                ));
            }
        }
        let outer: usize = first.shape()[..d].iter().product();
        let inner: usize = first.shape()[d + 1..].iter().product();
        let sizes: Vec<usize> = tensors.iter().map(|t| t.shape()[d]).collect();
        let total: usize = sizes.iter().sum();
        let mut out = Vec::with_capacity(outer * total * inner);
        for o in 0..outer {
            for (t, &s) in tensors.iter().zip(&sizes) {
                out.extend_from_slice(&t.as_slice()[o * s * inner..(o + 1) * s * inner]);
            }
        }
        let mut shape = first.shape().to_vec();
        shape[d] = total;
        Ok(record("concat", shape, out, tensors, move |ctx, g| {
            let mut grads: Vec<Option<Vec<f32>>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &s)| ctx.wants(i).then(|| Vec::with_capacity(outer * s * inner)))
                .collect();
            let mut offset = 0;
            for _ in 0..outer {
                for (grad, &s) in grads.iter_mut().zip(&sizes) {
                    if let Some(grad) = grad {
                        grad.extend_from_slice(&g[offset..offset + s * inner]);
                    }
                    offset += s * inner;
                }
            }
            grads
        }))
    }

    /// The tensor repeated along broadcast dimensions to `shape` (NumPy rules).
    ///
    /// # Errors
    /// If this tensor's shape does not broadcast to `shape`.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        let out_shape = broadcast_shape("broadcast_to", self.shape(), shape)?;
        if out_shape != shape {
            return Err(Error::shape(
                "broadcast_to",
                &[self.shape(), shape],
                "the tensor does not broadcast to the target shape",
            ));
        }
        let out = expand(self.as_slice(), self.shape(), shape);
        let (from, to) = (self.shape().to_vec(), shape.to_vec());
        Ok(record(
            "broadcast_to",
            to.clone(),
            out,
            &[self],
            move |_, g| vec![Some(reduce_to(g.to_vec(), &to, &from))],
        ))
    }
}

/// Copies `data` (shape `shape`) into the order where output dimension `i` is input
/// dimension `order[i]`.
fn permute_data(data: &[f32], shape: &[usize], order: &[usize]) -> Vec<f32> {
    let in_strides = contiguous_strides(shape);
    let out_shape: Vec<usize> = order.iter().map(|&d| shape[d]).collect();
    let strides: Vec<usize> = order.iter().map(|&d| in_strides[d]).collect();
    let total = data.len();
    let mut out = Vec::with_capacity(total);
    if total == 0 {
        return out;
    }
    let rank = out_shape.len();
    let mut index = vec![0usize; rank];
    let mut offset = 0usize;
    for _ in 0..total {
        out.push(data[offset]);
        for d in (0..rank).rev() {
            index[d] += 1;
            offset += strides[d];
            if index[d] < out_shape[d] {
                break;
            }
            offset -= strides[d] * out_shape[d];
            index[d] = 0;
        }
    }
    out
}
