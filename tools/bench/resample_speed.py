"""Peer of benches/audio_resample.rs: librosa.resample (default soxr_hq, what the paper's code
used) on the same 30 s of 44.1 kHz audio, best of 10 runs.

    python tools/bench/resample_speed.py
"""

import timeit

import librosa
import numpy as np

RATE = 44100
t = np.arange(30 * RATE) / RATE
tone = lambda f: np.sin(2 * np.pi * f * t)
samples = (0.2 * (tone(220.0) + tone(1375.0) + tone(6100.0)) * (0.5 + 0.5 * tone(0.7))).astype(np.float32)

for res_type in ["soxr_hq", "soxr_vhq"]:
    runs = timeit.repeat(lambda: librosa.resample(samples, orig_sr=RATE, target_sr=16000, res_type=res_type), number=1, repeat=10)
    print(f"librosa {res_type}: best {min(runs) * 1e3:.1f} ms, median {sorted(runs)[len(runs) // 2] * 1e3:.1f} ms")
