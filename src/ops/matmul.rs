//! Dense float32 matrix multiply on strided views: the GEMM under the convolutions, the LSTM
//! and the Linear layer (cuBLAS's role on the GPU). A safe front for the `gemm` crate, which
//! picks AVX-512 / AVX2 kernels at run time.
//! Beside it, the few-row products of the LSTM recurrence, float32 and (`--precision bf16`)
//! bf16 with float32 sums.

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

/// The most rows [`matmul_small_rows`] is meant for (more: use [`matmul`]).
pub const SMALL_ROWS_MAX: usize = 16;
/// Columns per panel of [`SmallRowsPanels`] and [`Bf16PairRows`]: one AVX-512 block of 4 vectors.
const PANEL: usize = 64;

/// Where column `c` of row `r` of a `k`-row matrix packed in panels of [`PANEL`] columns lies.
fn panel_index(k: usize, r: usize, c: usize) -> usize {
    (c / PANEL * k + r) * PANEL + c % PANEL
}

/// `b` (k × n) packed for [`matmul_small_rows`]: panels of 64 columns, each `k` rows of 64
/// contiguous floats, the last panel padded with zeros. Packed once, read at every step of the
/// LSTM recurrence: a 64-column block is then one sequential stream of 256 bytes per row, where
/// in the row-major matrix it was 256 bytes out of every 2816 (at 4·hidden = 704), a strided
/// pattern across pages that the prefetchers served worse.
pub struct SmallRowsPanels {
    data: Vec<f32>,
    k: usize,
    n: usize,
}

impl SmallRowsPanels {
    /// Packs `b` (any strides).
    pub fn pack(b: MatRef) -> SmallRowsPanels {
        b.check("rhs");
        let (k, n) = (b.rows, b.cols);
        let mut data = vec![0.0f32; n.div_ceil(PANEL) * k * PANEL];
        for r in 0..k {
            for c in 0..n {
                data[panel_index(k, r, c)] = b.data[r * b.row_stride + c * b.col_stride];
            }
        }
        SmallRowsPanels { data, k, n }
    }

    /// (rows, columns) of the packed matrix, as given to [`SmallRowsPanels::pack`].
    pub fn shape(&self) -> (usize, usize) {
        (self.k, self.n)
    }
}

/// `dst = a·b` (or `+=`) on the calling thread for a few rows (`a.rows` ≤ [`SMALL_ROWS_MAX`]):
/// the LSTM's recurrence, one `h·W_hh` product of batch × hidden by hidden × 4·hidden per time
/// step. GEMM packs `b` on every call, which at one to a few rows costs more than the product;
/// here `b` was packed once ([`SmallRowsPanels`]; it stays in L2 across the steps) and the
/// sums stay in registers: 4 rows × 64 columns, or for one or two rows 128 columns (AVX-512)
/// so that eight independent chains of multiply-adds cover their latency.
pub fn matmul_small_rows(
    dst: &mut [f32],
    dst_row_stride: usize,
    a: MatRef,
    b: &SmallRowsPanels,
    accumulate: bool,
) {
    assert_eq!(
        a.cols, b.k,
        "matmul: inner dimensions {} and {} differ",
        a.cols, b.k
    );
    let (m, k, n) = (a.rows, b.k, b.n);
    a.check("lhs");
    check_extent("dst", dst.len(), m, n, dst_row_stride, 1);
    if m == 0 || n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if a.col_stride == 1 && k > 0 {
        use crate::ops::conv2d::{detect_isa, Isa};
        let job = SmallRows {
            dst: dst.as_mut_ptr(),
            dst_row_stride,
            a,
            b,
            accumulate,
        };
        // SAFETY: the features are present (detect_isa); every index the kernels touch is
        // inside `a`, the panels and `dst`, checked above.
        unsafe {
            match (detect_isa(), m) {
                (Isa::Avx512, 1) => return small_rows_avx512::<1, 8>(&job),
                (Isa::Avx512, 2) => return small_rows_avx512::<2, 8>(&job),
                (Isa::Avx512, _) => return small_rows_avx512::<4, 4>(&job),
                (Isa::Avx2, 1) => return small_rows_avx2::<1, 8>(&job),
                (Isa::Avx2, 2) => return small_rows_avx2::<2, 4>(&job),
                (Isa::Avx2, _) => return small_rows_avx2::<4, 2>(&job),
                (Isa::Portable, _) => {}
            }
        }
    }
    // Portable: per row of `a`, each panel row scaled into its 64 sums (a loop that vectorises).
    for r in 0..m {
        let out = &mut dst[r * dst_row_stride..][..n];
        if !accumulate {
            out.fill(0.0);
        }
        if k == 0 {
            continue;
        }
        for (p, panel) in b.data.chunks_exact(k * PANEL).enumerate() {
            let sums = &mut out[p * PANEL..][..(n - p * PANEL).min(PANEL)];
            for (i, w) in panel.chunks_exact(PANEL).enumerate() {
                let x = a.data[r * a.row_stride + i * a.col_stride];
                for (s, &w) in sums.iter_mut().zip(w) {
                    *s += x * w;
                }
            }
        }
    }
}

