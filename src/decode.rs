//! Piano roll → notes and → frame lists: the arrow between the network and the metrics / MIDI.
//!
//! The default is the paper's decoding (PROTOCOL.md, "Evaluation"), as its code does it: a key
//! is on where its probability is above 0.5 (strictly, as the code's `p > threshold`); a note
//! starts at every frame where a key turns on and lasts while it stays on, `[start, end)` in
//! frames; times are frames × 32 ms. The options beyond it ([`DecodeOptions`]) are off by
//! default.

use crate::notes::roll::{LabelRoll, CODE_OFFSET, CODE_ONSET, HOP_LENGTH, KEY_COUNT, LOWEST_KEY};
use crate::notes::{Note, DEFAULT_VELOCITY};

/// Seconds per frame of the roll: 512 samples at 16 kHz.
pub const FRAME_S: f64 = HOP_LENGTH as f64 / 16_000.0;

/// How a probability roll becomes notes. `Default` is the paper's decoding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeOptions {
    /// A key is on in a frame where its probability is above this (the paper: 0.5).
    pub frame_threshold: f32,
    /// When set, a note is kept only if its probability rises above this somewhere in it (a
    /// stricter onset test); it lasts while the key stays above `frame_threshold`.
    pub onset_threshold: Option<f32>,
    /// Notes shorter than this many frames are dropped (0: keep every note, as the paper).
    pub min_note_frames: usize,
    /// Off-gaps of at most this many frames between two on-runs of a key are closed, so the
    /// two runs become one note (0: no gap closing, as the paper).
    pub close_gap_frames: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            frame_threshold: 0.5,
            onset_threshold: None,
            min_note_frames: 0,
            close_gap_frames: 0,
        }
    }
}

/// A decoded note in frames: key index 0..88 (MIDI 21..=108), `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameNote {
    pub key: usize,
    pub start: usize,
    pub end: usize,
}

impl FrameNote {
    /// The note in seconds at `FRAME_S` per frame, with `velocity`.
    pub fn to_note(self, velocity: u8) -> Note {
        Note {
            onset_s: self.start as f64 * FRAME_S,
            offset_s: self.end as f64 * FRAME_S,
            pitch: LOWEST_KEY + self.key as u8,
            velocity,
        }
    }
}

/// The on/off mask of a roll (`frames × 88`, row-major) at `threshold` (`p > threshold`).
/// NaN is off.
pub fn active_mask(roll: &[f32], threshold: f32) -> Vec<bool> {
    roll.iter().map(|&p| p > threshold).collect()
}

/// Decodes a probability roll (`frames × 88`, row-major) into notes in frames, sorted by start
/// frame, then key.
pub fn decode_frame_notes(roll: &[f32], options: &DecodeOptions) -> Vec<FrameNote> {
    assert_eq!(roll.len() % KEY_COUNT, 0, "a roll has 88 values per frame");
    let frames = roll.len() / KEY_COUNT;
    let on = active_mask(roll, options.frame_threshold);
    let mut notes = Vec::new();
    for key in 0..KEY_COUNT {
        let on_at = |frame: usize| on[frame * KEY_COUNT + key];
        let mut frame = 0;
        while frame < frames {
            if !on_at(frame) {
                frame += 1;
                continue;
            }
            let start = frame;
            let mut end = start;
            while end < frames && on_at(end) {
                end += 1;
            }
            // Close short gaps: extend over an off-run of at most `close_gap_frames` followed by
            // another on-run.
            while options.close_gap_frames > 0 && end < frames {
                let mut gap_end = end;
                while gap_end < frames && !on_at(gap_end) {
                    gap_end += 1;
                }
                if gap_end == frames || gap_end - end > options.close_gap_frames {
                    break;
                }
                end = gap_end;
                while end < frames && on_at(end) {
                    end += 1;
                }
            }
            frame = end;
            let onset_ok = match options.onset_threshold {
                None => true,
                Some(t) => (start..end).any(|f| roll[f * KEY_COUNT + key] > t),
            };
            if onset_ok && end - start >= options.min_note_frames.max(1) {
                notes.push(FrameNote { key, start, end });
            }
        }
    }
    notes.sort_by_key(|n| (n.start, n.key));
    notes
}

