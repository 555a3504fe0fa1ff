//! Implicit-GEMM forward for stride-1 convolutions with more than 16 output channels (the
//! U-net's 32–192-channel layers; through the adjoint also their data gradients and the
//! decoder's transposed convolutions). No im2col matrix is written: each task zero-pads its
//! input rows once into planes `wp = w + 2·pad` columns wide, and over such a flattened plane a
//! k×k convolution is a sum of c_in·k² shifted copies of it: output pixel `p = oh·wp + ow`
//! reads input `p + kh·wp + kw`. The kernel keeps 8 output channels × 48 consecutive flat
//! pixels (AVX-512; AVX2: 4 × 24) in registers while the taps stream by, one broadcast weight
//! and one input load per fused multiply-add group, and drops the `k − 1` columns per row past
//! `w_out` (2–15 % of the work at the network's widths 88…11).
// Register blocks are arrays indexed by loop counters that the compiler unrolls.
#![allow(clippy::needless_range_loop)]

use std::cell::RefCell;

use rayon::prelude::*;

use super::direct::{detect_isa, pack_weights, Isa};
use super::{ConvFinish, ConvGeometry, OutputStart};
use crate::ops::SharedOut;

/// Output channels per packed weight block (both ISAs).
pub(super) const CO_BLOCK: usize = 8;
/// Flat pixels per register block: 3 AVX-512 vectors (AVX2 uses the first 24).
pub(super) const PX_BLOCK: usize = 48;
/// Environment variable that turns this path off (`0`), for comparisons against im2col + GEMM.
pub const IMPLICIT_VAR: &str = "MTOSI_CONV_IMPLICIT";

/// Whether this kernel computes the forward of `g` (on this CPU): stride-1 layers with more
/// than 16 output channels, and the 2×2 stride-2 downsampling with at least 8, whose strip is
/// its pixel unshuffle (four planes per input channel, `w_out` wide: nothing to drop).
pub(crate) fn applies(g: &ConvGeometry) -> bool {
    let stride1 = g.stride == 1 && g.k >= 2 && g.pad < g.k && g.c_out > super::direct::MAX_CHANNELS;
    (stride1 || (is_unshuffle(g) && g.c_out >= CO_BLOCK))
        && !matches!(detect_isa(), Isa::Portable)
        && std::env::var(IMPLICIT_VAR).map_or(true, |v| v != "0")
}

/// 2×2 stride 2 without padding: each output pixel reads its own 2×2 input patch.
pub(super) fn is_unshuffle(g: &ConvGeometry) -> bool {
    g.k == 2 && g.stride == 2 && g.pad == 0
}

/// Input rows of one task, zero-padded and flattened: per input channel a plane of `plane`
/// values holding rows of `wp` columns (input column x at `pad + x`), then slack zeros so that
/// the last pixel block may read past the last row. Lives in a per-thread scratch buffer.
pub(super) struct FlatStrip<'a> {
    pub(super) data: &'a [f32],
    pub(super) wp: usize,
    pub(super) plane: usize,
}

