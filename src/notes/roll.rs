//! Piano-roll labels exactly as PROTOCOL.md ("Labels → piano roll"): 88 keys (MIDI 21..=108),
//! one frame per hop of 512 samples at 16 kHz, codes 3 (onset frame), 2 (sustained), 1 (offset
//! frame), 0 (off); notes written in file order, later ones overwriting earlier ones.

use super::Note;

/// The lowest key of the roll (A0).
pub const LOWEST_KEY: u8 = 21;
/// The highest key of the roll (C8).
pub const HIGHEST_KEY: u8 = 108;
/// Keys per frame of the roll.
pub const KEY_COUNT: usize = (HIGHEST_KEY - LOWEST_KEY + 1) as usize;
/// Samples per frame (32 ms at 16 kHz).
pub const HOP_LENGTH: usize = 512;

/// Cell codes of the label roll.
pub const CODE_ONSET: u8 = 3;
pub const CODE_SUSTAIN: u8 = 2;
pub const CODE_OFFSET: u8 = 1;

/// Frames of a recording of `sample_count` samples: `(L - 1) / hop + 1`, and 0 for no samples
/// (what Python's floor division gives for `L = 0`).
pub fn frame_count(sample_count: usize, hop_length: usize) -> usize {
    if sample_count == 0 {
        0
    } else {
        (sample_count - 1) / hop_length + 1
    }
}

/// The code roll of one recording, `frames × 88`, row-major (frame, then key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRoll {
    pub frames: usize,
    pub codes: Vec<u8>,
}

impl LabelRoll {
    /// Builds the roll of `notes` for a recording of `sample_count` samples at `sample_rate_hz`
    /// with frames of `hop_length` samples. Notes outside MIDI 21..=108 are skipped.
    pub fn from_notes(
        notes: &[Note],
        sample_count: usize,
        sample_rate_hz: u32,
        hop_length: usize,
    ) -> LabelRoll {
        let frames = frame_count(sample_count, hop_length);
        let mut codes = vec![0u8; frames * KEY_COUNT];
        // Evaluated as the reference does, `time * rate / hop` left to right, so halves land alike.
        let to_frame = |time_s: f64| time_s * f64::from(sample_rate_hz) / hop_length as f64;
        for note in notes {
            if !(LOWEST_KEY..=HIGHEST_KEY).contains(&note.pitch) {
                continue;
            }
            let key = usize::from(note.pitch - LOWEST_KEY);
            let left = round_half_even_index(to_frame(note.onset_s));
            let onset_right = frames.min(left.saturating_add(1));
            let frame_right = frames.min(round_half_even_index(to_frame(note.offset_s)));
            let offset_right = frames.min(frame_right + 1);
            // Numpy slice assignment: an empty range when start >= end, in this order, so a note
            // whose offset rounds to its onset frame ends up with code 1 there, as in the reference.
            for (start, end, code) in [
                (left, onset_right, CODE_ONSET),
                (onset_right, frame_right, CODE_SUSTAIN),
                (frame_right, offset_right, CODE_OFFSET),
            ] {
                for frame in start..end {
                    codes[frame * KEY_COUNT + key] = code;
                }
            }
        }
        LabelRoll { frames, codes }
    }

    /// The code at one frame and roll key (0 = MIDI 21).
    pub fn code(&self, frame: usize, key: usize) -> u8 {
        self.codes[frame * KEY_COUNT + key]
    }

    /// 1.0 where the code is 3 (the onset frame), else 0.0; `frames × 88`.
    pub fn onset_roll(&self) -> Vec<f32> {
        self.codes
            .iter()
            .map(|&c| if c == CODE_ONSET { 1.0 } else { 0.0 })
            .collect()
    }

    /// 1.0 where the code is above 1 (onset or sustained), else 0.0; `frames × 88`. The loss
    /// uses this roll only.
    pub fn frame_roll(&self) -> Vec<f32> {
        self.codes
            .iter()
            .map(|&c| if c > CODE_OFFSET { 1.0 } else { 0.0 })
            .collect()
    }
}

