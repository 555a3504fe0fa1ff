//! Opt-in bf16 products for the implicit-GEMM convolutions (`MTOSI_CONV_BF16=1` or
//! [`set_conv_precision`]): inputs and weights (or output gradients) rounded to bfloat16 (round
//! to nearest even), products accumulated in float32 by `vdpbf16ps`, float32 outputs. The
//! forward covers the stride-1 layers with at least 8 channels on each side (the implicit
//! kernel's and the direct kernel's 16- and 8-channel ones) and the 2×2 stride-2 downsampling,
//! and through the adjoint their data gradients and the decoder's stride-1 transposed
//! convolutions. The weight gradient ([`backward_weight`]) covers the stride-1 2×2 and 3×3
//! layers and the 2×2 downsampling with at least 8 output channels, whatever c_in (it pairs
//! pixels, not channels), and through the adjoint the transposed convolutions' weight
//! gradients. The 2×2 upsampling's forward and data gradient, the 1×1 layers and the forwards
//! with fewer than 8 channels on a side (1 → 16: pairing its one channel with zeros made it
//! 1.5× slower) stay float32. Needs AVX512-BF16
//! (Zen 4, Sapphire Rapids): elsewhere the variable does nothing and the float32 path runs,
//! and [`set_conv_precision`] refuses. Where both are on it takes the layers it covers from
//! Winograd (`MTOSI_CONV_WINOGRAD`), which keeps the rest. The same switch runs the LSTM
//! forward's recurrent products `W_hh·h` in bf16 (`ops::lstm::lstm_forward_bf16`).
//!
//! `vdpbf16ps` adds the products of two bf16 pairs into each float32 lane, so the strip pairs
//! input channels: per channel pair (2j, 2j + 1) one plane of 32-bit words holding
//! (x[2j][q], x[2j+1][q]) at flat position q (an odd last channel pairs with zeros), and the
//! weights are packed once per call as the matching pairs. The register block is the float32
//! kernel's: 8 output channels × 48 flat pixels, each tap pair one load per 16 pixels and one
//! broadcast per channel, for twice the multiply-adds per instruction.
//!
//! Accuracy: bf16 keeps 8 significant bits, a relative rounding error of at most 2⁻⁹ per
//! operand, so each product is off by up to ~2⁻⁸ of |x·w| and a sum by that of Σ|x·w| at worst
//! (independent roundings mostly cancel); `tests/conv2d_bf16.rs` holds the kernel to 1e-5 of
//! Σ|x·w| against float32 sums of the rounded operands, and to 1e-2 against the unrounded ones.
// Register blocks are arrays indexed by loop counters that the compiler unrolls.
#![allow(clippy::needless_range_loop)]

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use super::direct::{detect_isa, Isa};
use super::implicit::{
    fill_grad_rows, fill_strip_planes, is_unshuffle, rows_per_task_at_most, with_scratch,
    FlatStrip, Task, CO_BLOCK, PX_BLOCK,
};
use super::{ConvFinish, ConvGeometry, OutputStart};
use crate::ops::SharedOut;

/// Environment variable that turns the bf16 products on (`1`); off by default.
pub const BF16_VAR: &str = "MTOSI_CONV_BF16";

/// Most output rows per forward task: a bf16 strip is half the float32 one's size, so twice the
/// implicit kernel's 16 rows still stay in L2, and the k − 1 halo rows each task converts again
/// are half as many (the 1088-frame evaluation window: 0.055–0.057 s against 0.056–0.063 s).
const FORWARD_ROWS: usize = 32;

/// Fewest channels on either side: one block of 8 output channels, 4 input channel pairs.
const MIN_CHANNELS: usize = 8;

/// Set by [`set_conv_precision`] (the CLI's `--precision`), or-ed with [`BF16_VAR`].
static REQUESTED: AtomicBool = AtomicBool::new(false);

/// The precision of the convolution products on the CPU, and of the LSTM forward's recurrent
/// products (`W_hh·h`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ConvPrecision {
    /// float32 products and sums (the default).
    #[default]
    Fp32,
    /// bf16 inputs and weights, float32 sums, where the layer is covered (see the module doc).
    Bf16,
}

