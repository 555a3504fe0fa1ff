//! MIDI reading against the transcriber's reference `parse_midi` (fixtures from
//! `tools/reference/midi_notes.py`), hand-made byte streams for what writers rarely emit
//! (running status, SMPTE timing), round trips through the writer, and clean errors.

use std::path::{Path, PathBuf};

use mtosi::device::equivalence::test_seed;
use mtosi::notes::midi::{encode_midi, parse_midi, read_midi, write_midi};
use mtosi::notes::tsv::read_tsv;
use mtosi::notes::{read_notes, Note};
use mtosi::rng::Rng;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/notes")
        .join(name)
}

fn assert_same_notes(ours: &[Note], reference: &[Note], tolerance_s: f64) {
    assert_eq!(ours.len(), reference.len(), "note count");
    // The reference lists notes in event order too; compare as sorted lists to be independent of tie order.
    let key = |n: &Note| (n.onset_s, n.pitch, n.offset_s);
    let mut ours = ours.to_vec();
    let mut reference = reference.to_vec();
    ours.sort_by(|a, b| key(a).partial_cmp(&key(b)).unwrap());
    reference.sort_by(|a, b| key(a).partial_cmp(&key(b)).unwrap());
    for (a, b) in ours.iter().zip(&reference) {
        assert!(
            a.pitch == b.pitch
                && a.velocity == b.velocity
                && (a.onset_s - b.onset_s).abs() <= tolerance_s
                && (a.offset_s - b.offset_s).abs() <= tolerance_s,
            "ours {a:?} vs reference {b:?}"
        );
    }
}

#[test]
fn format1_with_tempo_changes_and_pedal_matches_the_reference() {
    let ours = read_midi(&fixture("reference_format1.mid")).unwrap();
    let reference = read_tsv(&fixture("reference_format1.tsv")).unwrap();
    // The reference TSV holds six decimals.
    assert_same_notes(&ours, &reference, 1e-6);
}

#[test]
fn maestro_sample_matches_the_reference_when_present() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/maestro-sample");
    let Some(path) = std::fs::read_dir(&dir).ok().and_then(|entries| {
        entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "midi"))
    }) else {
        eprintln!("skipped: {} is absent", dir.display());
        return;
    };
    let ours = read_notes(&path).unwrap();
    let reference = read_tsv(&fixture("maestro_sample_reference.tsv")).unwrap();
    assert_same_notes(&ours, &reference, 1e-6);
}

/// A format-0 file around one track's event bytes, 96 ticks per beat (at 120 bpm: 1 tick = 1/192 s).
fn smf0(division: [u8; 2], track: &[u8]) -> Vec<u8> {
    let mut bytes = b"MThd\x00\x00\x00\x06\x00\x00\x00\x01".to_vec();
    bytes.extend_from_slice(&division);
    bytes.extend_from_slice(b"MTrk");
    bytes.extend_from_slice(&(track.len() as u32).to_be_bytes());
    bytes.extend_from_slice(track);
    bytes
}

#[test]
fn running_status_and_velocity_0_note_offs_are_read() {
    // One status byte 0x90, then data pairs only: on 60, on 64, (60, vel 0), (64, vel 0).
    let track = [
        0x00, 0x90, 60, 100, //
        0x60, 64, 90, // 96 ticks later, running status
        0x60, 60, 0, //
        0x60, 64, 0, //
        0x00, 0xFF, 0x2F, 0x00,
    ];
    let notes = parse_midi(&smf0([0, 96], &track)).unwrap();
    assert_eq!(
        notes,
        vec![
            Note {
                onset_s: 0.0,
                offset_s: 1.0,
                pitch: 60,
                velocity: 100
            },
            Note {
                onset_s: 0.5,
                offset_s: 1.5,
                pitch: 64,
                velocity: 90
            },
        ]
    );
}

#[test]
fn smpte_timing_uses_frames_and_ticks_per_frame() {
    // -25 fps, 40 ticks per frame: 1000 ticks per second; note from tick 500 to tick 1250.
    let track = [
        0x83, 0x74, 0x90, 62, 70, 0x85, 0x6E, 0x80, 62, 0, 0x00, 0xFF, 0x2F, 0x00,
    ];
    let notes = parse_midi(&smf0([0xE7, 40], &track)).unwrap();
    assert_eq!(
        notes,
        vec![Note {
            onset_s: 0.5,
            offset_s: 1.25,
            pitch: 62,
            velocity: 70
        }]
    );
}