thread_local! {
    /// Per-thread scratch for the strips and gradient rows: reused from task to task, so that
    /// no buffer is allocated (and zeroed, then overwritten) per task.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with this thread's two scratch buffers, at least `a` and `b` values long (contents
/// undefined: the fillers below write every value they expose).
pub(super) fn with_scratch<R>(
    a: usize,
    b: usize,
    f: impl FnOnce(&mut [f32], &mut [f32]) -> R,
) -> R {
    SCRATCH.with(|cell| {
        let mut guard = cell.borrow_mut();
        let (x, y) = &mut *guard;
        if x.len() < a {
            x.resize(a, 0.0);
        }
        if y.len() < b {
            y.resize(b, 0.0);
        }
        f(&mut x[..a], &mut y[..b])
    })
}

impl<'a> FlatStrip<'a> {
    /// The values the strip of `out_rows` needs.
    pub(super) fn len(g: &ConvGeometry, out_rows: usize) -> usize {
        if is_unshuffle(g) {
            return g.taps() * (out_rows * g.w_out + PX_BLOCK);
        }
        g.c_in * Self::plane_len(g, out_rows)
    }

    pub(super) fn plane_len(g: &ConvGeometry, out_rows: usize) -> usize {
        (out_rows + g.k - 1) * (g.w + 2 * g.pad) + PX_BLOCK + g.k
    }

    /// For 2×2 stride 2: per tap (ci, kh, kw) a plane of the task's `rows · w_out` input values
    /// it reads (the even or odd columns of input rows 2·oh + kh), then slack zeros.
    pub(super) fn fill_unshuffled(
        data: &'a mut [f32],
        inp: &[f32],
        g: &ConvGeometry,
        out_rows: std::ops::Range<usize>,
    ) -> Self {
        let span = out_rows.len() * g.w_out;
        let plane = span + PX_BLOCK;
        for ci in 0..g.c_in {
            for kh in 0..2 {
                let tap = (ci * 2 + kh) * 2;
                let (even, odd) = data[tap * plane..(tap + 2) * plane].split_at_mut(plane);
                for (j, oh) in out_rows.clone().enumerate() {
                    let src = &inp[(ci * g.h + 2 * oh + kh) * g.w..][..2 * g.w_out];
                    let seg = j * g.w_out..(j + 1) * g.w_out;
                    super::im2col::deinterleave(src, &mut even[seg.clone()], &mut odd[seg]);
                }
                even[span..].fill(0.0);
                odd[span..].fill(0.0);
            }
        }
        Self {
            data,
            wp: g.w_out,
            plane,
        }
    }

    /// Fills `data` (of [`FlatStrip::len`] values) with the strip, writing each value once.
    pub(super) fn fill(
        data: &'a mut [f32],
        inp: &[f32],
        g: &ConvGeometry,
        out_rows: std::ops::Range<usize>,
    ) -> Self {
        let wp = g.w + 2 * g.pad;
        let plane = Self::plane_len(g, out_rows.len());
        fill_strip_planes(data, plane, g, out_rows, |ci, ih, interior| {
            interior.copy_from_slice(&inp[(ci * g.h + ih) * g.w..][..g.w])
        });
        Self { data, wp, plane }
    }
}

/// The layout of every stride-1 strip of output rows `out_rows` (float32, bf16, bf16 pairs):
/// planes of `plane` values, rows `w + 2·pad` wide with input column x at pad + x, the rows
/// above and below the input and everything after the last row zero. For plane p and each strip
/// row that is input row ih, `interior(p, ih, values)` writes that row's `w` values; every
/// other value is written zero, each once.
pub(super) fn fill_strip_planes<T: Copy + Default>(
    data: &mut [T],
    plane: usize,
    g: &ConvGeometry,
    out_rows: std::ops::Range<usize>,
    mut interior: impl FnMut(usize, usize, &mut [T]),
) {
    let wp = g.w + 2 * g.pad;
    let rows = out_rows.len() + g.k - 1;
    assert!(plane >= rows * wp && data.len().is_multiple_of(plane));
    for (p, plane_data) in data.chunks_exact_mut(plane).enumerate() {
        let (body, slack) = plane_data.split_at_mut(rows * wp);
        slack.fill(T::default());
        for (r, row) in body.chunks_exact_mut(wp).enumerate() {
            // Strip row r is input row out_rows.start + r − pad.
            let Some(ih) = (out_rows.start + r).checked_sub(g.pad).filter(|&i| i < g.h) else {
                row.fill(T::default());
                continue;
            };
            row[..g.pad].fill(T::default());
            row[g.pad + g.w..].fill(T::default());
            interior(p, ih, &mut row[g.pad..g.pad + g.w]);
        }
    }
}

/// One task: output rows `rows` of sample `b`, all output channels, from `strip`.
pub(super) struct Task<'a> {
    pub(super) out: SharedOut,
    pub(super) start: OutputStart<'a>,
    pub(super) g: &'a ConvGeometry,
    pub(super) b: usize,
    pub(super) rows: std::ops::Range<usize>,
    pub(super) strip: &'a FlatStrip<'a>,
    /// Applied to each value as it is stored (from a bias start only).
    pub(super) finish: Option<&'a ConvFinish>,
}

