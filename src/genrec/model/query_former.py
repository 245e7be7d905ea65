"""`QueryFormer`: a long history compressed to a few tokens before the encoder reads it.

Full attention over a request costs O(S²) in its length S, and a long-term history
(hundreds of carts and orders) would dominate S. OneMall's answer, taken here: M
learned query vectors cross-attend to the embedded long history once and replace it
by their M outputs, so the encoder's sequence grows by M, not by the history's length
(`GenerativeConfig.long_queries`, 0 = off: the long view enters whole).

Order: the module itself is a set function of the positions it reads — permuting
the long view's positions (with their mask) leaves its output unchanged. What
order the history had reaches it only through the inputs, whose embeddings carry
the position counted from the newest item and the recency bucket
(`InputEmbedding.parts`): the compressed view is as order-aware as the full one.
Padding is masked and cannot change the output; a request with no long-term item
gets M zero tokens, masked out of the encoder.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from genrec.model.config import GenerativeConfig
from genrec.model.embedding import INPUT_INIT_STD, Part
from genrec.model.layers import MLP, Attention


class QueryFormer(nn.Module):
    """`n_queries` learned queries: one pre-norm cross-attention and MLP over a part `[B, T, d]`."""

    def __init__(self, config: GenerativeConfig, n_queries: int):
        super().__init__()
        d = config.d_model
        self.queries = nn.Parameter(torch.randn(n_queries, d) * INPUT_INIT_STD)
        self.norm_queries, self.norm_source, self.norm_mlp = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn, self.mlp = Attention(config), MLP(config)
        self.norm_out = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, real: torch.Tensor) -> Part:
        """`x [B, T, d]` with mask `real [B, T]` (True = a real position), or `[B, M, T]` (what each
        query may read) → `[B, M, d]` and its mask `[B, M]` (False for a query with no real position
        to read: its token is 0)."""
        batch, n_queries = x.shape[0], self.queries.shape[0]
        sees = real[:, None, :].expand(-1, n_queries, -1) if real.ndim == 2 else real  # [B, M, T]
        has = sees.any(dim=2)  # [B, M]
        # A query with nothing to read attends to its padding (any finite output) and is then zeroed:
        # an all-False mask would make the softmax NaN.
        mask = (sees | ~has[:, :, None])[:, None]
        q = self.queries.to(x.dtype).expand(batch, -1, -1)
        h = q + self.attn(self.norm_queries(q), self.norm_source(x), mask)
        h = h + self.mlp(self.norm_mlp(h))
        out = self.norm_out(h) * has[:, :, None].to(h.dtype)
        return out, has
