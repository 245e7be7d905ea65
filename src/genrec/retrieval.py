"""The one interface every retriever implements: requests in, ranked items out.

A request with `query=None` is recommendation; with a query it is search. The
same request type feeds the generative model, the baselines and the cascade, so
the evaluation harness and the server hold any of them interchangeably.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

ACTIONS: tuple[str, ...] = ("impression", "click", "cart", "order")


@dataclass(frozen=True)
class Request:
    """What a retriever may know when it answers.

    `history*` are the user's past interactions strictly before `ts`, oldest
    first; the three tuples are aligned. A retriever must never see the item it
    is asked to predict: requests built by `genrec.data.splits` guarantee it.
    """

    user_id: int
    query: str | None = None
    scenario: str = "home_feed"
    ts: int = 0
    history: tuple[int, ...] = ()
    history_actions: tuple[str, ...] = ()
    history_ts: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.history)
        if self.history_actions and len(self.history_actions) != n:
            raise ValueError(f"history_actions has {len(self.history_actions)} entries, history has {n}")
        if self.history_ts and len(self.history_ts) != n:
            raise ValueError(f"history_ts has {len(self.history_ts)} entries, history has {n}")
        if self.query is not None and not isinstance(self.query, str):
            raise ValueError(f"query must be a string or None, got {type(self.query).__name__}")

    @property
    def is_search(self) -> bool:
        return self.query is not None


@dataclass(frozen=True)
class Ranked:
    """A retriever's answer to one request: item ids best first, with scores.

    `item_ids` is int64 `[n]` (n ≤ k, no duplicates); `scores` is float32 `[n]`,
    non-increasing. Scores are only comparable within one retriever.
    """

    item_ids: np.ndarray
    # None (no scores given) is replaced by an array in __post_init__, so readers always see an ndarray.
    scores: np.ndarray = field(default=None)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        ids = np.asarray(self.item_ids, dtype=np.int64).reshape(-1)
        scores = (
            np.zeros(len(ids), dtype=np.float32)
            if self.scores is None
            else np.asarray(self.scores, dtype=np.float32).reshape(-1)
        )
        if len(scores) != len(ids):
            raise ValueError(f"Ranked has {len(ids)} item ids but {len(scores)} scores")
        object.__setattr__(self, "item_ids", ids)
        object.__setattr__(self, "scores", scores)

    def __len__(self) -> int:
        return len(self.item_ids)


@runtime_checkable
class Retriever(Protocol):
    """Anything that ranks items for a batch of requests."""

    name: str

    def retrieve(self, requests: Sequence[Request], k: int) -> list[Ranked]:
        """Return one `Ranked` of at most `k` items per request, in order."""
        ...


def top_k(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> Ranked:
    """Best `k` entries of a dense score vector `[n_items]` as a `Ranked`.

    Index = item id. `exclude` lists item ids that must not come back (e.g. the
    padding id 0 or items a policy removes).
    """
    scores = np.asarray(scores, dtype=np.float32).copy()
    if exclude is not None and len(exclude):
        scores[np.asarray(exclude, dtype=np.int64)] = -np.inf
    k = min(k, int(np.isfinite(scores).sum()))
    if k <= 0:
        return Ranked(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
    part = np.argpartition(-scores, k - 1)[:k]
    order = part[np.lexsort((part, -scores[part]))]
    return Ranked(order.astype(np.int64), scores[order])
