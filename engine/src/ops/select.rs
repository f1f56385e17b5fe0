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
        let runs = Runs::new(cols, inner);
        let row_len = col_total * inner;
        let out_row = cols.len() * inner;
        let mut out = storage::for_overwrite(rows.len() * out_row);
        let data = self.as_slice();
        if out_row > 0 {
            for (out, &r) in out.chunks_exact_mut(out_row).zip(rows) {
                runs.gather(&data[r * row_len..][..row_len], out);
            }
        }
        let mut out_shape = vec![rows.len()];
        if inner_from == 2 {
            out_shape.push(cols.len());
        }
        out_shape.extend_from_slice(&shape[inner_from..]);
        let (numel, rows) = (self.numel(), rows.to_vec());
        Ok(record(op, out_shape, out, &[self], move |_, g| {
            if row_len == 0 || out_row == 0 {
                return vec![Some(storage::zeroed(numel))];
            }
            let mut d;
            if rows.is_sorted_by(|a, b| a < b) && runs.ascending {
                // Every element written once: the kept blocks copied, the rest zeroed.
                d = storage::for_overwrite(numel);
                let mut kept = rows.iter().zip(g.chunks_exact(out_row)).peekable();
                for (r, row) in d.chunks_exact_mut(row_len).enumerate() {
                    match kept.next_if(|&(&k, _)| k == r) {
                        Some((_, g)) => runs.scatter_into_zeros(g, row),
                        None => row.fill(0.0),
                    }
                }
            } else {
                d = storage::zeroed(numel);
                for (g, &r) in g.chunks_exact(out_row).zip(&rows) {
                    runs.add(g, &mut d[r * row_len..][..row_len]);
                }
            }
            vec![Some(d)]
        }))
    }
}

/// The selected columns of a row as runs of consecutive elements: a flattened channel's
/// features, or a filter's taps, are copied as one slice.
struct Runs {
    /// `(first element in the full row, elements)`, in the order selected.
    runs: Vec<(usize, usize)>,
    /// Whether the columns are strictly increasing.
    ascending: bool,
}

impl Runs {
    fn new(cols: &[usize], inner: usize) -> Self {
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for &c in cols {
            match runs.last_mut() {
                Some((start, len)) if *start + *len == c * inner => *len += inner,
                _ => runs.push((c * inner, inner)),
            }
        }
        Self {
            runs,
            ascending: cols.is_sorted_by(|a, b| a < b),
        }
    }

    /// Copies the selected elements of the full `row` into `out`, in order.
    fn gather(&self, row: &[f32], out: &mut [f32]) {
        let mut at = 0;
        for &(start, len) in &self.runs {
            out[at..at + len].copy_from_slice(&row[start..start + len]);
            at += len;
        }
    }

    /// Adds the selected elements `g` into their places in the full `row`.
    fn add(&self, g: &[f32], row: &mut [f32]) {
        let mut at = 0;
        for &(start, len) in &self.runs {
            for (d, &g) in row[start..start + len].iter_mut().zip(&g[at..at + len]) {
                *d += g;
            }
            at += len;
        }
    }

    /// Writes the full `row`: `g` at the selected places (ascending), zero elsewhere.
    fn scatter_into_zeros(&self, g: &[f32], row: &mut [f32]) {
        let (mut at, mut end) = (0, 0);
        for &(start, len) in &self.runs {
            row[end..start].fill(0.0);
            row[start..start + len].copy_from_slice(&g[at..at + len]);
            at += len;
            end = start + len;
        }
        row[end..].fill(0.0);
    }
}