/// The operands of one [`matmul_small_rows`] call.
#[cfg(target_arch = "x86_64")]
struct SmallRows<'a> {
    dst: *mut f32,
    dst_row_stride: usize,
    a: MatRef<'a>,
    b: &'a SmallRowsPanels,
    accumulate: bool,
}

/// The store masks of the `V` 16-column vectors of a block starting at column `c0` of `n`
/// (all ones inside, the valid lanes of the last, none past it): the AVX-512 small-rows
/// kernels' column tails.
#[cfg(target_arch = "x86_64")]
fn column_masks<const V: usize>(n: usize, c0: usize) -> [u16; V] {
    const L: usize = 16;
    std::array::from_fn(|v| {
        let width = n.saturating_sub(c0 + v * L).min(L);
        if width == L {
            !0
        } else {
            (1u16 << width) - 1
        }
    })
}

/// AVX-512: per block of up to `R` rows and `V` vectors of 16 columns, `R·V` sums in
/// registers; each step of the inner dimension loads `V` vectors of the panels (one or two
/// sequential streams) and broadcasts one value of `a` per row. A vector past the last column
/// is masked off entirely: it may lie past the last panel, and a masked-off lane reads nothing.
///
/// # Safety
/// AVX-512F must be available; `a`, the panels and `dst` must hold every index (checked by the
/// caller).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// Register blocks are arrays indexed by loop counters that the compiler unrolls.
#[allow(clippy::needless_range_loop)]
unsafe fn small_rows_avx512<const R: usize, const V: usize>(job: &SmallRows) {
    use std::arch::x86_64::*;
    const L: usize = 16;
    let (a, b) = (job.a, job.b);
    let (m, k, n) = (a.rows, b.k, b.n);
    let (ap, bp) = (a.data.as_ptr(), b.data.as_ptr());
    for r0 in (0..m).step_by(R) {
        let rows = R.min(m - r0);
        for c0 in (0..n).step_by(V * L) {
            let masks = column_masks::<V>(n, c0);
            let columns: [*const f32; V] =
                std::array::from_fn(|v| bp.wrapping_add(panel_index(k, 0, c0 + v * L)));
            let mut acc = [[_mm512_setzero_ps(); V]; R];
            for kk in 0..k {
                let mut x = [_mm512_setzero_ps(); V];
                for v in 0..V {
                    x[v] = _mm512_maskz_loadu_ps(masks[v], columns[v].wrapping_add(kk * PANEL));
                }
                for r in 0..R {
                    if r < rows {
                        let s = _mm512_set1_ps(*ap.add((r0 + r) * a.row_stride + kk));
                        for v in 0..V {
                            acc[r][v] = _mm512_fmadd_ps(s, x[v], acc[r][v]);
                        }
                    }
                }
            }
            for r in 0..rows {
                let out = job.dst.add((r0 + r) * job.dst_row_stride + c0);
                for v in 0..V {
                    if masks[v] == 0 {
                        break;
                    }
                    let mut sum = acc[r][v];
                    if job.accumulate {
                        sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(masks[v], out.add(v * L)));
                    }
                    _mm512_mask_storeu_ps(out.add(v * L), masks[v], sum);
                }
            }
        }
    }
}

