//! Every random test draws its seed by the harness's rule (`MTOSI_TEST_SEED` replays it, the
//! seed is printed: `mtosi::device::equivalence::test_seed`) and its numbers from
//! `mtosi::rng::Rng`: no test seeds from the clock or keeps its own generator, so any failure
//! can be replayed.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `file:line: text` of each line that seeds from the clock or steps a generator of its own.
fn offending_lines(root: &Path, file: &Path, text: &str) -> Vec<String> {
    let relative = file
        .strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string();
    // The harness's own fresh seed (mixed from the clock) is the one allowed use.
    if relative == "src/device/equivalence.rs" {
        return Vec::new();
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let code = line.split("//").next().unwrap_or("");
            code.contains("SystemTime::now") || code.contains("state ^= state")
        })
        .map(|(n, line)| format!("{relative}:{}: {}", n + 1, line.trim()))
        .collect()
}

#[test]
fn no_test_seeds_from_the_clock_or_keeps_its_own_generator() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "found only {} files", files.len());
    let this_file = root.join("tests/random_tests_replay.rs");
    let offending: Vec<String> = files
        .iter()
        .filter(|f| **f != this_file)
        .flat_map(|f| offending_lines(root, f, &std::fs::read_to_string(f).unwrap()))
        .collect();
    assert!(
        offending.is_empty(),
        "seed these by the harness's rule (mtosi::device::equivalence::test_seed) and draw from mtosi::rng::Rng:\n{}",
        offending.join("\n")
    );
}

#[test]
fn the_check_sees_a_clock_seed() {
    let root = Path::new("/repo");
    let planted = "fn t() {\n    let seed = std::time::SystemTime::now();\n}\n";
    assert_eq!(
        offending_lines(root, &root.join("tests/x.rs"), planted),
        ["tests/x.rs:2: let seed = std::time::SystemTime::now();"]
    );
}
