"""Fusion: blend the ranker's task probabilities (click, cart, order) into one score.

Three ways, one interface `score(probs, context) -> [n]`:

* `FixedWeightFusion` — the baseline: `Σ_t w_t log p_t` with hand-set weights
  (the product `p_click^w1 · p_cart^w2 · p_order^w3` most feeds run).
* `PersonalizedWeightFusion` — GRADE: a small network maps request/user features to
  positive weights `w1..wn`, trained with a listwise ranking loss (softmax
  cross-entropy against graded relevance: click 1, cart 2, order 3) per request.
* `AUCEnsembleFusion` — HarmonRank: the weights of `Σ_t w_t logit p_t` are trained to
  maximise a differentiable AUC (pairwise-sigmoid rank-sum surrogate) of every task
  at once, within requests, each task weighted by its importance.

Inputs: `probs` float `[n, tasks]`, `groups` int `[n]` (request of each row),
`context` float `[n, d]` (request features, the same on every row of a request),
`gains` float `[n]` (graded relevance) or `labels` `[n, tasks]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from genrec.cascade.logit import log_probability, logit


def _check(probs: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 2:
        raise ValueError(f"probs must be [n, tasks], got shape {probs.shape}")
    if probs.size and (probs.min() < 0 or probs.max() > 1):
        raise ValueError("probs must be probabilities in [0, 1]")
    if groups is not None and len(groups) != len(probs):
        raise ValueError(f"groups has {len(groups)} entries, expected {len(probs)} (one per row of probs)")
    return probs


def log_probs(probs: np.ndarray) -> np.ndarray:
    return log_probability(probs, np.float32).astype(np.float32)


def logits(probs: np.ndarray) -> np.ndarray:
    return logit(probs, np.float32).astype(np.float32)


def stage_probabilities(probs: np.ndarray) -> np.ndarray:
    """Nested P(click), P(cart), P(order) `[n, 3]` → each stage's own probability: P(click),
    P(cart | click), P(order | cart). Fusing these, a weight on order is not also a weight on click
    (`log P(order)` = the sum of the three logs), so a blend can lean on one stage alone."""
    probs = _check(probs)
    floor = np.float32(1e-6)
    stages = probs.copy()
    stages[:, 1:] = probs[:, 1:] / np.maximum(probs[:, :-1], floor)
    return np.clip(stages, floor, 1.0)


class Fusion(Protocol):
    """What the cascade needs of a fitted fusion: its score and what to save."""

    def score(self, probs: np.ndarray, context: np.ndarray | None = None) -> np.ndarray: ...

    def state_dict(self) -> dict: ...


class FixedWeightFusion:
    """`score = Σ_t w_t log p_t` with fixed weights `[tasks]`."""

    name = "fixed"

    def __init__(self, weights: tuple[float, ...] = (1.0, 0.5, 0.5)):
        self.weights = np.asarray(weights, dtype=np.float32)

    def fit(self, *args, **kwargs) -> "FixedWeightFusion":
        return self

    def score(self, probs: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
        probs = _check(probs)
        if probs.shape[1] != len(self.weights):
            raise ValueError(f"probs has {probs.shape[1]} tasks, weights has {len(self.weights)}")
        return log_probs(probs) @ self.weights

    def state_dict(self) -> dict:
        return {"weights": self.weights.tolist()}


@dataclass
class FusionConfig:
    hidden: int = 32
    epochs: int = 10
    lr: float = 0.01
    batch_groups: int = 256
    temperature: float = 0.1
    """AUC surrogate: pairwise sigmoid((s_pos − s_neg) / temperature)."""
    task_importance: tuple[float, ...] = (1.0, 1.0, 2.0)
    seed: int = 0


class GroupedRows:
    """Rows of several requests padded to `[groups, max_rows]`, for listwise losses."""

    def __init__(self, groups: np.ndarray, max_rows: int = 64):
        groups = np.asarray(groups)
        order = np.argsort(groups, kind="stable")
        sorted_groups = groups[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
        sizes = np.diff(np.r_[starts, len(groups)])
        rank = np.arange(len(groups)) - np.repeat(starts, sizes)
        keep = rank < max_rows
        self.n_groups = len(starts)
        self.width = int(min(max_rows, sizes.max())) if len(sizes) else 0
        self.group_of = np.repeat(np.arange(self.n_groups), sizes)[keep]
        self.slot_of = rank[keep]
        self.row = order[keep]
        self.first_row = order[starts]

    def pad(self, values: np.ndarray, fill: float = 0.0) -> torch.Tensor:
        values = np.asarray(values, dtype=np.float32)
        out = np.full((self.n_groups, self.width) + values.shape[1:], fill, dtype=np.float32)
        out[self.group_of, self.slot_of] = values[self.row]
        return torch.from_numpy(out)

    def mask(self) -> torch.Tensor:
        out = np.zeros((self.n_groups, self.width), dtype=bool)
        out[self.group_of, self.slot_of] = True
        return torch.from_numpy(out)


class _WeightNet(nn.Module):
    """Request features `[g, d]` → positive task weights `[g, tasks]`."""

    def __init__(self, dim: int, tasks: int, hidden: int, init: np.ndarray):
        super().__init__()
        head = nn.Linear(hidden, tasks)
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), head)
        nn.init.zeros_(head.weight)
        with torch.no_grad():
            head.bias.copy_(torch.log(torch.expm1(torch.as_tensor(np.maximum(init, 1e-3), dtype=torch.float32))))

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus(self.net(context))


class PersonalizedWeightFusion:
    """GRADE: per-request weights `w(context) > 0`, `score = Σ_t w_t log p_t`."""

    name = "grade"

    def __init__(self, config: FusionConfig | None = None, init_weights: tuple[float, ...] = (1.0, 0.5, 0.5)):
        self.config = config or FusionConfig()
        self.init_weights = np.asarray(init_weights, dtype=np.float32)

    def fit(self, probs: np.ndarray, groups: np.ndarray, context: np.ndarray, gains: np.ndarray) -> "PersonalizedWeightFusion":
        probs = _check(probs, groups)
        context = np.asarray(context, dtype=np.float32)
        if len(context) != len(probs) or len(gains) != len(probs):
            raise ValueError("context and gains must have one row per row of probs")
        cfg = self.config
        torch.manual_seed(cfg.seed)
        self.mean_ = context.mean(0)
        self.std_ = context.std(0) + 1e-6
        grouped = GroupedRows(groups)
        x = grouped.pad(log_probs(probs))  # [g, L, tasks]
        gain = grouped.pad(np.asarray(gains, dtype=np.float32))  # [g, L]
        mask = grouped.mask()
        ctx = torch.from_numpy((context[grouped.first_row] - self.mean_) / self.std_)
        useful = torch.nonzero((gain.max(1).values > gain.masked_fill(~mask, np.inf).min(1).values)).flatten()
        self.net_ = _WeightNet(context.shape[1], probs.shape[1], cfg.hidden, self.init_weights)
        optimizer = torch.optim.Adam(self.net_.parameters(), lr=cfg.lr)
        generator = torch.Generator().manual_seed(cfg.seed)
        for _ in range(cfg.epochs):
            for batch in useful[torch.randperm(len(useful), generator=generator)].split(cfg.batch_groups):
                w = self.net_(ctx[batch])  # [b, tasks]
                s = (x[batch] * w[:, None, :]).sum(-1).masked_fill(~mask[batch], -1e9)  # [b, L]
                loss = listwise_softmax_loss(s, gain[batch], mask[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return self

    def weights(self, context: np.ndarray) -> np.ndarray:
        """Per-row task weights `[n, tasks]`."""
        with torch.no_grad():
            ctx = torch.from_numpy((np.asarray(context, dtype=np.float32) - self.mean_) / self.std_)
            return self.net_(ctx).numpy()

    def score(self, probs: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
        if not hasattr(self, "net_"):
            raise ValueError("PersonalizedWeightFusion is not fitted")
        if context is None:
            raise ValueError("PersonalizedWeightFusion.score needs context [n, d]")
        probs = _check(probs)
        return (log_probs(probs) * self.weights(context)).sum(1)

    def state_dict(self) -> dict:
        return {"mean": self.mean_, "std": self.std_, "net": self.net_.state_dict(), "dim": len(self.mean_),
                "tasks": len(self.init_weights), "init": self.init_weights}

    @classmethod
    def from_state_dict(cls, state: dict, config: FusionConfig | None = None) -> "PersonalizedWeightFusion":
        fusion = cls(config, tuple(np.asarray(state["init"]).tolist()))
        fusion.mean_, fusion.std_ = np.asarray(state["mean"]), np.asarray(state["std"])
        fusion.net_ = _WeightNet(int(state["dim"]), int(state["tasks"]), fusion.config.hidden, fusion.init_weights)
        fusion.net_.load_state_dict(state["net"])
        return fusion


class AUCEnsembleFusion:
    """HarmonRank: `score = Σ_t w_t logit p_t`, `w` trained on the soft AUC of every task."""

    name = "harmonrank"

    def __init__(self, config: FusionConfig | None = None, init_weights: tuple[float, ...] = (1.0, 0.5, 0.5)):
        self.config = config or FusionConfig()
        self.init_weights = np.asarray(init_weights, dtype=np.float32)

    def fit(self, probs: np.ndarray, groups: np.ndarray, labels: np.ndarray) -> "AUCEnsembleFusion":
        probs = _check(probs, groups)
        labels = np.asarray(labels, dtype=np.float32)
        if labels.shape != probs.shape:
            raise ValueError(f"labels must be [n, tasks] = {probs.shape}, got {labels.shape}")
        cfg = self.config
        torch.manual_seed(cfg.seed)
        grouped = GroupedRows(groups)
        x = grouped.pad(logits(probs))
        y = grouped.pad(labels)
        mask = grouped.mask()
        importance = torch.as_tensor(cfg.task_importance[: probs.shape[1]], dtype=torch.float32)
        raw = nn.Parameter(torch.log(torch.expm1(torch.as_tensor(np.maximum(self.init_weights, 1e-3)))))
        optimizer = torch.optim.Adam([raw], lr=cfg.lr * 5)
        generator = torch.Generator().manual_seed(cfg.seed)
        for _ in range(cfg.epochs):
            for batch in torch.randperm(len(x), generator=generator).split(cfg.batch_groups):
                s = (x[batch] * nn.functional.softplus(raw)).sum(-1)  # [b, L]
                loss = -sum(
                    importance[t] * soft_grouped_auc(s, y[batch, :, t], mask[batch], cfg.temperature)
                    for t in range(probs.shape[1])
                ) / importance.sum()
                if loss.requires_grad:
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
        self.weights_ = nn.functional.softplus(raw).detach().numpy()
        return self

    def score(self, probs: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
        if not hasattr(self, "weights_"):
            raise ValueError("AUCEnsembleFusion is not fitted")
        return logits(_check(probs)) @ self.weights_

    def state_dict(self) -> dict:
        return {"weights": np.asarray(self.weights_).tolist()}


def listwise_softmax_loss(scores: torch.Tensor, gains: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """ListNet-style loss `[g, L]`: cross-entropy of softmax(scores) against gains normalised per request."""
    target = torch.where(mask, torch.exp2(gains) - 1, torch.zeros_like(gains))
    target = target / target.sum(1, keepdim=True).clamp_min(1e-9)
    return -(target * torch.log_softmax(scores, 1)).sum(1).mean()


def soft_grouped_auc(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Mean over requests of the pairwise-sigmoid AUC surrogate; `[g, L]` inputs → scalar.

    Per request: mean over (positive, negative) pairs of σ((s_pos − s_neg) / τ); as τ → 0
    it is the AUC (the rank-sum statistic). Requests without both classes are skipped.
    """
    pos = (labels > 0.5) & mask
    neg = (labels <= 0.5) & mask
    pair = pos[:, :, None] & neg[:, None, :]  # [g, L, L]
    count = pair.sum((1, 2))
    valid = count > 0
    if not valid.any():
        return scores.sum() * 0.0
    diff = torch.sigmoid((scores[:, :, None] - scores[:, None, :]) / temperature)
    per_group = (diff * pair).sum((1, 2)) / count.clamp_min(1)
    return per_group[valid].mean()
