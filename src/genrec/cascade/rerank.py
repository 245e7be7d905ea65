"""Post-rank policies: reorder a ranked list for the page, not for the score.

* `mmr_rerank` — Maximal Marginal Relevance by category: trade a little score
  for not showing five items of the same leaf category in a row.
* `cap_origin_share` — exposure control by item origin (the AIGC study: consumers
  prefer human-made content, so AI-generated items get at most a share of each page).

`PostRanker` chains them; each works on one request's `item_ids` `[n]` (best first)
and `scores` `[n]`, and returns a new `(item_ids, scores)` pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def mmr_rerank(
    item_ids: np.ndarray, scores: np.ndarray, categories: np.ndarray, k: int, trade_off: float = 0.8,
    parents: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy MMR: pick `argmax λ·relevance − (1−λ)·max similarity to the picked`.

    `categories[i]` is the leaf category code of `item_ids[i]`; two items of one leaf
    have similarity 1, of one parent (`parents`, optional) 0.5, else 0. Relevance is
    the score min-max scaled to [0, 1] over the candidates. `trade_off=1` keeps the
    input order.
    """
    item_ids = np.asarray(item_ids, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    categories = np.asarray(categories)
    if not (len(scores) == len(categories) == len(item_ids)):
        raise ValueError("item_ids, scores and categories must have the same length")
    if not 0.0 <= trade_off <= 1.0:
        raise ValueError(f"trade_off must be in [0, 1], got {trade_off}")
    n = len(item_ids)
    k = min(k, n)
    if n == 0 or k == 0:
        return item_ids[:0], scores[:0].astype(np.float32)
    span = scores.max() - scores.min()
    relevance = (scores - scores.min()) / span if span > 0 else np.ones(n)
    redundancy = np.zeros(n)
    taken = np.zeros(n, dtype=bool)
    picked = []
    for _ in range(k):
        gain = np.where(taken, -np.inf, trade_off * relevance - (1 - trade_off) * redundancy)
        best = int(np.argmax(gain))
        picked.append(best)
        taken[best] = True
        same = (categories == categories[best]).astype(np.float64)
        if parents is not None:
            same = np.maximum(same, 0.5 * (np.asarray(parents) == parents[best]))
        redundancy = np.maximum(redundancy, same)
    order = np.asarray(picked, dtype=np.int64)
    return item_ids[order], _non_increasing(len(order))


def cap_origin_share(
    item_ids: np.ndarray, scores: np.ndarray, is_ai: np.ndarray, k: int, page_size: int = 10, max_share: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Fill pages of `page_size` in score order, at most `floor(max_share·page_size)` AI items each.

    An AI item that does not fit its page waits for the next page; when no human
    item is left to fill a page, the list ends early rather than break the cap.
    """
    item_ids = np.asarray(item_ids, dtype=np.int64)
    is_ai = np.asarray(is_ai, dtype=bool)
    if len(is_ai) != len(item_ids) or len(scores) != len(item_ids):
        raise ValueError("item_ids, scores and is_ai must have the same length")
    if page_size < 1 or not 0.0 <= max_share <= 1.0:
        raise ValueError(f"page_size must be ≥ 1 and max_share in [0, 1], got {page_size}, {max_share}")
    quota = int(np.floor(max_share * page_size))
    humans = [int(i) for i in np.flatnonzero(~is_ai)]
    ais = [int(i) for i in np.flatnonzero(is_ai)]
    out: list[int] = []
    while len(out) < k and (humans or ais):
        page: list[int] = []
        ai_on_page = 0
        while len(page) < page_size and len(out) + len(page) < k and (humans or ais):
            take_ai = ais and ai_on_page < quota and (not humans or ais[0] < humans[0])
            if take_ai:
                page.append(ais.pop(0))
                ai_on_page += 1
            elif humans:
                page.append(humans.pop(0))
            else:
                break
        out += page
        if len(page) < page_size and len(out) < k:
            break
    picked = np.asarray(out, dtype=np.int64)
    return item_ids[picked], _non_increasing(len(picked))


@dataclass
class PostRankConfig:
    mmr_trade_off: float = 1.0
    """1 keeps the ranker's order; lower values diversify categories more."""
    ai_page_size: int = 10
    ai_max_share: float = 1.0
    """1 lets any share of AI-generated items through."""


class PostRanker:
    """MMR by category, then the AI-generated exposure cap, on one request's list."""

    def __init__(self, config: PostRankConfig, leaf_category: np.ndarray, parent_category: np.ndarray, is_ai: np.ndarray):
        self.config = config
        self.leaf_category = np.asarray(leaf_category)
        self.parent_category = np.asarray(parent_category)
        self.is_ai = np.asarray(is_ai, dtype=bool)

    def __call__(self, item_ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        if cfg.mmr_trade_off < 1.0:
            # MMR is greedy (k passes over the pool): keep the pool a few pages deep.
            pool_ids, pool_scores = item_ids[: 4 * k], scores[: 4 * k]
            item_ids, scores = mmr_rerank(
                pool_ids, pool_scores, self.leaf_category[pool_ids], 2 * k, cfg.mmr_trade_off, self.parent_category[pool_ids],
            )
        if cfg.ai_max_share < 1.0:
            item_ids, scores = cap_origin_share(item_ids, scores, self.is_ai[item_ids], k, cfg.ai_page_size, cfg.ai_max_share)
        return item_ids[:k], np.asarray(scores, dtype=np.float32)[:k]


def _non_increasing(n: int) -> np.ndarray:
    """Scores for a re-ordered list: the new rank order, as `Ranked` expects (best first)."""
    return (n - np.arange(n, dtype=np.float32)) / max(n, 1)
