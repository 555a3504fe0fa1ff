"""PyTorch's training step of the reference network (tools/reference/model_torch.py) on a GPU:
forward, mean BCE, backward with the two clamp hooks, clip by value, Adam, StepLR, float32,
eager with cuDNN (cudnn.benchmark on) and under torch.compile, each timed with CUDA events
after warm-up, with its peak GPU memory. The peer of mtosi's device training step; run by
scripts/gpu-check.sh on the lent GPU machine (PyTorch is installed there, not here).

  python3 tools/bench/torch_step_gpu.py --batch 4 --frames 640 [--modes eager,compile]

Prints one line per mode: `torch-step <mode> batch B frames T: median X ms (min, max) over N
steps, peak memory M MiB`. TF32 is off (fp32 matmuls and convolutions), as mtosi's default
precision; --tf32 turns it on for the comparison with a TF32 path.
"""

import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import model_torch as mt  # noqa: E402


def time_mode(mode, args):
    torch.manual_seed(33)
    device = torch.device("cuda")
    model = mt.UnetTranscriptionModel().to(device)
    model.train()
    mt.add_gradient_hooks(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10_000, gamma=0.98)
    spec = torch.rand(args.batch, args.frames, mt.N_BINS, device=device)
    roll = (torch.rand(args.batch, args.frames, mt.N_KEYS, device=device) < 0.1).float()
    forward = torch.compile(model) if mode == "compile" else model

    def step():
        pred = forward(spec)
        loss = torch.nn.functional.binary_cross_entropy(pred, roll)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), mt.CLIP_VALUE)
        optimizer.step()
        scheduler.step()
        return loss

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times_ms = []
    for _ in range(args.steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times_ms.append(start.elapsed_time(end))
    peak_mib = torch.cuda.max_memory_allocated() / 2**20
    print(
        f"torch-step {mode} batch {args.batch} frames {args.frames}: median "
        f"{statistics.median(times_ms):.3f} ms (min {min(times_ms):.3f}, max {max(times_ms):.3f}) "
        f"over {len(times_ms)} steps, peak memory {peak_mib:.0f} MiB "
        f"(PyTorch {torch.__version__}, {torch.cuda.get_device_name()}, tf32 {args.tf32})",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--frames", type=int, default=640)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--modes", default="eager,compile")
    parser.add_argument("--tf32", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("torch-step: no CUDA device")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    for mode in args.modes.split(","):
        time_mode(mode, args)


if __name__ == "__main__":
    main()
