#!/usr/bin/env python3
"""Times nnAudio's CQT1992v2 (the peer of `benches/cqt.rs`) on the same shapes: one
327 680-sample clip and a batch of 32, with the paper's parameters, on the CPU with 2 torch
threads (or on a GPU with --device cuda).

    python tools/bench/nnaudio_cqt.py [--threads 2] [--device cpu] [--reps 5]

Prints one line per case: `nnaudio_cqt <device> <batch>x327680 median_ms <m> min_ms <m> reps <n>`.
"""

import argparse
import statistics
import time

import torch
from nnAudio.features.cqt import CQT1992v2

CLIP_SAMPLES = 327_680


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=5, help="timed runs for the single clip")
    ap.add_argument("--batch-reps", type=int, default=3, help="timed runs for the batch of 32")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    layer = CQT1992v2(
        sr=16000, hop_length=512, fmin=27.5, n_bins=176, bins_per_octave=24, filter_scale=1, verbose=False
    ).to(args.device)
    gen = torch.Generator().manual_seed(1)
    for batch, reps in ((1, args.reps), (32, args.batch_reps)):
        x = (torch.rand(batch, CLIP_SAMPLES, generator=gen) * 2 - 1).to(args.device)
        times = []
        with torch.no_grad():
            layer(x)  # warm-up
            for _ in range(reps):
                if args.device != "cpu":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                y = layer(x)
                if args.device != "cpu":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
        assert y.shape == (batch, 176, CLIP_SAMPLES // 512 + 1)
        print(
            f"nnaudio_cqt {args.device} {batch}x{CLIP_SAMPLES} median_ms {statistics.median(times) * 1e3:.2f} "
            f"min_ms {min(times) * 1e3:.2f} reps {reps}",
            flush=True,
        )


if __name__ == "__main__":
    main()
