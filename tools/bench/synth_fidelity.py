"""How close mtosi's rendering is to the `fluidsynth` program's, on one label file.

usage: synth_fidelity.py LABELS.tsv [--program P] [--mtosi target/release/mtosi]
                         [--soundfont /usr/share/sounds/sf2/FluidR3_GM.sf2] [--work DIR]

Renders the notes (a) with `fluidsynth -ni -F out.wav -r 44100 SF2 file.mid` (default
settings: reverb and chorus on, as the paper did) and (b) with `mtosi synth` at synth rates
16 kHz and 44.1 kHz, effects on and off. Every render is loaded at 16 kHz mono with librosa
(its default resampler, as the paper's code loaded FluidSynth's output), the lag between the
two is removed (best cross-correlation of onset envelopes within +-50 ms), and the figure is
the Pearson correlation of the log-magnitude spectrograms (STFT 2048/512, dB, floor -100 dB)
over their common length. Also printed: the RMS level ratio mtosi / fluidsynth.
"""
import argparse
import os
import shutil
import subprocess
import sys

import librosa
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import tsv_to_midi  # noqa: E402

RATE = 16_000


def log_spectrogram(y):
    magnitude = np.abs(librosa.stft(y, n_fft=2048, hop_length=512))
    return librosa.amplitude_to_db(magnitude, ref=1.0, amin=1e-5, top_db=None)


def best_lag(a, b, max_lag):
    """Lag (in samples, b relative to a) maximising the correlation of onset envelopes."""
    hop = 64
    ea = librosa.onset.onset_strength(y=a, sr=RATE, hop_length=hop)
    eb = librosa.onset.onset_strength(y=b, sr=RATE, hop_length=hop)
    n = min(len(ea), len(eb))
    ea, eb = ea[:n] - ea[:n].mean(), eb[:n] - eb[:n].mean()
    lags = range(-max_lag // hop, max_lag // hop + 1)
    scores = [np.dot(ea[max(0, -k):n - max(0, k)], eb[max(0, k):n - max(0, -k)]) for k in lags]
    return list(lags)[int(np.argmax(scores))] * hop


def compare(reference, candidate):
    lag = best_lag(reference, candidate, max_lag=800)
    if lag > 0:
        candidate = candidate[lag:]
    elif lag < 0:
        reference = reference[-lag:]
    n = min(len(reference), len(candidate))
    sa, sb = log_spectrogram(reference[:n]), log_spectrogram(candidate[:n])
    r = np.corrcoef(sa.ravel(), sb.ravel())[0, 1]
    # Per band: aliasing of a synthesizer run at 16 kHz would show in the top band.
    freqs = librosa.fft_frequencies(sr=RATE, n_fft=2048)
    bands = {}
    for low, high in ((0, 2000), (2000, 4000), (4000, 8001)):
        rows = (freqs >= low) & (freqs < high)
        bands[f"{low // 1000}-{high // 1000} kHz"] = np.corrcoef(sa[rows].ravel(), sb[rows].ravel())[0, 1]
    rms = np.sqrt(np.mean(candidate[:n] ** 2)) / np.sqrt(np.mean(reference[:n] ** 2))
    return r, lag, rms, bands


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("labels")
    parser.add_argument("--program", type=int, default=0)
    parser.add_argument("--mtosi", default="target/release/mtosi")
    parser.add_argument("--soundfont", default="/usr/share/sounds/sf2/FluidR3_GM.sf2")
    parser.add_argument("--work", default="/tmp/mtosi-synth-fidelity")
    args = parser.parse_args()

    name = os.path.splitext(os.path.basename(args.labels))[0]
    labels_dir = os.path.join(args.work, "labels")
    os.makedirs(labels_dir, exist_ok=True)
    with open(args.labels) as src, open(os.path.join(labels_dir, name + ".tsv"), "w") as dst:
        dst.write(src.read())
    midi = os.path.join(args.work, f"{name}_prog{args.program}.mid")
    with open(midi, "wb") as f:
        f.write(tsv_to_midi.midi_bytes(tsv_to_midi.read_tsv(args.labels), args.program))
    fs_wav = os.path.join(args.work, "fluidsynth.wav")
    subprocess.run(["fluidsynth", "-ni", "-F", fs_wav, "-r", "44100", args.soundfont, midi],
                   check=True, capture_output=True)
    reference, _ = librosa.load(fs_wav, sr=RATE, mono=True)
    print(f"{name}, program {args.program}: fluidsynth {len(reference) / RATE:.2f} s")

    for synth_rate in (16_000, 44_100):
        for dry in (False, True):
            out = os.path.join(args.work, f"mtosi_{synth_rate}_{'dry' if dry else 'fx'}")
            shutil.rmtree(out, ignore_errors=True)  # mtosi synth would resume, not re-render
            command = [args.mtosi, "synth", "--labels", labels_dir, "--out", out, "--quiet",
                       "--soundfont", args.soundfont, "--programs", str(args.program),
                       "--synth-rate", str(synth_rate)] + (["--dry"] if dry else [])
            subprocess.run(command, check=True, capture_output=True)
            wav = os.path.join(out, "train", f"{name}_prog{args.program}.wav")
            candidate, _ = librosa.load(wav, sr=RATE, mono=True)
            r, lag, rms, bands = compare(reference, candidate)
            per_band = ", ".join(f"{band} {value:.4f}" for band, value in bands.items())
            print(f"mtosi synth rate {synth_rate} Hz, effects {'off' if dry else 'on '}: "
                  f"log-spectrogram correlation {r:.4f} ({per_band}; lag {lag} samples, "
                  f"RMS ratio {rms:.2f}, {len(candidate) / RATE:.2f} s)")


if __name__ == "__main__":
    main()
