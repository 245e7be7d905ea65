"""Dropout whose mask costs a quarter of `torch.bernoulli_`'s on a CPU.

`nn.Dropout` draws one Bernoulli sample per element; on a CPU that draw was
~15–20% of a training step of this model (benchmarks/results/train.md). Here
one 64-bit random word gives four 16-bit lanes, and an element is kept when
its lane is at or above a threshold: the keep probability is `1 - p` rounded
to a multiple of 1/65536 (off by at most 7.7e-6), and kept elements are scaled
by the exact inverse of that probability, so the expectation is unchanged.

The draws come from torch's default generator, so a seeded run repeats itself
and `last.pt`'s saved RNG state resumes it. In eval mode, or with p = 0, both
functions return their input untouched: evaluation and decoding never see them.
"""

from __future__ import annotations

import torch
import torch.nn as nn

_LANES = 65536


def keep_mask(shape: torch.Size, p: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A `shape` tensor of 0 (dropped, probability ≈ p) and 1/(1 - p) (kept), in `dtype`."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout p must be in [0, 1), got {p}")
    n = shape.numel()
    threshold = round(p * _LANES)
    # The whole signed range: plain `random_()` on int64 leaves the top bit 0, and every fourth lane
    # would then never be dropped.
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), 2**63 - 1)
    lanes = words.view(torch.int16)[:n].view(shape)  # uniform over [-32768, 32767]
    keep = lanes >= threshold - _LANES // 2
    return keep.to(dtype).mul_(_LANES / (_LANES - threshold))


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """`F.dropout(x, p, training)` with the cheaper mask; the identity when not training or p = 0."""
    if not training or p == 0.0:
        return x
    return x * keep_mask(x.shape, p, x.dtype, x.device)


class Dropout(nn.Module):
    """Drop-in for `nn.Dropout` (no parameters or buffers: a state_dict is unchanged)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
