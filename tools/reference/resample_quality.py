"""Resampler quality of librosa's default (soxr_hq) on the sweep `tests/audio_resample.rs` uses.

A logarithmic sine sweep 50 Hz -> 7 kHz, amplitude 0.5, 4 s, is generated at 44.1 kHz, resampled
to 16 kHz with librosa.resample, and compared with the same sweep evaluated exactly at the 16 kHz
sample times. The SNR (dB) is measured on the interior: the first and last 0.1 s are left out,
since every resampler pads the ends with zeros. Keep the constants in step with the Rust test.

    python tools/reference/resample_quality.py
"""

import numpy as np
import librosa

FROM_HZ, TO_HZ = 44100, 16000
F_START_HZ, F_END_HZ, DURATION_S, AMPLITUDE = 50.0, 7000.0, 4.0, 0.5
EDGE_S = 0.1


def sweep(rate_hz):
    t = np.arange(int(round(DURATION_S * rate_hz))) / rate_hz
    k = np.log(F_END_HZ / F_START_HZ)
    phase = 2 * np.pi * F_START_HZ * DURATION_S / k * (np.exp(t / DURATION_S * k) - 1)
    return AMPLITUDE * np.sin(phase)


def snr_db(output, exact):
    edge = int(EDGE_S * TO_HZ)
    n = min(len(output), len(exact))
    out, ref = output[edge : n - edge], exact[edge : n - edge]
    return 10 * np.log10(np.sum(ref**2) / np.sum((out - ref) ** 2))


def main():
    source = sweep(FROM_HZ)
    exact = sweep(TO_HZ)
    for res_type in ["soxr_hq", "soxr_vhq", "polyphase"]:
        for dtype in [np.float32, np.float64]:
            out = librosa.resample(source.astype(dtype), orig_sr=FROM_HZ, target_sr=TO_HZ, res_type=res_type)
            default = " (librosa default)" if res_type == "soxr_hq" else ""
            print(f"{res_type}{default} {np.dtype(dtype).name}: sweep SNR {snr_db(out.astype(np.float64), exact):.1f} dB")
    # Alias rejection: an 11 kHz tone must vanish at 16 kHz (tests/audio_resample.rs does the same).
    t = np.arange(FROM_HZ) / FROM_HZ
    high = (0.5 * np.sin(2 * np.pi * 11000.0 * t)).astype(np.float32)
    for res_type in ["soxr_hq", "soxr_vhq", "polyphase"]:
        out = librosa.resample(high, orig_sr=FROM_HZ, target_sr=TO_HZ, res_type=res_type).astype(np.float64)
        edge = int(EDGE_S * TO_HZ)
        rms = np.sqrt(np.mean(out[edge:-edge] ** 2))
        print(f"{res_type}: 11 kHz tone residual {20 * np.log10(rms / (0.5 / np.sqrt(2))):.1f} dB")


if __name__ == "__main__":
    main()
