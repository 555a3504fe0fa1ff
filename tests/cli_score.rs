//! `mtosi score` end to end through the binary: mir_eval's dictionaries on fixture cases (text
//! and `--json`), folders of pairs, empty sets, and bad files refused with file and line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Values are printed in shortest round-trip form; the fixtures' own tolerance applies.
const TOLERANCE: f64 = 1e-9;

fn mtosi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mtosi"))
        .args(args)
        .output()
        .expect("the mtosi binary runs")
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/metrics")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The first fixture case whose name starts with `prefix` and that uses mir_eval's defaults.
fn default_case<'a>(fixture: &'a Value, prefix: &str) -> &'a Value {
    fixture["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["name"].as_str().unwrap().starts_with(prefix)
                && c["kwargs"].as_object().unwrap().is_empty()
        })
        .unwrap_or_else(|| panic!("no default case {prefix}*"))
}

fn write_case(dir: &Path, case: &Value) -> (PathBuf, PathBuf) {
    let (reference, estimate) = (dir.join("ref.txt"), dir.join("est.txt"));
    std::fs::write(&reference, case["ref"].as_str().unwrap()).unwrap();
    std::fs::write(&estimate, case["est"].as_str().unwrap()).unwrap();
    (reference, estimate)
}

fn assert_close(name: &str, key: &str, ours: f64, theirs: &Value) {
    let theirs = theirs.as_f64().unwrap();
    assert!(
        ours.is_finite() && (ours - theirs).abs() <= TOLERANCE,
        "{name}: {key} = {ours}, mir_eval {theirs}"
    );
}

/// Checks a `--json` answer against the case: every key of mir_eval, in its order, no other.
fn check_json(name: &str, stdout: &[u8], case: &Value, key_order: &Value) {
    let text = std::str::from_utf8(stdout).unwrap();
    let ours: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
    let expected = case["scores"].as_object().unwrap();
    assert_eq!(ours.len(), expected.len(), "{name}: {text}");
    for (key, value) in expected {
        assert_close(name, key, ours[key].as_f64().unwrap(), value);
    }
    let positions: Vec<usize> = key_order
        .as_array()
        .unwrap()
        .iter()
        .map(|k| text.find(&format!("\"{}\":", k.as_str().unwrap())).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "{name}: key order of {text}"
    );
}

/// Checks the text answer: one `key value` line per mir_eval key.
fn check_text(name: &str, stdout: &[u8], case: &Value) {
    let text = std::str::from_utf8(stdout).unwrap();
    let expected = case["scores"].as_object().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{name}: {text}");
    for line in lines {
        let (key, value) = line.rsplit_once(char::is_whitespace).unwrap();
        let key = key.trim_end();
        assert_close(name, key, value.parse().unwrap(), &expected[key]);
    }
}

