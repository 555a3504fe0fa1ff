//! `mtosi train` end to end on a tiny generated set (crops of 32 frames, batch 2, so every run
//! takes about a second): bit-exact resume after SIGKILL at random moments, the NaN guard,
//! the refusals, transfer and freezing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use mtosi::audio::wav::write_wav16;
use mtosi::model::checkpoint::{load_model, TensorFile};
use mtosi::model::Transcriber;
use mtosi::notes::{write_notes, Note};
use mtosi::rng::Rng;

const BIN: &str = env!("CARGO_BIN_EXE_mtosi");

/// Writes `count` recordings (sine-tone notes with their labels) into `dir`, some shorter than
/// a 32-frame crop (1.024 s) so tiling is exercised.
fn tiny_set(dir: &Path, count: usize, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng::new(seed);
    for i in 0..count {
        let seconds = [0.6, 1.3, 2.1, 0.9, 1.7, 2.5][i % 6];
        let samples = (seconds * 16_000.0) as usize;
        let mut audio = vec![0.0f32; samples];
        let mut notes = Vec::new();
        let mut t = 0.05;
        while t + 0.2 < seconds {
            let pitch = rng.range_u8(40, 90);
            let length = rng.range_f32(0.1, 0.5) as f64;
            let end = (t + length).min(seconds);
            notes.push(Note {
                onset_s: t,
                offset_s: end,
                pitch,
                velocity: 80,
            });
            let hz = 440.0 * 2f64.powf((f64::from(pitch) - 69.0) / 12.0);
            for (n, sample) in audio
                .iter_mut()
                .enumerate()
                .take((end * 16_000.0) as usize)
                .skip((t * 16_000.0) as usize)
            {
                *sample +=
                    0.2 * (2.0 * std::f64::consts::PI * hz * n as f64 / 16_000.0).sin() as f32;
            }
            t += rng.range_f32(0.1, 0.4) as f64;
        }
        write_wav16(&dir.join(format!("r{i}.wav")), &audio, 16_000).unwrap();
        write_notes(&dir.join(format!("r{i}.tsv")), &notes).unwrap();
    }
}

struct Set {
    _dir: tempfile::TempDir,
    train: PathBuf,
    val: PathBuf,
    root: PathBuf,
}

fn set() -> Set {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train");
    let val = dir.path().join("val");
    tiny_set(&train, 8, 1);
    tiny_set(&val, 2, 2);
    Set {
        root: dir.path().to_path_buf(),
        train,
        val,
        _dir: dir,
    }
}

