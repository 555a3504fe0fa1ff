"""The PyTorch peer of `mtosi bench-step`: one training step (forward, BCE, backward with the
two clamp hooks, clip by value, Adam, StepLR) or the evaluation forward pass of the reference
network (tools/reference/model_torch.py), float32 on the CPU.

One configuration per process, so `/usr/bin/time -v` reports its peak memory, e.g.
  LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \
  OMP_NUM_THREADS=2 /usr/bin/time -v python tools/bench/torch_step.py --batch 4 --frames 640
train_step_compare.py runs every allocator and OpenMP configuration that could be PyTorch's
fastest and takes the fastest; the configuration of PyTorch's tuning guide (jemalloc with
background threads) measured almost 2x slower than the best on two cores.
"""

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import model_torch as mt  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--frames", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval", action="store_true", help="time the eval forward of one example")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top ops")
    parser.add_argument("--bf16", action="store_true",
                        help="forward (eval, or the train step's forward and loss) under "
                             "torch.autocast('cpu', dtype=torch.bfloat16): oneDNN's bf16 "
                             "convolutions, the peer of mtosi's --precision bf16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(33)
    model = mt.UnetTranscriptionModel()
    batch = 1 if args.eval else args.batch
    spec = torch.rand(batch, args.frames, mt.N_BINS)
    roll = (torch.rand(batch, args.frames, mt.N_KEYS) < 0.1).float()

    if args.eval:
        model.eval()

        def run():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                model(spec)

        what = f"eval forward, 1 x {args.frames} frames" + (" (autocast bf16)" if args.bf16 else "")
    else:
        model.train()
        mt.add_gradient_hooks(model)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.9, 0.999), eps=1e-8)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10_000, gamma=0.98)

        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                pred = model(spec)
            # The loss in float32 (autocast would refuse binary_cross_entropy in bf16).
            loss = torch.nn.functional.binary_cross_entropy(pred.float(), roll)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_value_(model.parameters(), mt.CLIP_VALUE)
            optimizer.step()
            scheduler.step()

        what = f"train step, batch {args.batch} x {args.frames} frames" + (
            " (autocast bf16)" if args.bf16 else "")

    run()
    times = []
    cpu_before = time.process_time()
    for _ in range(args.repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    cpu_per_run = (time.process_time() - cpu_before) / args.repeats
    preload = os.environ.get("LD_PRELOAD", "")
    allocator = ("jemalloc" if "jemalloc" in preload else "tcmalloc" if "tcmalloc" in preload
                 else "glibc malloc")
    print(
        f"PyTorch {torch.__version__} {what}: median {statistics.median(times):.3f} s "
        f"(min {min(times):.3f}, max {max(times):.3f}) over {len(times)} runs, "
        f"{torch.get_num_threads()} threads, cpu {cpu_per_run:.3f} s/run, {allocator}"
    )
    if args.profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            run()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
