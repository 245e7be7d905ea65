"""Exposure by origin and by creator: who gets the slots a retriever hands out.

Accuracy metrics say whether the target item came back; exposure says who the
rest of the page went to. The AIGC study's concern is two-sided: consumers
prefer human-made content, while AI creators list many items each and can win
slots by volume. So for every retriever we count, over the top `k` of every
answer:

* the share of slots held by AI-generated items, against the catalogue's own AI
  share (a retriever that mirrors the catalogue is neutral; above it, AIGC is
  amplified), also weighted by position (`1 / log2(rank + 1)`, the NDCG
  discount: the first slot counts most);
* how concentrated the slots are by creator: the Gini coefficient over every
  catalogue creator (creators never shown count as zero exposure, so a
  retriever that shows a few creators only is unequal), the share of slots the
  top 1% of creators take, and how many distinct creators were shown at all.

A data set whose items carry neither AI-generated items nor a `creator_id`
column has nothing to report; `ItemOrigins.from_items` then returns None.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

EXPOSURE_K = 10
"""Slots per answer that count as exposure: one page."""
TOP_CREATOR_SHARE = 0.01


@dataclass(frozen=True)
class ItemOrigins:
    """Per-item lookups indexed by item id (so `is_ai[item_ids]` works on a whole ranking).

    `is_ai` bool `[max_id + 1]` or None when the items carry no AI origin;
    `creator` int64 `[max_id + 1]` (-1 for ids not in the table) or None without
    a `creator_id` column. `catalogue_ai_share` is the AI share of the items table.
    """

    is_ai: np.ndarray | None
    creator: np.ndarray | None
    catalogue_ai_share: float
    n_creators: int

    @classmethod
    def from_items(cls, items: pd.DataFrame) -> "ItemOrigins | None":
        """Lookups from an items table (`item_id`, `origin`, optional `creator_id`); None when there is nothing to measure."""
        if "item_id" not in items.columns:
            raise ValueError("items must have an item_id column")
        ids = items["item_id"].to_numpy(dtype=np.int64)
        size = int(ids.max()) + 1 if len(ids) else 1
        is_ai = creator = None
        share = float("nan")
        if "origin" in items.columns and (items["origin"] == "ai").any():
            is_ai = np.zeros(size, dtype=bool)
            is_ai[ids] = (items["origin"] == "ai").to_numpy()
            share = float(is_ai[ids].mean())
        n_creators = 0
        if "creator_id" in items.columns:
            creator = np.full(size, -1, dtype=np.int64)
            creator[ids] = items["creator_id"].fillna(-1).to_numpy(dtype=np.int64)  # unknown creator: -1, not counted
            n_creators = int(items["creator_id"].nunique())
        if is_ai is None and creator is None:
            return None
        return cls(is_ai, creator, share, n_creators)


@dataclass(frozen=True)
class Exposure:
    """Exposure of one retriever's answers (over the requests measured). NaN where the data cannot say."""

    k: int
    slots: int
    ai_share: float
    ai_share_weighted: float
    catalogue_ai_share: float
    creators_exposed: int
    creators: int
    creator_gini: float
    top_creator_share: float
    """Share of slots held by the most-exposed `TOP_CREATOR_SHARE` of catalogue creators (at least one)."""
    per_request_ai_share: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    """AI share of each request's top `k` `[n_requests]` (NaN for an empty answer): bootstrap it for an interval."""


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative `values` `[n]`: 0 when all equal, (n−1)/n when one holds everything.

    NaN for an empty input or an all-zero one (no exposure to share out).
    """
    x = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    if len(x) and x[0] < 0:
        raise ValueError("values must be non-negative")
    total = x.sum()
    if not len(x) or total <= 0:
        return float("nan")
    n = len(x)
    ranks = np.arange(1, n + 1)
    return float(2.0 * (ranks * x).sum() / (n * total) - (n + 1) / n)


def position_weights(k: int) -> np.ndarray:
    """`1 / log2(rank + 1)` for ranks 1..k `[k]`: the NDCG discount."""
    return 1.0 / np.log2(np.arange(2, k + 2))


def measure_exposure(ranked: np.ndarray, origins: ItemOrigins, k: int = EXPOSURE_K) -> Exposure:
    """Exposure over the top `k` of each row of `ranked` (int64 `[n_requests, ≥k]`, padding -1)."""
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    ranked = np.asarray(ranked, dtype=np.int64)
    if ranked.ndim != 2:
        raise ValueError(f"ranked must be [n_requests, k], got shape {ranked.shape}")
    top = ranked[:, :k]
    shown = top >= 0
    slots = int(shown.sum())
    weights = np.broadcast_to(position_weights(top.shape[1]), top.shape)
    ai_share = ai_weighted = float("nan")
    per_request = np.full(len(top), np.nan)
    if origins.is_ai is not None and slots:
        is_ai = origins.is_ai[np.where(shown, top, 0)] & shown
        ai_share = float(is_ai.sum() / slots)
        ai_weighted = float((weights * is_ai).sum() / (weights * shown).sum())
        counts = shown.sum(axis=1)
        per_request[counts > 0] = is_ai.sum(axis=1)[counts > 0] / counts[counts > 0]
    gini_value = top_share = float("nan")
    creators_exposed = 0
    if origins.creator is not None and slots:
        creators = origins.creator[top[shown]]
        creators = creators[creators >= 0]
        _, counts = np.unique(creators, return_counts=True)
        creators_exposed = len(counts)
        # Creators never shown hold zero exposure: they belong in the inequality.
        everyone = np.concatenate([counts, np.zeros(max(origins.n_creators - len(counts), 0))])
        gini_value = gini(everyone)
        top_n = max(1, int(np.ceil(TOP_CREATOR_SHARE * max(origins.n_creators, len(counts)))))
        top_share = float(np.sort(counts)[::-1][:top_n].sum() / max(counts.sum(), 1))
    return Exposure(k, slots, ai_share, ai_weighted, origins.catalogue_ai_share, creators_exposed,
                    origins.n_creators, gini_value, top_share, per_request)