/// The CPU lacks the instructions the bf16 products need.
#[derive(Debug, thiserror::Error)]
#[error(
    "bf16 convolution products need a CPU with AVX512-BF16 (vdpbf16ps: AMD Zen 4 or later, Intel \
     Sapphire Rapids or later); this one has {0}"
)]
pub struct Bf16Unsupported(&'static str);

/// Whether this CPU (and `MTOSI_FORCE_ISA`, which narrows it) allows the bf16 kernel.
pub fn bf16_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        matches!(detect_isa(), Isa::Avx512)
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `Ok` where this CPU (and `MTOSI_FORCE_ISA`) allows the bf16 products; else what it has.
pub fn check_bf16_supported() -> Result<(), Bf16Unsupported> {
    if bf16_supported() {
        return Ok(());
    }
    Err(Bf16Unsupported(match detect_isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => "AVX-512 without BF16",
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => "AVX2 at most",
        Isa::Portable => "no AVX2",
    }))
}

/// Sets the precision of the CPU convolution (and LSTM recurrent) products for the whole process. `Fp32` clears
/// the request (`MTOSI_CONV_BF16=1` still turns bf16 on); `Bf16` fails on a CPU without
/// AVX512-BF16 rather than falling back silently.
pub fn set_conv_precision(precision: ConvPrecision) -> Result<(), Bf16Unsupported> {
    let bf16 = precision == ConvPrecision::Bf16;
    if bf16 {
        check_bf16_supported()?;
    }
    REQUESTED.store(bf16, Ordering::Relaxed);
    Ok(())
}

/// Whether the bf16 products are on (requested and supported).
pub fn bf16_enabled() -> bool {
    (REQUESTED.load(Ordering::Relaxed) || std::env::var(BF16_VAR).is_ok_and(|v| v == "1"))
        && bf16_supported()
}

/// Whether this kernel computes the forward of `g`: the implicit kernel's geometries (stride 1,
/// or the 2×2 stride-2 downsampling) with at least 8 channels on each side, when on.
pub(crate) fn applies(g: &ConvGeometry) -> bool {
    let stride1 = g.stride == 1 && g.k >= 2 && g.pad < g.k;
    (stride1 || is_unshuffle(g)) && g.c_out.min(g.c_in) >= MIN_CHANNELS && bf16_enabled()
}

/// `x` rounded to bf16 (to nearest, ties to even), as its 16 bits; NaN stays a quiet NaN.
pub(crate) fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// The pair word `vdpbf16ps` reads: `low` rounded to bf16 in the low half, `high` (zero when
/// absent: an odd count's padding) in the high half.
pub(crate) fn bf16_pair(low: f32, high: Option<f32>) -> u32 {
    bf16_bits(low) as u32 | (high.map_or(0, |h| bf16_bits(h) as u32) << 16)
}

/// Planes of the float32 strip that are summed together: `c_in` channel planes for stride 1,
/// the `4·c_in` tap planes of the pixel unshuffle (paired as the taps (ci, kh, 0), (ci, kh, 1)).
fn fp32_planes(g: &ConvGeometry) -> usize {
    if is_unshuffle(g) {
        g.taps()
    } else {
        g.c_in
    }
}

/// The tap pairs in the order of the packed weights: per pair its offset into the pair strip
/// (in words) and the two float32 taps (ci, kh, kw) it holds, the second absent past c_in.
fn tap_pairs(g: &ConvGeometry, wp: usize, plane: usize) -> Vec<(usize, usize, Option<usize>)> {
    if is_unshuffle(g) {
        return (0..g.taps() / 2)
            .map(|m| (m * plane, 2 * m, Some(2 * m + 1)))
            .collect();
    }
    let tap = |ci: usize, kh: usize, kw: usize| (ci * g.k + kh) * g.k + kw;
    let mut pairs = Vec::with_capacity(g.c_in.div_ceil(2) * g.k * g.k);
    for j in 0..g.c_in.div_ceil(2) {
        for kh in 0..g.k {
            for kw in 0..g.k {
                let second = (2 * j + 1 < g.c_in).then(|| tap(2 * j + 1, kh, kw));
                pairs.push((j * plane + kh * wp + kw, tap(2 * j, kh, kw), second));
            }
        }
    }
    pairs
}

