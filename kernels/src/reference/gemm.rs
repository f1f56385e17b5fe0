//! Reference matrix multiplication: the triple loop of the definition.

use crate::gemm::{MatrixView, MatrixViewMut};

/// `C <- alpha A B + beta C` on strided views, as [`crate::gemm::sgemm`]: C is not read
/// when `beta == 0`, A and B are not read when `alpha == 0`. Sums in f64.
///
/// # Panics
/// If `a.cols() != b.rows()`, `c.rows() != a.rows()` or `c.cols() != b.cols()`.
pub fn sgemm(
    alpha: f32,
    a: MatrixView<'_>,
    b: MatrixView<'_>,
    beta: f32,
    mut c: MatrixViewMut<'_>,
) {
    assert_eq!(a.cols(), b.rows(), "sgemm: inner dimensions differ");
    assert_eq!(
        (c.rows(), c.cols()),
        (a.rows(), b.cols()),
        "sgemm: shape of C"
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
