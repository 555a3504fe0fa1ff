//! Reading what the metrics compare, as `mir_eval.io` does, with line numbers in every error.
//!
//! - Note files: any format [`crate::notes::read_notes`] reads, as intervals and pitches in Hz.
//!   A `.txt` file without MAPS's `OnsetTime` header is mir_eval's note text
//!   (`load_valued_intervals`: `onset offset frequency_hz`) and is read here with its
//!   frequencies kept as written, so a pitch 30 cents off a key stays 30 cents off.
//! - Frame files: mir_eval's `load_ragged_time_series` text, `time f1 f2 …` per line, any
//!   number of frequencies (none for a silent frame).
//!
//! Both skip blank lines and `#` comments. An empty file is an empty, valid set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::transcription::{self, NoteTolerances};
use super::{multipitch, MetricsError, Scores, Side};
use crate::decode::midi_to_hz;
use crate::notes::{read_notes, KNOWN_EXTENSIONS};

/// Notes as the metrics take them, with the line each came from when the format has lines.
#[derive(Debug, Clone, PartialEq)]
pub struct NoteFile {
    pub path: PathBuf,
    pub intervals: Vec<[f64; 2]>,
    pub pitches_hz: Vec<f64>,
    /// 1-based line of each note (mir_eval note text only).
    pub lines: Option<Vec<usize>>,
}

/// A frame file: time stamps, the frequencies at each, and the line of each frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameFile {
    pub path: PathBuf,
    pub times: Vec<f64>,
    pub frequencies: Vec<Vec<f64>>,
    pub lines: Vec<usize>,
}

fn file_error(path: &Path, line: Option<usize>, problem: impl Into<String>) -> MetricsError {
    MetricsError::File {
        path: path.to_path_buf(),
        line,
        problem: problem.into(),
    }
}

fn read_text(path: &Path) -> Result<String, MetricsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, None, e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| {
        file_error(
            path,
            None,
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// The content lines of a text file: (1-based line number, whitespace-separated fields),
/// without blank lines and `#` comments.
fn content_lines(text: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    text.lines().enumerate().filter_map(|(index, line)| {
        let line = line.trim();
        (!line.is_empty() && !line.starts_with('#'))
            .then(|| (index + 1, line.split_whitespace().collect()))
    })
}

fn number(path: &Path, line: usize, column: &str, field: &str) -> Result<f64, MetricsError> {
    let value: f64 = field.parse().map_err(|_| {
        file_error(
            path,
            Some(line),
            format!("{column} holds {field:?}, not a number"),
        )
    })?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(file_error(
            path,
            Some(line),
            format!("{column} holds {field:?}, not a finite number"),
        ))
    }
}

/// Reads a note file of any supported format as intervals (s) and pitches (Hz).
pub fn load_note_file(path: &Path) -> Result<NoteFile, MetricsError> {
    let is_txt = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("txt"));
    if is_txt {
        let text = read_text(path)?;
        let is_maps = content_lines(&text)
            .next()
            .is_some_and(|(_, fields)| fields[0] == "OnsetTime");
        if !is_maps {
            return parse_note_text(path, &text);
        }
    }
    let notes = read_notes(path)?;
    Ok(NoteFile {
        path: path.to_path_buf(),
        intervals: notes.iter().map(|n| [n.onset_s, n.offset_s]).collect(),
        pitches_hz: notes
            .iter()
            .map(|n| midi_to_hz(f64::from(n.pitch)))
            .collect(),
        lines: None,
    })
}

/// Parses mir_eval note text, `onset offset frequency_hz` per line; `path` is what errors name.
/// A first line without any number is taken for a header, as [`crate::notes`] does.
pub fn parse_note_text(path: &Path, text: &str) -> Result<NoteFile, MetricsError> {
    let mut file = NoteFile {
        path: path.to_path_buf(),
        intervals: Vec::new(),
        pitches_hz: Vec::new(),
        lines: Some(Vec::new()),
    };
    for (position, (line, fields)) in content_lines(text).enumerate() {
        if position == 0 && fields.iter().all(|f| f.parse::<f64>().is_err()) {
            continue;
        }
        if fields.len() != 3 {
            return Err(file_error(
                path,
                Some(line),
                format!(
                    "expected 3 columns (onset offset frequency), found {}",
                    fields.len()
                ),
            ));
        }
        let onset = number(path, line, "onset column", fields[0])?;
        let offset = number(path, line, "offset column", fields[1])?;
        let frequency = number(path, line, "frequency column", fields[2])?;
        if onset < 0.0 {
            return Err(file_error(
                path,
                Some(line),
                format!("negative onset {onset} s"),
            ));
        }
        if offset < onset {
            return Err(file_error(
                path,
                Some(line),
                format!("negative duration: offset {offset} s is before onset {onset} s"),
            ));
        }
        if frequency <= 0.0 {
            return Err(file_error(
                path,
                Some(line),
                format!("frequency {frequency} Hz is not positive"),
            ));
        }
        file.intervals.push([onset, offset]);
        file.pitches_hz.push(frequency);
        if let Some(lines) = file.lines.as_mut() {
            lines.push(line);
        }
    }
    Ok(file)
}

