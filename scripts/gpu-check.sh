#!/usr/bin/env bash
# The GPU check: every kernel test on a real GPU (and under compute-sanitizer), the whole
# training step against the CPU (tests/device_training.rs), the benchmarks, and mtosi's training
# step beside PyTorch's of the same network on the same GPU (tools/bench/torch_step_gpu.py).
#
#   bash scripts/gpu-check.sh build   # here (needs cargo + NVRTC, see README): release test and
#                                     # bench binaries, stripped, into target/gpu-bundle, packed as
#                                     # target/gpu-bundle.tar.xz (< 64 MiB: the device tool's carry
#                                     # limit; unpacked, ~50 binaries of 2-6 MB are over 200 MB)
#   bash scripts/gpu-check.sh run     # on the GPU machine, from the repository root with
#                                     # target/gpu-bundle.tar.xz carried there (it is unpacked
#                                     # first; no cargo needed there): writes gpu-report.md and
#                                     # gpu-check-logs.tar.gz into $OUT (else docs/ and target/)
#
# `run` sets MTOSI_REQUIRE_CUDA so that an equivalence test without a usable GPU fails instead of
# skipping. GPU_CHECK_ALLOW_NO_GPU=1 lifts that, to try the script on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

BUNDLE=target/gpu-bundle
PACKED=target/gpu-bundle.tar.xz
LIMIT_BYTES=$((64 * 1024 * 1024))

