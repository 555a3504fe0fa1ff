//! The CQT's time-domain kernels, built as nnAudio's `create_cqt_kernels` builds them: in f64,
//! then stored as complex64. Only each kernel's `length` taps are kept (nnAudio stores them
//! inside a `kernel_width`-long row of zeros; `start` says where).

use rayon::prelude::*;

use super::{CqtParams, SpectrogramError};

/// One bin's kernel: `taps[n] = hann(length)[n] · exp(i·2π·freq·(n + phase_origin)/sr)`
/// divided by its L1 norm, stored as f32 pairs exactly as nnAudio casts them.
#[derive(Debug, Clone)]
pub struct BinKernel {
    pub freq_hz: f64,
    /// `ceil(Q · sr / freq)`: the number of taps.
    pub length: usize,
    /// Index of tap 0 inside the `kernel_width` frame.
    pub start: usize,
    /// `-ceil(length / 2)`: the exponent's sample index at tap 0 (numpy's `r_[-l//2 : l//2]`).
    pub phase_origin: i64,
    /// `sum(hann)`: with the `1/length` nnAudio divides by, the taps were divided by
    /// `l1_norm = sum|hann · exp(..) / length|`.
    pub l1_norm: f64,
    pub re: Vec<f32>,
    pub im: Vec<f32>,
}

/// All kernels of one parameter set.
#[derive(Debug, Clone)]
pub struct CqtKernels {
    /// Next power of two of the longest kernel (32 768 for the defaults); the reflect padding
    /// is half of it on each side.
    pub kernel_width: usize,
    pub bins: Vec<BinKernel>,
}

/// `Q = filter_scale / (2^(1/bins_per_octave) - 1)`, as nnAudio computes it.
pub fn quality_factor(params: &CqtParams) -> f64 {
    params.filter_scale / (2f64.powf(1.0 / params.bins_per_octave as f64) - 1.0)
}

/// Bin centre frequencies `fmin · 2^(k / bins_per_octave)`.
pub fn bin_frequencies_hz(params: &CqtParams) -> Vec<f64> {
    (0..params.n_bins)
        .map(|k| params.fmin_hz * 2f64.powf(k as f64 / params.bins_per_octave as f64))
        .collect()
}

/// A periodic Hann window as scipy's `get_window('hann', n, fftbins=True)` computes it:
/// `0.5 + 0.5·cos(linspace(-π, π, n + 1)[i])` for `i < n`.
pub fn periodic_hann(n: usize) -> Vec<f64> {
    let step = (2.0 * std::f64::consts::PI) / n as f64;
    (0..n)
        .map(|i| 0.5 + 0.5 * (i as f64 * step + -std::f64::consts::PI).cos())
        .collect()
}

impl CqtKernels {
    /// Builds the kernels; fails where nnAudio would (a top bin above Nyquist) and on
    /// parameters that make no kernel (see [`CqtParams::validate`]).
    pub fn new(params: &CqtParams) -> Result<Self, SpectrogramError> {
        params.validate()?;
        let q = quality_factor(params);
        let sr = params.sample_rate_hz as f64;
        let freqs = bin_frequencies_hz(params);
        let lengths: Vec<usize> = freqs.iter().map(|f| (q * sr / f).ceil() as usize).collect();
        let max_len = *lengths
            .iter()
            .max()
            .expect("validate() ensures n_bins >= 1");
        let kernel_width = 2usize.pow((max_len as f64).log2().ceil() as u32);

        // In parallel: the low bins' windows are long (~0.1 s of sin/cos on one core), and a
        // transcription waits for them before its first CQT frame.
        let bins = freqs
            .par_iter()
            .zip(&lengths)
            .map(|(&freq_hz, &length)| {
                // nnAudio pads more zeros on the right for odd lengths.
                let centred = (kernel_width as f64 / 2.0 - length as f64 / 2.0).ceil() as usize;
                let start = if length % 2 == 1 {
                    centred - 1
                } else {
                    centred
                };
                let phase_origin = -(length.div_ceil(2) as i64);
                let window = periodic_hann(length);
                let l = length as f64;
                // sig = window · exp(n · 1j · 2 · π · freq / fs) / l, in numpy's order of operations.
                let sig: Vec<(f64, f64)> = window
                    .iter()
                    .enumerate()
                    .map(|(i, &w)| {
                        let n = (phase_origin + i as i64) as f64;
                        let phase = n * 2.0 * std::f64::consts::PI * freq_hz / sr;
                        (w * phase.cos() / l, w * phase.sin() / l)
                    })
                    .collect();
                let l1_norm: f64 = sig.iter().map(|&(re, im)| re.hypot(im)).sum();
                BinKernel {
                    freq_hz,
                    length,
                    start,
                    phase_origin,
                    l1_norm,
                    re: sig.iter().map(|&(re, _)| (re / l1_norm) as f32).collect(),
                    im: sig.iter().map(|&(_, im)| (im / l1_norm) as f32).collect(),
                }
            })
            .collect();
        Ok(Self { kernel_width, bins })
    }

    /// Complex multiply-accumulates per frame of the dense formulation nnAudio runs
    /// (`n_bins × kernel_width`) and of one that touches only the non-zero taps (`Σ length`).
    pub fn dense_and_sparse_taps(&self) -> (usize, usize) {
        (
            self.bins.len() * self.kernel_width,
            self.bins.iter().map(|b| b.length).sum(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_parameters_give_the_paper_kernel_sizes() {
        let kernels = CqtKernels::new(&CqtParams::default()).unwrap();
        assert_eq!(kernels.kernel_width, 32768);
        assert_eq!(kernels.bins.len(), 176);
        // Values printed by nnAudio 0.3.4 for these parameters.
        assert_eq!(kernels.bins[0].length, 19856);
        assert_eq!(kernels.bins[0].start, 6456);
        assert_eq!(kernels.bins[175].length, 127);
        assert_eq!(kernels.bins[175].start, 16320);
        assert_eq!(kernels.dense_and_sparse_taps(), (176 * 32768, 693_237));
    }

    #[test]
    fn kernels_have_unit_l1_norm_and_a_zero_first_tap() {
        let kernels = CqtKernels::new(&CqtParams::default()).unwrap();
        for bin in &kernels.bins {
            let norm: f64 = bin
                .re
                .iter()
                .zip(&bin.im)
                .map(|(&r, &i)| (r as f64).hypot(i as f64))
                .sum();
            // f32 storage rounds each tap by ~6e-8 relative.
            assert!(
                (norm - 1.0).abs() < 1e-5,
                "bin {}: L1 norm {norm}",
                bin.freq_hz
            );
            assert_eq!(bin.re[0], 0.0, "a periodic Hann window starts at 0");
        }
    }

    #[test]
    fn hann_matches_the_closed_form() {
        let w = periodic_hann(8);
        for (i, v) in w.iter().enumerate() {
            let expected = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / 8.0).cos();
            assert!((v - expected).abs() < 1e-15);
        }
    }
}