/// AVX2: per block of up to `R` rows and `V` vectors of 8 columns (at most one panel), `R·V`
/// sums in registers; the panels' zero padding makes every load of `b` whole, and the stores
/// to `dst` are masked to its columns.
///
/// # Safety
/// AVX2 and FMA must be available, `V·8` must divide 64; `a`, the panels and `dst` must hold
/// every index (checked by the caller).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
// Register blocks are arrays indexed by loop counters that the compiler unrolls.
#[allow(clippy::needless_range_loop)]
unsafe fn small_rows_avx2<const R: usize, const V: usize>(job: &SmallRows) {
    use std::arch::x86_64::*;
    const L: usize = 8;
    let (a, b) = (job.a, job.b);
    let (m, k, n) = (a.rows, b.k, b.n);
    let (ap, bp) = (a.data.as_ptr(), b.data.as_ptr());
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for r0 in (0..m).step_by(R) {
        let rows = R.min(m - r0);
        for c0 in (0..n).step_by(V * L) {
            let panel = bp.add(panel_index(k, 0, c0));
            let masks: [__m256i; V] = std::array::from_fn(|v| {
                let width = n.saturating_sub(c0 + v * L).min(L) as i32;
                _mm256_cmpgt_epi32(_mm256_set1_epi32(width), lanes)
            });
            let mut acc = [[_mm256_setzero_ps(); V]; R];
            for kk in 0..k {
                let row = panel.add(kk * PANEL);
                for r in 0..R {
                    if r < rows {
                        let s = _mm256_set1_ps(*ap.add((r0 + r) * a.row_stride + kk));
                        for v in 0..V {
                            acc[r][v] =
                                _mm256_fmadd_ps(s, _mm256_loadu_ps(row.add(v * L)), acc[r][v]);
                        }
                    }
                }
            }
            for r in 0..rows {
                let out = job.dst.add((r0 + r) * job.dst_row_stride + c0);
                for v in 0..V {
                    if c0 + v * L >= n {
                        break;
                    }
                    let mut sum = acc[r][v];
                    if job.accumulate {
                        sum = _mm256_add_ps(sum, _mm256_maskload_ps(out.add(v * L), masks[v]));
                    }
                    _mm256_maskstore_ps(out.add(v * L), masks[v], sum);
                }
            }
        }
    }
}

use super::conv2d::bf16_pair;

/// `b` (k × n) as bf16 pairs along k, for [`matmul_small_rows_bf16`]: pair row j of column c
/// holds b[2j][c] in its low half and b[2j + 1][c] in its high half, each rounded to nearest
/// even (an odd k pairs its last row with zeros), in panels of 64 columns as
/// [`SmallRowsPanels`]. Packed once, read at every product: half of float32's bytes.
pub struct Bf16PairRows {
    words: Vec<u32>,
    k: usize,
    n: usize,
    /// Whether this CPU runs the `vdpbf16ps` kernel (fixed at packing, not looked up per product).
    avx512_bf16: bool,
}

impl Bf16PairRows {
    /// Packs `b` (any strides).
    pub fn pack(b: MatRef) -> Bf16PairRows {
        b.check("rhs");
        let (k, n) = (b.rows, b.cols);
        let pairs = k.div_ceil(2);
        let at = |r: usize, c: usize| b.data[r * b.row_stride + c * b.col_stride];
        let mut words = vec![0u32; n.div_ceil(PANEL) * pairs * PANEL];
        for j in 0..pairs {
            for c in 0..n {
                words[panel_index(pairs, j, c)] =
                    bf16_pair(at(2 * j, c), (2 * j + 1 < k).then(|| at(2 * j + 1, c)));
            }
        }
        Bf16PairRows {
            words,
            k,
            n,
            avx512_bf16: crate::ops::conv2d::bf16_supported(),
        }
    }

    /// (rows, columns) of the packed matrix, as given to [`Bf16PairRows::pack`].
    pub fn shape(&self) -> (usize, usize) {
        (self.k, self.n)
    }
}

