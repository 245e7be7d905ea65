"""Transformer layers: attention on `F.scaled_dot_product_attention`, pre-norm blocks.

`DecoderBlock.step` is the incremental form beam search uses: one new position
against a growing self-attention cache, and each request's beams as query
positions against that request's one copy of the cross-attention memory.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from genrec.model.config import GenerativeConfig
from genrec.model.dropout import Dropout, dropout
from genrec.model.moe import SparseMoE


class Attention(nn.Module):
    """Multi-head attention on `F.scaled_dot_product_attention`."""

    def __init__(self, config: GenerativeConfig):
        super().__init__()
        self.n_heads, self.head_dim = config.n_heads, config.d_model // config.n_heads
        self.q = nn.Linear(config.d_model, config.d_model)
        self.kv = nn.Linear(config.d_model, 2 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout

    def heads(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, d] → [B, H, T, hd]
        return x.view(x.shape[0], x.shape[1], self.n_heads, self.head_dim).transpose(1, 2)

    def merge(self, x: torch.Tensor) -> torch.Tensor:  # [B, H, T, hd] → [B, T, d]
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)

    def project_memory(self, memory: torch.Tensor, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values `[N, H, S, hd]` of `memory [B, S, d]`; `rows [N]` picks the memory row of
        each output row (None: N = B, row n reads memory n). Picking the rows of the projection's
        contiguous output, before it is split into heads, keeps the backward pass's index_add on
        contiguous memory: picking the head views instead made it 3× slower on a CPU."""
        kv = self.kv(memory)
        if rows is not None:
            kv = kv.index_select(0, rows)
        k, v = kv.chunk(2, dim=-1)
        return self.heads(k), self.heads(v)

    def attend(self, q, k, v, mask=None, causal=False) -> torch.Tensor:
        """`mask` True = may attend, broadcast to `[B, H, Tq, Tk]`; `causal` for square self-attention."""
        if self.training and self.dropout > 0.0:
            return _attention_with_dropout(q, k, v, mask, causal, self.dropout)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)

    def forward(self, x: torch.Tensor, source: torch.Tensor, mask=None, causal=False) -> torch.Tensor:
        k, v = self.project_memory(source)
        return self.out(self.merge(self.attend(self.heads(self.q(x)), k, v, mask, causal)))


class CrossAttention(Attention):
    def step(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, beams: int) -> torch.Tensor:
        """x `[B*beams, 1, d]` against one memory per request `[B, H, S, hd]`:
        the beams of a request become `beams` query positions."""
        n = x.shape[0]
        q = self.q(x).view(n // beams, beams, self.n_heads, self.head_dim).transpose(1, 2)  # [B, H, beams, hd]
        y = self.attend(q, k, v, mask)  # [B, H, beams, hd]
        return self.out(y.transpose(1, 2).reshape(n, 1, -1))


class MLP(nn.Module):
    def __init__(self, config: GenerativeConfig):
        super().__init__()
        self.up = nn.Linear(config.d_model, config.d_ff)
        self.down = nn.Linear(config.d_ff, config.d_model)
        self.drop = Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.down(F.gelu(self.up(x))))


class EncoderBlock(nn.Module):
    """Pre-norm: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: GenerativeConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(config.d_model), nn.LayerNorm(config.d_model)
        self.attn, self.mlp = Attention(config), MLP(config)
        self.drop = Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, h, mask))
        return x + self.mlp(self.norm2(x))


def feed_forward(config: GenerativeConfig) -> nn.Module:
    """A decoder block's feed-forward: the dense MLP, or a sparse MoE when `moe_experts` > 0."""
    if config.moe_experts:
        return SparseMoE(config.d_model, config.d_ff, config.moe_experts, config.moe_top_k, config.dropout)
    return MLP(config)


class DecoderBlock(nn.Module):
    """Pre-norm causal self-attention, cross-attention to the encoder, feed-forward (MLP or MoE)."""

    def __init__(self, config: GenerativeConfig):
        super().__init__()
        d = config.d_model
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn, self.cross, self.mlp = Attention(config), CrossAttention(config), feed_forward(config)
        self.drop = Dropout(config.dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.forward_projected(x, *self.cross.project_memory(memory), mask)

    def forward_projected(self, x: torch.Tensor, memory_k: torch.Tensor, memory_v: torch.Tensor,
                          mask: torch.Tensor) -> torch.Tensor:
        """`forward` with the memory's keys and values already projected, one set per row
        `[N, H, S, hd]` (sequence training: many targets share one window's projection)."""
        h = self.norm1(x)
        x = x + self.drop(self.self_attn(h, h, causal=True))
        c = self.cross
        y = c.attend(c.heads(c.q(self.norm2(x))), memory_k, memory_v, mask)
        x = x + self.drop(c.out(c.merge(y)))
        return x + self.mlp(self.norm3(x))

    def step(self, x, cache, memory_k, memory_v, mask, beams):
        """One new position `[N, 1, d]`; returns it and the grown self-attention cache."""
        a = self.self_attn
        h = self.norm1(x)
        k, v = a.project_memory(h)
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        x = x + a.out(a.merge(a.attend(a.heads(a.q(h)), k, v)))
        x = x + self.cross.step(self.norm2(x), memory_k, memory_v, mask, beams)
        return x + self.mlp(self.norm3(x)), (k, v)


def _attention_with_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                            causal: bool, p: float) -> torch.Tensor:
    """What `F.scaled_dot_product_attention(..., dropout_p=p)` computes, with the cheaper dropout mask
    (`genrec.model.dropout`): on a CPU, SDPA's dropout draws `bernoulli_` on the attention weights."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # [B, H, Tq, Tk]
    if causal:
        mask = torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return dropout(scores.softmax(dim=-1), p, True) @ v


def init_weights(module: nn.Module) -> None:
    """N(0, 0.02) weights, zero biases and padding rows (GPT-2's scheme)."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