fn train_args(set: &Set, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "train",
        "--data",
        &format!("folder:{}", set.train.display()),
        "--val",
        &format!("folder:{}", set.val.display()),
        "--out",
        &out.display().to_string(),
        "--batch",
        "2",
        "--crop-frames",
        "32",
        "--validate-every",
        "2",
        "--checkpoint-every",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn mtosi(args: &[String]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn ok(args: &[String]) -> String {
    let out = mtosi(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "mtosi {args:?} failed:\n{stderr}");
    stderr
}

fn fail(args: &[String]) -> String {
    let out = mtosi(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "mtosi {args:?} should have failed:\n{stderr}"
    );
    stderr
}

/// Every tensor's bytes (and the metadata, which carries the step and the loop's position).
fn assert_same_state(a: &Path, b: &Path) {
    for (x, y) in [
        (a.to_path_buf(), b.to_path_buf()),
        (
            mtosi::model::checkpoint::optimizer_path(a),
            mtosi::model::checkpoint::optimizer_path(b),
        ),
    ] {
        let fx = TensorFile::read(&x).unwrap();
        let fy = TensorFile::read(&y).unwrap();
        assert_eq!(
            fx.tensors.keys().collect::<Vec<_>>(),
            fy.tensors.keys().collect::<Vec<_>>()
        );
        for (name, t) in &fx.tensors {
            assert!(
                t.bytes == fy.tensors[name].bytes,
                "{name} differs between {} and {}",
                x.display(),
                y.display()
            );
        }
        assert_eq!(fx.metadata, fy.metadata, "{}", x.display());
    }
}

fn params(path: &Path) -> Vec<(String, Vec<f32>)> {
    let mut model = Transcriber::new(0);
    load_model(path, &mut model).unwrap();
    model
        .params_mut()
        .into_iter()
        .map(|p| (p.name.clone(), p.value.clone()))
        .collect()
}

#[test]
fn a_run_killed_at_random_moments_resumes_to_bit_identical_parameters() {
    let set = set();
    let reference = set.root.join("reference");
    // --checkpoint-minutes 0: last.safetensors after every step (4 an epoch), so kills also land
    // mid-epoch and mid-write. Augmented, so that the per-batch draws are proven to resume too.
    let extra = [
        "--epochs",
        "3",
        "--checkpoint-minutes",
        "0",
        "--augment",
        "recorded",
    ];
    ok(&train_args(&set, &reference, &extra));
    let killed = set.root.join("killed");
    // The kill moments, replayable by the harness's rule (MTOSI_TEST_SEED).
    let seed = mtosi::device::equivalence::test_seed("kill moments");
    let mut rng = Rng::new(seed);
    let mut kills = 0;
    let mut first = true;
    for attempt in 0..40 {
        let args = if first || !killed.join("config.json").exists() {
            train_args(&set, &killed, &extra)
        } else {
            vec![
                "train".into(),
                "--resume".into(),
                killed.display().to_string(),
            ]
        };
        first = false;
        let mut child = Command::new(BIN)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if attempt < 6 {
            std::thread::sleep(Duration::from_millis(rng.range_usize(50, 900) as u64));
        } else {
            // Enough kills: let it finish.
            assert!(child.wait().unwrap().success(), "the final resume failed");
            break;
        }
        match child.try_wait().unwrap() {
            Some(status) => {
                assert!(status.success(), "attempt {attempt}: {status}");
                break;
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
            }
        }
    }
    println!("killed {kills} times");
    assert!(kills > 0, "the run always finished before the kill");
    assert_same_state(
        &reference.join("checkpoints/last.safetensors"),
        &killed.join("checkpoints/last.safetensors"),
    );
    let metrics = |dir: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (a, b) = (metrics(&reference), metrics(&killed));
    assert_eq!(a.len(), 3);
    assert_eq!(
        b.len(),
        3,
        "one metrics line per epoch after resumes: {b:?}"
    );
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["loss"], y["loss"]);
        assert_eq!(x["val_loss"], y["val_loss"]);
    }
}

#[test]
fn resuming_with_more_epochs_equals_training_them_at_once() {
    let set = set();
    let whole = set.root.join("whole");
    ok(&train_args(&set, &whole, &["--epochs", "2"]));
    let split = set.root.join("split");
    ok(&train_args(&set, &split, &["--epochs", "1"]));
    ok(&[
        "train".into(),
        "--resume".into(),
        split.display().to_string(),
        "--epochs".into(),
        "2".into(),
    ]);
    assert_same_state(
        &whole.join("checkpoints/last.safetensors"),
        &split.join("checkpoints/last.safetensors"),
    );
    for dir in [&whole, &split] {
        for file in [
            "config.json",
            "metrics.jsonl",
            "checkpoints/epoch-0002.safetensors",
            "checkpoints/epoch-0002.optim.safetensors",
            "plots/loss.svg",
            "plots/val-roll.png",
        ] {
            assert!(
                dir.join(file).is_file(),
                "{file} missing in {}",
                dir.display()
            );
        }
    }
}

#[test]
fn a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let set = set();
    let out = set.root.join("nan");
    let stderr = fail(&train_args(&set, &out, &["--epochs", "3", "--lr", "1e30"]));
    assert!(stderr.contains("epoch 1"), "{stderr}");
    assert!(stderr.contains("step "), "{stderr}");
    assert!(
        stderr.contains("the loss is NaN at epoch 1, step ")
            || stderr.contains("the loss is inf at epoch 1, step "),
        "{stderr}"
    );
    // load_model refuses non-finite values, so loading proves the checkpoint finite.
    let last = out.join("checkpoints/last.safetensors");
    let values = params(&last);
    assert!(values.iter().all(|(_, v)| v.iter().all(|x| x.is_finite())));
}

