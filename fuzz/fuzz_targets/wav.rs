//! WAV: any bytes give audio or an error, never a panic or an allocation the bytes cannot back;
//! decoded audio holds whole frames of finite samples.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(audio) = mtosi::audio::wav::decode_wav(bytes) {
        assert!(audio.channel_count > 0 && audio.interleaved.len() % audio.channel_count == 0);
        assert!(audio.interleaved.iter().all(|s| s.is_finite()));
    }
});
