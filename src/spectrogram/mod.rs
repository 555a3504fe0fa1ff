//! Audio → CQT spectrogram (nnAudio CQT1992v2 semantics), its log and normalisation, and the cache.
//!
//! [`Cqt`] holds one parameter set's kernels and computes magnitudes on the CPU;
//! [`features`] turns magnitudes into the network's input (log, imagewise min-max, frames ×
//! bins); [`picture`] draws one as a PNG; [`cache`] stores a dataset's spectrograms on disk so
//! they are computed once.

pub mod cache;
pub mod cqt;
pub mod cqt_kernels;
pub mod features;
pub mod picture;
mod simd;

pub use cache::{CacheOutcome, SpectrogramCache};
pub use cqt::{Cqt, CqtMethod, Spectrogram};
pub use cqt_kernels::CqtKernels;
pub use simd::Isa;

/// The CQT's parameters. The defaults are the paper's (nnAudio `CQT1992v2(sr=16000,
/// hop_length=512, fmin=27.5, n_bins=176, bins_per_octave=24, filter_scale=1)`); the window is
/// always Hann, the kernels L1-normalised, the output "librosa"-scaled magnitudes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CqtParams {
    pub sample_rate_hz: u32,
    pub hop_length: usize,
    pub fmin_hz: f64,
    pub n_bins: usize,
    pub bins_per_octave: usize,
    pub filter_scale: f64,
}

impl Default for CqtParams {
    fn default() -> Self {
        Self {
            sample_rate_hz: 16_000,
            hop_length: 512,
            fmin_hz: 27.5,
            n_bins: 176,
            bins_per_octave: 24,
            filter_scale: 1.0,
        }
    }
}

impl CqtParams {
    /// Rejects parameters that make no CQT, including a top bin above Nyquist (nnAudio's check).
    pub fn validate(&self) -> Result<(), SpectrogramError> {
        let bad = |reason: String| Err(SpectrogramError::InvalidParams(reason));
        if self.sample_rate_hz == 0 {
            return bad("sample rate must be positive".into());
        }
        if self.hop_length == 0 {
            return bad("hop length must be positive".into());
        }
        if self.n_bins == 0 || self.bins_per_octave == 0 {
            return bad("n_bins and bins_per_octave must be positive".into());
        }
        if !(self.fmin_hz.is_finite() && self.fmin_hz > 0.0) {
            return bad(format!(
                "fmin must be a positive frequency, got {}",
                self.fmin_hz
            ));
        }
        if !(self.filter_scale.is_finite() && self.filter_scale > 0.0) {
            return bad(format!(
                "filter_scale must be positive, got {}",
                self.filter_scale
            ));
        }
        let top_hz =
            self.fmin_hz * 2f64.powf((self.n_bins - 1) as f64 / self.bins_per_octave as f64);
        let nyquist_hz = self.sample_rate_hz as f64 / 2.0;
        if top_hz > nyquist_hz {
            return bad(format!(
                "the top bin ({top_hz:.1} Hz) is above the Nyquist frequency ({nyquist_hz} Hz); use fewer bins"
            ));
        }
        let shortest = cqt_kernels::quality_factor(self) * self.sample_rate_hz as f64 / top_hz;
        if shortest <= 1.0 {
            return bad(format!(
                "the top bin's kernel would have a single tap (filter_scale {} too small)",
                self.filter_scale
            ));
        }
        let longest = cqt_kernels::quality_factor(self) * self.sample_rate_hz as f64 / self.fmin_hz;
        if longest > (1u64 << 26) as f64 {
            return bad(format!(
                "the lowest bin's kernel would have {longest:.0} taps; raise fmin"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_that_make_no_cqt_are_rejected() {
        let ok = CqtParams::default();
        assert!(ok.validate().is_ok());
        let bad = [
            CqtParams { n_bins: 200, ..ok },
            CqtParams {
                hop_length: 0,
                ..ok
            },
            CqtParams {
                fmin_hz: -1.0,
                ..ok
            },
            CqtParams {
                filter_scale: 0.005,
                ..ok
            },
            CqtParams {
                sample_rate_hz: 0,
                ..ok
            },
        ];
        for params in bad {
            let err = params.validate().unwrap_err().to_string();
            assert!(
                err.starts_with("invalid CQT parameters"),
                "{params:?}: {err}"
            );
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpectrogramError {
    #[error("invalid CQT parameters: {0}")]
    InvalidParams(String),
    #[error("audio is empty: a CQT needs at least one sample")]
    EmptyAudio,
    #[error("audio sample {index} is {value}: the CQT needs finite samples")]
    NonFiniteSample { index: usize, value: f32 },
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}
