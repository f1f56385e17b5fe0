//! Reference softmax, log-softmax and cross-entropy: each row computed in `f64`, shifted by
//! its maximum.

// NOTE: the loops index every array the way the formulas do, which is the point here.
#![allow(clippy::needless_range_loop)]

/// Max-shifted exponentials of one row, and their sum, in `f64`.
fn shifted_exps(row: &[f32]) -> (f64, Vec<f64>, f64) {
    let max = row
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
    let exps: Vec<f64> = row.iter().map(|&v| (f64::from(v) - max).exp()).collect();
    let sum = exps.iter().sum();
    (max, exps, sum)
}

/// Reference for [`crate::loss::softmax_forward`].
///
/// # Panics
/// If a slice length is not `rows * cols`.
pub fn softmax_forward(rows: usize, cols: usize, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), rows * cols);
    assert_eq!(y.len(), rows * cols);
    for r in 0..rows {
        let (_, exps, sum) = shifted_exps(&x[r * cols..(r + 1) * cols]);
        for j in 0..cols {
            y[r * cols + j] = (exps[j] / sum) as f32;
        }
    }
}

/// Reference for [`crate::loss::softmax_backward`].
///
/// # Panics
/// If a slice length is not `rows * cols`.
pub fn softmax_backward(rows: usize, cols: usize, y: &[f32], grad_y: &[f32], grad_x: &mut [f32]) {
    assert_eq!(y.len(), rows * cols);
    assert_eq!(grad_y.len(), rows * cols);
    assert_eq!(grad_x.len(), rows * cols);
    for r in 0..rows {
        let mut dot = 0.0_f64;
        for k in 0..cols {
            dot += f64::from(grad_y[r * cols + k]) * f64::from(y[r * cols + k]);
        }
        for j in 0..cols {
            let i = r * cols + j;
            grad_x[i] = (f64::from(y[i]) * (f64::from(grad_y[i]) - dot)) as f32;
        }
    }
}

/// Reference for [`crate::loss::log_softmax_forward`].
///
/// # Panics
/// If a slice length is not `rows * cols`.
pub fn log_softmax_forward(rows: usize, cols: usize, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), rows * cols);
    assert_eq!(y.len(), rows * cols);
    for r in 0..rows {
        let (max, _, sum) = shifted_exps(&x[r * cols..(r + 1) * cols]);
        for j in 0..cols {
            y[r * cols + j] = (f64::from(x[r * cols + j]) - max - sum.ln()) as f32;
        }
    }
}

/// Reference for [`crate::loss::log_softmax_backward`].
///
/// # Panics
/// If a slice length is not `rows * cols`.
pub fn log_softmax_backward(
    rows: usize,
    cols: usize,
    y: &[f32],
    grad_y: &[f32],
    grad_x: &mut [f32],
) {
    assert_eq!(y.len(), rows * cols);
    assert_eq!(grad_y.len(), rows * cols);
    assert_eq!(grad_x.len(), rows * cols);
    for r in 0..rows {
        let mut total = 0.0_f64;
        for k in 0..cols {
            total += f64::from(grad_y[r * cols + k]);
        }
        for j in 0..cols {
            let i = r * cols + j;
            grad_x[i] = (f64::from(grad_y[i]) - f64::from(y[i]).exp() * total) as f32;
        }
    }
}

/// Reference for [`crate::loss::cross_entropy_forward`].
///
/// # Panics
/// If a slice length differs from the sizes or a target is `>= cols`.
pub fn cross_entropy_forward(
    rows: usize,
    cols: usize,
    logits: &[f32],
    targets: &[u32],
    probs: &mut [f32],
) -> f32 {
    assert_eq!(logits.len(), rows * cols);
    assert_eq!(targets.len(), rows);
    assert_eq!(probs.len(), rows * cols);
    let mut total = 0.0_f64;
    for r in 0..rows {
        let t = targets[r] as usize;
        assert!(t < cols);
        let (max, exps, sum) = shifted_exps(&logits[r * cols..(r + 1) * cols]);
        for j in 0..cols {
            probs[r * cols + j] = (exps[j] / sum) as f32;
        }
        total += sum.ln() - (f64::from(logits[r * cols + t]) - max);
    }
    (total / rows as f64) as f32
}

/// Reference for [`crate::loss::cross_entropy_backward`].
///
/// # Panics
/// If a slice length differs from the sizes or a target is `>= cols`.
pub fn cross_entropy_backward(
    rows: usize,
    cols: usize,
    probs: &[f32],
    targets: &[u32],
    grad_loss: f32,
    grad_logits: &mut [f32],
) {
    assert_eq!(probs.len(), rows * cols);
    assert_eq!(targets.len(), rows);
    assert_eq!(grad_logits.len(), rows * cols);
    for r in 0..rows {
        let t = targets[r] as usize;
        assert!(t < cols);
        for j in 0..cols {
            let onehot = if j == t { 1.0 } else { 0.0 };
            let i = r * cols + j;
            grad_logits[i] =
                (f64::from(grad_loss) / rows as f64 * (f64::from(probs[i]) - onehot)) as f32;
        }
    }
}
