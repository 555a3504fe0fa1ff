//! Audio readers and the WAV writer on files the tests make themselves (hound writes WAV; the two
//! FLAC fixtures come from `tools/reference/audio_fixtures.py`), plus `../shared/data` files
//! when present.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use mtosi::audio::{self, load_mono, read_audio, write_wav16, AudioError, DecodeError};

fn write_hound(path: &Path, spec: hound::WavSpec, frames: &[Vec<f64>]) {
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for frame in frames {
        for &value in frame {
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Float, _) => writer.write_sample(value as f32).unwrap(),
                (hound::SampleFormat::Int, 8) => writer.write_sample(value as i8).unwrap(),
                (hound::SampleFormat::Int, 16) => writer.write_sample(value as i16).unwrap(),
                (hound::SampleFormat::Int, _) => writer.write_sample(value as i32).unwrap(),
            }
        }
    }
    writer.finalize().unwrap();
}

/// Frames of a 440 Hz tone, channel `c` scaled by 1/(c+1), as integers of `bits` (or floats).
fn tone_frames(rate_hz: u32, channels: usize, frames: usize, full_scale: f64) -> Vec<Vec<f64>> {
    (0..frames)
        .map(|i| {
            let v =
                0.5 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / f64::from(rate_hz)).sin();
            (0..channels)
                .map(|c| (v / (c + 1) as f64 * full_scale).round())
                .collect()
        })
        .collect()
}

#[test]
fn integer_pcm_of_every_depth_decodes_to_value_over_2_pow_bits_minus_1() {
    let dir = tempfile::tempdir().unwrap();
    for bits in [8u16, 16, 24, 32] {
        for channels in [1u16, 2, 6] {
            let path = dir.path().join(format!("int{bits}_{channels}ch.wav"));
            let spec = hound::WavSpec {
                channels,
                sample_rate: 22_050,
                bits_per_sample: bits,
                sample_format: hound::SampleFormat::Int,
            };
            let full_scale = (1u64 << (bits - 1)) as f64;
            let frames = tone_frames(22_050, channels.into(), 300, full_scale);
            write_hound(&path, spec, &frames);
            let audio = read_audio(&path).unwrap();
            assert_eq!(
                (
                    audio.sample_rate_hz,
                    audio.channel_count,
                    audio.frame_count()
                ),
                (22_050, channels.into(), 300)
            );
            for (decoded, expected) in audio.interleaved.iter().zip(frames.iter().flatten()) {
                // f32 holds 24 bits of mantissa: exact for 8..24 bits, within 2^-24 relative for 32.
                assert!(
                    (f64::from(*decoded) - expected / full_scale).abs() <= 1e-7,
                    "{bits} bit: {decoded} vs {}",
                    expected / full_scale
                );
            }
        }
    }
}

#[test]
fn float_wav_in_extensible_and_plain_ieee_headers_decodes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("float.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let frames = tone_frames(48_000, 2, 100, 1.0 / 1024.0);
    write_hound(&path, spec, &frames);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        &bytes[20..22],
        &[0xFE, 0xFF],
        "hound writes WAVE_FORMAT_EXTENSIBLE for 32-bit"
    );
    let audio = audio::decode(&bytes).unwrap();
    let expected: Vec<f32> = frames.iter().flatten().map(|&v| v as f32).collect();
    assert_eq!(audio.interleaved, expected);

    let plain = plain_wav(
        3,
        32,
        1,
        8000,
        &[0.25f32, -0.5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    );
    assert_eq!(audio::decode(&plain).unwrap().interleaved, vec![0.25, -0.5]);
}

