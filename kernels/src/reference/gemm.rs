//! Reference matrix multiplication: the triple loop of the definition.

use crate::gemm::{MatrixView, MatrixViewMut, Transpose};

/// `C <- alpha op(A) op(B) + beta C` on contiguous row-major matrices, as
/// [`crate::gemm::sgemm`]: `op(A)` is `m x k`, `op(B)` is `k x n`, C is `m x n`; C is not
/// read when `beta == 0`, A and B are not read when `alpha == 0`. Sums in f64.
///
/// # Panics
/// If `a.len() != m * k`, `b.len() != k * n` or `c.len() != m * n`.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    ta: Transpose,
    tb: Transpose,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    assert_eq!(a.len(), m * k, "sgemm: length of A vs m * k");
    assert_eq!(b.len(), k * n, "sgemm: length of B vs k * n");
    assert_eq!(c.len(), m * n, "sgemm: length of C vs m * n");
    let a_at = |i: usize, l: usize| match ta {
        Transpose::No => a[i * k + l],
        Transpose::Yes => a[l * m + i],
    };
    let b_at = |l: usize, j: usize| match tb {
        Transpose::No => b[l * n + j],
        Transpose::Yes => b[j * k + l],
    };
    for i in 0..m {
        for j in 0..n {
            let mut product = 0.0_f64;
            if alpha != 0.0 {
                for l in 0..k {
                    product += f64::from(a_at(i, l)) * f64::from(b_at(l, j));
                }
            }
            let old = if beta == 0.0 {
                0.0
            } else {
                f64::from(beta) * f64::from(c[i * n + j])
            };
            c[i * n + j] = (f64::from(alpha) * product + old) as f32;
        }
    }
}

/// `C <- alpha A B + beta C` on strided views, as [`crate::gemm::sgemm_strided`]. Sums in
/// f64.
///
/// # Panics
/// If `a.cols() != b.rows()`, `c.rows() != a.rows()` or `c.cols() != b.cols()`.
pub fn sgemm_strided(
    alpha: f32,
    a: MatrixView<'_>,
    b: MatrixView<'_>,
    beta: f32,
    mut c: MatrixViewMut<'_>,
) {
    assert_eq!(a.cols(), b.rows(), "sgemm_strided: inner dimensions differ");
    assert_eq!(
        (c.rows(), c.cols()),
        (a.rows(), b.cols()),
        "sgemm_strided: shape of C"
    );
    for i in 0..c.rows() {
        for j in 0..c.cols() {
            let mut product = 0.0_f64;
            if alpha != 0.0 {
                for l in 0..a.cols() {
                    product += f64::from(a.get(i, l)) * f64::from(b.get(l, j));
                }
            }
            let old = if beta == 0.0 {
                0.0
            } else {
                f64::from(beta) * f64::from(c.get(i, j))
            };
            c.set(i, j, (f64::from(alpha) * product + old) as f32);
        }
    }
}
