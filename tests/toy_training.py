"""A tiny learnable problem for the training-loop tests, also runnable under torchrun.

`python -m torch.distributed.run --nproc_per_node=2 tests/toy_training.py OUT` trains
the toy model and writes each rank's weight hash to OUT/rank<r>.txt.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import torch
from torch import nn

from genrec.train.loop import TrainConfig, train


class ToyRegressor(nn.Module):
    """y = w·x through a small MLP with an embedding and optional dropout (to exercise RNG state)."""

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.bias_by_group = nn.Embedding(4, 1)
        self.net = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Dropout(dropout), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1) + self.bias_by_group(group).squeeze(-1)


def toy_examples(n: int = 256, seed: int = 0) -> list[tuple[torch.Tensor, int, float]]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=generator)
    w = torch.randn(8, generator=generator)
    group = torch.randint(0, 4, (n,), generator=generator)
    y = x @ w + group.float() * 0.5
    return [(x[i], int(group[i]), float(y[i])) for i in range(n)]


def collate(rows: list[tuple[torch.Tensor, int, float]]) -> dict[str, torch.Tensor]:
    return {
        "x": torch.stack([r[0] for r in rows]),
        "group": torch.tensor([r[1] for r in rows]),
        "y": torch.tensor([r[2] for r in rows]),
    }


def mse(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return nn.functional.mse_loss(model(batch["x"], batch["group"]), batch["y"])


def make_model(dropout: float = 0.0, seed: int = 0) -> ToyRegressor:
    torch.manual_seed(seed)
    return ToyRegressor(dropout)


def weight_hash(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# fp32 (cpu_bf16 off): two half batches equal one whole batch only to fp32's rounding, not bf16's.
DDP_CONFIG = TrainConfig(steps=12, batch_size=16, lr=1e-2, warmup_steps=2, eval_every=100,
                         checkpoint_every=5, device="cpu", progress=False, cpu_bf16=False)


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    rank = int(os.environ.get("RANK", "0"))
    model = make_model(seed=rank)  # ranks start different: DDP must make them agree
    train(model, mse, toy_examples(), collate, DDP_CONFIG, out / "run")
    torch.save(model.state_dict(), out / f"rank{rank}.pt")
    (out / f"rank{rank}.txt").write_text(weight_hash(model))
