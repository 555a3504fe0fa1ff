//! MAPS (Emiya et al.): as published (`<group>/MUS/MAPS_MUS-<piece>_<group>.wav` with `.txt`
//! and `.mid`) and as converted by the paper's authors (`flac/` + `tsv/` folders). Both are
//! found by scanning the root recursively and pairing files by name.
//!
//! Split (PROTOCOL.md, "Datasets and splits"): the 7 software-piano groups train; the real
//! Disklavier recordings are held out, ENSTDkAm as validation and ENSTDkCl as test (the
//! Synthesized Instruments set uses them so; the paper's MAPS-only runs used both groups for
//! validation and test alike). Only MUS pieces are listed, as in the paper.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{
    extension, files_under, preferred_audio, preferred_label, stem, DataError, Dataset, Item,
    LabelOnly, Split,
};
use super::{AUDIO_EXTENSIONS, LABEL_EXTENSIONS};

/// The seven software-piano groups: the training set.
pub const MAPS_TRAIN_GROUPS: [&str; 7] = [
    "AkPnBcht", "AkPnBsdf", "AkPnCGdD", "AkPnStgb", "SptkBGAm", "SptkBGCl", "StbgTGd2",
];
/// The real Disklavier group held out for validation.
pub const MAPS_VALIDATION_GROUP: &str = "ENSTDkAm";
/// The real Disklavier group held out for testing.
pub const MAPS_TEST_GROUP: &str = "ENSTDkCl";

/// The split of a MAPS group, or `None` for a name that is not one of the nine groups.
pub fn maps_split_of_group(group: &str) -> Option<Split> {
    if MAPS_TRAIN_GROUPS.contains(&group) {
        Some(Split::Train)
    } else if group == MAPS_VALIDATION_GROUP {
        Some(Split::Validation)
    } else if group == MAPS_TEST_GROUP {
        Some(Split::Test)
    } else {
        None
    }
}

/// Lists the MUS pieces under `root`.
pub fn maps(root: &Path) -> Result<Dataset, DataError> {
    let mut by_name: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut dataset = Dataset {
        name: "MAPS".into(),
        ..Default::default()
    };
    for path in files_under(root)? {
        let ext = extension(&path);
        if !AUDIO_EXTENSIONS.contains(&ext.as_str()) && !LABEL_EXTENSIONS.contains(&ext.as_str()) {
            continue;
        }
        let name = stem(&path);
        if !name.starts_with("MAPS_") {
            continue;
        }
        if !name.starts_with("MAPS_MUS-") {
            dataset.skipped.push((
                path,
                "not a MUS piece (the paper uses MUS pieces only)".into(),
            ));
            continue;
        }
        by_name.entry(name).or_default().push(path);
    }
    for (name, files) in by_name {
        let group = name.rsplit('_').next().unwrap_or_default();
        let Some(split) = maps_split_of_group(group) else {
            dataset
                .skipped
                .push((files[0].clone(), format!("unknown MAPS group {group:?}")));
            continue;
        };
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

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"").unwrap();
    }

    #[test]
    fn converted_layout_pairs_flac_with_tsv_and_splits_by_group() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for name in [
            "MAPS_MUS-a_AkPnBcht",
            "MAPS_MUS-b_ENSTDkAm",
            "MAPS_MUS-c_ENSTDkCl",
        ] {
            touch(&root.join("flac").join(format!("{name}.flac")));
            touch(&root.join("tsv").join(format!("{name}.tsv")));
        }
        touch(&root.join("tsv/MAPS_MUS-d_StbgTGd2.tsv"));
        touch(&root.join("flac/MAPS_MUS-e_SptkBGCl.flac"));
        let d = maps(root).unwrap();
        let splits: Vec<(&str, Split)> =
            d.items.iter().map(|i| (i.name.as_str(), i.split)).collect();
        assert_eq!(
            splits,
            [
                ("MAPS_MUS-a_AkPnBcht", Split::Train),
                ("MAPS_MUS-b_ENSTDkAm", Split::Validation),
                ("MAPS_MUS-c_ENSTDkCl", Split::Test)
            ]
        );
        assert_eq!(
            d.items[0].audio_path,
            root.join("flac/MAPS_MUS-a_AkPnBcht.flac")
        );
        assert_eq!(
            d.items[0].label_path,
            root.join("tsv/MAPS_MUS-a_AkPnBcht.tsv")
        );
        let report = d.pairing_report().join("\n");
        assert!(
            report.contains("MAPS_MUS-d_StbgTGd2: labels without audio"),
            "{report}"
        );
        assert!(
            report.contains("MAPS_MUS-e_SptkBGCl.flac: audio without labels"),
            "{report}"
        );
        assert_eq!(
            d.labels().len(),
            4,
            "labels without audio still count as scores"
        );
    }

    #[test]
    fn published_layout_prefers_txt_over_mid_and_skips_non_mus_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mus = root.join("MAPS/AkPnCGdD/MUS");
        for ext in ["wav", "txt", "mid"] {
            touch(&mus.join(format!("MAPS_MUS-x_AkPnCGdD.{ext}")));
            touch(&root.join(format!(
                "MAPS/AkPnCGdD/ISOL/NO/MAPS_ISOL_NO_F_S0_M50_AkPnCGdD.{ext}"
            )));
        }
        touch(&root.join("MAPS/Other/MUS/MAPS_MUS-y_Other.wav"));
        touch(&root.join("MAPS/Other/MUS/MAPS_MUS-y_Other.txt"));
        let d = maps(root).unwrap();
        assert_eq!(d.items.len(), 1);
        assert_eq!(d.items[0].label_path, mus.join("MAPS_MUS-x_AkPnCGdD.txt"));
        assert_eq!(d.items[0].audio_path, mus.join("MAPS_MUS-x_AkPnCGdD.wav"));
        let report = d.pairing_report().join("\n");
        assert!(report.contains("not a MUS piece"), "{report}");
        assert!(report.contains("unknown MAPS group \"Other\""), "{report}");
    }

    #[test]
    fn a_missing_root_is_an_error_naming_it() {
        let err = maps(Path::new("/nonexistent/maps")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/maps"), "{err}");
    }
}
