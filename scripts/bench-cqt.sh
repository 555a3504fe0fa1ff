#!/usr/bin/env bash
# The CQT benchmark beside its peer, on this machine, in one run: mtosi's criterion bench
# (benches/cqt.rs) and nnAudio's CQT1992v2 with 2 torch threads (tools/bench/nnaudio_cqt.py),
# then the ratios. Run it on a quiet machine; it prints the load before and after.
#
#   bash scripts/bench-cqt.sh            # PYTHON=/path/to/python with torch + nnAudio
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
THREADS=${THREADS:-2}

echo "load before: $(uptime)"
RAYON_NUM_THREADS=$THREADS cargo bench --bench cqt -- --warm-up-time 2 --measurement-time 5 'cqt/cpu'
"$PYTHON" tools/bench/nnaudio_cqt.py --threads "$THREADS" | tee target/nnaudio_cqt.txt
echo "load after: $(uptime)"

"$PYTHON" - <<'PY'
import json
peer = {}
for line in open("target/nnaudio_cqt.txt"):
    f = line.split()
    peer[f[2]] = float(f[4])
print(f"\n{'case':<28}{'mtosi ms':>10}{'nnAudio ms':>12}{'ratio':>8}")
for variant in ("cpu", "cpu_direct", "cpu_portable"):
    for case in ("1x327680", "32x327680"):
        try:
            est = json.load(open(f"target/criterion/cqt/{variant}/{case}/new/estimates.json"))
        except FileNotFoundError:
            continue
        ms = est["median"]["point_estimate"] / 1e6
        print(f"{variant + ' ' + case:<28}{ms:>10.2f}{peer[case]:>12.2f}{peer[case] / ms:>7.1f}x")
PY
