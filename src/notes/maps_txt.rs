//! MAPS `.txt` labels as published with the MAPS recordings: a header line
//! `OnsetTime\tOffsetTime\tMidiPitch`, then one note per line, tab separated. No velocity.

use std::fmt::Write as _;
use std::path::Path;

use super::table::{parse_table, PitchColumn, TableLayout};
use super::{read_file, validate_notes, FormatError, Note, NotesError};
use crate::fsutil::write_bytes_atomic;

const LAYOUT: TableLayout = TableLayout {
    pitch: PitchColumn::MidiKey,
    velocity_column: false,
};

/// The header line of every MAPS `.txt` file.
pub const HEADER: &str = "OnsetTime\tOffsetTime\tMidiPitch";

/// Parses MAPS txt bytes; notes get velocity 64.
pub fn parse_maps_txt(bytes: &[u8]) -> Result<Vec<Note>, FormatError> {
    parse_table(bytes, LAYOUT)
}

/// Reads a MAPS `.txt` label file.
pub fn read_maps_txt(path: &Path) -> Result<Vec<Note>, NotesError> {
    parse_maps_txt(&read_file(path)?).map_err(|e| NotesError::format(path, e))
}

/// The MAPS txt text of `notes` (velocities are dropped: the format has none).
pub fn format_maps_txt(notes: &[Note]) -> String {
    let mut text = String::from(HEADER);
    text.push('\n');
    for note in notes {
        let _ = writeln!(
            text,
            "{:.6}\t{:.6}\t{}",
            note.onset_s, note.offset_s, note.pitch
        );
    }
    text
}

/// Writes a MAPS `.txt` label file atomically.
pub fn write_maps_txt(path: &Path, notes: &[Note]) -> Result<(), NotesError> {
    validate_notes(notes).map_err(|e| NotesError::format(path, e))?;
    write_bytes_atomic(path, format_maps_txt(notes).as_bytes()).map_err(|e| NotesError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notes::DEFAULT_VELOCITY;

    #[test]
    fn reads_the_published_layout() {
        let text =
            "OnsetTime\tOffsetTime\tMidiPitch\n0.500004\t1.918478\t38\n1.21885\t1.452055\t57\n";
        let notes = parse_maps_txt(text.as_bytes()).unwrap();
        assert_eq!(notes.len(), 2);
        assert_eq!(
            (notes[0].onset_s, notes[0].offset_s, notes[0].pitch),
            (0.500004, 1.918478, 38)
        );
        assert_eq!(notes[1].velocity, DEFAULT_VELOCITY);
    }

    #[test]
    fn round_trips_through_text() {
        let notes = vec![
            Note {
                onset_s: 0.0,
                offset_s: 0.5,
                pitch: 21,
                velocity: DEFAULT_VELOCITY,
            },
            Note {
                onset_s: 0.25,
                offset_s: 2.125,
                pitch: 108,
                velocity: DEFAULT_VELOCITY,
            },
        ];
        assert_eq!(
            parse_maps_txt(format_maps_txt(&notes).as_bytes()).unwrap(),
            notes
        );
    }

    #[test]
    fn a_velocity_column_is_an_error() {
        let err =
            parse_maps_txt(b"OnsetTime\tOffsetTime\tMidiPitch\n0.1\t0.2\t60\t80\n").unwrap_err();
        assert!(err.problem.contains("expected 3 columns"), "{err}");
    }
}