/// Decodes a probability roll into notes in seconds (velocity [`DEFAULT_VELOCITY`]).
pub fn decode_notes(roll: &[f32], options: &DecodeOptions) -> Vec<Note> {
    decode_frame_notes(roll, options)
        .into_iter()
        .map(|n| n.to_note(DEFAULT_VELOCITY))
        .collect()
}

/// Notes from the quantised label roll, the original code's reference: onset roll = code 3,
/// frame roll = code > 1; a note starts where the onset roll turns on and lasts while the onset
/// or the frame roll stays on. So of two touching notes of one key, the first runs through the
/// second (as in the original code), and a note whose onset cell was overwritten is lost.
pub fn label_frame_notes(label: &LabelRoll) -> Vec<FrameNote> {
    let onset = |frame: usize, key: usize| label.code(frame, key) == CODE_ONSET;
    let on = |frame: usize, key: usize| label.code(frame, key) > CODE_OFFSET;
    let mut notes = Vec::new();
    for key in 0..KEY_COUNT {
        for start in 0..label.frames {
            if !onset(start, key) || (start > 0 && onset(start - 1, key)) {
                continue;
            }
            let mut end = start;
            while end < label.frames && on(end, key) {
                end += 1;
            }
            notes.push(FrameNote { key, start, end });
        }
    }
    notes.sort_by_key(|n| (n.start, n.key));
    notes
}

/// Time-stamped frame lists for `mir_eval.multipitch` from notes re-rendered into `frames`
/// frames, as the original code's `notes_to_frames`: one time per frame (`frame × FRAME_S`)
/// and the frequencies (Hz) of the keys some note covers in that frame, lowest first.
pub fn frame_lists(notes: &[FrameNote], frames: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let mut on = vec![false; frames * KEY_COUNT];
    for note in notes {
        for frame in note.start..note.end.min(frames) {
            on[frame * KEY_COUNT + note.key] = true;
        }
    }
    let times = (0..frames).map(|f| f as f64 * FRAME_S).collect();
    let freqs = (0..frames)
        .map(|f| {
            (0..KEY_COUNT)
                .filter(|&k| on[f * KEY_COUNT + k])
                .map(|k| midi_to_hz(f64::from(LOWEST_KEY) + k as f64))
                .collect()
        })
        .collect();
    (times, freqs)
}

