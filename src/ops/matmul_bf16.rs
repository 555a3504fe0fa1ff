//! The bf16 GEMM of `--precision bf16`: `dst = a·b` with both operands rounded to bf16 (nearest
//! even) and float32 sums, for the products that are neither a 3×3 convolution nor the LSTM
//! recurrence: the LSTM's input projection `x·W_ihᵀ` and the 1×1 convolutions.
//!
//! `b` is packed once into panels of [`PANEL`] columns, each holding `⌈k/2⌉` rows of pair words
//! (b[2j][c] in the low half, b[2j + 1][c] in the high half; an odd k pairs its last row with
//! zeros), so that one `vdpbf16ps` adds two products into each of 16 float32 sums. `a` is packed
//! the same way along its rows. The AVX512-BF16 kernel keeps a block of 8 rows × 48 columns of
//! sums in 24 registers; [`matmul_bf16_reference`] is the plain-loop definition (float32 sums of
//! the products of the rounded values), and CPUs without AVX512-BF16 run it.

use rayon::prelude::*;

use super::conv2d::{bf16_pair, bf16_supported};
#[cfg(target_arch = "x86_64")]
use super::conv2d::{convert_pairs, to_bf16};
use super::matmul::{MatRef, Threads};
use crate::ops::SharedOut;

/// Columns of `b` per packed panel: three vectors of 16 sums.
pub const PANEL: usize = 48;
/// Rows of `a` per register block.
const BLOCK_ROWS: usize = 8;

