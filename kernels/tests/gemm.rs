//! The parallel, strided GEMM against the reference triple loop.
//!
//! Inputs are small integers, so every product and sum is exact in f32 and the fast and
//! reference results must agree bit for bit, whatever the summation order.

use proptest::prelude::*;
use rotor_kernels::gemm::{self, MatrixView, MatrixViewMut};
use rotor_kernels::reference;

/// Deterministic integers in -4..=4 as f32.
fn integers(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 9) as f32 - 4.0
        })
        .collect()
}

/// Bit patterns, with -0 taken as +0 (the sign of a zero depends on the summation order);
/// a NaN left in an output shows up as a mismatch.
fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| (v + 0.0).to_bits()).collect()
}

/// Runs `f` on a rayon pool of `threads` threads.
fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
        .install(f)
}

/// Whether A and B are stored transposed: every combination.
const TRANSPOSES: [(bool, bool); 4] = [(false, false), (false, true), (true, false), (true, true)];

/// A `rows x cols` operand over `data`, stored row-major as it is or, `transposed`, as its
/// transpose.
fn operand(data: &[f32], rows: usize, cols: usize, transposed: bool) -> MatrixView<'_> {
    if transposed {
        MatrixView::row_major(data, cols, rows).t()
    } else {
        MatrixView::row_major(data, rows, cols)
    }
}

/// Compares `gemm::sgemm` with the reference on one `m x k` by `k x n` problem, A and B
/// stored transposed as `transposes` says; with `beta == 0` the fast kernel's C starts as
/// NaN.
fn check_sgemm(
    (ta, tb): (bool, bool),
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    beta: f32,
    seed: u64,
) {
    let a = integers(m * k, seed);
    let b = integers(k * n, seed + 1);
    let c = integers(m * n, seed + 2);
    let (a, b) = (operand(&a, m, k, ta), operand(&b, k, n, tb));
    let mut expected = c.clone();
    let view = MatrixViewMut::row_major(&mut expected, m, n);
    reference::gemm::sgemm(alpha, a, b, beta, view);
    let mut actual = if beta == 0.0 {
        vec![f32::NAN; m * n]
    } else {
        c
    };
    gemm::sgemm(
        alpha,
        a,
        b,
        beta,
        MatrixViewMut::row_major(&mut actual, m, n),
    );
    assert_eq!(
        bits(&actual),
        bits(&expected),
        "transposed {ta} {tb} m={m} n={n} k={k} alpha={alpha} beta={beta}"
    );
}

#[test]
fn every_small_size_and_transpose_matches_the_reference() {
    for (t, &(ta, tb)) in TRANSPOSES.iter().enumerate() {
        for m in 0..=20 {
            for n in 0..=20 {
                for k in 0..=20 {
                    let seed = (t * 10_000 + m * 441 + n * 21 + k) as u64;
                    check_sgemm((ta, tb), (m, n, k), 1.0, 0.0, seed);
                }
            }
        }
    }
}

#[test]
fn alpha_and_beta_scale_the_product_and_c() {
    for transposes in TRANSPOSES {
        for &(alpha, beta) in &[
            (2.0, 0.0),
            (-1.0, 1.0),
            (3.0, -2.0),
            (0.5, 0.25),
            (1.0, 1.0),
        ] {
            for &(m, n, k) in &[(1, 1, 1), (7, 9, 5), (17, 8, 19), (8, 16, 1), (20, 3, 11)] {
                check_sgemm(transposes, (m, n, k), alpha, beta, (m * n * k) as u64);
            }
        }
    }
}

#[test]
fn odd_large_sizes_match_the_reference_on_any_number_of_threads() {
    // Large enough to run in parallel: split by rows (m >= n) and by columns (m < n), with
    // blocks that are not multiples of the micro-kernel.
    let sizes = [
        (131, 67, 257),
        (1001, 37, 77),
        (37, 1003, 75),
        (259, 261, 33),
        (700, 301, 50),
        (45, 999, 240),
    ];
    for threads in [1, 2, 3, 4] {
        with_threads(threads, || {
            for (index, &(m, n, k)) in sizes.iter().enumerate() {
                let transposes = TRANSPOSES[(index + threads) % 4];
                check_sgemm(transposes, (m, n, k), 1.0, 0.0, index as u64);
                check_sgemm(transposes, (m, n, k), -2.0, 3.0, index as u64 + 100);
            }
        });
    }
}

