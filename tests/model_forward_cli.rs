//! `mtosi forward` on a checkpoint saved by PyTorch (`safetensors.torch.save_file`) gives
//! PyTorch's evaluation-mode probabilities; bad inputs are refused naming the file.

use std::path::{Path, PathBuf};
use std::process::Command;

use mtosi::compare::{assert_close, ErrorScale};
use mtosi::model::checkpoint::TensorFile;
use mtosi::npy;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/model")
        .join(name)
}

fn forward(checkpoint: &Path, spectrogram: &Path, output: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mtosi"))
        .arg("forward")
        .arg("--checkpoint")
        .arg(checkpoint)
        .arg(spectrogram)
        .arg("-o")
        .arg(output)
        .output()
        .unwrap()
}

#[test]
fn forward_on_a_pytorch_checkpoint_gives_pytorch_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let case = TensorFile::read(&fixture("case_T37.safetensors")).unwrap();
    let input = case.tensors["input"].to_f32().unwrap();
    let expected = case.tensors["eval_output"].to_f32().unwrap();
    let (frames, bins, keys) = (37, 176, 88);
    // The second example of the batch, with a leading dimension of 1.
    let spec_path = dir.path().join("spec.npy");
    npy::write(&spec_path, &[1, frames, bins], &input[frames * bins..]).unwrap();
    let roll_path = dir.path().join("roll.npy");
    let out = forward(
        &fixture("case_T37.step3.safetensors"),
        &spec_path,
        &roll_path,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let roll = npy::read(&roll_path).unwrap();
    assert_eq!(roll.shape, [frames, keys]);
    let reference = &expected[frames * keys..];
    // Same tolerance as the golden tests: 1e-4 of the largest magnitude.
    assert_close(
        "forward vs PyTorch",
        &roll.data,
        reference,
        ErrorScale::of_peak(),
        1e-4,
    );
}

/// `--device` takes what every command takes; the network has no kernels yet, so `auto` runs it
/// on the cpu and an explicit `emu` or `cuda` is refused with the reason.
#[test]
fn forward_takes_the_device_argument_of_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.npy");
    npy::write(&spec, &[20, 176], &vec![0.5; 20 * 176]).unwrap();
    let checkpoint = fixture("case_T32.step3.safetensors");
    let run = |device: &str| {
        let roll = dir.path().join(format!("roll-{device}.npy"));
        let out = Command::new(env!("CARGO_BIN_EXE_mtosi"))
            .arg("forward")
            .arg("--checkpoint")
            .arg(&checkpoint)
            .arg(&spec)
            .arg("-o")
            .arg(&roll)
            .args(["--device", device])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            roll.exists(),
        )
    };
    for device in ["auto", "cpu"] {
        let (ok, stderr, written) = run(device);
        assert!(ok && written, "--device {device}: {stderr}");
    }
    for device in ["emu", "cuda:1"] {
        let (ok, stderr, written) = run(device);
        assert!(!ok && !written, "--device {device} ran");
        assert!(
            stderr.contains("runs on the cpu device only"),
            "--device {device}: {stderr}"
        );
    }
    let (ok, stderr, _) = run("gpu");
    assert!(
        !ok && stderr.contains("expected auto, cpu, emu, cuda or cuda:N"),
        "{stderr}"
    );
}

#[test]
fn bad_spectrograms_and_checkpoints_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = fixture("case_T32.step3.safetensors");
    let roll_path = dir.path().join("roll.npy");
    let stderr = |out: std::process::Output| {
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let wide = dir.path().join("wide.npy");
    npy::write(&wide, &[20, 175], &vec![0.5; 20 * 175]).unwrap();
    let message = stderr(forward(&checkpoint, &wide, &roll_path));
    assert!(
        message.contains("wide.npy") && message.contains("shape"),
        "{message}"
    );

    let short = dir.path().join("short.npy");
    npy::write(&short, &[2, 10, 176], &vec![0.5; 2 * 10 * 176]).unwrap();
    let message = stderr(forward(&checkpoint, &short, &roll_path));
    assert!(message.contains("short.npy"), "{message}");

    let nan = dir.path().join("nan.npy");
    let mut values = vec![0.5; 20 * 176];
    values[3 * 176 + 5] = f32::NAN;
    npy::write(&nan, &[20, 176], &values).unwrap();
    let message = stderr(forward(&checkpoint, &nan, &roll_path));
    assert!(
        message.contains("nan.npy") && message.contains("frame 3, bin 5"),
        "{message}"
    );

    let good = dir.path().join("good.npy");
    npy::write(&good, &[20, 176], &vec![0.5; 20 * 176]).unwrap();
    let missing = dir.path().join("missing.safetensors");
    let message = stderr(forward(&missing, &good, &roll_path));
    assert!(message.contains("missing.safetensors"), "{message}");
    assert!(!roll_path.exists(), "no output may be written on failure");
}
