//! Single-precision matrix multiplication: `C <- alpha A B + beta C`.
//!
//! The micro-kernels and packing are `matrixmultiply`'s, which picks AVX2/FMA, AVX or SSE2
//! code at run time. This module adds three things around it:
//! - safe strided views ([`MatrixView`], [`MatrixViewMut`]) whose constructors check that
//!   every element they describe lies inside the slice, and (for the output) that no two
//!   elements share a memory location; a transposed operand or a sub-matrix is a view too;
//! - the BLAS conventions: `beta == 0` means C is not read (it may hold NaN), and
//!   `alpha == 0` means A and B are not read;
//! - threading on rayon's global pool: a large product is cut into blocks of rows of C (or of
//!   columns, when C is wider than tall) and each block is one single-threaded
//!   `matrixmultiply` call running as a rayon task. Every element of C is computed by one
//!   call with the same `k` order whatever the cut, so results do not depend on the number
//!   of threads.

use std::marker::PhantomData;
use std::ops::Range;

use crate::denormal::with_denormals_flushed;
use crate::tuning::gemm::{BLOCK_ALIGN, BLOCKS_PER_THREAD, MIN_BLOCK, PARALLEL_MIN_MACS};

/// A read-only matrix of `f32` with arbitrary strides: element `(i, j)` is
/// `data[i * row_stride + j * col_stride]`.
///
/// Construction checks that every element lies inside `data`, so the view can be handed to
/// the unchecked micro-kernels safely.
#[derive(Clone, Copy, Debug)]
pub struct MatrixView<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// A mutable matrix of `f32` with arbitrary strides: element `(i, j)` is
/// `data[i * row_stride + j * col_stride]`.
///
/// Construction checks that every element lies inside the slice and that distinct elements
/// occupy distinct locations, which is what makes [`split_at_row`](Self::split_at_row) and
/// [`split_at_col`](Self::split_at_col) able to hand out disjoint views to parallel tasks.
#[derive(Debug)]
pub struct MatrixViewMut<'a> {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
    data: PhantomData<&'a mut [f32]>,
}

// SAFETY: a `MatrixViewMut` is an exclusive borrow of the elements it describes (checked
// distinct at construction, and splitting keeps the halves disjoint), like `&mut [f32]`.
unsafe impl Send for MatrixViewMut<'_> {}
// SAFETY: shared access only reads through `&self` (`get`), like `&[f32]`.
unsafe impl Sync for MatrixViewMut<'_> {}

/// Offset of the last element of a `rows x cols` strided matrix, or `None` when the matrix
/// is empty. Panics on arithmetic overflow (which no in-bounds view can reach).
fn last_offset(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return None;
    }
    let offset = (rows - 1)
        .checked_mul(row_stride)
        .and_then(|r| {
            (cols - 1)
                .checked_mul(col_stride)
                .and_then(|c| r.checked_add(c))
        })
        .expect("matrix view: offset of the last element overflows usize");
    Some(offset)
}

fn check_bounds(what: &str, len: usize, rows: usize, cols: usize, rs: usize, cs: usize) {
    if let Some(last) = last_offset(rows, cols, rs, cs) {
        assert!(
            last < len,
            "{what}: a {rows}x{cols} view with strides ({rs}, {cs}) reaches offset {last}, \
             beyond a slice of length {len}"
        );
    }
}

/// True when `(i, j) -> i * rs + j * cs` is one-to-one on `rows x cols`: the rows (or the
/// columns) are laid out one after another without interleaving.
fn strides_are_distinct(rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    let row_outer = (cols == 1 || cs >= 1) && (rows == 1 || rs > (cols - 1).saturating_mul(cs));
    let col_outer = (rows == 1 || rs >= 1) && (cols == 1 || cs > (rows - 1).saturating_mul(rs));
    row_outer || col_outer
}

/// The stride `matrixmultiply` should see: irrelevant (and possibly huge) strides of a
/// dimension of extent 0 or 1 become 0.
fn kernel_stride(stride: usize, extent: usize) -> isize {
    if extent <= 1 {
        0
    } else {
        // In bounds of a slice, so at most isize::MAX.
        stride as isize
    }
}