/// Weights as bf16 pairs: per block of 8 output channels, per tap pair, 8 words
/// (w[co][first] low, w[co][second] high), zero past c_out and for an absent second tap.
fn pack_pair_weights(
    weight: &[f32],
    g: &ConvGeometry,
    pairs: &[(usize, usize, Option<usize>)],
) -> Vec<u32> {
    let blocks = g.c_out.div_ceil(CO_BLOCK);
    let mut packed = vec![0u32; blocks * pairs.len() * CO_BLOCK];
    for (i, word) in packed.iter_mut().enumerate() {
        let co = (i / (pairs.len() * CO_BLOCK)) * CO_BLOCK + i % CO_BLOCK;
        if co >= g.c_out {
            continue;
        }
        let (_, first, second) = pairs[(i / CO_BLOCK) % pairs.len()];
        let w = &weight[co * g.taps()..][..g.taps()];
        *word = bf16_pair(w[first], second.map(|t| w[t]));
    }
    packed
}

/// Forward: `out` (n, c_out, h_out, w_out) = conv(inp, weight) from `start`, bf16 products.
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
    let in_len = g.c_in * g.h * g.w;
    let rows_per_task = rows_per_task_at_most(g, n, FORWARD_ROWS);
    let row_blocks = g.h_out.div_ceil(rows_per_task);
    let plane_of = |rows: usize| FlatStrip::len(g, rows) / fp32_planes(g);
    let wp = if is_unshuffle(g) {
        g.w_out
    } else {
        g.w + 2 * g.pad
    };
    // The taps of each pair do not depend on the strip's layout (only their offsets do).
    let amx = super::amx::applies();
    let (packed, tiles) = if amx {
        (Vec::new(), Some(super::amx::AmxWeights::pack(weight, g)))
    } else {
        let pairs = tap_pairs(g, wp, plane_of(rows_per_task));
        (pack_pair_weights(weight, g, &pairs), None)
    };
    // Each task writes only the output rows of its own (sample, row block).
    let shared = SharedOut(out.as_mut_ptr());
    (0..n * row_blocks).into_par_iter().for_each(|task| {
        let (b, block) = (task / row_blocks, task % row_blocks);
        let rows = block * rows_per_task..((block + 1) * rows_per_task).min(g.h_out);
        let planes = fp32_planes(g);
        let plane = plane_of(rows.len());
        // Both convert the input rows straight into the pair strip.
        with_scratch(0, planes.div_ceil(2) * plane, |_, pair_data| {
            let inp = &inp[b * in_len..][..in_len];
            // SAFETY: `applies` admits only CPUs with AVX-512F, BW and BF16; the pair strip has
            // `planes.div_ceil(2)` planes of the float32 strip's length, whose slack covers the
            // last pixel block's reads; each task writes only its own output rows.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                if is_unshuffle(g) {
                    fill_unshuffled_pairs(pair_data, inp, g, rows.clone(), plane);
                } else {
                    fill_pairs(pair_data, inp, g, rows.clone(), plane);
                }
                let strip = FlatStrip {
                    data: pair_data,
                    wp,
                    plane,
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
                if let Some(tiles) = &tiles {
                    super::amx::task(&job, &super::amx::group_offsets(g, wp), tiles);
                } else {
                    let offsets: Vec<usize> = tap_pairs(g, wp, plane).iter().map(|p| p.0).collect();
                    task_avx512_bf16(&job, &offsets, &packed);
                }
            }
        });
    });
}

/// Writes `len` words at `dst`: word q holds bf16(a[q]) low and bf16(b[q]) high (zero without
/// `b`), rounded to nearest even.
///
/// # Safety
/// AVX-512F, BW and BF16 must be available; `a` and `b` hold `len` values, `dst` `len` words.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(crate) unsafe fn convert_pairs(
    dst: *mut i32,
    a: *const f32,
    b: Option<*const f32>,
    len: usize,
) {
    use std::arch::x86_64::*;
    // cvtne2ps_pbh puts its second operand's 16 values in the low half: interleave the halves.
    let order: [i16; 32] = std::array::from_fn(|i| (i / 2 + 16 * (i % 2)) as i16);
    let order = _mm512_loadu_epi16(order.as_ptr());
    for q in (0..len).step_by(16) {
        let mask: __mmask16 = if len - q >= 16 {
            0xffff
        } else {
            (1u16 << (len - q)) - 1
        };
        let low = _mm512_maskz_loadu_ps(mask, a.add(q));
        let high = b.map_or(_mm512_setzero_ps(), |b| {
            _mm512_maskz_loadu_ps(mask, b.add(q))
        });
        let halves = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(high, low));
        _mm512_mask_storeu_epi32(dst.add(q), mask, _mm512_permutexvar_epi16(order, halves));
    }
}

