//! Note annotations: reading and writing TSV, MAPS txt, MIDI, JAMS and mir_eval text; piano-roll labels.
//!
//! Every reader has two layers: a bytes-level `parse_*` function that knows nothing about files
//! (and is what the fuzz targets call), and a `read_*` function that adds the path to its errors.
//! [`read_notes`] picks the reader from the file extension.

pub mod jams;
pub mod maps_txt;
pub mod midi;
pub mod mir_eval_text;
pub mod roll;
mod table;
pub mod tsv;

use std::path::{Path, PathBuf};

/// One note: onset and offset in seconds, MIDI pitch (21..=108 for the piano roll, any 0..=127
/// in files), MIDI velocity (1..=127; formats without velocity use 64).
///
/// A zero-length note (offset = onset, which transcriptions and annotations do contain) is a
/// valid note and every writer keeps it: TSV, MAPS txt and mir_eval text write the two equal
/// times, JAMS a duration of 0, MIDI a note-on directly followed by its note-off at one tick
/// (so a note shorter than half a 0.5 ms tick becomes one too); each reads back with length 0.
/// On the label roll it marks its onset frame only, as the reference does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Note {
    pub onset_s: f64,
    pub offset_s: f64,
    pub pitch: u8,
    pub velocity: u8,
}

/// The frequency in Hz of a (fractional) MIDI pitch: `440 * 2^((midi - 69) / 12)`.
pub fn midi_to_hz(midi: f64) -> f64 {
    440.0 * 2f64.powf((midi - 69.0) / 12.0)
}

/// Velocity given to notes read from formats that carry none (MAPS txt, JAMS, mir_eval text).
pub const DEFAULT_VELOCITY: u8 = 64;

/// What is wrong with the content of a notes file, before the file name is known.
/// `line` is 1-based where the format has lines.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{problem}", line.map(|n| format!("line {n}: ")).unwrap_or_default())]
pub struct FormatError {
    pub line: Option<usize>,
    pub problem: String,
}

impl FormatError {
    pub fn at_line(line: usize, problem: impl Into<String>) -> Self {
        FormatError {
            line: Some(line),
            problem: problem.into(),
        }
    }

    pub fn whole_file(problem: impl Into<String>) -> Self {
        FormatError {
            line: None,
            problem: problem.into(),
        }
    }
}

/// Errors of reading or writing a notes file; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum NotesError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Format { path: PathBuf, source: FormatError },
    #[error("{}: unknown notes format (extension {extension:?}); known: {}", path.display(), KNOWN_EXTENSIONS.join(", "))]
    UnknownFormat { path: PathBuf, extension: String },
    #[error("{}: {problem}", path.display())]
    Unwritable { path: PathBuf, problem: String },
}

impl NotesError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        NotesError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn format(path: &Path, source: FormatError) -> Self {
        NotesError::Format {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The GM program [`write_notes`] gives MIDI files (program 1, counted from 0).
pub const ACOUSTIC_GRAND_PIANO: u8 = 0;

/// File extensions [`read_notes`] understands (lower case, without the dot).
pub const KNOWN_EXTENSIONS: &[&str] = &["tsv", "txt", "mid", "midi", "jams"];

/// Reads the notes of a label file, choosing the format from its extension (case-insensitive).
pub fn read_notes(path: &Path) -> Result<Vec<Note>, NotesError> {
    match extension_of(path).as_str() {
        "tsv" => tsv::read_tsv(path),
        "txt" => read_txt(path),
        "mid" | "midi" => midi::read_midi(path),
        "jams" => jams::read_jams(path),
        other => Err(NotesError::UnknownFormat {
            path: path.to_path_buf(),
            extension: other.to_string(),
        }),
    }
}

/// Writes notes to a label file in the format its extension names, atomically (`.txt` as MAPS
/// txt; `.mid`/`.midi` with GM program 0 on channel 1).
pub fn write_notes(path: &Path, notes: &[Note]) -> Result<(), NotesError> {
    match extension_of(path).as_str() {
        "tsv" => tsv::write_tsv(path, notes),
        "txt" => maps_txt::write_maps_txt(path, notes),
        "mid" | "midi" => midi::write_midi(path, notes, ACOUSTIC_GRAND_PIANO),
        "jams" => jams::write_jams(path, notes),
        other => Err(NotesError::UnknownFormat {
            path: path.to_path_buf(),
            extension: other.to_string(),
        }),
    }
}

/// `.txt` is both MAPS's label format (with its `OnsetTime` header) and mir_eval's note text
/// (no header, frequencies in Hz); the header tells them apart.
fn read_txt(path: &Path) -> Result<Vec<Note>, NotesError> {
    let bytes = read_file(path)?;
    let first_line = bytes
        .split(|&b| b == b'\n')
        .find(|l| !l.iter().all(u8::is_ascii_whitespace));
    let is_maps = first_line.is_some_and(|l| l.trim_ascii_start().starts_with(b"OnsetTime"));
    let parsed = if is_maps {
        maps_txt::parse_maps_txt(&bytes)
    } else {
        mir_eval_text::parse_mir_eval_text(&bytes)
    };
    parsed.map_err(|e| NotesError::format(path, e))
}

fn extension_of(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Reads a whole file, mapping the I/O error to one that names it.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, NotesError> {
    std::fs::read(path).map_err(|e| NotesError::io(path, e))
}

/// Checks notes before any writer touches the disk, so a bad note never leaves a file that
/// cannot be read back: times finite, non-negative, offset not before onset; pitch 0..=127.
pub fn validate_notes(notes: &[Note]) -> Result<(), FormatError> {
    for (index, note) in notes.iter().enumerate() {
        check_note_times(note.onset_s, note.offset_s)
            .map_err(|p| FormatError::whole_file(format!("note {index}: {p}")))?;
        if note.pitch > 127 {
            return Err(FormatError::whole_file(format!(
                "note {index}: pitch {} is outside the MIDI range 0..=127",
                note.pitch
            )));
        }
    }
    Ok(())
}

/// Checks what every format must hold for a note, so all readers reject the same things.
pub(crate) fn check_note_times(onset_s: f64, offset_s: f64) -> Result<(), String> {
    if !onset_s.is_finite() {
        return Err(format!("onset {onset_s} is not a finite number"));
    }
    if !offset_s.is_finite() {
        return Err(format!("offset {offset_s} is not a finite number"));
    }
    if onset_s < 0.0 {
        return Err(format!("negative onset {onset_s} s"));
    }
    if offset_s < onset_s {
        return Err(format!(
            "negative duration: offset {offset_s} s is before onset {onset_s} s"
        ));
    }
    Ok(())
}
