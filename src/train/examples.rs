//! Training examples: the training recordings, a crop's audio and frame roll, the features of
//! a batch of crops, and a loader thread that prepares the next batch while a step runs.
//!
//! Every example is a pure function of its [`Crop`] and the recording's files, so batches come
//! out the same whether they were prepared ahead, on another thread, or after a resume.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::data::Item;
use crate::model::{Tensor, N_BINS, N_KEYS};
use crate::notes::roll::{LabelRoll, HOP_LENGTH, KEY_COUNT};
use crate::notes::Note;
use crate::rng::Rng;
use crate::spectrogram::{features, Cqt, SpectrogramError};
use crate::synth::augment::Augmentation;

use super::sampler::{tiled_length, Crop};

/// The sample rate everything trains at.
pub const SAMPLE_RATE_HZ: u32 = 16_000;

#[derive(Debug, thiserror::Error)]
pub enum ExampleError {
    #[error("{name}: {source}")]
    Audio {
        name: String,
        #[source]
        source: crate::audio::AudioError,
    },
    #[error("{name}: {source}")]
    Notes {
        name: String,
        #[source]
        source: crate::notes::NotesError,
    },
    #[error("{name} ({}): the audio is empty", path.display())]
    EmptyAudio { name: String, path: PathBuf },
    #[error("{name}: {source}")]
    Spectrogram {
        name: String,
        #[source]
        source: SpectrogramError,
    },
    #[error("{name}: the audio changed since training started: {found} samples, {expected} when first read")]
    LengthChanged {
        name: String,
        expected: usize,
        found: usize,
    },
    #[error("the batch loader stopped unexpectedly")]
    LoaderGone,
}

/// One training recording: where it is, its notes, its length, and (when the audio cache
/// holds it) its samples.
#[derive(Debug, Clone)]
pub struct Recording {
    pub name: String,
    pub audio_path: PathBuf,
    pub label_path: PathBuf,
    /// Samples at 16 kHz as decoded, before tiling.
    pub samples: usize,
    pub notes: Vec<Note>,
    cached: Option<Arc<Vec<f32>>>,
}

impl Recording {
    /// Reads an item's notes and decodes its audio (checking both), keeping the samples when
    /// `keep_audio(sample_count)` says so.
    pub fn load(
        item: &Item,
        keep_audio: impl FnOnce(usize) -> bool,
    ) -> Result<Recording, ExampleError> {
        let notes = item.load_notes().map_err(|source| ExampleError::Notes {
            name: item.name.clone(),
            source,
        })?;
        let audio = item
            .load_audio(SAMPLE_RATE_HZ)
            .map_err(|source| ExampleError::Audio {
                name: item.name.clone(),
                source,
            })?;
        if audio.is_empty() {
            return Err(ExampleError::EmptyAudio {
                name: item.name.clone(),
                path: item.audio_path.clone(),
            });
        }
        let samples = audio.len();
        Ok(Recording {
            name: item.name.clone(),
            audio_path: item.audio_path.clone(),
            label_path: item.label_path.clone(),
            samples,
            notes,
            cached: keep_audio(samples).then(|| Arc::new(audio)),
        })
    }

    pub fn is_cached(&self) -> bool {
        self.cached.is_some()
    }

    /// The samples, from the cache or decoded again.
    pub fn audio(&self) -> Result<Arc<Vec<f32>>, ExampleError> {
        if let Some(audio) = &self.cached {
            return Ok(Arc::clone(audio));
        }
        let audio =
            crate::audio::load_mono(&self.audio_path, SAMPLE_RATE_HZ).map_err(|source| {
                ExampleError::Audio {
                    name: self.name.clone(),
                    source,
                }
            })?;
        if audio.len() != self.samples {
            return Err(ExampleError::LengthChanged {
                name: self.name.clone(),
                expected: self.samples,
                found: audio.len(),
            });
        }
        Ok(Arc::new(audio))
    }
}

/// `crop_samples` samples from `start_sample` of `audio` repeated end to end (a recording
/// shorter than the crop is tiled; see [`tiled_length`]).
pub fn crop_audio(audio: &[f32], start_sample: usize, crop_samples: usize) -> Vec<f32> {
    let tiled = tiled_length(audio.len(), crop_samples);
    assert!(start_sample + crop_samples <= tiled, "crop past the end");
    (start_sample..start_sample + crop_samples)
        .map(|i| audio[i % audio.len()])
        .collect()
}

/// The notes of a recording of `samples` samples tiled to `tiled_samples`: every copy shifted
/// by the copy's start time, offsets cut at the end of the copy they start in (the roll of the
/// untiled recording cuts them at its last frame too).
pub fn tile_notes(notes: &[Note], samples: usize, tiled_samples: usize) -> Vec<Note> {
    let copies = tiled_samples / samples;
    if copies <= 1 {
        return notes.to_vec();
    }
    let copy_s = samples as f64 / f64::from(SAMPLE_RATE_HZ);
    (0..copies)
        .flat_map(|copy| {
            let shift = copy as f64 * copy_s;
            notes.iter().map(move |n| Note {
                onset_s: n.onset_s + shift,
                offset_s: n.offset_s.min(copy_s) + shift,
                ..*n
            })
        })
        .collect()
}

