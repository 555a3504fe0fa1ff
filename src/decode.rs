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

/// `DecodeOptions::min_note_frames` for a shortest note of `min_note_ms` milliseconds: whole
/// frames, rounded up (the 1e-9 keeps an exact multiple from rounding up a frame more).
pub fn min_note_frames_for_ms(min_note_ms: f64) -> usize {
    (min_note_ms / (FRAME_S * 1e3) - 1e-9).ceil().max(0.0) as usize
}

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
    // The keys each frame's notes cover, then sorted with repeats (overlapping notes of one
    // key) removed: work in proportion to the notes, not to frames × 88.
    let mut keys: Vec<Vec<usize>> = vec![Vec::new(); frames];
    for note in notes {
        let end = note.end.min(frames);
        for frame_keys in keys.iter_mut().take(end).skip(note.start) {
            frame_keys.push(note.key);
        }
    }
    let key_hz: Vec<f64> = (0..KEY_COUNT)
        .map(|k| midi_to_hz(f64::from(LOWEST_KEY) + k as f64))
        .collect();
    let times = (0..frames).map(|f| f as f64 * FRAME_S).collect();
    let freqs = keys
        .into_iter()
        .map(|mut frame_keys| {
            frame_keys.sort_unstable();
            frame_keys.dedup();
            frame_keys.into_iter().map(|k| key_hz[k]).collect()
        })
        .collect();
    (times, freqs)
}

