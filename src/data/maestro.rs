//! MAESTRO (Hawthorne et al.) as published: a metadata file `maestro-v*.csv` or
//! `maestro-v*.json` beside year folders holding `.wav` and `.midi` files. The metadata's
//! `split` column gives the split; `audio_filename` and `midi_filename` are relative to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{DataError, Dataset, Item, LabelOnly, Split};

#[derive(Debug, Deserialize)]
struct Record {
    split: String,
    midi_filename: String,
    audio_filename: String,
}

/// Lists MAESTRO from its metadata: `path` is the metadata file or the folder holding it.
pub fn maestro(path: &Path) -> Result<Dataset, DataError> {
    let metadata = if path.is_dir() {
        find_metadata(path)?
    } else {
        path.to_path_buf()
    };
    let root = metadata.parent().unwrap_or(Path::new(".")).to_path_buf();
    let text = std::fs::read_to_string(&metadata).map_err(|e| DataError::io(&metadata, e))?;
    let bad = |problem: String| DataError::Metadata {
        path: metadata.clone(),
        problem,
    };
    let records = if super::extension(&metadata) == "json" {
        parse_json(&text).map_err(bad)?
    } else {
        parse_csv(&text).map_err(bad)?
    };
    let mut dataset = Dataset {
        name: "MAESTRO".into(),
        ..Default::default()
    };
    for (row, record) in records.into_iter().enumerate() {
        let split: Split = record.split.parse().map_err(|e| DataError::Metadata {
            path: metadata.clone(),
            problem: format!("record {row}: {e}"),
        })?;
        let name = Path::new(&record.midi_filename)
            .with_extension("")
            .to_string_lossy()
            .into_owned();
        let audio_path = root.join(&record.audio_filename);
        let label_path = root.join(&record.midi_filename);
        match (audio_path.is_file(), label_path.is_file()) {
            (true, true) => dataset.items.push(Item {
                name,
                split,
                audio_path,
                label_path,
            }),
            (false, true) => dataset.labels_without_audio.push(LabelOnly {
                name,
                split,
                label_path,
            }),
            (true, false) => dataset.audio_without_labels.push(audio_path),
            (false, false) => dataset.skipped.push((
                audio_path,
                "neither the audio nor the MIDI file exists".into(),
            )),
        }
    }
    dataset.sort();
    Ok(dataset)
}

/// The metadata file in `dir`: `maestro-v*.csv`, else `maestro-v*.json` (newest version name last).
fn find_metadata(dir: &Path) -> Result<PathBuf, DataError> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_ascii_lowercase();
            name.starts_with("maestro-v") && (name.ends_with(".csv") || name.ends_with(".json"))
        })
        .collect();
    // csv sorts before json; among versions the latest name wins.
    found.sort_by_key(|p| (super::extension(p) != "csv", std::cmp::Reverse(p.clone())));
    found.into_iter().next().ok_or_else(|| DataError::Layout {
        path: dir.to_path_buf(),
        problem: "no MAESTRO metadata (maestro-v*.csv or maestro-v*.json) in this folder".into(),
    })
}

fn parse_csv(text: &str) -> Result<Vec<Record>, String> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    reader
        .deserialize()
        .enumerate()
        .map(|(row, r)| r.map_err(|e| format!("row {}: {e}", row + 2)))
        .collect()
}