#[test]
fn k_zero_scales_c_and_beta_zero_clears_nan() {
    let empty = |rows, cols| MatrixView::row_major(&[], rows, cols);
    let mut c = vec![f32::NAN; 6];
    let view = MatrixViewMut::row_major(&mut c, 2, 3);
    gemm::sgemm(1.0, empty(2, 0), empty(0, 3), 0.0, view);
    assert_eq!(c, vec![0.0; 6]);
    let mut c = vec![1.0, 2.0, 3.0];
    let view = MatrixViewMut::row_major(&mut c, 1, 3);
    gemm::sgemm(1.0, empty(1, 0), empty(0, 3), 2.0, view);
    assert_eq!(c, vec![2.0, 4.0, 6.0]);
}

#[test]
fn alpha_zero_reads_neither_a_nor_b() {
    let a = vec![f32::NAN; 4 * 5];
    let b = vec![f32::INFINITY; 5 * 3];
    let mut c = integers(4 * 3, 9);
    let expected: Vec<f32> = c.iter().map(|v| -v).collect();
    let (a, b) = (
        MatrixView::row_major(&a, 4, 5),
        MatrixView::row_major(&b, 5, 3),
    );
    gemm::sgemm(0.0, a, b, -1.0, MatrixViewMut::row_major(&mut c, 4, 3));
    assert_eq!(c, expected);
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    // Non-integer data, alpha and beta, and sizes that leave partial micro-tiles, so that
    // any change in the order or rounding of the arithmetic would show.
    for (m, n, k) in [(301, 203, 150), (45, 999, 100)] {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 997.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104_729) % 1000) as f32 / 991.0 - 0.5)
            .collect();
        let run = |threads| {
            with_threads(threads, || {
                let mut c: Vec<f32> = (0..m * n).map(|i| (i % 17) as f32 * 0.1).collect();
                let (a, b) = (operand(&a, m, k, false), operand(&b, k, n, true));
                gemm::sgemm(0.7, a, b, -1.3, MatrixViewMut::row_major(&mut c, m, n));
                bits(&c)
            })
        };
        let single = run(1);
        for threads in [2, 3, 4] {
            assert!(run(threads) == single, "{m}x{n}x{k} on {threads} threads");
        }
    }
}

