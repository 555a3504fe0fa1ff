//! The network's input of a recording of any length, computed as its audio streams in:
//! exactly [`crate::spectrogram::features::model_input`] of the whole recording, holding only
//! a few seconds of audio at a time.
//!
//! Frame `t` of the CQT reads samples `[t·hop − pad, t·hop + pad)` of the audio (reflected past
//! its ends). So the frames `[t0, t1)` of the whole are the frames of any slice of the audio
//! that starts on a frame boundary at least `pad` samples before `t0·hop` (or at 0) and ends at
//! least `pad` samples after `(t1 − 1)·hop` (or at the end): the slice's own reflections fall
//! only on frames that are thrown away. The log of each span is kept (0.7 KB per 32 ms frame,
//! 80 MB for an hour); the imagewise normalisation needs the whole recording's minimum and
//! maximum, so it runs once at the end.

use rayon::prelude::*;

use crate::spectrogram::cqt::FRAMES_PER_TASK;
use crate::spectrogram::features::{log_compress, normalize_imagewise};
use crate::spectrogram::{Cqt, SpectrogramError};

/// Least frames computed per CQT call: long enough that the slice margins (2 × 33 frames)
/// cost little, short enough that the audio held stays small (~2.5 MB). [`StreamingFeatures::new`]
/// rounds it up so that a span with its margins is an even number of the CQT's parallel tasks
/// (1214 + 2 × 33 = 8 × 160 frames): with 1024 it was 7 tasks, 4 on one thread and 3 on the other.
pub const FEATURE_SPAN_FRAMES: usize = 1024;

/// Frames per parallel task of the transpose and log of a span (64 × 176 values, 45 KB).
const TRANSPOSE_FRAMES: usize = 64;

/// Accumulates model-input frames from pieces of mono audio at the CQT's rate.
pub struct StreamingFeatures<'a> {
    cqt: &'a Cqt,
    span_frames: usize,
    /// Frames of margin on each side of a span's slice (`ceil(pad / hop) + 1`).
    margin_frames: usize,
    /// Audio from absolute sample `held_from` on.
    held: Vec<f32>,
    held_from: usize,
    /// Samples seen so far.
    seen: usize,
    /// The first frame not computed yet.
    next_frame: usize,
    /// Log-compressed frames × bins, row-major.
    values: Vec<f32>,
    loudest: f32,
}

/// Frames of margin on each side of a span's slice: its reflections fall only on these.
fn margin_frames(cqt: &Cqt) -> usize {
    cqt.padding().div_ceil(cqt.params().hop_length) + 1
}

/// The finished model input of one recording.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInput {
    pub frames: usize,
    /// `frames × 176`, row-major, normalised to [0, 1].
    pub values: Vec<f32>,
    /// Samples of audio the frames were computed from (the recording less its last sample).
    pub samples: usize,
    /// The largest |sample| of the recording.
    pub peak: f32,
}

impl<'a> StreamingFeatures<'a> {
    pub fn new(cqt: &'a Cqt) -> Self {
        let margins = 2 * margin_frames(cqt);
        let tasks = (FEATURE_SPAN_FRAMES + margins).div_ceil(FRAMES_PER_TASK);
        Self::with_span(cqt, (tasks + tasks % 2) * FRAMES_PER_TASK - margins)
    }

    /// As [`new`](Self::new) with `span_frames` frames per CQT call (tests use short spans).
    pub fn with_span(cqt: &'a Cqt, span_frames: usize) -> Self {
        Self {
            cqt,
            span_frames: span_frames.max(1),
            margin_frames: margin_frames(cqt),
            held: Vec::new(),
            held_from: 0,
            seen: 0,
            next_frame: 0,
            values: Vec::new(),
            loudest: 0.0,
        }
    }

    /// Appends `piece` (finite samples) and computes every span it completes.
    pub fn push(&mut self, piece: &[f32]) -> Result<(), SpectrogramError> {
        if let Some(bad) = crate::audio::first_non_finite(piece) {
            return Err(SpectrogramError::NonFiniteSample {
                index: self.seen + bad,
                value: piece[bad],
            });
        }
        self.loudest = piece.iter().fold(self.loudest, |m, s| m.max(s.abs()));
        self.held.extend_from_slice(piece);
        self.seen += piece.len();
        let hop = self.cqt.params().hop_length;
        loop {
            let end_frame = self.next_frame + self.span_frames;
            let slice_end = (end_frame - 1 + self.margin_frames) * hop;
            // The model drops the recording's last sample; a slice must end before it.
            if slice_end + 1 > self.seen {
                return Ok(());
            }
            self.compute(end_frame, slice_end)?;
        }
    }

    /// Computes the remaining frames and normalises the whole image.
    pub fn finish(mut self) -> Result<ModelInput, SpectrogramError> {
        let samples = self.seen.saturating_sub(1);
        if samples == 0 {
            return Err(SpectrogramError::EmptyAudio);
        }
        let frames = self.cqt.n_frames(samples);
        if self.next_frame < frames {
            self.compute(frames, samples)?;
        }
        normalize_imagewise(&mut self.values);
        Ok(ModelInput {
            frames,
            values: self.values,
            samples,
            peak: self.loudest,
        })
    }

