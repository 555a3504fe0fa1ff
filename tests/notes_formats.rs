//! Notes readers on real files, when `../shared/data` is present (skipped otherwise: the project's
//! tests must not need it).

use std::path::Path;

use mtosi::notes::read_notes;

fn shared_data(relative: &str) -> Option<std::path::PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(relative);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipped: {} is absent", path.display());
        None
    }
}

#[test]
fn every_maps_tsv_in_shared_data_reads() {
    let Some(dir) = shared_data("maps/tsv") else {
        return;
    };
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let notes = read_notes(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!notes.is_empty(), "{} has no notes", path.display());
        files += 1;
    }
    assert_eq!(files, 270);
}

/// Every format `write_notes` knows reads back through `read_notes` (velocity only where the
/// format has it).
#[test]
fn every_writable_format_round_trips_through_read_notes() {
    use mtosi::notes::{write_notes, Note, DEFAULT_VELOCITY};
    let notes = vec![
        Note {
            onset_s: 0.0,
            offset_s: 0.5,
            pitch: 21,
            velocity: 90,
        },
        Note {
            onset_s: 0.25,
            offset_s: 1.0,
            pitch: 60,
            velocity: 30,
        },
        Note {
            onset_s: 1.0,
            offset_s: 1.5,
            pitch: 60,
            velocity: 127,
        },
        Note {
            onset_s: 1.125,
            offset_s: 2.0,
            pitch: 108,
            velocity: 1,
        },
        // Zero-length notes stay zero-length in every format (`Note`'s doc).
        Note {
            onset_s: 1.5,
            offset_s: 1.5,
            pitch: 60,
            velocity: 100,
        },
        Note {
            onset_s: 2.25,
            offset_s: 2.25,
            pitch: 70,
            velocity: 100,
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    for (extension, keeps_velocity) in [
        ("tsv", true),
        ("txt", false),
        ("mid", true),
        ("midi", true),
        ("jams", false),
    ] {
        let path = dir.path().join(format!("notes.{extension}"));
        write_notes(&path, &notes).unwrap();
        let mut read = read_notes(&path).unwrap();
        read.sort_by(|a, b| {
            (a.onset_s, a.pitch, a.offset_s)
                .partial_cmp(&(b.onset_s, b.pitch, b.offset_s))
                .unwrap()
        });
        assert_eq!(read.len(), notes.len(), "{extension}");
        for (a, b) in read.iter().zip(&notes) {
            let velocity = if keeps_velocity {
                b.velocity
            } else {
                DEFAULT_VELOCITY
            };
            // Times here are exact in every format (binary fractions, 0.5 ms MIDI ticks).
            assert_eq!(*a, Note { velocity, ..*b }, "{extension}");
        }
    }
}

#[test]
fn mir_eval_text_is_told_from_maps_txt_by_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("est.txt");
    std::fs::write(&path, "0.5\t1.0\t440.0\n1.0\t1.5\t261.6256\n").unwrap();
    let pitches: Vec<u8> = read_notes(&path).unwrap().iter().map(|n| n.pitch).collect();
    assert_eq!(pitches, vec![69, 60]);
    std::fs::write(&path, "OnsetTime\tOffsetTime\tMidiPitch\n0.5\t1.0\t69\n").unwrap();
    assert_eq!(read_notes(&path).unwrap()[0].pitch, 69);
}

#[test]
fn unknown_extensions_are_named() {
    let err = read_notes(Path::new("song.mp3")).unwrap_err().to_string();
    assert!(
        err.contains("song.mp3") && err.contains("mp3") && err.contains("tsv"),
        "{err}"
    );
}
