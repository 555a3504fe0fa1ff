"""PyTorch's CPU time per op at the network's real shapes (batch 4 × 640 frames × 176 bins),
2 threads: the peer of `cargo bench --bench <op>`. Prints one line per op and pass (median of
repeated runs, milliseconds). Run from the repository root, on an otherwise idle machine:

    LD_PRELOAD=<libjemalloc.so if installed> python tools/bench/torch_ops.py [filter]
"""

import statistics
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(2)
B = 4

# (name, c_in, h, w, c_out, k, stride, pad): the same table as benches/conv2d.rs.
CONV2D = [
    ("enc1.conv1 1-16 640x176", 1, 640, 176, 16, 3, 1, 1),
    ("enc1.conv2 16-16 640x176", 16, 640, 176, 16, 3, 1, 1),
    ("enc1.skip 1-16 1x1 640x176", 1, 640, 176, 16, 1, 1, 0),
    ("enc1.ds 16-16 2x2s2 640x176", 16, 640, 176, 16, 2, 2, 0),
    ("enc2.conv2 32-32 320x88", 32, 320, 88, 32, 3, 1, 1),
    ("enc3.conv2 64-64 160x44", 64, 160, 44, 64, 3, 1, 1),
    ("enc4.conv2 128-128 80x22", 128, 80, 22, 128, 3, 1, 1),
    ("enc4.ds 128-128 2x2s2 80x22", 128, 80, 22, 128, 2, 2, 0),
]
# (name, c_in, h, w, c_out, k, stride, pad, output size): benches/conv_transpose2d.rs.
CONV_TRANSPOSE2D = [
    ("dec4.us 16-16 2x2s2 to 640x176", 16, 320, 88, 16, 2, 2, 0, (640, 176)),
    ("dec4.conv2d 16-8 640x176", 16, 640, 176, 8, 3, 1, 1, (640, 176)),
    ("dec4.conv1d 8-1 640x176", 8, 640, 176, 1, 3, 1, 1, (640, 176)),
    ("dec3.conv2d 48-24 320x88", 48, 320, 88, 24, 3, 1, 1, (320, 88)),
    ("dec1.us 128-128 2x2s2 to 80x22", 128, 40, 11, 128, 2, 2, 0, (80, 22)),
    ("dec1.conv2d 192-96 80x22", 192, 80, 22, 96, 3, 1, 1, (80, 22)),
]
# (name, channels, h, w): benches/batchnorm.rs and benches/activation.rs.
ELEMENTWISE = [
    ("16ch 640x176", 16, 640, 176),
    ("64ch 160x44", 64, 160, 44),
]


def timed(fn, repeats=10):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def report(op, name, forward_ms, backward_ms):
    print(f"{op:17s} {name:34s} forward {forward_ms:8.2f} ms   backward {backward_ms:8.2f} ms", flush=True)


def main(selected: str) -> None:
    gen = torch.Generator().manual_seed(0)
    for name, c_in, h, w, c_out, k, s, p in CONV2D:
        if selected not in "conv2d " + name:
            continue
        x = torch.randn(B, c_in, h, w, generator=gen, requires_grad=True)
        conv = torch.nn.Conv2d(c_in, c_out, k, s, p)
        with torch.no_grad():
            fwd = timed(lambda: conv(x))
        y = conv(x)
        g = torch.randn_like(y)
        bwd = timed(lambda: torch.autograd.grad(y, [x, conv.weight, conv.bias], g, retain_graph=True))
        report("conv2d", name, fwd, bwd)
    for name, c_in, h, w, c_out, k, s, p, size in CONV_TRANSPOSE2D:
        if selected not in "conv_transpose2d " + name:
            continue
        x = torch.randn(B, c_in, h, w, generator=gen, requires_grad=True)
        conv = torch.nn.ConvTranspose2d(c_in, c_out, k, s, p)
        with torch.no_grad():
            fwd = timed(lambda: conv(x, output_size=size))
        y = conv(x, output_size=size)
        g = torch.randn_like(y)
        bwd = timed(lambda: torch.autograd.grad(y, [x, conv.weight, conv.bias], g, retain_graph=True))
        report("conv_transpose2d", name, fwd, bwd)
    for name, c, h, w in ELEMENTWISE:
        x = torch.randn(B, c, h, w, generator=gen, requires_grad=True)
        if selected in "batchnorm " + name:
            bn = torch.nn.BatchNorm2d(c).train()
            with torch.no_grad():
                fwd = timed(lambda: bn(x))
            y = bn(x)
            g = torch.randn_like(y)
            bwd = timed(lambda: torch.autograd.grad(y, [x, bn.weight, bn.bias], g, retain_graph=True))
            report("batchnorm", name, fwd, bwd)
        if selected in "leaky_relu " + name:
            with torch.no_grad():
                fwd = timed(lambda: F.leaky_relu(x, 0.01))
            y = F.leaky_relu(x, 0.01)
            g = torch.randn_like(y)
            bwd = timed(lambda: torch.autograd.grad(y, [x], g, retain_graph=True))
            report("leaky_relu", name, fwd, bwd)
    if selected in "lstm 4x640 176-176 bidirectional":
        lstm = torch.nn.LSTM(176, 176, batch_first=True, bidirectional=True)
        x = torch.randn(B, 640, 176, generator=gen, requires_grad=True)
        with torch.no_grad():
            fwd = timed(lambda: lstm(x), repeats=5)
        y, _ = lstm(x)
        g = torch.randn_like(y)
        params = [x] + list(lstm.parameters())
        bwd = timed(lambda: torch.autograd.grad(y, params, g, retain_graph=True), repeats=5)
        report("lstm", "4x640 176-176 bidirectional", fwd, bwd)
    if selected in "linear 2560 352-88":
        lin = torch.nn.Linear(352, 88)
        x = torch.randn(B * 640, 352, generator=gen, requires_grad=True)
        with torch.no_grad():
            fwd = timed(lambda: lin(x))
        y = lin(x)
        g = torch.randn_like(y)
        bwd = timed(lambda: torch.autograd.grad(y, [x, lin.weight, lin.bias], g, retain_graph=True))
        report("linear", "2560 352-88", fwd, bwd)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