#[test]
fn percussion_channel_notes_are_skipped() {
    let track = [
        0x00, 0x99, 36, 100, 0x60, 0x89, 36, 0, 0x00, 0x90, 40, 80, 0x60, 0x80, 40, 0, 0x00, 0xFF,
        0x2F, 0x00,
    ];
    let notes = parse_midi(&smf0([0, 96], &track)).unwrap();
    assert_eq!(notes.iter().map(|n| n.pitch).collect::<Vec<_>>(), vec![40]);
}

#[test]
fn written_files_read_back_to_the_same_notes() {
    let mut rng = Rng::new(test_seed("written_files_read_back_to_the_same_notes"));
    let mut next = |bound: u64| rng.next_u64() % bound;
    // Non-overlapping notes per key (overlaps of one key are not representable on one channel),
    // on the writer's 0.5 ms grid; one in four has length 0 (a note-on and its note-off at one
    // tick), and notes of one key touch, or follow each other by a tick or two.
    let mut notes = Vec::new();
    for pitch in [21u8, 40, 60, 61, 108] {
        let mut tick = next(100);
        for _ in 0..20 {
            let length = if next(4) == 0 { 0 } else { next(2000) };
            let velocity = 1 + next(127) as u8;
            notes.push(Note {
                onset_s: tick as f64 * 0.0005,
                offset_s: (tick + length) as f64 * 0.0005,
                pitch,
                velocity,
            });
            tick += length + next(3);
        }
    }
    assert!(notes.iter().any(|n| n.onset_s == n.offset_s));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("round.mid");
    write_midi(&path, &notes, 25).unwrap();
    // Ticks become seconds through 0.5 ms steps in f64: equal well within a nanosecond.
    assert_same_notes(&read_midi(&path).unwrap(), &notes, 1e-9);
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes.windows(2).any(|w| w == [0xC0, 25]),
        "program change to GM 25 on channel 1"
    );
}

#[test]
fn writer_refuses_the_percussion_channel_and_bad_programs() {
    let notes = [Note {
        onset_s: 0.0,
        offset_s: 1.0,
        pitch: 60,
        velocity: 64,
    }];
    assert!(encode_midi(&notes, 0, 9)
        .unwrap_err()
        .problem
        .contains("not a melodic channel"));
    assert!(encode_midi(&notes, 128, 0)
        .unwrap_err()
        .problem
        .contains("outside 0..=127"));
    assert!(encode_midi(&notes, 0, 3).is_ok());
}

#[test]
fn truncation_and_wrong_magic_are_named() {
    let bytes = std::fs::read(fixture("reference_format1.mid")).unwrap();
    for cut in [3, 10, 20, bytes.len() / 2, bytes.len() - 1] {
        let err = parse_midi(&bytes[..cut]).unwrap_err();
        assert!(err.problem.contains("truncated"), "cut at {cut}: {err}");
    }
    let err = parse_midi(b"RIFX\x00\x00\x00\x00garbage").unwrap_err();
    assert!(err.problem.contains("not a Standard MIDI file"), "{err}");
}

/// The case CI once failed on: a zero-length note (onset = offset = 0.9205 s) followed a tick
/// later by the next note of its key came back 0.5 ms long.
#[test]
fn a_zero_length_note_reads_back_with_length_zero() {
    let notes = [
        Note {
            onset_s: 0.9205,
            offset_s: 0.9205,
            pitch: 60,
            velocity: 80,
        },
        Note {
            onset_s: 0.921,
            offset_s: 1.5,
            pitch: 60,
            velocity: 70,
        },
        Note {
            onset_s: 1.5,
            offset_s: 1.5,
            pitch: 60,
            velocity: 60,
        },
        // A zero-length note where the next note of its key starts.
        Note {
            onset_s: 2.0,
            offset_s: 2.0,
            pitch: 60,
            velocity: 50,
        },
        Note {
            onset_s: 2.0,
            offset_s: 2.5,
            pitch: 60,
            velocity: 40,
        },
    ];
    let back = parse_midi(&encode_midi(&notes, 0, 0).unwrap()).unwrap();
    assert_same_notes(&back, &notes, 1e-9);
}
