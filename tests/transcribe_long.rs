//! An hour of audio through `mtosi transcribe` within 1 GiB of peak memory. Ignored in CI (it
//! writes a 635 MB WAV and takes minutes); run it with
//!
//!     cargo test --release --test transcribe_long -- --ignored --nocapture
//!
//! Needs `/usr/bin/time` (Debian: `apt-get install time`) for the peak RSS of the process.

use std::path::Path;
use std::process::Command;

/// One hour of 44.1 kHz stereo 16-bit PCM: a slow arpeggio of decaying tones in both
/// channels, written in blocks so the test itself stays small.
fn write_hour(path: &Path) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    let pitches = [48.0f32, 52.0, 55.0, 60.0, 64.0, 67.0, 72.0];
    for i in 0..3600 * 44_100u64 {
        let t = i as f32 / 44_100.0;
        let note = (i / 22_050) as usize % pitches.len();
        let freq = 440.0 * 2f32.powf((pitches[note] - 69.0) / 12.0);
        let local = (i % 22_050) as f32 / 44_100.0;
        let v = 0.3 * (-4.0 * local).exp() * (2.0 * std::f32::consts::PI * freq * t).sin();
        let s = (v * 32767.0) as i16;
        writer.write_sample(s).unwrap();
        writer.write_sample(s).unwrap();
    }
    writer.finalize().unwrap();
}

#[test]
#[ignore = "an hour of audio: minutes of CPU and a 635 MB temporary file"]
fn an_hour_transcribes_within_one_gibibyte() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("hour.wav");
    write_hour(&wav);
    let model = dir.path().join("init.safetensors");
    let status = Command::new(env!("CARGO_BIN_EXE_mtosi"))
        .args(["init", "-o", model.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(env!("CARGO_BIN_EXE_mtosi"))
        .args(["transcribe", wav.to_str().unwrap(), "-o"])
        .arg(dir.path().join("out"))
        .args(["--checkpoint", model.to_str().unwrap()])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    println!("{log}");
    assert!(out.status.success(), "{log}");
    let rss_kb: u64 = log
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .expect("/usr/bin/time -v reports the peak RSS")
        .parse()
        .unwrap();
    println!("peak RSS {} MiB", rss_kb / 1024);
    assert!(rss_kb < 1 << 20, "peak RSS {} MiB", rss_kb / 1024);
    let midi = std::fs::read(dir.path().join("out/hour.mid")).unwrap();
    let notes = mtosi::notes::midi::parse_midi(&midi).unwrap();
    let last = notes.iter().map(|n| n.offset_s).fold(0.0, f64::max);
    assert!(last <= 3600.1, "a note ends after the recording: {last}");
}