impl Task<'_> {
    /// Offsets into the strip of each tap (ci, kh, kw), in the packed weights' order.
    fn tap_offsets(&self) -> Vec<usize> {
        let (g, s) = (self.g, self.strip);
        if is_unshuffle(g) {
            return (0..g.taps()).map(|tap| tap * s.plane).collect();
        }
        let mut offsets = Vec::with_capacity(g.taps());
        for ci in 0..g.c_in {
            for kh in 0..g.k {
                for kw in 0..g.k {
                    offsets.push(ci * s.plane + kh * s.wp + kw);
                }
            }
        }
        offsets
    }

    /// Writes `sums` (flat pixels p0.. of channel co, relative to the task's first row) into
    /// the output, row segment by row segment, from the task's start (bias already in `sums`).
    ///
    /// # Safety
    /// The ownership rule of [`forward`]: only this task touches these output rows.
    pub(super) unsafe fn store(&self, co: usize, p0: usize, sums: &[f32]) {
        let g = self.g;
        let wp = self.strip.wp;
        let out_plane = g.h_out * g.w_out;
        let base = (self.b * g.c_out + co) * out_plane;
        let first = p0 / wp;
        let last = ((p0 + sums.len() - 1) / wp).min(self.rows.len() - 1);
        for r in first..=last {
            let lo = (r * wp).max(p0) - r * wp;
            let hi = ((r * wp + g.w_out).min(p0 + sums.len())).saturating_sub(r * wp);
            if lo >= hi {
                continue;
            }
            let src = &sums[r * wp + lo - p0..r * wp + hi - p0];
            let dst = std::slice::from_raw_parts_mut(
                self.out.0.add(base + (self.rows.start + r) * g.w_out + lo),
                hi - lo,
            );
            match self.finish {
                Some(f) if f.residual() => {
                    dst.iter_mut()
                        .zip(src)
                        .for_each(|(d, &s)| *d += f.value(co, s));
                }
                Some(f) => dst
                    .iter_mut()
                    .zip(src)
                    .for_each(|(d, &s)| *d = f.value(co, s)),
                None if matches!(self.start, OutputStart::Accumulate) => {
                    dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
                }
                None => dst.copy_from_slice(src),
            }
        }
    }

    pub(super) fn bias(&self, co: usize) -> f32 {
        match self.start {
            OutputStart::Bias(Some(bias)) if co < self.g.c_out => bias[co],
            _ => 0.0,
        }
    }
}

/// Output rows per task.
pub(super) fn rows_per_task(g: &ConvGeometry, n: usize) -> usize {
    rows_per_task_at_most(g, n, 16)
}

/// Output rows per task, at most `max`: at least ~8 tasks per thread for balance, and a strip
/// that stays in L2.
pub(super) fn rows_per_task_at_most(g: &ConvGeometry, n: usize, max: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let want_blocks = (8 * threads).div_ceil(n.max(1));
    g.h_out.div_ceil(want_blocks).clamp(1, max)
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
    assert!(applies(g));
    assert!(finish.is_none() || matches!(start, OutputStart::Bias(_)));
    let isa = detect_isa();
    let packed = pack_weights(weight, g, CO_BLOCK);
    let in_len = g.c_in * g.h * g.w;
    let rows_per_task = rows_per_task(g, n);
    let row_blocks = g.h_out.div_ceil(rows_per_task);
    // Each task writes only the output rows of its own (sample, row block).
    let shared = SharedOut(out.as_mut_ptr());
    (0..n * row_blocks).into_par_iter().for_each(|task| {
        let (b, block) = (task / row_blocks, task % row_blocks);
        let rows = block * rows_per_task..((block + 1) * rows_per_task).min(g.h_out);
        with_scratch(FlatStrip::len(g, rows.len()), 0, |data, _| {
            let inp = &inp[b * in_len..][..in_len];
            let strip = if is_unshuffle(g) {
                FlatStrip::fill_unshuffled(data, inp, g, rows.clone())
            } else {
                FlatStrip::fill(data, inp, g, rows.clone())
            };
            let job = Task {
                out: shared,
                start,
                g,
                b,
                rows,
                strip: &strip,
                finish,
            };
            // SAFETY: each variant runs only on a CPU with its features (`applies` excludes the
            // portable case), and each task writes only its own output rows.
            match isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => unsafe { task_avx512(&job, &packed) },
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => unsafe { task_avx2(&job, &packed) },
                Isa::Portable => unreachable!("the implicit-GEMM path needs AVX2 or AVX-512"),
            }
        });
    });
}

