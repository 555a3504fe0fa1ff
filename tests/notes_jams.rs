//! JAMS reading on a hand-written fixture (both `data` layouts), on the GuitarSet sample when
//! present, round trips through the writer, and clean errors.

use std::path::{Path, PathBuf};

use mtosi::notes::jams::{format_jams, parse_jams, read_jams};
use mtosi::notes::{read_notes, write_notes, Note, DEFAULT_VELOCITY};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/notes")
        .join(name)
}

fn note(onset_s: f64, offset_s: f64, pitch: u8) -> Note {
    Note {
        onset_s,
        offset_s,
        pitch,
        velocity: DEFAULT_VELOCITY,
    }
}

#[test]
fn both_data_layouts_are_read_and_pitches_round_half_to_even() {
    let notes = read_jams(&fixture("two_strings.jams")).unwrap();
    // 40.4 -> 40, 40.6 -> 41, 66.5 -> 66 (half to even), 67.5 -> 68.
    assert_eq!(
        notes,
        vec![
            note(0.25, 0.75, 40),
            note(1.0, 1.125, 41),
            note(0.5, 1.5, 66),
            note(1.5, 1.75, 68)
        ]
    );
}

#[test]
fn guitarset_sample_reads_when_present() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/guitarset-sample/03_BN3-119-G_solo.jams");
    if !path.exists() {
        eprintln!("skipped: {} is absent", path.display());
        return;
    }
    let notes = read_notes(&path).unwrap();
    assert!(!notes.is_empty());
    // Checked with Python's json: the excerpt's first note on string 6 starts at 0.7612 s, key 67.
    assert!(
        notes
            .iter()
            .any(|n| n.pitch == 67 && (n.onset_s - 0.7612308390022235).abs() < 1e-12),
        "{notes:?}"
    );
    assert!(
        notes.iter().all(|n| n.offset_s <= 2.0 + 1e-9),
        "trimmed to 2 s"
    );
}

#[test]
fn written_jams_read_back_to_the_same_notes() {
    let notes = vec![
        note(0.0, 0.5, 21),
        note(0.1, 0.35, 64),
        note(1.0 / 3.0, 2.0 / 3.0, 108),
    ];
    let read = parse_jams(format_jams(&notes).as_bytes()).unwrap();
    assert_eq!(read.len(), notes.len());
    for (a, b) in read.iter().zip(&notes) {
        // offset = time + (offset - time) in f64: within one rounding of the offset.
        assert!(
            a.pitch == b.pitch && a.onset_s == b.onset_s && (a.offset_s - b.offset_s).abs() < 1e-15,
            "{a:?} vs {b:?}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jams");
    write_notes(&path, &notes).unwrap();
    assert_eq!(read_notes(&path).unwrap().len(), 3);
}

#[test]
fn a_file_without_note_annotations_is_an_error() {
    let err = parse_jams(br#"{"annotations": [{"namespace": "chord", "data": []}]}"#).unwrap_err();
    assert!(err.problem.contains("no note_midi annotation"), "{err}");
    let err = parse_jams(br#"{"file_metadata": {}}"#).unwrap_err();
    assert!(err.problem.contains("no \"annotations\""), "{err}");
}

#[test]
fn bad_observations_name_the_annotation_and_observation() {
    let bad = br#"{"annotations": [{"namespace": "note_midi", "data": [{"time": 0.1, "duration": 0.2, "value": 60}, {"time": "x", "duration": 0.2, "value": 60}]}]}"#;
    let err = parse_jams(bad).unwrap_err();
    assert!(
        err.problem.contains("annotation 0")
            && err.problem.contains("observation 1")
            && err.problem.contains("\"time\""),
        "{err}"
    );
    let negative = br#"{"annotations": [{"namespace": "note_midi", "data": [{"time": 0.1, "duration": -0.2, "value": 60}]}]}"#;
    assert!(parse_jams(negative)
        .unwrap_err()
        .problem
        .contains("negative duration"));
    let high = br#"{"annotations": [{"namespace": "note_midi", "data": {"time": [0.1], "duration": [0.2], "value": [130.2]}}]}"#;
    assert!(parse_jams(high)
        .unwrap_err()
        .problem
        .contains("outside the MIDI range"));
    let ragged = br#"{"annotations": [{"namespace": "note_midi", "data": {"time": [0.1, 0.2], "duration": [0.2], "value": [60]}}]}"#;
    assert!(parse_jams(ragged)
        .unwrap_err()
        .problem
        .contains("differ in length"));
    assert!(parse_jams(b"{\"annotations\": [")
        .unwrap_err()
        .problem
        .contains("not valid JSON"));
}
