//! GuitarSet (Xi et al.) as published: `annotation/<name>.jams` and one folder per audio
//! variant, e.g. `audio_hex-pickup_original/<name>_hex.wav`. Files are found by scanning the
//! root recursively, so a flat folder of the same file names works too.
//!
//! Split (PROTOCOL.md): 80/10/10 train/val/test over the recordings, drawn by a seeded shuffle
//! of the sorted names ([`super::split_80_10_10`]). The paper's exact assignment was not
//! published; the seed fixes ours.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{extension, files_under, split_80_10_10, stem, DataError, Dataset, Item, LabelOnly};

/// Seed of the default GuitarSet split.
pub const GUITARSET_SPLIT_SEED: u64 = 2020;

/// Which of GuitarSet's audio recordings an item uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GuitarSetAudio {
    /// `audio_mono-mic/<name>_mic.wav`: the reference microphone.
    MonoMic,
    /// `audio_hex-pickup_original/<name>_hex.wav`: six channels, one per string (the paper's choice).
    #[default]
    HexPickupOriginal,
    /// `audio_hex-pickup_debleeded/<name>_hex_cln.wav`: six channels with bleed removed.
    HexPickupDebleeded,
    /// `audio_mono-pickup_mix/<name>_mix.wav`: the summed pickup.
    MonoPickupMix,
}

impl GuitarSetAudio {
    /// The suffix between the recording name and `.wav`.
    pub fn file_suffix(self) -> &'static str {
        match self {
            GuitarSetAudio::MonoMic => "_mic",
            GuitarSetAudio::HexPickupOriginal => "_hex",
            GuitarSetAudio::HexPickupDebleeded => "_hex_cln",
            GuitarSetAudio::MonoPickupMix => "_mix",
        }
    }

    /// The folder name in the published layout (also accepted on the command line).
    pub fn folder(self) -> &'static str {
        match self {
            GuitarSetAudio::MonoMic => "audio_mono-mic",
            GuitarSetAudio::HexPickupOriginal => "audio_hex-pickup_original",
            GuitarSetAudio::HexPickupDebleeded => "audio_hex-pickup_debleeded",
            GuitarSetAudio::MonoPickupMix => "audio_mono-pickup_mix",
        }
    }
}

