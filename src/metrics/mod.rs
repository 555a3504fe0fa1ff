//! Transcription metrics equal to `mir_eval` 0.8, in its manner: small pure functions, inputs
//! validated first, results under mir_eval's key names.
//!
//! - [`transcription`]: note-level precision, recall, F-measure and overlap
//!   (`mir_eval.transcription`), with its maximum bipartite matching and its rounding.
//! - [`multipitch`]: frame-level metrics on time-stamped frequency lists
//!   (`mir_eval.multipitch`), resampling the estimate onto the reference's times as it does.
//! - [`util`]: the pieces of `mir_eval.util` they rest on.
//! - [`io`]: reading note files (any format [`crate::notes`] reads, mir_eval note text with
//!   its frequencies kept) and mir_eval's `time f1 f2 …` frame files, with line numbers.
//! - [`recording`]: one recording's frame, note and note-with-offset scores from a probability
//!   roll, as the paper's code computes them ([`score_recording`], [`mean_std`]).
//!
//! Where mir_eval warns (empty reference or estimate) the values are what it returns and the
//! warnings are kept in [`Scores::warnings`]. What mir_eval leaves unchecked and would turn into
//! meaningless numbers (NaN or infinite times and frequencies) is refused.

pub mod io;
pub mod multipitch;
pub mod recording;
pub mod transcription;
pub mod util;

use std::fmt;
use std::path::PathBuf;

pub use recording::{mean_std, score_recording, Prf, RecordingScores, ReferenceKind};

/// Which input a validation error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Reference,
    Estimate,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Reference => "reference",
            Side::Estimate => "estimate",
        })
    }
}

/// Errors of the metrics: invalid inputs (which side, which note or frame) and unreadable files.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// An input mir_eval would refuse (or one it would turn into NaN). `item` names the element,
    /// e.g. `("note", 3)` or `("frame", 10)`, indexed from 0 (and shown counted from 1).
    #[error("{side}{}: {problem}", item.map(|(kind, index)| format!(" {kind} {}", index + 1)).unwrap_or_default())]
    Invalid {
        side: Side,
        item: Option<(&'static str, usize)>,
        problem: String,
    },
    /// A file that cannot be read or parsed; `line` is 1-based.
    #[error("{}: {}{problem}", path.display(), line.map(|n| format!("line {n}: ")).unwrap_or_default())]
    File {
        path: PathBuf,
        line: Option<usize>,
        problem: String,
    },
    #[error(transparent)]
    Notes(#[from] crate::notes::NotesError),
    /// Tolerances or options outside what the metrics accept.
    #[error("{0}")]
    Options(String),
    /// A probability roll whose length is not a whole number of 88-key frames.
    #[error("the estimated roll has {values} values, not a multiple of 88 keys")]
    RollShape { values: usize },
}

impl MetricsError {
    pub(crate) fn invalid(
        side: Side,
        kind: &'static str,
        index: usize,
        problem: impl Into<String>,
    ) -> Self {
        MetricsError::Invalid {
            side,
            item: Some((kind, index)),
            problem: problem.into(),
        }
    }

    pub(crate) fn invalid_whole(side: Side, problem: impl Into<String>) -> Self {
        MetricsError::Invalid {
            side,
            item: None,
            problem: problem.into(),
        }
    }
}

/// A metric dictionary as mir_eval's `evaluate` returns it: names in its order, values, and the
/// warnings it would have issued.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scores {
    pub values: Vec<(&'static str, f64)>,
    pub warnings: Vec<&'static str>,
}

impl Scores {
    /// The value under mir_eval's key `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values
            .iter()
            .find(|(key, _)| *key == name)
            .map(|&(_, v)| v)
    }

    pub(crate) fn push(&mut self, name: &'static str, value: f64) {
        self.values.push((name, value));
    }

    pub(crate) fn warn(&mut self, warning: &'static str) {
        if !self.warnings.contains(&warning) {
            self.warnings.push(warning);
        }
    }
}

/// Serialises as one JSON object with mir_eval's keys in its order (the warnings are not part
/// of mir_eval's dictionary and are left out).
impl serde::Serialize for Scores {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.values.len()))?;
        for (key, value) in &self.values {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}
