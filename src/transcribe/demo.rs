//! `mtosi demo` as a library call: render a short procedural piece with a SoundFont, transcribe
//! it, score it against the notes it was rendered from, and write what a person would look at.
//! No dataset, no GPU, no download. Without a bundled model, a small demo model is trained
//! first for a fixed time on other procedural pieces rendered the same way ([`train_demo_model`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustysynth::SoundFont;

use crate::audio::write_wav16;
use crate::decode::{DecodeOptions, FrameNote};
use crate::metrics::{score_recording, RecordingScores, ReferenceKind};
use crate::model::training::{train_step, Optimizer, TrainingConfig};
use crate::model::{Tensor, Transcriber, N_BINS, N_KEYS};
use crate::notes::midi::MidiSettings;
use crate::notes::roll::{LabelRoll, HOP_LENGTH};
use crate::notes::Note;
use crate::rng::Rng;
use crate::spectrogram::features::model_inputs;
use crate::spectrogram::Cqt;
use crate::synth::random::{random_piece, RandomMusic};
use crate::synth::render::{render_notes, RenderSettings};

use super::outputs::{notes_in_seconds, write_midi, write_roll_png};
use super::{transcribe_file, TranscribeOptions};

/// The demo piece: 20 s of procedural piano music in a middle register, at most three notes
/// at once.
pub fn demo_music(seed: u64, duration_s: f64) -> RandomMusic {
    RandomMusic {
        seed,
        duration_s,
        onsets_per_s: 2.5,
        max_chord: 2,
        max_polyphony: 3,
        pitch_low: 48,
        pitch_high: 84,
        min_note_s: 0.15,
        max_note_s: 1.0,
        velocity_low: 60,
        velocity_high: 100,
    }
}

/// Seed of the demo piece; the training pieces use other seeds.
pub const DEMO_PIECE_SEED: u64 = 20_261_201;

/// How the fallback demo model is trained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemoTraining {
    /// Training stops after the first step that ends past this.
    pub budget: Duration,
    /// Crops per step.
    pub batch: usize,
    /// Frames per crop.
    pub crop_frames: usize,
    /// Procedural pieces rendered for training.
    pub pieces: u64,
    pub seed: u64,
}

impl Default for DemoTraining {
    fn default() -> Self {
        Self {
            budget: Duration::from_secs(90),
            batch: 4,
            crop_frames: 128,
            pieces: 12,
            seed: 7,
        }
    }
}

/// A rendered training piece: its audio and its frame roll (the loss's target).
struct TrainingPiece {
    audio: Vec<f32>,
    frame_roll: Vec<f32>,
    frames: usize,
}

/// Trains a fresh network on procedural music rendered with `sound_font` (program 0) for
/// `settings.budget`, the protocol's training step (BCE, hooks, clipping, Adam at lr 0.01) on
/// random crops. `on_step(step, loss)` reports progress. Returns the model and its step count.
pub fn train_demo_model(
    sound_font: &Arc<SoundFont>,
    cqt: &Cqt,
    settings: &DemoTraining,
    on_step: &mut dyn FnMut(u64, f32),
) -> Result<(Transcriber, u64), String> {
    let render = RenderSettings::default();
    let pieces: Vec<TrainingPiece> = (0..settings.pieces)
        .map(|index| {
            let notes = random_piece(&demo_music(settings.seed, 20.0), index);
            let audio = render_notes(sound_font, &notes, &render).map_err(|e| e.to_string())?;
            let label = LabelRoll::from_notes(&notes, audio.len(), 16_000, HOP_LENGTH);
            Ok(TrainingPiece {
                frame_roll: label.frame_roll(),
                frames: label.frames,
                audio,
            })
        })
        .collect::<Result<_, String>>()?;
    let mut model = Transcriber::new(settings.seed);
    let config = TrainingConfig::default();
    let mut optimizer = Optimizer::new(&mut model, config.adam);
    let mut rng = Rng::new(settings.seed);
    let crop = settings.crop_frames;
    let started = Instant::now();
    let mut step = 0u64;
    while started.elapsed() < settings.budget {
        let mut clips: Vec<&[f32]> = Vec::with_capacity(settings.batch);
        let mut targets = Vec::with_capacity(settings.batch * crop * N_KEYS);
        for _ in 0..settings.batch {
            let piece = &pieces[rng.range_usize(0, pieces.len() - 1)];
            let start = rng.range_usize(0, piece.frames.saturating_sub(crop));
            let from = start * HOP_LENGTH;
            // One sample more than the crop's frames need, as the model drops the last one.
            let to = (from + crop * HOP_LENGTH + 1).min(piece.audio.len());
            clips.push(&piece.audio[from..to]);
            let mut target = piece.frame_roll[start * N_KEYS..].to_vec();
            target.resize(crop * N_KEYS, 0.0);
            target.truncate(crop * N_KEYS);
            targets.extend_from_slice(&target);
        }
        let inputs = model_inputs(cqt, &clips).map_err(|e| e.to_string())?;
        let mut spec = Vec::with_capacity(settings.batch * crop * N_BINS);
        for (frames, mut values) in inputs {
            values.resize(crop * N_BINS, 0.0);
            debug_assert!(frames <= crop);
            spec.extend_from_slice(&values);
        }
        let loss = train_step(
            &mut model,
            &mut optimizer,
            &Tensor::new(vec![settings.batch, crop, N_BINS], spec),
            &Tensor::new(vec![settings.batch, crop, N_KEYS], targets),
            &config,
        )
        .map_err(|e| e.to_string())?;
        step += 1;
        on_step(step, loss);
    }
    Ok((model, step))
}

