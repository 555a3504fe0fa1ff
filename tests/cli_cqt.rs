//! `mtosi cqt` end to end: a WAV in, the spectrogram `.npy` and its picture out, clear errors.

use mtosi::compare::{check_close, ErrorScale};
use std::path::Path;
use std::process::Command;

use mtosi::spectrogram::{Cqt, CqtParams};

fn write_wav(path: &Path, sample_rate: u32, channels: u16, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

fn tone(n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| ((i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 16000.0).sin() * 8000.0) as i16)
        .collect()
}

#[test]
fn writes_the_spectrogram_and_its_picture() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("tone.wav");
    let samples = tone(20_001);
    write_wav(&wav, 16_000, 1, &samples);
    let (npy, png) = (dir.path().join("tone.npy"), dir.path().join("tone.png"));
    let status = Command::new(env!("CARGO_BIN_EXE_mtosi"))
        .args([
            "cqt",
            wav.to_str().unwrap(),
            "-o",
            npy.to_str().unwrap(),
            "--png",
            png.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());

    let array = mtosi::npy::read(&npy).unwrap();
    assert_eq!(array.shape, vec![176, 20_001 / 512 + 1]);
    let audio: Vec<f32> = samples.iter().map(|&s| s as f32 / 32768.0).collect();
    let expected = Cqt::new(CqtParams::default())
        .unwrap()
        .magnitude(&audio)
        .unwrap();
    assert_eq!(
        array.data, expected.values,
        "the file holds the library's magnitudes"
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let info = decoder.read_info().unwrap().info().clone();
    assert_eq!((info.width, info.height), (40, 176));
}

#[test]
fn log_and_normalize_give_a_unit_range_image() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("tone.wav");
    write_wav(&wav, 16_000, 1, &tone(9_999));
    let npy = dir.path().join("tone.npy");
    let status = Command::new(env!("CARGO_BIN_EXE_mtosi"))
        .args([
            "cqt",
            wav.to_str().unwrap(),
            "-o",
            npy.to_str().unwrap(),
            "--log",
            "--normalize",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let data = mtosi::npy::read(&npy).unwrap().data;
    let min = data.iter().cloned().fold(f32::INFINITY, f32::min);
    let max = data.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    assert_eq!((min, max), (0.0, 1.0));
}

#[test]
fn any_rate_and_channel_count_is_resampled_to_the_cqt_rate() {
    let dir = tempfile::tempdir().unwrap();
    // 1 s at 44.1 kHz stereo → 16 000 samples at 16 kHz → (16 000 - 1) / 512 + 1 = 32 frames.
    let wav = dir.path().join("stereo44k.wav");
    write_wav(&wav, 44_100, 2, &tone(2 * 44_100));
    let npy = dir.path().join("out.npy");
    let out = Command::new(env!("CARGO_BIN_EXE_mtosi"))
        .args(["cqt", wav.to_str().unwrap(), "-o", npy.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mtosi::npy::read(&npy).unwrap().shape, vec![176, 32]);
}

#[test]
fn a_corrupt_file_is_refused_with_its_name_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("broken.wav");
    write_wav(&wav, 16_000, 1, &tone(4_000));
    let bytes = std::fs::read(&wav).unwrap();
    std::fs::write(&wav, &bytes[..30]).unwrap();
    let npy = dir.path().join("x.npy");
    let out = Command::new(env!("CARGO_BIN_EXE_mtosi"))
        .args(["cqt", wav.to_str().unwrap(), "-o", npy.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("broken.wav"), "{stderr}");
    assert!(!npy.exists(), "nothing written on error");
}

#[test]
fn the_emulated_kernel_writes_the_cpu_spectrogram() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("tone.wav");
    write_wav(&wav, 16_000, 1, &tone(3_001));
    let mut outputs = Vec::new();
    for device in ["cpu", "emu"] {
        let npy = dir.path().join(format!("{device}.npy"));
        let status = Command::new(env!("CARGO_BIN_EXE_mtosi"))
            .args([
                "cqt",
                wav.to_str().unwrap(),
                "-o",
                npy.to_str().unwrap(),
                "--device",
                device,
            ])
            .status()
            .unwrap();
        assert!(status.success(), "--device {device}");
        outputs.push(mtosi::npy::read(&npy).unwrap());
    }
    assert_eq!(outputs[0].shape, outputs[1].shape);
    check_emu_against_cpu(&outputs[1].data, &outputs[0].data).unwrap_or_else(|e| panic!("{e}"));
}

/// emu's spectrogram against the CPU's: f32 sums in another order, ~1e-7 of the peak (the
/// kernels' own test is tests/cqt.rs), so 1e-5 of the peak; a NaN on either side fails.
fn check_emu_against_cpu(emu: &[f32], cpu: &[f32]) -> Result<(), String> {
    let worst = check_close(
        "emu vs cpu spectrogram",
        emu,
        cpu,
        ErrorScale::of_peak(),
        1e-5,
    )?;
    println!(
        "emu vs cpu: max abs difference {:.2e} of peak {:.3}",
        worst.error, worst.peak
    );
    Ok(())
}

#[test]
fn the_emu_against_cpu_check_fails_on_a_planted_nan() {
    let cpu = [0.5f32, 1.0, 0.25];
    check_emu_against_cpu(&cpu, &cpu).unwrap();
    let e = check_emu_against_cpu(&[0.5, f32::NAN, 0.25], &cpu).unwrap_err();
    assert!(e.contains("element 1 is not finite in the result"), "{e}");
    assert!(check_emu_against_cpu(&[f32::NAN; 3], &[f32::NAN; 3]).is_err());
}
