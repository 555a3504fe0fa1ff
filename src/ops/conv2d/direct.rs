//! Direct kernels for stride-1 convolutions with few channels (the layers at full 640×176
//! resolution: 1→16, 16→16, and the decoder's 16→8, 8→1 through the adjoint). There im2col
//! would write and re-read a matrix 9·c_in times the input for little arithmetic; these kernels
//! read a zero-padded strip of input rows once and keep a block of outputs in vector registers:
//! `CO` output channels × `X` neighbouring pixels, one fused multiply-add per weight and input
//! vector. Compiled three times (AVX-512, AVX2+FMA, portable) and chosen at run time.
// Register blocks are arrays indexed by loop counters that the compiler unrolls.
#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;

use super::{ConvFinish, ConvGeometry, OutputStart};
use crate::ops::SharedOut;

/// Output rows per parallel task.
const ROWS_PER_TASK: usize = 16;
/// Largest channel count (output channels for the forward, input channels for the weight
/// gradient's blocks) for which the direct kernels beat im2col + GEMM.
pub(crate) const MAX_CHANNELS: usize = 16;

/// Whether the direct forward kernel computes this convolution.
pub(crate) fn forward_applies(g: &ConvGeometry) -> bool {
    // Below 4 output channels most of a register block would idle: im2col wins there.
    g.stride == 1 && g.k <= 3 && g.pad < g.k.max(1) && (4..=MAX_CHANNELS).contains(&g.c_out)
}

/// Whether the direct forward kernel applies a [`ConvFinish`] as it stores (the AVX-512 one).
pub(crate) fn forward_finishes(g: &ConvGeometry) -> bool {
    forward_applies(g) && matches!(detect_isa(), Isa::Avx512)
}

/// Whether the direct weight-gradient kernel computes this convolution's weight gradient.
pub(crate) fn weight_grad_applies(g: &ConvGeometry) -> bool {
    g.stride == 1 && g.k <= 3 && g.pad < g.k.max(1) && g.c_out.min(g.c_in) <= MAX_CHANNELS
}

/// The input rows a block of output rows reads, zero-padded: `c_in` planes of `rows` rows of
/// `width` values, input column `x` at `pad + x`, zeros left, right (plus one vector of slack)
/// and where the row falls outside the image.
struct PaddedStrip {
    data: Vec<f32>,
    rows: usize,
    width: usize,
}

impl PaddedStrip {
    fn new(inp: &[f32], g: &ConvGeometry, out_rows: std::ops::Range<usize>, slack: usize) -> Self {
        let rows = out_rows.len() + g.k - 1;
        let width = g.w + 2 * g.pad + slack;
        let mut data = vec![0.0f32; g.c_in * rows * width];
        for ci in 0..g.c_in {
            for r in 0..rows {
                // Padded row r of the strip is input row out_rows.start + r − pad.
                let Some(ih) = (out_rows.start + r).checked_sub(g.pad).filter(|&i| i < g.h) else {
                    continue;
                };
                let src = &inp[(ci * g.h + ih) * g.w..][..g.w];
                data[(ci * rows + r) * width + g.pad..][..g.w].copy_from_slice(src);
            }
        }
        Self { data, rows, width }
    }

    #[inline(always)]
    fn row(&self, ci: usize, r: usize) -> &[f32] {
        &self.data[(ci * self.rows + r) * self.width..][..self.width]
    }
}

/// The widest vector instructions this CPU has, detected once per call.
#[derive(Clone, Copy)]
pub(crate) enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

/// The environment variable that narrows the kernels to `avx2` or `portable` (never wider than
/// the CPU allows), so that every variant can be tested and timed on one machine.
pub const FORCE_ISA_VAR: &str = "MTOSI_FORCE_ISA";

