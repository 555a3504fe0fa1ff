"""Per-op CPU times of mtosi (criterion benches) and PyTorch (tools/bench/torch_ops.py, 2
threads) in one run on one machine, as a markdown table with the ratio mtosi / PyTorch.
Run from the repository root:

    python tools/bench/ops_compare.py > /tmp/ops.md

Two alternating rounds (mtosi, PyTorch, mtosi, PyTorch); each op keeps each side's faster
time. Both sides use 2 threads (RAYON_NUM_THREADS=2, torch.set_num_threads(2)); the load average
before and after is printed, since other processes share the machine. PyTorch runs as its CPU
tuning guide advises (jemalloc preloaded when installed, with the guide's MALLOC_CONF), once
with default OpenMP waiting and once with OMP_WAIT_POLICY=PASSIVE (spinning workers lose on a
shared machine); each op counts its faster time.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

BENCHES = ["conv2d", "conv_transpose2d", "batchnorm", "activation", "lstm"]
UNITS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}
RESULT = re.compile(r"^(\S[^\n]*?)\s*\n?\s+time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", re.M)


def load() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0]


def rust_times() -> dict:
    times = {}
    env = dict(os.environ, RAYON_NUM_THREADS="2")
    for bench in BENCHES:
        out = subprocess.run(
            ["cargo", "bench", "--bench", bench],
            env=env, capture_output=True, text=True, check=True,
        ).stdout
        for name, value, unit in RESULT.findall(out):
            op, phase, layer = name.strip().split("/", 2)
            times[(op, layer, phase)] = float(value) * UNITS[unit]
    return times


JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
MALLOC_CONF = ("oversize_threshold:1,background_thread:true,metadata_thp:auto,"
               "dirty_decay_ms:9000000000,muzzy_decay_ms:9000000000")


def torch_times() -> dict:
    best = {}
    for extra in ({}, {"OMP_WAIT_POLICY": "PASSIVE"}):
        env = dict(os.environ, **extra)
        if os.path.exists(JEMALLOC):
            env.update(LD_PRELOAD=JEMALLOC, MALLOC_CONF=MALLOC_CONF)
        for key, ms in torch_run(env).items():
            best[key] = min(ms, best.get(key, ms))
    return best


def torch_run(env: dict) -> dict:
    times = {}
    out = subprocess.run(
        [sys.executable, "tools/bench/torch_ops.py"], env=env, capture_output=True, text=True,
        check=True,
    ).stdout
    line = re.compile(r"^(\S+)\s+(.*?)\s+forward\s+(\S+) ms\s+backward\s+(\S+) ms$")
    for row in out.splitlines():
        match = line.match(row)
        if match:
            op, layer, forward, backward = match.groups()
            times[(op, layer, "forward")] = float(forward)
            times[(op, layer, "backward")] = float(backward)
    return times


def best(runs: list) -> dict:
    return {key: min(run[key] for run in runs if key in run) for key in runs[0]}


def main() -> None:
    # Two alternating rounds, each side's faster time per op: the machine's load drifts, and
    # this keeps either side from being measured only in a busy minute.
    loads = [load()]
    ours, theirs = [], []
    for _ in range(2):
        ours.append(rust_times())
        loads.append(load())
        theirs.append(torch_times())
        loads.append(load())
    ours, theirs = best(ours), best(theirs)
    print(f"load average (1 min) at the start and after each half-round: {', '.join(loads)}\n")
    print("| op | layer (batch 4) | pass | mtosi ms | PyTorch ms | mtosi / PyTorch |")
    print("|---|---|---|---:|---:|---:|")
    for key in sorted(ours, key=lambda k: (BENCHES.index(k[0]) if k[0] in BENCHES else 9, k[1], k[2] != "forward")):
        op, layer, phase = key
        mine = ours[key]
        peer = theirs.get(key)
        ratio = f"{mine / peer:.2f}" if peer else "n/a"
        peer_text = f"{peer:.2f}" if peer else "n/a"
        print(f"| {op} | {layer} | {phase} | {mine:.2f} | {peer_text} | {ratio} |")


if __name__ == "__main__":
    main()
