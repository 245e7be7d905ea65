"""Hand-written pieces kept over a library (docs/dependencies.md) must keep giving the library's answer."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from genrec.train.loop import TrainConfig, lr_at


@pytest.mark.parametrize("steps, warmup, floor", [(300, 20, 0.1), (50, 1, 0.0), (40, 0, 0.5)])
def test_lr_at_is_torchs_linear_warmup_then_cosine_annealing(steps, warmup, floor):
    config = TrainConfig(steps=steps, lr=3e-3, warmup_steps=warmup, min_lr_ratio=floor)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps - 1 - warmup, eta_min=config.lr * floor)
    if warmup:
        linear = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup, total_iters=max(warmup - 1, 1))
        scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [linear, cosine], milestones=[warmup])
    else:
        scheduler = cosine
    theirs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "step the optimizer first" notes, not about the values
        for _ in range(steps):
            theirs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
    assert np.allclose([lr_at(step, config) for step in range(steps)], theirs, rtol=1e-9, atol=0)
