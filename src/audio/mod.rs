//! Audio files in and out: WAV, FLAC, MP3, Ogg Vorbis and AAC/M4A readers, mixing to mono,
//! resampling to 16 kHz, WAV writing.
//!
//! [`load_mono`] is the entry point the rest of mtosi uses: any supported file, any channel
//! count and rate, becomes mono `f32` samples in [-1, 1] at the rate asked for.
//! [`stream::stream_mono`] gives the same samples in pieces without holding the file (what
//! transcription of long recordings uses). Decoders also work on bytes ([`decode`]) so they
//! can be fuzzed without files.

mod compressed;
pub mod flac;
pub mod mp4;
pub mod resample;
pub mod stream;
pub mod wav;

use std::io::Cursor;
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
    #[error("the file is empty (0 bytes)")]
    Empty,
    #[error(
        "not a WAV, FLAC, MP3, Ogg Vorbis or AAC/M4A file (starts with {found:?}; expected \"RIFF....WAVE\", \"fLaC\", an MP3 frame or ID3 tag, \"OggS\", \"....ftyp\" or an ADTS header)"
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
    /// MPEG-1/2 layer III, bare frames or after an ID3v2 tag.
    Mp3,
    /// Ogg (Vorbis).
    Ogg,
    /// ISO base media (MP4/M4A), AAC inside.
    Mp4,
    /// Raw AAC in ADTS frames (`.aac`).
    Adts,
}

impl AudioFormat {
    /// The name errors use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Wav => "WAV",
            Self::Flac => "FLAC",
            Self::Mp3 => "MP3",
            Self::Ogg => "Ogg",
            Self::Mp4 => "MP4/M4A",
            Self::Adts => "AAC",
        }
    }

    /// The usual file extension (a hint for symphonia's probe).
    pub fn extension(self) -> &'static str {
        match self {
            Self::Wav => "wav",
            Self::Flac => "flac",
            Self::Mp3 => "mp3",
            Self::Ogg => "ogg",
            Self::Mp4 => "m4a",
            Self::Adts => "aac",
        }
    }
}

/// Extensions of the files [`sniff_format`] can recognise, for picking audio out of a folder.
pub const AUDIO_EXTENSIONS: &[&str] = &["wav", "flac", "mp3", "ogg", "oga", "m4a", "mp4", "aac"];

