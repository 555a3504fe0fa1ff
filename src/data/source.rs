//! A dataset named on the command line as `KIND:PATH` (`maps:/data/maps`, `synth:set/`), and
//! the items of a split drawn from several of them.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{DataError, Dataset, GuitarSetAudio, Item, Split, GUITARSET_SPLIT_SEED};

/// The loaders of `crate::data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataKind {
    Maps,
    Guitarset,
    Maestro,
    /// A folder of same-named audio and label files, all of one split (see [`DataSource::load`]).
    Folder,
    /// The Synthesized Instruments set `mtosi synth` writes.
    Synth,
}

impl DataKind {
    pub const ALL: [DataKind; 5] = [
        DataKind::Maps,
        DataKind::Guitarset,
        DataKind::Maestro,
        DataKind::Folder,
        DataKind::Synth,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::Maps => "maps",
            DataKind::Guitarset => "guitarset",
            DataKind::Maestro => "maestro",
            DataKind::Folder => "folder",
            DataKind::Synth => "synth",
        }
    }
}

/// `KIND:PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DataSource {
    pub kind: DataKind,
    pub path: PathBuf,
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.path.display())
    }
}

impl std::str::FromStr for DataSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let kinds = || {
            DataKind::ALL
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (kind, path) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not KIND:PATH (KIND one of {})", kinds()))?;
        let kind = DataKind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind.to_ascii_lowercase())
            .ok_or_else(|| {
                format!(
                    "unknown dataset kind {kind:?} in {s:?}; expected one of {}",
                    kinds()
                )
            })?;
        if path.is_empty() {
            return Err(format!("{s:?}: the path is empty"));
        }
        Ok(DataSource {
            kind,
            path: PathBuf::from(path),
        })
    }
}

impl DataSource {
    /// Lists the dataset. A `folder` has no splits of its own: all its items get `folder_split`
    /// (train when it trains, the asked split when it validates or tests).
    pub fn load(&self, folder_split: Split) -> Result<Dataset, DataError> {
        let path: &Path = &self.path;
        if !path.exists() {
            return Err(DataError::Layout {
                path: path.to_path_buf(),
                problem: format!("{} dataset: no such file or directory", self.kind.as_str()),
            });
        }
        match self.kind {
            DataKind::Maps => super::maps(path),
            DataKind::Guitarset => {
                super::guitarset(path, GuitarSetAudio::default(), GUITARSET_SPLIT_SEED)
            }
            DataKind::Maestro => super::maestro(path),
            DataKind::Folder => super::paired_folder(path, folder_split),
            DataKind::Synth => super::synth_set(path),
        }
    }

    /// The items of `split`, and the pairing report (files that did not pair up), each line
    /// prefixed with this source.
    pub fn split_items(&self, split: Split) -> Result<(Vec<Item>, Vec<String>), DataError> {
        let dataset = self.load(split)?;
        let items: Vec<Item> = dataset.split(split).cloned().collect();
        let report = dataset
            .pairing_report()
            .into_iter()
            .map(|line| format!("{self}: {line}"))
            .collect();
        Ok((items, report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_and_path_parse_and_print_back() {
        let s: DataSource = "maps:/data/maps".parse().unwrap();
        assert_eq!(s.kind, DataKind::Maps);
        assert_eq!(s.path, PathBuf::from("/data/maps"));
        assert_eq!(s.to_string(), "maps:/data/maps");
        let s: DataSource = "synth:C:/x".parse().unwrap();
        assert_eq!((s.kind, s.path), (DataKind::Synth, PathBuf::from("C:/x")));
        assert!("mapz:/x"
            .parse::<DataSource>()
            .unwrap_err()
            .contains("unknown dataset kind"));
        assert!("/x"
            .parse::<DataSource>()
            .unwrap_err()
            .contains("KIND:PATH"));
        assert!("maps:".parse::<DataSource>().is_err());
    }

    #[test]
    fn a_missing_folder_is_named() {
        let s: DataSource = "folder:/no/such/place".parse().unwrap();
        let err = s.load(Split::Train).unwrap_err().to_string();
        assert!(err.contains("/no/such/place"), "{err}");
    }
}
