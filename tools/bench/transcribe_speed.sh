#!/usr/bin/env bash
# `mtosi transcribe` end to end (decode, resample, CQT, network, decoding, MIDI) on a 10-minute
# recording, pinned to 2 CPU cores with 2 rayon threads: wall time, real-time factor, CPU time
# (user + system; on a shared machine the wall time is inflated by the load, and CPU time / 2 is
# the wall time two idle cores would give if both were busy throughout: an upper bound), peak RSS.
# The recording: two MAPS pieces from ../shared/data joined and cut to 600 s, as the 16 kHz mono
# FLAC MAPS ships and as a 44.1 kHz stereo MP3 (what users have; adds decoding and resampling).
# Needs ffmpeg (Debian: apt-get install ffmpeg) and a release build. Usage:
#   tools/bench/transcribe_speed.sh [CHECKPOINT]   (default: a random-weights `mtosi init` one;
#                                                   the network's cost does not depend on weights)
# Extra `mtosi transcribe` options in TRANSCRIBE_ARGS, e.g. TRANSCRIBE_ARGS="--precision bf16"
# or "--networks 1".
set -euo pipefail
cd "$(dirname "$0")/../.."
MTOSI=${MTOSI:-target/release/mtosi}
MAPS=${MAPS:-../shared/data/maps/flac}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
checkpoint=${1:-$work/init.safetensors}
[ -f "$checkpoint" ] || "$MTOSI" init --seed 1 -o "$checkpoint"
ffmpeg -loglevel error -y -i "$MAPS/MAPS_MUS-bk_xmas5_StbgTGd2.flac" -i "$MAPS/MAPS_MUS-bk_xmas1_AkPnStgb.flac" \
    -filter_complex "[0:a][1:a]concat=n=2:v=0:a=1" -t 600 -ar 16000 -ac 1 "$work/ten_minutes.flac"
ffmpeg -loglevel error -y -i "$work/ten_minutes.flac" -ar 44100 -ac 2 -b:a 192k "$work/ten_minutes.mp3"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores online, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "transcribe options: ${TRANSCRIBE_ARGS:-(defaults)}"
echo "SIMD: $(grep -o -w -E 'avx512f|avx512_bf16|avx2|fma' /proc/cpuinfo | sort -u | tr '\n' ' ')"
for input in "$work/ten_minutes.flac" "$work/ten_minutes.mp3"; do
    for run in 1 2; do
        rm -rf "$work/out"
        log=$(RAYON_NUM_THREADS=2 taskset -c 0,1 /usr/bin/time -v "$MTOSI" transcribe "$input" \
            --checkpoint "$checkpoint" -o "$work/out" ${TRANSCRIBE_ARGS:-} 2>&1)
        wall=$(echo "$log" | sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' | awk -F: '{ if (NF == 3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
        rss=$(echo "$log" | sed -n 's/.*Maximum resident set size (kbytes): //p')
        cpu=$(echo "$log" | sed -n 's/.*Percent of CPU this job got: //p')
        user=$(echo "$log" | sed -n 's/.*User time (seconds): //p')
        sys=$(echo "$log" | sed -n 's/.*System time (seconds): //p')
        cpu_s=$(awk "BEGIN { printf \"%.2f\", $user + $sys }")
        stages=$(echo "$log" | grep -o 'read + CQT.*decoding [0-9.]* s')
        echo "$(basename "$input") run $run: ${wall} s wall, $(awk "BEGIN { printf \"%.0f\", 600 / $wall }")x real time; CPU $cpu = ${cpu_s} CPU-s, i.e. $(awk "BEGIN { printf \"%.0f\", 600 / ($cpu_s / 2) }")x on 2 cores that were fully ours; peak RSS $((rss / 1024)) MiB; $stages; load $(cut -d' ' -f1 /proc/loadavg)"
    done
done