pub(crate) fn detect_isa() -> Isa {
    let forced = std::env::var(FORCE_ISA_VAR).unwrap_or_default();
    if forced == "portable" {
        return Isa::Portable;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        if forced == "avx2" && avx2 {
            return Isa::Avx2;
        }
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

/// Forward, stride 1: `out` (n, c_out, h_out, w_out) = conv(inp, weight) from `start`.
pub(crate) fn forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    start: OutputStart,
    finish: Option<&ConvFinish>,
    n: usize,
    g: &ConvGeometry,
) {
    assert!(forward_applies(g));
    assert!(finish.is_none() || (forward_finishes(g) && matches!(start, OutputStart::Bias(_))));
    let isa = detect_isa();
    // Blocks of 8 output channels (16 measured slower: the broadcasts outnumber the loads).
    let co_block = 8;
    let packed = pack_weights(weight, g, co_block);
    let in_len = g.c_in * g.h * g.w;
    let row_blocks = g.h_out.div_ceil(ROWS_PER_TASK);
    // Each task writes only the output rows of its own (sample, row block).
    let shared = SharedOut(out.as_mut_ptr());
    (0..n * row_blocks).into_par_iter().for_each(|task| {
        let (b, block) = (task / row_blocks, task % row_blocks);
        let rows = block * ROWS_PER_TASK..((block + 1) * ROWS_PER_TASK).min(g.h_out);
        let strip = PaddedStrip::new(&inp[b * in_len..][..in_len], g, rows.clone(), 16);
        let job = ForwardTask {
            out: shared,
            packed: &packed,
            co_block,
            start,
            finish,
            g,
            b,
            rows,
            strip: &strip,
        };
        // SAFETY: each variant runs only on a CPU with its features (detect_isa), and each task
        // writes only its own output rows (row block `block` of sample `b`).
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { forward_task_avx512(&job) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { forward_task_avx2(&job) },
            Isa::Portable => unsafe { forward_task::<4>(&job) },
        }
    });
}

/// One task of the forward: output rows `rows` of sample `b`, all channels.
struct ForwardTask<'a> {
    out: SharedOut,
    /// Weights in blocks of `co_block` channels per tap (see [`pack_weights`]).
    packed: &'a [f32],
    co_block: usize,
    start: OutputStart<'a>,
    /// Applied as the AVX-512 kernel stores (see [`forward_finishes`]).
    finish: Option<&'a ConvFinish>,
    g: &'a ConvGeometry,
    b: usize,
    rows: std::ops::Range<usize>,
    strip: &'a PaddedStrip,
}

/// The forward kernel in AVX-512: 8 output channels × 16 pixels in 8 registers.
///
/// # Safety
/// AVX-512F must be available; the ownership rule of [`forward_task`] holds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn forward_task_avx512(job: &ForwardTask) {
    use std::arch::x86_64::*;
    const CO: usize = 8;
    const X: usize = 16;
    let g = job.g;
    assert_eq!(job.co_block, CO, "weights packed for another block size");
    let out_plane = g.h_out * g.w_out;
    for (r, oh) in job.rows.clone().enumerate() {
        for co0 in (0..g.c_out).step_by(CO) {
            let weights = &job.packed[(co0 / CO) * g.taps() * CO..][..g.taps() * CO];
            let co_count = CO.min(g.c_out - co0);
            for x0 in (0..g.w_out).step_by(X) {
                let width = X.min(g.w_out - x0);
                let mask: __mmask16 = if width == X { !0 } else { (1u16 << width) - 1 };
                let at = |co: usize| (job.b * g.c_out + co0 + co) * out_plane + oh * g.w_out + x0;
                let mut acc = [_mm512_setzero_ps(); CO];
                for (co, acc) in acc.iter_mut().enumerate().take(co_count) {
                    *acc = match job.start {
                        OutputStart::Bias(Some(bias)) => _mm512_set1_ps(bias[co0 + co]),
                        OutputStart::Bias(None) => _mm512_setzero_ps(),
                        OutputStart::Accumulate => {
                            _mm512_maskz_loadu_ps(mask, job.out.0.add(at(co)))
                        }
                    };
                }
                let mut tap = 0;
                for ci in 0..g.c_in {
                    for kh in 0..g.k {
                        let row = job.strip.row(ci, r + kh);
                        debug_assert!(x0 + g.k - 1 + X <= row.len());
                        for kw in 0..g.k {
                            let xin = _mm512_loadu_ps(row.as_ptr().add(x0 + kw));
                            let w = &weights[tap * CO..][..CO];
                            for co in 0..CO {
                                acc[co] = _mm512_fmadd_ps(_mm512_set1_ps(w[co]), xin, acc[co]);
                            }
                            tap += 1;
                        }
                    }
                }
                for (co, &acc) in acc.iter().enumerate().take(co_count) {
                    let dst = job.out.0.add(at(co));
                    let value = match job.finish {
                        Some(f) if f.residual() => _mm512_add_ps(
                            f.value_avx512(co0 + co, acc),
                            _mm512_maskz_loadu_ps(mask, dst),
                        ),
                        Some(f) => f.value_avx512(co0 + co, acc),
                        None => acc,
                    };
                    _mm512_mask_storeu_ps(dst, mask, value);
                }
            }
        }
    }
}

