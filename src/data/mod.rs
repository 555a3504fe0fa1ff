//! Datasets: lists of (audio, notes) items with a name and a split (MAPS, GuitarSet, MAESTRO,
//! folders of paired files, the Synthesized Instruments set).
//!
//! Loaders only list files; nothing is decoded until an item's audio or notes are asked for.
//! Audio and label files that don't pair up are kept by name in the [`Dataset`], so a caller
//! can report them, and label files without audio can still be rendered by `mtosi synth`.

pub mod folder;
pub mod guitarset;
pub mod maestro;
pub mod maps;
pub mod source;
pub mod synth_set;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use folder::paired_folder;
pub use guitarset::{guitarset, GuitarSetAudio, GUITARSET_SPLIT_SEED};
pub use maestro::maestro;
pub use maps::maps;
pub use synth_set::{synth_set, SynthManifest, SynthManifestItem};

/// Training, validation or test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    #[serde(rename = "val")]
    Validation,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

    /// The folder and manifest name: `train`, `val`, `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "val",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "val" | "valid" | "validation" => Ok(Split::Validation),
            "test" => Ok(Split::Test),
            _ => Err(format!("unknown split {s:?} (expected train, val or test)")),
        }
    }
}

/// One recording with its annotation.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub name: String,
    pub split: Split,
    pub audio_path: PathBuf,
    pub label_path: PathBuf,
}

impl Item {
    /// The annotation as notes.
    pub fn load_notes(&self) -> Result<Vec<crate::notes::Note>, crate::notes::NotesError> {
        crate::notes::read_notes(&self.label_path)
    }

    /// The audio, mono at `sample_rate_hz`.
    pub fn load_audio(&self, sample_rate_hz: u32) -> Result<Vec<f32>, crate::audio::AudioError> {
        crate::audio::load_mono(&self.audio_path, sample_rate_hz)
    }
}

/// An annotation whose audio is absent: still usable as a score to synthesize.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelOnly {
    pub name: String,
    pub split: Split,
    pub label_path: PathBuf,
}

/// A listed dataset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    pub name: String,
    /// Recordings with both audio and labels, sorted by split then name.
    pub items: Vec<Item>,
    /// Label files with no audio of the same name.
    pub labels_without_audio: Vec<LabelOnly>,
    /// Audio files with no label file of the same name.
    pub audio_without_labels: Vec<PathBuf>,
    /// Files the loader recognised but could not place (e.g. an unknown MAPS group).
    pub skipped: Vec<(PathBuf, String)>,
}