#[test]
fn note_files_score_as_mir_eval_in_text_and_json() {
    let fixture = fixture("transcription.json");
    let key_order = &fixture["meta"]["key_order"];
    for prefix in ["greedy_trap", "chords", "long"] {
        let case = default_case(&fixture, prefix);
        let dir = tempfile::tempdir().unwrap();
        let (reference, estimate) = write_case(dir.path(), case);
        let args = [
            "score",
            "--ref",
            path_str(&reference),
            "--est",
            path_str(&estimate),
        ];
        let out = mtosi(&[&args[..], &["--json"]].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        check_json(prefix, &out.stdout, case, key_order);
        let out = mtosi(&args);
        assert!(out.status.success());
        check_text(prefix, &out.stdout, case);
    }
}

#[test]
fn frame_files_score_as_mir_eval() {
    let fixture = fixture("multipitch.json");
    for prefix in ["resampled", "same_grid"] {
        let case = default_case(&fixture, prefix);
        let dir = tempfile::tempdir().unwrap();
        let (reference, estimate) = write_case(dir.path(), case);
        let out = mtosi(&[
            "score",
            "--frames",
            "--json",
            "--ref",
            path_str(&reference),
            "--est",
            path_str(&estimate),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        check_json(prefix, &out.stdout, case, &fixture["meta"]["key_order"]);
    }
}

#[test]
fn empty_files_are_empty_sets_and_score_as_mir_eval_scores_them() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.txt");
    let some = dir.path().join("some.tsv");
    std::fs::write(&empty, "").unwrap();
    std::fs::write(&some, "onset\toffset\tpitch\tvelocity\n0.5\t1.0\t60\t80\n").unwrap();
    let out = mtosi(&[
        "score",
        "--json",
        "--ref",
        path_str(&empty),
        "--est",
        path_str(&some),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scores: serde_json::Map<String, Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(scores.len(), 14);
    assert!(
        scores.values().all(|v| v.as_f64() == Some(0.0)),
        "{scores:?}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Reference notes are empty."));
    // Frames: an empty reference has no times to resample onto; every score is 0.
    let frames = dir.path().join("frames.txt");
    std::fs::write(&frames, "0.0 440\n0.01 440 220\n").unwrap();
    let out = mtosi(&[
        "score",
        "--frames",
        "--json",
        "--ref",
        path_str(&empty),
        "--est",
        path_str(&frames),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scores: serde_json::Map<String, Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(scores.len(), 14);
    assert!(
        scores.values().all(|v| v.as_f64() == Some(0.0)),
        "{scores:?}"
    );
}

#[test]
fn offset_ratio_none_leaves_the_offset_scores_out() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("a.txt");
    std::fs::write(&notes, "0.1 0.5 440\n").unwrap();
    let out = mtosi(&[
        "score",
        "--json",
        "--offset-ratio",
        "none",
        "--ref",
        path_str(&notes),
        "--est",
        path_str(&notes),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scores: serde_json::Map<String, Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut keys: Vec<&str> = scores.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        vec![
            "Average_Overlap_Ratio_no_offset",
            "F-measure_no_offset",
            "Onset_F-measure",
            "Onset_Precision",
            "Onset_Recall",
            "Precision_no_offset",
            "Recall_no_offset"
        ]
    );
    assert!(scores.values().all(|v| v.as_f64() == Some(1.0)));
}

#[test]
fn folders_pair_by_name_with_mean_and_std_rows() {
    let (refs, ests) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let write = |dir: &Path, name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    // Piece a: perfect; piece b: half the notes found; c and d have no partner.
    write(refs.path(), "a.txt", "0.1 0.5 440\n1.0 1.5 220\n");
    write(ests.path(), "a.txt", "0.1 0.5 440\n1.0 1.5 220\n");
    write(
        refs.path(),
        "b.tsv",
        "onset\toffset\tpitch\tvelocity\n0.1\t0.5\t69\t64\n1.0\t1.5\t57\t64\n",
    );
    write(ests.path(), "b.txt", "0.1 0.5 440\n");
    write(refs.path(), "c.txt", "0.1 0.5 440\n");
    write(ests.path(), "d.txt", "0.1 0.5 440\n");
    let csv_path = refs.path().join("..").join("scores.csv");
    let out = mtosi(&[
        "score",
        "--ref",
        path_str(refs.path()),
        "--est",
        path_str(ests.path()),
        "-o",
        path_str(&csv_path),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("c.txt has no estimate") && stderr.contains("d.txt has no reference"),
        "{stderr}"
    );
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    let names: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(names, vec!["name", "a", "b", "mean", "std"]);
    let recall = rows[0].iter().position(|&k| k == "Recall").unwrap();
    let values: Vec<f64> = rows[1..]
        .iter()
        .map(|r| r[recall].parse().unwrap())
        .collect();
    assert_eq!(values, vec![1.0, 0.5, 0.75, 0.25]);
    std::fs::remove_file(&csv_path).unwrap();

    let out = mtosi(&[
        "score",
        "--json",
        "--ref",
        path_str(refs.path()),
        "--est",
        path_str(ests.path()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["pairs"]["a"]["Recall"], 1.0);
    assert_eq!(report["pairs"]["b"]["Recall"], 0.5);
    assert_eq!(
        (
            report["mean"]["Recall"].as_f64(),
            report["std"]["Recall"].as_f64()
        ),
        (Some(0.75), Some(0.25))
    );
    assert_eq!(report["reference_only"], serde_json::json!(["c.txt"]));
    assert_eq!(report["estimate_only"], serde_json::json!(["d.txt"]));
    // mir_eval's key order inside each dictionary.
    assert!(text.contains("\"mean\":{\"Precision\":"), "{text}");
}

#[test]
fn frame_folders_pair_by_name() {
    let (refs, ests) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [refs.path(), ests.path()] {
        std::fs::write(dir.join("x.txt"), "0.0 440\n0.01 440 220\n").unwrap();
        std::fs::write(dir.join("y.f0"), "0.0\n0.01 110\n").unwrap();
    }
    let out = mtosi(&[
        "score",
        "--frames",
        "--ref",
        path_str(refs.path()),
        "--est",
        path_str(ests.path()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 5, "{text}");
    assert!(
        rows[0].starts_with("name,Precision,Recall,Accuracy,Substitution Error"),
        "{text}"
    );
    assert!(
        rows[1].starts_with("x,1.0,1.0,1.0,0.0") && rows[2].starts_with("y,1.0,1.0,1.0,0.0"),
        "{text}"
    );
}

#[test]
fn bad_files_are_refused_with_file_and_line_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.txt");
    std::fs::write(&good, "0.1 0.5 440\n").unwrap();
    let good_frames = dir.path().join("good_frames.txt");
    std::fs::write(&good_frames, "0.0 440\n").unwrap();
    let cases: &[(&str, &str, bool, &str)] = &[
        (
            "malformed.txt",
            "0.1 0.5 440\n0.2 soon 440\n",
            false,
            "line 2: offset column holds \"soon\"",
        ),
        (
            "nan.txt",
            "0.1 0.5 440\n0.2 0.6 NaN\n",
            false,
            "line 2: frequency column holds \"NaN\", not a finite",
        ),
        (
            "negative.txt",
            "\n0.5 0.2 440\n",
            false,
            "line 2: negative duration",
        ),
        (
            "zero_freq.txt",
            "0.1 0.5 0\n",
            false,
            "line 1: frequency 0 Hz is not positive",
        ),
        (
            "zero_length.txt",
            "0.1 0.5 440\n0.7 0.7 440\n",
            false,
            "line 2: interval [0.7, 0.7] has no strictly positive duration",
        ),
        (
            "negative.tsv",
            "onset\toffset\tpitch\tvelocity\n0.1\t0.5\t60\t64\n0.9\t0.4\t60\t64\n",
            false,
            "line 3: negative duration",
        ),
        (
            "frames_nan.txt",
            "0.0 440\n0.01 nan\n",
            true,
            "line 2: column 2 holds \"nan\", not a finite",
        ),
        (
            "frames_negative.txt",
            "0.0 440\n# c\n0.02 -440\n",
            true,
            "line 3: frequency -440 Hz in column 2 is not positive",
        ),
        (
            "frames_low.txt",
            "0.0 440\n0.01 12.5\n",
            true,
            "line 2: frequency 12.5 Hz is outside",
        ),
        (
            "frames_order.txt",
            "0.0 440\n0.02\n0.01\n",
            true,
            "line 3: time 0.01 s comes before",
        ),
        (
            "frames_text.txt",
            "zero 440\n",
            true,
            "line 1: time column holds \"zero\"",
        ),
    ];
    for &(name, text, frames, expected) in cases {
        let bad = dir.path().join(name);
        std::fs::write(&bad, text).unwrap();
        let output = dir.path().join("out.json");
        let other = if frames { &good_frames } else { &good };
        let mut args = vec!["score", "--json", "-o", path_str(&output)];
        if frames {
            args.push("--frames");
        }
        for (reference, estimate) in [(other, &bad), (&bad, other)] {
            let full = [
                &args[..],
                &["--ref", path_str(reference), "--est", path_str(estimate)],
            ]
            .concat();
            let out = mtosi(&full);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{name} was accepted");
            assert!(
                stderr.contains(name) && stderr.contains(expected),
                "{name}: {stderr}"
            );
            assert!(!output.exists(), "{name}: an output was written");
            assert!(out.stdout.is_empty(), "{name}: printed {:?}", out.stdout);
        }
    }
    let missing = dir.path().join("missing.txt");
    let out = mtosi(&[
        "score",
        "--ref",
        path_str(&missing),
        "--est",
        path_str(&good),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.txt"));
}
