//! Audio → CQT spectrogram (nnAudio CQT1992v2 semantics), its log and normalisation, and the cache.
