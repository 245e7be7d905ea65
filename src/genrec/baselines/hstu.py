"""HSTU: SASRec's sequence model with Hierarchical Sequential Transduction Units as its layers.

Zhai et al., 2024 ("Actions speak louder than words: trillion-parameter sequential
transducers for generative recommendations") replace the Transformer layer by one
unit with no feed-forward network:

    U, V, Q, K = split(SiLU(f1(Norm(X))))
    A = SiLU(Q Kᵀ + rab) / N            pointwise, causal: entry (i, j) is 0 for j > i
    Y = X + f2(Norm(A V) ⊙ U)

- **Pointwise aggregated attention.** Each attention weight is SiLU of its own score,
  not a softmax over the row, so the weights do not sum to one: how *much* of the
  history matches (its intensity) survives, which a softmax would normalise away.
  The sum is divided by a constant `N` (`max_history`), never by the number of real
  positions, so a prefix's output does not depend on what follows it.
- **Relative attention bias** `rab`: one learned scalar per distance i − j (0 ..
  max_history − 1), added to every head's score. The paper also buckets the time
  gap between events; a `Request` carries no timestamps, so only positions are used.
- **Gating** by `U`: the normalised attention output is multiplied elementwise by a
  SiLU projection of the layer's own input before the output projection.

Everything else is SASRec's (`genrec.baselines.sasrec`): item (+ leaf category)
embeddings with a learned absolute position, the training windows, both losses
(`SASRecConfig.loss`), validation on a fixed sample, the run folder
(`RUN/train/hstu`, written by `genrec train --model hstu`), ranking and the
cold-start fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genrec.baselines.sasrec import SASREC_CODE, SASRecConfig, SASRecModelConfig, SASRecRetriever


@dataclass
class HSTUConfig(SASRecConfig):
    """SASRec's fields (shape, loss, training); `dim` is split into `heads` for Q, K and V alike."""


class HSTUBlock(nn.Module):
    """One HSTU layer: `[batch, length, dim] -> [batch, length, dim]`, causal.

    `attention_scale` is `N` above (the longest sequence the model reads).
    """

    def __init__(self, dim: int, heads: int, dropout: float, max_length: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads, self.max_length = heads, max_length
        self.input_norm = nn.LayerNorm(dim)
        self.uvqk = nn.Linear(dim, 4 * dim)
        self.relative_bias = nn.Parameter(torch.zeros(max_length))  # index i - j, the distance back
        self.attention_norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        u, attended = self.gate_and_attend(x)
        return x + self.out(self.dropout(self.attention_norm(attended) * u))

    def gate_and_attend(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The gate `U` and the un-normalised attention output `A V`, both `[batch, length, dim]`."""
        batch, length, dim = x.shape
        if length > self.max_length:
            raise ValueError(f"sequence length {length} exceeds max_history {self.max_length}")
        u, v, q, k = F.silu(self.uvqk(self.input_norm(x))).split(dim, dim=-1)
        q, k, v = (t.view(batch, length, self.heads, dim // self.heads).transpose(1, 2) for t in (q, k, v))
        positions = torch.arange(length, device=x.device)
        distance = positions[:, None] - positions[None, :]  # [length, length], i - j
        causal = distance >= 0
        scores = q @ k.transpose(-1, -2) + self.relative_bias[distance.clamp(min=0)]
        weights = F.silu(scores) * causal / self.max_length  # masked after SiLU: SiLU(-inf) would be NaN
        attended = (weights @ v).transpose(1, 2).reshape(batch, length, dim)
        return u, attended


def hstu_block(config: SASRecModelConfig) -> nn.Module:
    """HSTU's layer for `config`."""
    return HSTUBlock(config.dim, config.heads, config.dropout, config.max_history)


class HSTURetriever(SASRecRetriever):
    """SASRec's retriever with HSTU layers: same training, ranking and run-folder contract."""

    name = "hstu"
    config_type = HSTUConfig
    block = staticmethod(hstu_block)
    code = (*SASREC_CODE, "genrec.baselines.hstu")
