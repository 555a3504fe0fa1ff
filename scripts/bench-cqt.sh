#!/usr/bin/env bash
# The CQT benchmark beside its peer, on this machine, in one run: mtosi's criterion bench
# (benches/cqt.rs) and nnAudio's CQT1992v2 with 2 torch threads (tools/bench/nnaudio_cqt.py),
# then the ratios. Run it on a quiet machine; it prints the load before and after.
#
#   bash scripts/bench-cqt.sh           # CPU; PYTHON=/path/to/python with torch + nnAudio
#   CUDA=1 bash scripts/bench-cqt.sh    # also kernels/cqt.cu vs nnAudio on the same GPU
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
THREADS=${THREADS:-2}
mkdir -p target

echo "load before: $(uptime)"
RAYON_NUM_THREADS=$THREADS cargo bench --bench cqt -- --warm-up-time 2 --measurement-time 5 'cqt/cpu'
"$PYTHON" tools/bench/nnaudio_cqt.py --threads "$THREADS" | tee target/nnaudio_cqt.txt
if [ "${CUDA:-0}" = 1 ]; then
    cargo bench --bench cqt -- --warm-up-time 2 --measurement-time 5 'cqt/cuda'
    "$PYTHON" tools/bench/nnaudio_cqt.py --device cuda --reps 20 --batch-reps 10 | tee -a target/nnaudio_cqt.txt
fi
echo "load after: $(uptime)"

"$PYTHON" - <<'PY'
import json
peer = {}
for line in open("target/nnaudio_cqt.txt"):
    f = line.split()
    peer[(f[1], f[2])] = float(f[4])
print(f"\n{'case':<28}{'mtosi ms':>10}{'nnAudio ms':>12}{'ratio':>8}")
for variant, peer_device in [("cpu", "cpu"), ("cpu_avx2", "cpu"), ("cpu_direct", "cpu"), ("cpu_portable", "cpu"), ("cuda", "cuda"), ("cuda_direct", "cuda")]:
    for case in ("1x327680", "32x327680"):
        try:
            est = json.load(open(f"target/criterion/cqt/{variant}/{case}/new/estimates.json"))
        except FileNotFoundError:
            continue
        if (peer_device, case) not in peer:
            continue
        ms = est["median"]["point_estimate"] / 1e6
        theirs = peer[(peer_device, case)]
        print(f"{variant + ' ' + case:<28}{ms:>10.3f}{theirs:>12.3f}{theirs / ms:>7.1f}x")
PY
