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
fn network_with_statistics(seed: u64, spec: &Tensor) -> Transcriber {
    let mut model = Transcriber::new(seed);
    model.set_mode(Mode::Train);
    model.forward(spec).expect("a valid spectrogram");
    model
}

#[test]
fn transcriber_forward_on_kernel_devices_matches_cpu() {
    // (batch, frames): MIN_FRAMES + 4 gives odd sizes after the first halvings (20 → 10 → 5 →
    // 2 → 1), so the decoder's output padding is exercised; a batch of 2 at 17 frames.
    let shapes = [(1, MIN_FRAMES + 4), (2, MIN_FRAMES + 1)];
    Equivalence::new("transcriber forward")
        // 1e-5 of the output's peak, a tenth of what `mtosi forward` promises against PyTorch:
        // emu measures ~2e-7 (the kernels sum in other orders through ~40 layers), and a random
        // network's roll sits near 0.5 and moves little, so a wrong layer (a leaky ReLU left
        // out of one encoder block) shows only as ~4e-5.
        .tolerance(1e-5)
        .floor_fraction(1.0)
        .run(
            &shapes,
            |&(batch, frames), rng| {
                let seed = rng.next_u64();
                let values = rng.vec_f32(batch * frames * N_BINS, 0.0, 1.0);
                (seed, Tensor::new(vec![batch, frames, N_BINS], values))
            },
            |device, (seed, spec)| {
                let mut model = network_with_statistics(*seed, spec);
                inference::forward_eval_on(device, &mut model, spec).map_err(|e| {
                    DeviceError::InvalidInput {
                        op: "transcriber forward",
                        message: e.to_string(),
                    }
                })
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
        // As the equivalence test: 1e-5 of the peak (a wrong layer shows as ~7e-5 here).
        1e-5,
    );
}
