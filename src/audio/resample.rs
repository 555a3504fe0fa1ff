//! Sample-rate conversion with `rubato`'s synchronous FFT resampler.
//!
//! Why this one: the rates are fixed per file, the case rubato's `Fft` resampler is made for
//! (its documentation recommends it for offline fixed-ratio work); its anti-aliasing filter is a
//! long windowed sinc applied in the frequency domain. `process_all` removes the filter delay, so
//! sample `i` of the output lies at time `i / to_hz`, as in librosa's output. Measured quality:
//! 152 dB SNR on a 44.1 -> 16 kHz sweep where librosa's default reaches 90 dB (BENCHMARKS.md).

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};

/// Least length, in input samples, of the anti-aliasing filter (= one FFT block): long enough
/// for a transition band narrow enough to keep 7 kHz at 16 kHz (see tests/audio_resample.rs).
const MIN_FILTER_INPUT_SAMPLES: usize = 1024;

/// Input samples per FFT block for a conversion: a whole number of the rates' smallest common
/// block (`from / gcd` samples), at least [`MIN_FILTER_INPUT_SAMPLES`], and an *even* number of
/// such blocks. rubato centres its filter at `block_in / 2` (integer division) and trims
/// `block_out / 2` output samples of delay; both halves are exact only when both block sizes
/// are even. With an odd block (441 -> 160 for 44.1 -> 16 kHz) the output lags by half an input
/// sample, which costs 6 dB of SNR per octave (17 dB on the test sweep instead of 100).
fn block_input_samples(from_hz: u32, to_hz: u32) -> usize {
    let common = gcd(from_hz as usize, to_hz as usize);
    let smallest_block = from_hz as usize / common;
    let blocks = MIN_FILTER_INPUT_SAMPLES.div_ceil(smallest_block).max(1);
    (blocks + blocks % 2) * smallest_block
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Resamples mono samples from `from_hz` to `to_hz`. The output has `ceil(len * to / from)`
/// samples. Equal rates return the input unchanged.
pub fn resample(samples: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>, String> {
    if from_hz == 0 || to_hz == 0 {
        return Err(format!("cannot resample from {from_hz} Hz to {to_hz} Hz"));
    }
    if from_hz == to_hz || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let input: Vec<f64> = samples.iter().map(|&s| f64::from(s)).collect();
    let block = block_input_samples(from_hz, to_hz);
    let mut resampler = Fft::<f64>::new_custom(
        from_hz as usize,
        to_hz as usize,
        block,
        1,
        1,
        WindowFunction::BlackmanHarris2,
        FixedSync::Input,
    )
    .map_err(|e| format!("resampler for {from_hz} Hz -> {to_hz} Hz: {e}"))?;
    let adapter = InterleavedSlice::new(&input, 1, input.len())
        .map_err(|e| format!("resampler input: {e}"))?;
    let output = resampler
        .process_all(&adapter, input.len(), None)
        .map_err(|e| format!("resampling {from_hz} Hz -> {to_hz} Hz: {e}"))?;
    Ok(output.take_data().into_iter().map(|s| s as f32).collect())
}