/// The forward kernel in AVX2: 8 output channels × 8 pixels in 8 registers.
///
/// # Safety
/// AVX2 and FMA must be available; the ownership rule of [`forward_task`] holds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_task_avx2(job: &ForwardTask) {
    use std::arch::x86_64::*;
    const CO: usize = 8;
    const X: usize = 8;
    let g = job.g;
    assert_eq!(job.co_block, CO, "weights packed for another block size");
    let out_plane = g.h_out * g.w_out;
    for (r, oh) in job.rows.clone().enumerate() {
        for co0 in (0..g.c_out).step_by(CO) {
            let weights = &job.packed[(co0 / CO) * g.taps() * CO..][..g.taps() * CO];
            let co_count = CO.min(g.c_out - co0);
            for x0 in (0..g.w_out).step_by(X) {
                let width = X.min(g.w_out - x0);
                let at = |co: usize| (job.b * g.c_out + co0 + co) * out_plane + oh * g.w_out + x0;
                let mut acc = [_mm256_setzero_ps(); CO];
                for (co, acc) in acc.iter_mut().enumerate().take(co_count) {
                    *acc = match job.start {
                        OutputStart::Bias(Some(bias)) => _mm256_set1_ps(bias[co0 + co]),
                        OutputStart::Bias(None) => _mm256_setzero_ps(),
                        OutputStart::Accumulate => {
                            let mut lanes = [0.0f32; X];
                            let src = std::slice::from_raw_parts(job.out.0.add(at(co)), width);
                            lanes[..width].copy_from_slice(src);
                            _mm256_loadu_ps(lanes.as_ptr())
                        }
                    };
                }
                let mut tap = 0;
                for ci in 0..g.c_in {
                    for kh in 0..g.k {
                        let row = job.strip.row(ci, r + kh);
                        debug_assert!(x0 + g.k - 1 + X <= row.len());
                        for kw in 0..g.k {
                            let xin = _mm256_loadu_ps(row.as_ptr().add(x0 + kw));
                            let w = &weights[tap * CO..][..CO];
                            for co in 0..CO {
                                acc[co] = _mm256_fmadd_ps(_mm256_set1_ps(w[co]), xin, acc[co]);
                            }
                            tap += 1;
                        }
                    }
                }
                for (co, acc) in acc.iter().enumerate().take(co_count) {
                    let mut lanes = [0.0f32; X];
                    _mm256_storeu_ps(lanes.as_mut_ptr(), *acc);
                    std::slice::from_raw_parts_mut(job.out.0.add(at(co)), width)
                        .copy_from_slice(&lanes[..width]);
                }
            }
        }
    }
}

