//! `mtosi bench-step` refuses shapes the network cannot take with a clear error, not a panic.

use std::process::Command;

fn bench_step(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mtosi"))
        .arg("bench-step")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn too_few_frames_and_an_empty_batch_are_errors_naming_the_option() {
    for (args, names) in [
        (&["--frames", "8"][..], "--frames 8"),
        (&["--frames", "15", "--eval"][..], "--frames 15"),
        (&["--batch", "0", "--frames", "16"][..], "--batch 0"),
    ] {
        let out = bench_step(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A panic exits with 101; a clean error with 1.
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(names) && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn the_library_refuses_them_too() {
    use mtosi::model::bench::{time_eval_forward, time_train_step};
    assert!(time_train_step(0, 16, 1, false).is_err());
    assert!(time_train_step(1, 8, 1, false).is_err());
    assert!(time_eval_forward(15, 1, false).is_err());
}

/// `--device emu` times the network's kernels (the training step, or `--eval` the forward);
/// `--breakdown` on a kernel device is refused with the reason, and a missing device names the
/// option.
#[test]
fn bench_step_takes_the_device_argument() {
    let out = bench_step(&[
        "--device",
        "emu",
        "--eval",
        "--frames",
        "16",
        "--repeats",
        "1",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("eval forward on emu"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The training step runs on the kernels too.
    let out = bench_step(&[
        "--device",
        "emu",
        "--batch",
        "1",
        "--frames",
        "16",
        "--repeats",
        "1",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("train step on emu"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (args, names) in [
        (
            &["--device", "emu", "--eval", "--frames", "16", "--breakdown"][..],
            "--breakdown",
        ),
        (
            &["--device", "cuda:7", "--eval", "--frames", "16"][..],
            "--device cuda:7",
        ),
    ] {
        let out = bench_step(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(names), "{args:?}: {stderr}");
    }
}

/// `--precision bf16` runs where the CPU has AVX512-BF16, and is refused with the reason (not a
/// silent float32 fallback) where it has not (`MTOSI_FORCE_ISA=avx2` narrows this CPU) or off
/// the cpu device.
#[test]
fn precision_bf16_runs_or_is_refused_with_the_reason() {
    let narrowed = Command::new(env!("CARGO_BIN_EXE_mtosi"))
        .args(["bench-step", "--eval", "--frames", "16", "--repeats", "1"])
        .args(["--precision", "bf16"])
        .env("MTOSI_FORCE_ISA", "avx2")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&narrowed.stderr);
    assert_eq!(narrowed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--precision bf16") && stderr.contains("AVX512-BF16"),
        "{stderr}"
    );
    let off_cpu = bench_step(&[
        "--device",
        "emu",
        "--eval",
        "--frames",
        "16",
        "--precision",
        "bf16",
    ]);
    let stderr = String::from_utf8_lossy(&off_cpu.stderr);
    assert!(
        off_cpu.status.code() == Some(1) && stderr.contains("--device cpu"),
        "{stderr}"
    );
    if mtosi::ops::conv2d::bf16_supported() {
        let out = bench_step(&[
            "--eval",
            "--frames",
            "16",
            "--repeats",
            "1",
            "--precision",
            "bf16",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        println!("skipped the bf16 run: no AVX512-BF16 on this CPU");
    }
}
