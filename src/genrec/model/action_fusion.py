"""`ActionFusion`: a user's behaviour read as one sequence per action, fused by cross-attention.

The encoder reads a history as one flat sequence in which each position carries
its action (click, cart, order) as an added embedding. OneMall instead keeps the
behaviour sequences apart — what was clicked, what was carted, what was ordered —
and fuses them with cross-attention, so that the few orders of a user are not
averaged away among many clicks. Here each action gets `queries` learned query
vectors; each query cross-attends only to the positions of its own action in the
short and the long view (`QueryFormer` with a per-query mask), and the
`n_actions × queries` outputs join the search path's user part as tokens the
whole request attends to. An action the user never took gives zero tokens,
masked out of the encoder.

Only the full view (search) reads them, as with the behaviour user IDs: the
causal recommendation path trains every prefix of a history at once, and tokens
fused over the whole window would show each target the items after it.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from genrec.model.config import GenerativeConfig
from genrec.model.embedding import Part
from genrec.model.query_former import QueryFormer


class ActionFusion(nn.Module):
    """`queries` learned queries per action over the behaviour positions of that action."""

    query_action: torch.Tensor  # [n_actions * queries]: the action each query reads

    def __init__(self, config: GenerativeConfig, n_actions: int, queries: int):
        super().__init__()
        if n_actions < 1 or queries < 1:
            raise ValueError(f"n_actions and queries must be ≥ 1, got {n_actions} and {queries}")
        self.former = QueryFormer(config, n_actions * queries)
        self.register_buffer("query_action", torch.arange(n_actions).repeat_interleave(queries), persistent=False)

    def forward(self, behaviour: torch.Tensor, real: torch.Tensor, action: torch.Tensor) -> Part:
        """Embedded behaviour positions `[B, T, d]` (short and long views side by side), their mask
        `[B, T]` and action ids `[B, T]` → `[B, n_actions * queries, d]` and its mask."""
        sees = real[:, None, :] & (action[:, None, :] == self.query_action[None, :, None])  # [B, M, T]
        return self.former(behaviour, sees)