/// Start of the sub-range (rows `r`, columns `c`): element offset of its first element,
/// or `None` when it is empty.
fn sub_offset(
    rows: Range<usize>,
    cols: Range<usize>,
    shape: (usize, usize),
    strides: (usize, usize),
) -> Option<usize> {
    assert!(
        rows.start <= rows.end && rows.end <= shape.0,
        "matrix view: rows {rows:?} out of 0..{}",
        shape.0
    );
    assert!(
        cols.start <= cols.end && cols.end <= shape.1,
        "matrix view: columns {cols:?} out of 0..{}",
        shape.1
    );
    (!rows.is_empty() && !cols.is_empty()).then(|| rows.start * strides.0 + cols.start * strides.1)
}

impl<'a> MatrixView<'a> {
    /// A `rows x cols` view of `data` with element `(i, j)` at
    /// `data[i * row_stride + j * col_stride]`.
    ///
    /// # Panics
    /// If some element would lie outside `data`.
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Self {
        check_bounds(
            "MatrixView::new",
            data.len(),
            rows,
            cols,
            row_stride,
            col_stride,
        );
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// A contiguous row-major `rows x cols` matrix.
    ///
    /// # Panics
    /// If `data.len() != rows * cols`.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(
            data.len(),
            rows * cols,
            "MatrixView::row_major: slice length vs {rows}x{cols}"
        );
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The transposed matrix (no data moves: the strides swap).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// Element `(row, col)`.
    ///
    /// # Panics
    /// If `row >= rows` or `col >= cols`.
    pub fn get(&self, row: usize, col: usize) -> f32 {
        assert!(
            row < self.rows && col < self.cols,
            "MatrixView::get: ({row}, {col}) out of range"
        );
        self.data[row * self.row_stride + col * self.col_stride]
    }

    /// The sub-matrix of rows `rows` and columns `cols`.
    ///
    /// # Panics
    /// If a range is decreasing or reaches past the matrix.
    pub fn submatrix(self, rows: Range<usize>, cols: Range<usize>) -> Self {
        let shape = (rows.len(), cols.len());
        let start = sub_offset(
            rows,
            cols,
            (self.rows, self.cols),
            (self.row_stride, self.col_stride),
        );
        Self {
            data: start.map_or(&[][..], |s| &self.data[s..]),
            rows: shape.0,
            cols: shape.1,
            row_stride: self.row_stride,
            col_stride: self.col_stride,
        }
    }

    /// Splits into rows `0..at` and `at..rows`.
    ///
    /// # Panics
    /// If `at > rows`.
    pub fn split_at_row(self, at: usize) -> (Self, Self) {
        (
            self.submatrix(0..at, 0..self.cols),
            self.submatrix(at..self.rows, 0..self.cols),
        )
    }

    /// Splits into columns `0..at` and `at..cols`.
    ///
    /// # Panics
    /// If `at > cols`.
    pub fn split_at_col(self, at: usize) -> (Self, Self) {
        (
            self.submatrix(0..self.rows, 0..at),
            self.submatrix(0..self.rows, at..self.cols),
        )
    }
}

impl<'a> MatrixViewMut<'a> {
    /// A `rows x cols` mutable view of `data` with element `(i, j)` at
    /// `data[i * row_stride + j * col_stride]`.
    ///
    /// # Panics
    /// If some element would lie outside `data`, or if two elements would share a location
    /// (the rows, or the columns, must follow one another without interleaving; a zero
    /// stride is allowed only for a dimension of extent 1).
    pub fn new(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Self {
        check_bounds(
            "MatrixViewMut::new",
            data.len(),
            rows,
            cols,
            row_stride,
            col_stride,
        );
        assert!(
            strides_are_distinct(rows, cols, row_stride, col_stride),
            "MatrixViewMut::new: strides ({row_stride}, {col_stride}) make elements of a \
             {rows}x{cols} matrix overlap"
        );
        Self {
            ptr: data.as_mut_ptr(),
            rows,
            cols,
            row_stride,
            col_stride,
            data: PhantomData,
        }
    }

    /// A contiguous row-major `rows x cols` matrix.
    ///
    /// # Panics
    /// If `data.len() != rows * cols`.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(
            data.len(),
            rows * cols,
            "MatrixViewMut::row_major: slice length vs {rows}x{cols}"
        );
        Self::new(data, rows, cols, cols, 1)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Element `(row, col)`.
    ///
    /// # Panics
    /// If `row >= rows` or `col >= cols`.
    pub fn get(&self, row: usize, col: usize) -> f32 {
        assert!(
            row < self.rows && col < self.cols,
            "MatrixViewMut::get: ({row}, {col}) out of range"
        );
        // SAFETY: in range, and every in-range element is inside the borrowed slice.
        unsafe { *self.ptr.add(row * self.row_stride + col * self.col_stride) }
    }

