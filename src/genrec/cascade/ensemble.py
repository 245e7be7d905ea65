"""HarmonRank's two-step relation-aware ensemble, trained on a rank-sum (soft) AUC.

A one-step ensemble `Σ_t w_t s_t` treats the per-objective rankers as unrelated.
HarmonRank first relates them — how well each ranker `t` ranks every objective
`o`'s labels — and builds one *aligned* encoding per objective from the rankers
that know about it, then fuses the aligned encodings with personal weights:

    step 1 (relations)  R[t, o] = GAUC of ranker t's score on objective o's labels     [T, T]
                        A[:, o] = softmax_t((R[t, o] − ½) / relation_temperature)      columns sum to 1
                        h_o     = Σ_t A[t, o] z_t          z_t = standardised logit p_t
    step 2 (fusion)     score   = Σ_o w_o(context) h_o     w = softplus(MLP(context)) ≥ 0

so the weight a ranker gets is `A @ w`: a ranker that ranks the orders well earns
order weight even when it was trained for clicks. The paper learns step 1 by
self-attention over objective tokens; measuring the relations directly keeps
them readable (`relations_`) and costs nothing to train.

Training maximises `Σ_o importance_o · AUC_o(score)` within requests, with AUC
written as a rank-sum: the positives' soft ranks (1 + Σ_j σ((s_i − s_j)/τ)),
less their minimum, over n_pos·n_neg. As τ → 0 the soft ranks become mid-ranks
and the objective is the exact AUC (`soft_rank_auc`).

Inputs as in `genrec.cascade.fuse`: `probs` `[n, T]`, `groups` `[n]`, `context`
`[n, d]`, `labels` `[n, T]` (0/1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genrec.cascade.fuse import FusionConfig, GroupedRows, _check, _WeightNet, logits
from genrec.eval.metrics import gauc


@dataclass
class EnsembleConfig(FusionConfig):
    """`FusionConfig`'s fields (here `temperature` sets the soft rank, σ((s_i − s_j) / temperature)
    on standardised scores), plus step 1's `relation_temperature`."""

    relation_temperature: float = 0.05
    """Step 1: how sharply an objective's encoding prefers the rankers that rank it best (AUC units)."""


def soft_rank_auc(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Per-request AUC as a differentiable rank-sum, `[g, L]` inputs → `[g]` (NaN where a request
    lacks a positive or a negative).

    AUC = (Σ_{i ∈ pos} rank_i − n_pos (n_pos + 1) / 2) / (n_pos · n_neg), with the soft rank
    rank_i = ½ + Σ_{j ∈ request} σ((s_i − s_j) / τ) (the j = i term adds the other ½), which
    tends to the mid-rank (ties share their ranks) as τ → 0.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    pos = (labels > 0.5) & mask
    n_pos = pos.sum(1).to(scores.dtype)
    n_neg = ((labels <= 0.5) & mask).sum(1).to(scores.dtype)
    above = torch.sigmoid((scores[:, :, None] - scores[:, None, :]) / temperature) * mask[:, None, :]
    rank = 0.5 + above.sum(2)  # [g, L]
    rank_sum = (rank * pos).sum(1)
    # The clamp keeps one-class requests finite, so their NaN marker never reaches a gradient.
    value = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg).clamp_min(1)
    return torch.where((n_pos > 0) & (n_neg > 0), value, torch.full_like(value, float("nan")))