/// MAESTRO v1/v2 JSON is a list of records; v3 is an object of columns, each mapping a row
/// index ("0", "1", …) to the value.
fn parse_json(text: &str) -> Result<Vec<Record>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if value.is_array() {
        return serde_json::from_value(value).map_err(|e| e.to_string());
    }
    let columns: BTreeMap<String, BTreeMap<String, serde_json::Value>> =
        serde_json::from_value(value)
            .map_err(|e| format!("neither a list of records nor an object of columns: {e}"))?;
    let column = |name: &str| {
        columns
            .get(name)
            .ok_or_else(|| format!("no {name:?} column"))
    };
    let (splits, midis, audios) = (
        column("split")?,
        column("midi_filename")?,
        column("audio_filename")?,
    );
    let mut rows: Vec<(usize, Record)> = Vec::with_capacity(splits.len());
    for (index, split) in splits {
        let text_at = |col: &BTreeMap<String, serde_json::Value>, name: &str| {
            col.get(index)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| format!("row {index}: {name} missing or not text"))
        };
        let record = Record {
            split: split
                .as_str()
                .ok_or_else(|| format!("row {index}: split is not text"))?
                .to_string(),
            midi_filename: text_at(midis, "midi_filename")?,
            audio_filename: text_at(audios, "audio_filename")?,
        };
        rows.push((
            index
                .parse()
                .map_err(|_| format!("row index {index:?} is not a number"))?,
            record,
        ));
    }
    rows.sort_by_key(|(i, _)| *i);
    Ok(rows.into_iter().map(|(_, r)| r).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn layout(root: &Path) {
        fs::create_dir_all(root.join("2018")).unwrap();
        for name in ["a", "b", "c"] {
            fs::write(root.join(format!("2018/{name}.wav")), b"").unwrap();
            fs::write(root.join(format!("2018/{name}.midi")), b"").unwrap();
        }
        fs::remove_file(root.join("2018/c.wav")).unwrap();
    }

    const CSV: &str =
        "canonical_composer,canonical_title,split,year,midi_filename,audio_filename,duration\n\
        X,\"Sonata, Op. 1\",train,2018,2018/a.midi,2018/a.wav,1.0\n\
        Y,T,validation,2018,2018/b.midi,2018/b.wav,2.0\n\
        Z,T,test,2018,2018/c.midi,2018/c.wav,3.0\n";

    fn check(d: &Dataset, root: &Path) {
        let splits: Vec<(&str, Split)> =
            d.items.iter().map(|i| (i.name.as_str(), i.split)).collect();
        assert_eq!(
            splits,
            [("2018/a", Split::Train), ("2018/b", Split::Validation)]
        );
        assert_eq!(d.items[0].audio_path, root.join("2018/a.wav"));
        assert_eq!(d.labels_without_audio.len(), 1);
        assert_eq!(d.labels_without_audio[0].split, Split::Test);
    }

    #[test]
    fn csv_metadata_gives_the_splits() {
        let dir = tempfile::tempdir().unwrap();
        layout(dir.path());
        fs::write(dir.path().join("maestro-v3.0.0.csv"), CSV).unwrap();
        check(&maestro(dir.path()).unwrap(), dir.path());
    }

    #[test]
    fn json_metadata_in_columns_or_records_gives_the_splits() {
        let dir = tempfile::tempdir().unwrap();
        layout(dir.path());
        let columns = r#"{"split": {"0": "train", "1": "validation", "2": "test"},
            "midi_filename": {"0": "2018/a.midi", "1": "2018/b.midi", "2": "2018/c.midi"},
            "audio_filename": {"0": "2018/a.wav", "1": "2018/b.wav", "2": "2018/c.wav"},
            "duration": {"0": 1.0, "1": 2.0, "2": 3.0}}"#;
        fs::write(dir.path().join("maestro-v3.0.0.json"), columns).unwrap();
        check(&maestro(dir.path()).unwrap(), dir.path());
        let records = r#"[{"split": "train", "midi_filename": "2018/a.midi", "audio_filename": "2018/a.wav"},
            {"split": "validation", "midi_filename": "2018/b.midi", "audio_filename": "2018/b.wav"},
            {"split": "test", "midi_filename": "2018/c.midi", "audio_filename": "2018/c.wav"}]"#;
        let path = dir.path().join("maestro-v2.0.0.json");
        fs::write(&path, records).unwrap();
        check(&maestro(&path).unwrap(), dir.path());
    }

    #[test]
    fn bad_metadata_is_an_error_naming_the_file_and_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("maestro-v3.0.0.csv");
        fs::write(
            &path,
            "split,midi_filename,audio_filename\ntrain,a.midi,a.wav\nholdout,b.midi,b.wav\n",
        )
        .unwrap();
        let err = maestro(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("maestro-v3.0.0.csv")
                && err.contains("record 1")
                && err.contains("holdout"),
            "{err}"
        );
        fs::write(&path, "split,midi_filename\ntrain,a.midi\n").unwrap();
        let err = maestro(dir.path()).unwrap_err().to_string();
        assert!(err.contains("audio_filename"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        assert!(maestro(empty.path())
            .unwrap_err()
            .to_string()
            .contains("no MAESTRO metadata"));
    }
}
