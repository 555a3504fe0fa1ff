#!/usr/bin/env bash
# Speed of `mtosi synth` against the `fluidsynth` program on MAPS label files, programs 0 and 25.
#
# usage: tools/bench/synth_speed.sh [STRIDE] [JOBS]
#   STRIDE: take every STRIDE-th file of ../shared/data/maps/tsv (sorted); 1 = all 270.
#   JOBS:   parallel processes for the parallel runs (default: nproc).
# Needs: target/release/mtosi (cargo build --release), fluidsynth, FluidR3_GM, python3.
#
# fluidsynth renders each MIDI file in its own process (`fluidsynth -ni -F out.wav -r 44100
# FluidR3_GM.sf2 file.mid`), writing 44.1 kHz stereo WAV; mtosi renders at 44.1 kHz too, then
# resamples to 16 kHz and writes 16 kHz mono WAV + TSV labels (more work than fluidsynth's
# part: the paper resampled fluidsynth's output afterwards, which is not timed here).
# MIDI writing is not timed. Reported: wall seconds and CPU seconds (user+sys) of each run.
set -euo pipefail
STRIDE=${1:-1}
JOBS=${2:-$(nproc)}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MAPS_TSV=${MAPS_TSV:-$ROOT/../shared/data/maps/tsv}
SF2=${SF2:-/usr/share/sounds/sf2/FluidR3_GM.sf2}
MTOSI=${MTOSI:-$ROOT/target/release/mtosi}
WORK=$(mktemp -d /tmp/mtosi-synth-speed.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

mkdir -p "$WORK/labels"
ls "$MAPS_TSV"/*.tsv | sort | awk -v s="$STRIDE" '(NR - 1) % s == 0' | xargs -I{} cp {} "$WORK/labels/"
N=$(ls "$WORK/labels" | wc -l)
for program in 0 25; do
    python3 "$ROOT/tools/bench/tsv_to_midi.py" "$program" "$WORK/midi" "$WORK"/labels/*.tsv
done
echo "files: $N label files x programs 0,25 = $((2 * N)) renders; jobs $JOBS; load: $(cut -d' ' -f1-3 /proc/loadavg)"

timed() {  # label, command...: prints wall and CPU seconds of the command and its children
    local label=$1; shift
    local start end
    start=$(date +%s.%N)
    /usr/bin/time -o "$WORK/time" -f "%U %S" "$@" >/dev/null 2>&1
    end=$(date +%s.%N)
    local cpu
    cpu=$(tail -1 "$WORK/time")
    python3 -c "import sys; w=float(sys.argv[2])-float(sys.argv[1]); u,s=map(float,sys.argv[3:5]); print(f'{sys.argv[5]:<34} wall {w:8.1f} s   cpu {u+s:8.1f} s')" "$start" "$end" $cpu "$label"
}

fluid_one() { fluidsynth -ni -F "$WORK/fs_out/$(basename "$1" .mid).wav" -r 44100 "$SF2" "$1"; }
export -f fluid_one; export WORK SF2
mkdir -p "$WORK/fs_out"
timed "fluidsynth, 1 process at a time" bash -c 'for m in "$WORK"/midi/*.mid; do fluid_one "$m"; done'
rm -rf "$WORK/fs_out"; mkdir -p "$WORK/fs_out"
timed "fluidsynth, $JOBS processes" bash -c "ls \"\$WORK\"/midi/*.mid | xargs -P $JOBS -I{} bash -c 'fluid_one {}'"
timed "mtosi synth --jobs 1" "$MTOSI" synth --labels "$WORK/labels" --out "$WORK/m1" --programs 0,25 --soundfont "$SF2" --jobs 1 --quiet
timed "mtosi synth --jobs $JOBS" "$MTOSI" synth --labels "$WORK/labels" --out "$WORK/m2" --programs 0,25 --soundfont "$SF2" --jobs "$JOBS" --quiet
python3 -c "
import sys, wave, glob
total = sum(w.getnframes() / w.getframerate() for w in map(wave.open, glob.glob(sys.argv[1] + '/*/*.wav')))
print(f'audio rendered by mtosi: {total:.0f} s')" "$WORK/m2"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