/// The bf16 [`matmul_small_rows`]: `dst = a·b` (or `+=`) with `a` and `b` rounded to bf16
/// (nearest even) and float32 sums, by `vdpbf16ps` where the CPU has AVX512-BF16 (Zen 4,
/// Sapphire Rapids), else in plain loops over the same rounded values (same products, another
/// summation order). The LSTM recurrence's `h·W_hhᵀ` under `--precision bf16`: `a` is converted
/// to pairs on each call (a few hundred values), `b` was packed once.
pub fn matmul_small_rows_bf16(
    dst: &mut [f32],
    dst_row_stride: usize,
    a: MatRef,
    b: &Bf16PairRows,
    accumulate: bool,
) {
    assert_eq!(
        a.cols, b.k,
        "matmul: inner dimensions {} and {} differ",
        a.cols, b.k
    );
    let (m, k, n) = (a.rows, b.k, b.n);
    a.check("lhs");
    check_extent("dst", dst.len(), m, n, dst_row_stride, 1);
    if m == 0 || n == 0 {
        return;
    }
    let pairs = k.div_ceil(2);
    let mut a_pairs = vec![0u32; m * pairs];
    for (r, row) in a_pairs.chunks_exact_mut(pairs.max(1)).enumerate() {
        let at = |i: usize| a.data[r * a.row_stride + i * a.col_stride];
        for (j, word) in row.iter_mut().enumerate() {
            *word = bf16_pair(at(2 * j), (2 * j + 1 < k).then(|| at(2 * j + 1)));
        }
    }
    #[cfg(target_arch = "x86_64")]
    if b.avx512_bf16 && pairs > 0 {
        let dst = dst.as_mut_ptr();
        // SAFETY: `b.avx512_bf16` says AVX-512F and BF16 are present; `a_pairs` holds m rows of
        // `pairs` words, the panels `pairs` rows of n columns, and `dst` every index (checked
        // above).
        return unsafe {
            match m {
                1 => {
                    small_rows_bf16_avx512::<1, 8>(dst, dst_row_stride, &a_pairs, m, b, accumulate)
                }
                2 => {
                    small_rows_bf16_avx512::<2, 8>(dst, dst_row_stride, &a_pairs, m, b, accumulate)
                }
                _ => {
                    small_rows_bf16_avx512::<4, 4>(dst, dst_row_stride, &a_pairs, m, b, accumulate)
                }
            }
        };
    }
    let widen = |half: u32| f32::from_bits(half << 16);
    for r in 0..m {
        let a_row = &a_pairs[r * pairs..][..pairs];
        let out = &mut dst[r * dst_row_stride..][..n];
        if !accumulate {
            out.fill(0.0);
        }
        for (c, out) in out.iter_mut().enumerate() {
            let mut sum = 0.0f32;
            for (j, &x) in a_row.iter().enumerate() {
                let w = b.words[panel_index(pairs, j, c)];
                sum += widen(x & 0xffff) * widen(w & 0xffff) + widen(x >> 16) * widen(w >> 16);
            }
            *out += sum;
        }
    }
}

