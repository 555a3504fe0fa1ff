"""The transcriber of PROTOCOL.md ("Network") in PyTorch: the reference our Rust model is held to.

Module and parameter names are those of the original code, so its state_dict keys
(`Unet1_encoder.block1.conv1.weight`, `lstm1.weight_ih_l0_reverse`, `linear.bias`, ...) are the
names our safetensors checkpoints use.

Also here: `deterministic_init`, the counter-based uniform draw that `src/model/init.rs`
computes bit for bit, so fixtures need not store initial weights.
"""

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

N_BINS = 176
N_KEYS = 88
EXPECTED_PARAMETERS = 1_350_145
EXPECTED_PARAMETER_TENSORS = 102
EXPECTED_STATE_DICT_ENTRIES = 147
HOOK_CLAMP = 0.001
CLIP_VALUE = 0.1


class block(nn.Module):
    """Encoder block: two conv-BN-lrelu, a 1x1 skip, a 2x2 stride-2 downsampling conv."""

    def __init__(self, inp, out):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, out, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(out)
        self.conv2 = nn.Conv2d(out, out, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(out)
        self.skip = nn.Conv2d(inp, out, kernel_size=1, padding=0)
        self.ds = nn.Conv2d(out, out, kernel_size=2, stride=2, padding=0)

    def forward(self, x):
        a = F.leaky_relu(self.bn1(self.conv1(x)))
        b = F.leaky_relu(self.bn2(self.conv2(a)))
        b = b + self.skip(x)
        return self.ds(b), b.size()


class d_block(nn.Module):
    """Decoder block: upsample to the encoder's remembered size, concat the skip, two
    transposed 3x3 convs (the last block has neither BN nor activation after the second)."""

    def __init__(self, inp, out, is_last):
        super().__init__()
        self.is_last = is_last
        self.conv2d = nn.ConvTranspose2d(inp, inp // 2, kernel_size=3, padding=1)
        self.bn2d = nn.BatchNorm2d(inp // 2)
        self.conv1d = nn.ConvTranspose2d(inp // 2, out, kernel_size=3, padding=1)
        if not is_last:
            self.bn1d = nn.BatchNorm2d(out)
            self.us = nn.ConvTranspose2d(inp - out, inp - out, kernel_size=2, stride=2)
        else:
            self.us = nn.ConvTranspose2d(inp, inp, kernel_size=2, stride=2)

    def forward(self, x, size, skip=None):
        x = self.us(x, output_size=size)
        if not self.is_last:
            x = torch.cat((x, skip), 1)
        x = F.leaky_relu(self.bn2d(self.conv2d(x)))
        if self.is_last:
            return self.conv1d(x)
        return F.leaky_relu(self.bn1d(self.conv1d(x)))


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.block1 = block(1, 16)
        self.block2 = block(16, 32)
        self.block3 = block(32, 64)
        self.block4 = block(64, 128)
        self.conv1 = nn.Conv2d(64, 64, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 32, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(16, 16, kernel_size=3, padding=1)

    def forward(self, x):
        x1, s1 = self.block1(x)
        x2, s2 = self.block2(x1)
        x3, s3 = self.block3(x2)
        x4, s4 = self.block4(x3)
        c1 = self.conv1(x3)
        c2 = self.conv2(x2)
        c3 = self.conv3(x1)
        return x4, [s1, s2, s3, s4], [c1, c2, c3]


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.d_block1 = d_block(192, 64, False)
        self.d_block2 = d_block(96, 32, False)
        self.d_block3 = d_block(48, 16, False)
        self.d_block4 = d_block(16, 1, True)

    def forward(self, x, sizes, skips):
        x = self.d_block1(x, sizes[3], skips[0])
        x = self.d_block2(x, sizes[2], skips[1])
        x = self.d_block3(x, sizes[1], skips[2])
        return self.d_block4(x, sizes[0])


class UnetTranscriptionModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.Unet1_encoder = Encoder()
        self.Unet1_decoder = Decoder()
        self.lstm1 = nn.LSTM(N_BINS, N_BINS, batch_first=True, bidirectional=True)
        self.linear = nn.Linear(N_BINS * 2, N_KEYS)

    def forward(self, spec):
        """spec: (B, T, 176) -> piano roll probabilities (B, T, 88)."""
        x, sizes, skips = self.Unet1_encoder(spec.unsqueeze(1))
        feat1 = torch.sigmoid(self.Unet1_decoder(x, sizes, skips))
        x, _ = self.lstm1(feat1.squeeze(1))
        return torch.sigmoid(self.linear(x))


def _clamp_grad_input(limit):
    def hook(module, grad_input, grad_output):
        return (grad_input[0].clamp(-limit, limit),) + tuple(grad_input[1:])

    return hook


def add_gradient_hooks(model, linear_limit=HOOK_CLAMP, lstm_limit=HOOK_CLAMP):
    """The two hooks of the original training code: the gradient flowing into the Linear's
    input and into the LSTM's input are each clamped (to [-0.001, 0.001] there)."""
    model.linear.register_full_backward_hook(_clamp_grad_input(linear_limit))
    model.lstm1.register_full_backward_hook(_clamp_grad_input(lstm_limit))


def check_counts(model):
    params = list(model.parameters())
    n_values = sum(p.numel() for p in params)
    n_entries = len(model.state_dict())
    assert n_values == EXPECTED_PARAMETERS, n_values
    assert len(params) == EXPECTED_PARAMETER_TENSORS, len(params)
    assert n_entries == EXPECTED_STATE_DICT_ENTRIES, n_entries


# --- The deterministic initialisation shared with src/model/init.rs -------------------------

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _fnv1a64(text):
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) & _M64
    return h


def _mix64(z):
    """splitmix64's finaliser on a numpy uint64 array (wrapping arithmetic)."""
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniform_unit(seed, name, count):
    """`count` values in [0, 1), multiples of 2^-24, drawn from the stream named `name`."""
    stream = int(_mix64(np.array([(seed * _GOLDEN + _GOLDEN) & _M64], dtype=np.uint64))[0])
    stream ^= _fnv1a64(name)
    with np.errstate(over="ignore"):
        keys = np.uint64(stream) + np.arange(1, count + 1, dtype=np.uint64) * np.uint64(_GOLDEN)
        bits = _mix64(keys) >> np.uint64(40)
    return bits.astype(np.float64) / float(1 << 24)


def deterministic_init(model, seed):
    """Sets every parameter to PyTorch's default distribution drawn from our counter-based
    generator; BN weight 1, bias 0, running stats reset. Same values as src/model/init.rs."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, p in params.items():
            module_name = name.rsplit(".", 1)[0]
            module = model.get_submodule(module_name)
            if isinstance(module, nn.BatchNorm2d):
                p.fill_(1.0 if name.endswith(".weight") else 0.0)
                continue
            if isinstance(module, nn.LSTM):
                bound = 1.0 / math.sqrt(module.hidden_size)
            else:
                w = module.weight
                # PyTorch's fan_in: weight.size(1) * kernel area; for ConvTranspose2d the
                # weight is (in, out, kh, kw), so its "fan_in" counts output channels.
                fan_in = w.shape[1] * (w[0][0].numel() if w.dim() > 2 else 1)
                bound = 1.0 / math.sqrt(fan_in)
            u = uniform_unit(seed, name, p.numel())
            values = ((2.0 * u - 1.0) * bound).astype(np.float32)
            p.copy_(torch.from_numpy(values).reshape(p.shape).to(p.dtype))
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.reset_running_stats()