/// What the sums start from.
#[derive(Clone, Copy, Debug)]
pub enum Start<'a> {
    /// Zero: `dst = a·b`.
    Zero,
    /// What `dst` holds: `dst += a·b`.
    Accumulate,
    /// One value per row of `dst` (a convolution's bias over its output channels).
    RowBias(&'a [f32]),
    /// One value per column of `dst` (a linear layer's bias over its outputs).
    ColumnBias(&'a [f32]),
}

/// `b` (k × n) as bf16 pair words in panels of [`PANEL`] columns: word (p, j, c) holds
/// b[2j][p·PANEL + c] and b[2j + 1][p·PANEL + c]; the last panel's missing columns are zeros.
pub struct Bf16Panels {
    words: Vec<u32>,
    k: usize,
    n: usize,
}

impl Default for Bf16Panels {
    fn default() -> Self {
        Self::new()
    }
}

impl Bf16Panels {
    /// An empty packing, for [`Bf16Panels::repack`] to fill.
    pub const fn new() -> Self {
        Self {
            words: Vec::new(),
            k: 0,
            n: 0,
        }
    }

    /// Packs `b` (any strides).
    pub fn pack(b: MatRef) -> Self {
        let mut panels = Self::new();
        panels.repack(b);
        panels
    }

    /// Packs `b` into this buffer, reusing its memory (a shape's first packing allocates).
    pub fn repack(&mut self, b: MatRef) {
        check_view("rhs", &b);
        let (k, n) = (b.rows, b.cols);
        let pairs = k.div_ceil(2);
        let panel_words = pairs * PANEL;
        // Every word is written below (the last panel's missing columns with zeros), so a
        // reused buffer is not cleared first.
        self.words.resize(n.div_ceil(PANEL) * panel_words, 0);
        (self.k, self.n) = (k, n);
        if panel_words == 0 {
            return;
        }
        let at = |r: usize, c: usize| b.data[r * b.row_stride + c * b.col_stride];
        // Looked up once: the check reads an environment variable.
        #[cfg(target_arch = "x86_64")]
        let vector = b.col_stride == 1 && bf16_supported();
        self.words
            .par_chunks_mut(panel_words)
            .enumerate()
            .for_each(|(p, panel)| {
                let c0 = p * PANEL;
                let cols = PANEL.min(n - c0);
                for (j, row) in panel.chunks_exact_mut(PANEL).enumerate() {
                    row[cols..].fill(0);
                    let (r0, r1) = (2 * j, 2 * j + 1);
                    #[cfg(target_arch = "x86_64")]
                    if vector {
                        let low = &b.data[r0 * b.row_stride + c0..][..cols];
                        let high = (r1 < k).then(|| &b.data[r1 * b.row_stride + c0..][..cols]);
                        // SAFETY: AVX-512F/BW and BF16 are present; both rows hold `cols` values
                        // and `row` `cols` words.
                        unsafe {
                            convert_pairs(
                                row.as_mut_ptr() as *mut i32,
                                low.as_ptr(),
                                high.map(<[f32]>::as_ptr),
                                cols,
                            )
                        };
                        continue;
                    }
                    for (c, word) in row[..cols].iter_mut().enumerate() {
                        *word = bf16_pair(at(r0, c0 + c), (r1 < k).then(|| at(r1, c0 + c)));
                    }
                }
            });
    }

    /// (rows, columns) of the packed matrix.
    pub fn shape(&self) -> (usize, usize) {
        (self.k, self.n)
    }
}

fn check_view(name: &str, m: &MatRef) {
    if m.rows == 0 || m.cols == 0 {
        return;
    }
    let last = (m.rows - 1) * m.row_stride + (m.cols - 1) * m.col_stride;
    assert!(
        last < m.data.len(),
        "matmul_bf16 {name}: a {}×{} view with strides ({}, {}) reaches index {last} of a slice of {}",
        m.rows,
        m.cols,
        m.row_stride,
        m.col_stride,
        m.data.len()
    );
}

fn check_start(start: Start, m: usize, n: usize) {
    match start {
        Start::RowBias(bias) => assert_eq!(bias.len(), m, "matmul_bf16: row bias length"),
        Start::ColumnBias(bias) => assert_eq!(bias.len(), n, "matmul_bf16: column bias length"),
        Start::Zero | Start::Accumulate => {}
    }
}

/// `dst` (`a.rows × b.cols`, rows `dst_row_stride` apart, unit column stride) = `start` +
/// bf16(a)·bf16(b) with float32 sums: by `vdpbf16ps` on CPUs with AVX512-BF16, else
/// [`matmul_bf16_reference`]'s loops (the same products, summed in another order).
pub fn matmul_bf16(
    dst: &mut [f32],
    dst_row_stride: usize,
    a: MatRef,
    b: &Bf16Panels,
    start: Start,
    threads: Threads,
) {
    assert_eq!(
        a.cols, b.k,
        "matmul_bf16: inner dimensions {} and {} differ",
        a.cols, b.k
    );
    check_view("lhs", &a);
    let (m, n) = (a.rows, b.n);
    check_start(start, m, n);
    if m == 0 || n == 0 {
        return;
    }
    let last = (m - 1) * dst_row_stride + n - 1;
    assert!(
        last < dst.len(),
        "matmul_bf16 dst: {m}×{n} with row stride {dst_row_stride} reaches index {last} of {}",
        dst.len()
    );
    #[cfg(target_arch = "x86_64")]
    if bf16_supported() {
        let pairs = b.k.div_ceil(2);
        let a_words = pack_rows(a, pairs);
        // Each task writes only the columns of its own panel.
        let out = SharedOut(dst.as_mut_ptr());
        let panels = n.div_ceil(PANEL);
        let task = |p: usize| {
            let c0 = p * PANEL;
            let panel = &b.words[p * pairs * PANEL..][..pairs * PANEL];
            // SAFETY: AVX-512F and BF16 are present; `panel` holds `pairs` rows of PANEL words,
            // `a_words` m rows of `pairs`; each task writes only its panel's columns of the
            // m × n block checked above.
            unsafe {
                panel_avx512(
                    out.ptr().add(c0),
                    dst_row_stride,
                    &a_words,
                    m,
                    panel,
                    pairs,
                    PANEL.min(n - c0),
                    c0,
                    start,
                )
            }
        };
        match threads {
            Threads::All => (0..panels).into_par_iter().for_each(task),
            Threads::Single => (0..panels).for_each(task),
        }
        return;
    }
    let _ = threads;
    reference_into(dst, dst_row_stride, a, |r, c| b.value(r, c), m, n, start);
}

impl Bf16Panels {
    /// Element (r, c) as packed: b[r][c] rounded to bf16.
    fn value(&self, r: usize, c: usize) -> f32 {
        let (p, c) = (c / PANEL, c % PANEL);
        let pairs = self.k.div_ceil(2);
        let word = self.words[(p * pairs + r / 2) * PANEL + c];
        f32::from_bits(if r.is_multiple_of(2) {
            word << 16
        } else {
            word & 0xffff_0000
        })
    }
}

/// The definition of [`matmul_bf16`] on an unpacked `b`: each sum in float32, in order of the
/// inner index, of the products of the bf16-rounded (nearest even) operands.
pub fn matmul_bf16_reference(
    dst: &mut [f32],
    dst_row_stride: usize,
    a: MatRef,
    b: MatRef,
    start: Start,
) {
    assert_eq!(a.cols, b.rows, "matmul_bf16_reference: inner dimensions");
    check_view("lhs", &a);
    check_view("rhs", &b);
    check_start(start, a.rows, b.cols);
    let at = |r: usize, c: usize| round(b.data[r * b.row_stride + c * b.col_stride]);
    reference_into(dst, dst_row_stride, a, at, a.rows, b.cols, start);
}

fn round(x: f32) -> f32 {
    f32::from_bits(bf16_pair(x, None) << 16)
}

fn reference_into(
    dst: &mut [f32],
    dst_row_stride: usize,
    a: MatRef,
    b_at: impl Fn(usize, usize) -> f32,
    m: usize,
    n: usize,
    start: Start,
) {
    for r in 0..m {
        for c in 0..n {
            let out = &mut dst[r * dst_row_stride + c];
            let mut sum = match start {
                Start::Zero => 0.0,
                Start::Accumulate => *out,
                Start::RowBias(bias) => bias[r],
                Start::ColumnBias(bias) => bias[c],
            };
            for i in 0..a.cols {
                sum += round(a.data[r * a.row_stride + i * a.col_stride]) * b_at(i, c);
            }
            *out = sum;
        }
    }
}

/// `a` (m × k) as m rows of `pairs` pair words along k, plus one block of zero rows so that
/// the kernel's last register block may read whole blocks.
#[cfg(target_arch = "x86_64")]
fn pack_rows(a: MatRef, pairs: usize) -> Vec<u32> {
    let (m, k) = (a.rows, a.cols);
    let mut words = vec![0u32; m * pairs];
    if pairs == 0 {
        return words;
    }
    words
        .par_chunks_mut(pairs * 64)
        .enumerate()
        .for_each(|(block, rows)| {
            for (i, row) in rows.chunks_exact_mut(pairs).enumerate() {
                let r = block * 64 + i;
                if a.col_stride == 1 {
                    let values = &a.data[r * a.row_stride..][..k];
                    // Consecutive bf16 values are the pair words along k; an odd k's last high
                    // half stays the zero it was made with.
                    // SAFETY: AVX-512F/BW and BF16 are present (the caller checked); `row`
                    // holds ⌈k/2⌉ words, room for the k halves.
                    unsafe { to_bf16(row.as_mut_ptr() as *mut u16, values.as_ptr(), k) };
                } else {
                    let at = |i: usize| a.data[r * a.row_stride + i * a.col_stride];
                    for (j, word) in row.iter_mut().enumerate() {
                        *word = bf16_pair(at(2 * j), (2 * j + 1 < k).then(|| at(2 * j + 1)));
                    }
                }
            }
        });
    words
}

/// One panel of columns over all `m` rows, in register blocks of 8 rows (the last one narrower).
///
/// # Safety
/// AVX-512F and BF16 must be available; `dst` points at the panel's first column of an
/// `m`-row block with rows `dst_row_stride` apart and `cols` valid columns; `a_words` holds `m`
/// rows of `pairs` words, `panel` `pairs` rows of PANEL words.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
// llm.c style: the shapes are arguments.
#[allow(clippy::too_many_arguments)]
unsafe fn panel_avx512(
    dst: *mut f32,
    dst_row_stride: usize,
    a_words: &[u32],
    m: usize,
    panel: &[u32],
    pairs: usize,
    cols: usize,
    c0: usize,
    start: Start,
) {
    debug_assert!(a_words.len() >= m * pairs && panel.len() >= pairs * PANEL);
    let mut r0 = 0;
    while r0 < m {
        let rows = BLOCK_ROWS.min(m - r0);
        let a = a_words.as_ptr().add(r0 * pairs);
        let out = dst.add(r0 * dst_row_stride);
        let block = Block {
            out,
            dst_row_stride,
            a,
            pairs,
            panel: panel.as_ptr(),
            cols,
            r0,
            c0,
            start,
        };
        match rows {
            8 => block_avx512::<8>(&block),
            7 => block_avx512::<7>(&block),
            6 => block_avx512::<6>(&block),
            5 => block_avx512::<5>(&block),
            4 => block_avx512::<4>(&block),
            3 => block_avx512::<3>(&block),
            2 => block_avx512::<2>(&block),
            _ => block_avx512::<1>(&block),
        }
        r0 += BLOCK_ROWS;
    }
}

/// One register block's operands and destination.
struct Block<'a> {
    out: *mut f32,
    dst_row_stride: usize,
    a: *const u32,
    pairs: usize,
    panel: *const u32,
    cols: usize,
    /// The block's first row and column in `dst` (for the biases).
    r0: usize,
    c0: usize,
    start: Start<'a>,
}

