"""The encoder's Transformer, read two ways: the full view and the causal view.

Both views share one stack of blocks. The full view reads a request's every part
at once, each position seeing every other (search: the query beside the whole
history). The causal view reads user tokens then a history oldest first, each
history position seeing the user tokens, itself and the positions before it, so
its output at position t depends only on the first t+1 items: one pass encodes
every prefix of a user's history, which is what lets recommendation train on all
of them at once, as SASRec does (`GenerativeModel.sequence_loss`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from genrec.model.config import GenerativeConfig
from genrec.model.dropout import Dropout
from genrec.model.embedding import Part, masked_mean
from genrec.model.layers import EncoderBlock


class TransformerEncoder(nn.Module):
    """Pre-norm encoder blocks and a final norm."""

    def __init__(self, config: GenerativeConfig):
        super().__init__()
        self.blocks = nn.ModuleList(EncoderBlock(config) for _ in range(config.n_encoder_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.drop = Dropout(config.dropout)

    def full(self, parts: list[Part]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Memory `[B, S, d]` over the parts laid end to end, its key mask `[B, 1, 1, S]`
        (True = real), and each part's mean output `[B, d]` (0 for a part with no position)."""
        x = torch.cat([p for p, _ in parts], dim=1)
        mask = torch.cat([m for _, m in parts], dim=1)[:, None, None, :]
        memory = self._run(x, mask)
        means, start = [], 0
        for part, part_mask in parts:
            width = part.shape[1]
            means.append(masked_mean(memory[:, start:start + width], part_mask))
            start += width
        return memory, mask, means

    def causal(self, user: torch.Tensor, user_real: torch.Tensor, history: torch.Tensor,
               history_real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Memory `[B, Tu + T, d]` over embedded user tokens `[B, Tu, d]` then history
        `[B, T, d]`, and its key mask `[B, Tu + T]`. A history position sees the user
        tokens, itself and the columns before it; user tokens see each other."""
        n_user, width = user.shape[1], history.shape[1]
        key_real = torch.cat([user_real, history_real], dim=1)
        s = torch.arange(n_user + width, device=user.device)
        sees = s[None, :] <= torch.clamp(s[:, None], min=n_user - 1)  # [S, S]: user columns, or not later
        mask = (sees[None] & key_real[:, None, :]) | torch.eye(len(s), dtype=torch.bool, device=user.device)
        return self._run(torch.cat([user, history], dim=1), mask[:, None]), key_real

    def _run(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)
