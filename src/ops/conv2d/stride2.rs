//! A direct kernel for the data gradient of the 2×2 stride-2 unpadded convolution, which is the
//! decoder's upsampling (ConvTranspose2d 2×2 stride 2) forward: every gradient pixel (oh, ow)
//! feeds exactly the four input pixels (2·oh + kh, 2·ow + kw). With 16–128 channels the product
//! behind it has an inner dimension of only c_out, where GEMM spends more on packing and on the
//! col2im shuffle than on arithmetic; this kernel keeps 4 input channels × 2 kernel columns × 32
//! pixels of sums in registers for one kernel row, interleaves the two columns with vector
//! permutes and adds them straight onto the input rows. AVX-512 only (elsewhere im2col + GEMM).
// Register blocks are arrays indexed by loop counters that the compiler unrolls.
#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;

use super::direct::{detect_isa, Isa};
use super::implicit::IMPLICIT_VAR;
use super::ConvGeometry;
use crate::ops::SharedOut;

/// Input channels per register block.
const CI_BLOCK: usize = 4;
/// Gradient rows per parallel task.
const ROWS_PER_TASK: usize = 4;

/// Whether this kernel computes the data gradient of `g` (on this CPU). From 32 gradient
/// columns: narrower rows (the deep layers' 22 and 11) waste a third of each pixel block, and
/// GEMM is faster there (measured: 64 channels at 22 columns, 48 against 57 GFLOP per CPU-s).
pub(crate) fn backward_data_applies(g: &ConvGeometry) -> bool {
    g.k == 2
        && g.stride == 2
        && g.pad == 0
        && g.w_out >= 32
        && matches!(detect_isa(), Isa::Avx512)
        && std::env::var(IMPLICIT_VAR).map_or(true, |v| v != "0")
}

/// `d_inp` (n, c_in, h, w) += convᵀ(d_out, weight) for 2×2 stride 2 without padding; or, with
/// `start` = `Some(values)` (c_in of them: the transposed convolution's bias), `d_inp` =
/// values + convᵀ(d_out, weight), every element written once (the row and column that odd
/// sizes leave out of the stride-2 grid get the start values alone).
pub(crate) fn backward_data(
    d_inp: &mut [f32],
    d_out: &[f32],
    weight: &[f32],
    start: Option<&[f32]>,
    n: usize,
    g: &ConvGeometry,
) {
    assert!(backward_data_applies(g));
    // packed[((cb·2 + kh)·c_out + co)·8 + c·2 + kw] = weight[co, cb·4 + c, kh, kw] (0 past c_in).
    let ci_blocks = g.c_in.div_ceil(CI_BLOCK);
    let mut packed = vec![0.0f32; ci_blocks * 2 * g.c_out * 2 * CI_BLOCK];
    for co in 0..g.c_out {
        for ci in 0..g.c_in {
            for kh in 0..2 {
                for kw in 0..2 {
                    let (cb, c) = (ci / CI_BLOCK, ci % CI_BLOCK);
                    packed[((cb * 2 + kh) * g.c_out + co) * 2 * CI_BLOCK + c * 2 + kw] =
                        weight[((co * g.c_in + ci) * 2 + kh) * 2 + kw];
                }
            }
        }
    }
    let row_blocks = g.h_out.div_ceil(ROWS_PER_TASK);
    // Task (b, block) writes only input rows 2·oh, 2·oh + 1 of its gradient rows oh.
    let shared = SharedOut(d_inp.as_mut_ptr());
    let packed = &packed;
    (0..n * row_blocks).into_par_iter().for_each(|task| {
        let (b, block) = (task / row_blocks, task % row_blocks);
        let rows = block * ROWS_PER_TASK..((block + 1) * ROWS_PER_TASK).min(g.h_out);
        let src = &d_out[b * g.c_out * g.h_out * g.w_out..][..g.c_out * g.h_out * g.w_out];
        // SAFETY: AVX-512F is present (backward_data_applies); this task alone writes input rows
        // 2·oh + kh of sample b for its rows oh, and every access lies inside the tensors.
        unsafe {
            let dst = shared.ptr().add(b * g.c_in * g.h * g.w);
            task_avx512(dst, src, packed, start, g, rows);
        }
    });
    if let Some(start) = start {
        // The last row and column when h or w is odd: no gradient pixel reaches them.
        for (plane, &value) in d_inp.chunks_exact_mut(g.h * g.w).zip(start.iter().cycle()) {
            for row in plane.chunks_exact_mut(g.w).take(2 * g.h_out) {
                row[2 * g.w_out..].fill(value);
            }
            plane[2 * g.h_out * g.w..].fill(value);
        }
    }
}