/// The 2×2 stride-2 downsampling: the pair strip of output rows `out_rows` straight from the
/// input. Tap pair (ci, kh, 0), (ci, kh, 1) of output pixel (oh, ow) reads input columns 2·ow
/// and 2·ow + 1 of row 2·oh + kh, which are already a pair: pair plane 2·ci + kh of output row
/// j is that input row rounded to bf16 in order, then slack zeros: the words of
/// [`FlatStrip::fill_unshuffled`]'s float32 tap planes (ci, kh, 0) and (ci, kh, 1) paired, with
/// no float32 strip in between.
///
/// # Safety
/// AVX-512F, BW and BF16 must be available; `pairs` holds `2·c_in` planes of `plane`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn fill_unshuffled_pairs(
    pairs: &mut [f32],
    inp: &[f32],
    g: &ConvGeometry,
    out_rows: std::ops::Range<usize>,
    plane: usize,
) {
    let span = out_rows.len() * g.w_out;
    assert!(pairs.len() == 2 * g.c_in * plane && plane >= span);
    for (m, plane_data) in pairs.chunks_exact_mut(plane).enumerate() {
        let (ci, kh) = (m / 2, m % 2);
        let (body, slack) = plane_data.split_at_mut(span);
        slack.fill(0.0);
        for (row, oh) in body.chunks_exact_mut(g.w_out).zip(out_rows.clone()) {
            let src = &inp[(ci * g.h + 2 * oh + kh) * g.w..][..2 * g.w_out];
            to_bf16(row.as_mut_ptr() as *mut u16, src.as_ptr(), 2 * g.w_out);
        }
    }
}

/// Stride 1: the pair strip of output rows `out_rows` straight from the input, laid out as
/// [`FlatStrip::fill`] lays out the float32 strip (rows `wp` wide, input column x at pad + x,
/// zeros around and after), channel pair j in plane j.
///
/// # Safety
/// AVX-512F, BW and BF16 must be available; `pairs` holds `c_in.div_ceil(2)` planes of `plane`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn fill_pairs(
    pairs: &mut [f32],
    inp: &[f32],
    g: &ConvGeometry,
    out_rows: std::ops::Range<usize>,
    plane: usize,
) {
    assert!(pairs.len() == g.c_in.div_ceil(2) * plane);
    fill_strip_planes(pairs, plane, g, out_rows, |j, ih, interior| {
        let first = inp[(2 * j * g.h + ih) * g.w..][..g.w].as_ptr();
        let second =
            (2 * j + 1 < g.c_in).then(|| inp[((2 * j + 1) * g.h + ih) * g.w..][..g.w].as_ptr());
        // SAFETY: the caller's AVX-512F, BW and BF16; `interior` holds the row's g.w words.
        unsafe { convert_pairs(interior.as_mut_ptr() as *mut i32, first, second, g.w) };
    });
}