/// Weights regrouped for the kernels: per block of `co_block` output channels, per tap
/// (ci, kh, kw), the block's weights side by side (zero for channels past c_out).
pub(crate) fn pack_weights(weight: &[f32], g: &ConvGeometry, co_block: usize) -> Vec<f32> {
    let taps = g.taps();
    let mut packed = vec![0.0f32; g.c_out.div_ceil(co_block) * taps * co_block];
    for co in 0..g.c_out {
        for tap in 0..taps {
            packed[((co / co_block) * taps + tap) * co_block + co % co_block] =
                weight[co * taps + tap];
        }
    }
    packed
}

/// The portable kernel (non-x86 CPUs): for each output row, block of 8 channels and block of `X` pixels, the 8·X
/// sums live in registers while the taps stream by.
///
/// # Safety
/// `job.out` must point to the whole output tensor, and no other thread may touch the rows of
/// `job.rows` in sample `job.b` meanwhile.
#[inline(always)]
unsafe fn forward_task<const X: usize>(job: &ForwardTask) {
    const CO: usize = 8;
    let g = job.g;
    assert_eq!(job.co_block, CO, "weights packed for another block size");
    let out_plane = g.h_out * g.w_out;
    for (r, oh) in job.rows.clone().enumerate() {
        for co0 in (0..g.c_out).step_by(CO) {
            let weights = &job.packed[(co0 / CO) * g.taps() * CO..][..g.taps() * CO];
            let co_count = CO.min(g.c_out - co0);
            for x0 in (0..g.w_out).step_by(X) {
                let width = X.min(g.w_out - x0);
                let row_start =
                    |co: usize| (job.b * g.c_out + co0 + co) * out_plane + oh * g.w_out + x0;
                let mut acc = [[0.0f32; X]; CO];
                for (co, acc) in acc.iter_mut().enumerate().take(co_count) {
                    match job.start {
                        OutputStart::Bias(Some(bias)) => *acc = [bias[co0 + co]; X],
                        OutputStart::Bias(None) => {}
                        OutputStart::Accumulate => {
                            let src =
                                std::slice::from_raw_parts(job.out.0.add(row_start(co)), width);
                            acc[..width].copy_from_slice(src);
                        }
                    }
                }
                let mut tap = 0;
                for ci in 0..g.c_in {
                    for kh in 0..g.k {
                        let row = job.strip.row(ci, r + kh);
                        for kw in 0..g.k {
                            let xin: &[f32; X] = row[x0 + kw..x0 + kw + X].try_into().unwrap();
                            let w = &weights[tap * CO..][..CO];
                            for co in 0..CO {
                                for l in 0..X {
                                    acc[co][l] += w[co] * xin[l];
                                }
                            }
                            tap += 1;
                        }
                    }
                }
                for (co, acc) in acc.iter().enumerate().take(co_count) {
                    let dst = std::slice::from_raw_parts_mut(job.out.0.add(row_start(co)), width);
                    dst.copy_from_slice(&acc[..width]);
                }
            }
        }
    }
}

/// Weight gradient, stride 1: `d_weight` (c_out, c_in, k, k) += Σ d_out ⋆ inp over the batch.
pub(crate) fn backward_weight(
    d_weight: &mut [f32],
    d_out: &[f32],
    inp: &[f32],
    n: usize,
    g: &ConvGeometry,
) {
    assert!(weight_grad_applies(g));
    let isa = detect_isa();
    let row_blocks = g.h_out.div_ceil(ROWS_PER_TASK);
    let taps = g.taps();
    let partial = crate::ops::ordered_sum(n * row_blocks, g.c_out * taps, |acc_weight, task| {
        let (b, block) = (task / row_blocks, task % row_blocks);
        let rows = block * ROWS_PER_TASK..((block + 1) * ROWS_PER_TASK).min(g.h_out);
        let job = WeightTask {
            d_out,
            inp,
            g,
            b,
            rows,
        };
        // SAFETY: each variant runs only on a CPU with its features (detect_isa).
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { weight_task_avx512(&job, acc_weight) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { weight_task_avx2(&job, acc_weight) },
            Isa::Portable => weight_task::<4>(&job, acc_weight),
        }
    });
    if let Some(partial) = partial {
        d_weight.iter_mut().zip(&partial).for_each(|(d, p)| *d += p);
    }
}

