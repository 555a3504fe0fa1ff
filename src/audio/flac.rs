//! FLAC through `claxon` (pure Rust): any bit depth up to 32, any channel count.

use std::io::Cursor;

use super::{DecodeError, DecodedAudio};

const FORMAT: &str = "FLAC";

/// Decodes the bytes of a FLAC file. A stream that stops before the sample count its
/// STREAMINFO announces is an error, not a silently shorter recording.
pub fn decode_flac(bytes: &[u8]) -> Result<DecodedAudio, DecodeError> {
    let mut reader =
        claxon::FlacReader::new(Cursor::new(bytes)).map_err(|e| flac_error(e, "its metadata"))?;
    let info = reader.streaminfo();
    if info.channels == 0 || info.sample_rate == 0 {
        return Err(DecodeError::Malformed {
            format: FORMAT,
            detail: format!("{} channels at {} Hz", info.channels, info.sample_rate),
        });
    }
    let channel_count = info.channels as usize;
    let scale = 1.0 / (1u64 << (info.bits_per_sample.clamp(1, 32) - 1)) as f64;
    let claimed = info
        .samples
        .map(|frames| frames.saturating_mul(info.channels as u64));
    let capacity = claimed.unwrap_or(0).min(bytes.len() as u64 * 8) as usize;
    let mut interleaved = Vec::with_capacity(capacity);
    for sample in reader.samples() {
        interleaved
            .push((f64::from(sample.map_err(|e| flac_error(e, "an audio frame"))?) * scale) as f32);
    }
    if let Some(claimed) = claimed {
        if (interleaved.len() as u64) < claimed {
            return Err(DecodeError::Truncated {
                format: FORMAT,
                detail: format!(
                    "{} of the {claimed} samples STREAMINFO announces",
                    interleaved.len()
                ),
            });
        }
    }
    if interleaved.len() % channel_count != 0 {
        return Err(DecodeError::Truncated {
            format: FORMAT,
            detail: "the last frame is incomplete".into(),
        });
    }
    Ok(DecodedAudio {
        sample_rate_hz: info.sample_rate,
        channel_count,
        interleaved,
    })
}

/// `place` says where the stream stopped, for a short read.
fn flac_error(error: claxon::Error, place: &str) -> DecodeError {
    match error {
        claxon::Error::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Truncated {
                format: FORMAT,
                detail: format!("the stream ends inside {place}"),
            }
        }
        claxon::Error::Unsupported(what) => DecodeError::Unsupported {
            format: FORMAT,
            detail: what.to_string(),
        },
        claxon::Error::FormatError(what) => DecodeError::Malformed {
            format: FORMAT,
            detail: what.to_string(),
        },
        claxon::Error::IoError(e) => DecodeError::Malformed {
            format: FORMAT,
            detail: e.to_string(),
        },
    }
}
