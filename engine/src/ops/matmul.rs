//! Matrix products: `matmul` (batched, broadcasting batch dimensions) and `linear`.

use rotor_kernels::elementwise;
use rotor_kernels::gemm::{MatrixView, MatrixViewMut, sgemm};

use crate::autograd::record;
use crate::error::{Error, Result};
use crate::shape::broadcast_shape;
use crate::storage;
use crate::tensor::Tensor;

/// How the batch dimensions of a batched product map onto each operand.
struct BatchPlan {
    /// Output batch count.
    count: usize,
    /// For each output batch, the batch index in `a` and in `b`.
    pairs: Vec<(usize, usize)>,
}

fn batch_plan(a_batch: &[usize], b_batch: &[usize], out_batch: &[usize]) -> BatchPlan {
    let count: usize = out_batch.iter().product();
    let index_in = |own: &[usize], mut flat: usize| {
        // Decompose the output batch index and re-compose it in `own`, whose dimensions are
        // right-aligned with the output's and may be 1 (broadcast).
        let pad = out_batch.len() - own.len();
        let mut idx = 0;
        let mut stride = 1;
        for d in (0..out_batch.len()).rev() {
            let coord = flat % out_batch[d];
            flat /= out_batch[d];
            if d >= pad {
                let size = own[d - pad];
                if size != 1 {
                    idx += coord * stride;
                }
                stride *= size;
            }
        }
        idx
    };
    let pairs = (0..count)
        .map(|i| (index_in(a_batch, i), index_in(b_batch, i)))
        .collect();
    BatchPlan { count, pairs }
}

