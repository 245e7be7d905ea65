"""The SID decoder: emits an item's Semantic ID one level at a time.

Position l reads the code chosen at level l-1 (BOS at level 0) plus that level's
embedding and the request's summary, attends causally to the earlier levels and
across to the encoder's memory, and one head per level scores that level's codes.
Beam search over it costs `levels` small steps, not a vocabulary-sized softmax
over all items (TIGER; OneSearch; OneMall).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from genrec.model.config import GenerativeConfig, InputSpec
from genrec.model.dropout import Dropout
from genrec.model.layers import DecoderBlock


class SidDecoder(nn.Module):
    def __init__(self, config: GenerativeConfig, spec: InputSpec):
        super().__init__()
        d = config.d_model
        self.codebook_sizes = spec.codebook_sizes
        self.level = nn.Embedding(spec.levels, d)
        self.blocks = nn.ModuleList(DecoderBlock(config) for _ in range(config.n_decoder_layers))
        self.norm = nn.LayerNorm(d)
        self.heads = nn.ModuleList(nn.Linear(d, v) for v in spec.codebook_sizes)
        self.drop = Dropout(config.dropout)

    def inputs(self, bos: torch.Tensor, previous: torch.Tensor, summary: torch.Tensor) -> torch.Tensor:
        """Teacher-forced inputs `[B, L, d]` from the start vector `bos [d]`, the embedded codes
        of levels 0..L-2 (`previous [B, L-1, d]`) and the summary `[B, d]`."""
        x = torch.cat([bos.expand(previous.shape[0], 1, -1), previous], dim=1)
        x = self.drop(x + self.level.weight[:x.shape[1]])
        return x + summary[:, None, :]

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor,
                rows: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Logits of every level, a list of `[N, V_level]`, for inputs `x [N, L, d]` against
        `memory [B, S, d]`; `rows [N]` says which memory row each input reads (several
        targets of one window share it; None: row n reads memory n)."""
        for block in self.layers():
            k, v = block.cross.project_memory(memory, rows)
            x = block.forward_projected(x, k, v, mask)
        x = self.norm(x)
        return [head(x[:, level]) for level, head in enumerate(self.heads)]

    def step(self, x: torch.Tensor, level: int, summary: torch.Tensor | None, self_k: list[torch.Tensor],
             self_v: list[torch.Tensor], memory_k: list[torch.Tensor], memory_v: list[torch.Tensor],
             memory_mask: torch.Tensor, beams: int) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """One level for `N = B * beams` rows: `x [N, d]` is the embedded previous code
        (the start vector at level 0); returns the level's logits `[N, V_level]` and the grown caches."""
        x = x + self.level.weight[level]
        if summary is not None:  # one summary per request, shared by its beams
            x = x + summary.repeat_interleave(beams, dim=0)
        h = x[:, None, :]
        new_k, new_v = [], []
        for i, block in enumerate(self.layers()):
            cache = (self_k[i], self_v[i]) if self_k else None
            h, (k, v) = block.step(h, cache, memory_k[i], memory_v[i], memory_mask, beams)
            new_k.append(k)
            new_v.append(v)
        return self.heads[level](self.norm(h[:, 0])), new_k, new_v

    def layers(self) -> list[DecoderBlock]:
        """The decoder blocks, typed (a ModuleList yields plain Modules)."""
        return [cast(DecoderBlock, block) for block in self.blocks]

    def padded(self, logits: torch.Tensor) -> torch.Tensor:
        """One width V = max(codebook_sizes) for every level; codes past a level's codebook are -inf."""
        pad = max(self.codebook_sizes) - logits.shape[1]
        return F.pad(logits, (0, pad), value=float("-inf")) if pad else logits