/// `440 * 2^((midi - 69) / 12)`.
pub fn midi_to_hz(midi: f64) -> f64 {
    440.0 * 2f64.powf((midi - 69.0) / 12.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roll_with(frames: usize, on: &[(usize, usize, f32)]) -> Vec<f32> {
        let mut roll = vec![0.0; frames * KEY_COUNT];
        for &(frame, key, p) in on {
            roll[frame * KEY_COUNT + key] = p;
        }
        roll
    }

    #[test]
    fn a_run_of_on_frames_is_one_note_from_its_first_to_past_its_last_frame() {
        let roll = roll_with(
            6,
            &[(1, 39, 0.9), (2, 39, 0.51), (3, 39, 0.7), (4, 39, 0.5)],
        );
        let notes = decode_frame_notes(&roll, &DecodeOptions::default());
        assert_eq!(
            notes,
            vec![FrameNote {
                key: 39,
                start: 1,
                end: 4
            }]
        );
    }

    #[test]
    fn notes_at_the_first_and_last_frame_are_kept_and_a_gap_restrikes() {
        let roll = roll_with(5, &[(0, 0, 1.0), (4, 87, 1.0), (0, 5, 1.0), (2, 5, 1.0)]);
        let notes = decode_frame_notes(&roll, &DecodeOptions::default());
        assert_eq!(
            notes,
            vec![
                FrameNote {
                    key: 0,
                    start: 0,
                    end: 1
                },
                FrameNote {
                    key: 5,
                    start: 0,
                    end: 1
                },
                FrameNote {
                    key: 5,
                    start: 2,
                    end: 3
                },
                FrameNote {
                    key: 87,
                    start: 4,
                    end: 5
                },
            ]
        );
    }

    #[test]
    fn nan_is_off() {
        let roll = roll_with(3, &[(1, 10, f32::NAN)]);
        assert!(decode_frame_notes(&roll, &DecodeOptions::default()).is_empty());
    }

    #[test]
    fn options_close_gaps_drop_short_notes_and_demand_an_onset() {
        let roll = roll_with(
            10,
            &[
                (0, 3, 0.6),
                (1, 3, 0.6),
                (3, 3, 0.6),
                (6, 3, 0.9),
                (8, 4, 0.6),
                (9, 4, 0.6),
            ],
        );
        let closing = DecodeOptions {
            close_gap_frames: 1,
            ..DecodeOptions::default()
        };
        assert_eq!(
            decode_frame_notes(&roll, &closing),
            vec![
                FrameNote {
                    key: 3,
                    start: 0,
                    end: 4
                },
                FrameNote {
                    key: 3,
                    start: 6,
                    end: 7
                },
                FrameNote {
                    key: 4,
                    start: 8,
                    end: 10
                },
            ]
        );
        let long_only = DecodeOptions {
            min_note_frames: 2,
            ..DecodeOptions::default()
        };
        assert_eq!(
            decode_frame_notes(&roll, &long_only),
            vec![
                FrameNote {
                    key: 3,
                    start: 0,
                    end: 2
                },
                FrameNote {
                    key: 4,
                    start: 8,
                    end: 10
                },
            ]
        );
        let onsets = DecodeOptions {
            onset_threshold: Some(0.8),
            ..DecodeOptions::default()
        };
        assert_eq!(
            decode_frame_notes(&roll, &onsets),
            vec![FrameNote {
                key: 3,
                start: 6,
                end: 7
            }]
        );
    }

    #[test]
    fn frame_notes_become_seconds_and_hertz() {
        let note = FrameNote {
            key: 48,
            start: 10,
            end: 25,
        }
        .to_note(80);
        assert!((note.onset_s - 0.32).abs() < 1e-12 && (note.offset_s - 0.8).abs() < 1e-12);
        assert_eq!((note.pitch, note.velocity), (69, 80));
        let notes = [
            FrameNote {
                key: 48,
                start: 1,
                end: 2,
            },
            FrameNote {
                key: 0,
                start: 1,
                end: 9,
            },
        ];
        let (times, freqs) = frame_lists(&notes, 2);
        assert_eq!(times, vec![0.0, FRAME_S]);
        assert_eq!(freqs, vec![vec![], vec![27.5, 440.0]]);
    }

    #[test]
    fn label_notes_start_at_onset_codes_and_run_through_sustain_and_later_onsets() {
        let note = |on: f64, off: f64, pitch| Note {
            onset_s: on,
            offset_s: off,
            pitch,
            velocity: 64,
        };
        // Two touching notes of one key; a note whose offset rounds to its onset frame (its
        // onset code is overwritten by its offset code, so it is lost, as in the original).
        let label = LabelRoll::from_notes(
            &[
                note(0.0, 0.16, 60),
                note(0.16, 0.32, 60),
                note(0.1, 0.1, 70),
            ],
            16 * HOP_LENGTH,
            16_000,
            HOP_LENGTH,
        );
        assert_eq!(
            label_frame_notes(&label),
            vec![
                FrameNote {
                    key: 39,
                    start: 0,
                    end: 10
                },
                FrameNote {
                    key: 39,
                    start: 5,
                    end: 10
                },
            ]
        );
    }
}
