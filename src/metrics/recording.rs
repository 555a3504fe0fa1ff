//! One recording's scores from the network's probability roll, as the paper's code computes them
//! (PROTOCOL.md, "Evaluation"): the roll decoded into notes ([`crate::decode`]), note P/R/F1
//! with `mir_eval.transcription` (offsets ignored, and with `offset_ratio=0.2`), frame P/R/F1
//! with `mir_eval.multipitch` on the 32 ms frame grid, the frame F1 as the code's
//! `hmean([P + eps, R + eps]) - eps`.

use std::fmt;

use super::transcription::{precision_recall_f1_overlap, NoteTolerances};
use super::{multipitch, MetricsError};
use crate::decode::{
    decode_frame_notes, frame_lists, label_frame_notes, midi_to_hz, DecodeOptions, FrameNote,
};
use crate::notes::roll::{frame_count, LabelRoll, HIGHEST_KEY, HOP_LENGTH, KEY_COUNT, LOWEST_KEY};
use crate::notes::{Note, DEFAULT_VELOCITY};

/// The sample rate the roll's frames are counted at.
const SAMPLE_RATE_HZ: u32 = 16_000;

/// What the estimate is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReferenceKind {
    /// The annotation itself: its notes for the note scores, and for the frame scores the
    /// annotation re-rendered on the frame grid (see [`annotation_frame_notes`]).
    #[default]
    Annotation,
    /// The original code's reference: notes read back from the quantised label roll
    /// (`LabelRoll` → [`label_frame_notes`]), for both the note and the frame scores.
    LabelRoll,
}

impl fmt::Display for ReferenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReferenceKind::Annotation => "annotation",
            ReferenceKind::LabelRoll => "label roll",
        })
    }
}

/// Parses `annotation` or `label-roll` (also `label_roll`, `label roll`), for command lines.
impl std::str::FromStr for ReferenceKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "annotation" => Ok(ReferenceKind::Annotation),
            "label-roll" | "label_roll" | "label roll" => Ok(ReferenceKind::LabelRoll),
            _ => Err(format!(
                "{text:?} is not a reference kind: annotation or label-roll"
            )),
        }
    }
}

/// Precision, recall and F1 of one kind of score.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// The three scores the paper reports for one recording.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RecordingScores {
    pub frame: Prf,
    pub note: Prf,
    pub note_with_offset: Prf,
}

/// The frame grid notes of an annotation, for the frame scores of [`ReferenceKind::Annotation`]:
/// each note of a key 21..=108 on its own (notes are OR-ed, none overwrites another, unlike in
/// the label roll), from frame `round(onset × 16000 / 512)` to `round(offset × 16000 / 512)`
/// exclusive, rounding half to even as the label roll does, and covering at least its onset
/// frame; cut at the recording's last frame. So a note sounds in the frames where, alone in
/// the label roll, it would get code 3 or 2, and in its onset frame even where the label roll
/// would lose it (a note shorter than about half a frame).
pub fn annotation_frame_notes(notes: &[Note]) -> Vec<FrameNote> {
    let to_frame = |time_s: f64| {
        let position = (time_s * f64::from(SAMPLE_RATE_HZ) / HOP_LENGTH as f64).round_ties_even();
        if position > 0.0 {
            position as usize
        } else {
            0
        }
    };
    notes
        .iter()
        .filter(|n| (LOWEST_KEY..=HIGHEST_KEY).contains(&n.pitch))
        .map(|n| {
            let start = to_frame(n.onset_s);
            FrameNote {
                key: usize::from(n.pitch - LOWEST_KEY),
                start,
                end: to_frame(n.offset_s).max(start + 1),
            }
        })
        .collect()
}

/// Notes as intervals (s) and pitches (Hz), leaving out notes of no duration (which
/// mir_eval refuses).
fn intervals_and_pitches(notes: impl Iterator<Item = Note>) -> (Vec<[f64; 2]>, Vec<f64>) {
    notes
        .filter(|n| n.offset_s > n.onset_s)
        .map(|n| ([n.onset_s, n.offset_s], midi_to_hz(f64::from(n.pitch))))
        .unzip()
}

/// The F1 of the paper's code for frames: `scipy.stats.hmean([P + eps, R + eps]) - eps` with
/// `eps` = `f64::EPSILON`, so that it is 0 rather than undefined when P = R = 0.
fn frame_f1(precision: f64, recall: f64) -> f64 {
    let eps = f64::EPSILON;
    1.0 / ((1.0 / (precision + eps) + 1.0 / (recall + eps)) / 2.0) - eps
}

