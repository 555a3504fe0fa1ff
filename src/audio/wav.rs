//! WAV through `hound`: 8/16/24/32-bit integer PCM and 32-bit float, plain `WAVEFORMATEX` or
//! `WAVE_FORMAT_EXTENSIBLE` (also with fewer valid bits than the container), any channel count.
//! Writing: 16-bit PCM, atomically.

use std::io::Cursor;
use std::path::Path;

use super::{AudioError, DecodeError, DecodedAudio};
use crate::fsutil::write_atomic;

const FORMAT: &str = "WAV";

/// Decodes the bytes of a WAV file (through the block reader of [`super::stream`]).
pub fn decode_wav(bytes: &[u8]) -> Result<DecodedAudio, DecodeError> {
    super::collect(|on_format, on_block| {
        super::stream::decode_wav_stream(bytes, Cursor::new(bytes), on_format, on_block)
    })
}

/// `WAVE_FORMAT_EXTENSIBLE` may store samples with fewer valid bits than their container
/// (24 valid bits in 4 bytes, 20 in 3), left-justified as the format specifies. hound takes
/// such samples as right-justified (as its own writer makes them), which scrambles them. Reading
/// the whole container instead, as libsndfile does, is correct for left-justified data: this
/// returns a copy of the file with the valid-bits field set to the container width, or `None`
/// when the file needs no change.
pub(super) fn widen_valid_bits_to_container(bytes: &[u8]) -> Option<Vec<u8>> {
    const EXTENSIBLE: u16 = 0xFFFE;
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut at = 12;
    while let (Some(id), Some(size)) = (bytes.get(at..at + 4), u32_at(at + 4)) {
        let body = at + 8;
        if id == b"fmt " {
            if size < 22 || u16_at(body)? != EXTENSIBLE {
                return None;
            }
            let container_bits = u16_at(body + 14)?;
            let valid_bits = u16_at(body + 18)?;
            if valid_bits == 0 || valid_bits >= container_bits || container_bits % 8 != 0 {
                return None;
            }
            let mut widened = bytes.to_vec();
            widened[body + 18..body + 20].copy_from_slice(&container_bits.to_le_bytes());
            return Some(widened);
        }
        // Chunks are padded to even sizes.
        at = body
            .checked_add(size as usize)?
            .checked_add(size as usize % 2)?;
    }
    None
}

/// hound reports a short read either as `UnexpectedEof` or as an `Other` error with this text.
fn is_short_read(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::UnexpectedEof
        || error.to_string() == "Failed to read enough bytes."
}

pub(super) fn header_error(error: hound::Error) -> DecodeError {
    match error {
        hound::Error::IoError(e) if is_short_read(&e) => DecodeError::Truncated {
            format: FORMAT,
            detail: "the file ends inside its header".into(),
        },
        // hound's own words for sample layouts it does not decode (e.g. 64-bit float).
        hound::Error::FormatError(
            reason @ ("bits per sample is not 32" | "bits per sample is not 8 or 16"),
        ) => DecodeError::Unsupported {
            format: FORMAT,
            detail: reason.to_string(),
        },
        hound::Error::Unsupported => DecodeError::Unsupported {
            format: FORMAT,
            detail: "sample encoding other than integer PCM or 32-bit float".into(),
        },
        other => DecodeError::Malformed {
            format: FORMAT,
            detail: other.to_string(),
        },
    }
}

pub(super) fn sample_error(error: hound::Error, claimed_samples: usize) -> DecodeError {
    match error {
        hound::Error::IoError(e) if is_short_read(&e) => DecodeError::Truncated {
            format: FORMAT,
            detail: format!(
                "the data chunk ends before the {claimed_samples} samples its header announces"
            ),
        },
        other => DecodeError::Malformed {
            format: FORMAT,
            detail: other.to_string(),
        },
    }
}

/// The 16-bit PCM value of a sample in [-1, 1]: clipped, scaled by 32767, rounded.
pub fn to_i16(sample: f32) -> i16 {
    let clipped = if sample.is_nan() {
        0.0
    } else {
        sample.clamp(-1.0, 1.0)
    };
    (clipped * 32767.0).round() as i16
}

/// Encodes mono samples as a 16-bit PCM WAV file in memory.
pub fn encode_wav16(samples: &[f32], sample_rate_hz: u32) -> Result<Vec<u8>, String> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: sample_rate_hz,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut bytes = Vec::with_capacity(44 + samples.len() * 2);
    {
        let mut writer =
            hound::WavWriter::new(Cursor::new(&mut bytes), spec).map_err(|e| e.to_string())?;
        let mut samples_writer = writer.get_i16_writer(samples.len() as u32);
        for &sample in samples {
            samples_writer.write_sample(to_i16(sample));
        }
        samples_writer.flush().map_err(|e| e.to_string())?;
        writer.finalize().map_err(|e| e.to_string())?;
    }
    Ok(bytes)
}

/// Writes mono samples as a 16-bit PCM WAV file, atomically (temp file + rename). Samples
/// outside [-1, 1] are clipped.
pub fn write_wav16(path: &Path, samples: &[f32], sample_rate_hz: u32) -> Result<(), AudioError> {
    // A WAV data chunk holds at most 4 GiB; refuse before writing anything.
    if samples.len() > (u32::MAX as usize - 44) / 2 {
        return Err(AudioError::Write {
            path: path.to_path_buf(),
            problem: format!("{} samples exceed the 4 GiB WAV limit", samples.len()),
        });
    }
    if sample_rate_hz == 0 {
        return Err(AudioError::Write {
            path: path.to_path_buf(),
            problem: "sample rate 0 Hz".into(),
        });
    }
    let bytes = encode_wav16(samples, sample_rate_hz).map_err(|problem| AudioError::Write {
        path: path.to_path_buf(),
        problem,
    })?;
    write_atomic(path, |w| std::io::Write::write_all(w, &bytes)).map_err(|source| AudioError::Io {
        path: path.to_path_buf(),
        source,
    })
}