/// numpy/Python `round` (half to even) of a frame position, as an index. Times are checked
/// non-negative and finite by every reader; anything else clamps to 0 or saturates.
fn round_half_even_index(position: f64) -> usize {
    let rounded = position.round_ties_even();
    if rounded.is_nan() || rounded <= 0.0 {
        0
    } else if rounded >= usize::MAX as f64 {
        usize::MAX
    } else {
        rounded as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 16_000;

    fn note(onset_s: f64, offset_s: f64, pitch: u8) -> Note {
        Note {
            onset_s,
            offset_s,
            pitch,
            velocity: 64,
        }
    }

    /// The codes of one key over all frames.
    fn column(roll: &LabelRoll, pitch: u8) -> Vec<u8> {
        (0..roll.frames)
            .map(|f| roll.code(f, usize::from(pitch - LOWEST_KEY)))
            .collect()
    }

    /// `frames` frames of audio: the last frame starts at sample `(frames - 1) * 512`.
    fn samples_for(frames: usize) -> usize {
        (frames - 1) * HOP_LENGTH + 1
    }

    #[test]
    fn frame_count_is_l_minus_1_over_hop_plus_1() {
        assert_eq!(frame_count(0, 512), 0);
        assert_eq!(frame_count(1, 512), 1);
        assert_eq!(frame_count(512, 512), 1);
        assert_eq!(frame_count(513, 512), 2);
        assert_eq!(frame_count(16_000, 512), 32);
    }

    #[test]
    fn a_note_gets_3_then_2_then_a_single_1() {
        // onset 0.1 s -> 3.125 -> frame 3; offset 0.3 s -> 9.375 -> frame 9.
        let roll = LabelRoll::from_notes(&[note(0.1, 0.3, 60)], samples_for(12), RATE, HOP_LENGTH);
        assert_eq!(column(&roll, 60), vec![0, 0, 0, 3, 2, 2, 2, 2, 2, 1, 0, 0]);
        assert!(column(&roll, 61).iter().all(|&c| c == 0));
    }

    #[test]
    fn half_frame_positions_round_to_even() {
        // 0.016 s = frame 0.5 -> 0; 0.048 s = 1.5 -> 2; 0.08 s = 2.5 -> 2; 0.112 s = 3.5 -> 4.
        let roll = LabelRoll::from_notes(
            &[note(0.016, 0.112, 60), note(0.048, 0.08, 62)],
            samples_for(6),
            RATE,
            HOP_LENGTH,
        );
        assert_eq!(column(&roll, 60), vec![3, 2, 2, 2, 1, 0]);
        // Onset frame 2 and offset frame 2: the 1 overwrites the 3, as numpy's slice order does.
        assert_eq!(column(&roll, 62), vec![0, 0, 1, 0, 0, 0]);
    }

    #[test]
    fn touching_notes_the_later_onset_overwrites_the_offset_code() {
        // First note frames 2..5 (offset frame 5), second starts at frame 5.
        let first = note(2.0 * 0.032, 5.0 * 0.032, 60);
        let second = note(5.0 * 0.032, 8.0 * 0.032, 60);
        let roll = LabelRoll::from_notes(&[first, second], samples_for(10), RATE, HOP_LENGTH);
        assert_eq!(column(&roll, 60), vec![0, 0, 3, 2, 2, 3, 2, 2, 1, 0]);
    }

    #[test]
    fn file_order_decides_overlaps_later_notes_win() {
        // A re-struck pitch written before the long note it sits inside is overwritten by it.
        let long = note(0.0, 10.0 * 0.032, 60);
        let restrike = note(4.0 * 0.032, 6.0 * 0.032, 60);
        let roll = LabelRoll::from_notes(&[long, restrike], samples_for(12), RATE, HOP_LENGTH);
        assert_eq!(column(&roll, 60), vec![3, 2, 2, 2, 3, 2, 1, 2, 2, 2, 1, 0]);
        let roll = LabelRoll::from_notes(&[restrike, long], samples_for(12), RATE, HOP_LENGTH);
        assert_eq!(column(&roll, 60), vec![3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 0]);
    }

    #[test]
    fn notes_past_the_end_are_cut_at_the_last_frame() {
        // Offset beyond the recording: 2 up to the end, no offset code.
        let roll = LabelRoll::from_notes(&[note(0.1, 5.0, 60)], samples_for(6), RATE, HOP_LENGTH);
        assert_eq!(column(&roll, 60), vec![0, 0, 0, 3, 2, 2]);
        // Offset frame exactly the frame count: empty offset range.
        let roll = LabelRoll::from_notes(
            &[note(0.1, 6.0 * 0.032, 62)],
            samples_for(6),
            RATE,
            HOP_LENGTH,
        );
        assert_eq!(column(&roll, 62), vec![0, 0, 0, 3, 2, 2]);
        // Onset after the end: nothing at all.
        let roll = LabelRoll::from_notes(&[note(1.0, 2.0, 64)], samples_for(6), RATE, HOP_LENGTH);
        assert!(column(&roll, 64).iter().all(|&c| c == 0));
    }

    #[test]
    fn keys_outside_21_to_108_are_skipped() {
        let notes = [
            note(0.0, 0.1, 20),
            note(0.0, 0.1, 109),
            note(0.0, 0.1, 0),
            note(0.0, 0.1, 127),
        ];
        let roll = LabelRoll::from_notes(&notes, samples_for(4), RATE, HOP_LENGTH);
        assert!(roll.codes.iter().all(|&c| c == 0));
        let edges = LabelRoll::from_notes(
            &[note(0.0, 0.1, 21), note(0.0, 0.1, 108)],
            samples_for(4),
            RATE,
            HOP_LENGTH,
        );
        assert_eq!(edges.code(0, 0), CODE_ONSET);
        assert_eq!(edges.code(0, KEY_COUNT - 1), CODE_ONSET);
    }

    #[test]
    fn onset_and_frame_rolls_follow_the_codes() {
        let roll = LabelRoll::from_notes(&[note(0.1, 0.3, 60)], samples_for(12), RATE, HOP_LENGTH);
        let key = usize::from(60 - LOWEST_KEY);
        let onset: Vec<f32> = (0..12)
            .map(|f| roll.onset_roll()[f * KEY_COUNT + key])
            .collect();
        let frame: Vec<f32> = (0..12)
            .map(|f| roll.frame_roll()[f * KEY_COUNT + key])
            .collect();
        assert_eq!(onset, vec![0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0.]);
        assert_eq!(frame, vec![0., 0., 0., 1., 1., 1., 1., 1., 1., 0., 0., 0.]);
    }

    #[test]
    fn an_empty_recording_has_an_empty_roll() {
        let roll = LabelRoll::from_notes(&[note(0.0, 1.0, 60)], 0, RATE, HOP_LENGTH);
        assert_eq!((roll.frames, roll.codes.len()), (0, 0));
    }
}
