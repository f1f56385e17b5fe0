//! Softmax, log-softmax and the fused softmax + cross-entropy loss.

use rotor_kernels::loss;

use crate::autograd::record;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The tensor as `rows x cols` with `cols` its last dimension.
fn rows_cols(op: &'static str, t: &Tensor) -> Result<(usize, usize)> {
    match t.shape().last() {
        Some(&cols) => Ok((t.numel() / cols.max(1), cols)),
        None => Err(Error::shape(
            op,
            &[t.shape()],
            "needs at least one dimension",
        )),
    }
}

impl Tensor {
    /// Softmax along the last dimension (numerically stable).
    ///
    /// # Errors
    /// If the tensor has rank 0.
    pub fn softmax(&self) -> Result<Tensor> {
        let (rows, cols) = rows_cols("softmax", self)?;
        let mut out = vec![0.0; self.numel()];
        loss::softmax_forward(rows, cols, self.as_slice(), &mut out);
        Ok(record(
            "softmax",
            self.shape().to_vec(),
            out,
            &[self],
            move |ctx, g| {
                let mut d = vec![0.0; g.len()];
                loss::softmax_backward(rows, cols, ctx.output, g, &mut d);
                vec![Some(d)]
            },
        ))
    }

    /// Log-softmax along the last dimension (numerically stable).
    ///
    /// # Errors
    /// If the tensor has rank 0.
    pub fn log_softmax(&self) -> Result<Tensor> {
        let (rows, cols) = rows_cols("log_softmax", self)?;
        let mut out = vec![0.0; self.numel()];
        loss::log_softmax_forward(rows, cols, self.as_slice(), &mut out);
        Ok(record(
            "log_softmax",
            self.shape().to_vec(),
            out,
            &[self],
            move |ctx, g| {
                let mut d = vec![0.0; g.len()];
                loss::log_softmax_backward(rows, cols, ctx.output, g, &mut d);
                vec![Some(d)]
            },
        ))
    }

    /// The mean cross-entropy of `[N, classes]` logits against class indices `targets`
    /// (PyTorch's `F.cross_entropy` with mean reduction), as a rank-0 tensor. Softmax and
    /// loss are fused for stability and speed.
    ///
    /// # Errors
    /// If the logits are not `[N, classes]` with `N >= 1`, `targets` does not hold `N`
    /// indices, or an index is not below `classes`.
    pub fn cross_entropy(&self, targets: &[u32]) -> Result<Tensor> {
        let op = "cross_entropy";
        let s = self.shape();
        if s.len() != 2 || s[0] == 0 || s[1] == 0 {
            return Err(Error::shape(
                op,
                &[s],
                "expected non-empty logits [N, classes]",
            ));
        }
        let (rows, cols) = (s[0], s[1]);
        if targets.len() != rows {
            return Err(Error::shape(
                op,
                &[s, &[targets.len()]],
                format!("expected {rows} targets, one per row"),
            ));
        }
        if let Some((i, t)) = targets
            .iter()
            .enumerate()
            .find(|&(_, &t)| t as usize >= cols)
        {
            return Err(Error::invalid(
                op,
                format!("target {i} is class {t}, but there are only {cols} classes"),
            ));
        }
        let mut probs = vec![0.0; self.numel()];
        let value = loss::cross_entropy_forward(rows, cols, self.as_slice(), targets, &mut probs);
        let targets = targets.to_vec();
        Ok(record(op, Vec::new(), vec![value], &[self], move |_, g| {
            let mut d = vec![0.0; rows * cols];
            loss::cross_entropy_backward(rows, cols, &probs, &targets, g[0], &mut d);
            vec![Some(d)]
        }))
    }
}