/// A WAV with a 16-byte `fmt ` chunk of any format tag (1 = PCM, 3 = IEEE float).
fn plain_wav(format_tag: u16, bits: u16, channels: u16, rate_hz: u32, data: &[u8]) -> Vec<u8> {
    let block_align = channels * bits / 8;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&format_tag.to_le_bytes());
    bytes.extend_from_slice(&channels.to_le_bytes());
    bytes.extend_from_slice(&rate_hz.to_le_bytes());
    bytes.extend_from_slice(&(rate_hz * u32::from(block_align)).to_le_bytes());
    bytes.extend_from_slice(&block_align.to_le_bytes());
    bytes.extend_from_slice(&bits.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&(data.len() as u32).to_le_bytes());
    bytes.extend_from_slice(data);
    bytes
}

#[test]
fn unsupported_encodings_are_named() {
    let mp3_in_wav = plain_wav(0x55, 16, 1, 8000, &[0; 4]);
    let err = audio::decode(&mp3_in_wav).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Unsupported { .. } | DecodeError::Malformed { .. }
        ),
        "{err}"
    );
    let float64 = plain_wav(3, 64, 1, 8000, &[0; 16]);
    let err = audio::decode(&float64).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Unsupported { .. } | DecodeError::Malformed { .. }
        ),
        "{err}"
    );
}

#[test]
fn load_mono_mixes_channels_and_resamples_to_16k() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stereo44k1.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    // Left = tone, right = silence: the mix is half the tone.
    let frames: Vec<Vec<f64>> = tone_frames(44_100, 1, 44_100, 32768.0)
        .into_iter()
        .map(|f| vec![f[0], 0.0])
        .collect();
    write_hound(&path, spec, &frames);
    let mono = load_mono(&path, 16_000).unwrap();
    assert_eq!(mono.len(), 16_000);
    let peak = mono[1600..14_400].iter().fold(0f32, |m, &s| m.max(s.abs()));
    // 0.5 amplitude halved by the mix; 16-bit steps and the resampler's ripple stay below 1e-3.
    assert!((peak - 0.25).abs() < 1e-3, "peak {peak}");
}

#[test]
fn wav16_round_trips_within_one_step_and_clips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.wav");
    let samples: Vec<f32> = (0..1000)
        .map(|i| ((i as f32) * 0.01).sin() * 0.9)
        .chain([1.5, -2.0, 1.0, -1.0])
        .collect();
    write_wav16(&path, &samples, 16_000).unwrap();
    let audio = read_audio(&path).unwrap();
    assert_eq!((audio.sample_rate_hz, audio.channel_count), (16_000, 1));
    let step = 1.0 / 32768.0;
    for (read, written) in audio.interleaved.iter().zip(&samples) {
        // Writing scales by 32767 and reading divides by 32768: at most one step apart.
        assert!(
            (read - written.clamp(-1.0, 1.0)).abs() <= 1.5 * step,
            "{read} vs {written}"
        );
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() == 1,
        "no temporary file left"
    );
}

#[test]
fn write_wav16_to_a_missing_folder_fails_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/out.wav");
    let err = write_wav16(&path, &[0.0; 4], 16_000).unwrap_err();
    assert!(matches!(err, AudioError::Io { .. }));
    assert!(err.to_string().contains("no/such/dir/out.wav"), "{err}");
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/audio")
        .join(name)
}

#[test]
fn flac_fixtures_decode_to_the_tone_they_hold() {
    for (name, rate_hz, channels, bits) in [
        ("tone_16k_mono_16bit.flac", 16_000, 1usize, 16u32),
        ("tone_44k1_stereo_24bit.flac", 44_100, 2, 24),
    ] {
        let audio = read_audio(&fixture(name)).unwrap();
        assert_eq!(
            (audio.sample_rate_hz, audio.channel_count),
            (rate_hz, channels),
            "{name}"
        );
        let full_scale = (1u64 << (bits - 1)) as f64;
        let expected = tone_frames(
            rate_hz,
            channels,
            (0.05 * f64::from(rate_hz)) as usize,
            full_scale,
        );
        assert_eq!(audio.frame_count(), expected.len(), "{name}");
        for (decoded, value) in audio.interleaved.iter().zip(expected.iter().flatten()) {
            // libsndfile scales by 2^(bits-1) - 1 or 2^(bits-1) depending on version: allow one step.
            assert!(
                (f64::from(*decoded) * full_scale - value).abs() <= 1.0 + 1e-6,
                "{name}: {decoded} vs {value}"
            );
        }
    }
}