    /// Sets element `(row, col)` to `value`.
    ///
    /// # Panics
    /// If `row >= rows` or `col >= cols`.
    pub fn set(&mut self, row: usize, col: usize, value: f32) {
        assert!(
            row < self.rows && col < self.cols,
            "MatrixViewMut::set: ({row}, {col}) out of range"
        );
        // SAFETY: in range, and every in-range element is inside the exclusively borrowed slice.
        unsafe { *self.ptr.add(row * self.row_stride + col * self.col_stride) = value }
    }

    /// Row `row` as a slice.
    ///
    /// # Panics
    /// If `row >= rows`, or if the row is not contiguous (`col_stride != 1` and `cols > 1`).
    pub fn row_mut(&mut self, row: usize) -> &mut [f32] {
        assert!(
            row < self.rows,
            "MatrixViewMut::row_mut: row {row} out of 0..{}",
            self.rows
        );
        assert!(
            self.col_stride == 1 || self.cols <= 1,
            "MatrixViewMut::row_mut: rows are not contiguous (column stride {})",
            self.col_stride
        );
        if self.cols == 0 {
            return &mut [];
        }
        // SAFETY: the row's elements are the contiguous, in-bounds run starting at its first
        // element, borrowed exclusively through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(row * self.row_stride), self.cols) }
    }

    /// The sub-matrix of rows `rows` and columns `cols`.
    ///
    /// # Panics
    /// If a range is decreasing or reaches past the matrix.
    pub fn submatrix(self, rows: Range<usize>, cols: Range<usize>) -> Self {
        let shape = (rows.len(), cols.len());
        let start = sub_offset(
            rows,
            cols,
            (self.rows, self.cols),
            (self.row_stride, self.col_stride),
        );
        Self {
            // SAFETY: the first element of a non-empty in-range sub-matrix is in bounds.
            ptr: start.map_or(self.ptr, |s| unsafe { self.ptr.add(s) }),
            rows: shape.0,
            cols: shape.1,
            row_stride: self.row_stride,
            col_stride: self.col_stride,
            data: PhantomData,
        }
    }

    /// Splits into rows `0..at` and `at..rows`: two views of disjoint elements.
    ///
    /// # Panics
    /// If `at > rows`.
    pub fn split_at_row(self, at: usize) -> (Self, Self) {
        let (rows, cols) = (self.rows, self.cols);
        let copy = Self {
            data: PhantomData,
            ..self
        };
        (
            self.submatrix(0..at, 0..cols),
            copy.submatrix(at..rows, 0..cols),
        )
    }

    /// Splits into columns `0..at` and `at..cols`: two views of disjoint elements.
    ///
    /// # Panics
    /// If `at > cols`.
    pub fn split_at_col(self, at: usize) -> (Self, Self) {
        let (rows, cols) = (self.rows, self.cols);
        let copy = Self {
            data: PhantomData,
            ..self
        };
        (
            self.submatrix(0..rows, 0..at),
            copy.submatrix(0..rows, at..cols),
        )
    }
}

