//! Audio files in and out: WAV/FLAC readers, mixing to mono, resampling to 16 kHz, WAV writing.
//!
//! [`load_mono`] is the one entry point the rest of mtosi uses: any WAV or FLAC file, any
//! channel count and rate, becomes mono `f32` samples in [-1, 1] at the rate asked for.
//! Decoders work on bytes ([`decode`]) so they can be fuzzed without files.

pub mod flac;
pub mod resample;
pub mod wav;

use std::path::{Path, PathBuf};

pub use resample::resample;
pub use wav::write_wav16;

/// The sample rate every model input runs at (PROTOCOL.md, "Audio").
pub const MODEL_SAMPLE_RATE_HZ: u32 = 16_000;

/// Decoded audio as stored in the file: interleaved frames of `channel_count` samples, scaled
/// to [-1, 1] (integer PCM divided by 2^(bits-1), as soundfile and librosa do).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    pub sample_rate_hz: u32,
    pub channel_count: usize,
    pub interleaved: Vec<f32>,
}

impl DecodedAudio {
    pub fn frame_count(&self) -> usize {
        self.interleaved.len() / self.channel_count.max(1)
    }

    /// The mean of the channels of each frame (PROTOCOL.md: "mixed down (mean of channels)").
    pub fn mix_to_mono(&self) -> Vec<f32> {
        match self.channel_count {
            0 => return Vec::new(),
            1 => return self.interleaved.clone(),
            _ => {}
        }
        let scale = 1.0 / self.channel_count as f32;
        self.interleaved
            .chunks_exact(self.channel_count)
            .map(|frame| frame.iter().sum::<f32>() * scale)
            .collect()
    }
}

/// What is wrong with the bytes of an audio file, before the file name is known.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "not a WAV or FLAC file (starts with {found:?}; expected \"RIFF....WAVE\" or \"fLaC\")"
    )]
    WrongMagic { found: String },
    #[error("truncated {format} file: {detail}")]
    Truncated {
        format: &'static str,
        detail: String,
    },
    #[error("unsupported {format} encoding: {detail}")]
    Unsupported {
        format: &'static str,
        detail: String,
    },
    #[error("malformed {format} file: {detail}")]
    Malformed {
        format: &'static str,
        detail: String,
    },
}

/// Errors of the audio module; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Decode { path: PathBuf, source: DecodeError },
    #[error("{}: {problem}", path.display())]
    Resample { path: PathBuf, problem: String },
    #[error("{}: cannot write WAV: {problem}", path.display())]
    Write { path: PathBuf, problem: String },
}

/// The container a file's first bytes announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    Wav,
    Flac,
}

/// Identifies WAV or FLAC from the magic bytes (not the extension, which users get wrong).
pub fn sniff_format(bytes: &[u8]) -> Result<AudioFormat, DecodeError> {
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE" {
        return Ok(AudioFormat::Wav);
    }
    if bytes.starts_with(b"fLaC") {
        return Ok(AudioFormat::Flac);
    }
    let is_prefix_of = |magic: &[u8]| {
        !bytes.is_empty() && magic.starts_with(&bytes[..bytes.len().min(magic.len())])
    };
    if bytes.len() < 12 && (is_prefix_of(b"RIFF") || is_prefix_of(b"fLaC")) {
        let format = if is_prefix_of(b"RIFF") { "WAV" } else { "FLAC" };
        return Err(DecodeError::Truncated {
            format,
            detail: format!("only {} bytes", bytes.len()),
        });
    }
    let found = String::from_utf8_lossy(&bytes[..bytes.len().min(12)]).into_owned();
    Err(DecodeError::WrongMagic { found })
}

/// Decodes a whole WAV or FLAC file held in memory.
pub fn decode(bytes: &[u8]) -> Result<DecodedAudio, DecodeError> {
    match sniff_format(bytes)? {
        AudioFormat::Wav => wav::decode_wav(bytes),
        AudioFormat::Flac => flac::decode_flac(bytes),
    }
}

/// Reads and decodes a WAV or FLAC file.
pub fn read_audio(path: &Path) -> Result<DecodedAudio, AudioError> {
    let bytes = std::fs::read(path).map_err(|source| AudioError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode(&bytes).map_err(|source| AudioError::Decode {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads a WAV or FLAC file as mono samples at `target_rate_hz`: channels averaged, then
/// resampled (see [`resample`]) if the file's rate differs.
pub fn load_mono(path: &Path, target_rate_hz: u32) -> Result<Vec<f32>, AudioError> {
    let audio = read_audio(path)?;
    let mono = audio.mix_to_mono();
    resample(&mono, audio.sample_rate_hz, target_rate_hz).map_err(|problem| AudioError::Resample {
        path: path.to_path_buf(),
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixing_averages_the_channels_of_each_frame() {
        let audio = DecodedAudio {
            sample_rate_hz: 8000,
            channel_count: 3,
            interleaved: vec![0.3, 0.6, 0.0, -1.0, 1.0, 0.5],
        };
        let mono = audio.mix_to_mono();
        assert_eq!(mono.len(), 2);
        assert!(
            (mono[0] - 0.3).abs() < 1e-6 && (mono[1] - 0.5 / 3.0).abs() < 1e-6,
            "{mono:?}"
        );
    }

    #[test]
    fn unknown_magic_is_reported_with_what_was_found() {
        let err = decode(b"ID3\x03\x00\x00\x00\x00\x00\x00\x00\x00 mp3 data").unwrap_err();
        assert!(matches!(err, DecodeError::WrongMagic { .. }), "{err}");
        assert!(err.to_string().contains("ID3"), "{err}");
    }

    #[test]
    fn a_cut_header_is_truncated_not_wrong_magic() {
        assert!(matches!(
            decode(b"RIFF\x10\x00"),
            Err(DecodeError::Truncated { format: "WAV", .. })
        ));
        assert!(matches!(
            decode(b"fLa"),
            Err(DecodeError::Truncated { format: "FLAC", .. })
        ));
        assert!(matches!(decode(b""), Err(DecodeError::WrongMagic { .. })));
    }
}
