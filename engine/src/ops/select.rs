//! Selecting a block of output and input channels of a weight, for training that skips
//! dead channels: the smaller network's parameters are views of the full ones, and their
//! gradients land in the full parameters' places.

use crate::autograd::record;
use crate::error::{Error, Result};
use crate::storage;
use crate::tensor::Tensor;

impl Tensor {
    /// The entries of `self` (`[R, ...]`, or `[R, C, ...]` when `cols` is given) at the
    /// rows `rows` and, if given, the columns `cols`, in the order listed: `[rows.len(),
    /// ...]` or `[rows.len(), cols.len(), ...]`. Each entry is the block of trailing
    /// dimensions, copied whole (a convolution filter's taps stay together).
    ///
    /// The gradient is scattered back: zero at the rows and columns left out, summed where
    /// an index repeats.
    ///
    /// # Errors
    /// If `self` has rank 0 (rank below 2 with `cols`), or an index is out of range.
    pub fn select_channels(&self, rows: &[usize], cols: Option<&[usize]>) -> Result<Tensor> {
        let op = "select_channels";
        let shape = self.shape();
        let min_rank = if cols.is_some() { 2 } else { 1 };
        if shape.len() < min_rank {
            return Err(Error::shape(
                op,
                &[shape],
                format!("expected rank {min_rank} or more"),
            ));
        }
        let all_cols: Vec<usize>;
        let (cols, col_total, inner_from) = match cols {
            Some(cols) => (cols, shape[1], 2),
            None => {
                all_cols = vec![0];
                (all_cols.as_slice(), 1, 1)
            }
        };
        let inner: usize = shape[inner_from..].iter().product();
        for (what, list, total) in [("row", rows, shape[0]), ("column", cols, col_total)] {
            if let Some(&bad) = list.iter().find(|&&i| i >= total) {
                return Err(Error::invalid(
                    op,
                    format!("{what} {bad} is out of range for {total} in {shape:?}"),
                ));
            }
        }
        let (rows, cols) = (rows.to_vec(), cols.to_vec());
        let row_len = col_total * inner;
        let mut out = storage::for_overwrite(rows.len() * cols.len() * inner);
        let blocks = out.chunks_exact_mut(inner.max(1));
        let sources = rows
            .iter()
            .flat_map(|&r| cols.iter().map(move |&c| r * row_len + c * inner));
        let data = self.as_slice();
        for (block, source) in blocks.zip(sources) {
            block.copy_from_slice(&data[source..source + inner]);
        }
        let mut out_shape = vec![rows.len()];
        if inner_from == 2 {
            out_shape.push(cols.len());
        }
        out_shape.extend_from_slice(&shape[inner_from..]);
        let numel = self.numel();
        Ok(record(op, out_shape, out, &[self], move |_, g| {
            let mut d = storage::zeroed(numel);
            let targets = rows
                .iter()
                .flat_map(|&r| cols.iter().map(move |&c| r * row_len + c * inner));
            for (block, target) in g.chunks_exact(inner.max(1)).zip(targets) {
                for (d, &g) in d[target..target + inner].iter_mut().zip(block) {
                    *d += g;
                }
            }
            vec![Some(d)]
        }))
    }
}
