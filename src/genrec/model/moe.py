"""`SparseMoE`: a top-k routed mixture of feed-forward experts, in place of a block's MLP.

Each token's router picks its `top_k` highest-scoring experts and sums their outputs
weighted by the softmax of those k scores (OneMall decodes with a sparse MoE): the
parameters grow with the number of experts, the compute per token only with k.

Routing alone collapses: the experts that win early get the gradient and keep
winning. `balance_loss` (Switch Transformer's auxiliary loss) is
`E * sum_e f_e * p_e`, with `f_e` the share of the step's routed slots that went to
expert e and `p_e` the mean router probability of e; it is 1 when usage is uniform
and grows towards E as usage concentrates on one expert. Its gradient flows through
`p_e` and pushes probability away from the crowded experts. The model adds it to the
training loss with weight `GenerativeConfig.moe_balance_weight`.

The layer keeps the last forward's balance loss (`last_balance_loss`, with its graph)
and counts training's routed slots per expert since `take_usage()` was last called, so that the
training loop can report expert usage without a second return value threaded through
every block.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from genrec.model.dropout import Dropout


def route(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The experts `[T, k]` each token `logits [T, E]` is sent to, and their weights `[T, k]`
    (softmax over the chosen k scores, so each token's weights sum to 1)."""
    scores, experts = logits.topk(top_k, dim=-1)
    return experts, scores.softmax(dim=-1)


def balance_loss(logits: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Switch's load-balancing loss of router logits `[T, E]` and the chosen experts `[T, k]`:
    `E * sum_e f_e * p_e`; 1 for uniform usage, up to E when one expert takes everything."""
    n_experts = logits.shape[-1]
    probabilities = logits.float().softmax(dim=-1).mean(dim=0)  # p_e, differentiable
    counts = torch.bincount(experts.reshape(-1), minlength=n_experts).to(probabilities.dtype)
    share = counts / counts.sum().clamp(min=1.0)  # f_e, a constant
    return n_experts * (share * probabilities).sum()


class SparseMoE(nn.Module):
    """`n_experts` GELU feed-forward experts `d → d_ff → d`, `top_k` of them per token; `x [..., d]`."""

    def __init__(self, d_model: int, d_ff: int, n_experts: int, top_k: int, dropout: float):
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"moe_top_k must be in [1, moe_experts={n_experts}], got {top_k}")
        self.top_k = top_k
        self.router = nn.Linear(d_model, n_experts)
        self.up = nn.ModuleList(nn.Linear(d_model, d_ff) for _ in range(n_experts))
        self.down = nn.ModuleList(nn.Linear(d_ff, d_model) for _ in range(n_experts))
        self.drop = Dropout(dropout)
        self.last_balance_loss: torch.Tensor | None = None
        self.usage = torch.zeros(n_experts)  # routed slots per expert since take_usage (not state)

    @property
    def n_experts(self) -> int:
        return len(self.up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])  # [T, d]
        logits = self.router(tokens)  # [T, E]
        experts, weights = route(logits, self.top_k)
        self.last_balance_loss = balance_loss(logits, experts)
        if self.training:
            with torch.no_grad():
                counts = torch.bincount(experts.reshape(-1), minlength=self.n_experts)
                self.usage = self.usage.to(counts.device) + counts.to(self.usage.dtype)
        out = torch.zeros_like(tokens)
        for e in range(self.n_experts):
            rows, slot = (experts == e).nonzero(as_tuple=True)
            if not len(rows):
                continue
            h = self.down[e](F.gelu(self.up[e](tokens.index_select(0, rows))))
            out = out.index_add(0, rows, (h * weights[rows, slot, None].to(h.dtype)).to(out.dtype))
        return self.drop(out.reshape(shape))

    def take_usage(self) -> torch.Tensor:
        """Each expert's share `[E]` of the slots routed since the last call (zeros if none); resets the count."""
        usage, self.usage = self.usage, torch.zeros_like(self.usage)
        return usage / usage.sum().clamp(min=1.0)
