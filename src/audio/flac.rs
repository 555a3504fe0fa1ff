//! FLAC through `claxon` (pure Rust): any bit depth up to 32, any channel count.

use std::io::Cursor;

use super::{DecodeError, DecodedAudio};

pub(super) const FORMAT: &str = "FLAC";

/// Decodes the bytes of a FLAC file (through the block reader of [`super::stream`]). A stream
/// that stops before the sample count its STREAMINFO announces is an error, not a silently
/// shorter recording.
pub fn decode_flac(bytes: &[u8]) -> Result<DecodedAudio, DecodeError> {
    super::collect(|on_format, on_block| {
        super::stream::decode_flac_stream(Cursor::new(bytes), on_format, on_block)
    })
}

/// `place` says where the stream stopped, for a short read.
pub(super) fn flac_error(error: claxon::Error, place: &str) -> DecodeError {
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
