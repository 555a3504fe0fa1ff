//! Dense float32 matrix multiply on strided views: the GEMM under the convolutions, the LSTM
//! and the Linear layer (cuBLAS's role on the GPU). A safe front for the `gemm` crate, which
//! picks AVX-512 / AVX2 kernels at run time.

/// A read-only strided matrix: element (r, c) is `data[r·row_stride + c·col_stride]`.
/// A transposed view swaps the strides.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A dense row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, without copying.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn check(&self, name: &str) {
        check_extent(
            name,
            self.data.len(),
            self.rows,
            self.cols,
            self.row_stride,
            self.col_stride,
        );
    }
}

fn check_extent(name: &str, len: usize, rows: usize, cols: usize, rs: usize, cs: usize) {
    if rows == 0 || cols == 0 {
        return;
    }
    let last = (rows - 1) * rs + (cols - 1) * cs;
    assert!(
        last < len,
        "matmul {name}: a {rows}×{cols} view with strides ({rs}, {cs}) reaches index {last} of a slice of {len}"
    );
}

/// Whether a product runs on rayon's threads or on the calling one (inside a parallel task).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Threads {
    Single,
    All,
}

/// `dst = a·b` (or `dst += a·b` when `accumulate`), where `dst` is `a.rows × b.cols` with rows
/// `dst_row_stride` apart and unit column stride.
pub fn matmul(
    dst: &mut [f32],
    dst_row_stride: usize,
    a: MatRef,
    b: MatRef,
    accumulate: bool,
    threads: Threads,
) {
    assert_eq!(
        a.cols, b.rows,
        "matmul: inner dimensions {} and {} differ",
        a.cols, b.rows
    );
    let (m, k, n) = (a.rows, a.cols, b.cols);
    a.check("lhs");
    b.check("rhs");
    check_extent("dst", dst.len(), m, n, dst_row_stride, 1);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_row_stride..][..n].fill(0.0);
            }
        }
        return;
    }
    let parallelism = match threads {
        Threads::Single => gemm::Parallelism::None,
        Threads::All => gemm::Parallelism::Rayon(0),
    };
    // SAFETY: every index the views can reach was checked against its slice above; `dst` is
    // borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_row_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `dst = a·b` (or `+=`) on the calling thread, into a destination given by pointer: for tasks
/// that write disjoint column ranges of one output, which no `&mut` slice could express.
///
/// # Safety
/// `dst` must be valid for reads and writes of the `a.rows × b.cols` block with rows
/// `dst_row_stride` apart, and no other thread may access that block during the call.
pub(crate) unsafe fn matmul_to_ptr(
    dst: *mut f32,
    dst_row_stride: usize,
    a: MatRef,
    b: MatRef,
    accumulate: bool,
) {
    assert_eq!(
        a.cols, b.rows,
        "matmul: inner dimensions {} and {} differ",
        a.cols, b.rows
    );
    a.check("lhs");
    b.check("rhs");
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 || k == 0 {
        assert!(
            accumulate || m == 0 || n == 0,
            "matmul: empty inner dimension"
        );
        return;
    }
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_row_stride as isize,
        accumulate,
        a.data.as_ptr(),
        a.col_stride as isize,
        a.row_stride as isize,
        b.data.as_ptr(),
        b.col_stride as isize,
        b.row_stride as isize,
        1.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}
