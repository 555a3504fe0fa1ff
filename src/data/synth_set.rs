//! The Synthesized Instruments set as `mtosi synth` writes it: `train/`, `val/`, `test/`
//! folders of 16 kHz WAV + label TSV, and `manifest.json` listing every item.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{DataError, Dataset, Item, Split};

/// File name of the manifest in the set's folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The `format` field of a manifest.
pub const MANIFEST_FORMAT: &str = "mtosi-synthesized-instruments";

/// What `manifest.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthManifest {
    pub format: String,
    pub version: u32,
    /// Rate of the WAV files.
    pub sample_rate_hz: u32,
    /// Rate the synthesizer ran at before resampling to `sample_rate_hz`.
    pub synth_rate_hz: u32,
    pub soundfont: String,
    /// Reverb and chorus on.
    pub effects: bool,
    pub items: Vec<SynthManifestItem>,
}

/// One rendered piece.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthManifestItem {
    pub name: String,
    pub split: Split,
    /// GM program it was rendered with.
    pub program: u8,
    /// Paths relative to the set's folder.
    pub audio: String,
    pub labels: String,
    /// Where the notes came from: a label file, or `random:<seed>:<index>`.
    pub source: String,
}

/// Reads the set from its folder (or its manifest file). Items whose files are missing (an
/// interrupted or edited set) are reported, not listed.
pub fn synth_set(path: &Path) -> Result<Dataset, DataError> {
    let manifest_path = if path.is_dir() {
        path.join(MANIFEST_FILE)
    } else {
        path.to_path_buf()
    };
    let manifest = read_manifest(&manifest_path)?;
    let root = manifest_path
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut dataset = Dataset {
        name: "Synthesized Instruments".into(),
        ..Default::default()
    };
    for entry in manifest.items {
        let audio_path = root.join(&entry.audio);
        let label_path = root.join(&entry.labels);
        match (audio_path.is_file(), label_path.is_file()) {
            (true, true) => dataset.items.push(Item {
                name: entry.name,
                split: entry.split,
                audio_path,
                label_path,
            }),
            (false, true) => dataset.labels_without_audio.push(super::LabelOnly {
                name: entry.name,
                split: entry.split,
                label_path,
            }),
            (true, false) => dataset.audio_without_labels.push(audio_path),
            (false, false) => dataset
                .skipped
                .push((audio_path, "listed in the manifest but missing".into())),
        }
    }
    dataset.sort();
    Ok(dataset)
}

/// Reads and checks a manifest.
pub fn read_manifest(path: &Path) -> Result<SynthManifest, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let manifest: SynthManifest = serde_json::from_str(&text).map_err(|e| DataError::Metadata {
        path: path.to_path_buf(),
        problem: e.to_string(),
    })?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(DataError::Metadata {
            path: path.to_path_buf(),
            problem: format!(
                "format is {:?}, expected {MANIFEST_FORMAT:?}",
                manifest.format
            ),
        });
    }
    Ok(manifest)
}

/// Writes a manifest atomically.
pub fn write_manifest(path: &Path, manifest: &SynthManifest) -> Result<(), DataError> {
    let text = serde_json::to_string_pretty(manifest).map_err(|e| DataError::Metadata {
        path: path.to_path_buf(),
        problem: e.to_string(),
    })?;
    crate::fsutil::write_bytes_atomic(path, text.as_bytes()).map_err(|e| DataError::io(path, e))
}

/// Relative paths of an item's files inside the set: `<split>/<name>.wav` and `.tsv`.
pub fn item_paths(split: Split, name: &str) -> (PathBuf, PathBuf) {
    let dir = PathBuf::from(split.as_str());
    (
        dir.join(format!("{name}.wav")),
        dir.join(format!("{name}.tsv")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn manifest(items: Vec<SynthManifestItem>) -> SynthManifest {
        SynthManifest {
            format: MANIFEST_FORMAT.into(),
            version: 1,
            sample_rate_hz: 16_000,
            synth_rate_hz: 44_100,
            soundfont: "x.sf2".into(),
            effects: true,
            items,
        }
    }

    fn item(name: &str, split: Split) -> SynthManifestItem {
        let (audio, labels) = item_paths(split, name);
        SynthManifestItem {
            name: name.into(),
            split,
            program: 0,
            audio: audio.to_string_lossy().into_owned(),
            labels: labels.to_string_lossy().into_owned(),
            source: "s.tsv".into(),
        }
    }

    #[test]
    fn the_manifest_round_trips_and_lists_items_with_their_splits() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest(vec![
            item("a_prog0", Split::Train),
            item("b_prog25", Split::Validation),
            item("c_prog0", Split::Test),
        ]);
        for i in &m.items {
            fs::create_dir_all(dir.path().join(i.split.as_str())).unwrap();
            fs::write(dir.path().join(&i.audio), b"").unwrap();
            fs::write(dir.path().join(&i.labels), b"").unwrap();
        }
        write_manifest(&dir.path().join(MANIFEST_FILE), &m).unwrap();
        assert_eq!(read_manifest(&dir.path().join(MANIFEST_FILE)).unwrap(), m);
        fs::remove_file(dir.path().join("test/c_prog0.wav")).unwrap();
        let d = synth_set(dir.path()).unwrap();
        let splits: Vec<(&str, Split)> =
            d.items.iter().map(|i| (i.name.as_str(), i.split)).collect();
        assert_eq!(
            splits,
            [("a_prog0", Split::Train), ("b_prog25", Split::Validation)]
        );
        assert_eq!(d.items[1].audio_path, dir.path().join("val/b_prog25.wav"));
        assert!(
            d.pairing_report()[0].contains("c_prog0: labels without audio"),
            "{:?}",
            d.pairing_report()
        );
    }

    #[test]
    fn a_foreign_json_is_not_taken_for_a_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MANIFEST_FILE);
        fs::write(&path, r#"{"format": "other", "version": 1, "sample_rate_hz": 1, "synth_rate_hz": 1, "soundfont": "", "effects": false, "items": []}"#).unwrap();
        assert!(synth_set(dir.path())
            .unwrap_err()
            .to_string()
            .contains("expected \"mtosi-synthesized-instruments\""));
        fs::write(&path, "{").unwrap();
        assert!(synth_set(dir.path())
            .unwrap_err()
            .to_string()
            .contains(MANIFEST_FILE));
    }
}
