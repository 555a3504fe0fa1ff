"""Runs `mtosi bench-step` and its PyTorch peer (torch_step.py) in the same run on this machine,
each configuration in its own process under `/usr/bin/time -v`, and prints a Markdown table of
median wall times, CPU time per run (user + system, all threads: less disturbed by other
processes on a loaded machine, though spinning OpenMP workers count in it), ratios and peak
memory, with the load average before each run.

PyTorch is measured at its best: every configuration that could be its fastest runs (2 threads
each): glibc malloc; jemalloc without background threads and with decay disabled
(`dirty_decay_ms:-1,muzzy_decay_ms:-1`); jemalloc with the MALLOC_CONF of PyTorch's CPU tuning
guide (background threads; measured almost 2x slower on two cores, kept to show it); tcmalloc
when installed; each with OpenMP's default wait policy and with OMP_WAIT_POLICY=PASSIVE, and on
AVX-512 CPUs each also with PyTorch and oneDNN capped at AVX2 (faster on Zen 4). All are printed; the fastest counts as PyTorch's time. (`apt-get install libjemalloc2
libgoogle-perftools4` for the allocators.) The CPU model and SIMD level are printed first.

  cargo build --release
  python tools/bench/train_step_compare.py [--mtosi target/release/mtosi] [--configs step4,step32,eval]
      [--variant winograd:MTOSI_CONV_WINOGRAD=1 ...]

Each `--variant NAME:VAR=VALUE,...` adds a run of mtosi with those environment variables (its
opt-in paths) beside the default one, each compared with the same PyTorch best. `--peer-env
VAR=VALUE,...` is added to every PyTorch configuration: for an AVX2-only comparison on an AVX-512
machine, `--peer-env ATEN_CPU_CAPABILITY=avx2,ONEDNN_MAX_CPU_ISA=AVX2` beside
`--variant avx2:MTOSI_FORCE_ISA=avx2`. `--peer-flags=--bf16` runs PyTorch under bf16 autocast;
`--peer-flags= --peer-flags=--bf16` runs it both ways and counts its fastest of all.
`--rounds N` repeats every configuration (ours and PyTorch's) in N interleaved rounds and keeps
each one's fastest median, so a noisy host's slow moments do not decide a ratio.
"""

import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4"
GUIDE_MALLOC_CONF = ("oversize_threshold:1,background_thread:true,metadata_thp:auto,"
                     "dirty_decay_ms:9000000000,muzzy_decay_ms:9000000000")


def peer_configurations(bf16=False):
    """(name, environment) of every PyTorch configuration that could be its fastest here. Under
    bf16 autocast the AVX2 cap is left out: it removes the AVX512-BF16 instructions, and the B = 4
    autocast step took 16.6 s capped against 1.19 s uncapped (2026-12-02, Zen 4), so it can
    never be the fastest and would add minutes per configuration at B = 32."""
    allocators = [("glibc", {})]
    if os.path.exists(JEMALLOC):
        allocators.append(("jemalloc no-decay", {"LD_PRELOAD": JEMALLOC,
                                                 "MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1"}))
        allocators.append(("jemalloc guide", {"LD_PRELOAD": JEMALLOC, "MALLOC_CONF": GUIDE_MALLOC_CONF}))
    if os.path.exists(TCMALLOC):
        allocators.append(("tcmalloc", {"LD_PRELOAD": TCMALLOC}))
    # On CPUs that run 512-bit vectors as two 256-bit halves (AMD Zen 4) PyTorch's AVX2 kernels
    # and oneDNN capped at AVX2 can be faster than its AVX-512 ones: measured 0.750 s against
    # 0.811 s for the B = 4 step on such a machine, so both are tried when the CPU has AVX-512.
    isas = [("", {})]
    if "avx512f" in open("/proc/cpuinfo").read() and not bf16:
        isas.append((", avx2 cap", {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}))
    configs = []
    for name, env in allocators:
        for wait, wait_env in (("omp default", {}), ("omp passive", {"OMP_WAIT_POLICY": "PASSIVE"})):
            for isa, isa_env in isas:
                configs.append((f"{name}, {wait}{isa}",
                                {"OMP_NUM_THREADS": "2", **env, **wait_env, **isa_env}))
    return configs