/// AVX512-BF16: per block of up to `R` rows and `V` vectors of 16 columns, `R·V` float32 sums
/// in registers; each pair of the inner dimension loads `V` vectors of 16 packed column pairs
/// from the panels and broadcasts one pair of `a` per row, `vdpbf16ps` adding both products
/// into each lane. As in [`small_rows_avx512`], vectors past the last column are masked off.
///
/// # Safety
/// AVX-512F and BF16 must be available; `a_pairs` holds `m` rows of `b`'s pair count, `dst`
/// the `m × b.n` block with rows `dst_row_stride` apart.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
// Register blocks are arrays indexed by loop counters that the compiler unrolls.
#[allow(clippy::needless_range_loop)]
unsafe fn small_rows_bf16_avx512<const R: usize, const V: usize>(
    dst: *mut f32,
    dst_row_stride: usize,
    a_pairs: &[u32],
    m: usize,
    b: &Bf16PairRows,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    const L: usize = 16;
    let (pairs, n) = (b.k.div_ceil(2), b.n);
    debug_assert!(a_pairs.len() >= m * pairs && b.words.len() >= pairs * n);
    let (ap, bp) = (a_pairs.as_ptr(), b.words.as_ptr());
    for r0 in (0..m).step_by(R) {
        let rows = R.min(m - r0);
        for c0 in (0..n).step_by(V * L) {
            let masks = column_masks::<V>(n, c0);
            let columns: [*const u32; V] =
                std::array::from_fn(|v| bp.wrapping_add(panel_index(pairs, 0, c0 + v * L)));
            let mut acc = [[_mm512_setzero_ps(); V]; R];
            for j in 0..pairs {
                let mut x = [_mm512_setzero_si512(); V];
                for v in 0..V {
                    let at = columns[v].wrapping_add(j * PANEL) as *const i32;
                    x[v] = _mm512_maskz_loadu_epi32(masks[v], at);
                }
                for r in 0..R {
                    if r < rows {
                        let s = _mm512_set1_epi32(*ap.add((r0 + r) * pairs + j) as i32);
                        let s: __m512bh = std::mem::transmute(s);
                        for v in 0..V {
                            let xv: __m512bh = std::mem::transmute(x[v]);
                            acc[r][v] = _mm512_dpbf16_ps(acc[r][v], xv, s);
                        }
                    }
                }
            }
            for r in 0..rows {
                let out = dst.add((r0 + r) * dst_row_stride + c0);
                for v in 0..V {
                    if masks[v] == 0 {
                        break;
                    }
                    let mut sum = acc[r][v];
                    if accumulate {
                        sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(masks[v], out.add(v * L)));
                    }
                    _mm512_mask_storeu_ps(out.add(v * L), masks[v], sum);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The kernel (kernels/matmul.cu): the same product on device buffers.

use crate::device::{Device, DeviceBuffer, DeviceError, KernelDevice, LaunchConfig};

/// kernels/matmul.cu's tile of C per block and its threads per block.
const MATMUL_TILE: usize = 64;
const MATMUL_THREADS: u32 = 256;

/// A read-only strided matrix in a device buffer, optionally one of `batch` equally spaced
/// items: element (r, c) of item z is `buffer[offset + z·batch_stride + r·row_stride +
/// c·col_stride]`. The device twin of [`MatRef`].
#[derive(Clone, Copy)]
pub struct DeviceMatRef<'a> {
    pub buffer: &'a DeviceBuffer<f32>,
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
    pub batch_stride: usize,
}

impl<'a> DeviceMatRef<'a> {
    /// The dense row-major `rows × cols` matrix at the start of `buffer`.
    pub fn row_major(buffer: &'a DeviceBuffer<f32>, rows: usize, cols: usize) -> Self {
        Self {
            buffer,
            offset: 0,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
            batch_stride: rows * cols,
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

    /// The same view starting `offset` elements into the buffer.
    pub fn at(self, offset: usize) -> Self {
        Self { offset, ..self }
    }

    /// The same view with batch items `batch_stride` elements apart.
    pub fn batch_stride(self, batch_stride: usize) -> Self {
        Self {
            batch_stride,
            ..self
        }
    }
}

/// A row-major destination in a device buffer: element (r, c) of item z is
/// `buffer[offset + z·batch_stride + r·row_stride + c]`.
pub struct DeviceMatMut<'a> {
    pub buffer: &'a mut DeviceBuffer<f32>,
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub batch_stride: usize,
}

impl<'a> DeviceMatMut<'a> {
    /// The dense row-major `rows × cols` matrix at the start of `buffer`.
    pub fn row_major(buffer: &'a mut DeviceBuffer<f32>, rows: usize, cols: usize) -> Self {
        Self {
            buffer,
            offset: 0,
            rows,
            cols,
            row_stride: cols,
            batch_stride: rows * cols,
        }
    }
}

fn matmul_invalid(message: String) -> DeviceError {
    DeviceError::InvalidInput {
        op: "matmul",
        message,
    }
}

/// The last element a strided view of `batch` items reaches must lie inside its buffer: the
/// kernel reads nothing else (emu only catches stray writes, so reads are checked here).
#[allow(clippy::too_many_arguments)]
fn check_device_extent(
    name: &str,
    len: usize,
    offset: usize,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
    batch: usize,
    batch_stride: usize,
) -> Result<(), DeviceError> {
    if rows == 0 || cols == 0 || batch == 0 {
        return Ok(());
    }
    let last =
        offset + (batch - 1) * batch_stride + (rows - 1) * row_stride + (cols - 1) * col_stride;
    if last >= len {
        return Err(matmul_invalid(format!(
            "{name}: {batch} items of {rows}×{cols} with strides ({row_stride}, {col_stride}), batch stride {batch_stride}, from offset {offset} reach index {last} of a buffer of {len}"
        )));
    }
    Ok(())
}

fn to_i64(value: usize) -> i64 {
    value as i64
}

/// Launches kernels/matmul.cu: for each of `batch` items, `dst = a·b` (or `dst += a·b` when
/// `accumulate`). `dst` must not overlap `a` or `b` (the borrow rules see to it).
pub fn matmul_launch(
    device: &KernelDevice,
    dst: DeviceMatMut,
    a: DeviceMatRef,
    b: DeviceMatRef,
    batch: usize,
    accumulate: bool,
) -> Result<(), DeviceError> {
    if a.cols != b.rows || dst.rows != a.rows || dst.cols != b.cols {
        return Err(matmul_invalid(format!(
            "{}×{} · {}×{} into {}×{}",
            a.rows, a.cols, b.rows, b.cols, dst.rows, dst.cols
        )));
    }
    let (m, k, n) = (a.rows, a.cols, b.cols);
    check_device_extent(
        "lhs",
        a.buffer.len(),
        a.offset,
        m,
        k,
        a.row_stride,
        a.col_stride,
        batch,
        a.batch_stride,
    )?;
    check_device_extent(
        "rhs",
        b.buffer.len(),
        b.offset,
        k,
        n,
        b.row_stride,
        b.col_stride,
        batch,
        b.batch_stride,
    )?;
    check_device_extent(
        "dst",
        dst.buffer.len(),
        dst.offset,
        m,
        n,
        dst.row_stride,
        1,
        batch,
        dst.batch_stride,
    )?;
    if m == 0 || n == 0 || batch == 0 {
        return Ok(());
    }
    let dims = |v: usize, what: &str| {
        i32::try_from(v).map_err(|_| matmul_invalid(format!("{what} = {v} exceeds i32")))
    };
    let (m_i, n_i, k_i) = (dims(m, "m")?, dims(n, "n")?, dims(k, "k")?);
    let grid = |v: usize, what: &str| {
        u32::try_from(v)
            .ok()
            .filter(|&g| g <= 65_535 || what == "x")
            .ok_or_else(|| matmul_invalid(format!("{v} {what} blocks exceed the grid")))
    };
    let config = LaunchConfig {
        grid: [
            grid(n.div_ceil(MATMUL_TILE), "x")?,
            grid(m.div_ceil(MATMUL_TILE), "y")?,
            grid(batch, "z")?,
        ],
        block: [MATMUL_THREADS, 1, 1],
        shared_mem_bytes: 0,
    };
    device.launch(
        "matmul_tiled",
        config,
        &[
            m_i.into(),
            n_i.into(),
            k_i.into(),
            a.buffer.into(),
            to_i64(a.offset).into(),
            to_i64(a.row_stride).into(),
            to_i64(a.col_stride).into(),
            to_i64(a.batch_stride).into(),
            b.buffer.into(),
            to_i64(b.offset).into(),
            to_i64(b.row_stride).into(),
            to_i64(b.col_stride).into(),
            to_i64(b.batch_stride).into(),
            dst.buffer.into(),
            to_i64(dst.offset).into(),
            to_i64(dst.row_stride).into(),
            to_i64(dst.batch_stride).into(),
            (accumulate as i32).into(),
        ],
    )
}

/// The shape of one batched product for [`matmul_batched`]: `batch` items of
/// `dst (m × n) = op(a)·op(b)`, where `op(a)` is `m × k` stored as `a` (row-major `m × k`, or
/// `k × m` when `transpose_a`), likewise `b`, and items are stored one after another.
#[derive(Clone, Copy, Debug)]
pub struct MatmulShape {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub transpose_a: bool,
    pub transpose_b: bool,
    pub accumulate: bool,
}

impl MatmulShape {
    fn a_view<'s>(&self, a: &'s [f32], item: usize) -> MatRef<'s> {
        let slice = &a[item * self.m * self.k..][..self.m * self.k];
        if self.transpose_a {
            MatRef::row_major(slice, self.k, self.m).t()
        } else {
            MatRef::row_major(slice, self.m, self.k)
        }
    }

    fn b_view<'s>(&self, b: &'s [f32], item: usize) -> MatRef<'s> {
        let slice = &b[item * self.k * self.n..][..self.k * self.n];
        if self.transpose_b {
            MatRef::row_major(slice, self.n, self.k).t()
        } else {
            MatRef::row_major(slice, self.k, self.n)
        }
    }
}