/// `440 * 2^((midi - 69) / 12)`, the notes module's conversion (re-exported for the metrics).
pub use crate::notes::midi_to_hz;

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

    #[test]
    fn touching_notes_of_one_key_decode_as_one_and_of_two_keys_as_two() {
        // Key 40 on over frames 1..3 and 3..6 (a roll cannot tell a re-strike without a gap);
        // key 41 takes over from key 40 at frame 6.
        let mut on = vec![];
        on.extend((1..6).map(|f| (f, 40, 0.9)));
        on.extend((6..8).map(|f| (f, 41, 0.9)));
        let notes = decode_frame_notes(&roll_with(9, &on), &DecodeOptions::default());
        assert_eq!(
            notes,
            vec![
                FrameNote {
                    key: 40,
                    start: 1,
                    end: 6
                },
                FrameNote {
                    key: 41,
                    start: 6,
                    end: 8
                },
            ]
        );
    }

    #[test]
    fn a_key_restruck_after_one_off_frame_gives_two_notes_unless_gaps_are_closed() {
        let roll = roll_with(
            7,
            &[
                (0, 60, 0.9),
                (1, 60, 0.9),
                (2, 60, 0.2),
                (3, 60, 0.9),
                (4, 60, 0.5),
                (5, 60, 0.6),
                (6, 60, 0.6),
            ],
        );
        let runs = |options: &DecodeOptions| -> Vec<(usize, usize)> {
            decode_frame_notes(&roll, options)
                .iter()
                .map(|n| (n.start, n.end))
                .collect()
        };
        // 0.5 is not above the threshold: frame 4 is off too.
        assert_eq!(
            runs(&DecodeOptions::default()),
            vec![(0, 2), (3, 4), (5, 7)]
        );
        let closing = DecodeOptions {
            close_gap_frames: 1,
            ..DecodeOptions::default()
        };
        assert_eq!(runs(&closing), vec![(0, 7)]);
    }

    #[test]
    fn a_key_on_in_every_frame_is_one_note_over_the_whole_roll() {
        let on: Vec<_> = (0..12).map(|f| (f, 87, 1.0)).collect();
        let notes = decode_frame_notes(&roll_with(12, &on), &DecodeOptions::default());
        assert_eq!(
            notes,
            vec![FrameNote {
                key: 87,
                start: 0,
                end: 12
            }]
        );
        let in_seconds = decode_notes(&roll_with(12, &on), &DecodeOptions::default());
        assert_eq!(in_seconds.len(), 1);
        assert_eq!(
            (in_seconds[0].pitch, in_seconds[0].velocity),
            (108, DEFAULT_VELOCITY)
        );
        assert!((in_seconds[0].offset_s - 12.0 * 0.032).abs() < 1e-12);
    }

    #[test]
    fn empty_rolls_have_no_notes() {
        assert!(decode_frame_notes(&[], &DecodeOptions::default()).is_empty());
        assert!(decode_frame_notes(&roll_with(4, &[]), &DecodeOptions::default()).is_empty());
        let (times, freqs) = frame_lists(&[], 0);
        assert!(times.is_empty() && freqs.is_empty());
    }

    #[test]
    fn decoded_notes_cover_exactly_the_frames_above_threshold() {
        // Random rolls: re-rendering the decoded notes gives back the thresholded roll, no
        // two notes of a key overlap, and each note starts where its key turns on.
        let seed = crate::device::equivalence::seed_from_env();
        println!("seed {seed} (replay with MTOSI_TEST_SEED={seed})");
        let mut rng = crate::rng::Rng::new(seed);
        for _ in 0..50 {
            let frames = rng.range_usize(1, 40);
            let roll = rng.vec_f32(frames * KEY_COUNT, 0.0, 1.0);
            let notes = decode_frame_notes(&roll, &DecodeOptions::default());
            let mut covered = vec![0u8; frames * KEY_COUNT];
            for n in &notes {
                assert!(n.start < n.end && n.end <= frames, "{n:?}");
                assert!(n.start == 0 || roll[(n.start - 1) * KEY_COUNT + n.key] <= 0.5);
                for f in n.start..n.end {
                    covered[f * KEY_COUNT + n.key] += 1;
                }
            }
            for (cell, &p) in roll.iter().enumerate() {
                assert_eq!(covered[cell], u8::from(p > 0.5), "cell {cell}, p {p}");
            }
            let (_, freqs) = frame_lists(&notes, frames);
            let on_count: usize = roll.iter().filter(|&&p| p > 0.5).count();
            assert_eq!(freqs.iter().map(Vec::len).sum::<usize>(), on_count);
        }
    }

    #[test]
    fn label_notes_at_the_first_and_last_frame_and_past_the_end() {
        let note = |on: f64, off: f64, pitch| Note {
            onset_s: on,
            offset_s: off,
            pitch,
            velocity: 64,
        };
        // Frames of 32 ms, 6 frames: a note from frame 0 to 2, one from frame 5 running past
        // the end (no offset code), one whose onset is past the end (nothing).
        let label = LabelRoll::from_notes(
            &[
                note(0.0, 0.064, 21),
                note(0.16, 1.0, 108),
                note(0.5, 0.9, 60),
            ],
            5 * HOP_LENGTH + 1,
            16_000,
            HOP_LENGTH,
        );
        assert_eq!(
            label_frame_notes(&label),
            vec![
                FrameNote {
                    key: 0,
                    start: 0,
                    end: 2
                },
                FrameNote {
                    key: 87,
                    start: 5,
                    end: 6
                },
            ]
        );
    }

    #[test]
    fn decoding_the_frame_roll_of_separate_notes_gives_the_label_notes() {
        let note = |on_frame: f64, off_frame: f64, pitch| Note {
            onset_s: on_frame * FRAME_S,
            offset_s: off_frame * FRAME_S,
            pitch,
            velocity: 64,
        };
        let label = LabelRoll::from_notes(
            &[
                note(0.0, 3.0, 40),
                note(5.0, 9.0, 40),
                note(2.0, 20.0, 70),
                note(19.0, 25.0, 71),
            ],
            24 * HOP_LENGTH + 1,
            16_000,
            HOP_LENGTH,
        );
        assert_eq!(
            decode_frame_notes(&label.frame_roll(), &DecodeOptions::default()),
            label_frame_notes(&label)
        );
    }

    #[test]
    fn frame_lists_cut_notes_at_the_last_frame_and_list_a_key_once() {
        let notes = [
            FrameNote {
                key: 10,
                start: 0,
                end: 3,
            },
            FrameNote {
                key: 10,
                start: 1,
                end: 2,
            },
            FrameNote {
                key: 20,
                start: 2,
                end: 100,
            },
        ];
        let (times, freqs) = frame_lists(&notes, 3);
        assert_eq!(times.len(), 3);
        let a = midi_to_hz(31.0);
        let b = midi_to_hz(41.0);
        assert_eq!(freqs, vec![vec![a], vec![a], vec![a, b]]);
    }
}