/// AVX-512: 8 output channels × 3 vectors of 16 flat pixels = 24 accumulators.
///
/// # Safety
/// AVX-512F must be available; the ownership rule of [`forward`] holds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn task_avx512(job: &Task, packed: &[f32]) {
    use std::arch::x86_64::*;
    const V: usize = 3;
    const L: usize = 16;
    let g = job.g;
    let offsets = job.tap_offsets();
    let span = job.rows.len() * job.strip.wp;
    let strip = job.strip.data.as_ptr();
    let mut sums = [0.0f32; V * L];
    for cb in 0..g.c_out.div_ceil(CO_BLOCK) {
        let weights = packed[cb * g.taps() * CO_BLOCK..][..g.taps() * CO_BLOCK].as_ptr();
        let co_count = CO_BLOCK.min(g.c_out - cb * CO_BLOCK);
        for p0 in (0..span).step_by(V * L) {
            let mut acc = [[_mm512_setzero_ps(); V]; CO_BLOCK];
            for co in 0..CO_BLOCK {
                let b = _mm512_set1_ps(job.bias(cb * CO_BLOCK + co));
                acc[co] = [b; V];
            }
            for (t, &offset) in offsets.iter().enumerate() {
                let src = strip.add(offset + p0);
                let x = [
                    _mm512_loadu_ps(src),
                    _mm512_loadu_ps(src.add(L)),
                    _mm512_loadu_ps(src.add(2 * L)),
                ];
                let w = weights.add(t * CO_BLOCK);
                for co in 0..CO_BLOCK {
                    let wv = _mm512_set1_ps(*w.add(co));
                    for v in 0..V {
                        acc[co][v] = _mm512_fmadd_ps(wv, x[v], acc[co][v]);
                    }
                }
            }
            let width = (span - p0).min(V * L);
            for co in 0..co_count {
                for v in 0..V {
                    _mm512_storeu_ps(sums.as_mut_ptr().add(v * L), acc[co][v]);
                }
                job.store(cb * CO_BLOCK + co, p0, &sums[..width]);
            }
        }
    }
}

