//! Audio file → MIDI: the whole data path as one library call.
//!
//! [`transcribe_file`] streams the file through the decoder and resampler
//! ([`crate::audio::stream`]) into the CQT ([`features`]), runs the network over the model
//! input in overlapping chunks ([`chunked`]) and decodes the probability roll into notes
//! ([`crate::decode`]); [`outputs`] writes the MIDI file, the notes, the roll and its picture.
//! Memory: the model input (0.7 KB per 32 ms frame, 80 MB per hour), the roll (0.35 KB per
//! frame) and one batch of network windows; never the audio file or its samples whole.
//! [`bundled`] is the model embedded in the binary.

pub mod bundled;
pub mod chunked;
pub mod demo;
pub mod features;
pub mod outputs;

use std::path::{Path, PathBuf};

use crate::audio::stream::{stream_mono, StreamSummary};
use crate::audio::{AudioError, MODEL_SAMPLE_RATE_HZ};
use crate::decode::{decode_frame_notes, DecodeOptions, FrameNote};
use crate::device::Device;
use crate::model::{ModelError, Transcriber, MIN_FRAMES};
use crate::spectrogram::{Cqt, CqtParams, SpectrogramError};

pub use chunked::{frame_probabilities_chunked, frame_probabilities_chunked_on, ChunkPlan};
pub use features::{ModelInput, StreamingFeatures};

/// Errors of transcribing one file; each names it.
#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error("{}: {source}", path.display())]
    Features {
        path: PathBuf,
        source: SpectrogramError,
    },
    #[error("{}: the audio is silent (every sample is 0): nothing to transcribe", path.display())]
    Silent { path: PathBuf },
    #[error(
        "{}: the audio is too short to transcribe: {samples} samples at 16 kHz ({:.3} s); the network needs at least {MIN_FRAMES} frames ({} samples, {:.2} s)",
        path.display(), *samples as f64 / 16_000.0, min_samples(), min_samples() as f64 / 16_000.0
    )]
    TooShort { path: PathBuf, samples: usize },
    #[error("{}: {source}", path.display())]
    Model { path: PathBuf, source: ModelError },
}

/// Samples (at 16 kHz, before the model drops the last one) that give [`MIN_FRAMES`] frames.
fn min_samples() -> usize {
    (MIN_FRAMES - 1) * crate::notes::roll::HOP_LENGTH + 2
}

/// What a transcription is run with besides the model.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TranscribeOptions {
    pub chunks: ChunkPlan,
    pub decode: DecodeOptions,
}

/// What one file became.
#[derive(Debug, Clone)]
pub struct Transcription {
    pub frames: usize,
    /// `frames × 88` probabilities, the network's output before decoding.
    pub roll: Vec<f32>,
    pub notes: Vec<FrameNote>,
    /// The file as decoded (format, rate, channels, length).
    pub source: StreamSummary,
    /// Audio samples at 16 kHz that the network saw.
    pub samples: usize,
    /// Seconds spent decoding, resampling and in the CQT; in the network; decoding the roll.
    pub reading_s: f64,
    pub network_s: f64,
    pub decoding_s: f64,
}

/// Progress of one file, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Decoding and the CQT: seconds of audio read so far.
    Reading { seconds: u64 },
    /// The network: windows done of all.
    Network { done: usize, total: usize },
}

/// The paper's CQT, built once per process (its kernels take ~0.1 s).
pub fn model_cqt() -> Cqt {
    Cqt::new(CqtParams::default()).expect("the paper's CQT parameters are valid")
}

/// Streams `path` into the network's input (exactly `spectrogram::features::model_input` of
/// the file's 16 kHz mono audio), refusing silent and too-short recordings.
pub fn model_input_of_file(
    path: &Path,
    cqt: &Cqt,
    on_stage: &mut dyn FnMut(Stage),
) -> Result<(ModelInput, StreamSummary), TranscribeError> {
    let features_error = |source| TranscribeError::Features {
        path: path.to_path_buf(),
        source,
    };
    let mut features = StreamingFeatures::new(cqt);
    let mut read = 0u64;
    let summary = stream_mono::<TranscribeError>(path, MODEL_SAMPLE_RATE_HZ, &mut |piece| {
        features.push(piece).map_err(features_error)?;
        let before = read / u64::from(MODEL_SAMPLE_RATE_HZ);
        read += piece.len() as u64;
        let seconds = read / u64::from(MODEL_SAMPLE_RATE_HZ);
        if seconds != before {
            on_stage(Stage::Reading { seconds });
        }
        Ok(())
    })?;
    let samples = summary.output_samples as usize;
    if samples < min_samples() {
        return Err(TranscribeError::TooShort {
            path: path.to_path_buf(),
            samples,
        });
    }
    let input = features.finish().map_err(features_error)?;
    if input.peak == 0.0 {
        return Err(TranscribeError::Silent {
            path: path.to_path_buf(),
        });
    }
    Ok((input, summary))
}

/// Transcribes one audio file with `model`: the probability roll and the decoded notes.
pub fn transcribe_file(
    path: &Path,
    model: &mut Transcriber,
    cqt: &Cqt,
    options: &TranscribeOptions,
    on_stage: &mut dyn FnMut(Stage),
) -> Result<Transcription, TranscribeError> {
    transcribe_file_on(&Device::Cpu, path, model, cqt, options, on_stage)
}

/// [`transcribe_file`] with the network on `device`.
pub fn transcribe_file_on(
    device: &Device,
    path: &Path,
    model: &mut Transcriber,
    cqt: &Cqt,
    options: &TranscribeOptions,
    on_stage: &mut dyn FnMut(Stage),
) -> Result<Transcription, TranscribeError> {
    let started = std::time::Instant::now();
    let (input, source) = model_input_of_file(path, cqt, on_stage)?;
    let reading_s = started.elapsed().as_secs_f64();
    let roll = frame_probabilities_chunked_on(
        device,
        model,
        &input.values,
        input.frames,
        &options.chunks,
        &mut |done, total| on_stage(Stage::Network { done, total }),
    )
    .map_err(|source| TranscribeError::Model {
        path: path.to_path_buf(),
        source,
    })?;
    let network_s = started.elapsed().as_secs_f64() - reading_s;
    let notes = decode_frame_notes(&roll, &options.decode);
    let decoding_s = started.elapsed().as_secs_f64() - reading_s - network_s;
    Ok(Transcription {
        reading_s,
        network_s,
        decoding_s,
        frames: input.frames,
        roll,
        notes,
        source,
        samples: input.samples,
    })
}
