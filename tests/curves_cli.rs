//! `mtosi curves`: several runs' metric in one SVG, and clear errors for what is missing.

use std::process::Command;

fn mtosi(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mtosi"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn curves_draws_each_run_and_names_a_run_without_the_metric() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(
        a.join("metrics.jsonl"),
        "{\"epoch\":1,\"loss\":0.2}\n{\"epoch\":2,\"loss\":0.1,\"val_note_f1\":0.25}\n",
    )
    .unwrap();
    std::fs::write(
        b.join("metrics.jsonl"),
        "{\"epoch\":2,\"loss\":0.3,\"val_note_f1\":0.5}\nnot json\n",
    )
    .unwrap();
    let out = dir.path().join("f1.svg");
    let run_a = format!("transfer={}", a.display());
    let run_b = b.display().to_string();
    let done = mtosi(&[
        "curves",
        "--run",
        &run_a,
        "--run",
        &run_b,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        stdout.contains("transfer: 1 points, last at epoch 2 = 0.2500"),
        "{stdout}"
    );
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "{svg}");
    assert!(svg.contains("transfer"), "the legend names the series");

    let missing = mtosi(&[
        "curves",
        "--run",
        &run_a,
        "--metric",
        "val_frame_f1",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("metrics.jsonl") && stderr.contains("val_frame_f1"),
        "{stderr}"
    );
    let absent = dir.path().join("nope");
    let absent = mtosi(&[
        "curves",
        "--run",
        absent.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!absent.status.success());
    assert!(String::from_utf8_lossy(&absent.stderr).contains("nope"));
}