/// AVX2: 4 output channels (half a packed block) × 3 vectors of 8 flat pixels = 12 accumulators.
///
/// # Safety
/// AVX2 and FMA must be available; the ownership rule of [`forward`] holds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn task_avx2(job: &Task, packed: &[f32]) {
    use std::arch::x86_64::*;
    const V: usize = 3;
    const L: usize = 8;
    const CO: usize = 4;
    let g = job.g;
    let offsets = job.tap_offsets();
    let span = job.rows.len() * job.strip.wp;
    let strip = job.strip.data.as_ptr();
    let mut sums = [0.0f32; V * L];
    for cb in 0..g.c_out.div_ceil(CO_BLOCK) {
        let weights = packed[cb * g.taps() * CO_BLOCK..][..g.taps() * CO_BLOCK].as_ptr();
        for half in 0..CO_BLOCK / CO {
            let co0 = cb * CO_BLOCK + half * CO;
            if co0 >= g.c_out {
                break;
            }
            let co_count = CO.min(g.c_out - co0);
            for p0 in (0..span).step_by(V * L) {
                let mut acc = [[_mm256_setzero_ps(); V]; CO];
                for co in 0..CO {
                    acc[co] = [_mm256_set1_ps(job.bias(co0 + co)); V];
                }
                for (t, &offset) in offsets.iter().enumerate() {
                    let src = strip.add(offset + p0);
                    let x = [
                        _mm256_loadu_ps(src),
                        _mm256_loadu_ps(src.add(L)),
                        _mm256_loadu_ps(src.add(2 * L)),
                    ];
                    let w = weights.add(t * CO_BLOCK + half * CO);
                    for co in 0..CO {
                        let wv = _mm256_set1_ps(*w.add(co));
                        for v in 0..V {
                            acc[co][v] = _mm256_fmadd_ps(wv, x[v], acc[co][v]);
                        }
                    }
                }
                let width = (span - p0).min(V * L);
                for co in 0..co_count {
                    for v in 0..V {
                        _mm256_storeu_ps(sums.as_mut_ptr().add(v * L), acc[co][v]);
                    }
                    job.store(co0 + co, p0, &sums[..width]);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The weight gradient over the same flattened planes: `d_weight[co, ci, kh, kw] = Σ_p
// d_out[co, p] · x[ci, p + kh·wp + kw]`, with the output gradient laid out `wp` wide too and
// zero in the columns past `w_out`, so that those contribute nothing. One pass over each task's
// input rows per block of 8 output channels, no im2col matrix.

/// Whether this kernel computes the weight gradient of `g` (on this CPU).
pub(crate) fn weight_grad_applies(g: &ConvGeometry) -> bool {
    g.stride == 1
        && (2..=3).contains(&g.k)
        && g.pad < g.k
        && g.c_out.min(g.c_in) > super::direct::MAX_CHANNELS
        && !matches!(detect_isa(), Isa::Portable)
        && std::env::var(IMPLICIT_VAR).map_or(true, |v| v != "0")
}

/// Output rows per weight-gradient task: a block of 8 channels' gradient rows (`8 · rows · wp`
/// values) stays within ~24 KiB of L1 while the input rows stream by. From the geometry alone,
/// so that the order of the float sums never depends on the thread count.
fn weight_rows_per_task(g: &ConvGeometry) -> usize {
    let wp = g.w + 2 * g.pad;
    (768 / wp).clamp(1, 32).min(g.h_out.max(1))
}

/// The output-gradient rows of one task, `wp` wide with zeros past `w_out`, channels padded to
/// a whole block of 8 and each channel's run to a whole number of 16-lane vectors.
struct FlatGrad<'a> {
    data: &'a [f32],
    /// Values per channel (a multiple of 16).
    run: usize,
}

impl<'a> FlatGrad<'a> {
    fn run_len(g: &ConvGeometry, rows: usize) -> usize {
        (rows * (g.w + 2 * g.pad)).div_ceil(16) * 16
    }

    fn len(g: &ConvGeometry, rows: usize) -> usize {
        g.c_out.div_ceil(CO_BLOCK) * CO_BLOCK * Self::run_len(g, rows)
    }

    /// Fills `data` (of [`FlatGrad::len`] values), writing each value once.
    fn fill(
        data: &'a mut [f32],
        d_out: &[f32],
        g: &ConvGeometry,
        rows: std::ops::Range<usize>,
    ) -> Self {
        let run = Self::run_len(g, rows.len());
        fill_grad_rows(data, d_out, g, rows, g.w + 2 * g.pad, run, |row, src| {
            row.copy_from_slice(src)
        });
        Self { data, run }
    }
}

/// Per output channel `run` values of `data`: output rows `rows` of `d_out` (one sample) at `r ·
/// wp`, written by `copy(row, src)` (w_out values), zeros past `w_out`, past the last row and
/// for the channels past `c_out` (a block's padding); each value written once.
pub(super) fn fill_grad_rows<T: Copy + Default>(
    data: &mut [T],
    d_out: &[f32],
    g: &ConvGeometry,
    rows: std::ops::Range<usize>,
    wp: usize,
    run: usize,
    copy: impl Fn(&mut [T], &[f32]),
) {
    let out_plane = g.h_out * g.w_out;
    for (co, channel) in data.chunks_exact_mut(run).enumerate() {
        if co >= g.c_out {
            channel.fill(T::default());
            continue;
        }
        let (body, slack) = channel.split_at_mut(rows.len() * wp);
        slack.fill(T::default());
        for (row, oh) in body.chunks_exact_mut(wp).zip(rows.clone()) {
            copy(
                &mut row[..g.w_out],
                &d_out[co * out_plane + oh * g.w_out..][..g.w_out],
            );
            row[g.w_out..].fill(T::default());
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
    let rows_per_task = weight_rows_per_task(g);
    let row_blocks = g.h_out.div_ceil(rows_per_task);
    let (in_len, out_len) = (g.c_in * g.h * g.w, g.c_out * g.h_out * g.w_out);
    let partial = crate::ops::ordered_sum(n * row_blocks, g.c_out * g.taps(), |acc, task| {
        let (b, block) = (task / row_blocks, task % row_blocks);
        let rows = block * rows_per_task..((block + 1) * rows_per_task).min(g.h_out);
        let (strip_len, grad_len) = (FlatStrip::len(g, rows.len()), FlatGrad::len(g, rows.len()));
        with_scratch(strip_len, grad_len, |strip, grad| {
            let strip = FlatStrip::fill(strip, &inp[b * in_len..][..in_len], g, rows.clone());
            let grad = FlatGrad::fill(grad, &d_out[b * out_len..][..out_len], g, rows);
            // SAFETY: each variant runs only on a CPU with its features (`weight_grad_applies`
            // excludes the portable case); the kernels read inside the strip and the gradient rows
            // (their slack covers the last vector) and write inside `acc`.
            match (isa, g.k) {
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx512, 2) => unsafe { weight_avx512::<2>(g, &strip, &grad, acc) },
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx512, _) => unsafe { weight_avx512::<3>(g, &strip, &grad, acc) },
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx2, 2) => unsafe { weight_avx2::<2>(g, &strip, &grad, acc) },
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx2, _) => unsafe { weight_avx2::<3>(g, &strip, &grad, acc) },
                (Isa::Portable, _) => unreachable!("the implicit-GEMM path needs AVX2 or AVX-512"),
            }
        });
    });
    if let Some(partial) = partial {
        d_weight.iter_mut().zip(&partial).for_each(|(d, p)| *d += p);
    }
}

/// AVX-512: per (block of 8 output channels, input channel, kernel row), 8 × K accumulators
/// of 16 lanes over the task's flat pixels; each vector step loads 8 gradient vectors and K
/// shifted input vectors for 8·K fused multiply-adds.
///
/// # Safety
/// AVX-512F must be available; `strip` and `grad` are this task's (see `backward_weight`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn weight_avx512<const K: usize>(
    g: &ConvGeometry,
    strip: &FlatStrip,
    grad: &FlatGrad,
    acc_weight: &mut [f32],
) {
    use std::arch::x86_64::*;
    const L: usize = 16;
    debug_assert_eq!(g.k, K);
    let (x, d) = (strip.data.as_ptr(), grad.data.as_ptr());
    for cb in 0..g.c_out.div_ceil(CO_BLOCK) {
        let co_count = CO_BLOCK.min(g.c_out - cb * CO_BLOCK);
        for ci in 0..g.c_in {
            for kh in 0..K {
                let row = x.add(ci * strip.plane + kh * strip.wp);
                let mut acc = [[_mm512_setzero_ps(); K]; CO_BLOCK];
                for p in (0..grad.run).step_by(L) {
                    let mut xv = [_mm512_setzero_ps(); K];
                    for kw in 0..K {
                        xv[kw] = _mm512_loadu_ps(row.add(p + kw));
                    }
                    for co in 0..CO_BLOCK {
                        let dv = _mm512_loadu_ps(d.add((cb * CO_BLOCK + co) * grad.run + p));
                        for kw in 0..K {
                            acc[co][kw] = _mm512_fmadd_ps(dv, xv[kw], acc[co][kw]);
                        }
                    }
                }
                for co in 0..co_count {
                    let at = (cb * CO_BLOCK + co) * g.taps() + (ci * K + kh) * K;
                    for kw in 0..K {
                        acc_weight[at + kw] += _mm512_reduce_add_ps(acc[co][kw]);
                    }
                }
            }
        }
    }
}

