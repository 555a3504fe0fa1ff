"""Writes the small FLAC fixtures of tests/audio_files.rs (claxon only decodes, so the test
cannot make them itself). Each holds a 0.05 s 440 Hz tone of amplitude 0.5 per channel, channel c
scaled by 1 / (c + 1), written by libsndfile (soundfile), which rounds to the nearest step.

    python tools/reference/audio_fixtures.py
"""

from pathlib import Path

import numpy as np
import soundfile

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "audio"


def tone(rate_hz, channels):
    t = np.arange(int(0.05 * rate_hz)) / rate_hz
    mono = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    return np.stack([mono / (c + 1) for c in range(channels)], axis=1)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    soundfile.write(OUT / "tone_16k_mono_16bit.flac", tone(16000, 1), 16000, subtype="PCM_16")
    soundfile.write(OUT / "tone_44k1_stereo_24bit.flac", tone(44100, 2), 44100, subtype="PCM_24")


if __name__ == "__main__":
    main()