impl std::str::FromStr for GuitarSetAudio {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let all = [
            GuitarSetAudio::MonoMic,
            GuitarSetAudio::HexPickupOriginal,
            GuitarSetAudio::HexPickupDebleeded,
            GuitarSetAudio::MonoPickupMix,
        ];
        all.into_iter()
            .find(|v| v.folder() == s || v.file_suffix().trim_start_matches('_') == s)
            .ok_or_else(|| {
                let names: Vec<&str> = all.iter().map(|v| v.folder()).collect();
                format!(
                    "unknown GuitarSet audio {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Lists GuitarSet under `root` with the chosen audio variant, split by `seed`.
pub fn guitarset(root: &Path, audio: GuitarSetAudio, seed: u64) -> Result<Dataset, DataError> {
    let mut annotations: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut recordings: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in files_under(root)? {
        match extension(&path).as_str() {
            "jams" => {
                annotations.insert(stem(&path), path);
            }
            "wav" => {
                if let Some(name) = stem(&path).strip_suffix(audio.file_suffix()) {
                    recordings.insert(name.to_string(), path);
                }
            }
            _ => {}
        }
    }
    // The split is drawn over the annotations (GuitarSet's 360 recordings), so it does not
    // depend on which audio variant is present.
    let names: Vec<String> = annotations.keys().cloned().collect();
    let mut dataset = Dataset {
        name: "GuitarSet".into(),
        ..Default::default()
    };
    for (name, split) in split_80_10_10(&names, seed) {
        let label_path = annotations[&name].clone();
        match recordings.remove(&name) {
            Some(audio_path) => dataset.items.push(Item {
                name,
                split,
                audio_path,
                label_path,
            }),
            None => dataset.labels_without_audio.push(LabelOnly {
                name,
                split,
                label_path,
            }),
        }
    }
    dataset.audio_without_labels = recordings.into_values().collect();
    dataset.sort();
    Ok(dataset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Split;
    use std::fs;

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"").unwrap();
    }

    fn published_layout(root: &Path, n: usize) {
        for i in 0..n {
            let name = format!("0{}_BN1-{i:03}-Eb_comp", i % 6);
            touch(&root.join(format!("annotation/{name}.jams")));
            touch(&root.join(format!("audio_mono-mic/{name}_mic.wav")));
            touch(&root.join(format!("audio_hex-pickup_original/{name}_hex.wav")));
            touch(&root.join(format!("audio_hex-pickup_debleeded/{name}_hex_cln.wav")));
        }
    }

    #[test]
    fn the_chosen_audio_variant_is_paired_with_the_jams() {
        let dir = tempfile::tempdir().unwrap();
        published_layout(dir.path(), 20);
        for variant in [
            GuitarSetAudio::MonoMic,
            GuitarSetAudio::HexPickupOriginal,
            GuitarSetAudio::HexPickupDebleeded,
        ] {
            let d = guitarset(dir.path(), variant, GUITARSET_SPLIT_SEED).unwrap();
            assert_eq!(d.items.len(), 20, "{variant:?}");
            assert!(
                d.pairing_report().is_empty(),
                "{variant:?}: {:?}",
                d.pairing_report()
            );
            for item in &d.items {
                assert!(
                    item.audio_path
                        .starts_with(dir.path().join(variant.folder())),
                    "{item:?}"
                );
                let file = item
                    .audio_path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                assert_eq!(file, format!("{}{}.wav", item.name, variant.file_suffix()));
            }
        }
        let mix = guitarset(dir.path(), GuitarSetAudio::MonoPickupMix, 1).unwrap();
        assert!(mix.items.is_empty());
        assert_eq!(mix.labels_without_audio.len(), 20);
    }

    #[test]
    fn the_split_is_80_10_10_and_the_same_for_every_audio_variant() {
        let dir = tempfile::tempdir().unwrap();
        published_layout(dir.path(), 30);
        let mic = guitarset(dir.path(), GuitarSetAudio::MonoMic, 5).unwrap();
        let hex = guitarset(dir.path(), GuitarSetAudio::HexPickupOriginal, 5).unwrap();
        let splits = |d: &Dataset| {
            d.items
                .iter()
                .map(|i| (i.name.clone(), i.split))
                .collect::<Vec<_>>()
        };
        assert_eq!(splits(&mic), splits(&hex));
        assert_eq!(mic.split(Split::Train).count(), 24);
        assert_eq!(mic.split(Split::Validation).count(), 3);
        assert_eq!(mic.split(Split::Test).count(), 3);
    }

    #[test]
    fn audio_without_annotation_is_reported_by_name() {
        let dir = tempfile::tempdir().unwrap();
        published_layout(dir.path(), 3);
        touch(
            &dir.path()
                .join("audio_mono-mic/05_Jazz1-200-B_solo_mic.wav"),
        );
        let d = guitarset(dir.path(), GuitarSetAudio::MonoMic, 1).unwrap();
        let report = d.pairing_report().join("\n");
        assert!(
            report.contains("05_Jazz1-200-B_solo_mic.wav: audio without labels"),
            "{report}"
        );
    }

    #[test]
    fn variants_parse_from_folder_or_short_names() {
        assert_eq!(
            "audio_mono-mic".parse::<GuitarSetAudio>().unwrap(),
            GuitarSetAudio::MonoMic
        );
        assert_eq!(
            "hex_cln".parse::<GuitarSetAudio>().unwrap(),
            GuitarSetAudio::HexPickupDebleeded
        );
        assert!("stereo".parse::<GuitarSetAudio>().is_err());
    }
}
