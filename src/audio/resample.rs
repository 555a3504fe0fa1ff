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

/// [`resample`] in pieces: [`push`](Self::push) any number of input pieces, then
/// [`finish`](Self::finish); the output pieces joined are exactly `resample` of the joined
/// input (the same FFT blocks in the same order, the same delay trimmed, the same length).
/// Holds one FFT block of input at a time.
pub struct StreamingResampler {
    inner: Option<StreamingFft>,
}

struct StreamingFft {
    resampler: Fft<f64>,
    ratio: f64,
    block: usize,
    pending: Vec<f64>,
    output: Vec<f64>,
    /// Output samples of filter delay still to drop.
    to_trim: usize,
    input_total: u64,
    output_total: u64,
}

impl StreamingResampler {
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, String> {
        if from_hz == 0 || to_hz == 0 {
            return Err(format!("cannot resample from {from_hz} Hz to {to_hz} Hz"));
        }
        if from_hz == to_hz {
            return Ok(Self { inner: None });
        }
        let block = block_input_samples(from_hz, to_hz);
        let resampler = Fft::<f64>::new_custom(
            from_hz as usize,
            to_hz as usize,
            block,
            1,
            1,
            WindowFunction::BlackmanHarris2,
            FixedSync::Input,
        )
        .map_err(|e| format!("resampler for {from_hz} Hz -> {to_hz} Hz: {e}"))?;
        let to_trim = resampler.output_delay();
        let output = vec![0.0; resampler.output_frames_max()];
        Ok(Self {
            inner: Some(StreamingFft {
                resampler,
                ratio: f64::from(to_hz) / f64::from(from_hz),
                block,
                pending: Vec::with_capacity(2 * block),
                output,
                to_trim,
                input_total: 0,
                output_total: 0,
            }),
        })
    }

    /// Feeds `samples`; hands every finished output piece to `emit`.
    pub fn push(&mut self, samples: &[f32], emit: &mut dyn FnMut(&[f32])) -> Result<(), String> {
        let Some(s) = &mut self.inner else {
            emit(samples);
            return Ok(());
        };
        s.input_total += samples.len() as u64;
        let mut rest = samples;
        loop {
            // As `process_all`, keep at least one sample back for the final partial block.
            let room = (s.block + 1).saturating_sub(s.pending.len());
            let take = room.min(rest.len());
            s.pending.extend(rest[..take].iter().map(|&x| f64::from(x)));
            rest = &rest[take..];
            if s.pending.len() <= s.block {
                return Ok(());
            }
            s.process(None, emit)?;
        }
    }

    /// Flushes the last partial block and the filter's tail, cut to `ceil(len · to / from)`.
    pub fn finish(mut self, emit: &mut dyn FnMut(&[f32])) -> Result<(), String> {
        let Some(s) = &mut self.inner else {
            return Ok(());
        };
        let expected = (s.ratio * s.input_total as f64).ceil() as u64;
        if s.input_total == 0 {
            return Ok(());
        }
        if !s.pending.is_empty() {
            let partial = s.pending.len();
            s.process(Some(partial), emit)?;
        }
        while s.output_total < expected {
            s.process(Some(0), emit)?;
        }
        // `emit` was handed at most `expected` samples (see `process`).
        Ok(())
    }
}

impl StreamingFft {
    /// One FFT block of `pending` (all of a whole block, or `partial` samples zero-padded).
    fn process(
        &mut self,
        partial: Option<usize>,
        emit: &mut dyn FnMut(&[f32]),
    ) -> Result<(), String> {
        use rubato::audioadapter_buffers::direct::InterleavedSlice as Slice;
        use rubato::Indexing;
        let used = partial.unwrap_or(self.block);
        let input_len = self.pending.len().max(self.block);
        self.pending.resize(input_len, 0.0);
        let adapter =
            Slice::new(&self.pending, 1, input_len).map_err(|e| format!("resampler input: {e}"))?;
        let out_len = self.output.len();
        let mut out = rubato::audioadapter_buffers::direct::InterleavedSlice::new_mut(
            &mut self.output,
            1,
            out_len,
        )
        .map_err(|e| format!("resampler output: {e}"))?;
        let indexing = Indexing {
            input_offset: 0,
            output_offset: 0,
            active_channels_mask: None,
            partial_len: partial,
        };
        let (_, produced) = self
            .resampler
            .process_into_buffer(&adapter, &mut out, Some(&indexing))
            .map_err(|e| format!("resampling: {e}"))?;
        self.pending.drain(..used.min(self.pending.len()));
        if partial.is_some() {
            self.pending.clear();
        }
        let trimmed = self.to_trim.min(produced);
        self.to_trim -= trimmed;
        let expected = if partial.is_some() {
            (self.ratio * self.input_total as f64).ceil() as u64
        } else {
            u64::MAX
        };
        let keep = (produced - trimmed).min((expected - self.output_total.min(expected)) as usize);
        if keep > 0 {
            let piece: Vec<f32> = self.output[trimmed..trimmed + keep]
                .iter()
                .map(|&s| s as f32)
                .collect();
            self.output_total += keep as u64;
            emit(&piece);
        }
        Ok(())
    }
}