/// `C <- alpha A B + beta C` on strided views: A is `m x k`, B `k x n`, C `m x n`.
///
/// Transposition is a view ([`MatrixView::t`]), and sub-matrices are views too, so this one
/// entry point covers any row/column strides. With `beta == 0` C is not read (it may hold
/// NaN); with `alpha == 0` A and B are not read. Large products run in parallel on rayon's
/// global pool; the result does not depend on the number of threads.
///
/// ```
/// use rotor_kernels::gemm::{MatrixView, MatrixViewMut, sgemm};
///
/// // C = A B^T, with A and B stored row-major as 2 x 3 matrices.
/// let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
/// let b = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0];
/// let mut c = [0.0; 4];
/// let (a, b) = (MatrixView::row_major(&a, 2, 3), MatrixView::row_major(&b, 2, 3));
/// sgemm(1.0, a, b.t(), 0.0, MatrixViewMut::row_major(&mut c, 2, 2));
/// assert_eq!(c, [1.0, 3.0, 4.0, 6.0]);
/// ```
///
/// # Panics
/// If `a.cols() != b.rows()`, `c.rows() != a.rows()` or `c.cols() != b.cols()`.
pub fn sgemm(alpha: f32, a: MatrixView<'_>, b: MatrixView<'_>, beta: f32, c: MatrixViewMut<'_>) {
    assert_eq!(
        a.cols, b.rows,
        "sgemm: A is {}x{}, B is {}x{}",
        a.rows, a.cols, b.rows, b.cols
    );
    assert_eq!(
        (c.rows, c.cols),
        (a.rows, b.cols),
        "sgemm: C is {}x{}, A B is {}x{}",
        c.rows,
        c.cols,
        a.rows,
        b.cols
    );
    let (m, n, k) = (a.rows, b.cols, a.cols);
    let macs = m.saturating_mul(n).saturating_mul(k);
    let split_rows = m >= n;
    let dim = if split_rows { m } else { n };
    let blocks = (rayon::current_num_threads() * BLOCKS_PER_THREAD)
        .min(dim / MIN_BLOCK)
        .min(macs / (PARALLEL_MIN_MACS / 2))
        .max(1);
    if macs < PARALLEL_MIN_MACS || blocks == 1 {
        with_denormals_flushed(|| sgemm_serial(alpha, a, b, beta, c));
    } else {
        sgemm_blocks(alpha, a, b, beta, c, split_rows, blocks);
    }
}

/// Runs `blocks` single-threaded products on blocks of rows (or columns) of C, halving
/// recursively with `rayon::join`.
fn sgemm_blocks(
    alpha: f32,
    a: MatrixView<'_>,
    b: MatrixView<'_>,
    beta: f32,
    c: MatrixViewMut<'_>,
    split_rows: bool,
    blocks: usize,
) {
    if blocks <= 1 {
        with_denormals_flushed(|| sgemm_serial(alpha, a, b, beta, c));
        return;
    }
    let first = blocks / 2;
    let dim = if split_rows { c.rows } else { c.cols };
    let at = (dim * first / blocks)
        .next_multiple_of(BLOCK_ALIGN)
        .min(dim);
    if split_rows {
        let (a0, a1) = a.split_at_row(at);
        let (c0, c1) = c.split_at_row(at);
        rayon::join(
            || sgemm_blocks(alpha, a0, b, beta, c0, split_rows, first),
            || sgemm_blocks(alpha, a1, b, beta, c1, split_rows, blocks - first),
        );
    } else {
        let (b0, b1) = b.split_at_col(at);
        let (c0, c1) = c.split_at_col(at);
        rayon::join(
            || sgemm_blocks(alpha, a, b0, beta, c0, split_rows, first),
            || sgemm_blocks(alpha, a, b1, beta, c1, split_rows, blocks - first),
        );
    }
}

/// `C <- alpha A B + beta C` on the calling thread, for callers that are already inside a
/// parallel task (and have set the floating-point mode they want).
pub(crate) fn sgemm_serial(
    alpha: f32,
    a: MatrixView<'_>,
    b: MatrixView<'_>,
    beta: f32,
    c: MatrixViewMut<'_>,
) {
    // NOTE: a real assert, not a debug one: the unchecked kernel below relies on it.
    assert!(
        a.cols == b.rows && c.rows == a.rows && c.cols == b.cols,
        "sgemm: A is {}x{}, B is {}x{}, C is {}x{}",
        a.rows,
        a.cols,
        b.rows,
        b.cols,
        c.rows,
        c.cols
    );
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    if alpha == 0.0 || k == 0 {
        scale(beta, c);
        return;
    }
    // SAFETY: the views' constructors checked that every element of A, B and C lies inside
    // their slices and that C's elements are distinct; C is borrowed exclusively, so it
    // aliases neither A nor B. Strides fit in isize because they index into slices.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            kernel_stride(a.row_stride, m),
            kernel_stride(a.col_stride, k),
            b.data.as_ptr(),
            kernel_stride(b.row_stride, k),
            kernel_stride(b.col_stride, n),
            beta,
            c.ptr,
            kernel_stride(c.row_stride, m),
            kernel_stride(c.col_stride, n),
        );
    }
}

/// `C <- beta C`, with `beta == 0` writing zeros without reading C.
fn scale(beta: f32, mut c: MatrixViewMut<'_>) {
    for i in 0..c.rows {
        for j in 0..c.cols {
            let value = if beta == 0.0 { 0.0 } else { beta * c.get(i, j) };
            c.set(i, j, value);
        }
    }
}