    /// Frames `next_frame .. end_frame` from the slice of audio that ends at `slice_end`.
    fn compute(&mut self, end_frame: usize, slice_end: usize) -> Result<(), SpectrogramError> {
        let hop = self.cqt.params().hop_length;
        let first_slice_frame = self.next_frame.saturating_sub(self.margin_frames);
        let slice_start = first_slice_frame * hop;
        debug_assert!(slice_start >= self.held_from);
        let slice = &self.held[slice_start - self.held_from..slice_end - self.held_from];
        let spectrogram = self.cqt.magnitude(slice)?;
        let n_bins = spectrogram.n_bins;
        let n_frames = spectrogram.n_frames;
        let skip = self.next_frame - first_slice_frame;
        let count = end_frame - self.next_frame;
        let start = self.values.len();
        self.values.resize(start + count * n_bins, 0.0);
        // Transposed to frames × bins and log-compressed in pieces of frames, in parallel: on
        // one thread it left the other core idle for about 5 % of the stage.
        let bins = &spectrogram.values;
        self.values[start..]
            .par_chunks_mut(TRANSPOSE_FRAMES * n_bins)
            .enumerate()
            .for_each(|(piece, out)| {
                let from = skip + piece * TRANSPOSE_FRAMES;
                let frames = out.len() / n_bins;
                for (bin, row) in bins.chunks_exact(n_frames).enumerate() {
                    for (frame, &v) in row[from..from + frames].iter().enumerate() {
                        out[frame * n_bins + bin] = v;
                    }
                }
                log_compress(out);
            });
        self.next_frame = end_frame;
        // Keep the audio the next slice starts from.
        let keep_from = self.next_frame.saturating_sub(self.margin_frames) * hop;
        if keep_from > self.held_from {
            self.held.drain(..keep_from - self.held_from);
            self.held_from = keep_from;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::spectrogram::features::model_input;
    use crate::spectrogram::CqtParams;

    /// A small CQT (pad 1024 samples = 16 hops) so the test covers many spans quickly.
    fn small_cqt() -> Cqt {
        Cqt::new(CqtParams {
            sample_rate_hz: 8000,
            hop_length: 64,
            fmin_hz: 100.0,
            n_bins: 24,
            bins_per_octave: 12,
            filter_scale: 1.0,
        })
        .unwrap()
    }

    #[test]
    fn streamed_features_equal_the_whole_recordings_for_any_piece_and_span_sizes() {
        let cqt = small_cqt();
        let seed = crate::device::equivalence::seed_from_env();
        println!("seed {seed} (replay with MTOSI_TEST_SEED={seed})");
        let mut rng = Rng::new(seed);
        // Lengths around the padding (a recording shorter than it reflects repeatedly), on and
        // off frame boundaries, and long ones spanning many spans.
        for length in [
            2,
            700,
            1025,
            2048,
            2049,
            64 * 77,
            64 * 77 + 1,
            20_000,
            33_333,
        ] {
            let audio: Vec<f32> = (0..length).map(|_| rng.uniform_f32() - 0.5).collect();
            let (frames, whole) = model_input(&cqt, &audio).unwrap();
            // 150: several parallel pieces of the transpose per span, the last one partial.
            for span in [1, 7, 40, 150] {
                let mut features = StreamingFeatures::with_span(&cqt, span);
                let mut at = 0;
                while at < audio.len() {
                    let piece = 1 + (rng.next_u64() % 3000) as usize;
                    let end = (at + piece).min(audio.len());
                    features.push(&audio[at..end]).unwrap();
                    at = end;
                }
                let streamed = features.finish().unwrap();
                assert_eq!(streamed.frames, frames, "length {length}, span {span}");
                assert_eq!(streamed.values, whole, "length {length}, span {span}");
            }
        }
    }

    #[test]
    fn the_models_spans_are_an_even_number_of_cqt_tasks_and_stream_exactly() {
        let cqt = crate::transcribe::model_cqt();
        let features = StreamingFeatures::new(&cqt);
        let tasks = (features.span_frames + 2 * features.margin_frames) / FRAMES_PER_TASK;
        assert_eq!(
            (features.span_frames + 2 * features.margin_frames) % FRAMES_PER_TASK,
            0
        );
        assert!(tasks.is_multiple_of(2) && features.span_frames >= FEATURE_SPAN_FRAMES);
        let seed = crate::device::equivalence::seed_from_env();
        println!("seed {seed} (replay with MTOSI_TEST_SEED={seed})");
        let mut rng = Rng::new(seed);
        // Two whole spans and part of a third, fed in pieces of a decoder's size.
        let hop = cqt.params().hop_length;
        let audio: Vec<f32> = (0..2 * features.span_frames * hop + 12_345)
            .map(|_| rng.uniform_f32() - 0.5)
            .collect();
        let mut features = features;
        for piece in audio.chunks(4096) {
            features.push(piece).unwrap();
        }
        let streamed = features.finish().unwrap();
        let (frames, whole) = model_input(&cqt, &audio).unwrap();
        assert_eq!(streamed.frames, frames);
        assert!(streamed.values == whole, "streamed values differ");
    }

    #[test]
    fn a_single_sample_is_empty_audio_and_nan_is_named_by_position() {
        let cqt = small_cqt();
        let mut one = StreamingFeatures::new(&cqt);
        one.push(&[0.5]).unwrap();
        assert!(matches!(one.finish(), Err(SpectrogramError::EmptyAudio)));
        let mut nan = StreamingFeatures::new(&cqt);
        nan.push(&[0.0; 10]).unwrap();
        let err = nan.push(&[0.0, f32::NAN]).unwrap_err();
        assert!(
            matches!(err, SpectrogramError::NonFiniteSample { index: 11, .. }),
            "{err}"
        );
    }
}