/// `batch` products on any device, from host slices (`dst` is the prior value when
/// accumulating): the entry point of the equivalence test and the bench.
pub fn matmul_batched(
    device: &Device,
    shape: &MatmulShape,
    a: &[f32],
    b: &[f32],
    dst: &[f32],
) -> Result<Vec<f32>, DeviceError> {
    let s = *shape;
    let (a_len, b_len, dst_len) = (
        s.batch * s.m * s.k,
        s.batch * s.k * s.n,
        s.batch * s.m * s.n,
    );
    if a.len() != a_len || b.len() != b_len || dst.len() != dst_len {
        return Err(matmul_invalid(format!(
            "{shape:?}: a has {}, b {}, dst {} elements",
            a.len(),
            b.len(),
            dst.len()
        )));
    }
    match device {
        Device::Cpu => {
            let mut out = dst.to_vec();
            for item in 0..s.batch {
                matmul(
                    &mut out[item * s.m * s.n..][..s.m * s.n],
                    s.n,
                    s.a_view(a, item),
                    s.b_view(b, item),
                    s.accumulate,
                    Threads::All,
                );
            }
            Ok(out)
        }
        Device::Kernels(kd) => {
            let (a_dev, b_dev) = (kd.upload(a)?, kd.upload(b)?);
            // A fresh (NaN) output unless accumulating, so an unwritten element shows.
            let mut out = if s.accumulate {
                kd.upload(dst)?
            } else {
                kd.alloc(dst_len)?
            };
            let a_view = if s.transpose_a {
                DeviceMatRef::row_major(&a_dev, s.k, s.m).t()
            } else {
                DeviceMatRef::row_major(&a_dev, s.m, s.k)
            }
            .batch_stride(s.m * s.k);
            let b_view = if s.transpose_b {
                DeviceMatRef::row_major(&b_dev, s.n, s.k).t()
            } else {
                DeviceMatRef::row_major(&b_dev, s.k, s.n)
            }
            .batch_stride(s.k * s.n);
            matmul_launch(
                kd,
                DeviceMatMut::row_major(&mut out, s.m, s.n),
                a_view,
                b_view,
                s.batch,
                s.accumulate,
            )?;
            kd.download(&out)
        }
    }
}