/// The frame roll (`crop_frames × 88`, 1.0 where a key sounds) of the crop starting at
/// `start_frame`: the label roll of the whole (tiled) recording, rows `start_frame..+crop_frames`.
pub fn crop_frame_roll(
    notes: &[Note],
    samples: usize,
    crop_samples: usize,
    start_frame: usize,
    crop_frames: usize,
) -> Vec<f32> {
    let tiled = tiled_length(samples, crop_samples);
    let roll = LabelRoll::from_notes(
        &tile_notes(notes, samples, tiled),
        tiled,
        SAMPLE_RATE_HZ,
        HOP_LENGTH,
    );
    let frame = roll.frame_roll();
    let end = (start_frame + crop_frames).min(roll.frames);
    let mut out = frame[start_frame * KEY_COUNT..end * KEY_COUNT].to_vec();
    out.resize(crop_frames * KEY_COUNT, 0.0);
    out
}

/// The network's input for a batch of audio crops: each crop's CQT (last sample dropped),
/// `log(x + 1e-5)`, imagewise min-max normalisation, frames × 176, concatenated. This is the
/// one place where audio becomes features, so an augmentation of the audio goes just before it.
pub fn crop_features(cqt: &Cqt, crops: &[Vec<f32>]) -> Result<Vec<f32>, SpectrogramError> {
    let clips: Vec<&[f32]> = crops.iter().map(Vec::as_slice).collect();
    Ok(features::model_inputs(cqt, &clips)?
        .into_iter()
        .flat_map(|(_, values)| values)
        .collect())
}

/// The named augmentation settings a run can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AugmentPreset {
    /// The dry renders, as the paper trained.
    #[default]
    None,
    /// [`Augmentation::recorded`]: rooms of RT60 0.2–1.6 s, EQ, noise, gain.
    Recorded,
}

impl AugmentPreset {
    pub fn augmentation(self) -> Augmentation {
        match self {
            AugmentPreset::None => Augmentation::none(),
            AugmentPreset::Recorded => Augmentation::recorded(),
        }
    }
}

impl std::str::FromStr for AugmentPreset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(AugmentPreset::None),
            "recorded" => Ok(AugmentPreset::Recorded),
            _ => Err(format!(
                "unknown augmentation {s:?} (expected none or recorded)"
            )),
        }
    }
}

/// The seed of batch `batch_index` of `epoch`: the augmentation draws of a batch depend on
/// the run's seed and the batch's place only, so a resumed or prefetched batch is the same.
pub fn batch_seed(seed: u64, epoch: u64, batch_index: usize) -> u64 {
    let mut rng = Rng::new(seed ^ 0xa076_1d64_78bd_642f);
    let a = rng.next_u64();
    Rng::new(a ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (batch_index as u64).rotate_left(32))
        .next_u64()
}

/// [`batch_seed`] of `count` batches from `first_batch` on.
pub fn batch_seeds(seed: u64, epoch: u64, first_batch: usize, count: usize) -> Vec<u64> {
    (first_batch..first_batch + count)
        .map(|b| batch_seed(seed, epoch, b))
        .collect()
}

/// A training batch: the network's input (B, frames, 176) and the target frame roll (B, frames, 88).
#[derive(Debug, Clone)]
pub struct Batch {
    pub spec: Tensor,
    pub frame_roll: Tensor,
    /// Seconds the batch took to prepare (audio, crops, CQT, labels).
    pub prepare_s: f64,
}

/// Prepares the batch of `crops` from `recordings`: crops of `crop_frames × 512` samples, each
/// augmented with draws seeded by `seed` and its place in the batch (labels are unchanged:
/// every effect keeps the notes' pitches and times).
pub fn make_batch(
    recordings: &[Recording],
    cqt: &Cqt,
    crops: &[Crop],
    crop_frames: usize,
    augment: &Augmentation,
    seed: u64,
) -> Result<Batch, ExampleError> {
    let started = Instant::now();
    let crop_samples = crop_frames * HOP_LENGTH;
    let mut audio_crops = Vec::with_capacity(crops.len());
    let mut rolls = Vec::with_capacity(crops.len() * crop_frames * N_KEYS);
    for crop in crops {
        let rec = &recordings[crop.recording];
        let audio = rec.audio()?;
        let mut clip = crop_audio(&audio, crop.start_frame * HOP_LENGTH, crop_samples);
        if !augment.is_none() {
            let crop_seed = seed ^ (audio_crops.len() as u64).wrapping_mul(0xd1b5_4a32_d192_ed03);
            augment.apply(&mut clip, SAMPLE_RATE_HZ, &mut Rng::new(crop_seed));
        }
        audio_crops.push(clip);
        rolls.extend(crop_frame_roll(
            &rec.notes,
            rec.samples,
            crop_samples,
            crop.start_frame,
            crop_frames,
        ));
    }
    let spec = crop_features(cqt, &audio_crops).map_err(|source| ExampleError::Spectrogram {
        name: recordings[crops[0].recording].name.clone(),
        source,
    })?;
    let batch = crops.len();
    Ok(Batch {
        spec: Tensor::new(vec![batch, crop_frames, N_BINS], spec),
        frame_roll: Tensor::new(vec![batch, crop_frames, N_KEYS], rolls),
        prepare_s: started.elapsed().as_secs_f64(),
    })
}