build() {
    if [ -z "${MTOSI_NVRTC:-}" ]; then
        MTOSI_NVRTC=$(ls "$PWD"/.venv/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.12 2>/dev/null | head -n 1 || true)
        if [ -z "$MTOSI_NVRTC" ]; then
            echo "error: no NVRTC: run .ci/run once (it installs one into .venv) or set MTOSI_NVRTC" >&2
            exit 1
        fi
        export MTOSI_NVRTC
    fi
    export MTOSI_REQUIRE_NVRTC=1
    rm -rf "$BUNDLE"
    mkdir -p "$BUNDLE/tests" "$BUNDLE/benches"
    # Executables from cargo's JSON messages: the lib's unit tests and each integration test
    # from `cargo test`, each criterion bench from `cargo bench`.
    list_executables() {
        python3 -c '
import json, sys
wanted = sys.argv[1].split(",")
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    kind = m["target"]["kind"][0]
    if kind in wanted:
        print(m["target"]["name"] + ("-lib" if kind == "lib" else "") + "\t" + m["executable"])
' "$1"
    }
    cargo test --release --no-run --message-format=json | list_executables lib,test >"$BUNDLE/tests.list"
    cargo bench --no-run --message-format=json | list_executables bench >"$BUNDLE/benches.list"
    while IFS=$'\t' read -r name path; do cp "$path" "$BUNDLE/tests/$name"; done <"$BUNDLE/tests.list"
    while IFS=$'\t' read -r name path; do cp "$path" "$BUNDLE/benches/$name"; done <"$BUNDLE/benches.list"
    rm "$BUNDLE/tests.list" "$BUNDLE/benches.list"
    # The CLI, for mtosi's own training step on cuda (bench-step) beside PyTorch's.
    cargo build --release --bin mtosi
    cp target/release/mtosi "$BUNDLE/mtosi"
    strip --strip-debug "$BUNDLE"/tests/* "$BUNDLE"/benches/* "$BUNDLE/mtosi" 2>/dev/null || true
    git rev-parse --short HEAD >"$BUNDLE/commit" 2>/dev/null || echo unknown >"$BUNDLE/commit"
    rm -f "$PACKED"
    tar -C target -cf - gpu-bundle | xz -6 -T0 >"$PACKED"
    size=$(stat -c %s "$PACKED")
    echo "bundle: $PACKED, $(ls "$BUNDLE/tests" | wc -l) test and $(ls "$BUNDLE/benches" | wc -l) bench binaries, $(( $(du -sb "$BUNDLE" | cut -f1) / 1024 / 1024 )) MiB unpacked, $((size / 1024 / 1024)) MiB packed"
    if [ "$size" -ge "$LIMIT_BYTES" ]; then
        echo "error: $PACKED is over 64 MiB, more than the device tool carries" >&2
        exit 1
    fi
}

run() {
    if [ ! -d "$BUNDLE/tests" ] && [ -f "$PACKED" ]; then
        # xz where present, else Python's lzma (the GPU machine has Python for the peer).
        xz -dc "$PACKED" 2>/dev/null | tar -C target -xf - ||
            python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall("target")' "$PACKED"
    fi
    if [ ! -d "$BUNDLE/tests" ]; then
        echo "error: no $BUNDLE or $PACKED here: run 'bash scripts/gpu-check.sh build' first and carry $PACKED" >&2
        exit 1
    fi
    if [ "${GPU_CHECK_ALLOW_NO_GPU:-0}" != 1 ]; then
        export MTOSI_REQUIRE_CUDA=1
    fi
    out_dir=${OUT:-docs}
    mkdir -p "$out_dir"
    work=$(mktemp -d)
    report="$out_dir/gpu-report.md"
    failures=0
    export MTOSI_EQUIVALENCE_REPORT="$work/equivalence.txt"
    {
        echo "# GPU check report"
        echo
        echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
        echo "- commit: $(cat "$BUNDLE/commit")"
        if command -v nvidia-smi >/dev/null; then
            echo "- device: $(nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv,noheader | head -n 1)"
            echo "- driver: $(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1)"
        else
            echo "- device: none (nvidia-smi not found)"
        fi
        echo "- host: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
        sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
        echo "- compute-sanitizer: ${sanitizer:-not found}"
        echo
        echo "## Tests on cuda"
        echo
        echo "| test binary | result | passed | failed |"
        echo "| --- | --- | --- | --- |"
    } >"$report"
    for test in "$BUNDLE"/tests/*; do
        name=$(basename "$test")
        if "$test" --test-threads=1 >"$work/$name.log" 2>&1; then result=ok; else result=FAILED; failures=$((failures + 1)); fi
        passed=$(grep -c '^test .* ok$' "$work/$name.log" || true)
        failed=$(grep -c '^test .* FAILED$' "$work/$name.log" || true)
        echo "| $name | $result | $passed | $failed |" >>"$report"
    done
    {
        echo
        echo "## Equivalence (worst relative error against the CPU reference)"
        echo
        echo '```'
        cat "$MTOSI_EQUIVALENCE_REPORT" 2>/dev/null || echo "(no equivalence test ran)"
        echo '```'
    } >>"$report"
    # The whole training step (tests/device_training.rs) must have run on cuda.
    if ! grep -q '^training step: .*cuda worst relative error' "$MTOSI_EQUIVALENCE_REPORT" 2>/dev/null; then
        echo "- the whole training step did not pass on cuda (no \"training step\" line with cuda above)" >>"$report"
        failures=$((failures + 1))
    fi
    if [ -n "${sanitizer:-}" ]; then
        {
            echo
            echo "## compute-sanitizer"
            echo
            echo "| test binary | tool | result |"
            echo "| --- | --- | --- |"
        } >>"$report"
        for test in "$BUNDLE"/tests/*; do
            name=$(basename "$test")
            for tool in memcheck racecheck; do
                if "$sanitizer" --tool "$tool" --error-exitcode 9 "$test" --test-threads=1 >"$work/$name.$tool.log" 2>&1; then
                    result="$(grep -o 'ERROR SUMMARY: .*' "$work/$name.$tool.log" | tail -n 1 || echo ok)"
                else
                    result="FAILED: $(grep -o 'ERROR SUMMARY: .*' "$work/$name.$tool.log" | tail -n 1 || echo "exit status $?")"
                    failures=$((failures + 1))
                fi
                echo "| $name | $tool | $result |" >>"$report"
            done
        done
    fi
    {
        echo
        echo "## Benchmarks (criterion, cpu vs emu vs cuda in the same run)"
        echo
        echo '```'
    } >>"$report"
    for bench in "$BUNDLE"/benches/*; do
        name=$(basename "$bench")
        if "$bench" --bench >"$work/$name.bench.log" 2>&1; then
            grep -E '^[a-z_0-9]+/|time:|thrpt:|: roofline ' "$work/$name.bench.log" >>"$report" || true
        else
            echo "$name: FAILED" >>"$report"
            failures=$((failures + 1))
        fi
    done
    echo '```' >>"$report"
    # PyTorch's training step of the same network on the same GPU (eager with cuDNN, and
    # torch.compile), the peer of mtosi's step on cuda.
    {
        echo
        echo "## Training step on this GPU: mtosi (model::device_training), PyTorch (eager + cuDNN, torch.compile)"
        echo
        echo "mtosi: \`mtosi bench-step --device cuda\` (the batch copied in, forward, loss, backward, clip and"
        echo "Adam on the device, the loss read back); its analytic counts are in BENCHMARKS.md."
        echo
        echo '```'
    } >>"$report"
    for batch in 4 32; do
        if ! "$BUNDLE/mtosi" bench-step --device cuda --batch "$batch" --frames 640 --repeats 5 >>"$report" 2>"$work/mtosi-step-$batch.log"; then
            echo "mtosi bench-step batch $batch: FAILED (see mtosi-step-$batch.log)" >>"$report"
            failures=$((failures + 1))
        fi
    done
    if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        for batch in 4 32; do
            if ! python3 tools/bench/torch_step_gpu.py --batch "$batch" --frames 640 >>"$report" 2>"$work/torch-step-$batch.log"; then
                echo "torch-step batch $batch: FAILED (see torch-step-$batch.log)" >>"$report"
                failures=$((failures + 1))
            fi
        done
    else
        echo "(PyTorch with CUDA not available: skipped)" >>"$report"
    fi
    echo '```' >>"$report"
    if [ "$failures" -gt 0 ]; then
        {
            echo
            echo "## Failure logs"
            for log in "$work"/*.log; do
                if grep -qE 'FAILED|panicked|ERROR SUMMARY: [1-9]' "$log"; then
                    echo
                    echo "### $(basename "$log")"
                    echo '```'
                    tail -n 40 "$log"
                    echo '```'
                fi
            done
        } >>"$report"
    fi
    # One archive: the device tool returns at most 8 files from $OUT.
    logs=${OUT:-target}/gpu-check-logs.tar.gz
    tar -C "$work" -czf "$logs" .
    rm -rf "$work"
    echo "report: $report ($failures failures), logs: $logs"
    cat "$report"
    [ "$failures" -eq 0 ]
}

case "${1:-}" in
    build) build ;;
    run) run ;;
    *)
        echo "usage: $0 build|run" >&2
        exit 2
        ;;
esac