/// Blocks a split-k product aims for: two waves of an H100/H200's 132 SMs.
const SPLIT_K_TARGET_BLOCKS: usize = 264;
/// The shortest k slice worth a partial product.
const SPLIT_K_MIN_CHUNK: usize = 256;

/// How [`matmul_sum_launch`] splits `items` products of `m × n` from `k`: (splits per item,
/// k per split). A function of the shape alone, so the result's bits are too.
pub fn matmul_sum_plan(m: usize, n: usize, k: usize, items: usize) -> (usize, usize) {
    let tiles = m.div_ceil(MATMUL_TILE).max(1) * n.div_ceil(MATMUL_TILE).max(1);
    let wanted = SPLIT_K_TARGET_BLOCKS.div_ceil(tiles * items.max(1));
    let splits = wanted.clamp(1, k.div_ceil(SPLIT_K_MIN_CHUNK).max(1));
    let k_chunk = k.div_ceil(splits).max(1);
    (k.div_ceil(k_chunk).max(1), k_chunk)
}

/// Elements of the scratch buffer [`matmul_sum_launch`] needs (a longer one serves too).
pub fn matmul_sum_scratch_len(m: usize, n: usize, k: usize, items: usize) -> usize {
    let (splits, _) = matmul_sum_plan(m, n, k, items);
    items * splits * m * n
}