/// R rows × 48 columns of sums in registers; per pair of the inner dimension, 3 loads of 16
/// column pairs and R broadcasts of one pair of `a`.
///
/// # Safety
/// As [`panel_avx512`], for the R rows at `block.a` and `block.out`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
// Register blocks are arrays indexed by loop counters that the compiler unrolls.
#[allow(clippy::needless_range_loop)]
unsafe fn block_avx512<const R: usize>(block: &Block) {
    use std::arch::x86_64::*;
    const L: usize = 16;
    const V: usize = PANEL / L;
    let (a, panel, pairs) = (block.a, block.panel, block.pairs);
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    for j in 0..pairs {
        let row = panel.add(j * PANEL) as *const __m512i;
        let mut x = [_mm512_setzero_si512(); V];
        for v in 0..V {
            x[v] = _mm512_loadu_si512(row.add(v));
        }
        for r in 0..R {
            let s = _mm512_set1_epi32(*a.add(r * pairs + j) as i32);
            let s: __m512bh = std::mem::transmute(s);
            for v in 0..V {
                let xv: __m512bh = std::mem::transmute(x[v]);
                acc[r][v] = _mm512_dpbf16_ps(acc[r][v], s, xv);
            }
        }
    }
    let mut masks = [0u16; V];
    for v in 0..V {
        let valid = block.cols.saturating_sub(v * L).min(L);
        masks[v] = if valid == L {
            0xffff
        } else {
            (1u16 << valid) - 1
        };
    }
    for r in 0..R {
        let out = block.out.add(r * block.dst_row_stride);
        for v in 0..V {
            if masks[v] == 0 {
                continue;
            }
            let at = out.add(v * L);
            let start = match block.start {
                Start::Zero => _mm512_setzero_ps(),
                Start::Accumulate => _mm512_maskz_loadu_ps(masks[v], at),
                Start::RowBias(bias) => _mm512_set1_ps(bias[block.r0 + r]),
                Start::ColumnBias(bias) => {
                    _mm512_maskz_loadu_ps(masks[v], bias.as_ptr().add(block.c0 + v * L))
                }
            };
            _mm512_mask_storeu_ps(at, masks[v], _mm512_add_ps(start, acc[r][v]));
        }
    }
}