def cpu_description():
    """The CPU model and the widest SIMD level its flags announce."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown CPU":
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    level = ("AVX-512" if "avx512f" in flags else "AVX2+FMA" if {"avx2", "fma"} <= flags
             else "SSE/other")
    return f"{model}, {level}, {os.cpu_count()} logical CPUs"
CONFIGS = {
    "step4": ("train step, batch 4 x 640", ["--batch", "4", "--frames", "640", "--repeats", "3"]),
    "step32": ("train step, batch 32 x 640", ["--batch", "32", "--frames", "640", "--repeats", "2"]),
    "eval": ("eval forward, 1 x 1875 (60 s)", ["--eval", "--frames", "1875", "--repeats", "5"]),
}


def load():
    return os.getloadavg()[0]


def timed(cmd, env=None):
    before = load()
    out = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    median = float(re.search(r"median ([0-9.]+) s", out.stdout).group(1))
    cpu = float(re.search(r"cpu ([0-9.]+) s/run", out.stdout).group(1))
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1))
    return median, rss_kb / 1024, before, out.stdout.strip().splitlines()[0], cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mtosi", default="target/release/mtosi")
    parser.add_argument("--configs", default="step4,step32,eval")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME:VAR=VALUE,... : another mtosi run with these environment variables")
    parser.add_argument("--peer-flags", action="append", default=None,
                        help="extra torch_step.py flags, e.g. --bf16 (bf16 autocast); given more than "
                             "once, PyTorch runs every configuration under each and its fastest counts "
                             "(--peer-flags= --peer-flags=--bf16: float32 and autocast)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every configuration, ours and PyTorch's, this many times in "
                             "interleaved rounds and keep each one's fastest median (a noisy host "
                             "slows whichever runs at the wrong moment)")
    parser.add_argument("--peer-env", default="",
                        help="VAR=VALUE,... added to every PyTorch configuration")
    args = parser.parse_args()
    peer_flag_sets = [f.split() for f in (args.peer_flags or [""])]
    peer_env = dict(a.split("=", 1) for a in args.peer_env.split(",") if a)
    variants = [("", {})]
    for spec in args.variant:
        name, _, assignments = spec.partition(":")
        env = dict(a.split("=", 1) for a in assignments.split(",") if a)
        variants.append((f" ({name})", env))
    print("CPU:", cpu_description(), flush=True)
    rows = []
    for key in args.configs.split(","):
        label, flags = CONFIGS[key]
        ours_runs = [[] for _ in variants]
        peer_runs = {}
        for round_index in range(args.rounds):
            tag = f" round {round_index + 1}/{args.rounds}" if args.rounds > 1 else ""
            for i, (suffix, env) in enumerate(variants):
                ours = timed([args.mtosi, "bench-step"] + flags, {"RAYON_NUM_THREADS": "2", **env})
                print(ours[3], f"[mtosi{suffix}{tag}]", f"| peak {ours[1]:.0f} MiB | load {ours[2]:.1f}", flush=True)
                ours_runs[i].append(ours)
            for peer_flags in peer_flag_sets:
                bf16 = "--bf16" in peer_flags
                for name, env in peer_configurations(bf16=bf16):
                    name = f"{name}{', bf16 autocast' if bf16 else ''}"
                    peer = timed([args.python, os.path.join(HERE, "torch_step.py")] + flags + peer_flags,
                                 {**env, **peer_env})
                    print(peer[3], f"[{name}{tag}]", f"| peak {peer[1]:.0f} MiB | load {peer[2]:.1f}", flush=True)
                    peer_runs.setdefault(name, []).append(peer + (name,))
        # Each configuration's fastest round; PyTorch's figure is its fastest configuration.
        best = min((min(runs, key=lambda p: p[0]) for runs in peer_runs.values()), key=lambda p: p[0])
        rows.extend((label + suffix, min(runs, key=lambda o: o[0]), best)
                    for (suffix, _), runs in zip(variants, ours_runs))
    print()
    print("| configuration | mtosi wall (s) | PyTorch wall (s), its fastest configuration | ratio | mtosi CPU (s) | PyTorch CPU (s) "
          "| CPU ratio | mtosi peak MiB | PyTorch peak MiB | load (ours / PyTorch) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, ours, peer in rows:
        print(f"| {label} | {ours[0]:.3f} | {peer[0]:.3f} ({peer[5]}) | {ours[0] / peer[0]:.2f}x | {ours[4]:.3f} | "
              f"{peer[4]:.3f} | {ours[4] / peer[4]:.2f}x | {ours[1]:.0f} | {peer[1]:.0f} | "
              f"{ours[2]:.1f} / {peer[2]:.1f} |")


if __name__ == "__main__":
    main()
