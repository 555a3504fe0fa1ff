//! Audio files in and out: WAV/FLAC readers, mixing to mono, resampling to 16 kHz, WAV writing.
