//! The malformed-input corpus (`tests/fixtures/malformed/`, written by
//! `tools/reference/malformed_corpus.py`): every file gives an error that names the file and
//! its problem, nothing panics, and nothing is left behind when a conversion fails.

use std::path::{Path, PathBuf};

use mtosi::audio::{load_mono, write_wav16};
use mtosi::notes::{read_notes, write_notes, Note};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/malformed")
}

/// Each corpus file and a phrase its error must contain.
const CASES: &[(&str, &str)] = &[
    ("truncated_data.wav", "truncated WAV"),
    ("truncated_header.wav", "truncated WAV"),
    (
        "wrong_magic.wav",
        "not a WAV, FLAC, MP3, Ogg Vorbis or AAC/M4A file",
    ),
    ("mp3_in_wav.wav", "unsupported WAV encoding"),
    ("float64.wav", "unsupported WAV encoding"),
    ("zero_channels.wav", "malformed WAV"),
    ("truncated.flac", "truncated FLAC"),
    ("truncated_header.flac", "truncated FLAC"),
    // "OggS" and zeros: read as the Ogg container it announces, whose first page is broken.
    ("wrong_magic.flac", "malformed Ogg file"),
    ("truncated.mid", "truncated MIDI"),
    ("missing_track.mid", "declares 5 tracks"),
    ("wrong_magic.mid", "not a Standard MIDI file"),
    ("zero_ticks_per_beat.mid", "0 ticks per beat"),
    ("no_notes.jams", "no note_midi annotation"),
    ("not_json.jams", "not valid JSON"),
    ("text_pitch.jams", "\"value\" is \"E2\", not a number"),
    (
        "text_in_number.tsv",
        "line 3: offset column holds \"later\", not a number",
    ),
    ("negative_duration.tsv", "line 3: negative duration"),
    (
        "nan.tsv",
        "line 2: offset column holds \"nan\", not a finite number",
    ),
    (
        "pitch_out_of_range.tsv",
        "line 2: pitch 128 is outside the MIDI range",
    ),
    ("not_utf8.tsv", "not UTF-8"),
    ("text_in_number.txt", "pitch column holds \"C4\""),
];

fn error_of(path: &Path) -> String {
    let is_audio = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("wav" | "flac")
    );
    if is_audio {
        load_mono(path, 16_000)
            .map(|s| format!("{} samples", s.len()))
            .unwrap_err()
            .to_string()
    } else {
        read_notes(path)
            .map(|n| format!("{} notes", n.len()))
            .unwrap_err()
            .to_string()
    }
}

#[test]
fn every_malformed_file_gives_an_error_naming_the_file_and_the_problem() {
    let mut failures = Vec::new();
    for (name, problem) in CASES {
        let message = error_of(&corpus().join(name));
        println!("{message}");
        if !message.contains(name) || !message.contains(problem) {
            failures.push(format!("{name}: expected {problem:?} in {message:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn the_corpus_has_no_file_without_a_case() {
    for entry in std::fs::read_dir(corpus()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            CASES.iter().any(|(case, _)| *case == name),
            "{name} has no expected error"
        );
    }
}

/// A conversion (read, then write) that fails on its input writes nothing.
#[test]
fn failed_conversions_leave_no_output() {
    let out = tempfile::tempdir().unwrap();
    for (name, _) in CASES {
        let input = corpus().join(name);
        let stem = Path::new(name)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if matches!(
            input.extension().and_then(|e| e.to_str()),
            Some("wav" | "flac")
        ) {
            let target = out.path().join(format!("{stem}.wav"));
            let _ = load_mono(&input, 16_000).map(|s| write_wav16(&target, &s, 16_000));
        } else {
            let target = out.path().join(format!("{stem}.mid"));
            let _ = read_notes(&input).map(|n| write_notes(&target, &n));
        }
    }
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

/// Writers check the notes before touching the disk: a bad note leaves neither the file nor a
/// temporary, and an existing file keeps its content.
#[test]
fn writers_refuse_bad_notes_without_touching_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let nan = Note {
        onset_s: f64::NAN,
        offset_s: 1.0,
        pitch: 60,
        velocity: 64,
    };
    let backwards = Note {
        onset_s: 2.0,
        offset_s: 1.0,
        pitch: 60,
        velocity: 64,
    };
    let too_high = Note {
        onset_s: 0.0,
        offset_s: 1.0,
        pitch: 200,
        velocity: 64,
    };
    for extension in ["tsv", "txt", "mid", "jams"] {
        for bad in [nan, backwards, too_high] {
            let path = dir.path().join(format!("out.{extension}"));
            let err = write_notes(&path, &[bad]).unwrap_err().to_string();
            assert!(
                err.contains("out.") && err.contains("note 0"),
                "{extension}: {err}"
            );
        }
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let keep = dir.path().join("keep.tsv");
    std::fs::write(&keep, "old").unwrap();
    assert!(write_notes(&keep, &[nan]).is_err());
    assert_eq!(std::fs::read_to_string(&keep).unwrap(), "old");
}