/// # Safety
/// AVX-512F must be available; `dst` points at one sample of `d_inp` and no other thread
/// touches input rows 2·oh, 2·oh + 1 of `rows` meanwhile.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn task_avx512(
    dst: *mut f32,
    src: &[f32],
    packed: &[f32],
    start: Option<&[f32]>,
    g: &ConvGeometry,
    rows: std::ops::Range<usize>,
) {
    use std::arch::x86_64::*;
    const L: usize = 16;
    const V: usize = 2;
    let out_plane = g.h_out * g.w_out;
    // Interleaving indices: (a0 b0 a1 b1 … a7 b7) and (a8 b8 … a15 b15).
    let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let src = src.as_ptr();
    for oh in rows {
        for kh in 0..2 {
            for cb in 0..g.c_in.div_ceil(CI_BLOCK) {
                let weights = packed.as_ptr().add((cb * 2 + kh) * g.c_out * 2 * CI_BLOCK);
                let ci_count = CI_BLOCK.min(g.c_in - cb * CI_BLOCK);
                for x0 in (0..g.w_out).step_by(V * L) {
                    let mut masks = [0u16; V];
                    for (v, mask) in masks.iter_mut().enumerate() {
                        let width = g.w_out.saturating_sub(x0 + v * L).min(L);
                        *mask = if width == L { !0 } else { (1u16 << width) - 1 };
                    }
                    // acc[c·2 + kw][v]: input channel cb·4 + c, kernel column kw, pixels v.
                    let mut acc = [[_mm512_setzero_ps(); V]; 2 * CI_BLOCK];
                    for co in 0..g.c_out {
                        let row = src.add(co * out_plane + oh * g.w_out + x0);
                        let x = [
                            _mm512_maskz_loadu_ps(masks[0], row),
                            _mm512_maskz_loadu_ps(masks[1], row.add(L)),
                        ];
                        let w = weights.add(co * 2 * CI_BLOCK);
                        for j in 0..2 * CI_BLOCK {
                            let wv = _mm512_set1_ps(*w.add(j));
                            for v in 0..V {
                                acc[j][v] = _mm512_fmadd_ps(wv, x[v], acc[j][v]);
                            }
                        }
                    }
                    for c in 0..ci_count {
                        let ci = cb * CI_BLOCK + c;
                        let out_row = dst.add((ci * g.h + 2 * oh + kh) * g.w + 2 * x0);
                        for v in 0..V {
                            let (even, odd) = (acc[c * 2][v], acc[c * 2 + 1][v]);
                            // Input columns 2·(x0 + 16v) … of this block: 32 values, masked at the
                            // row's end (2 lanes per gradient pixel).
                            let m = masks[v] as u32;
                            let m_lo = (spread(m & 0xff)) as u16;
                            let m_hi = (spread(m >> 8)) as u16;
                            let at = out_row.add(2 * v * L);
                            let first = _mm512_permutex2var_ps(even, lo, odd);
                            let second = _mm512_permutex2var_ps(even, hi, odd);
                            let (base_lo, base_hi) = match start {
                                Some(start) => {
                                    (_mm512_set1_ps(start[ci]), _mm512_set1_ps(start[ci]))
                                }
                                None => (
                                    _mm512_maskz_loadu_ps(m_lo, at),
                                    _mm512_maskz_loadu_ps(m_hi, at.add(L)),
                                ),
                            };
                            _mm512_mask_storeu_ps(at, m_lo, _mm512_add_ps(first, base_lo));
                            let at = at.add(L);
                            _mm512_mask_storeu_ps(at, m_hi, _mm512_add_ps(second, base_hi));
                        }
                    }
                }
            }
        }
    }
}

/// Each bit of the low 8 bits of `m` doubled: bit i → bits 2i and 2i + 1.
fn spread(m: u32) -> u32 {
    let mut out = 0;
    for i in 0..8 {
        if m & (1 << i) != 0 {
            out |= 3 << (2 * i);
        }
    }
    out
}