def objective_relations(probs: np.ndarray, groups: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """`R[t, o]`: GAUC (within requests) of ranker t's score on objective o's labels, `[T, T]`;
    ½ (no relation) where an objective has no request with both classes."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    tasks = probs.shape[1]
    out = np.full((tasks, tasks), 0.5)
    for t in range(tasks):
        for o in range(tasks):
            value = gauc(groups, probs[:, t], labels[:, o])
            out[t, o] = value if np.isfinite(value) else 0.5
    return out


class RelationAwareEnsemble:
    """HarmonRank: relations between per-objective rankers, then a personal fusion of the
    aligned objective encodings, trained on the rank-sum AUC of every objective."""

    name = "harmonrank"

    def __init__(self, config: EnsembleConfig | None = None, init_weights: tuple[float, ...] = (1.0, 0.5, 0.5)):
        self.config = config or EnsembleConfig()
        self.init_weights = np.asarray(init_weights, dtype=np.float32)

    def fit(self, probs: np.ndarray, groups: np.ndarray, context: np.ndarray, labels: np.ndarray) -> "RelationAwareEnsemble":
        probs = _check(probs, groups)
        labels = np.asarray(labels, dtype=np.float32)
        context = np.asarray(context, dtype=np.float32)
        if labels.shape != probs.shape:
            raise ValueError(f"labels must be [n, tasks] = {probs.shape}, got {labels.shape}")
        if len(context) != len(probs):
            raise ValueError(f"context has {len(context)} rows, expected {len(probs)} (one per row of probs)")
        cfg = self.config
        torch.manual_seed(cfg.seed)
        tasks = probs.shape[1]
        z = logits(probs)
        self.score_mean_, self.score_std_ = z.mean(0), z.std(0) + 1e-6
        self.relations_ = objective_relations(probs, groups, labels)
        shifted = (self.relations_ - 0.5) / cfg.relation_temperature
        self.alignment_ = np.exp(shifted - shifted.max(0)) / np.exp(shifted - shifted.max(0)).sum(0)  # [T rankers, T objectives]
        self.mean_, self.std_ = context.mean(0), context.std(0) + 1e-6

        grouped = GroupedRows(groups)
        aligned = grouped.pad(self._aligned(probs))  # [g, L, T]
        y = grouped.pad(labels)
        mask = grouped.mask()
        ctx = torch.from_numpy((context[grouped.first_row] - self.mean_) / self.std_)
        importance = torch.as_tensor(cfg.task_importance[:tasks], dtype=torch.float32)
        self.net_ = _WeightNet(context.shape[1], tasks, cfg.hidden, self.init_weights)
        optimizer = torch.optim.Adam(self.net_.parameters(), lr=cfg.lr)
        generator = torch.Generator().manual_seed(cfg.seed)
        for _ in range(cfg.epochs):
            for batch in torch.randperm(grouped.n_groups, generator=generator).split(cfg.batch_groups):
                s = (aligned[batch] * self.net_(ctx[batch])[:, None, :]).sum(-1)  # [b, L]
                terms = []
                for t in range(tasks):
                    per_request = soft_rank_auc(s, y[batch, :, t], mask[batch], cfg.temperature)
                    valid = ~torch.isnan(per_request)
                    if valid.any():
                        terms.append(importance[t] * per_request[valid].mean())
                if not terms:
                    continue
                loss = -torch.stack(terms).sum() / importance.sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return self

    def _aligned(self, probs: np.ndarray) -> np.ndarray:
        """Step 1's aligned objective encodings `[n, T]`."""
        z = (logits(probs) - self.score_mean_) / self.score_std_
        return (z @ self.alignment_).astype(np.float32)

    def objective_weights(self, context: np.ndarray) -> np.ndarray:
        """Step 2's personal weights on the aligned objectives, `[n, T]`."""
        with torch.no_grad():
            ctx = torch.from_numpy((np.asarray(context, dtype=np.float32) - self.mean_) / self.std_)
            return self.net_(ctx).numpy()

    def ranker_weights(self, context: np.ndarray) -> np.ndarray:
        """What each per-objective ranker's standardised logit weighs in the score, `[n, T]` (= A @ w)."""
        return self.objective_weights(context) @ self.alignment_.T

    def score(self, probs: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
        if not hasattr(self, "net_"):
            raise ValueError("RelationAwareEnsemble is not fitted")
        if context is None:
            raise ValueError("RelationAwareEnsemble.score needs context [n, d]")
        probs = _check(probs)
        return (self._aligned(probs) * self.objective_weights(context)).sum(1)

    def state_dict(self) -> dict:
        return {"relations": self.relations_, "alignment": self.alignment_, "score_mean": self.score_mean_,
                "score_std": self.score_std_, "mean": self.mean_, "std": self.std_, "net": self.net_.state_dict(),
                "init": self.init_weights}
