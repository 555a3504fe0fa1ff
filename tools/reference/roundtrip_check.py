"""Shows the safetensors round trip between PyTorch and mtosi, both ways.

1. mtosi -> PyTorch: `mtosi init --seed S` writes a checkpoint; PyTorch's
   `model.load_state_dict(safetensors.torch.load_file(path))` (strict) loads it, its values
   equal model_torch.deterministic_init(S) bit for bit, and PyTorch's evaluation-mode output
   on a spectrogram equals `mtosi forward`'s on the same checkpoint.
2. PyTorch -> mtosi: a model with PyTorch's own random initialisation and non-trivial
   BatchNorm running statistics (a few training-mode passes), saved with
   `safetensors.torch.save_file(model.state_dict(), path)`; `mtosi forward` on it gives
   PyTorch's evaluation-mode probabilities.

Usage (after `cargo build --release`):
  python tools/reference/roundtrip_check.py [--mtosi target/release/mtosi] [--frames 1875]
"""

import argparse
import os
import subprocess
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file, save_file

import model_torch as mt


def mtosi_forward(mtosi, checkpoint, spec, workdir):
    spec_path = os.path.join(workdir, "spec.npy")
    roll_path = os.path.join(workdir, "roll.npy")
    np.save(spec_path, spec.astype(np.float32))
    subprocess.run([mtosi, "forward", "--checkpoint", checkpoint, spec_path, "-o", roll_path], check=True)
    return np.load(roll_path)


def torch_eval(model, spec):
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(spec).unsqueeze(0).double())[0].numpy()


def report(label, ours, theirs):
    err = np.abs(ours.astype(np.float64) - theirs).max()
    print(f"{label}: shape {ours.shape}, max |mtosi - PyTorch| = {err:.3e} "
          f"(largest probability {np.abs(theirs).max():.4f})")
    return err


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mtosi", default="target/release/mtosi")
    parser.add_argument("--frames", type=int, default=1875)
    parser.add_argument("--seed", type=int, default=33)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(args.seed)
    spec = rng.random((args.frames, mt.N_BINS), dtype=np.float32)
    worst = 0.0
    with tempfile.TemporaryDirectory() as workdir:
        # 1. mtosi -> PyTorch
        ours_path = os.path.join(workdir, "mtosi_init.safetensors")
        subprocess.run([args.mtosi, "init", "--seed", str(args.seed), "-o", ours_path], check=True)
        model = mt.UnetTranscriptionModel()
        missing_unexpected = model.load_state_dict(load_file(ours_path))
        print(f"PyTorch load_state_dict(mtosi checkpoint): {missing_unexpected}")
        reference = mt.UnetTranscriptionModel()
        mt.deterministic_init(reference, args.seed)
        same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
        print(f"mtosi init --seed {args.seed} equals model_torch.deterministic_init({args.seed}) bit for bit: {same}")
        worst = max(worst, report("mtosi checkpoint, eval forward",
                                  mtosi_forward(args.mtosi, ours_path, spec, workdir),
                                  torch_eval(model.double(), spec)))

        # 2. PyTorch -> mtosi
        torch.manual_seed(args.seed)
        model = mt.UnetTranscriptionModel()
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model(torch.rand(2, 64, mt.N_BINS))
        theirs_path = os.path.join(workdir, "pytorch.safetensors")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, theirs_path)
        worst = max(worst, report("PyTorch checkpoint, eval forward",
                                  mtosi_forward(args.mtosi, theirs_path, spec, workdir),
                                  torch_eval(model.double(), spec)))
    print(f"worst difference {worst:.3e}; {'OK' if worst <= 1e-4 and same else 'MISMATCH'}")
    raise SystemExit(0 if worst <= 1e-4 and same else 1)


if __name__ == "__main__":
    main()
