"""Writes tests/fixtures/ops/adam_*.npy: three torch.optim.Adam steps (lr 0.01, betas
(0.9, 0.999), eps 1e-8) on one float32 tensor, with a StepLR(step_size=2, gamma=0.5) stepped
after each, so the third step runs at half the rate. Run from the repository root:

    python tools/reference/ops_adam_fixture.py
"""

from pathlib import Path

import numpy as np
import torch

OUT = Path("tests/fixtures/ops")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(5)
    param = torch.nn.Parameter(torch.randn(8, generator=generator))
    grads = torch.randn(3, 8, generator=generator)
    # Gradients across magnitudes, including exact zeros and values at the clip bounds.
    grads[:, 0] = 0.0
    grads[:, 1] *= 1e-6
    grads[:, 2] *= 1e3
    grads[1, 3] = 0.1
    optimizer = torch.optim.Adam([param], lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    params = [param.detach().clone()]
    exp_avg, exp_avg_sq = [], []
    for step in range(3):
        param.grad = grads[step].clone()
        optimizer.step()
        scheduler.step()
        state = optimizer.state[param]
        params.append(param.detach().clone())
        exp_avg.append(state["exp_avg"].clone())
        exp_avg_sq.append(state["exp_avg_sq"].clone())
    np.save(OUT / "adam_params.npy", torch.stack(params).numpy().astype(np.float32))
    np.save(OUT / "adam_grads.npy", grads.numpy().astype(np.float32))
    np.save(OUT / "adam_exp_avg.npy", torch.stack(exp_avg).numpy().astype(np.float32))
    np.save(OUT / "adam_exp_avg_sq.npy", torch.stack(exp_avg_sq).numpy().astype(np.float32))


if __name__ == "__main__":
    main()
