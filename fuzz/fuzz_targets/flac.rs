//! FLAC: any bytes give audio or an error, never a panic or an allocation the bytes cannot back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(audio) = mtosi::audio::flac::decode_flac(bytes) {
        assert!(audio.channel_count > 0 && audio.interleaved.len() % audio.channel_count == 0);
        assert!(audio.interleaved.iter().all(|s| s.is_finite()));
    }
});
