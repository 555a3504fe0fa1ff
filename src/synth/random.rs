//! Procedurally generated polyphonic music: training scores that need no dataset.
//!
//! A piece is a stream of onsets at random times (`onsets_per_s` on average); each onset
//! strikes a chord of 1..=`max_chord` notes drawn around a slowly wandering register, with
//! log-uniform durations and uniform velocities; no more than `max_polyphony` notes sound at
//! once, and a key never overlaps itself. Everything follows from the seed and the index.

use crate::notes::Note;
use crate::rng::Rng;

/// Parameters of [`random_piece`].
#[derive(Debug, Clone, PartialEq)]
pub struct RandomMusic {
    pub seed: u64,
    pub duration_s: f64,
    /// Mean number of onsets (chords or single notes) per second.
    pub onsets_per_s: f64,
    /// Largest number of notes struck together.
    pub max_chord: usize,
    /// Largest number of notes sounding at once.
    pub max_polyphony: usize,
    pub pitch_low: u8,
    pub pitch_high: u8,
    pub min_note_s: f64,
    pub max_note_s: f64,
    pub velocity_low: u8,
    pub velocity_high: u8,
}

impl Default for RandomMusic {
    fn default() -> Self {
        Self {
            seed: 0,
            duration_s: 30.0,
            onsets_per_s: 4.0,
            max_chord: 3,
            max_polyphony: 8,
            pitch_low: 21,
            pitch_high: 108,
            min_note_s: 0.08,
            max_note_s: 2.0,
            velocity_low: 30,
            velocity_high: 120,
        }
    }
}

impl RandomMusic {
    /// Checks that the parameters describe some music.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !positive(self.duration_s) || !positive(self.onsets_per_s) {
            return Err("duration and onset density must be positive".into());
        }
        if !(positive(self.min_note_s)
            && self.min_note_s <= self.max_note_s
            && self.max_note_s.is_finite())
        {
            return Err(format!(
                "note durations {}..{} s are not a range",
                self.min_note_s, self.max_note_s
            ));
        }
        if self.pitch_low > self.pitch_high || self.pitch_high > 127 {
            return Err(format!(
                "pitch range {}..={} is not within MIDI 0..=127",
                self.pitch_low, self.pitch_high
            ));
        }
        if self.velocity_low == 0
            || self.velocity_low > self.velocity_high
            || self.velocity_high > 127
        {
            return Err(format!(
                "velocity range {}..={} is not within 1..=127",
                self.velocity_low, self.velocity_high
            ));
        }
        if self.max_chord == 0 || self.max_polyphony == 0 {
            return Err("chord size and polyphony must be at least 1".into());
        }
        Ok(())
    }
}

/// Piece number `index` of the series `params.seed`, notes sorted by onset.
pub fn random_piece(params: &RandomMusic, index: u64) -> Vec<Note> {
    let mut rng = Rng::new(params.seed ^ index.wrapping_mul(0xd6e8_feb8_6659_fd93));
    let (low, high) = (params.pitch_low as f64, params.pitch_high as f64);
    let mut centre = low + rng.uniform_f64() * (high - low);
    let mut notes: Vec<Note> = Vec::new();
    let mut t = 0.0;
    loop {
        // Exponential gaps: a Poisson stream of onsets.
        t += -(1.0 - rng.uniform_f64()).ln() / params.onsets_per_s;
        if t >= params.duration_s {
            break;
        }
        // The register drifts by a few semitones per onset and stays in range.
        centre = (centre + (rng.uniform_f64() - 0.5) * 6.0).clamp(low, high);
        let chord = 1 + (rng.next_u64() % params.max_chord as u64) as usize;
        for _ in 0..chord {
            let sounding = notes.iter().filter(|n| n.offset_s > t).count();
            if sounding >= params.max_polyphony {
                break;
            }
            let spread = 7.0 * (rng.uniform_f64() * 2.0 - 1.0) * chord as f64;
            let pitch = (centre + spread).round().clamp(low, high) as u8;
            if notes.iter().any(|n| n.pitch == pitch && n.offset_s > t) {
                continue;
            }
            let log_span = (params.max_note_s / params.min_note_s).ln();
            let length = params.min_note_s * (rng.uniform_f64() * log_span).exp();
            let velocity = rng.range_u8(params.velocity_low, params.velocity_high);
            let offset_s = (t + length).min(params.duration_s);
            notes.push(Note {
                onset_s: t,
                offset_s,
                pitch,
                velocity,
            });
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_follow_their_parameters() {
        let seed = crate::device::equivalence::test_seed("pieces_follow_their_parameters");
        let params = RandomMusic {
            seed,
            duration_s: 20.0,
            max_polyphony: 4,
            pitch_low: 40,
            pitch_high: 80,
            velocity_low: 50,
            velocity_high: 90,
            ..Default::default()
        };
        params.validate().unwrap();
        let notes = random_piece(&params, 3);
        // 4 onsets/s over 20 s: ~80 onsets of 1-3 notes; 20 is far below any plausible draw.
        assert!(notes.len() > 20, "{} notes", notes.len());
        for n in &notes {
            assert!(
                (40..=80).contains(&n.pitch) && (50..=90).contains(&n.velocity),
                "{n:?}"
            );
            assert!(
                n.onset_s >= 0.0 && n.offset_s <= 20.0 && n.offset_s > n.onset_s,
                "{n:?}"
            );
        }
        for n in &notes {
            let sounding: Vec<&Note> = notes
                .iter()
                .filter(|m| m.onset_s <= n.onset_s && m.offset_s > n.onset_s)
                .collect();
            assert!(
                sounding.len() <= 4,
                "{} notes sound at {}",
                sounding.len(),
                n.onset_s
            );
            assert_eq!(
                sounding.iter().filter(|m| m.pitch == n.pitch).count(),
                1,
                "key overlaps itself at {}",
                n.onset_s
            );
        }
    }

    #[test]
    fn the_seed_and_index_fix_the_piece() {
        let params = RandomMusic::default();
        assert_eq!(random_piece(&params, 1), random_piece(&params, 1));
        assert_ne!(random_piece(&params, 1), random_piece(&params, 2));
        let other = RandomMusic {
            seed: 1,
            ..Default::default()
        };
        assert_ne!(random_piece(&params, 1), random_piece(&other, 1));
    }

    #[test]
    fn impossible_parameters_are_rejected() {
        assert!(RandomMusic {
            pitch_low: 90,
            pitch_high: 80,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(RandomMusic {
            velocity_low: 0,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(RandomMusic {
            min_note_s: 3.0,
            max_note_s: 1.0,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(RandomMusic {
            duration_s: f64::NAN,
            ..Default::default()
        }
        .validate()
        .is_err());
    }
}