impl Tensor {
    /// The matrix product over the last two dimensions, `[.., m, k] x [.., k, n] -> [.., m, n]`,
    /// with the leading (batch) dimensions broadcast.
    ///
    /// # Errors
    /// If either operand has rank below 2, the inner dimensions differ, or the batch
    /// dimensions do not broadcast.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        let (a, b) = (self.shape(), rhs.shape());
        if a.len() < 2 || b.len() < 2 {
            return Err(Error::shape(
                "matmul",
                &[a, b],
                "both operands need at least two dimensions",
            ));
        }
        let (m, k) = (a[a.len() - 2], a[a.len() - 1]);
        let (k2, n) = (b[b.len() - 2], b[b.len() - 1]);
        if k != k2 {
            return Err(Error::shape(
                "matmul",
                &[a, b],
                format!("inner dimensions {k} and {k2} differ"),
            ));
        }
        let (a_batch, b_batch) = (&a[..a.len() - 2], &b[..b.len() - 2]);
        let out_batch = broadcast_shape("matmul", a_batch, b_batch)?;
        let plan = batch_plan(a_batch, b_batch, &out_batch);
        let mut out = storage::for_overwrite(plan.count * m * n);
        for (i, &(ai, bi)) in plan.pairs.iter().enumerate() {
            let a_i = MatrixView::row_major(&self.as_slice()[ai * m * k..][..m * k], m, k);
            let b_i = MatrixView::row_major(&rhs.as_slice()[bi * k * n..][..k * n], k, n);
            let c_i = MatrixViewMut::row_major(&mut out[i * m * n..][..m * n], m, n);
            sgemm(1.0, a_i, b_i, 0.0, c_i);
        }
        let mut shape = out_batch;
        shape.extend([m, n]);
        Ok(record("matmul", shape, out, &[self, rhs], move |ctx, g| {
            let (ta, tb) = (&ctx.inputs[0], &ctx.inputs[1]);
            let mut ga = ctx.wants(0).then(|| storage::zeroed(ta.numel()));
            let mut gb = ctx.wants(1).then(|| storage::zeroed(tb.numel()));
            for (i, &(ai, bi)) in plan.pairs.iter().enumerate() {
                let gi = MatrixView::row_major(&g[i * m * n..][..m * n], m, n);
                if let Some(ga) = ga.as_mut() {
                    // dA = dC B^T, accumulated: a broadcast batch of A collects several.
                    let b_i = MatrixView::row_major(&tb.as_slice()[bi * k * n..][..k * n], k, n);
                    let dst = MatrixViewMut::row_major(&mut ga[ai * m * k..][..m * k], m, k);
                    sgemm(1.0, gi, b_i.t(), 1.0, dst);
                }
                if let Some(gb) = gb.as_mut() {
                    // dB = A^T dC
                    let a_i = MatrixView::row_major(&ta.as_slice()[ai * m * k..][..m * k], m, k);
                    let dst = MatrixViewMut::row_major(&mut gb[bi * k * n..][..k * n], k, n);
                    sgemm(1.0, a_i.t(), gi, 1.0, dst);
                }
            }
            vec![ga, gb]
        }))
    }

    /// A fully connected layer's product, `self W^T + bias` (PyTorch's `F.linear`):
    /// `self` is `[.., in]`, `weight` is `[out, in]`, `bias` is `[out]`; the result is
    /// `[.., out]`.
    ///
    /// # Errors
    /// If `self` has rank 0, `weight` is not `[out, in]` with `in` matching, or `bias` is not
    /// `[out]`.
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let x = self.shape();
        let w = weight.shape();
        let fits = !x.is_empty() && w.len() == 2 && w[1] == x[x.len() - 1];
        if !fits {
            return Err(Error::shape(
                "linear",
                &[x, w],
                "expected input [.., in] and weight [out, in]",
            ));
        }
        let (out_f, in_f) = (w[0], w[1]);
        if let Some(b) = bias
            && b.shape() != [out_f]
        {
            return Err(Error::shape(
                "linear",
                &[x, w, b.shape()],
                format!("the bias must be [{out_f}]"),
            ));
        }
        let rows: usize = x[..x.len() - 1].iter().product();
        let mut out = storage::for_overwrite(rows * out_f);
        // The bias goes in first so that the product can accumulate onto it (beta = 1).
        if let Some(b) = bias
            && out_f > 0
        {
            for row in out.chunks_exact_mut(out_f) {
                row.copy_from_slice(b.as_slice());
            }
        }
        let x_view = MatrixView::row_major(self.as_slice(), rows, in_f);
        let w_view = MatrixView::row_major(weight.as_slice(), out_f, in_f);
        let beta = if bias.is_some() { 1.0 } else { 0.0 };
        let y_view = MatrixViewMut::row_major(&mut out, rows, out_f);
        sgemm(1.0, x_view, w_view.t(), beta, y_view);
        let mut shape = x[..x.len() - 1].to_vec();
        shape.push(out_f);
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        Ok(record("linear", shape, out, &inputs, move |ctx, g| {
            let (tx, tw) = (&ctx.inputs[0], &ctx.inputs[1]);
            let grad = MatrixView::row_major(g, rows, out_f);
            let gx = ctx.wants(0).then(|| {
                let mut d = storage::for_overwrite(rows * in_f);
                let w_view = MatrixView::row_major(tw.as_slice(), out_f, in_f);
                sgemm(
                    1.0,
                    grad,
                    w_view,
                    0.0,
                    MatrixViewMut::row_major(&mut d, rows, in_f),
                );
                d
            });
            let gw = ctx.wants(1).then(|| {
                let mut d = storage::for_overwrite(out_f * in_f);
                let x_view = MatrixView::row_major(tx.as_slice(), rows, in_f);
                sgemm(
                    1.0,
                    grad.t(),
                    x_view,
                    0.0,
                    MatrixViewMut::row_major(&mut d, out_f, in_f),
                );
                d
            });
            let mut grads = vec![gx, gw];
            if ctx.inputs.len() == 3 {
                grads.push(ctx.wants(2).then(|| {
                    let mut d = storage::for_overwrite(out_f);
                    elementwise::sum_channels(rows, out_f, 1, g, &mut d);
                    d
                }));
            }
            grads
        }))
    }
}
