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

use rayon::prelude::*;

use super::direct::{detect_isa, pack_weights, Isa};
use super::{ConvGeometry, OutputStart};

/// Output channels per packed weight block (both ISAs).
const CO_BLOCK: usize = 8;
/// Flat pixels per register block: 3 AVX-512 vectors (AVX2 uses the first 24).
const PX_BLOCK: usize = 48;
/// Environment variable that turns this path off (`0`), for comparisons against im2col + GEMM.
pub const IMPLICIT_VAR: &str = "MTOSI_CONV_IMPLICIT";

/// Whether this kernel computes the forward of `g` (on this CPU).
pub(crate) fn applies(g: &ConvGeometry) -> bool {
    g.stride == 1
        && g.k >= 2
        && g.pad < g.k
        && g.c_out > super::direct::MAX_CHANNELS
        && !matches!(detect_isa(), Isa::Portable)
        && std::env::var(IMPLICIT_VAR).map_or(true, |v| v != "0")
}

/// A raw pointer to the output tensor; tasks write disjoint (sample, row block) parts.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every task writes only the output rows of its own (sample, row block); see `forward`.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// Input rows of one task, zero-padded and flattened: per input channel a plane of `plane`
/// values holding rows of `wp` columns (input column x at `pad + x`), then slack zeros so that
/// the last pixel block may read past the last row.
struct FlatStrip {
    data: Vec<f32>,
    wp: usize,
    plane: usize,
}

impl FlatStrip {
    fn new(inp: &[f32], g: &ConvGeometry, out_rows: std::ops::Range<usize>) -> Self {
        let wp = g.w + 2 * g.pad;
        let rows = out_rows.len() + g.k - 1;
        let plane = rows * wp + PX_BLOCK + g.k;
        let mut data = vec![0.0f32; g.c_in * plane];
        for ci in 0..g.c_in {
            for r in 0..rows {
                // Strip row r is input row out_rows.start + r − pad.
                let Some(ih) = (out_rows.start + r).checked_sub(g.pad).filter(|&i| i < g.h) else {
                    continue;
                };
                let src = &inp[(ci * g.h + ih) * g.w..][..g.w];
                data[ci * plane + r * wp + g.pad..][..g.w].copy_from_slice(src);
            }
        }
        Self { data, wp, plane }
    }
}

/// One task: output rows `rows` of sample `b`, all output channels.
struct Task<'a> {
    out: SharedOut,
    packed: &'a [f32],
    start: OutputStart<'a>,
    g: &'a ConvGeometry,
    b: usize,
    rows: std::ops::Range<usize>,
    strip: &'a FlatStrip,
}

impl Task<'_> {
    /// Offsets into the strip of each tap (ci, kh, kw), in the packed weights' order.
    fn tap_offsets(&self) -> Vec<usize> {
        let (g, s) = (self.g, self.strip);
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
    unsafe fn store(&self, co: usize, p0: usize, sums: &[f32]) {
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
            if matches!(self.start, OutputStart::Accumulate) {
                dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
            } else {
                dst.copy_from_slice(src);
            }
        }
    }

    fn bias(&self, co: usize) -> f32 {
        match self.start {
            OutputStart::Bias(Some(bias)) if co < self.g.c_out => bias[co],
            _ => 0.0,
        }
    }
}

/// Output rows per task.
fn rows_per_task(g: &ConvGeometry, n: usize) -> usize {
    // At least ~8 tasks per thread for balance, at most 16 rows (the strip stays in L2).
    let threads = rayon::current_num_threads().max(1);
    let want_blocks = (8 * threads).div_ceil(n.max(1));
    g.h_out.div_ceil(want_blocks).clamp(1, 16)
}

/// Forward, stride 1: `out` (n, c_out, h_out, w_out) = conv(inp, weight) from `start`.
pub(crate) fn forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    start: OutputStart,
    n: usize,
    g: &ConvGeometry,
) {
    assert!(applies(g));
    let isa = detect_isa();
    let packed = pack_weights(weight, g, CO_BLOCK);
    let in_len = g.c_in * g.h * g.w;
    let rows_per_task = rows_per_task(g, n);
    let row_blocks = g.h_out.div_ceil(rows_per_task);
    let shared = SharedOut(out.as_mut_ptr());
    (0..n * row_blocks).into_par_iter().for_each(|task| {
        let (b, block) = (task / row_blocks, task % row_blocks);
        let rows = block * rows_per_task..((block + 1) * rows_per_task).min(g.h_out);
        let strip = FlatStrip::new(&inp[b * in_len..][..in_len], g, rows.clone());
        let job = Task {
            out: shared,
            packed: &packed,
            start,
            g,
            b,
            rows,
            strip: &strip,
        };
        // SAFETY: each variant runs only on a CPU with its features (`applies` excludes the
        // portable case), and each task writes only its own output rows.
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { task_avx512(&job) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { task_avx2(&job) },
            Isa::Portable => unreachable!("the implicit-GEMM path needs AVX2 or AVX-512"),
        }
    });
}

/// AVX-512: 8 output channels × 3 vectors of 16 flat pixels = 24 accumulators.
///
/// # Safety
/// AVX-512F must be available; the ownership rule of [`forward`] holds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn task_avx512(job: &Task) {
    use std::arch::x86_64::*;
    const V: usize = 3;
    const L: usize = 16;
    let g = job.g;
    let offsets = job.tap_offsets();
    let span = job.rows.len() * job.strip.wp;
    let strip = job.strip.data.as_ptr();
    let mut sums = [0.0f32; V * L];
    for cb in 0..g.c_out.div_ceil(CO_BLOCK) {
        let weights = job.packed[cb * g.taps() * CO_BLOCK..][..g.taps() * CO_BLOCK].as_ptr();
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
unsafe fn task_avx2(job: &Task) {
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
        let weights = job.packed[cb * g.taps() * CO_BLOCK..][..g.taps() * CO_BLOCK].as_ptr();
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