/// 8 output channels × 3 vectors of 16 flat pixels = 24 float32 accumulators; per tap pair one
/// load of 16 bf16 pairs per vector and one broadcast weight pair per channel.
///
/// # Safety
/// AVX-512F and BF16 must be available; `job.strip` holds bf16 pairs and `offsets` its tap-pair
/// offsets, in the order of `packed`; the ownership rule of [`forward`] holds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn task_avx512_bf16(job: &Task, offsets: &[usize], packed: &[u32]) {
    use std::arch::x86_64::*;
    const V: usize = 3;
    const L: usize = 16;
    let g = job.g;
    let span = job.rows.len() * job.strip.wp;
    let strip = job.strip.data.as_ptr() as *const i32;
    let mut sums = [0.0f32; V * L];
    // Adds the stored values to the output's: an accumulating start, or a finish's residual.
    let accumulate =
        matches!(job.start, OutputStart::Accumulate) || job.finish.is_some_and(|f| f.residual());
    let block_len = offsets.len() * CO_BLOCK;
    // Filled afresh per pixel block; zeroed once per task (per block it was a 1 KiB memset).
    let mut segments = [(0, 0, 0); PX_BLOCK];
    for cb in 0..g.c_out.div_ceil(CO_BLOCK) {
        let weights = packed[cb * block_len..][..block_len].as_ptr();
        let co_count = CO_BLOCK.min(g.c_out - cb * CO_BLOCK);
        for p0 in (0..span).step_by(V * L) {
            let mut acc = [[_mm512_setzero_ps(); V]; CO_BLOCK];
            for co in 0..CO_BLOCK {
                acc[co] = [_mm512_set1_ps(job.bias(cb * CO_BLOCK + co)); V];
            }
            for (t, &offset) in offsets.iter().enumerate() {
                let src = strip.add(offset + p0);
                let x: [__m512bh; V] = [
                    std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_epi32(src)),
                    std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_epi32(src.add(L))),
                    std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_epi32(src.add(2 * L))),
                ];
                let w = weights.add(t * CO_BLOCK);
                for co in 0..CO_BLOCK {
                    let wv: __m512bh = std::mem::transmute(_mm512_set1_epi32(*w.add(co) as i32));
                    for v in 0..V {
                        acc[co][v] = _mm512_dpbf16_ps(acc[co][v], x[v], wv);
                    }
                }
            }
            let width = (span - p0).min(V * L);
            let count = row_segments(&mut segments, job, p0, width);
            for co in 0..co_count {
                for v in 0..V {
                    _mm512_storeu_ps(sums.as_mut_ptr().add(v * L), acc[co][v]);
                }
                let channel = cb * CO_BLOCK + co;
                store_channel(
                    job,
                    channel,
                    sums.as_ptr(),
                    None,
                    &segments[..count],
                    accumulate,
                );
            }
        }
    }
}

/// Stores one output channel's block sums `row` (flat pixels p0.. of the task's strip, as
/// [`row_segments`] maps them) into the output: plus `bias` where given (a kernel whose sums
/// did not start from it), through the finish, added to the output where `accumulate`.
///
/// # Safety
/// AVX-512F must be available; `row` holds the block's widest segment end of values; the
/// forward's ownership rule holds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn store_channel(
    job: &Task,
    channel: usize,
    row: *const f32,
    bias: Option<f32>,
    segments: &[(usize, usize, usize)],
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    const L: usize = 16;
    let g = job.g;
    let out_plane = g.h_out * g.w_out;
    let plane = job.out.0.add((job.b * g.c_out + channel) * out_plane);
    for &(from, to, len) in segments {
        for i in (0..len).step_by(L) {
            let mask: __mmask16 = if len - i >= L {
                0xffff
            } else {
                (1u16 << (len - i)) - 1
            };
            let mut x = _mm512_maskz_loadu_ps(mask, row.add(from + i));
            if let Some(bias) = bias {
                x = _mm512_add_ps(x, _mm512_set1_ps(bias));
            }
            if let Some(finish) = job.finish {
                x = finish.value_avx512(channel, x);
            }
            let dst = plane.add(to + i);
            if accumulate {
                x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask, dst));
            }
            _mm512_mask_storeu_ps(dst, mask, x);
        }
    }
}

/// Where flat pixels `p0..p0 + width` of a task land in its sample's output plane: per row
/// segment inside `w_out`, its first pixel in the block, its first element in the plane and
/// its length (computed once per block, not per channel), into `segments`; returns how many.
pub(super) fn row_segments(
    segments: &mut [(usize, usize, usize); PX_BLOCK],
    job: &Task,
    p0: usize,
    width: usize,
) -> usize {
    let (g, wp) = (job.g, job.strip.wp);
    let mut count = 0;
    let mut r = p0 / wp;
    while r * wp < p0 + width && r < job.rows.len() {
        let lo = (r * wp).max(p0);
        let hi = (r * wp + g.w_out).min(p0 + width);
        if lo < hi {
            segments[count] = (
                lo - p0,
                (job.rows.start + r) * g.w_out + lo - r * wp,
                hi - lo,
            );
            count += 1;
        }
        r += 1;
    }
    count
}

