//! Any folder of audio files with same-named label files (`song.wav` + `song.tsv`, in the same
//! sub-folder), all in one split.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{
    extension, files_under, preferred_audio, preferred_label, DataError, Dataset, Item, LabelOnly,
    Split, AUDIO_EXTENSIONS, LABEL_EXTENSIONS,
};

/// Pairs every audio file under `root` with the label file of the same path but its extension.
/// Item names are paths relative to `root` without extension.
pub fn paired_folder(root: &Path, split: Split) -> Result<Dataset, DataError> {
    let mut by_name: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for path in files_under(root)? {
        let ext = extension(&path);
        if AUDIO_EXTENSIONS.contains(&ext.as_str()) || LABEL_EXTENSIONS.contains(&ext.as_str()) {
            let relative = path.strip_prefix(root).unwrap_or(&path).with_extension("");
            by_name
                .entry(relative.to_string_lossy().into_owned())
                .or_default()
                .push(path);
        }
    }
    let name = root
        .file_name()
        .map_or("folder".into(), |n| n.to_string_lossy().into_owned());
    let mut dataset = Dataset {
        name,
        ..Default::default()
    };
    for (name, files) in by_name {
        match (preferred_audio(&files), preferred_label(&files)) {
            (Some(audio_path), Some(label_path)) => dataset.items.push(Item {
                name,
                split,
                audio_path,
                label_path,
            }),
            (None, Some(label_path)) => dataset.labels_without_audio.push(LabelOnly {
                name,
                split,
                label_path,
            }),
            (Some(audio_path), None) => dataset.audio_without_labels.push(audio_path),
            (None, None) => {}
        }
    }
    dataset.sort();
    Ok(dataset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn same_named_files_pair_and_the_rest_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("live")).unwrap();
        for file in [
            "a.wav",
            "a.tsv",
            "live/b.flac",
            "live/b.mid",
            "live/c.wav",
            "d.jams",
            "notes.md",
            ".a.wav.tmp-1-0",
        ] {
            fs::write(root.join(file), b"").unwrap();
        }
        let d = paired_folder(root, Split::Test).unwrap();
        let names: Vec<&str> = d.items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["a", "live/b"]);
        assert!(d.items.iter().all(|i| i.split == Split::Test));
        assert_eq!(d.items[1].label_path, root.join("live/b.mid"));
        let report = d.pairing_report().join("\n");
        assert!(
            report.contains("live/c.wav: audio without labels"),
            "{report}"
        );
        assert!(report.contains("d: labels without audio"), "{report}");
        assert_eq!(d.pairing_report().len(), 2, "{report}");
    }
}
