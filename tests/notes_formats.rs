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