impl Dataset {
    /// The items of one split.
    pub fn split(&self, split: Split) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(move |item| item.split == split)
    }

    /// Every annotation with its split, whether or not its audio is present: what `mtosi synth`
    /// renders.
    pub fn labels(&self) -> Vec<LabelOnly> {
        let mut labels: Vec<LabelOnly> = self
            .items
            .iter()
            .map(|item| LabelOnly {
                name: item.name.clone(),
                split: item.split,
                label_path: item.label_path.clone(),
            })
            .chain(self.labels_without_audio.iter().cloned())
            .collect();
        labels.sort_by(|a, b| (a.split, &a.name).cmp(&(b.split, &b.name)));
        labels
    }

    /// One line per file that did not pair up or was skipped, naming it.
    pub fn pairing_report(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for label in &self.labels_without_audio {
            lines.push(format!(
                "{}: labels without audio ({})",
                label.name,
                label.label_path.display()
            ));
        }
        for audio in &self.audio_without_labels {
            lines.push(format!("{}: audio without labels", audio.display()));
        }
        for (path, why) in &self.skipped {
            lines.push(format!("{}: skipped: {why}", path.display()));
        }
        lines
    }

    /// How many items each split holds, as `train N, val N, test N`.
    pub fn split_counts(&self) -> String {
        Split::ALL
            .iter()
            .map(|&s| format!("{s} {}", self.split(s).count()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn sort(&mut self) {
        self.items
            .sort_by(|a, b| (a.split, &a.name).cmp(&(b.split, &b.name)));
        self.labels_without_audio
            .sort_by(|a, b| (a.split, &a.name).cmp(&(b.split, &b.name)));
        self.audio_without_labels.sort();
        self.skipped.sort();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {problem}", path.display())]
    Metadata { path: PathBuf, problem: String },
    #[error("{}: {problem}", path.display())]
    Layout { path: PathBuf, problem: String },
}

impl DataError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Audio file extensions the loaders pair (lower case).
pub const AUDIO_EXTENSIONS: &[&str] = &["flac", "wav"];
/// Label file extensions the loaders pair, in order of preference when several exist.
pub const LABEL_EXTENSIONS: &[&str] = &["tsv", "txt", "mid", "midi", "jams"];

/// Every file under `root` (recursively, skipping hidden files and folders such as the
/// temporary files of atomic writes), sorted.
fn files_under(root: &Path) -> Result<Vec<PathBuf>, DataError> {
    if !root.is_dir() {
        return Err(DataError::Layout {
            path: root.to_path_buf(),
            problem: "not a directory".into(),
        });
    }
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| DataError::io(&dir, e))? {
            let entry = entry.map_err(|e| DataError::io(&dir, e))?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Lower-case extension, or "".
fn extension(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The preferred label file among candidates, by [`LABEL_EXTENSIONS`] order.
fn preferred_label(candidates: &[PathBuf]) -> Option<PathBuf> {
    LABEL_EXTENSIONS
        .iter()
        .find_map(|ext| candidates.iter().find(|p| extension(p) == *ext))
        .cloned()
}

/// The preferred audio file among candidates, by [`AUDIO_EXTENSIONS`] order.
fn preferred_audio(candidates: &[PathBuf]) -> Option<PathBuf> {
    AUDIO_EXTENSIONS
        .iter()
        .find_map(|ext| candidates.iter().find(|p| extension(p) == *ext))
        .cloned()
}

/// A deterministic shuffle (SplitMix64 + Fisher-Yates), the same on every platform, so a
/// seeded split never changes under a dependency upgrade.
fn seeded_shuffle<T>(values: &mut [T], seed: u64) {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for i in (1..values.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        values.swap(i, j);
    }
}

/// Splits `names` 80/10/10 after a seeded shuffle: the first `round(0.8 n)` train, the next
/// `round(0.1 n)` validation, the rest test.
pub fn split_80_10_10(names: &[String], seed: u64) -> Vec<(String, Split)> {
    let mut sorted = names.to_vec();
    sorted.sort();
    sorted.dedup();
    seeded_shuffle(&mut sorted, seed);
    let n = sorted.len();
    let n_train = (0.8 * n as f64).round() as usize;
    let n_val = (0.1 * n as f64).round() as usize;
    sorted
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let split = if i < n_train {
                Split::Train
            } else if i < n_train + n_val {
                Split::Validation
            } else {
                Split::Test
            };
            (name, split)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_80_10_10_of_360_is_288_36_36_and_fixed_by_the_seed() {
        let names: Vec<String> = (0..360).map(|i| format!("piece{i:03}")).collect();
        let a = split_80_10_10(&names, 7);
        let count = |s: Split| a.iter().filter(|(_, x)| *x == s).count();
        assert_eq!(
            (
                count(Split::Train),
                count(Split::Validation),
                count(Split::Test)
            ),
            (288, 36, 36)
        );
        let mut reversed = names.clone();
        reversed.reverse();
        assert_eq!(
            split_80_10_10(&reversed, 7),
            a,
            "input order must not matter"
        );
        assert_ne!(
            split_80_10_10(&names, 8),
            a,
            "another seed gives another split"
        );
    }

    #[test]
    fn split_names_parse_and_print() {
        for s in Split::ALL {
            assert_eq!(s.as_str().parse::<Split>().unwrap(), s);
        }
        assert_eq!("validation".parse::<Split>().unwrap(), Split::Validation);
        assert!("dev".parse::<Split>().is_err());
    }
}