/// One task of the weight gradient: output rows `rows` of sample `b`.
struct WeightTask<'a> {
    d_out: &'a [f32],
    inp: &'a [f32],
    g: &'a ConvGeometry,
    b: usize,
    rows: std::ops::Range<usize>,
}

/// The weight-gradient kernel in AVX-512: 4 output channels × 3 kernel columns × 16 pixels.
///
/// # Safety
/// AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn weight_task_avx512(job: &WeightTask, acc_weight: &mut [f32]) {
    use std::arch::x86_64::*;
    const X: usize = 16;
    let (g, rows) = (job.g, job.rows.len());
    let (strip, grad_rows, wq) = weight_task_inputs(job, X);
    for cb in 0..g.c_out.div_ceil(WG_CO) {
        for ci in 0..g.c_in {
            for kh in 0..g.k {
                let mut acc = [[_mm512_setzero_ps(); 3]; WG_CO];
                for r in 0..rows {
                    let row = strip.row(ci, r + kh);
                    for x0 in (0..wq).step_by(X) {
                        debug_assert!(x0 + g.k - 1 + X <= row.len());
                        let mut dy = [_mm512_setzero_ps(); WG_CO];
                        for (co, dy) in dy.iter_mut().enumerate() {
                            let at = ((cb * WG_CO + co) * rows + r) * wq + x0;
                            *dy = _mm512_loadu_ps(grad_rows[at..at + X].as_ptr());
                        }
                        for kw in 0..g.k {
                            let xin = _mm512_loadu_ps(row.as_ptr().add(x0 + kw));
                            for co in 0..WG_CO {
                                acc[co][kw] = _mm512_fmadd_ps(dy[co], xin, acc[co][kw]);
                            }
                        }
                    }
                }
                for (co, acc) in acc.iter().enumerate() {
                    let co = cb * WG_CO + co;
                    if co >= g.c_out {
                        break;
                    }
                    for (kw, lanes) in acc.iter().enumerate().take(g.k) {
                        acc_weight[co * g.taps() + (ci * g.k + kh) * g.k + kw] +=
                            _mm512_reduce_add_ps(*lanes);
                    }
                }
            }
        }
    }
}

/// The weight-gradient kernel in AVX2: 4 output channels × 3 kernel columns × 8 pixels.
///
/// # Safety
/// AVX2 and FMA must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn weight_task_avx2(job: &WeightTask, acc_weight: &mut [f32]) {
    use std::arch::x86_64::*;
    const X: usize = 8;
    let (g, rows) = (job.g, job.rows.len());
    let (strip, grad_rows, wq) = weight_task_inputs(job, X);
    for cb in 0..g.c_out.div_ceil(WG_CO) {
        for ci in 0..g.c_in {
            for kh in 0..g.k {
                let mut acc = [[_mm256_setzero_ps(); 3]; WG_CO];
                for r in 0..rows {
                    let row = strip.row(ci, r + kh);
                    for x0 in (0..wq).step_by(X) {
                        debug_assert!(x0 + g.k - 1 + X <= row.len());
                        let mut dy = [_mm256_setzero_ps(); WG_CO];
                        for (co, dy) in dy.iter_mut().enumerate() {
                            let at = ((cb * WG_CO + co) * rows + r) * wq + x0;
                            *dy = _mm256_loadu_ps(grad_rows[at..at + X].as_ptr());
                        }
                        for kw in 0..g.k {
                            let xin = _mm256_loadu_ps(row.as_ptr().add(x0 + kw));
                            for co in 0..WG_CO {
                                acc[co][kw] = _mm256_fmadd_ps(dy[co], xin, acc[co][kw]);
                            }
                        }
                    }
                }
                for (co, acc) in acc.iter().enumerate() {
                    let co = cb * WG_CO + co;
                    if co >= g.c_out {
                        break;
                    }
                    for (kw, lanes) in acc.iter().enumerate().take(g.k) {
                        let mut v = [0.0f32; X];
                        _mm256_storeu_ps(v.as_mut_ptr(), *lanes);
                        acc_weight[co * g.taps() + (ci * g.k + kh) * g.k + kw] +=
                            v.iter().sum::<f32>();
                    }
                }
            }
        }
    }
}