/// Reads a frame file: `time f1 f2 …` per line, frequencies in Hz.
pub fn load_frame_file(path: &Path) -> Result<FrameFile, MetricsError> {
    parse_frame_text(path, &read_text(path)?)
}

/// Parses frame text, `time f1 f2 …` per line; `path` is what errors name.
pub fn parse_frame_text(path: &Path, text: &str) -> Result<FrameFile, MetricsError> {
    let mut file = FrameFile {
        path: path.to_path_buf(),
        times: Vec::new(),
        frequencies: Vec::new(),
        lines: Vec::new(),
    };
    for (line, fields) in content_lines(text) {
        let time = number(path, line, "time column", fields[0])?;
        let mut frame = Vec::with_capacity(fields.len() - 1);
        for (column, field) in fields[1..].iter().enumerate() {
            let frequency = number(path, line, &format!("column {}", column + 2), field)?;
            if frequency <= 0.0 {
                return Err(file_error(
                    path,
                    Some(line),
                    format!(
                        "frequency {frequency} Hz in column {} is not positive",
                        column + 2
                    ),
                ));
            }
            frame.push(frequency);
        }
        file.times.push(time);
        file.frequencies.push(frame);
        file.lines.push(line);
    }
    Ok(file)
}

/// Turns a validation error about one note or frame of `reference` or `estimate` into an error
/// naming the file and, where known, its line. Other errors pass through.
pub fn locate_error(
    err: MetricsError,
    reference: (&Path, Option<&[usize]>),
    estimate: (&Path, Option<&[usize]>),
) -> MetricsError {
    match err {
        MetricsError::Invalid {
            side,
            item,
            problem,
        } => {
            let (path, lines) = match side {
                Side::Reference => reference,
                Side::Estimate => estimate,
            };
            let line = item.and_then(|(_, index)| lines.and_then(|l| l.get(index).copied()));
            let problem = match (item, line) {
                (Some((kind, index)), None) => format!("{kind} {}: {problem}", index + 1),
                _ => problem,
            };
            file_error(path, line, problem)
        }
        other => other,
    }
}

/// `transcription.evaluate` on two note files; errors name the file and, where the format has
/// lines, the line.
pub fn evaluate_note_files(
    reference: &Path,
    estimate: &Path,
    tolerances: &NoteTolerances,
) -> Result<Scores, MetricsError> {
    let (r, e) = (load_note_file(reference)?, load_note_file(estimate)?);
    transcription::evaluate(
        &r.intervals,
        &r.pitches_hz,
        &e.intervals,
        &e.pitches_hz,
        tolerances,
    )
    .map_err(|err| {
        locate_error(
            err,
            (&r.path, r.lines.as_deref()),
            (&e.path, e.lines.as_deref()),
        )
    })
}

/// `multipitch.evaluate` on two frame files with `window` semitones; errors name the file and
/// the line.
pub fn evaluate_frame_files(
    reference: &Path,
    estimate: &Path,
    window: f64,
) -> Result<Scores, MetricsError> {
    let (r, e) = (load_frame_file(reference)?, load_frame_file(estimate)?);
    multipitch::evaluate(&r.times, &r.frequencies, &e.times, &e.frequencies, window)
        .map_err(|err| locate_error(err, (&r.path, Some(&r.lines)), (&e.path, Some(&e.lines))))
}

/// Files of two folders paired by stem (the name without its extension).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pairing {
    /// (stem, reference file, estimate file), by stem.
    pub pairs: Vec<(String, PathBuf, PathBuf)>,
    /// File names found in only one of the folders.
    pub reference_only: Vec<String>,
    pub estimate_only: Vec<String>,
}

