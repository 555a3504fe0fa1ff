//! MP3, Ogg Vorbis and AAC/M4A through symphonia, and the streaming path every format takes:
//! the fixtures (`tools/reference/encoded_fixtures.sh`: 1.5 s at 44.1 kHz, 440 Hz left and
//! 660 Hz right, amplitude 0.5) decode to the tones they were made from, aligned in time; cut or
//! damaged copies are errors naming the file; streamed pieces equal the whole-file result.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use mtosi::audio::resample::StreamingResampler;
use mtosi::audio::stream::stream_mono;
use mtosi::audio::{load_mono, read_audio, resample, AudioError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/audio")
        .join(name)
}

const CODECS: [&str; 3] = [
    "tone_44k1_stereo.mp3",
    "tone_44k1_stereo.ogg",
    "tone_44k1_stereo.m4a",
];

/// Amplitude and phase (radians, of `sin`) of the `freq_hz` component of `x` over whole periods
/// in its middle second.
fn tone_of(x: &[f32], rate_hz: f64, freq_hz: f64) -> (f64, f64) {
    let (from, to) = ((0.25 * rate_hz) as usize, (1.25 * rate_hz) as usize);
    let (mut s, mut c) = (0.0, 0.0);
    for (i, &v) in x.iter().enumerate().take(to).skip(from) {
        let w = 2.0 * PI * freq_hz * i as f64 / rate_hz;
        s += f64::from(v) * w.sin();
        c += f64::from(v) * w.cos();
    }
    let n = (to - from) as f64;
    let (s, c) = (2.0 * s / n, 2.0 * c / n);
    (s.hypot(c), c.atan2(s))
}

#[test]
fn lossy_files_decode_to_their_tones_in_time_at_their_rate_and_length() {
    for name in CODECS {
        let audio = read_audio(&fixture(name)).unwrap();
        assert_eq!(
            (audio.sample_rate_hz, audio.channel_count),
            (44_100, 2),
            "{name}"
        );
        // Encoder delay and padding trimmed, the source's length exactly: MP3 by its LAME
        // header, Vorbis by its granule positions, AAC in MP4 by the track's edit list (the
        // 1024 priming samples of ffmpeg's encoder; `audio::mp4`).
        assert_eq!(audio.frame_count(), 66_150, "{name}");
        let left: Vec<f32> = audio.interleaved.iter().step_by(2).copied().collect();
        let right: Vec<f32> = audio
            .interleaved
            .iter()
            .skip(1)
            .step_by(2)
            .copied()
            .collect();
        for (channel, freq, other) in [(&left, 440.0, 660.0), (&right, 660.0, 440.0)] {
            let (amplitude, phase) = tone_of(channel, 44_100.0, freq);
            // 96 kbit/s codecs keep a pure tone within a few per cent; an untrimmed encoder
            // delay (1105 samples for LAME, 1024 or 2112 for AAC) would turn the phase by
            // radians, so a phase within 0.2 rad (0.05 ms at 660 Hz) shows it was trimmed.
            assert!(
                (amplitude - 0.5).abs() < 0.03,
                "{name} {freq} Hz: amplitude {amplitude}"
            );
            assert!(phase.abs() < 0.2, "{name} {freq} Hz: phase {phase}");
            let (leak, _) = tone_of(channel, 44_100.0, other);
            assert!(
                leak < 0.01,
                "{name}: {other} Hz leaks into the {freq} Hz channel: {leak}"
            );
        }
    }
}

#[test]
fn cut_and_damaged_lossy_files_are_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for name in CODECS {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let mut damaged = bytes.clone();
        // Overwrite the middle third with a pattern no codec reads as audio.
        let (a, b) = (bytes.len() / 3, 2 * bytes.len() / 3);
        for (i, byte) in damaged[a..b].iter_mut().enumerate() {
            *byte = (i * 37 % 251) as u8;
        }
        for (label, content) in [
            ("cut", &bytes[..bytes.len() / 2]),
            ("damaged", &damaged[..]),
        ] {
            let path = dir.path().join(format!("{label}-{name}"));
            std::fs::write(&path, content).unwrap();
            match load_mono(&path, 16_000) {
                Err(err) => {
                    let message = err.to_string();
                    assert!(message.contains(&path.display().to_string()), "{message}");
                }
                // A damaged Ogg page or MP3 frame can still be a valid (wrong) stream, which no
                // decoder can tell; what matters is that nothing panics and the length holds.
                Ok(samples) => assert!(
                    label == "damaged" && samples.len() <= 24_000 + 1024,
                    "{label} {name} decoded as {} samples",
                    samples.len()
                ),
            }
        }
    }
}