/// AVX2: as the AVX-512 kernel with half a channel block (4 × K accumulators of 8 lanes).
///
/// # Safety
/// AVX2 and FMA must be available; `strip` and `grad` are this task's.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn weight_avx2<const K: usize>(
    g: &ConvGeometry,
    strip: &FlatStrip,
    grad: &FlatGrad,
    acc_weight: &mut [f32],
) {
    use std::arch::x86_64::*;
    const L: usize = 8;
    const CO: usize = 4;
    debug_assert_eq!(g.k, K);
    let (x, d) = (strip.data.as_ptr(), grad.data.as_ptr());
    for c0 in (0..g.c_out).step_by(CO) {
        let co_count = CO.min(g.c_out - c0);
        for ci in 0..g.c_in {
            for kh in 0..K {
                let row = x.add(ci * strip.plane + kh * strip.wp);
                let mut acc = [[_mm256_setzero_ps(); K]; CO];
                for p in (0..grad.run).step_by(L) {
                    let mut xv = [_mm256_setzero_ps(); K];
                    for kw in 0..K {
                        xv[kw] = _mm256_loadu_ps(row.add(p + kw));
                    }
                    for co in 0..CO {
                        let dv = _mm256_loadu_ps(d.add((c0 + co) * grad.run + p));
                        for kw in 0..K {
                            acc[co][kw] = _mm256_fmadd_ps(dv, xv[kw], acc[co][kw]);
                        }
                    }
                }
                for co in 0..co_count {
                    let at = (c0 + co) * g.taps() + (ci * K + kh) * K;
                    for kw in 0..K {
                        let mut lanes = [0.0f32; L];
                        _mm256_storeu_ps(lanes.as_mut_ptr(), acc[co][kw]);
                        acc_weight[at + kw] += lanes.iter().sum::<f32>();
                    }
                }
            }
        }
    }
}