// ---------------------------------------------------------------------------------------------
// The weight gradient with bf16 products: `d_weight[co, tap] = Σ_p d_out[co, p] · x[tap, p]` over
// the float32 strip's flat pixels, as `implicit::backward_weight` sums it, with both operands
// rounded to bf16 and `vdpbf16ps` adding pixel pairs (p, p + 1). A word of the bf16 gradient rows
// holds two consecutive pixels, and so does a word loaded from the bf16 strip at any element
// offset (an unaligned load), so every kernel column reads the one strip: no channel pairing,
// hence no channel minimum on the input side (the 1 → 16 layer is covered too).

/// Pixels per weight-gradient task, about: 8 channels' bf16 gradient rows (32 KiB) stay in L1
/// while the strip's rows stream by, and each task converts k − 1 halo rows per 11 rows of the
/// 176-wide planes instead of per 5. The bf16 B = 32 × 640 step on a 2-core Zen 5 (48 KiB
/// L1D), four interleaved pairs of runs: fastest 2.33–2.56 s (mean 2.44) at 2048, 2.38–2.62 s
/// (mean 2.48) at 1024; 4096 (2.43–2.63 s) loses again.
const WEIGHT_TASK_PIXELS: usize = 2048;
/// Pixels per `vdpbf16ps` vector: 16 lanes of pixel pairs.
const PAIR_VECTOR: usize = 32;

/// Whether the bf16 weight gradient computes `g`: stride 1 with a 2×2 or 3×3 kernel, or the 2×2
/// stride-2 downsampling, with at least 8 output channels, when on.
pub(crate) fn weight_grad_applies(g: &ConvGeometry) -> bool {
    let stride1 = g.stride == 1 && (2..=3).contains(&g.k) && g.pad < g.k;
    (stride1 || is_unshuffle(g)) && g.c_out >= MIN_CHANNELS && bf16_enabled()
}