/// `dst = Σ_z a_z·b_z` over `items` products (or `dst +=` when `accumulate`), items
/// `a.batch_stride` and `b.batch_stride` apart: the weight gradients, whose k (frames or pixels,
/// times images) is long and whose output is small. Each item's k is split by
/// [`matmul_sum_plan`]; the partial products go to `scratch` (of [`matmul_sum_scratch_len`]
/// elements) and are summed in a fixed order, so the result is deterministic.
pub fn matmul_sum_launch(
    device: &KernelDevice,
    dst: DeviceMatMut,
    a: DeviceMatRef,
    b: DeviceMatRef,
    items: usize,
    accumulate: bool,
    scratch: &mut DeviceBuffer<f32>,
) -> Result<(), DeviceError> {
    if a.cols != b.rows || dst.rows != a.rows || dst.cols != b.cols {
        return Err(matmul_invalid(format!(
            "{}×{} · {}×{} into {}×{}",
            a.rows, a.cols, b.rows, b.cols, dst.rows, dst.cols
        )));
    }
    let (m, k, n) = (a.rows, a.cols, b.cols);
    check_device_extent(
        "lhs",
        a.buffer.len(),
        a.offset,
        m,
        k,
        a.row_stride,
        a.col_stride,
        items,
        a.batch_stride,
    )?;
    check_device_extent(
        "rhs",
        b.buffer.len(),
        b.offset,
        k,
        n,
        b.row_stride,
        b.col_stride,
        items,
        b.batch_stride,
    )?;
    check_device_extent(
        "dst",
        dst.buffer.len(),
        dst.offset,
        m,
        n,
        dst.row_stride,
        1,
        1,
        0,
    )?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let (splits, k_chunk) = matmul_sum_plan(m, n, k, items);
    let parts = items * splits;
    if scratch.len() < parts * m * n {
        return Err(matmul_invalid(format!(
            "the split-k scratch has {} elements, {parts} partial products of {m}×{n} need {}",
            scratch.len(),
            parts * m * n
        )));
    }
    let int = |v: usize, what: &str| {
        i32::try_from(v).map_err(|_| matmul_invalid(format!("{what} = {v} exceeds i32")))
    };
    let (m_i, n_i, k_i) = (int(m, "m")?, int(n, "n")?, int(k, "k")?);
    let parts_i = int(parts, "partial products")?;
    if parts > 65_535 || m.div_ceil(MATMUL_TILE) > 65_535 {
        return Err(matmul_invalid(format!(
            "{parts} partial products of {m} rows exceed the grid"
        )));
    }
    if parts > 0 {
        device.launch(
            "matmul_split_k_partials",
            LaunchConfig {
                grid: [
                    n.div_ceil(MATMUL_TILE) as u32,
                    m.div_ceil(MATMUL_TILE) as u32,
                    parts as u32,
                ],
                block: [MATMUL_THREADS, 1, 1],
                shared_mem_bytes: 0,
            },
            &[
                m_i.into(),
                n_i.into(),
                k_i.into(),
                int(splits, "splits")?.into(),
                int(k_chunk, "k chunk")?.into(),
                a.buffer.into(),
                to_i64(a.offset).into(),
                to_i64(a.row_stride).into(),
                to_i64(a.col_stride).into(),
                to_i64(a.batch_stride).into(),
                b.buffer.into(),
                to_i64(b.offset).into(),
                to_i64(b.row_stride).into(),
                to_i64(b.col_stride).into(),
                to_i64(b.batch_stride).into(),
                (&mut *scratch).into(),
            ],
        )?;
    }
    device.launch(
        "matmul_sum_partials",
        LaunchConfig::for_elements(m * n, MATMUL_THREADS),
        &[
            m_i.into(),
            n_i.into(),
            parts_i.into(),
            (&*scratch).into(),
            dst.buffer.into(),
            to_i64(dst.offset).into(),
            to_i64(dst.row_stride).into(),
            (accumulate as i32).into(),
        ],
    )
}

/// `Σ_z a_z·b_z` over `shape.batch` items on any device, from host slices (`dst` the prior
/// value when accumulating), items stored one after another: the equivalence test's entry point.
pub fn matmul_sum(
    device: &Device,
    shape: &MatmulShape,
    a: &[f32],
    b: &[f32],
    dst: &[f32],
) -> Result<Vec<f32>, DeviceError> {
    let s = *shape;
    if a.len() != s.batch * s.m * s.k || b.len() != s.batch * s.k * s.n || dst.len() != s.m * s.n {
        return Err(matmul_invalid(format!(
            "{shape:?}: a has {}, b {}, dst {} elements",
            a.len(),
            b.len(),
            dst.len()
        )));
    }
    match device {
        Device::Cpu => {
            let mut out = dst.to_vec();
            for item in 0..s.batch {
                matmul(
                    &mut out,
                    s.n,
                    s.a_view(a, item),
                    s.b_view(b, item),
                    s.accumulate || item > 0,
                    Threads::All,
                );
            }
            if s.batch == 0 && !s.accumulate {
                out.fill(0.0);
            }
            Ok(out)
        }
        Device::Kernels(kd) => {
            let (a_dev, b_dev) = (kd.upload(a)?, kd.upload(b)?);
            let mut out = if s.accumulate {
                kd.upload(dst)?
            } else {
                kd.alloc(dst.len())?
            };
            let a_view = if s.transpose_a {
                DeviceMatRef::row_major(&a_dev, s.k, s.m).t()
            } else {
                DeviceMatRef::row_major(&a_dev, s.m, s.k)
            }
            .batch_stride(s.m * s.k);
            let b_view = if s.transpose_b {
                DeviceMatRef::row_major(&b_dev, s.n, s.k).t()
            } else {
                DeviceMatRef::row_major(&b_dev, s.k, s.n)
            }
            .batch_stride(s.k * s.n);
            let mut scratch = kd.alloc(matmul_sum_scratch_len(s.m, s.n, s.k, s.batch))?;
            matmul_sum_launch(
                kd,
                DeviceMatMut::row_major(&mut out, s.m, s.n),
                a_view,
                b_view,
                s.batch,
                s.accumulate,
                &mut scratch,
            )?;
            kd.download(&out)
        }
    }
}