#[test]
fn truncated_wav_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.wav");
    let mut bytes = Vec::new();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::new(Cursor::new(&mut bytes), spec).unwrap();
    for i in 0..1000 {
        writer.write_sample(i as i16).unwrap();
    }
    writer.finalize().unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 501]).unwrap();
    let err = read_audio(&path).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("cut.wav") && message.contains("truncated"),
        "{message}"
    );
}

fn shared_data(relative: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(relative);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipped: {} is absent", path.display());
        None
    }
}

#[test]
fn guitarset_hex_and_mic_samples_load_when_present() {
    let Some(hex) = shared_data("guitarset-sample/03_BN3-119-G_solo_hex.wav") else {
        return;
    };
    let audio = read_audio(&hex).unwrap();
    assert_eq!((audio.channel_count, audio.sample_rate_hz), (6, 44_100));
    assert_eq!(
        load_mono(&hex, 16_000).unwrap().len(),
        (audio.frame_count() * 16_000).div_ceil(44_100)
    );
    let Some(mic) = shared_data("guitarset-sample/03_BN3-119-G_solo_mic.wav") else {
        return;
    };
    let audio = read_audio(&mic).unwrap();
    assert_eq!((audio.channel_count, audio.sample_rate_hz), (1, 44_100));
    // The excerpt is near silence (peak one 16-bit step): check shape, not content.
    assert_eq!(
        load_mono(&mic, 16_000).unwrap().len(),
        (audio.frame_count() * 16_000).div_ceil(44_100)
    );
}

#[test]
fn maps_flac_loads_at_16k_without_resampling_when_present() {
    let Some(dir) = shared_data("maps/flac") else {
        return;
    };
    let path = dir.join("MAPS_MUS-alb_esp2_AkPnCGdD.flac");
    let audio = read_audio(&path).unwrap();
    assert_eq!((audio.channel_count, audio.sample_rate_hz), (1, 16_000));
    assert_eq!(load_mono(&path, 16_000).unwrap(), audio.interleaved);
}

/// WAVE_FORMAT_EXTENSIBLE with 24 valid bits in 4-byte containers, left-justified as the format
/// specifies: decoded as libsndfile does (checked with soundfile: the same values).
#[test]
fn extensible_24_valid_bits_in_32_bit_containers_decode_left_justified() {
    let values: [i32; 5] = [1, -1, 4_194_304, -8_388_608, 8_388_607];
    let data: Vec<u8> = values.iter().flat_map(|v| (v << 8).to_le_bytes()).collect();
    let pcm_guid: [u8; 16] = [
        1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71,
    ];
    let mut fmt = Vec::new();
    for field in [0xFFFEu16, 1] {
        fmt.extend_from_slice(&field.to_le_bytes());
    }
    fmt.extend_from_slice(&8000u32.to_le_bytes());
    fmt.extend_from_slice(&32_000u32.to_le_bytes());
    for field in [4u16, 32, 22, 24] {
        fmt.extend_from_slice(&field.to_le_bytes());
    }
    fmt.extend_from_slice(&4u32.to_le_bytes());
    fmt.extend_from_slice(&pcm_guid);
    let mut bytes = b"RIFF".to_vec();
    bytes.extend_from_slice(&(4 + 8 + fmt.len() as u32 + 8 + data.len() as u32).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&fmt);
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&(data.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&data);
    let audio = audio::decode(&bytes).unwrap();
    let expected: Vec<f32> = values
        .iter()
        .map(|&v| (f64::from(v) / 8_388_608.0) as f32)
        .collect();
    assert_eq!(audio.interleaved, expected);
}
