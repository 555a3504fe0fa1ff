//! The constant-Q transform on the CPU, computing what nnAudio's `CQT1992v2` computes
//! (`center=True`, reflect padding, "librosa" normalisation, magnitude) without its cost.
//!
//! nnAudio correlates the padded signal with every bin's kernel stored in a
//! `kernel_width`-long row (176 × 32 768 = 5.77 M complex multiply-adds per frame with the
//! defaults). Only `length` taps of each row are non-zero (693 237 in all), and the long
//! kernels need not even be touched tap by tap:
//!
//! * **direct** bins correlate their `length` true taps (2 real multiply-adds per tap);
//! * **blocked** bins (the long, low ones) use that a periodic Hann window is three complex
//!   exponentials, `hann[n]·e^{-iωn} = ½e^{-iωn} − ¼e^{-i(ω−Δ)n} − ¼e^{-i(ω+Δ)n}` with
//!   `Δ = 2π/length`. Frames are `hop_length` apart, so split the window into whole blocks of
//!   `hop_length` samples plus a tail: each block's sums against the three exponentials are
//!   computed once (6·hop multiply-adds) and shared by every frame whose window covers the
//!   block, each frame combining its blocks with fixed complex weights; the tail
//!   (`length mod hop` taps) is correlated directly with the stored kernel taps.
//!
//! A bin is blocked where that costs fewer multiply-adds per frame (see
//! [`Cqt::multiply_adds_per_frame`]): with the defaults 79 bins, 0.44 M real multiply-adds
//! per frame instead of 1.39 M for all-direct and 11.5 M for nnAudio's dense convolution.
//! Results agree with nnAudio to f32 rounding (≤ 4e-6 of the largest magnitude on the
//! fixtures of `tests/cqt.rs`).
//!
//! Audio shorter than the reflect padding (`kernel_width / 2` = 16 384 samples with the
//! defaults, where `torch.nn.ReflectionPad1d` and so nnAudio raise an error) is padded the way
//! `numpy.pad(mode="reflect")` and librosa pad it: the reflection repeats, i.e. sample
//! `i` of the extended signal is `x[r]` with `r` folded into `[0, L)` with period `2(L − 1)`;
//! a one-sample clip extends as a constant. For audio longer than the padding this is exactly
//! PyTorch's reflect padding.

use rayon::prelude::*;

use super::cqt_kernels::CqtKernels;
use super::simd::{self, Isa, Loops, SIGNAL_SLACK, TAP_ALIGN};
use super::{CqtParams, SpectrogramError};

/// How each bin's correlation is computed; both give the same numbers to f32 rounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CqtMethod {
    /// Every bin correlated with its true-length kernel.
    Direct,
    /// Long bins through the three-exponential block decomposition, the rest direct (default).
    Blocked,
}

/// CQT magnitudes of one clip, `n_bins` rows of `n_frames` values (nnAudio's layout).
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrogram {
    pub n_bins: usize,
    pub n_frames: usize,
    /// Row-major `n_bins × n_frames`: `values[bin * n_frames + frame]`.
    pub values: Vec<f32>,
}

impl Spectrogram {
    pub fn at(&self, bin: usize, frame: usize) -> f32 {
        self.values[bin * self.n_frames + frame]
    }

    /// The same values as `n_frames` rows of `n_bins` (time as image height, as the network
    /// reads them).
    pub fn frames_by_bins(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.values.len()];
        for (bin, row) in self.values.chunks_exact(self.n_frames.max(1)).enumerate() {
            for (frame, &v) in row.iter().enumerate() {
                out[frame * self.n_bins + bin] = v;
            }
        }
        out
    }
}

/// One parameter set's kernels and per-bin plans, built once and reused for every clip.
pub struct Cqt {
    params: CqtParams,
    kernels: CqtKernels,
    bins: Vec<BinPlan>,
    method: CqtMethod,
    isa: Isa,
}

