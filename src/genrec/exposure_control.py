"""AIGC-aware exposure control for any retriever: cap the AI-generated share of every page.

The AIGC study found that consumers prefer human-made content while AI creators
win slots by volume, so distribution should not simply pass the volume through.
The cascade's post-ranker had such a cap; this module gives every retriever one
(the generative model included), as a wrapper that re-ranks the retriever's own
answers and changes nothing else:

    controlled = AIGCExposureControl(retriever, is_ai, AIGCControlConfig(max_share=0.1))
    controlled.name  # "generative+aigc"

For a request of `k` items it asks the wrapped retriever for `depth · k`
candidates, then fills pages of `page_size` in the retriever's own score order,
at most `floor(max_share · page_size)` AI items per page (an AI item that does not
fit waits for the next page; the rule is `genrec.cascade.rerank.cap_origin_share`).
The best-scored items that fit the cap win; nothing is re-scored. When a page
cannot be filled with human items the list ends early rather than break the cap.
The registry builds it as `NAME+aigc` for every retriever NAME.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from genrec.cascade.rerank import cap_origin_share
from genrec.retrieval import Ranked, Request, Retriever

SUFFIX = "+aigc"
"""Registry names of controlled retrievers: `generative+aigc`, `cascade+aigc`, …"""


@dataclass(frozen=True)
class AIGCControlConfig:
    """`max_share`: the most AI-generated items a page may hold, as a share of `page_size` (1 = no cap).
    `depth`: candidates asked of the wrapped retriever per requested item (depth · k in all).

    The defaults are the setting `benchmarks/aigc_exposure.py` chose on validation for both the
    generative retriever and the cascade of the demo world (one AI item per page of ten, at no
    measurable NDCG@10 cost there); `benchmarks/results/aigc_exposure.md` has the grid."""

    max_share: float = 0.1
    depth: int = 3
    page_size: int = 10

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_share <= 1.0:
            raise ValueError(f"max_share must be in [0, 1], got {self.max_share}")
        if self.depth < 1:
            raise ValueError(f"depth must be ≥ 1, got {self.depth}")
        if self.page_size < 1:
            raise ValueError(f"page_size must be ≥ 1, got {self.page_size}")


def cap_ai_share(answer: Ranked, is_ai: np.ndarray, k: int, max_share: float, page_size: int = 10) -> Ranked:
    """The best `k` items of `answer` with at most `floor(max_share · page_size)` AI items per page.

    `is_ai` bool `[len(answer)]` marks the answer's AI-generated items. Items keep
    their own scores, clipped to stay non-increasing where a waiting AI item moves
    below a lower-scored human one; a ranking that already meets the cap comes back
    unchanged (its first `k` items, its scores).
    """
    is_ai = np.asarray(is_ai, dtype=bool)
    if is_ai.shape != (len(answer),):
        raise ValueError(f"is_ai must be a bool mask [{len(answer)}] over the answer, got shape {is_ai.shape}")
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    if max_share >= 1.0:
        return Ranked(answer.item_ids[:k], answer.scores[:k])
    positions, _ = cap_origin_share(np.arange(len(answer)), answer.scores, is_ai, k, page_size, max_share)
    scores = np.minimum.accumulate(answer.scores[positions]) if len(positions) else answer.scores[:0]
    return Ranked(answer.item_ids[positions], scores)


class AIGCExposureControl:
    """Any `Retriever`, with the AI-generated share of each page capped (see the module docstring).

    `is_ai` is a bool lookup indexed by item id `[max_id + 1]`; ids outside it count as human.
    """

    def __init__(self, retriever: Retriever, is_ai: np.ndarray, config: AIGCControlConfig | None = None):
        if not callable(getattr(retriever, "retrieve", None)):
            raise ValueError("retriever must have a retrieve(requests, k) method")
        self.retriever = retriever
        self.is_ai = np.asarray(is_ai, dtype=bool)
        self.config = config or AIGCControlConfig()
        self.name = f"{getattr(retriever, 'name', type(retriever).__name__)}{SUFFIX}"

    @classmethod
    def for_items(cls, retriever: Retriever, items: pd.DataFrame, config: AIGCControlConfig | None = None) -> "AIGCExposureControl":
        """Wrap `retriever` with the AI lookup of an items table (`item_id`, `origin`)."""
        for column in ("item_id", "origin"):
            if column not in items.columns:
                raise ValueError(f"items must have a {column!r} column to control AI-generated exposure")
        ids = items["item_id"].to_numpy(dtype=np.int64)
        is_ai = np.zeros(int(ids.max()) + 1 if len(ids) else 1, dtype=bool)
        is_ai[ids] = (items["origin"] == "ai").to_numpy()
        return cls(retriever, is_ai, config)

    def retrieve(self, requests: Sequence[Request], k: int) -> list[Ranked]:
        if k < 1:
            raise ValueError(f"k must be ≥ 1, got {k}")
        cfg = self.config
        answers = self.retriever.retrieve(requests, cfg.depth * k)
        return [cap_ai_share(answer, self._is_ai(answer.item_ids), k, cfg.max_share, cfg.page_size) for answer in answers]

    def _is_ai(self, item_ids: np.ndarray) -> np.ndarray:
        known = (item_ids >= 0) & (item_ids < len(self.is_ai))
        out = np.zeros(len(item_ids), dtype=bool)
        out[known] = self.is_ai[item_ids[known]]
        return out
