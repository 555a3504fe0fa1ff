"""Converts the original code's PyTorch checkpoints (`.pt`) into mtosi's safetensors format.

The original training code saved either the whole model (`torch.save(model, path)`) or its
state_dict, and Adam's state dict (`torch.save(optimizer.state_dict(), path)`). Whole-model
pickles refer to the original code's module path; classes it cannot import are taken from
model_torch.py (same class and attribute names), so the original repository is not needed.

  python tools/reference/convert_pt.py model-1000.pt -o model.safetensors \
      [--optimizer last-optimizer-state.pt] [--scheduler-step-size 10000 --scheduler-gamma 0.98]

writes model.safetensors (state_dict names and shapes, float32, BatchNorm counters int64) and,
with --optimizer, model.optim.safetensors (exp_avg.<param>, exp_avg_sq.<param>, and the step,
Adam hyperparameters and StepLR state in its metadata), which `mtosi` reads to resume.
"""

import argparse
import pickle

import torch
from safetensors.torch import save_file

import model_torch as mt


class _FallbackUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            if hasattr(mt, name):
                return getattr(mt, name)
            raise


class _FallbackPickle:
    Unpickler = _FallbackUnpickler
    load = pickle.load


def load_state_dict(path):
    obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_FallbackPickle)
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                return obj[key]
        return obj
    raise SystemExit(f"{path}: holds a {type(obj).__name__}, neither a model nor a state_dict")


def checked_state(path, state):
    """The state_dict as mtosi stores it, after load_state_dict(strict=True) into the reference."""
    if state and all(k.startswith("module.") for k in state):
        # Saved from a DataParallel wrapper.
        state = {k[len("module."):]: v for k, v in state.items()}
    model = mt.UnetTranscriptionModel()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise SystemExit(f"{path}: not a UnetTranscriptionModel state_dict: {err}")
    out = {}
    for name, value in model.state_dict().items():
        value = value.detach().cpu().contiguous()
        out[name] = value.to(torch.int64) if name.endswith("num_batches_tracked") else value.float()
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise SystemExit(f"{path}: tensor {name} holds NaN or infinity")
    return out


def optimizer_tensors(path, step_size, gamma):
    state = torch.load(path, map_location="cpu", weights_only=False)
    if "state" not in state or "param_groups" not in state:
        raise SystemExit(f"{path}: not an optimizer state_dict")
    group = state["param_groups"][0]
    names = [name for name, _ in mt.UnetTranscriptionModel().named_parameters()]
    if len(group["params"]) != len(names):
        raise SystemExit(f"{path}: {len(group['params'])} parameters, the network has {len(names)}")
    tensors, steps = {}, set()
    for index, name in zip(group["params"], names):
        entry = state["state"].get(index)
        if entry is None:
            raise SystemExit(f"{path}: no Adam state for parameter {index} ({name})")
        tensors[f"exp_avg.{name}"] = entry["exp_avg"].float().contiguous()
        tensors[f"exp_avg_sq.{name}"] = entry["exp_avg_sq"].float().contiguous()
        steps.add(int(entry["step"]))
    if len(steps) != 1:
        raise SystemExit(f"{path}: parameters disagree on the step count: {sorted(steps)}")
    step = steps.pop()
    beta1, beta2 = group["betas"]
    lr = float(group["lr"])
    initial_lr = float(group.get("initial_lr", lr))
    metadata = {
        "step": str(step),
        "adam.lr": repr(initial_lr),
        "adam.beta1": repr(float(beta1)),
        "adam.beta2": repr(float(beta2)),
        "adam.eps": repr(float(group["eps"])),
        "step_lr.step_size": str(step_size),
        "step_lr.gamma": repr(gamma),
        # The original code stepped the scheduler once per optimizer step.
        "step_lr.last_epoch": str(step),
        "step_lr.lr": repr(lr),
    }
    return tensors, metadata, step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="the original .pt (whole model or state_dict)")
    parser.add_argument("-o", "--output", required=True, help="NAME.safetensors to write")
    parser.add_argument("--optimizer", help="the original Adam state_dict .pt")
    parser.add_argument("--scheduler-step-size", type=int, default=10_000)
    parser.add_argument("--scheduler-gamma", type=float, default=0.98)
    args = parser.parse_args()
    state = checked_state(args.checkpoint, load_state_dict(args.checkpoint))
    step = 0
    if args.optimizer:
        tensors, metadata, step = optimizer_tensors(args.optimizer, args.scheduler_step_size, args.scheduler_gamma)
        stem = args.output[: -len(".safetensors")] if args.output.endswith(".safetensors") else args.output
        save_file(tensors, f"{stem}.optim.safetensors", metadata=metadata)
        print(f"wrote {stem}.optim.safetensors (Adam state at step {step})")
    save_file(state, args.output, metadata={"format": "pt", "step": str(step)})
    print(f"wrote {args.output} ({len(state)} tensors)")


if __name__ == "__main__":
    main()