/// Weight gradient with bf16 products: `d_weight` (c_out, c_in, k, k) += Σ d_out ⋆ inp over the
/// batch. Tasks are (sample, row block) with the row blocks fixed by the geometry, summed in a
/// fixed order ([`crate::ops::ordered_sum`]), so the result does not depend on the thread count.
pub(crate) fn backward_weight(
    d_weight: &mut [f32],
    d_out: &[f32],
    inp: &[f32],
    n: usize,
    g: &ConvGeometry,
) {
    assert!(weight_grad_applies(g));
    let unshuffle = is_unshuffle(g);
    // Flat pixel p of a task is output (row p / wp, column p % wp); columns past w_out are zero
    // in the gradient rows, so what the strip holds there adds nothing.
    let wp = if unshuffle { g.w_out } else { g.w + 2 * g.pad };
    let rows_per_task = (WEIGHT_TASK_PIXELS / wp).clamp(1, 64).min(g.h_out.max(1));
    let row_blocks = g.h_out.div_ceil(rows_per_task);
    let (in_len, out_len) = (g.c_in * g.h * g.w, g.c_out * g.h_out * g.w_out);
    // On AMX the gradient rows are padded to whole tiles of 16 channels and also transposed into
    // right-hand tiles.
    let amx = super::amx::applies();
    let channels = if amx {
        g.c_out.div_ceil(super::amx::WEIGHT_CHANNELS) * super::amx::WEIGHT_CHANNELS
    } else {
        g.c_out.div_ceil(CO_BLOCK) * CO_BLOCK
    };
    let partial = crate::ops::ordered_sum(n * row_blocks, g.c_out * g.taps(), |acc, task| {
        let (b, block) = (task / row_blocks, task % row_blocks);
        let rows = block * rows_per_task..((block + 1) * rows_per_task).min(g.h_out);
        let run = (rows.len() * wp).div_ceil(PAIR_VECTOR) * PAIR_VECTOR;
        let strip_len = FlatStrip::len(g, rows.len());
        // The bf16 strip and gradient rows share the second scratch buffer, as 16-bit halves;
        // only the unshuffle builds a float32 strip first (stride 1 converts the input rows
        // straight into the bf16 strip).
        // The gradient rows start at an even half, so that the transposed copy after them is
        // made of whole 32-bit words.
        let x16_len = strip_len.next_multiple_of(2);
        let halves = x16_len + channels * run * if amx { 2 } else { 1 };
        let fp32_len = if unshuffle { strip_len } else { 0 };
        with_scratch(fp32_len, halves.div_ceil(2), |data, words| {
            let inp = &inp[b * in_len..][..in_len];
            // SAFETY: a f32 buffer reinterpreted as twice as many u16 (smaller alignment, any bit
            // pattern valid), borrowed mutably for this closure only.
            let halves: &mut [u16] = unsafe {
                std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u16, words.len() * 2)
            };
            let (x16, rest) = halves.split_at_mut(x16_len);
            let x16 = &mut x16[..strip_len];
            let (d16, transposed) = rest.split_at_mut(channels * run);
            let d_out = &d_out[b * out_len..][..out_len];
            let plane = if unshuffle {
                let strip = FlatStrip::fill_unshuffled(data, inp, g, rows.clone());
                debug_assert_eq!(strip.data.len(), strip_len);
                // SAFETY: `weight_grad_applies` admits only CPUs with AVX-512F, BW and BF16;
                // both hold `strip_len` values.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    to_bf16(x16.as_mut_ptr(), strip.data.as_ptr(), strip_len)
                };
                strip.plane
            } else {
                // SAFETY: as above; `x16` holds the strip's `strip_len` values.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    fill_bf16(x16, inp, g, rows.clone())
                };
                FlatStrip::plane_len(g, rows.len())
            };
            // Per (input channel, kernel row): the first tap, and the strip offset of kernel
            // column 0; column kw is kw elements on (stride 1) or kw planes on (the unshuffle).
            let (groups, kw_step): (Vec<(usize, usize)>, usize) = if unshuffle {
                let groups = (0..g.c_in * 2).map(|t| (2 * t, 2 * t * plane));
                (groups.collect(), plane)
            } else {
                let groups = (0..g.c_in).flat_map(|ci| {
                    (0..g.k).map(move |kh| ((ci * g.k + kh) * g.k, ci * plane + kh * wp))
                });
                (groups.collect(), 1)
            };
            let weights = WeightTaskBf16 {
                g,
                x16,
                d16,
                run,
                groups: &groups,
                kw_step,
            };
            // SAFETY: `weight_grad_applies` admits only CPUs with AVX-512F, BW and BF16. Reads:
            // group offset + (k − 1)·kw_step + run stays inside the strip (its planes' slack,
            // PX_BLOCK + k ≥ PAIR_VECTOR + k values past the last row, covers the rounding of
            // `run`), and the gradient rows are `channels · run` long.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                fill_grad_rows(weights.d16, d_out, g, rows, wp, run, |row, src| {
                    to_bf16(row.as_mut_ptr(), src.as_ptr(), src.len())
                });
                if amx {
                    // SAFETY: `transposed` is `channels · run` halves from an even offset of a
                    // float32 buffer: whole, aligned 32-bit words.
                    let dt = std::slice::from_raw_parts_mut(
                        transposed.as_mut_ptr() as *mut u32,
                        channels * run / 2,
                    );
                    super::amx::transpose_grad_pairs(dt, weights.d16, channels, run);
                    let tiles = super::amx::weight_tap_tiles(g, plane, wp);
                    super::amx::weight_task(weights.x16, dt, run, g, &tiles, acc);
                } else {
                    match g.k {
                        2 => weight_task_bf16::<2>(&weights, acc),
                        _ => weight_task_bf16::<3>(&weights, acc),
                    }
                }
            }
        });
    });
    if let Some(partial) = partial {
        d_weight.iter_mut().zip(&partial).for_each(|(d, p)| *d += p);
    }
}

/// One weight-gradient task's operands in bf16.
struct WeightTaskBf16<'a> {
    g: &'a ConvGeometry,
    /// The float32 strip rounded to bf16, element for element.
    x16: &'a mut [u16],
    /// Per output channel (padded to a whole block of 8 with zeros) `run` gradient values: the
    /// task's rows `wp` wide, zero past `w_out` and past the last row.
    d16: &'a mut [u16],
    run: usize,
    groups: &'a [(usize, usize)],
    kw_step: usize,
}

