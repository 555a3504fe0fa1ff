"""Times mir_eval 0.8 on the 10-minute piece of benches/metrics.rs, and checks that
`mtosi score` gives the same dictionaries on it.

    MTOSI_METRICS_BENCH_WRITE=/tmp/piece cargo bench --bench metrics   # writes the piece
    .venv/bin/python tools/bench/metrics_mir_eval.py /tmp/piece [--mtosi target/release/mtosi]
"""

import argparse
import json
import statistics
import subprocess
import time
import warnings
from pathlib import Path

import mir_eval


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("piece", type=Path)
    parser.add_argument("--mtosi", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    ri, rp = mir_eval.io.load_valued_intervals(str(args.piece / "ref_notes.txt"))
    ei, ep = mir_eval.io.load_valued_intervals(str(args.piece / "est_notes.txt"))
    rt, rf = mir_eval.io.load_ragged_time_series(str(args.piece / "ref_frames.txt"))
    et, ef = mir_eval.io.load_ragged_time_series(str(args.piece / "est_frames.txt"))
    print(f"{len(ri)} reference notes, {len(ei)} estimated notes, {len(rt)} frames")

    jobs = [
        ("transcription.evaluate", lambda: mir_eval.transcription.evaluate(ri, rp, ei, ep), []),
        ("multipitch.evaluate", lambda: mir_eval.multipitch.evaluate(rt, rf, et, ef), ["--frames"]),
    ]
    for name, fn, flags in jobs:
        scores, times = timed(fn, args.repeats)
        print(f"mir_eval {name}: median {statistics.median(times) * 1e3:.0f} ms, "
              f"min {min(times) * 1e3:.0f} ms over {len(times)} runs")
        if args.mtosi:
            stem = "frames" if flags else "notes"
            out = subprocess.run(
                [str(args.mtosi), "score", *flags, "--json",
                 "--ref", str(args.piece / f"ref_{stem}.txt"), "--est", str(args.piece / f"est_{stem}.txt")],
                check=True, capture_output=True, text=True,
            ).stdout
            ours = json.loads(out)
            differences = [abs(ours[k] - v) for k, v in scores.items()]
            # `<=` is False for NaN, so a NaN anywhere fails (a max() fold could skip it).
            assert set(ours) == set(scores) and all(d <= 1e-9 for d in differences), (ours, dict(scores))
            print(f"  mtosi score agrees on all {len(differences)} values: largest difference {max(differences):.1e}")


if __name__ == "__main__":
    main()
