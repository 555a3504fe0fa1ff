//! mir_eval's note text format (`mir_eval.io.load_valued_intervals`): one note per line,
//! `onset offset frequency_hz`, whitespace separated, no header. Frequencies are converted to the
//! nearest MIDI key; written files hold the key's equal-tempered frequency.

use std::fmt::Write as _;
use std::path::Path;

use super::table::{frequency_of_key, parse_table, PitchColumn, TableLayout};
use super::{read_file, validate_notes, FormatError, Note, NotesError};
use crate::fsutil::write_bytes_atomic;

const LAYOUT: TableLayout = TableLayout {
    pitch: PitchColumn::FrequencyHz,
    velocity_column: false,
};

/// Parses mir_eval note text; notes get velocity 64.
pub fn parse_mir_eval_text(bytes: &[u8]) -> Result<Vec<Note>, FormatError> {
    parse_table(bytes, LAYOUT)
}

/// Reads a mir_eval note text file.
pub fn read_mir_eval_text(path: &Path) -> Result<Vec<Note>, NotesError> {
    parse_mir_eval_text(&read_file(path)?).map_err(|e| NotesError::format(path, e))
}

/// The mir_eval text of `notes`: tab separated, frequencies with four decimals (0.01 cent at
/// the lowest key, so the key is recovered exactly).
pub fn format_mir_eval_text(notes: &[Note]) -> String {
    let mut text = String::new();
    for note in notes {
        let _ = writeln!(
            text,
            "{:.6}\t{:.6}\t{:.4}",
            note.onset_s,
            note.offset_s,
            frequency_of_key(note.pitch)
        );
    }
    text
}

/// Writes a mir_eval note text file atomically.
pub fn write_mir_eval_text(path: &Path, notes: &[Note]) -> Result<(), NotesError> {
    validate_notes(notes).map_err(|e| NotesError::format(path, e))?;
    write_bytes_atomic(path, format_mir_eval_text(notes).as_bytes())
        .map_err(|e| NotesError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notes::DEFAULT_VELOCITY;

    #[test]
    fn frequencies_become_the_nearest_key() {
        // 452 Hz is +47 cents above A4: still key 69; 453 Hz is +50.4 cents: key 70.
        let notes = parse_mir_eval_text(b"0.1 0.5 440.0\n0.2 0.6 452\n0.3 0.7 453\n0.4 0.8 27.5\n")
            .unwrap();
        let keys: Vec<u8> = notes.iter().map(|n| n.pitch).collect();
        assert_eq!(keys, vec![69, 69, 70, 21]);
    }

    #[test]
    fn round_trips_every_midi_key() {
        let notes: Vec<Note> = (0..=127u8)
            .map(|pitch| Note {
                onset_s: f64::from(pitch) * 0.125,
                offset_s: f64::from(pitch) * 0.125 + 0.5,
                pitch,
                velocity: DEFAULT_VELOCITY,
            })
            .collect();
        assert_eq!(
            parse_mir_eval_text(format_mir_eval_text(&notes).as_bytes()).unwrap(),
            notes
        );
    }

    #[test]
    fn zero_frequency_is_rejected() {
        let err = parse_mir_eval_text(b"0.1 0.5 0\n").unwrap_err();
        assert!(err.problem.contains("not positive"), "{err}");
    }
}