/// Scores one recording.
///
/// `est_roll`: frames × 88 probabilities (row-major, frame then key); `ref_notes`: the
/// annotation; `sample_count`: the recording's length in samples at 16 kHz, which fixes the
/// reference's frame grid (`(L − 1) / 512 + 1` frames, as the label roll). The roll is decoded
/// with `decode`; the estimate's frames are its decoded notes re-rendered on its own grid, and
/// mir_eval resamples them onto the reference's grid when the two frame counts differ.
/// Reference notes of no duration are left out (mir_eval refuses them).
pub fn score_recording(
    est_roll: &[f32],
    ref_notes: &[Note],
    sample_count: usize,
    reference: ReferenceKind,
    decode: &DecodeOptions,
) -> Result<RecordingScores, MetricsError> {
    if !est_roll.len().is_multiple_of(KEY_COUNT) {
        return Err(MetricsError::RollShape {
            values: est_roll.len(),
        });
    }
    let est_frames = est_roll.len() / KEY_COUNT;
    let ref_frames = frame_count(sample_count, HOP_LENGTH);
    let est_frame_notes = decode_frame_notes(est_roll, decode);
    let ref_frame_notes = match reference {
        ReferenceKind::Annotation => annotation_frame_notes(ref_notes),
        ReferenceKind::LabelRoll => label_frame_notes(&LabelRoll::from_notes(
            ref_notes,
            sample_count,
            SAMPLE_RATE_HZ,
            HOP_LENGTH,
        )),
    };
    let (ref_intervals, ref_pitches) = match reference {
        ReferenceKind::Annotation => intervals_and_pitches(ref_notes.iter().copied()),
        ReferenceKind::LabelRoll => {
            intervals_and_pitches(ref_frame_notes.iter().map(|n| n.to_note(DEFAULT_VELOCITY)))
        }
    };
    let (est_intervals, est_pitches) =
        intervals_and_pitches(est_frame_notes.iter().map(|n| n.to_note(DEFAULT_VELOCITY)));

    let (precision, recall, f1, _) = precision_recall_f1_overlap(
        &ref_intervals,
        &ref_pitches,
        &est_intervals,
        &est_pitches,
        &NoteTolerances::default().without_offsets(),
    )?;
    let note = Prf {
        precision,
        recall,
        f1,
    };
    let (precision, recall, f1, _) = precision_recall_f1_overlap(
        &ref_intervals,
        &ref_pitches,
        &est_intervals,
        &est_pitches,
        &NoteTolerances::default(),
    )?;
    let note_with_offset = Prf {
        precision,
        recall,
        f1,
    };

    let (ref_times, ref_freqs) = frame_lists(&ref_frame_notes, ref_frames);
    let (est_times, est_freqs) = frame_lists(&est_frame_notes, est_frames);
    let frames = multipitch::evaluate(
        &ref_times,
        &ref_freqs,
        &est_times,
        &est_freqs,
        multipitch::DEFAULT_WINDOW,
    )?;
    let precision = frames.get("Precision").unwrap_or(0.0);
    let recall = frames.get("Recall").unwrap_or(0.0);
    let frame = Prf {
        precision,
        recall,
        f1: frame_f1(precision, recall),
    };
    Ok(RecordingScores {
        frame,
        note,
        note_with_offset,
    })
}