/// A matrix stored in a larger buffer with the given strides and leading offset; the
/// elements outside the matrix hold `fill`.
struct Stored {
    data: Vec<f32>,
    offset: usize,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl Stored {
    /// Row-major or column-major with `pad` extra elements per row (column) and `offset`
    /// elements before the first.
    fn new(
        rows: usize,
        cols: usize,
        column_major: bool,
        pad: usize,
        offset: usize,
        fill: f32,
    ) -> Self {
        let (row_stride, col_stride) = if column_major {
            (1, rows + pad)
        } else {
            (cols + pad, 1)
        };
        let len = offset + rows.max(1) * row_stride.max(1) + cols.max(1) * col_stride.max(1);
        Self {
            data: vec![fill; len],
            offset,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    fn index(&self, i: usize, j: usize) -> usize {
        self.offset + i * self.row_stride + j * self.col_stride
    }

    fn set_all(&mut self, values: &[f32]) {
        for i in 0..self.rows {
            for j in 0..self.cols {
                let index = self.index(i, j);
                self.data[index] = values[i * self.cols + j];
            }
        }
    }

    fn view(&self) -> MatrixView<'_> {
        MatrixView::new(
            &self.data[self.offset..],
            self.rows,
            self.cols,
            self.row_stride,
            self.col_stride,
        )
    }

    fn view_mut(&mut self) -> MatrixViewMut<'_> {
        MatrixViewMut::new(
            &mut self.data[self.offset..],
            self.rows,
            self.cols,
            self.row_stride,
            self.col_stride,
        )
    }
}

fn layout() -> impl Strategy<Value = (bool, usize, usize)> {
    (any::<bool>(), 0..4_usize, 0..3_usize)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn strided_views_match_the_reference(
        m in 0..24_usize, n in 0..24_usize, k in 0..24_usize,
        a_layout in layout(), b_layout in layout(), c_layout in layout(),
        alpha in -2..3_i32, beta in -2..3_i32, seed in 0..1000_u64,
    ) {
        let (alpha, beta) = (alpha as f32, beta as f32);
        let mut a = Stored::new(m, k, a_layout.0, a_layout.1, a_layout.2, f32::NAN);
        let mut b = Stored::new(k, n, b_layout.0, b_layout.1, b_layout.2, f32::NAN);
        a.set_all(&integers(m * k, seed));
        b.set_all(&integers(k * n, seed + 1));
        // Elements outside C hold a sentinel that must survive.
        let mut expected = Stored::new(m, n, c_layout.0, c_layout.1, c_layout.2, 7.5);
        let initial = if beta == 0.0 { vec![f32::NAN; m * n] } else { integers(m * n, seed + 2) };
        expected.set_all(&integers(m * n, seed + 2));
        let mut actual = Stored::new(m, n, c_layout.0, c_layout.1, c_layout.2, 7.5);
        actual.set_all(&initial);
        reference::gemm::sgemm(alpha, a.view(), b.view(), beta, expected.view_mut());
        gemm::sgemm(alpha, a.view(), b.view(), beta, actual.view_mut());
        prop_assert_eq!(bits(&actual.data), bits(&expected.data));
    }

    #[test]
    fn sub_matrices_and_split_views_write_only_their_part(
        rows in 1..40_usize, cols in 1..40_usize, k in 1..12_usize,
        at_row in 0..40_usize, at_col in 0..40_usize, seed in 0..1000_u64,
    ) {
        let (at_row, at_col) = (at_row % (rows + 1), at_col % (cols + 1));
        let a = integers(rows * k, seed);
        let b = integers(k * cols, seed + 1);
        let a_view = MatrixView::row_major(&a, rows, k);
        let b_view = MatrixView::row_major(&b, k, cols);
        let mut full = vec![f32::NAN; rows * cols];
        reference::gemm::sgemm(1.0, a_view, b_view, 0.0, MatrixViewMut::row_major(&mut full, rows, cols));

        // The four quadrants, each computed from sub-matrices of A and B.
        let mut quadrants = vec![f32::NAN; rows * cols];
        let c = MatrixViewMut::row_major(&mut quadrants, rows, cols);
        let (top, bottom) = c.split_at_row(at_row);
        let (a_top, a_bottom) = a_view.split_at_row(at_row);
        for (c_half, a_half) in [(top, a_top), (bottom, a_bottom)] {
            let (left, right) = c_half.split_at_col(at_col);
            let (b_left, b_right) = b_view.split_at_col(at_col);
            gemm::sgemm(1.0, a_half, b_left, 0.0, left);
            gemm::sgemm(1.0, a_half, b_right, 0.0, right);
        }
        prop_assert_eq!(bits(&quadrants), bits(&full));
    }
}

#[test]
fn views_give_their_elements() {
    let data: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let view = MatrixView::new(&data, 3, 2, 4, 2);
    assert_eq!(view.get(2, 1), 10.0);
    assert_eq!(view.t().get(1, 2), 10.0);
    let sub = view.submatrix(1..3, 1..2);
    assert_eq!(
        (sub.rows(), sub.cols(), sub.get(0, 0), sub.get(1, 0)),
        (2, 1, 6.0, 10.0)
    );

    let mut data = vec![0.0; 6];
    let mut view = MatrixViewMut::row_major(&mut data, 2, 3);
    view.set(1, 2, 5.0);
    view.row_mut(0).fill(1.0);
    assert_eq!(view.get(1, 2), 5.0);
    assert_eq!(data, vec![1.0, 1.0, 1.0, 0.0, 0.0, 5.0]);
}

#[test]
#[should_panic(expected = "beyond a slice")]
fn a_view_reaching_past_its_slice_is_refused() {
    let data = vec![0.0; 11];
    MatrixView::new(&data, 3, 4, 4, 1);
}

#[test]
#[should_panic(expected = "overlap")]
fn an_output_view_whose_elements_overlap_is_refused() {
    let mut data = vec![0.0; 16];
    MatrixViewMut::new(&mut data, 3, 3, 2, 1);
}

#[test]
#[should_panic(expected = "overlap")]
fn an_output_view_with_a_zero_stride_is_refused() {
    let mut data = vec![0.0; 16];
    MatrixViewMut::new(&mut data, 1, 3, 1, 0);
}

#[test]
#[should_panic(expected = "slice length vs 3x2")]
fn a_row_major_view_checks_its_slice_length() {
    MatrixView::row_major(&[0.0; 5], 3, 2);
}

#[test]
#[should_panic(expected = "sgemm: A is 2x3, B is 2x3")]
fn sgemm_checks_shapes() {
    let (a, b) = (vec![0.0; 6], vec![0.0; 6]);
    let mut c = vec![0.0; 4];
    gemm::sgemm(
        1.0,
        MatrixView::row_major(&a, 2, 3),
        MatrixView::row_major(&b, 2, 3),
        0.0,
        MatrixViewMut::row_major(&mut c, 2, 2),
    );
}
