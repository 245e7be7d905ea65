"""Behaviour-derived user IDs: a few tokens that say what a user has been interacting with.

A hashed user id says nothing about a user the model has not trained on, and a long
history is many positions. OneSearch instead gives the encoder a handful of tokens
aggregated from the Semantic IDs of the user's short and long history, weighted by
position. Here, per view (short, long) and per SID level l < `user_id_levels`, the
token is the level-l code with the largest position-weighted vote over the view's
items, the newest item weighing 1, the one before it 1/2, then 1/3, ... (ties go to
the lowest code). The tokens are discrete and a deterministic function of the
history, so a user is described by the same few codes the decoder emits, embedded
through the shared code table plus a learned embedding of the token's slot
(view, level).

They join the user part of the full view (search). The causal recommendation path
does not read them: trained on every prefix of a history at once, its user tokens
would have to change per prefix, and tokens of the whole window would show each
target the items after it.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from genrec.model.batches import EncoderBatch
from genrec.model.embedding import PART_NAMES, InputEmbedding, Part


def behaviour_codes(codes: torch.Tensor, items: torch.Tensor, levels: int,
                    codebook_sizes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The position-weighted majority code of each of the first `levels` SID levels, `[B, levels]`,
    of a view `codes [B, T, L]`, `items [B, T]` (0 = padding; the newest real item weighs 1, the
    k-th newest 1/k), and `[B]` whether the view has any real item (its codes are 0 otherwise)."""
    real = items > 0
    newer = real.flip(1).cumsum(1).flip(1) - real.long()  # real items after each position
    weight = real.to(torch.float64) / (1.0 + newer.to(torch.float64))
    tokens = []
    for level in range(levels):
        votes = torch.zeros(codes.shape[0], codebook_sizes[level], dtype=torch.float64, device=codes.device)
        votes.scatter_add_(1, codes[..., level].long(), weight)
        tokens.append(votes.argmax(dim=1))  # the first maximum: ties go to the lowest code
    return torch.stack(tokens, dim=1), real.any(dim=1)


class BehaviourUserIds(nn.Module):
    """`2 * levels` user tokens from a request's short and long views (see the module docstring)."""

    def __init__(self, d_model: int, levels: int, codebook_sizes: tuple[int, ...]):
        super().__init__()
        self.levels, self.codebook_sizes = min(levels, len(codebook_sizes)), codebook_sizes
        self.slot = nn.Embedding(2 * self.levels, d_model)

    def tokens(self, b: EncoderBatch, max_short: int, max_long: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The codes `[B, 2 * levels]` (short view's levels, then long view's) and their mask."""
        views = [behaviour_codes(codes[:, -keep:], items[:, -keep:], self.levels, self.codebook_sizes)
                 for codes, items, keep in ((b.short_codes, b.short_items, max_short),
                                            (b.long_codes, b.long_items, max_long))]
        codes = torch.cat([c for c, _ in views], dim=1)
        real = torch.cat([r[:, None].expand(-1, self.levels) for _, r in views], dim=1)
        return codes, real

    def forward(self, inputs: InputEmbedding, b: EncoderBatch, max_short: int, max_long: int) -> Part:
        """The tokens embedded `[B, 2 * levels, d]` (code + slot + the user part's type) and their mask."""
        codes, real = self.tokens(b, max_short, max_long)
        x = inputs.code(codes + inputs.code_offsets[: self.levels].repeat(2))
        return x + self.slot.weight + inputs.part_type.weight[PART_NAMES.index("user")], real