/// What the demo wrote and measured.
pub struct DemoReport {
    pub wav: PathBuf,
    pub midi: PathBuf,
    pub reference_midi: PathBuf,
    pub picture: PathBuf,
    pub scores: RecordingScores,
    pub reference_notes: usize,
    pub estimated_notes: usize,
    pub seconds: f64,
}

/// Renders the demo piece into `out_dir`, transcribes the WAV file with `model` through
/// [`transcribe_file`] (the path `mtosi transcribe` takes), scores the estimate against the
/// rendered notes and writes `demo.wav`, `demo-reference.mid`, `demo-transcribed.mid` and
/// `demo-roll.png` (the probabilities, the reference notes outlined in cyan, the transcribed
/// ones in green).
pub fn run_demo(
    out_dir: &Path,
    sound_font: &Arc<SoundFont>,
    model: &mut Transcriber,
    cqt: &Cqt,
) -> Result<DemoReport, String> {
    std::fs::create_dir_all(out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let notes = random_piece(&demo_music(DEMO_PIECE_SEED, 20.0), 0);
    let audio =
        render_notes(sound_font, &notes, &RenderSettings::default()).map_err(|e| e.to_string())?;
    let wav = out_dir.join("demo.wav");
    write_wav16(&wav, &audio, 16_000).map_err(|e| e.to_string())?;
    let reference_midi = out_dir.join("demo-reference.mid");
    let midi_settings = MidiSettings::default();
    write_midi(&reference_midi, &notes, &midi_settings).map_err(|e| e.to_string())?;

    let options = TranscribeOptions::default();
    let transcription =
        transcribe_file(&wav, model, cqt, &options, &mut |_| {}).map_err(|e| e.to_string())?;
    let midi = out_dir.join("demo-transcribed.mid");
    let estimate = notes_in_seconds(&transcription.notes, 80);
    write_midi(&midi, &estimate, &midi_settings).map_err(|e| e.to_string())?;
    let scores = score_recording(
        &transcription.roll,
        &notes,
        audio.len(),
        ReferenceKind::Annotation,
        &DecodeOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    let reference_frames: Vec<FrameNote> = notes_as_frames(&notes);
    let picture = out_dir.join("demo-roll.png");
    write_roll_png(
        &picture,
        &transcription.roll,
        transcription.frames,
        &transcription.notes,
        Some(&reference_frames),
    )
    .map_err(|e| e.to_string())?;
    Ok(DemoReport {
        wav,
        midi,
        reference_midi,
        picture,
        scores,
        reference_notes: notes.len(),
        estimated_notes: estimate.len(),
        seconds: audio.len() as f64 / 16_000.0,
    })
}

/// Notes on the 32 ms frame grid (for the picture only): onset and offset rounded to frames,
/// at least one frame long.
fn notes_as_frames(notes: &[Note]) -> Vec<FrameNote> {
    let frame = |t: f64| (t * 16_000.0 / HOP_LENGTH as f64).round() as usize;
    notes
        .iter()
        .filter(|n| (21..=108).contains(&n.pitch))
        .map(|n| {
            let start = frame(n.onset_s);
            FrameNote {
                key: usize::from(n.pitch - 21),
                start,
                end: frame(n.offset_s).max(start + 1),
            }
        })
        .collect()
}