struct BinPlan {
    /// Offset of the kernel's first tap inside the `kernel_width` frame.
    start: usize,
    /// nnAudio's "librosa" normalisation: `sqrt(length)`, in f32 as torch computes it.
    librosa_scale: f32,
    how: BinMethod,
}

enum BinMethod {
    /// The stored taps, zero-padded to a multiple of [`TAP_ALIGN`].
    Direct {
        re: Vec<f32>,
        im: Vec<f32>,
    },
    Blocked(Box<BlockedBin>),
}

struct BlockedBin {
    /// Whole `hop_length` blocks inside the window.
    full_blocks: usize,
    /// `cos(ω_j r)`, `−sin(ω_j r)` for `r < hop_length` and the three frequencies `ω_j`
    /// (zero-padded); index `2j` real part, `2j + 1` imaginary part.
    tables: [Vec<f32>; 6],
    /// Complex weight of block `i` of exponential `j`: the Hann coefficient × the phase of the
    /// block's start `e^{-iω_j·i·hop}` × the kernel's phase origin and norm.
    weights: [Vec<(f32, f32)>; 3],
    /// The stored kernel taps after the whole blocks, zero-padded.
    tail_re: Vec<f32>,
    tail_im: Vec<f32>,
}

/// A blocked bin's data, read-only. Frame `t`'s complex value is
/// `Σ_{j<3} Σ_{i<full_blocks} weights[j][i] · S_j[t + i]` with the block sums
/// `S_j[b] = Σ_{r<hop} x[start + b·hop + r] · (tables[2j][r] + i·tables[2j+1][r])`, plus the
/// tail `Σ_n x[a + n]·tail_re[n] − i·Σ_n x[a + n]·tail_im[n]` from `a = start + t·hop +
/// full_blocks·hop`; the output is its magnitude times `sqrt(length)`.
pub struct BlockedPlan<'a> {
    pub full_blocks: usize,
    pub tables: [&'a [f32]; 6],
    pub weights: [&'a [(f32, f32)]; 3],
    pub tail_re: &'a [f32],
    pub tail_im: &'a [f32],
}

fn padded(taps: &[f32]) -> Vec<f32> {
    let mut v = taps.to_vec();
    v.resize(taps.len().next_multiple_of(TAP_ALIGN), 0.0);
    v
}

impl Cqt {
    /// Kernels and plans for `params`, with the fastest method and instruction set.
    pub fn new(params: CqtParams) -> Result<Self, SpectrogramError> {
        Self::with_method(params, CqtMethod::Blocked)
    }

    pub fn with_method(params: CqtParams, method: CqtMethod) -> Result<Self, SpectrogramError> {
        let kernels = CqtKernels::new(&params)?;
        let hop = params.hop_length;
        let bins = kernels
            .bins
            .par_iter()
            .map(|k| {
                let full_blocks = k.length / hop;
                let tail = k.length - full_blocks * hop;
                let direct_cost = 2 * k.length.next_multiple_of(TAP_ALIGN);
                let blocked_cost = 6 * hop.next_multiple_of(TAP_ALIGN)
                    + 12 * full_blocks
                    + 2 * tail.next_multiple_of(TAP_ALIGN);
                let how = if method == CqtMethod::Blocked
                    && full_blocks >= 1
                    && blocked_cost < direct_cost
                {
                    BinMethod::Blocked(Box::new(plan_blocked(&params, k, full_blocks)))
                } else {
                    BinMethod::Direct {
                        re: padded(&k.re),
                        im: padded(&k.im),
                    }
                };
                BinPlan {
                    start: k.start,
                    librosa_scale: (k.length as f32).sqrt(),
                    how,
                }
            })
            .collect();
        Ok(Self {
            params,
            kernels,
            bins,
            method,
            isa: Isa::detect(),
        })
    }

    /// Uses the inner loops written for `isa` (to compare them); `None` if this CPU lacks it.
    pub fn with_isa(mut self, isa: Isa) -> Option<Self> {
        isa.is_supported().then(|| {
            self.isa = isa;
            self
        })
    }

    pub fn params(&self) -> &CqtParams {
        &self.params
    }

    pub fn kernels(&self) -> &CqtKernels {
        &self.kernels
    }

    pub fn method(&self) -> CqtMethod {
        self.method
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The block decomposition of `bin`, where it uses one (for kernels that mirror the CPU
    /// path, e.g. kernels/cqt.cu).
    pub fn blocked_plan(&self, bin: usize) -> Option<BlockedPlan<'_>> {
        match &self.bins[bin].how {
            BinMethod::Direct { .. } => None,
            BinMethod::Blocked(b) => {
                let tail_len =
                    self.kernels.bins[bin].length - b.full_blocks * self.params.hop_length;
                Some(BlockedPlan {
                    full_blocks: b.full_blocks,
                    tables: std::array::from_fn(|c| &b.tables[c][..self.params.hop_length]),
                    weights: std::array::from_fn(|j| b.weights[j].as_slice()),
                    tail_re: &b.tail_re[..tail_len],
                    tail_im: &b.tail_im[..tail_len],
                })
            }
        }
    }

    /// How many bins use the block decomposition.
    pub fn blocked_bins(&self) -> usize {
        self.bins
            .iter()
            .filter(|b| matches!(b.how, BinMethod::Blocked(_)))
            .count()
    }

    /// Samples of reflect padding on each side (`kernel_width / 2`).
    pub fn padding(&self) -> usize {
        self.kernels.kernel_width / 2
    }

    /// Frames of a clip of `n_samples`: `floor(n_samples / hop) + 1` (for an even kernel width).
    pub fn n_frames(&self, n_samples: usize) -> usize {
        let padded = n_samples + 2 * self.padding();
        (padded - self.kernels.kernel_width) / self.params.hop_length + 1
    }

    /// Real multiply-adds per frame this plan executes, amortised over a long clip (padding
    /// included, the final magnitude and the first frames' extra blocks left out).
    pub fn multiply_adds_per_frame(&self) -> usize {
        self.bins
            .iter()
            .map(|b| match &b.how {
                BinMethod::Direct { re, .. } => 2 * re.len(),
                BinMethod::Blocked(p) => {
                    6 * p.tables[0].len() + 12 * p.full_blocks + 2 * p.tail_re.len()
                }
            })
            .sum()
    }

    /// CQT magnitudes of one clip (`n_bins × n_frames`).
    pub fn magnitude(&self, audio: &[f32]) -> Result<Spectrogram, SpectrogramError> {
        Ok(self
            .magnitudes(&[audio])?
            .pop()
            .expect("one clip in, one out"))
    }

    /// CQT magnitudes of several clips (of any lengths), all bins of all clips in parallel.
    pub fn magnitudes(&self, clips: &[&[f32]]) -> Result<Vec<Spectrogram>, SpectrogramError> {
        for clip in clips {
            check_audio(clip)?;
        }
        let n_bins = self.bins.len();
        let hop = self.params.hop_length;
        let width = self.kernels.kernel_width;
        // Tasks are (clip, span of frames) and run every bin over their span, so the span's
        // padded signal (~0.5 MB with the defaults, built by the task) stays in L2 instead of
        // streaming from memory once per bin. Blocked bins recompute their first
        // `full_blocks - 1` blocks per span.
        let tasks: Vec<(usize, usize, usize)> = clips
            .iter()
            .enumerate()
            .flat_map(|(clip, c)| {
                let n_frames = self.n_frames(c.len());
                (0..n_frames)
                    .step_by(FRAMES_PER_TASK)
                    .map(move |t0| (clip, t0, (t0 + FRAMES_PER_TASK).min(n_frames)))
            })
            .collect();
        let spans: Vec<Vec<f32>> = tasks
            .par_iter()
            .map(|&(clip, t0, t1)| {
                let span = t1 - t0;
                let signal = padded_span(
                    clips[clip],
                    self.padding(),
                    t0 * hop,
                    (span - 1) * hop + width,
                );
                let mut values = vec![0f32; n_bins * span];
                for (plan, row) in self.bins.iter().zip(values.chunks_exact_mut(span)) {
                    self.bin_row(plan, &signal, row);
                }
                values
            })
            .collect();
        let mut out: Vec<Spectrogram> = clips
            .iter()
            .map(|c| {
                let n_frames = self.n_frames(c.len());
                Spectrogram {
                    n_bins,
                    n_frames,
                    values: vec![0.0; n_bins * n_frames],
                }
            })
            .collect();
        for (&(clip, t0, t1), values) in tasks.iter().zip(&spans) {
            let spec = &mut out[clip];
            for (bin, row) in values.chunks_exact(t1 - t0).enumerate() {
                spec.values[bin * spec.n_frames + t0..][..t1 - t0].copy_from_slice(row);
            }
        }
        Ok(out)
    }

    fn bin_row(&self, plan: &BinPlan, signal: &[f32], out: &mut [f32]) {
        let hop = self.params.hop_length;
        match self.isa {
            Isa::Portable => bin_row(simd::Portable, plan, signal, hop, out),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => {
                let avx2 = simd::Avx2::new().expect("with_isa/detect checked the CPU");
                // SAFETY: `avx2` exists, so the CPU has AVX2 and FMA.
                unsafe { bin_row_avx2(avx2, plan, signal, hop, out) }
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                let avx512 = simd::Avx512::new().expect("with_isa/detect checked the CPU");
                // SAFETY: `avx512` exists, so the CPU has AVX-512F and FMA.
                unsafe { bin_row_avx512(avx512, plan, signal, hop, out) }
            }
        }
    }
}

fn plan_blocked(
    params: &CqtParams,
    k: &super::cqt_kernels::BinKernel,
    full_blocks: usize,
) -> BlockedBin {
    use std::f64::consts::PI;
    let hop = params.hop_length;
    let sr = params.sample_rate_hz as f64;
    let omega = 2.0 * PI * k.freq_hz / sr;
    let delta = 2.0 * PI / k.length as f64;
    let omegas = [omega, omega - delta, omega + delta];
    let hann_coefficients = [0.5, -0.25, -0.25];
    // conj(kernel[n]) = hann[n]·e^{-iω(n + phase_origin)} / (length · l1_norm)
    let origin_angle = -omega * k.phase_origin as f64;
    let norm = 1.0 / (k.length as f64 * k.l1_norm);
    let tables = std::array::from_fn(|c| {
        let w = omegas[c / 2];
        let mut t: Vec<f32> = (0..hop)
            .map(|r| {
                let a = w * r as f64;
                if c % 2 == 0 {
                    a.cos() as f32
                } else {
                    -a.sin() as f32
                }
            })
            .collect();
        t.resize(hop.next_multiple_of(TAP_ALIGN), 0.0);
        t
    });
    let weights = std::array::from_fn(|j| {
        (0..full_blocks)
            .map(|i| {
                let angle = origin_angle - omegas[j] * (i * hop) as f64;
                let scale = hann_coefficients[j] * norm;
                ((scale * angle.cos()) as f32, (scale * angle.sin()) as f32)
            })
            .collect()
    });
    let tail_from = full_blocks * hop;
    BlockedBin {
        full_blocks,
        tables,
        weights,
        tail_re: padded(&k.re[tail_from..]),
        tail_im: padded(&k.im[tail_from..]),
    }
}

fn check_audio(audio: &[f32]) -> Result<(), SpectrogramError> {
    if audio.is_empty() {
        return Err(SpectrogramError::EmptyAudio);
    }
    if let Some(index) = crate::audio::first_non_finite(audio) {
        return Err(SpectrogramError::NonFiniteSample {
            index,
            value: audio[index],
        });
    }
    Ok(())
}

/// Index into `[0, len)` of position `i` (may be negative or past the end) of the signal
/// extended by repeated reflection without repeating the edge sample (numpy's "reflect").
pub fn reflect_index(i: i64, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    let period = 2 * (len as i64 - 1);
    let folded = i.rem_euclid(period);
    (if folded < len as i64 {
        folded
    } else {
        period - folded
    }) as usize
}

/// `audio` reflect-padded by `pad` samples on each side, followed by [`SIGNAL_SLACK`] zeros.
pub fn reflect_pad(audio: &[f32], pad: usize) -> Vec<f32> {
    padded_span(audio, pad, 0, audio.len() + 2 * pad)
}

/// Samples `from .. from + count` of `audio` reflect-padded by `pad` on each side (which may
/// run past the padded end: those read as zeros), followed by [`SIGNAL_SLACK`] zeros.
pub fn padded_span(audio: &[f32], pad: usize, from: usize, count: usize) -> Vec<f32> {
    let len = audio.len();
    let padded_len = len + 2 * pad;
    let end = (from + count).min(padded_len);
    let mut out = Vec::with_capacity(count + SIGNAL_SLACK);
    // Left reflection, the samples themselves (copied), right reflection.
    let inner = from.clamp(pad, pad + len)..end.clamp(pad, pad + len);
    let reflected = |p: usize| audio[reflect_index(p as i64 - pad as i64, len)];
    out.extend((from..end.min(pad)).map(reflected));
    out.extend_from_slice(&audio[inner.start - pad..inner.end - pad]);
    out.extend((from.max(pad + len)..end).map(reflected));
    out.resize(count + SIGNAL_SLACK, 0.0);
    out
}

/// `bin_row` compiled with AVX2 and FMA enabled, so the intrinsics inline into it.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn bin_row_avx2(
    loops: simd::Avx2,
    plan: &BinPlan,
    signal: &[f32],
    hop: usize,
    out: &mut [f32],
) {
    bin_row(loops, plan, signal, hop, out)
}

/// `bin_row` compiled with AVX-512F and FMA enabled.
///
/// # Safety
/// The CPU must have AVX-512F and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn bin_row_avx512(
    loops: simd::Avx512,
    plan: &BinPlan,
    signal: &[f32],
    hop: usize,
    out: &mut [f32],
) {
    bin_row(loops, plan, signal, hop, out)
}