/// Prepares a list of batches in order on its own thread, at most `depth` ahead of the consumer.
pub struct Prefetcher {
    receiver: mpsc::Receiver<Result<Batch, ExampleError>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Prefetcher {
    pub fn start(
        recordings: Arc<Vec<Recording>>,
        cqt: Arc<Cqt>,
        batches: Vec<Vec<Crop>>,
        crop_frames: usize,
        augment: Augmentation,
        seeds: Vec<u64>,
        depth: usize,
    ) -> Prefetcher {
        assert_eq!(batches.len(), seeds.len(), "one seed per batch");
        let (sender, receiver) = mpsc::sync_channel(depth.max(1));
        let handle = thread::Builder::new()
            .name("mtosi-batch-loader".into())
            .spawn(move || {
                for (crops, seed) in batches.into_iter().zip(seeds) {
                    let batch = make_batch(&recordings, &cqt, &crops, crop_frames, &augment, seed);
                    let failed = batch.is_err();
                    if sender.send(batch).is_err() || failed {
                        return;
                    }
                }
            })
            .expect("spawning the batch loader thread");
        Prefetcher {
            receiver,
            handle: Some(handle),
        }
    }

    /// The next batch and how long the caller waited for it.
    pub fn next_batch(&mut self) -> Result<(Batch, Duration), ExampleError> {
        let started = Instant::now();
        let batch = self
            .receiver
            .recv()
            .map_err(|_| ExampleError::LoaderGone)??;
        Ok((batch, started.elapsed()))
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Unblock the loader (its send fails once the receiver is gone), then wait for it.
        let (_, dummy) = mpsc::sync_channel(1);
        drop(std::mem::replace(&mut self.receiver, dummy));
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(onset_s: f64, offset_s: f64, pitch: u8) -> Note {
        Note {
            onset_s,
            offset_s,
            pitch,
            velocity: 64,
        }
    }

    #[test]
    fn a_short_recording_is_repeated_end_to_end() {
        let audio: Vec<f32> = (0..5).map(|i| i as f32).collect();
        assert_eq!(
            crop_audio(&audio, 0, 12),
            [0., 1., 2., 3., 4., 0., 1., 2., 3., 4., 0., 1.]
        );
        let long: Vec<f32> = (0..20).map(|i| i as f32).collect();
        assert_eq!(crop_audio(&long, 8, 4), [8., 9., 10., 11.]);
    }

    #[test]
    fn tiled_labels_repeat_with_the_audio() {
        // 10 frames of audio tiled to hold a crop of 32 frames: 4 copies.
        let samples = 10 * HOP_LENGTH;
        let crop_frames = 32;
        let crop_samples = crop_frames * HOP_LENGTH;
        // A note on frames 2..5 of each copy; the second note runs past the end and is cut.
        let notes = [note(2.0 * 0.032, 5.0 * 0.032, 60), note(0.25, 9.0, 70)];
        let roll = crop_frame_roll(&notes, samples, crop_samples, 0, crop_frames);
        let col = |pitch: u8| -> Vec<u8> {
            (0..crop_frames)
                .map(|f| roll[f * KEY_COUNT + (pitch - 21) as usize] as u8)
                .collect()
        };
        let period = |v: &[u8]| v[..10].to_vec();
        let c60 = col(60);
        assert_eq!(period(&c60), [0, 0, 1, 1, 1, 0, 0, 0, 0, 0]);
        for copy in 1..3 {
            assert_eq!(c60[copy * 10..copy * 10 + 10], c60[..10], "copy {copy}");
        }
        // 0.25 s = frame 7.8 → 8; cut at the copy's end (10 frames).
        let c70 = col(70);
        assert_eq!(period(&c70), [0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
        assert_eq!(c70[10..20], c70[..10]);
    }

    #[test]
    fn a_crop_of_a_long_recording_is_a_window_of_its_roll() {
        let samples = 100 * HOP_LENGTH + 1;
        let notes = [note(1.0, 2.0, 64)];
        let whole = LabelRoll::from_notes(&notes, samples, SAMPLE_RATE_HZ, HOP_LENGTH).frame_roll();
        let crop = crop_frame_roll(&notes, samples, 40 * HOP_LENGTH, 20, 40);
        assert_eq!(crop, whole[20 * KEY_COUNT..60 * KEY_COUNT]);
    }
}