#[test]
fn mismatched_resumes_and_bad_data_are_refused_by_name() {
    let set = set();
    let out = set.root.join("run");
    ok(&train_args(&set, &out, &["--epochs", "1"]));

    // A second run into the same directory.
    let stderr = fail(&train_args(&set, &out, &["--epochs", "1"]));
    assert!(stderr.contains("--resume"), "{stderr}");

    // Flags that disagree with the run's config.
    let stderr = fail(&[
        "train".into(),
        "--resume".into(),
        out.display().to_string(),
        "--batch".into(),
        "3".into(),
    ]);
    assert!(stderr.contains("batch: the run has 2"), "{stderr}");

    // A checkpoint of another shape.
    let last = out.join("checkpoints/last.safetensors");
    let good = std::fs::read(&last).unwrap();
    let mut file = TensorFile::read(&last).unwrap();
    let t = file.tensors.get_mut("linear.bias").unwrap();
    t.shape = vec![44];
    t.bytes.truncate(44 * 4);
    file.write(&last).unwrap();
    let resume = [
        "train".into(),
        "--resume".into(),
        out.display().to_string(),
        "--epochs".into(),
        "2".into(),
    ];
    let stderr = fail(&resume);
    assert!(
        stderr.contains("linear.bias") && stderr.contains("[44]"),
        "{stderr}"
    );

    // A truncated checkpoint.
    std::fs::write(&last, &good[..good.len() / 2]).unwrap();
    let stderr = fail(&resume);
    assert!(
        stderr.contains("last.safetensors") && stderr.contains("truncated"),
        "{stderr}"
    );

    // Not a run directory.
    let stderr = fail(&[
        "train".into(),
        "--resume".into(),
        set.train.display().to_string(),
    ]);
    assert!(stderr.contains("config.json"), "{stderr}");

    // Missing data, and a recording whose audio does not decode.
    let stderr = fail(&[
        "train".into(),
        "--data".into(),
        "folder:/no/such/folder".into(),
        "--out".into(),
        set.root.join("x").display().to_string(),
    ]);
    assert!(stderr.contains("/no/such/folder"), "{stderr}");
    std::fs::write(set.train.join("r1.wav"), b"RIFF junk").unwrap();
    std::fs::write(set.train.join("lonely.wav"), b"").unwrap();
    let bad = set.root.join("bad");
    let stderr = fail(&train_args(&set, &bad, &["--epochs", "1"]));
    assert!(stderr.contains("r1"), "{stderr}");
    assert!(
        stderr.contains("lonely.wav: audio without labels"),
        "{stderr}"
    );
    assert!(!bad.join("checkpoints/last.safetensors").exists());
}

#[test]
fn transfer_copies_matching_tensors_and_frozen_parts_stay_fixed() {
    let set = set();
    let source = set.root.join("source");
    ok(&train_args(&set, &source, &["--epochs", "1"]));
    let source_ckpt = source.join("checkpoints/last.safetensors");
    let source_params = params(&source_ckpt);

    // A foreign checkpoint: one tensor renamed, one of another shape.
    let foreign = set.root.join("foreign.safetensors");
    let mut file = TensorFile::read(&source_ckpt).unwrap();
    let t = file.tensors.remove("linear.weight").unwrap();
    file.tensors.insert("head.weight".into(), t);
    let t = file.tensors.get_mut("linear.bias").unwrap();
    t.shape = vec![2, 44];
    file.write(&foreign).unwrap();
    let out = set.root.join("from-foreign");
    let stderr = ok(&train_args(
        &set,
        &out,
        &["--epochs", "1", "--init", &foreign.display().to_string()],
    ));
    assert!(
        stderr.contains("145 tensors copied, 2 not copied, 1 in the source unused"),
        "{stderr}"
    );
    assert!(
        stderr.contains("not copied  linear.weight: not in the source"),
        "{stderr}"
    );
    assert!(
        stderr.contains("not copied  linear.bias: shape [2, 44]"),
        "{stderr}"
    );
    assert!(stderr.contains("unused      head.weight"), "{stderr}");
    assert!(stderr.contains("Adam starts fresh"), "{stderr}");

    for part in ["encoder", "decoder", "lstm", "linear"] {
        let out = set.root.join(format!("freeze-{part}"));
        let stderr = ok(&train_args(
            &set,
            &out,
            &[
                "--epochs",
                "1",
                "--init",
                &source_ckpt.display().to_string(),
                "--freeze",
                part,
            ],
        ));
        assert!(stderr.contains("147 tensors copied"), "{stderr}");
        assert!(stderr.contains("Adam state: taken from"), "{stderr}");
        let prefix = match part {
            "encoder" => "Unet1_encoder.",
            "decoder" => "Unet1_decoder.",
            "lstm" => "lstm1.",
            _ => "linear.",
        };
        let trained = params(&out.join("checkpoints/last.safetensors"));
        let (mut held, mut moved) = (0, 0);
        for ((name, before), (_, after)) in source_params.iter().zip(&trained) {
            if name.starts_with(prefix) {
                assert!(before == after, "{part}: frozen {name} changed");
                held += 1;
            } else if before != after {
                moved += 1;
            }
        }
        assert!(held > 0 && moved > 0, "{part}: held {held}, moved {moved}");
    }
}