/// Frames per parallel task: 4 tasks per training crop, enough to keep 2 threads busy. Public
/// so that a caller cutting a long recording into spans can make each span a whole, even
/// number of tasks (`transcribe::StreamingFeatures`).
pub const FRAMES_PER_TASK: usize = 160;
/// Frames correlated together against one kernel chunk load.
const FRAMES_PER_PASS: usize = 4;
/// Blocks summed together against one table chunk load (12 accumulators in 16 registers).
const BLOCKS_PER_PASS: usize = 2;

/// One bin's magnitudes for `out.len()` frames, the first at the start of `signal`.
#[inline(always)]
fn bin_row<L: Loops>(loops: L, plan: &BinPlan, signal: &[f32], hop: usize, out: &mut [f32]) {
    let n_frames = out.len();
    let mut y_re = vec![0f32; n_frames];
    let mut y_im = vec![0f32; n_frames];
    let (taps_from, re, im) = match &plan.how {
        BinMethod::Direct { re, im } => (plan.start, re, im),
        BinMethod::Blocked(b) => {
            blocked_sums(loops, b, signal, plan.start, hop, &mut y_re, &mut y_im);
            (plan.start + b.full_blocks * hop, &b.tail_re, &b.tail_im)
        }
    };
    // nnAudio: real = x ⋆ Re(kernel), imaginary = −(x ⋆ Im(kernel)).
    let mut t = 0;
    while t + FRAMES_PER_PASS <= n_frames {
        let sums = loops.dot_frames::<FRAMES_PER_PASS>(signal, taps_from + t * hop, hop, re, im);
        for (f, (r, i)) in sums.into_iter().enumerate() {
            y_re[t + f] += r;
            y_im[t + f] -= i;
        }
        t += FRAMES_PER_PASS;
    }
    for t in t..n_frames {
        let [(r, i)] = loops.dot_frames::<1>(signal, taps_from + t * hop, hop, re, im);
        y_re[t] += r;
        y_im[t] -= i;
    }
    for ((o, &r), &i) in out.iter_mut().zip(&y_re).zip(&y_im) {
        let (r, i) = (r * plan.librosa_scale, i * plan.librosa_scale);
        *o = (r * r + i * i).sqrt();
    }
}