#[test]
fn the_streaming_resampler_gives_exactly_the_whole_signal_resampler_output() {
    let seed = 0x5eed_u64;
    let mut rng = mtosi::rng::Rng::new(seed);
    for (from, to, len) in [
        (44_100, 16_000, 100_000),
        (48_000, 16_000, 4_801),
        (22_050, 16_000, 10),
        (8_000, 16_000, 30_000),
        (16_000, 16_000, 5_000),
    ] {
        let signal = rng.vec_f32(len, -0.9, 0.9);
        let whole = resample(&signal, from, to).unwrap();
        let mut streamed = Vec::new();
        let mut resampler = StreamingResampler::new(from, to).unwrap();
        let mut at = 0;
        while at < len {
            let piece = 1 + rng.range_usize(0, 5000);
            let end = (at + piece).min(len);
            resampler
                .push(&signal[at..end], &mut |out| streamed.extend_from_slice(out))
                .unwrap();
            at = end;
        }
        resampler
            .finish(&mut |out| streamed.extend_from_slice(out))
            .unwrap();
        assert_eq!(
            streamed.len(),
            whole.len(),
            "{from} -> {to} Hz, {len} samples"
        );
        assert_eq!(streamed, whole, "{from} -> {to} Hz, {len} samples");
    }
}

#[test]
fn streamed_mono_pieces_join_to_the_mixed_and_resampled_whole_file() {
    for name in ["tone_44k1_stereo_24bit.flac", "tone_44k1_stereo.mp3"] {
        let path = fixture(name);
        let audio = read_audio(&path).unwrap();
        let whole = resample(&audio.mix_to_mono(), audio.sample_rate_hz, 16_000).unwrap();
        let mut pieces = 0;
        let mut joined = Vec::new();
        let summary = stream_mono::<AudioError>(&path, 16_000, &mut |piece| {
            pieces += 1;
            joined.extend_from_slice(piece);
            Ok(())
        })
        .unwrap();
        assert_eq!(joined, whole, "{name}");
        assert_eq!(summary.output_samples as usize, whole.len());
        assert_eq!(summary.source_frames as usize, audio.frame_count());
        assert!(pieces > 1, "{name} came in one piece");
    }
}

#[test]
fn headers_with_hostile_fields_are_errors_or_audio_never_a_panic_or_a_huge_allocation() {
    // Fields set to 0xFFFFFFFF, 0x7FFFFFFF or random in the first 2 KB (sizes, counts, rates of
    // every container's header; anywhere in the small M4A, whose index is at the end). A field
    // that sized an allocation would ask for gigabytes; the decoders read block by block, so
    // what comes back is at most the file's own audio.
    let dir = tempfile::tempdir().unwrap();
    let seed = mtosi::device::equivalence::seed_from_env();
    println!("seed {seed} (replay with MTOSI_TEST_SEED={seed})");
    let mut rng = mtosi::rng::Rng::new(seed);
    for name in CODECS.iter().chain(&["tone_44k1_stereo_16bit.flac"]) {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let span = if name.ends_with(".m4a") {
            bytes.len() - 4
        } else {
            2044
        };
        for k in 0..20 {
            let mut mutated = bytes.clone();
            for _ in 0..3 {
                let at = rng.range_usize(0, span - 1);
                let value = match rng.range_usize(0, 2) {
                    0 => u32::MAX,
                    1 => i32::MAX as u32,
                    _ => rng.next_u64() as u32,
                };
                mutated[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
            let path = dir.path().join(format!("{k}-{name}"));
            std::fs::write(&path, &mutated).unwrap();
            if let Ok(samples) = load_mono(&path, 16_000) {
                // 1.5 s at 16 kHz, stretched at most 4× by a rate field turned down to the
                // lowest rate accepted (4 kHz for 44.1 kHz frames ~ 11×): well under a minute.
                assert!(
                    samples.len() < 16_000 * 60,
                    "{name} #{k}: {}",
                    samples.len()
                );
            }
        }
    }
}