/// The mean loss of each epoch in a run's metrics.jsonl.
fn epoch_losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

/// `--device emu` runs the whole step on the kernels (`model::device_training`) and follows
/// the cpu run, `--freeze` included; a device that is not there is an error naming the option.
#[test]
fn a_run_on_emu_follows_the_cpu_run_and_a_missing_gpu_is_refused() {
    let set = set();
    let (cpu, emu) = (set.root.join("cpu"), set.root.join("emu"));
    ok(&train_args(
        &set,
        &cpu,
        &["--epochs", "1", "--device", "cpu"],
    ));
    let stderr = ok(&train_args(
        &set,
        &emu,
        &["--epochs", "1", "--device", "emu"],
    ));
    assert!(stderr.contains("training on emu"), "{stderr}");
    let (cpu_loss, emu_loss) = (epoch_losses(&cpu), epoch_losses(&emu));
    assert_eq!(cpu_loss.len(), 1);
    assert_eq!(emu_loss.len(), 1);
    // One epoch of ~8 steps at the protocol's lr 0.01: the two sides' sums differ in order
    // (~1e-6 a step), which Adam's sign-like first steps carry along; a wrong step (no Adam on
    // the device, stale parameters) differs by far more than this.
    let relative = (cpu_loss[0] - emu_loss[0]).abs() / cpu_loss[0];
    println!(
        "epoch loss: cpu {}, emu {}, relative difference {relative:.2e}",
        cpu_loss[0], emu_loss[0]
    );
    assert!(
        relative < 1e-2,
        "epoch loss: cpu {cpu_loss:?}, emu {emu_loss:?}"
    );
    let last = emu.join("checkpoints/last.safetensors");
    let trained = params(&last);
    let cpu_trained = params(&cpu.join("checkpoints/last.safetensors"));
    assert!(trained.iter().flat_map(|(_, v)| v).all(|v| v.is_finite()));
    // The kernels sum in other orders than the cpu: identical bits would mean the cpu ran.
    assert!(
        trained != cpu_trained,
        "emu gave the cpu's parameters bit for bit"
    );
    // Adam moves an element by at most ~lr a step whatever its gradient, so elements whose
    // gradient is near zero (sign decided by rounding) may drift apart by up to 2 × lr × steps;
    // all others must agree. So: every element within that bound, and 99 % of each tensor
    // within 5 % of its peak (a wrong step, e.g. stale parameters or no Adam on the device,
    // moves most elements of some tensor).
    let adam_bound = 2.0 * 0.01 * 10.0;
    for ((name, a), (_, b)) in trained.iter().zip(&cpu_trained) {
        let peak = b.iter().fold(0f32, |m, y| m.max(y.abs())).max(1e-3);
        let apart = |x: &f32, y: &f32| (x - y).abs();
        // (A NaN fails here, so the count below sees finite differences only.)
        assert!(
            a.iter().zip(b).all(|(x, y)| apart(x, y) <= adam_bound),
            "{name}: an element moved further than Adam can in one epoch"
        );
        let far = a
            .iter()
            .zip(b)
            .filter(|(x, y)| apart(x, y) > 0.05 * peak + 1e-3)
            .count();
        assert!(
            far <= (a.len() / 100).max(1),
            "{name}: {far} of {} elements of emu and cpu apart by more than 5 % of the peak {peak}",
            a.len()
        );
    }
    let missing = fail(&train_args(
        &set,
        &set.root.join("gpu"),
        &["--device", "cuda:7"],
    ));
    assert!(missing.contains("--device cuda:7"), "{missing}");
    // --freeze on the device: the frozen encoder keeps its initial values bit for bit (equal
    // to the cpu run's, which keeps them too), the rest trains.
    let frozen = |device: &str| {
        let out = set.root.join(format!("frozen-{device}"));
        ok(&train_args(
            &set,
            &out,
            &["--epochs", "1", "--device", device, "--freeze", "encoder"],
        ));
        params(&out.join("checkpoints/last.safetensors"))
    };
    let (cpu_frozen, emu_frozen) = (frozen("cpu"), frozen("emu"));
    let (mut held, mut moved) = (0, 0);
    for ((name, c), (_, e)) in cpu_frozen.iter().zip(&emu_frozen) {
        if name.starts_with("Unet1_encoder.") {
            assert!(c == e, "frozen {name} differs between the cpu and emu runs");
            held += 1;
        } else if c != e {
            moved += 1;
        }
    }
    assert!(held > 0 && moved > 0, "held {held}, moved {moved}");
}

