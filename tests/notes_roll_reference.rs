//! The label roll against numpy's, on notes chosen to hit every edge (half-frame times, zero
//! lengths, overlaps, keys outside 21..108, notes past the end). Fixture written by
//! `tools/reference/roll_labels.py`.

use std::path::Path;

use mtosi::notes::roll::{LabelRoll, HOP_LENGTH, KEY_COUNT};
use mtosi::notes::tsv::read_tsv;

/// The recording length the fixture was labelled for (41 frames).
const SAMPLES: usize = 40 * HOP_LENGTH + 100;

#[test]
fn codes_match_the_numpy_reference_cell_for_cell() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/notes");
    let notes = read_tsv(&dir.join("roll_reference.tsv")).unwrap();
    let expected = mtosi::npy::read(&dir.join("roll_reference_codes.npy")).unwrap();
    let roll = LabelRoll::from_notes(&notes, SAMPLES, 16_000, HOP_LENGTH);
    assert_eq!(expected.shape, vec![roll.frames, KEY_COUNT]);
    let got: Vec<f32> = roll.codes.iter().map(|&c| f32::from(c)).collect();
    let mismatches: Vec<(usize, usize, f32, f32)> = got
        .iter()
        .zip(&expected.data)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| (i / KEY_COUNT, i % KEY_COUNT + 21, *a, *b))
        .collect();
    assert!(
        mismatches.is_empty(),
        "(frame, key, ours, numpy): {mismatches:?}"
    );
    assert!(
        expected.data.iter().filter(|&&c| c == 3.0).count() > 20,
        "the fixture exercises onsets"
    );
}