/// Pairs the files of `reference_dir` and `estimate_dir` by stem. Only files `accept` takes
/// (by path) count; hidden files are skipped. Two files of one stem in one folder are an error.
pub fn pair_by_stem(
    reference_dir: &Path,
    estimate_dir: &Path,
    accept: impl Fn(&Path) -> bool,
) -> Result<Pairing, MetricsError> {
    let list = |dir: &Path| -> Result<BTreeMap<String, PathBuf>, MetricsError> {
        let entries = std::fs::read_dir(dir).map_err(|e| file_error(dir, None, e.to_string()))?;
        let mut by_stem = BTreeMap::new();
        for entry in entries {
            let path = entry
                .map_err(|e| file_error(dir, None, e.to_string()))?
                .path();
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden || !path.is_file() || !accept(&path) {
                continue;
            }
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(other) = by_stem.insert(stem.clone(), path.clone()) {
                return Err(file_error(
                    dir,
                    None,
                    format!(
                        "two files of stem {stem:?}: {} and {}",
                        name_of(&other),
                        name_of(&path)
                    ),
                ));
            }
        }
        Ok(by_stem)
    };
    let (mut references, mut estimates) = (list(reference_dir)?, list(estimate_dir)?);
    let mut pairing = Pairing::default();
    for (stem, reference) in std::mem::take(&mut references) {
        match estimates.remove(&stem) {
            Some(estimate) => pairing.pairs.push((stem, reference, estimate)),
            None => pairing.reference_only.push(name_of(&reference)),
        }
    }
    pairing.estimate_only = estimates.values().map(|p| name_of(p)).collect();
    Ok(pairing)
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether a path has an extension [`load_note_file`] reads.
pub fn is_note_file(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| KNOWN_EXTENSIONS.iter().any(|k| e.eq_ignore_ascii_case(k)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn mir_eval_note_text_keeps_its_frequencies() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "a.txt",
            "# comment\n0.1 0.5 452.0\n\n1.0\t2.0\t27.5\n",
        );
        let file = load_note_file(&path).unwrap();
        assert_eq!(file.intervals, vec![[0.1, 0.5], [1.0, 2.0]]);
        assert_eq!(file.pitches_hz, vec![452.0, 27.5]);
        assert_eq!(file.lines, Some(vec![2, 4]));
    }

    #[test]
    fn note_text_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        for (text, expected) in [
            ("0 1 440\n0.5 0.2 440\n", "line 2: negative duration"),
            (
                "0 1 440\n0 1 nan\n",
                "line 2: frequency column holds \"nan\", not a finite",
            ),
            ("0 1 0\n", "line 1: frequency 0 Hz is not positive"),
            ("0 1 440 5\n", "line 1: expected 3 columns"),
        ] {
            let path = write(dir.path(), "bad.txt", text);
            let err = load_note_file(&path).unwrap_err().to_string();
            assert!(err.contains("bad.txt") && err.contains(expected), "{err}");
        }
    }

    #[test]
    fn frame_files_hold_any_number_of_frequencies() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "f.txt",
            "0.00\n0.01 440 220.5\n# c\n0.02 27.5\n",
        );
        let file = load_frame_file(&path).unwrap();
        assert_eq!(file.times, vec![0.0, 0.01, 0.02]);
        assert_eq!(
            file.frequencies,
            vec![vec![], vec![440.0, 220.5], vec![27.5]]
        );
        assert_eq!(file.lines, vec![1, 2, 4]);
        let empty = write(dir.path(), "e.txt", "");
        assert!(load_frame_file(&empty).unwrap().times.is_empty());
        let bad = write(dir.path(), "b.txt", "0.0 440\n0.1 -3\n");
        let err = load_frame_file(&bad).unwrap_err().to_string();
        assert!(
            err.contains("b.txt: line 2: frequency -3 Hz in column 2"),
            "{err}"
        );
    }

    #[test]
    fn folders_pair_by_stem_and_report_the_rest() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for name in ["x.tsv", "y.mid", "only_ref.txt", "notes.md", ".hidden.tsv"] {
            write(a.path(), name, "");
        }
        for name in ["x.txt", "y.midi", "only_est.jams"] {
            write(b.path(), name, "");
        }
        let pairing = pair_by_stem(a.path(), b.path(), is_note_file).unwrap();
        let stems: Vec<&str> = pairing.pairs.iter().map(|(s, _, _)| s.as_str()).collect();
        assert_eq!(stems, vec!["x", "y"]);
        assert_eq!(pairing.reference_only, vec!["only_ref.txt"]);
        assert_eq!(pairing.estimate_only, vec!["only_est.jams"]);
        write(a.path(), "x.mid", "");
        let err = pair_by_stem(a.path(), b.path(), is_note_file)
            .unwrap_err()
            .to_string();
        assert!(err.contains("two files of stem \"x\""), "{err}");
    }

    #[test]
    fn zero_length_notes_are_refused_on_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let reference = write(dir.path(), "r.txt", "0 1 440\n# c\n2 2 440\n");
        let estimate = write(dir.path(), "e.txt", "");
        let err = evaluate_note_files(&reference, &estimate, &NoteTolerances::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("r.txt: line 3:") && err.contains("strictly positive"),
            "{err}"
        );
    }

    #[test]
    fn validation_errors_are_placed_on_their_line() {
        let err = MetricsError::invalid(Side::Estimate, "frame", 1, "frequency 10 Hz is outside");
        let located = locate_error(
            err,
            (Path::new("ref.txt"), Some(&[1, 2])),
            (Path::new("est.txt"), Some(&[3, 7])),
        );
        assert_eq!(
            located.to_string(),
            "est.txt: line 7: frequency 10 Hz is outside"
        );
        let err = MetricsError::invalid(Side::Reference, "note", 4, "bad");
        let located = locate_error(err, (Path::new("ref.mid"), None), (Path::new("e"), None));
        assert_eq!(located.to_string(), "ref.mid: note 5: bad");
    }
}
