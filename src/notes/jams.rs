//! GuitarSet JAMS annotations: the `note_midi` annotations (one per string) become notes, each
//! observation's `time` the onset, `time + duration` the offset, and its fractional MIDI pitch
//! `value` rounded to the nearest key (half to even, as Python's `round`). Both layouts of an
//! annotation's `data` are read: a list of `{time, duration, value, confidence}` observations
//! (JAMS 0.3, what GuitarSet ships) and the older object of parallel arrays
//! `{time: [...], duration: [...], value: [...]}`. Notes keep annotation order, then file order.

use std::path::Path;

use serde_json::{json, Value};

use super::{
    check_note_times, read_file, validate_notes, FormatError, Note, NotesError, DEFAULT_VELOCITY,
};
use crate::fsutil::write_bytes_atomic;

const NOTE_NAMESPACE: &str = "note_midi";

/// Parses the bytes of a JAMS file into the notes of its `note_midi` annotations. A file with no
/// `note_midi` annotation is an error (it has no notes to give); empty annotations are not.
pub fn parse_jams(bytes: &[u8]) -> Result<Vec<Note>, FormatError> {
    let root: Value = serde_json::from_slice(bytes)
        .map_err(|e| FormatError::whole_file(format!("not valid JSON: {e}")))?;
    let annotations = root
        .get("annotations")
        .and_then(Value::as_array)
        .ok_or_else(|| FormatError::whole_file("not a JAMS file: no \"annotations\" list"))?;
    let mut notes = Vec::new();
    let mut note_annotations = 0;
    for (index, annotation) in annotations.iter().enumerate() {
        if annotation.get("namespace").and_then(Value::as_str) != Some(NOTE_NAMESPACE) {
            continue;
        }
        note_annotations += 1;
        let context = |problem: String| {
            FormatError::whole_file(format!("annotation {index} (note_midi): {problem}"))
        };
        match annotation.get("data") {
            Some(Value::Array(observations)) => {
                for (i, observation) in observations.iter().enumerate() {
                    let field = |name: &str| observation.get(name).cloned().unwrap_or(Value::Null);
                    let note = note_of(&field("time"), &field("duration"), &field("value"))
                        .map_err(|p| context(format!("observation {i}: {p}")))?;
                    notes.push(note);
                }
            }
            Some(Value::Object(columns)) => {
                let column = |name: &str| -> Result<&Vec<Value>, FormatError> {
                    columns
                        .get(name)
                        .and_then(Value::as_array)
                        .ok_or_else(|| context(format!("data has no \"{name}\" array")))
                };
                let (times, durations, values) =
                    (column("time")?, column("duration")?, column("value")?);
                if times.len() != durations.len() || times.len() != values.len() {
                    return Err(context(format!(
                        "data arrays differ in length (time {}, duration {}, value {})",
                        times.len(),
                        durations.len(),
                        values.len()
                    )));
                }
                for i in 0..times.len() {
                    let note = note_of(&times[i], &durations[i], &values[i])
                        .map_err(|p| context(format!("observation {i}: {p}")))?;
                    notes.push(note);
                }
            }
            _ => return Err(context("no \"data\" list or object".into())),
        }
    }
    if note_annotations == 0 {
        return Err(FormatError::whole_file(
            "no note_midi annotation: the file holds no notes",
        ));
    }
    Ok(notes)
}

fn note_of(time: &Value, duration: &Value, value: &Value) -> Result<Note, String> {
    let number = |v: &Value, name: &str| -> Result<f64, String> {
        v.as_f64()
            .ok_or_else(|| format!("\"{name}\" is {v}, not a number"))
    };
    let onset_s = number(time, "time")?;
    let duration_s = number(duration, "duration")?;
    if duration_s < 0.0 {
        return Err(format!("negative duration {duration_s} s"));
    }
    let offset_s = onset_s + duration_s;
    check_note_times(onset_s, offset_s)?;
    let pitch_value = number(value, "value")?;
    let key = pitch_value.round_ties_even();
    if !(0.0..=127.0).contains(&key) {
        return Err(format!(
            "pitch {pitch_value} is outside the MIDI range 0..=127"
        ));
    }
    Ok(Note {
        onset_s,
        offset_s,
        pitch: key as u8,
        velocity: DEFAULT_VELOCITY,
    })
}

/// Reads a JAMS file.
pub fn read_jams(path: &Path) -> Result<Vec<Note>, NotesError> {
    parse_jams(&read_file(path)?).map_err(|e| NotesError::format(path, e))
}

/// The JAMS text of `notes`: one `note_midi` annotation holding all notes as observations
/// (velocity has no place in JAMS and is dropped), file duration = the last offset.
pub fn format_jams(notes: &[Note]) -> String {
    let observations: Vec<Value> = notes
        .iter()
        .map(|n| json!({"time": n.onset_s, "duration": n.offset_s - n.onset_s, "value": f64::from(n.pitch), "confidence": null}))
        .collect();
    let duration_s = notes.iter().map(|n| n.offset_s).fold(0.0, f64::max);
    let document = json!({
        "annotations": [{
            "annotation_metadata": {
                "curator": {"name": "", "email": ""}, "annotator": {}, "version": "", "corpus": "",
                "annotation_tools": "mtosi", "annotation_rules": "", "validation": "", "data_source": ""
            },
            "namespace": NOTE_NAMESPACE,
            "data": observations,
            "sandbox": {},
            "time": 0,
            "duration": duration_s,
        }],
        "file_metadata": {
            "title": "", "artist": "", "release": "", "duration": duration_s,
            "identifiers": {}, "jams_version": "0.3.4"
        },
        "sandbox": {}
    });
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text
}

/// Writes notes as a JAMS file atomically.
pub fn write_jams(path: &Path, notes: &[Note]) -> Result<(), NotesError> {
    validate_notes(notes).map_err(|e| NotesError::format(path, e))?;
    write_bytes_atomic(path, format_jams(notes).as_bytes()).map_err(|e| NotesError::io(path, e))
}