/// The whole-block part of a blocked bin's correlation, added into `y`.
#[inline(always)]
fn blocked_sums<L: Loops>(
    loops: L,
    b: &BlockedBin,
    signal: &[f32],
    start: usize,
    hop: usize,
    y_re: &mut [f32],
    y_im: &mut [f32],
) {
    let n_frames = y_re.len();
    let n_blocks = n_frames + b.full_blocks - 1;
    let mut sums: [Vec<f32>; 6] = std::array::from_fn(|_| vec![0f32; n_blocks]);
    let mut store = |block: usize, s: [f32; 6]| {
        for (c, v) in s.into_iter().enumerate() {
            sums[c][block] = v;
        }
    };
    let mut block = 0;
    while block + BLOCKS_PER_PASS <= n_blocks {
        let pass = loops.block_sums::<BLOCKS_PER_PASS>(signal, start + block * hop, hop, &b.tables);
        for (i, s) in pass.into_iter().enumerate() {
            store(block + i, s);
        }
        block += BLOCKS_PER_PASS;
    }
    for block in block..n_blocks {
        let [s] = loops.block_sums::<1>(signal, start + block * hop, hop, &b.tables);
        store(block, s);
    }
    for j in 0..3 {
        for (i, &w) in b.weights[j].iter().enumerate() {
            loops.complex_axpy(w, &sums[2 * j][i..], &sums[2 * j + 1][i..], y_re, y_im);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_params() -> CqtParams {
        CqtParams {
            sample_rate_hz: 8000,
            hop_length: 64,
            fmin_hz: 200.0,
            n_bins: 30,
            bins_per_octave: 12,
            filter_scale: 1.0,
        }
    }

    fn test_signal(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::Rng::new(seed);
        (0..len)
            .map(|i| (i as f32 * 0.05).sin() * 0.5 + (rng.uniform_f32() - 0.5) * 0.3)
            .collect()
    }

    /// nnAudio's formula, term by term, on the dense `kernel_width` rows.
    fn dense_reference(cqt: &Cqt, audio: &[f32]) -> Vec<f64> {
        let kernels = cqt.kernels();
        let padded = reflect_pad(audio, cqt.padding());
        let n_frames = cqt.n_frames(audio.len());
        let hop = cqt.params().hop_length;
        let mut out = Vec::new();
        for k in &kernels.bins {
            for t in 0..n_frames {
                let (mut re, mut im) = (0f64, 0f64);
                for n in 0..k.length {
                    let x = padded[t * hop + k.start + n] as f64;
                    re += x * k.re[n] as f64;
                    im -= x * k.im[n] as f64;
                }
                let s = (k.length as f64).sqrt();
                out.push((re * s).hypot(im * s));
            }
        }
        out
    }

    #[test]
    fn both_methods_and_every_instruction_set_match_the_dense_formula() {
        let seed = crate::device::equivalence::test_seed(
            "both_methods_and_every_instruction_set_match_the_dense_formula",
        );
        let audio = test_signal(3001, seed);
        let reference = dense_reference(&Cqt::new(small_params()).unwrap(), &audio);
        for method in [CqtMethod::Direct, CqtMethod::Blocked] {
            for isa in Isa::all_supported() {
                let cqt = Cqt::with_method(small_params(), method)
                    .unwrap()
                    .with_isa(isa)
                    .unwrap();
                if method == CqtMethod::Blocked {
                    assert!(cqt.blocked_bins() > 0);
                }
                let got = cqt.magnitude(&audio).unwrap();
                // f32 accumulation over up to ~500 taps: ~1e-6 of the peak.
                crate::compare::assert_close(
                    &format!("{method:?} {isa:?} vs the dense formula"),
                    &got.values,
                    &reference,
                    crate::compare::ErrorScale::of_peak(),
                    1e-5,
                );
            }
        }
    }

    #[test]
    fn frame_count_is_floor_of_length_over_hop_plus_one() {
        let cqt = Cqt::new(CqtParams::default()).unwrap();
        assert_eq!(cqt.n_frames(327_680), 641);
        assert_eq!(cqt.n_frames(327_679), 640);
        assert_eq!(cqt.n_frames(1), 1);
    }

    #[test]
    fn reflect_padding_repeats_for_short_audio_like_numpy() {
        // numpy.pad([1, 2, 3, 4], 9, mode="reflect")
        let expected = [
            4., 3., 2., 1., 2., 3., 4., 3., 2., 1., 2., 3., 4., 3., 2., 1., 2., 3., 4., 3., 2., 1.,
        ];
        let got = reflect_pad(&[1., 2., 3., 4.], 9);
        assert_eq!(&got[..expected.len()], &expected);
        assert!(
            got[expected.len()..].iter().all(|&v| v == 0.0),
            "slack is zeros"
        );
        assert!(reflect_pad(&[7.], 3)[..7].iter().all(|&v| v == 7.0));
    }

    #[test]
    fn padded_spans_are_slices_of_the_padded_signal() {
        let audio = test_signal(50, 3);
        let whole = reflect_pad(&audio, 20);
        for (from, count) in [(0, 90), (5, 10), (15, 40), (60, 30), (85, 20), (0, 5)] {
            let span = padded_span(&audio, 20, from, count);
            let real = count.min(90 - from);
            assert_eq!(&span[..real], &whole[from..from + real], "from {from}");
            assert!(
                span[real..].iter().all(|&v| v == 0.0),
                "from {from}: zeros past the end"
            );
            assert_eq!(span.len(), count + SIGNAL_SLACK);
        }
    }

    #[test]
    fn audio_shorter_than_the_padding_gives_a_spectrogram() {
        let cqt = Cqt::new(small_params()).unwrap();
        assert!(cqt.padding() > 100);
        for len in [1, 2, 37, 100] {
            let s = cqt.magnitude(&test_signal(len, 7)).unwrap();
            assert_eq!(s.n_frames, cqt.n_frames(len));
            assert!(s.values.iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn empty_and_non_finite_audio_are_rejected() {
        let cqt = Cqt::new(small_params()).unwrap();
        assert!(matches!(
            cqt.magnitude(&[]),
            Err(SpectrogramError::EmptyAudio)
        ));
        let err = cqt.magnitude(&[0.0, f32::NAN, 1.0]).unwrap_err();
        assert!(err.to_string().contains("sample 1"), "{err}");
    }

    #[test]
    fn a_batch_equals_clips_one_by_one() {
        let cqt = Cqt::new(small_params()).unwrap();
        let a = test_signal(999, 1);
        let b = test_signal(1500, 2);
        let batch = cqt.magnitudes(&[&a, &b]).unwrap();
        assert_eq!(batch[0], cqt.magnitude(&a).unwrap());
        assert_eq!(batch[1], cqt.magnitude(&b).unwrap());
    }

    #[test]
    fn frames_by_bins_transposes() {
        let s = Spectrogram {
            n_bins: 2,
            n_frames: 3,
            values: vec![1., 2., 3., 4., 5., 6.],
        };
        assert_eq!(s.frames_by_bins(), vec![1., 4., 2., 5., 3., 6.]);
    }
}
