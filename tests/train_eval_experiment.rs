//! `mtosi eval` and `mtosi experiment` end to end on a tiny MAPS-named set and a tiny random
//! Synthesized set (crops of 32 frames, batch 2: seconds per training).

use std::path::Path;
use std::process::Command;

use mtosi::audio::wav::write_wav16;
use mtosi::notes::{write_notes, Note};

const BIN: &str = env!("CARGO_BIN_EXE_mtosi");

/// A recording of `seconds` of sine notes (one every 0.3 s) with its labels.
fn recording(dir: &Path, name: &str, seconds: f64, pitch0: u8) {
    let samples = (seconds * 16_000.0) as usize;
    let mut audio = vec![0.0f32; samples];
    let mut notes = Vec::new();
    let mut t = 0.1;
    let mut k = 0u8;
    while t + 0.25 < seconds {
        let pitch = pitch0 + (k * 5) % 24;
        notes.push(Note {
            onset_s: t,
            offset_s: t + 0.25,
            pitch,
            velocity: 80,
        });
        let hz = 440.0 * 2f64.powf((f64::from(pitch) - 69.0) / 12.0);
        let (from, to) = ((t * 16_000.0) as usize, ((t + 0.25) * 16_000.0) as usize);
        for (n, sample) in audio.iter_mut().enumerate().take(to).skip(from) {
            *sample += 0.3 * (2.0 * std::f64::consts::PI * hz * n as f64 / 16_000.0).sin() as f32;
        }
        t += 0.3;
        k += 1;
    }
    write_wav16(&dir.join(format!("{name}.wav")), &audio, 16_000).unwrap();
    write_notes(&dir.join(format!("{name}.tsv")), &notes).unwrap();
}

fn tiny_maps(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, group) in ["AkPnBcht", "AkPnBsdf", "SptkBGCl", "StbgTGd2"]
        .iter()
        .enumerate()
    {
        recording(
            dir,
            &format!("MAPS_MUS-p{i}_{group}"),
            1.5 + i as f64 * 0.3,
            50,
        );
    }
    recording(dir, "MAPS_MUS-v_ENSTDkAm", 1.4, 55);
    recording(dir, "MAPS_MUS-t_ENSTDkCl", 1.6, 52);
    // Labels without audio: the loaders report them, the trainings leave them out.
    write_notes(
        &dir.join("MAPS_MUS-only_labels_ENSTDkCl.tsv"),
        &[Note {
            onset_s: 0.0,
            offset_s: 1.0,
            pitch: 60,
            velocity: 60,
        }],
    )
    .unwrap();
}