/// `--precision bf16` trains (AVX512-BF16 CPUs), is kept in the run's config and may change on
/// a resume (it is a setting of how, not of what); where the CPU lacks the instructions, or on a
/// kernel device, it is refused naming the option.
#[test]
fn a_bf16_run_follows_the_float32_run_and_is_refused_where_it_cannot_run() {
    let set = set();
    let (fp32, bf16) = (set.root.join("fp32"), set.root.join("bf16"));
    let emu = set.root.join("bf16-emu");
    let stderr = fail(&train_args(
        &set,
        &emu,
        &["--epochs", "1", "--device", "emu", "--precision", "bf16"],
    ));
    assert!(stderr.contains("--precision bf16"), "{stderr}");
    assert!(!emu.exists(), "a refused run left {}", emu.display());
    if !mtosi::ops::conv2d::bf16_supported() {
        let stderr = fail(&train_args(
            &set,
            &bf16,
            &["--epochs", "1", "--precision", "bf16"],
        ));
        assert!(stderr.contains("AVX512-BF16"), "{stderr}");
        assert!(!bf16.exists(), "a refused run left {}", bf16.display());
        return;
    }
    ok(&train_args(&set, &fp32, &["--epochs", "2"]));
    let stderr = ok(&train_args(
        &set,
        &bf16,
        &["--epochs", "1", "--precision", "bf16"],
    ));
    assert!(
        stderr.contains("bf16 convolution and LSTM products"),
        "{stderr}"
    );
    let config = std::fs::read_to_string(bf16.join("config.json")).unwrap();
    assert!(config.contains(r#""precision": "bf16""#), "{config}");
    // The second epoch in float32: a resume may change the precision.
    let stderr = ok(&[
        "train".into(),
        "--resume".into(),
        bf16.display().to_string(),
        "--epochs".into(),
        "2".into(),
        "--precision".into(),
        "fp32".into(),
    ]);
    assert!(!stderr.contains("bf16 convolution"), "{stderr}");
    let (a, b) = (epoch_losses(&fp32), epoch_losses(&bf16));
    assert_eq!((a.len(), b.len()), (2, 2));
    for (x, y) in a.iter().zip(&b) {
        // bf16 rounds the products' operands to 8 bits: the losses follow, not bit for bit.
        assert!(
            (x - y).abs() / x < 5e-2,
            "epoch losses: float32 {a:?}, bf16 then float32 {b:?}"
        );
    }
    assert!(params(&bf16.join("checkpoints/last.safetensors"))
        .iter()
        .all(|(_, v)| v.iter().all(|x| x.is_finite())));
}
