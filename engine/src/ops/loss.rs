//! Softmax and log-softmax along any dimension, and the fused softmax + cross-entropy loss
//! with its reductions.

use rotor_kernels::{elementwise, loss};

use crate::autograd::record;
use crate::error::{Error, Result};
use crate::shape::resolve_dim;
use crate::storage;
use crate::tensor::Tensor;

/// How a loss over a batch combines the per-example losses (PyTorch's `reduction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// The mean over the batch, as a rank-0 tensor (PyTorch's default).
    #[default]
    Mean,
    /// The sum over the batch, as a rank-0 tensor.
    Sum,
    /// No reduction: one loss per example, as a `[N]` tensor.
    None,
}

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

/// Applies `f`, which works along the last dimension, along dimension `dim` instead by
/// swapping `dim` with the last dimension around it; the swaps record their own backward
/// rules, so the gradient needs nothing new.
fn along_dim(
    op: &'static str,
    t: &Tensor,
    dim: isize,
    f: fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let d = resolve_dim(op, t.shape(), dim)?;
    if d + 1 == t.rank() {
        return f(t);
    }
    let d = d as isize;
    f(&t.transpose(d, -1)?)?.transpose(d, -1)
}

/// Checks that `logits` are non-empty `[N, classes]` and `targets` hold `N` class indices
/// below `classes`; returns `(N, classes)`.
fn check_targets(op: &'static str, logits: &Tensor, targets: &[u32]) -> Result<(usize, usize)> {
    let s = logits.shape();
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
    Ok((rows, cols))
}

impl Tensor {
    /// Softmax along the last dimension (numerically stable).
    ///
    /// # Errors
    /// If the tensor has rank 0.
    pub fn softmax(&self) -> Result<Tensor> {
        let (rows, cols) = rows_cols("softmax", self)?;
        let mut out = storage::for_overwrite(self.numel());
        loss::softmax_forward(rows, cols, self.as_slice(), &mut out);
        Ok(record(
            "softmax",
            self.shape().to_vec(),
            out,
            &[self],
            move |ctx, g| {
                let mut d = storage::for_overwrite(g.len());
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
        let mut out = storage::for_overwrite(self.numel());
        loss::log_softmax_forward(rows, cols, self.as_slice(), &mut out);
        Ok(record(
            "log_softmax",
            self.shape().to_vec(),
            out,
            &[self],
            move |ctx, g| {
                let mut d = storage::for_overwrite(g.len());
                loss::log_softmax_backward(rows, cols, ctx.output, g, &mut d);
                vec![Some(d)]
            },
        ))
    }

    /// Softmax along dimension `dim` (negative counts from the end), e.g. over the channels
    /// of an `[N, C, H, W]` map with `dim = 1`. Along the last dimension it is
    /// [`Tensor::softmax`].
    ///
    /// # Errors
    /// If `dim` is out of range (so always for rank 0).
    pub fn softmax_dim(&self, dim: isize) -> Result<Tensor> {
        along_dim("softmax_dim", self, dim, Tensor::softmax)
    }

    /// Log-softmax along dimension `dim` (negative counts from the end). Along the last
    /// dimension it is [`Tensor::log_softmax`].
    ///
    /// # Errors
    /// If `dim` is out of range (so always for rank 0).
    pub fn log_softmax_dim(&self, dim: isize) -> Result<Tensor> {
        along_dim("log_softmax_dim", self, dim, Tensor::log_softmax)
    }

    /// The mean cross-entropy of `[N, classes]` logits against class indices `targets`
    /// (PyTorch's `F.cross_entropy` with mean reduction), as a rank-0 tensor. Softmax and
    /// loss are fused for stability and speed.
    ///
    /// # Errors
    /// If the logits are not `[N, classes]` with `N >= 1`, `targets` does not hold `N`
    /// indices, or an index is not below `classes`.
    pub fn cross_entropy(&self, targets: &[u32]) -> Result<Tensor> {
        let (rows, cols) = check_targets("cross_entropy", self, targets)?;
        Ok(self.mean_cross_entropy(rows, cols, targets))
    }

    /// The cross-entropy of `[N, classes]` logits against class indices `targets`, combined
    /// over the batch as `reduction` says (PyTorch's `F.cross_entropy(.., reduction=..)`):
    /// a rank-0 tensor for [`Reduction::Mean`] (the same as [`Tensor::cross_entropy`]) and
    /// [`Reduction::Sum`], the `[N]` per-example losses for [`Reduction::None`].
    ///
    /// # Errors
    /// If the logits are not `[N, classes]` with `N >= 1`, `targets` does not hold `N`
    /// indices, or an index is not below `classes`.
    pub fn cross_entropy_with(&self, targets: &[u32], reduction: Reduction) -> Result<Tensor> {
        let (rows, cols) = check_targets("cross_entropy_with", self, targets)?;
        Ok(match reduction {
            Reduction::Mean => self.mean_cross_entropy(rows, cols, targets),
            Reduction::Sum => self.per_example_cross_entropy(rows, cols, targets).sum(),
            Reduction::None => self.per_example_cross_entropy(rows, cols, targets),
        })
    }

    /// The fused mean cross-entropy of checked `[rows, cols]` logits.
    fn mean_cross_entropy(&self, rows: usize, cols: usize, targets: &[u32]) -> Tensor {
        let mut probs = storage::for_overwrite(self.numel());
        let value = loss::cross_entropy_forward(rows, cols, self.as_slice(), targets, &mut probs);
        let targets = targets.to_vec();
        record(
            "cross_entropy",
            Vec::new(),
            vec![value],
            &[self],
            move |_, g| {
                let mut d = storage::for_overwrite(rows * cols);
                loss::cross_entropy_backward(rows, cols, &probs, &targets, g[0], &mut d);
                vec![Some(d)]
            },
        )
    }

    /// The `[rows]` cross-entropies of checked `[rows, cols]` logits, one per row.
    fn per_example_cross_entropy(&self, rows: usize, cols: usize, targets: &[u32]) -> Tensor {
        // NOTE: taken from the log-probabilities rather than as `-ln(softmax)`, which would
        // round a confidently wrong row's tiny probability to 0 and its loss to infinity.
        let mut log_probs = storage::for_overwrite(rows * cols);
        loss::log_softmax_forward(rows, cols, self.as_slice(), &mut log_probs);
        let losses: Vec<f32> = targets
            .iter()
            .enumerate()
            .map(|(r, &t)| -log_probs[r * cols + t as usize])
            .collect();
        let targets = targets.to_vec();
        record(
            "cross_entropy_with",
            vec![rows],
            losses,
            &[self],
            move |_, g| {
                // d loss[r] / d logits[r, j] = softmax[r, j] - [j == targets[r]]
                let mut d = storage::for_overwrite(rows * cols);
                elementwise::exp(&log_probs, &mut d);
                for (r, (&t, &g)) in targets.iter().zip(g).enumerate() {
                    let row = &mut d[r * cols..(r + 1) * cols];
                    row[t as usize] -= 1.0;
                    row.iter_mut().for_each(|v| *v *= g);
                }
                vec![Some(d)]
            },
        )
    }
}