fn run(args: &[&str]) -> (String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "mtosi {args:?}:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

#[test]
fn eval_prints_the_table_and_writes_csv_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let maps = dir.path().join("maps");
    tiny_maps(&maps);
    let run_dir = dir.path().join("run");
    let maps_arg = format!("maps:{}", maps.display());
    run(&[
        "train",
        "--data",
        &maps_arg,
        "--out",
        run_dir.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch",
        "2",
        "--crop-frames",
        "32",
    ]);
    let out = dir.path().join("eval");
    let ckpt = run_dir.join("checkpoints/last.safetensors");
    let (stdout, _) = run(&[
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--data",
        &maps_arg,
        "--split",
        "test",
        "--reference",
        "roll",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(stdout.contains("reference: roll"), "{stdout}");
    for row in ["frame", "note", "note with offset"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(row) && l.contains('±')),
            "{stdout}"
        );
    }
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .starts_with("MAPS_MUS-t_ENSTDkCl,"),
        "{csv}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["recordings"], 1);
    assert_eq!(summary["threshold"], 0.5);
    assert!(summary["mean"]["note"]["f1"].as_f64().unwrap() >= 0.0);

    // A threshold sweep: one network pass, one table and one subfolder per threshold; its 0.5
    // equals the single run.
    let sweep = dir.path().join("sweep");
    let (stdout, _) = run(&[
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--data",
        &maps_arg,
        "--reference",
        "roll",
        "--threshold",
        "0.3,0.5",
        "--out",
        sweep.to_str().unwrap(),
    ]);
    assert!(
        stdout.contains("threshold 0.3") && stdout.contains("threshold 0.5"),
        "{stdout}"
    );
    let swept: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sweep.join("threshold-0.5/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(swept["mean"], summary["mean"]);
    assert!(sweep.join("threshold-0.3/results.csv").exists());
    let bad = Command::new(env!("CARGO_BIN_EXE_mtosi"))
        .args([
            "eval",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--data",
            &maps_arg,
        ])
        .args(["--threshold", "1.5"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--threshold 1.5"));

    // The network on the kernels (emu) scores as on the cpu: its probabilities agree within
    // ~1e-6, so at most a cell sitting at the 0.5 threshold can flip.
    let emu_out = dir.path().join("eval-emu");
    let (_, stderr) = run(&[
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--data",
        &maps_arg,
        "--split",
        "test",
        "--reference",
        "roll",
        "--device",
        "emu",
        "--out",
        emu_out.to_str().unwrap(),
    ]);
    assert!(stderr.contains("network on emu"), "{stderr}");
    let emu_summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(emu_out.join("summary.json")).unwrap())
            .unwrap();
    for figure in ["frame", "note", "note_with_offset"] {
        for field in ["precision", "recall", "f1"] {
            let cpu = summary["mean"][figure][field].as_f64();
            let emu = emu_summary["mean"][figure][field].as_f64();
            assert!(
                matches!((cpu, emu), (Some(c), Some(e)) if (c - e).abs() <= 0.02),
                "{figure}.{field}: cpu {cpu:?}, emu {emu:?}"
            );
        }
    }
}

#[test]
fn experiment_runs_what_it_has_data_for_and_names_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let maps = dir.path().join("maps");
    tiny_maps(&maps);
    let synth = dir.path().join("synth");
    run(&[
        "synth",
        "--random",
        "6",
        "--random-duration",
        "1.5",
        "--out",
        synth.to_str().unwrap(),
        "--quiet",
        "--dry",
    ]);
    let out = dir.path().join("exp");
    let args = [
        "experiment",
        "--out",
        out.to_str().unwrap(),
        "--maps",
        maps.to_str().unwrap(),
        "--synth",
        synth.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch",
        "2",
        "--crop-frames",
        "32",
    ];
    let (stdout, _) = run(&args);
    for line in [
        "Table 1. Results for frame metrics (reference: annotation)",
        "Table 2. Results for note metrics (reference: roll)",
        "Table 3. note-with-offset results (reference: annotation)",
        "GuitarSet: no dataset given (--guitarset)",
        "training GuitarSet -> MAPS: its source training (GuitarSet) did not run",
        "training MAPS -> GuitarSet: no GuitarSet training data",
    ] {
        assert!(stdout.contains(line), "{line:?} missing in\n{stdout}");
    }
    // MAPS, Synthesized and Synthesized -> MAPS ran and have MAPS figures; GuitarSet cells are empty.
    for model in [
        "| MAPS |",
        "| Synthesized Instruments |",
        "| Synthesized Instruments -> MAPS |",
    ] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(model))
            .unwrap_or_else(|| panic!("{model}\n{stdout}"));
        assert!(row.ends_with("| – | – | – |"), "{row}");
        assert!(!row.starts_with(&format!("{model} – ")), "{row}");
    }
    for file in [
        "tables/tables.md",
        "tables/table1_frame.csv",
        "tables/table2_note.csv",
        "tables/table3_note_with_offset.csv",
        "runs/synth-to-maps/config.json",
        "eval/synth-to-maps--maps.json",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("runs/synth-to-maps/config.json")).unwrap(),
    )
    .unwrap();
    assert!(config["settings"]["init"]
        .as_str()
        .unwrap()
        .ends_with("runs/synth/checkpoints/last.safetensors"));
    // A second invocation reuses every training and evaluation and writes the same tables.
    let (again, _) = run(&args);
    let tables = |s: &str| {
        s.lines()
            .filter(|l| l.starts_with('|'))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(tables(&stdout), tables(&again));
}