/// The padded input strip and the output-gradient rows of a weight task, zero-extended to
/// whole vectors of `x` lanes with channels padded to [`WG_CO`]; and that row length.
fn weight_task_inputs(job: &WeightTask, x: usize) -> (PaddedStrip, Vec<f32>, usize) {
    let (g, b, rows) = (job.g, job.b, job.rows.clone());
    let (in_len, out_plane) = (g.c_in * g.h * g.w, g.h_out * g.w_out);
    let strip = PaddedStrip::new(&job.inp[b * in_len..][..in_len], g, rows.clone(), x);
    let wq = g.w_out.div_ceil(x) * x;
    let mut grad_rows = vec![0.0f32; g.c_out.div_ceil(WG_CO) * WG_CO * rows.len() * wq];
    for co in 0..g.c_out {
        for (r, oh) in rows.clone().enumerate() {
            let src = &job.d_out[(b * g.c_out + co) * out_plane + oh * g.w_out..][..g.w_out];
            grad_rows[(co * rows.len() + r) * wq..][..g.w_out].copy_from_slice(src);
        }
    }
    (strip, grad_rows, wq)
}

/// Output channels per register block of the weight gradient: 4 channels × up to 3 kernel
/// columns = 12 accumulators, fed by 4 + 3 vector loads.
const WG_CO: usize = 4;

/// The portable weight-gradient kernel (non-x86 CPUs).
fn weight_task<const X: usize>(job: &WeightTask, acc_weight: &mut [f32]) {
    let (g, rows, taps) = (job.g, job.rows.clone(), job.g.taps());
    let (strip, grad_rows, wq) = weight_task_inputs(job, X);
    let co_blocks = g.c_out.div_ceil(WG_CO);
    for cb in 0..co_blocks {
        for ci in 0..g.c_in {
            for kh in 0..g.k {
                let mut acc = [[[0.0f32; X]; 3]; WG_CO];
                for r in 0..rows.len() {
                    let row = strip.row(ci, r + kh);
                    for x0 in (0..wq).step_by(X) {
                        let mut dy = [[0.0f32; X]; WG_CO];
                        for (co, dy) in dy.iter_mut().enumerate() {
                            let at = ((cb * WG_CO + co) * rows.len() + r) * wq + x0;
                            *dy = grad_rows[at..at + X].try_into().unwrap();
                        }
                        for kw in 0..g.k {
                            let xin: &[f32; X] = row[x0 + kw..x0 + kw + X].try_into().unwrap();
                            for co in 0..WG_CO {
                                for l in 0..X {
                                    acc[co][kw][l] += dy[co][l] * xin[l];
                                }
                            }
                        }
                    }
                }
                for (co, acc) in acc.iter().enumerate() {
                    let co = cb * WG_CO + co;
                    if co >= g.c_out {
                        break;
                    }
                    for (kw, lanes) in acc.iter().enumerate().take(g.k) {
                        acc_weight[co * taps + (ci * g.k + kh) * g.k + kw] +=
                            lanes.iter().sum::<f32>();
                    }
                }
            }
        }
    }
}
