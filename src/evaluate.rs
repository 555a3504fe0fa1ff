//! Evaluation on whole recordings (PROTOCOL.md, "Evaluation"): every recording of a split,
//! uncropped, through CQT → network → decoding → the paper's metrics; per-recording scores,
//! their mean and standard deviation, and the files `mtosi eval` writes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::data::Item;
use crate::decode::DecodeOptions;
use crate::device::Device;
use crate::metrics::{
    mean_std, score_recording, MetricsError, Prf, RecordingScores, ReferenceKind,
};
use crate::model::{inference, Transcriber};
use crate::notes::roll::{HIGHEST_KEY, LOWEST_KEY};
use crate::spectrogram::{features, Cqt};
use crate::train::examples::SAMPLE_RATE_HZ;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
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
    #[error("{name}: {source}")]
    Spectrogram {
        name: String,
        #[source]
        source: crate::spectrogram::SpectrogramError,
    },
    #[error("{name}: {source}")]
    Model {
        name: String,
        #[source]
        source: crate::model::ModelError,
    },
    #[error("{name}: {source}")]
    Metrics {
        name: String,
        #[source]
        source: MetricsError,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The scores of one recording.
#[derive(Debug, Clone, Serialize)]
pub struct RecordingResult {
    pub name: String,
    pub frames: usize,
    pub seconds: f64,
    /// Annotated notes, and those of them outside the 88 keys (MIDI 21–108), which no
    /// piano-roll output can hold: misses against the annotation, absent from the label roll.
    pub annotated_notes: usize,
    pub notes_outside_keys: usize,
    pub scores: RecordingScores,
}

/// The frame probabilities (frames × 88) of a whole recording.
pub fn recording_roll(
    device: &Device,
    model: &mut Transcriber,
    cqt: &Cqt,
    audio: &[f32],
) -> Result<Vec<f32>, EvalError> {
    let (frames, spec) =
        features::model_input(cqt, audio).map_err(|source| EvalError::Spectrogram {
            name: String::new(),
            source,
        })?;
    inference::frame_probabilities_on(device, model, &spec, frames).map_err(|source| {
        EvalError::Model {
            name: String::new(),
            source,
        }
    })
}

/// Scores every item, whole, in order, the network on `device`; `progress(i, name)` is called
/// before each.
pub fn evaluate_items(
    device: &Device,
    model: &mut Transcriber,
    cqt: &Cqt,
    items: &[Item],
    reference: ReferenceKind,
    decode: &DecodeOptions,
    progress: impl FnMut(usize, &str),
) -> Result<Vec<RecordingResult>, EvalError> {
    Ok(
        evaluate_items_against(device, model, cqt, items, &[reference], decode, progress)?
            .pop()
            .expect("one reference in, one list out"),
    )
}

/// [`evaluate_items`] against several references at once (the network runs once per
/// recording): one result list per reference, in the order given.
pub fn evaluate_items_against(
    device: &Device,
    model: &mut Transcriber,
    cqt: &Cqt,
    items: &[Item],
    references: &[ReferenceKind],
    decode: &DecodeOptions,
    progress: impl FnMut(usize, &str),
) -> Result<Vec<Vec<RecordingResult>>, EvalError> {
    let scorings: Vec<_> = references.iter().map(|&r| (r, *decode)).collect();
    evaluate_items_scored(device, model, cqt, items, &scorings, progress)
}

/// [`evaluate_items`] for several (reference, decoding) pairs at once, e.g. a threshold sweep:
/// the network runs once per recording; one result list per pair, in the order given.
pub fn evaluate_items_scored(
    device: &Device,
    model: &mut Transcriber,
    cqt: &Cqt,
    items: &[Item],
    scorings: &[(ReferenceKind, DecodeOptions)],
    mut progress: impl FnMut(usize, &str),
) -> Result<Vec<Vec<RecordingResult>>, EvalError> {
    let mut results = vec![Vec::with_capacity(items.len()); scorings.len()];
    for (i, item) in items.iter().enumerate() {
        progress(i, &item.name);
        let name = || item.name.clone();
        let audio = item
            .load_audio(SAMPLE_RATE_HZ)
            .map_err(|source| EvalError::Audio {
                name: name(),
                source,
            })?;
        let notes = item.load_notes().map_err(|source| EvalError::Notes {
            name: name(),
            source,
        })?;
        let roll = recording_roll(device, model, cqt, &audio).map_err(|e| match e {
            EvalError::Spectrogram { source, .. } => EvalError::Spectrogram {
                name: name(),
                source,
            },
            EvalError::Model { source, .. } => EvalError::Model {
                name: name(),
                source,
            },
            other => other,
        })?;
        // Each recording's activations have their own sizes: give them back to the allocator
        // rather than keep them pooled.
        crate::model::storage::release_pool();
        for (out, (reference, decode)) in results.iter_mut().zip(scorings) {
            let scores = score_recording(&roll, &notes, audio.len(), *reference, decode).map_err(
                |source| EvalError::Metrics {
                    name: name(),
                    source,
                },
            )?;
            out.push(RecordingResult {
                name: item.name.clone(),
                frames: roll.len() / crate::model::N_KEYS,
                seconds: audio.len() as f64 / f64::from(SAMPLE_RATE_HZ),
                annotated_notes: notes.len(),
                notes_outside_keys: notes
                    .iter()
                    .filter(|n| !(LOWEST_KEY..=HIGHEST_KEY).contains(&n.pitch))
                    .count(),
                scores,
            });
        }
    }
    Ok(results)
}

/// The nine figures of a score set, with their column names.
pub fn figures(s: &RecordingScores) -> [(&'static str, f64); 9] {
    [
        ("frame_precision", s.frame.precision),
        ("frame_recall", s.frame.recall),
        ("frame_f1", s.frame.f1),
        ("note_precision", s.note.precision),
        ("note_recall", s.note.recall),
        ("note_f1", s.note.f1),
        ("note_with_offset_precision", s.note_with_offset.precision),
        ("note_with_offset_recall", s.note_with_offset.recall),
        ("note_with_offset_f1", s.note_with_offset.f1),
    ]
}

/// Mean and standard deviation over the results.
pub fn summary(results: &[RecordingResult]) -> (RecordingScores, RecordingScores) {
    let scores: Vec<RecordingScores> = results.iter().map(|r| r.scores.clone()).collect();
    mean_std(&scores)
}

/// The per-recording CSV: name, frames, seconds, then the nine figures.
pub fn results_csv(results: &[RecordingResult]) -> String {
    let mut text = String::from("recording,frames,seconds");
    let empty = RecordingScores {
        frame: Prf::default(),
        note: Prf::default(),
        note_with_offset: Prf::default(),
    };
    for (name, _) in figures(&empty) {
        text.push(',');
        text.push_str(name);
    }
    text.push('\n');
    for r in results {
        let name = if r.name.contains([',', '"', '\n']) {
            format!("\"{}\"", r.name.replace('"', "\"\""))
        } else {
            r.name.clone()
        };
        let _ = write!(text, "{name},{},{:.3}", r.frames, r.seconds);
        for (_, v) in figures(&r.scores) {
            let _ = write!(text, ",{v:.6}");
        }
        text.push('\n');
    }
    text
}

/// The printed table: mean ± std of P, R, F1 for frame, note and note-with-offset.
pub fn format_table(mean: &RecordingScores, std: &RecordingScores, count: usize) -> String {
    let mut text = format!(
        "{:<18} {:>15} {:>15} {:>15}\n",
        format!("({count} recordings)"),
        "precision",
        "recall",
        "F1"
    );
    let row = |text: &mut String, label: &str, m: &Prf, s: &Prf| {
        let cell = |a: f64, b: f64| format!("{a:.3} ± {b:.3}");
        let _ = writeln!(
            text,
            "{label:<18} {:>15} {:>15} {:>15}",
            cell(m.precision, s.precision),
            cell(m.recall, s.recall),
            cell(m.f1, s.f1)
        );
    };
    row(&mut text, "frame", &mean.frame, &std.frame);
    row(&mut text, "note", &mean.note, &std.note);
    row(
        &mut text,
        "note with offset",
        &mean.note_with_offset,
        &std.note_with_offset,
    );
    text
}

/// The JSON summary `mtosi eval` writes.
#[derive(Debug, Clone, Serialize)]
pub struct EvalSummary {
    pub checkpoint: PathBuf,
    pub data: String,
    pub split: String,
    /// `annotation` or `roll` (the label-roll reference of the original code).
    pub reference: String,
    /// The decoding: frame threshold (the paper: 0.5) and shortest note kept, in frames.
    pub threshold: f32,
    pub min_note_frames: usize,
    pub recordings: usize,
    pub mean: RecordingScores,
    pub std: RecordingScores,
}

/// Writes `results.csv` and `summary.json` into `dir`, atomically.
pub fn write_outputs(
    dir: &Path,
    results: &[RecordingResult],
    summary: &EvalSummary,
) -> Result<(), EvalError> {
    std::fs::create_dir_all(dir).map_err(|source| EvalError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let csv = dir.join("results.csv");
    crate::fsutil::write_bytes_atomic(&csv, results_csv(results).as_bytes())
        .map_err(|source| EvalError::Io { path: csv, source })?;
    let json = dir.join("summary.json");
    let text = serde_json::to_string_pretty(summary).expect("serialisable");
    crate::fsutil::write_bytes_atomic(&json, text.as_bytes())
        .map_err(|source| EvalError::Io { path: json, source })
}

/// `annotation` or `roll`, the names `--reference` takes.
pub fn reference_name(reference: ReferenceKind) -> &'static str {
    match reference {
        ReferenceKind::Annotation => "annotation",
        ReferenceKind::LabelRoll => "roll",
    }
}
