//! MAPS-style TSV labels: a header line, then `onset offset pitch velocity` per note, tab
//! separated (the format of `../shared/data/maps/tsv` and of the paper's code).

use std::fmt::Write as _;
use std::path::Path;

use super::table::{parse_table, PitchColumn, TableLayout};
use super::{read_file, validate_notes, FormatError, Note, NotesError};
use crate::fsutil::write_bytes_atomic;

const LAYOUT: TableLayout = TableLayout {
    pitch: PitchColumn::MidiKey,
    velocity_column: true,
};

/// The header the paper's code wrote (numpy `savetxt` with `header=`).
const HEADER: &str = "# onset,offset,note,velocity";

/// Parses TSV bytes. A missing velocity column gives velocity 64.
pub fn parse_tsv(bytes: &[u8]) -> Result<Vec<Note>, FormatError> {
    parse_table(bytes, LAYOUT)
}

/// Reads a TSV label file.
pub fn read_tsv(path: &Path) -> Result<Vec<Note>, NotesError> {
    parse_tsv(&read_file(path)?).map_err(|e| NotesError::format(path, e))
}

/// The TSV text of `notes`: times with six decimals (1 µs, finer than any audio frame).
pub fn format_tsv(notes: &[Note]) -> String {
    let mut text = String::with_capacity(HEADER.len() + 1 + notes.len() * 40);
    text.push_str(HEADER);
    text.push('\n');
    for note in notes {
        let _ = writeln!(
            text,
            "{:.6}\t{:.6}\t{}\t{}",
            note.onset_s, note.offset_s, note.pitch, note.velocity
        );
    }
    text
}

/// Writes a TSV label file atomically.
pub fn write_tsv(path: &Path, notes: &[Note]) -> Result<(), NotesError> {
    validate_notes(notes).map_err(|e| NotesError::format(path, e))?;
    write_bytes_atomic(path, format_tsv(notes).as_bytes()).map_err(|e| NotesError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(onset_s: f64, offset_s: f64, pitch: u8, velocity: u8) -> Note {
        Note {
            onset_s,
            offset_s,
            pitch,
            velocity,
        }
    }

    #[test]
    fn reads_the_maps_layout_with_float_columns() {
        let text = "# onset,offset,note,velocity\n0.500004\t1.918478\t38.000000\t53.000000\n1.2\t1.4\t57\t49\n";
        let notes = parse_tsv(text.as_bytes()).unwrap();
        assert_eq!(
            notes,
            vec![note(0.500004, 1.918478, 38, 53), note(1.2, 1.4, 57, 49)]
        );
    }

    #[test]
    fn a_header_of_words_is_skipped_and_crlf_is_accepted() {
        let text = "onset\toffset\tpitch\tvelocity\r\n0.5\t1.0\t60\t80\r\n";
        assert_eq!(
            parse_tsv(text.as_bytes()).unwrap(),
            vec![note(0.5, 1.0, 60, 80)]
        );
    }

    #[test]
    fn missing_velocity_defaults_to_64() {
        assert_eq!(
            parse_tsv(b"0.5\t1.0\t60\n").unwrap(),
            vec![note(0.5, 1.0, 60, 64)]
        );
    }

    #[test]
    fn round_trips_through_text() {
        let notes = vec![
            note(0.0, 0.25, 21, 1),
            note(1.234567, 9.5, 108, 127),
            note(3.0, 3.0, 0, 0),
        ];
        assert_eq!(parse_tsv(format_tsv(&notes).as_bytes()).unwrap(), notes);
    }

    #[test]
    fn text_in_a_number_column_names_line_and_column() {
        let err = parse_tsv(b"# h\n0.5\t1.0\t60\t80\n0.5\tabc\t60\t80\n").unwrap_err();
        assert_eq!(err.line, Some(3));
        assert!(
            err.problem.contains("offset") && err.problem.contains("abc"),
            "{err}"
        );
    }

    #[test]
    fn nan_is_rejected() {
        let err = parse_tsv(b"# h\nNaN\t1.0\t60\t80\n").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(err.problem.contains("not a finite number"), "{err}");
    }

    #[test]
    fn negative_duration_is_rejected() {
        let err = parse_tsv(b"# h\n2.0\t1.0\t60\t80\n").unwrap_err();
        assert!(err.problem.contains("negative duration"), "{err}");
    }

    #[test]
    fn pitch_outside_midi_range_is_rejected() {
        let err = parse_tsv(b"0.0\t1.0\t128\t80\n").unwrap_err();
        assert!(err.problem.contains("outside the MIDI range"), "{err}");
        let err = parse_tsv(b"0.0\t1.0\t-1\t80\n").unwrap_err();
        assert!(err.problem.contains("outside the MIDI range"), "{err}");
    }

    #[test]
    fn fractional_pitch_is_rejected() {
        let err = parse_tsv(b"0.0\t1.0\t60.5\t80\n").unwrap_err();
        assert!(err.problem.contains("not a whole MIDI key"), "{err}");
    }

    #[test]
    fn wrong_column_count_is_rejected() {
        let err = parse_tsv(b"0.0\t1.0\n").unwrap_err();
        assert!(err.problem.contains("columns"), "{err}");
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.tsv");
        std::fs::write(&path, "0.0\t1.0\tC4\t80\n").unwrap();
        let message = read_tsv(&path).unwrap_err().to_string();
        assert!(
            message.contains("bad.tsv") && message.contains("line 1") && message.contains("C4"),
            "{message}"
        );
    }

    #[test]
    fn write_then_read_gives_the_notes_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.tsv");
        let notes = vec![note(0.1, 0.2, 60, 90), note(0.15, 0.3, 64, 70)];
        write_tsv(&path, &notes).unwrap();
        assert_eq!(read_tsv(&path).unwrap(), notes);
    }
}
