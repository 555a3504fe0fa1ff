//! `mtosi::metrics` against mir_eval 0.8 on the fixtures of `tools/reference/metrics_fixture.py`
//! (`tests/fixtures/metrics/`): random note and frame cases on tolerance edges, repeated notes,
//! chords, empty sets, long pieces, cases where a greedy matching scores lower, resampled frame
//! grids. Every value of every dictionary must be within 1e-9 of mir_eval's (the values are
//! ratios of counts, or means of overlap ratios: only summation order can move them, by ~1e-16).

use std::path::{Path, PathBuf};

use mtosi::metrics::io::{parse_frame_text, parse_note_text};
use mtosi::metrics::transcription::NoteTolerances;
use mtosi::metrics::{multipitch, transcription, Scores};
use serde_json::Value;

const TOLERANCE: f64 = 1e-9;

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/metrics")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// mir_eval's key order, as the fixture records it.
fn key_order(fixture: &Value) -> Vec<&str> {
    fixture["meta"]["key_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect()
}

/// Differences between our dictionary and mir_eval's: keys must be the same
/// and every value finite and within [`TOLERANCE`]; NaN or infinity anywhere is a difference.
fn differences(
    case: &str,
    ours: &Scores,
    expected: &serde_json::Map<String, Value>,
) -> Vec<String> {
    let our_keys: Vec<&str> = ours.values.iter().map(|(k, _)| *k).collect();
    let their_keys: Vec<&str> = expected.keys().map(String::as_str).collect();
    let mut sorted_theirs = their_keys.clone();
    sorted_theirs.sort_unstable();
    let mut sorted_ours = our_keys.clone();
    sorted_ours.sort_unstable();
    if sorted_ours != sorted_theirs {
        return vec![format!(
            "{case}: keys {our_keys:?} vs mir_eval's {their_keys:?}"
        )];
    }
    let mut found = Vec::new();
    for (key, value) in &ours.values {
        let theirs = expected[*key].as_f64().expect("fixture values are numbers");
        let close = value.is_finite() && theirs.is_finite() && (value - theirs).abs() <= TOLERANCE;
        if !close {
            found.push(format!("{case}: {key} = {value:e}, mir_eval {theirs:e}"));
        }
    }
    found
}

fn tolerances(kwargs: &serde_json::Map<String, Value>) -> NoteTolerances {
    let mut t = NoteTolerances::default();
    for (key, value) in kwargs {
        match key.as_str() {
            "onset_tolerance" => t.onset_tolerance_s = value.as_f64().unwrap(),
            "pitch_tolerance" => t.pitch_tolerance_cents = value.as_f64().unwrap(),
            "offset_ratio" => t.offset_ratio = value.as_f64(),
            "offset_min_tolerance" => t.offset_min_tolerance_s = value.as_f64().unwrap(),
            "strict" => t.strict = value.as_bool().unwrap(),
            other => panic!("fixture keyword {other} is not handled"),
        }
    }
    t
}

fn report(kind: &str, cases: usize, differences: Vec<String>) {
    assert!(
        differences.is_empty(),
        "{} differences from mir_eval in {cases} {kind} cases:\n{}",
        differences.len(),
        differences
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn note_metrics_equal_mir_eval_transcription_evaluate() {
    let fixture = fixture("transcription.json");
    let cases = fixture["cases"].as_array().unwrap();
    // The fixture must hold what it claims, or a truncated file would pass.
    assert!(cases.len() >= 200, "only {} cases", cases.len());
    let greedy_differs = cases.iter().filter(|c| c["greedy_differs"] == true).count();
    assert!(
        greedy_differs >= 20,
        "only {greedy_differs} cases where greedy matching differs"
    );
    let mut found = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let path = PathBuf::from(name);
        let reference = parse_note_text(&path, case["ref"].as_str().unwrap()).unwrap();
        let estimate = parse_note_text(&path, case["est"].as_str().unwrap()).unwrap();
        let scores = transcription::evaluate(
            &reference.intervals,
            &reference.pitches_hz,
            &estimate.intervals,
            &estimate.pitches_hz,
            &tolerances(case["kwargs"].as_object().unwrap()),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        if case["kwargs"].as_object().unwrap().is_empty() {
            let keys: Vec<&str> = scores.values.iter().map(|(k, _)| *k).collect();
            assert_eq!(keys, key_order(&fixture), "{name}: key order");
        }
        found.extend(differences(
            name,
            &scores,
            case["scores"].as_object().unwrap(),
        ));
    }
    report("note", cases.len(), found);
}

#[test]
fn frame_metrics_equal_mir_eval_multipitch_evaluate() {
    let fixture = fixture("multipitch.json");
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    let resampled = cases
        .iter()
        .filter(|c| c["name"].as_str().unwrap().starts_with("resampled"))
        .count();
    assert!(resampled >= 30, "only {resampled} resampling cases");
    let mut found = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let path = PathBuf::from(name);
        let reference = parse_frame_text(&path, case["ref"].as_str().unwrap()).unwrap();
        let estimate = parse_frame_text(&path, case["est"].as_str().unwrap()).unwrap();
        let window = case["kwargs"]
            .get("window")
            .map_or(multipitch::DEFAULT_WINDOW, |w| w.as_f64().unwrap());
        let scores = multipitch::evaluate(
            &reference.times,
            &reference.frequencies,
            &estimate.times,
            &estimate.frequencies,
            window,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let keys: Vec<&str> = scores.values.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, key_order(&fixture), "{name}: key order");
        found.extend(differences(
            name,
            &scores,
            case["scores"].as_object().unwrap(),
        ));
    }
    report("frame", cases.len(), found);
}

#[test]
fn the_comparison_fails_on_nan() {
    let mut expected = serde_json::Map::new();
    expected.insert("Precision".into(), Value::from(0.5));
    let nan = Scores {
        values: vec![("Precision", f64::NAN)],
        warnings: vec![],
    };
    assert_eq!(differences("nan", &nan, &expected).len(), 1);
    let off = Scores {
        values: vec![("Precision", 0.5 + 2e-9)],
        warnings: vec![],
    };
    assert_eq!(differences("off", &off, &expected).len(), 1);
    let equal = Scores {
        values: vec![("Precision", 0.5)],
        warnings: vec![],
    };
    assert!(differences("equal", &equal, &expected).is_empty());
}