/// Stride 1: the weight gradient's bf16 strip of output rows `out_rows` straight from the
/// input, element for element [`FlatStrip::fill`]'s float32 strip rounded to bf16 (rows `wp`
/// wide, input column x at pad + x, zeros around and after), with no float32 strip in between.
///
/// # Safety
/// AVX-512F, BW and BF16 must be available; `x16` holds [`FlatStrip::len`] values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn fill_bf16(
    x16: &mut [u16],
    inp: &[f32],
    g: &ConvGeometry,
    out_rows: std::ops::Range<usize>,
) {
    let plane = FlatStrip::plane_len(g, out_rows.len());
    assert!(x16.len() == g.c_in * plane);
    fill_strip_planes(x16, plane, g, out_rows, |ci, ih, interior| {
        let src = inp[(ci * g.h + ih) * g.w..][..g.w].as_ptr();
        // SAFETY: the caller's AVX-512F, BW and BF16; `interior` holds the row's g.w values.
        unsafe { to_bf16(interior.as_mut_ptr(), src, g.w) };
    });
}

/// Rounds `len` floats at `src` to bf16 (to nearest even) at `dst`.
///
/// # Safety
/// AVX-512F, BW and BF16 must be available; `src` holds `len` values, `dst` room for `len`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(crate) unsafe fn to_bf16(dst: *mut u16, src: *const f32, len: usize) {
    use std::arch::x86_64::*;
    for q in (0..len).step_by(32) {
        let left = len - q;
        let mask = |from: usize| -> __mmask16 {
            match left.saturating_sub(from) {
                0 => 0,
                l if l >= 16 => 0xffff,
                l => (1u16 << l) - 1,
            }
        };
        let low = _mm512_maskz_loadu_ps(mask(0), src.add(q));
        let high = _mm512_maskz_loadu_ps(mask(16), src.add(q + 16));
        let store: __mmask32 = if left >= 32 {
            u32::MAX
        } else {
            (1u32 << left) - 1
        };
        let halves = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(high, low));
        _mm512_mask_storeu_epi16(dst.add(q) as *mut i16, store, halves);
    }
}

/// Per (block of 8 output channels, group): 8 × K accumulators of 16 pixel-pair lanes over the
/// task's run; each step loads K strip vectors and 8 gradient vectors for 8·K `vdpbf16ps`, i.e.
/// twice the pixels per instruction of the float32 kernel.
///
/// # Safety
/// AVX-512F, BW and BF16 must be available; the bounds stated in [`backward_weight`] hold.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn weight_task_bf16<const K: usize>(job: &WeightTaskBf16, acc_weight: &mut [f32]) {
    use std::arch::x86_64::*;
    let g = job.g;
    debug_assert_eq!(g.k, K);
    let (x, d, run) = (job.x16.as_ptr(), job.d16.as_ptr(), job.run);
    let load = |p: *const u16| {
        std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_epi16(p as *const i16))
    };
    for cb in 0..g.c_out.div_ceil(CO_BLOCK) {
        let co_count = CO_BLOCK.min(g.c_out - cb * CO_BLOCK);
        let grad = d.add(cb * CO_BLOCK * run);
        for &(tap0, offset) in job.groups {
            debug_assert!(offset + (K - 1) * job.kw_step + run <= job.x16.len());
            let mut acc = [[_mm512_setzero_ps(); K]; CO_BLOCK];
            for p in (0..run).step_by(PAIR_VECTOR) {
                let mut xv = [load(x.add(offset)); K];
                for kw in 0..K {
                    xv[kw] = load(x.add(offset + kw * job.kw_step + p));
                }
                for co in 0..CO_BLOCK {
                    let dv = load(grad.add(co * run + p));
                    for kw in 0..K {
                        acc[co][kw] = _mm512_dpbf16_ps(acc[co][kw], dv, xv[kw]);
                    }
                }
            }
            for co in 0..co_count {
                let at = (cb * CO_BLOCK + co) * g.taps() + tap0;
                for kw in 0..K {
                    acc_weight[at + kw] += _mm512_reduce_add_ps(acc[co][kw]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bf16_bits;

    #[test]
    fn bf16_bits_rounds_to_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3f80);
        // 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷: ties go to the even 1.
        assert_eq!(bf16_bits(1.0 + 2f32.powi(-8)), 0x3f80);
        assert_eq!(bf16_bits(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
        assert_eq!(bf16_bits(-2.0), 0xc000);
        assert!(f32::from_bits((bf16_bits(f32::NAN) as u32) << 16).is_nan());
    }
}
