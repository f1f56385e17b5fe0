//! Operations that rearrange elements: reshape, permute, narrow, concat, broadcast, gather.

use super::broadcast::{expand, reduce_to};
use crate::autograd::record;
use crate::error::{Error, Result};
use crate::shape::{broadcast_shape, checked_numel, contiguous_strides, resolve_dim};
use crate::storage;
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
            |_, g| vec![Some(storage::copy_of(g))],
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
            let mut d_in = storage::zeroed(outer * size * inner);
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
            move |_, g| vec![Some(reduce_to(storage::copy_of(g), &to, &from))],
        ))
    }

    /// Picks elements along dimension `dim` (negative counts from the end) by index, as
    /// PyTorch's `torch.gather`: for rank 3 and `dim = 1`,
    /// `out[i][j][k] = self[i][index[i][j][k]][k]`.
    ///
    /// Tensors hold only `f32`, so the index is given as its elements in row-major order,
    /// `index`, and its shape, `index_shape`, which is also the output's shape. The index
    /// has this tensor's rank and, in every dimension but `dim`, at most this tensor's
    /// size. The gradient adds each output element's gradient into the element it was
    /// picked from, so an element picked twice receives both.
    ///
    /// ```
    /// use rotor_engine::Tensor;
    ///
    /// let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
    /// // Two picks per row: row 0 takes columns 2 and 0, row 1 column 1 twice.
    /// let y = x.gather(1, &[2, 0, 1, 1], &[2, 2])?;
    /// assert_eq!(y.as_slice(), &[3.0, 1.0, 5.0, 5.0]);
    /// # Ok::<(), rotor_engine::Error>(())
    /// ```
    ///
    /// # Errors
    /// If `dim` is out of range, `index` does not hold as many indices as `index_shape`
    /// says, the index's rank or sizes do not fit this tensor, or an index is not below the
    /// size of dimension `dim` (the message names the index and its position).
    pub fn gather(&self, dim: isize, index: &[usize], index_shape: &[usize]) -> Result<Tensor> {
        let op = "gather";
        let d = resolve_dim(op, self.shape(), dim)?;
        let shapes: [&[usize]; 2] = [self.shape(), index_shape];
        let count = checked_numel(op, index_shape)?;
        if count != index.len() {
            return Err(Error::shape(
                op,
                &shapes,
                format!(
                    "the index shape holds {count} indices but {} are given",
                    index.len()
                ),
            ));
        }
        let rank = self.rank();
        if index_shape.len() != rank {
            return Err(Error::shape(
                op,
                &shapes,
                format!("the index must have the input's rank {rank}"),
            ));
        }
        if let Some(k) = (0..rank).find(|&k| k != d && index_shape[k] > self.shape()[k]) {
            return Err(Error::shape(
                op,
                &shapes,
                format!(
                    "index dimension {k} is {}, larger than the input's {}",
                    index_shape[k],
                    self.shape()[k]
                ),
            ));
        }
        let size = self.shape()[d];
        let strides = contiguous_strides(self.shape());
        // The offset in this tensor of every output element, kept for the backward scatter.
        let mut sources = Vec::with_capacity(count);
        let mut position = vec![0usize; rank];
        for &i in index {
            if i >= size {
                return Err(Error::invalid(
                    op,
                    format!(
                        "index {i} at {position:?} is out of range for dimension {d} of size {size}"
                    ),
                ));
            }
            let offset = (0..rank)
                .map(|k| if k == d { i } else { position[k] } * strides[k])
                .sum::<usize>();
            sources.push(offset);
            for k in (0..rank).rev() {
                position[k] += 1;
                if position[k] < index_shape[k] {
                    break;
                }
                position[k] = 0;
            }
        }
        let data = self.as_slice();
        let out: Vec<f32> = sources.iter().map(|&o| data[o]).collect();
        let numel = self.numel();
        Ok(record(
            op,
            index_shape.to_vec(),
            out,
            &[self],
            move |_, g| {
                let mut d_in = storage::zeroed(numel);
                for (&g, &o) in g.iter().zip(&sources) {
                    d_in[o] += g;
                }
                vec![Some(d_in)]
            },
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
