#!/usr/bin/env python3
"""Writes the CQT fixtures that tests/cqt.rs compares the Rust CQT with.

Each case is a short clip (odd lengths; a chirp, a chord of sines, noise, a real-world-like
mix, one clip shorter than the reflect padding, one with non-default parameters) and
nnAudio's CQT1992v2 magnitudes of it (the paper's front end). Also the complex kernels of a
small parameter set, to check kernel construction tap by tap (phases included, which
magnitudes cannot show).

    python tools/reference/cqt_fixture.py [--out tests/fixtures/cqt]

Output: <case>.audio.npy (float32 samples), <case>.cqt.npy (float32, bins x frames),
cases.txt (one line per case: name sr hop fmin n_bins bins_per_octave filter_scale padding),
kernels.re.npy / kernels.im.npy (float32, n_bins x kernel_width) with kernels.txt (params),
mix.input.npy (the network's input for the mix clip: frames x bins, log, normalised).
"""

import argparse
import os

import numpy as np
import torch
from nnAudio.features.cqt import CQT1992v2
from nnAudio.utils import create_cqt_kernels

PAPER = dict(sr=16000, hop_length=512, fmin=27.5, n_bins=176, bins_per_octave=24, filter_scale=1)


def chirp(n, sr, rng):
    t = np.arange(n) / sr
    f0, f1 = 30.0, 4000.0
    k = np.log(f1 / f0) / t[-1]
    return 0.5 * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)


def chord(n, sr, rng):
    t = np.arange(n) / sr
    out = np.zeros(n)
    for midi in (45, 57, 61, 64, 69):  # A2 and an A major chord above it
        f = 440.0 * 2 ** ((midi - 69) / 12)
        for h in range(1, 5):
            if f * h < sr / 2:
                out += 0.15 / h * np.sin(2 * np.pi * f * h * t + rng.uniform(0, 2 * np.pi))
    return out


def noise(n, sr, rng):
    return rng.normal(0, 0.3, n)


def mix(n, sr, rng):
    """Decaying harmonic notes at random onsets, a soft noise floor and a few clicks."""
    t = np.arange(n) / sr
    out = rng.normal(0, 0.01, n)
    for _ in range(12):
        onset = rng.uniform(0, t[-1] * 0.9)
        f = 440.0 * 2 ** ((rng.integers(28, 96) - 69) / 12)
        env = np.where(t >= onset, np.exp(-(t - onset) * rng.uniform(1.5, 6.0)), 0.0)
        for h in range(1, 7):
            if f * h < sr / 2:
                out += env * 0.2 / h**1.2 * np.sin(2 * np.pi * f * h * (t - onset))
    for _ in range(4):
        at = rng.integers(0, n - 64)
        out[at : at + 64] += rng.normal(0, 0.3, 64) * np.hanning(64)
    return out


def nnaudio_cqt(audio, params, center=True):
    layer = CQT1992v2(**params, center=center, pad_mode="reflect", verbose=False)
    with torch.no_grad():
        return layer(torch.tensor(audio, dtype=torch.float32)[None])[0].numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/cqt")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(20240601)
    small = dict(sr=8000, hop_length=160, fmin=55.0, n_bins=60, bins_per_octave=12, filter_scale=1)

    cases = [
        ("chirp", chirp, 40001, PAPER),  # 2.5 s
        ("chord", chord, 20801, PAPER),
        ("noise", noise, 17603, PAPER),
        ("mix", mix, 48003, PAPER),  # 3 s
        ("short_mix", mix, 5001, PAPER),  # shorter than the 16 384-sample padding
        ("small_params_chord", chord, 12345, small),
    ]
    lines = []
    for name, make, n, params in cases:
        audio = make(n, params["sr"], rng).astype(np.float32)
        width = create_cqt_kernels(
            params["filter_scale"] / (2 ** (1 / params["bins_per_octave"]) - 1),
            params["sr"], params["fmin"], params["n_bins"], params["bins_per_octave"],
        )[1]
        pad = width // 2
        if pad < n:
            spec = nnaudio_cqt(audio, params)
            padding = "torch_reflect"
        else:
            # nnAudio (torch.nn.ReflectionPad1d) rejects this; the Rust CQT pads like
            # numpy.pad(mode="reflect"), so the reference pads that way and runs uncentred.
            padded = np.pad(audio, pad, mode="reflect")
            spec = nnaudio_cqt(padded, params, center=False)
            padding = "numpy_reflect"
        np.save(os.path.join(args.out, f"{name}.audio.npy"), audio)
        np.save(os.path.join(args.out, f"{name}.cqt.npy"), spec.astype(np.float32))
        lines.append(
            f"{name} {params['sr']} {params['hop_length']} {params['fmin']} {params['n_bins']} "
            f"{params['bins_per_octave']} {params['filter_scale']} {padding}"
        )
        print(name, audio.shape, spec.shape, f"max {spec.max():.4f}")
    with open(os.path.join(args.out, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")

    # The network's input for the "mix" clip as the paper's code builds it: CQT of the clip
    # without its last sample, log(x + 1e-5), min-max over the whole image, NaN -> 0, laid out
    # frames x bins.
    audio = np.load(os.path.join(args.out, "mix.audio.npy"))
    x = torch.tensor(nnaudio_cqt(audio[:-1], PAPER))
    x = torch.log(x + 1e-5)
    x = (x - x.min()) / (x.max() - x.min())
    x[torch.isnan(x)] = 0
    np.save(os.path.join(args.out, "mix.input.npy"), x.T.contiguous().numpy().astype(np.float32))
    print("mix.input", tuple(x.T.shape))

    # Kernels of a small set (odd and even lengths), complex64 as nnAudio stores them.
    k = dict(sr=8000, fmin=500.0, n_bins=14, bins_per_octave=12, filter_scale=1)
    q = k["filter_scale"] / (2 ** (1 / k["bins_per_octave"]) - 1)
    kernels, width, lengths, _ = create_cqt_kernels(q, k["sr"], k["fmin"], k["n_bins"], k["bins_per_octave"])
    np.save(os.path.join(args.out, "kernels.re.npy"), kernels.real.astype(np.float32))
    np.save(os.path.join(args.out, "kernels.im.npy"), kernels.imag.astype(np.float32))
    with open(os.path.join(args.out, "kernels.txt"), "w") as f:
        f.write(f"{k['sr']} 512 {k['fmin']} {k['n_bins']} {k['bins_per_octave']} {k['filter_scale']}\n")
    print("kernels", kernels.shape, "lengths", lengths.numpy().astype(int).tolist())


if __name__ == "__main__":
    main()