/// Identifies the format from the magic bytes (not the extension, which users get wrong).
pub fn sniff_format(bytes: &[u8]) -> Result<AudioFormat, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE" {
        return Ok(AudioFormat::Wav);
    }
    if bytes.starts_with(b"fLaC") {
        return Ok(AudioFormat::Flac);
    }
    if bytes.starts_with(b"OggS") {
        return Ok(AudioFormat::Ogg);
    }
    if bytes.len() >= 8 && &bytes[4..8] == b"ftyp" {
        return Ok(AudioFormat::Mp4);
    }
    if bytes.starts_with(b"ID3") && bytes.len() >= 10 {
        return Ok(AudioFormat::Mp3);
    }
    if bytes.len() >= 4 && bytes[0] == 0xFF {
        // ADTS: sync 0xFFF, layer bits 00. MPEG audio layer III: sync 0xFFE, layer bits 01.
        match bytes[1] & 0xF6 {
            0xF0 => return Ok(AudioFormat::Adts),
            _ if bytes[1] & 0xE0 == 0xE0 && (bytes[1] >> 1) & 0b11 == 0b01 => {
                return Ok(AudioFormat::Mp3)
            }
            _ => {}
        }
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

/// Decodes a whole file held in memory (any supported format).
pub fn decode(bytes: &[u8]) -> Result<DecodedAudio, DecodeError> {
    match sniff_format(bytes)? {
        AudioFormat::Wav => wav::decode_wav(bytes),
        AudioFormat::Flac => flac::decode_flac(bytes),
        _ => collect(|on_format, on_block| {
            stream::decode_stream(bytes, Cursor::new(bytes.to_vec()), on_format, on_block)
        }),
    }
}

/// Runs a block decoder to the end and keeps every sample.
pub(crate) fn collect<F>(run: F) -> Result<DecodedAudio, DecodeError>
where
    F: FnOnce(
        &mut dyn FnMut(stream::StreamFormat) -> Result<(), DecodeError>,
        &mut dyn FnMut(&[f32]) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError>,
{
    let mut format = None;
    let mut interleaved = Vec::new();
    run(
        &mut |f| {
            format = Some(f);
            Ok(())
        },
        &mut |block| {
            interleaved.extend_from_slice(block);
            Ok(())
        },
    )?;
    let format = format.expect("a decoder that succeeds announced its format");
    Ok(DecodedAudio {
        sample_rate_hz: format.sample_rate_hz,
        channel_count: format.channel_count,
        interleaved,
    })
}

/// Reads and decodes a whole file, in blocks (the file's bytes are never held whole).
pub fn read_audio(path: &Path) -> Result<DecodedAudio, AudioError> {
    let mut format = None;
    let mut interleaved = Vec::new();
    stream::stream_file(
        path,
        &mut |f| {
            format = Some(f);
            Ok(())
        },
        &mut |block| {
            interleaved.extend_from_slice(block);
            Ok(())
        },
    )?;
    let format = format.expect("a decoder that succeeds announced its format");
    Ok(DecodedAudio {
        sample_rate_hz: format.sample_rate_hz,
        channel_count: format.channel_count,
        interleaved,
    })
}

/// Loads a file as mono samples at `target_rate_hz`: channels averaged, then resampled (see
/// [`resample`]) if the file's rate differs. Decoded, mixed and resampled in pieces
/// ([`stream::stream_mono`]): only the mono output is held whole.
pub fn load_mono(path: &Path, target_rate_hz: u32) -> Result<Vec<f32>, AudioError> {
    let mut mono = Vec::new();
    stream::stream_mono::<AudioError>(path, target_rate_hz, &mut |piece| {
        mono.extend_from_slice(piece);
        Ok(())
    })?;
    Ok(mono)
}

/// Index of the first sample that is NaN or infinite. Checks 64 samples at a time without
/// branching, so it vectorises: a plain `position` branches on every sample and costs about as
/// much as mixing the block to mono.
pub fn first_non_finite(samples: &[f32]) -> Option<usize> {
    const CHUNK: usize = 64;
    let (chunk, bad) = samples
        .chunks(CHUNK)
        .enumerate()
        .find(|(_, chunk)| !chunk.iter().fold(true, |ok, s| ok & s.is_finite()))?;
    Some(chunk * CHUNK + bad.iter().position(|s| !s.is_finite())?)
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
    fn the_first_non_finite_sample_is_found_in_any_chunk_and_position() {
        assert_eq!(first_non_finite(&[]), None);
        assert_eq!(first_non_finite(&[0.5; 200]), None);
        for (at, bad) in [
            (0, f32::NAN),
            (63, f32::INFINITY),
            (64, f32::NAN),
            (199, -f32::INFINITY),
        ] {
            let mut samples = vec![0.25f32; 200];
            samples[at] = bad;
            samples[at.max(150)..].fill(f32::NAN);
            assert_eq!(first_non_finite(&samples), Some(at), "{bad} at {at}");
        }
    }

    #[test]
    fn unknown_magic_is_reported_with_what_was_found() {
        let err = decode(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3 some document").unwrap_err();
        assert!(matches!(err, DecodeError::WrongMagic { .. }), "{err}");
        assert!(err.to_string().contains("%PDF"), "{err}");
    }

    #[test]
    fn formats_are_told_by_their_first_bytes() {
        let cases: [(&[u8], AudioFormat); 6] = [
            (b"RIFF\0\0\0\0WAVEfmt ", AudioFormat::Wav),
            (b"fLaC\0\0\0\x22", AudioFormat::Flac),
            (b"ID3\x04\0\0\0\0\0\x10", AudioFormat::Mp3),
            (b"\xff\xfb\x90\x64", AudioFormat::Mp3),
            (b"OggS\0\x02\0\0", AudioFormat::Ogg),
            (b"\0\0\0\x20ftypM4A ", AudioFormat::Mp4),
        ];
        for (bytes, format) in cases {
            assert_eq!(sniff_format(bytes).unwrap(), format, "{bytes:?}");
        }
        assert_eq!(
            sniff_format(b"\xff\xf1\x50\x80").unwrap(),
            AudioFormat::Adts
        );
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
        assert!(matches!(decode(b""), Err(DecodeError::Empty)));
    }
}
