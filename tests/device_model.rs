//! The network on a kernel device against the CPU layers: the evaluation-mode forward pass of
//! the whole transcriber through `inference::frame_probabilities_on`, in the equivalence
//! report, and `mtosi forward --device emu` on a checkpoint written by `mtosi init`.

use std::process::Command;

use mtosi::compare::{assert_close, ErrorScale};
use mtosi::device::equivalence::Equivalence;
use mtosi::device::DeviceError;
use mtosi::model::tensor::{Mode, Tensor};
use mtosi::model::{inference, Transcriber, MIN_FRAMES, N_BINS};
use mtosi::npy;

/// A random-initialised network whose BatchNorm running statistics one training-mode CPU
/// forward pass moved off their initial (0, 1), so the evaluation pass reads real ones.
fn network_with_statistics(seed: u64, spectrogram: &[f32], frames: usize) -> Transcriber {
    let mut model = Transcriber::new(seed);
    model.set_mode(Mode::Train);
    let spec = Tensor::new(vec![1, frames, N_BINS], spectrogram.to_vec());
    model.forward(&spec).expect("a valid spectrogram");
    model
}

#[test]
fn transcriber_forward_on_kernel_devices_matches_cpu() {
    // MIN_FRAMES + 4 frames: odd sizes after the first halvings (20 → 10 → 5 → 2 → 1), so the
    // decoder's output padding is exercised.
    let frames = MIN_FRAMES + 4;
    Equivalence::new("transcriber forward")
        // 1e-4 of the output's peak (the tolerance of `mtosi forward` against PyTorch): the
        // kernels sum in other orders than the CPU through ~40 layers.
        .tolerance(1e-4)
        .floor_fraction(1.0)
        .run(
            &[frames],
            |&frames, rng| {
                let seed = rng.next_u64();
                (seed, rng.vec_f32(frames * N_BINS, 0.0, 1.0))
            },
            |device, (seed, spectrogram)| {
                let mut model = network_with_statistics(*seed, spectrogram, frames);
                inference::frame_probabilities_on(device, &mut model, spectrogram, frames).map_err(
                    |e| DeviceError::InvalidInput {
                        op: "transcriber forward",
                        message: e.to_string(),
                    },
                )
            },
        );
}

#[test]
fn forward_cli_on_emu_equals_cpu_on_an_init_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("init.safetensors");
    let out = Command::new(env!("CARGO_BIN_EXE_mtosi"))
        .args(["init", "--seed", "5", "-o"])
        .arg(&checkpoint)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames = MIN_FRAMES + 1;
    let spec = dir.path().join("spec.npy");
    let values: Vec<f32> = (0..frames * N_BINS)
        .map(|i| ((i * 53) % 97) as f32 / 97.0)
        .collect();
    npy::write(&spec, &[1, frames, N_BINS], &values).unwrap();
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
        assert!(
            out.status.success(),
            "--device {device}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        npy::read(&roll).unwrap()
    };
    let cpu = run("cpu");
    let emu = run("emu");
    assert_eq!(emu.shape, [frames, 88]);
    assert_eq!(emu.shape, cpu.shape);
    assert_close(
        "mtosi forward --device emu vs cpu",
        &emu.data,
        &cpu.data,
        ErrorScale::of_peak(),
        1e-4,
    );
}