/// The mean and the (population, numpy's default) standard deviation of every value over
/// recordings; all zero for no recordings.
pub fn mean_std(scores: &[RecordingScores]) -> (RecordingScores, RecordingScores) {
    let n = scores.len() as f64;
    let stat = |get: &dyn Fn(&RecordingScores) -> f64| -> (f64, f64) {
        if scores.is_empty() {
            return (0.0, 0.0);
        }
        let mean = scores.iter().map(get).sum::<f64>() / n;
        let variance = scores.iter().map(|s| (get(s) - mean).powi(2)).sum::<f64>() / n;
        (mean, variance.sqrt())
    };
    let prf = |pick: &dyn Fn(&RecordingScores) -> Prf| -> (Prf, Prf) {
        let (p, dp) = stat(&|s| pick(s).precision);
        let (r, dr) = stat(&|s| pick(s).recall);
        let (f, df) = stat(&|s| pick(s).f1);
        (
            Prf {
                precision: p,
                recall: r,
                f1: f,
            },
            Prf {
                precision: dp,
                recall: dr,
                f1: df,
            },
        )
    };
    let (frame, frame_sd) = prf(&|s| s.frame);
    let (note, note_sd) = prf(&|s| s.note);
    let (offset, offset_sd) = prf(&|s| s.note_with_offset);
    (
        RecordingScores {
            frame,
            note,
            note_with_offset: offset,
        },
        RecordingScores {
            frame: frame_sd,
            note: note_sd,
            note_with_offset: offset_sd,
        },
    )
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

    /// A roll of `frames` frames with `(key, start, end)` runs at probability 0.9.
    fn roll(frames: usize, runs: &[(usize, usize, usize)]) -> Vec<f32> {
        let mut roll = vec![0.1; frames * KEY_COUNT];
        for &(key, start, end) in runs {
            for frame in start..end {
                roll[frame * KEY_COUNT + key] = 0.9;
            }
        }
        roll
    }

    fn samples(frames: usize) -> usize {
        (frames - 1) * HOP_LENGTH + 1
    }

    #[test]
    fn the_label_roll_itself_scores_perfectly_against_the_label_roll() {
        // Notes on frames: key 39 [2, 6), key 43 [2, 9), key 39 again [10, 14).
        let notes = [
            note(2.0 * FRAME, 6.0 * FRAME, 60),
            note(2.0 * FRAME, 9.0 * FRAME, 64),
            note(10.0 * FRAME, 14.0 * FRAME, 60),
        ];
        let label = LabelRoll::from_notes(&notes, samples(16), SAMPLE_RATE_HZ, HOP_LENGTH);
        let est: Vec<f32> = label.frame_roll();
        for kind in [ReferenceKind::LabelRoll, ReferenceKind::Annotation] {
            let scores =
                score_recording(&est, &notes, samples(16), kind, &DecodeOptions::default())
                    .unwrap();
            for prf in [scores.frame, scores.note, scores.note_with_offset] {
                assert!((prf.precision - 1.0).abs() < 1e-12, "{kind}: {scores:?}");
                assert!((prf.recall - 1.0).abs() < 1e-12 && (prf.f1 - 1.0).abs() < 1e-12);
            }
        }
    }

    const FRAME: f64 = crate::decode::FRAME_S;

    #[test]
    fn a_note_the_label_roll_loses_counts_only_against_the_annotation() {
        // 0.1 s .. 0.11 s: onset and offset both round to frame 3, so the label roll has only
        // an offset code there and no note; the estimate plays frame 3.
        let notes = [note(0.1, 0.11, 60)];
        let est = roll(8, &[(39, 3, 4)]);
        let options = DecodeOptions::default();
        let annotation = score_recording(
            &est,
            &notes,
            samples(8),
            ReferenceKind::Annotation,
            &options,
        )
        .unwrap();
        assert_eq!(
            (annotation.note.precision, annotation.note.recall),
            (1.0, 1.0)
        );
        assert_eq!(
            (annotation.frame.precision, annotation.frame.recall),
            (1.0, 1.0)
        );
        let label =
            score_recording(&est, &notes, samples(8), ReferenceKind::LabelRoll, &options).unwrap();
        assert_eq!(
            (label.note.precision, label.note.recall, label.note.f1),
            (0.0, 0.0, 0.0)
        );
        assert_eq!(
            (label.frame.precision, label.frame.recall, label.frame.f1),
            (0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn frame_f1_is_the_harmonic_mean_of_multipitch_precision_and_recall() {
        // Reference key 39 frames [0, 4); estimate the same plus key 50 frames [0, 4): P = 1/2.
        let notes = [note(0.0, 4.0 * FRAME, 60)];
        let est = roll(6, &[(39, 0, 4), (50, 0, 4)]);
        let scores = score_recording(
            &est,
            &notes,
            samples(6),
            ReferenceKind::Annotation,
            &DecodeOptions::default(),
        )
        .unwrap();
        assert_eq!((scores.frame.precision, scores.frame.recall), (0.5, 1.0));
        assert!((scores.frame.f1 - 2.0 / 3.0).abs() < 1e-12, "{scores:?}");
        assert_eq!((scores.note.precision, scores.note.recall), (0.5, 1.0));
        assert!((scores.note.f1 - 2.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn offsets_off_by_more_than_20_percent_fail_only_the_offset_score() {
        // Reference 1 s long (frames [0, 31.25)); the estimate stops at frame 20 (0.64 s).
        let notes = [note(0.0, 1.0, 72)];
        let est = roll(40, &[(51, 0, 20)]);
        let scores = score_recording(
            &est,
            &notes,
            samples(40),
            ReferenceKind::Annotation,
            &DecodeOptions::default(),
        )
        .unwrap();
        assert_eq!(scores.note.f1, 1.0);
        assert_eq!(scores.note_with_offset.f1, 0.0);
    }

    #[test]
    fn a_roll_of_the_wrong_shape_is_refused() {
        let err = score_recording(
            &[0.5; 100],
            &[],
            1000,
            ReferenceKind::Annotation,
            &DecodeOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("100 values"), "{err}");
    }

    #[test]
    fn mean_and_population_standard_deviation() {
        let prf = |v: f64| Prf {
            precision: v,
            recall: v,
            f1: v,
        };
        let scores = [0.2, 0.6].map(|v| RecordingScores {
            frame: prf(v),
            note: prf(v + 0.1),
            note_with_offset: prf(v),
        });
        let (mean, sd) = mean_std(&scores);
        assert!((mean.frame.f1 - 0.4).abs() < 1e-12 && (sd.frame.f1 - 0.2).abs() < 1e-12);
        assert!((mean.note.precision - 0.5).abs() < 1e-12);
        let (mean, sd) = mean_std(&[]);
        assert_eq!((mean.note.f1, sd.note.f1), (0.0, 0.0));
    }

    #[test]
    fn reference_kinds_read_as_the_protocol_names_them() {
        assert_eq!(ReferenceKind::default(), ReferenceKind::Annotation);
        assert_eq!(ReferenceKind::Annotation.to_string(), "annotation");
        assert_eq!(ReferenceKind::LabelRoll.to_string(), "label roll");
        assert_eq!("label-roll".parse(), Ok(ReferenceKind::LabelRoll));
        assert_eq!("Annotation".parse(), Ok(ReferenceKind::Annotation));
        assert!("labels".parse::<ReferenceKind>().is_err());
    }
}
