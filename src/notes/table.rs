//! The line-per-note text formats (MAPS TSV, MAPS txt, mir_eval note text) share one parser:
//! an optional header line, then whitespace-separated numeric columns `onset offset pitch [velocity]`.

use super::{check_note_times, FormatError, Note, DEFAULT_VELOCITY};

/// What the third column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PitchColumn {
    /// A MIDI key number, written as an integer or as a float with a zero fraction.
    MidiKey,
    /// A frequency in Hz, converted to the nearest MIDI key (mir_eval's note format).
    FrequencyHz,
}

/// The column layout of one text format.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TableLayout {
    pub pitch: PitchColumn,
    /// Whether a fourth column with the velocity may follow.
    pub velocity_column: bool,
}

/// How far a MIDI-key column may be from a whole number: files written with `%f` carry
/// six decimals, so anything further away is a pitch the format cannot hold.
const KEY_FRACTION_TOLERANCE: f64 = 1e-3;

/// Parses the bytes of a line-per-note text file. The first non-blank line is a header if it
/// starts with `#` or has no numeric field; later lines starting with `#` are comments.
pub(crate) fn parse_table(bytes: &[u8], layout: TableLayout) -> Result<Vec<Note>, FormatError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        FormatError::whole_file(format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    let max_columns = if layout.velocity_column { 4 } else { 3 };
    let mut notes = Vec::new();
    let mut seen_first_line = false;
    for (index, raw_line) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = raw_line.trim();
        if line.is_empty() {
            continue;
        }
        let is_first = !seen_first_line;
        seen_first_line = true;
        if line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if is_first && fields.iter().all(|f| f.parse::<f64>().is_err()) {
            continue;
        }
        if fields.len() < 3 || fields.len() > max_columns {
            let expected = if layout.velocity_column {
                "3 or 4"
            } else {
                "3"
            };
            return Err(FormatError::at_line(
                line_number,
                format!("expected {expected} columns, found {}", fields.len()),
            ));
        }
        let onset_s = parse_number(fields[0], "onset", line_number)?;
        let offset_s = parse_number(fields[1], "offset", line_number)?;
        check_note_times(onset_s, offset_s).map_err(|p| FormatError::at_line(line_number, p))?;
        let pitch_value = parse_number(fields[2], "pitch", line_number)?;
        let pitch = match layout.pitch {
            PitchColumn::MidiKey => midi_key(pitch_value, line_number)?,
            PitchColumn::FrequencyHz => key_of_frequency(pitch_value, line_number)?,
        };
        let velocity = match fields.get(3) {
            Some(field) => {
                velocity_value(parse_number(field, "velocity", line_number)?, line_number)?
            }
            None => DEFAULT_VELOCITY,
        };
        notes.push(Note {
            onset_s,
            offset_s,
            pitch,
            velocity,
        });
    }
    Ok(notes)
}

fn parse_number(field: &str, column: &str, line: usize) -> Result<f64, FormatError> {
    let value: f64 = field.parse().map_err(|_| {
        FormatError::at_line(
            line,
            format!("{column} column holds {field:?}, not a number"),
        )
    })?;
    if !value.is_finite() {
        return Err(FormatError::at_line(
            line,
            format!("{column} column holds {field:?}, not a finite number"),
        ));
    }
    Ok(value)
}

fn midi_key(value: f64, line: usize) -> Result<u8, FormatError> {
    let key = value.round();
    if (value - key).abs() > KEY_FRACTION_TOLERANCE {
        return Err(FormatError::at_line(
            line,
            format!("pitch {value} is not a whole MIDI key"),
        ));
    }
    if !(0.0..=127.0).contains(&key) {
        return Err(FormatError::at_line(
            line,
            format!("pitch {value} is outside the MIDI range 0..=127"),
        ));
    }
    Ok(key as u8)
}

/// The nearest MIDI key of a frequency (A4 = 440 Hz = key 69), as mir_eval's `hz_to_midi`.
pub(crate) fn key_of_frequency(frequency_hz: f64, line: usize) -> Result<u8, FormatError> {
    if frequency_hz <= 0.0 {
        return Err(FormatError::at_line(
            line,
            format!("frequency {frequency_hz} Hz is not positive"),
        ));
    }
    let key = (69.0 + 12.0 * (frequency_hz / 440.0).log2()).round();
    if !(0.0..=127.0).contains(&key) {
        return Err(FormatError::at_line(
            line,
            format!("frequency {frequency_hz} Hz is outside the MIDI range 0..=127"),
        ));
    }
    Ok(key as u8)
}

/// The frequency in Hz of a MIDI key (A4 = 440 Hz = key 69).
pub(crate) fn frequency_of_key(pitch: u8) -> f64 {
    super::midi_to_hz(f64::from(pitch))
}

fn velocity_value(value: f64, line: usize) -> Result<u8, FormatError> {
    let velocity = value.round();
    if !(0.0..=127.0).contains(&velocity) {
        return Err(FormatError::at_line(
            line,
            format!("velocity {value} is outside 0..=127"),
        ));
    }
    Ok(velocity as u8)
}
