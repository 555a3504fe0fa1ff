//! `.ci/check-equivalence-report`, which CI runs after the tests, fails when a kernel of
//! kernels/*.cu appears in no equivalence report line or the whole training step's line is
//! missing, and passes when all are there.

use std::path::Path;
use std::process::Command;

const DEVICES: &str = "auto chose cpu: no driver\n\
kernels compiled by NVRTC 12.9 (/x/libnvrtc.so.12)\n\
  axpy                     kernels/axpy.cu:4  [sm_80, compute_80 PTX, emu]\n\
  cqt_direct               kernels/cqt.cu:14  [sm_80, compute_80 PTX, emu]\n\
  reduce_sum_rows          kernels/reduce.cu:6  [sm_80, compute_80 PTX, emu]\n";

fn check(report: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let devices = dir.path().join("devices.txt");
    let report_path = dir.path().join("report.txt");
    std::fs::write(&devices, DEVICES).unwrap();
    std::fs::write(&report_path, report).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/check-equivalence-report");
    let out = Command::new("bash")
        .arg(script)
        .arg(&devices)
        .arg(&report_path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn a_kernel_missing_from_the_report_fails_ci() {
    let (ok, output) = check(
        "axpy: 8 shapes, tolerance 1.0e-6, seed 0x1: emu(forward) worst relative error 0.00e0; kernels: axpy\n\
         cqt (Direct): cuda skipped: no driver\n\
         cqt (Direct): 4 shapes, tolerance 5.0e-4, seed 0x2: emu(forward) worst relative error 1.0e-5; kernels: cqt_direct\n",
    );
    assert!(!ok, "passed without reduce_sum_rows: {output}");
    assert!(output.contains("reduce_sum_rows"), "{output}");
    assert!(!check("").0, "an empty report passed");
}

#[test]
fn a_report_naming_every_kernel_passes() {
    let (ok, output) = check(
        "axpy: 8 shapes, …; kernels: axpy\n\
         reduce: 3 shapes, …; kernels: reduce_sum_rows\n\
         cqt (Direct): 4 shapes, …; kernels: cqt_direct, axpy\n\
         training step: 2 shapes × 3 Adam steps, …; kernels: axpy\n",
    );
    assert!(ok, "{output}");
}

#[test]
fn a_report_without_the_training_step_line_fails_ci() {
    let (ok, output) = check(
        "axpy: 8 shapes, …; kernels: axpy\n\
         reduce: 3 shapes, …; kernels: reduce_sum_rows\n\
         cqt (Direct): 4 shapes, …; kernels: cqt_direct\n",
    );
    assert!(!ok, "passed without the training step: {output}");
    assert!(output.contains("training step"), "{output}");
}
