"""Item-to-item collaborative filtering from training histories.

Similarity: two items are similar when the same users interact with them close
together in time. Every pair of positive interactions at most `window` steps
apart in a user's training sequence adds `1 / log2(2 + n_user)` (very active
users say less about any one pair, the IUF weighting of ItemCF-IUF) times
`position_decay ** (gap - 1)`; the sum is divided by `sqrt(n_i * n_j)` (item
interaction counts), so popular items are not similar to everything. Each item
keeps its `neighbours` most similar items.

Recommendation: cf = Σ over the last `max_history` history items of
`recency_decay ** age × similarity(history item, candidate)`, and
score = `cf / max cf + popularity_weight × sqrt(popularity prior)`: in a sparse
world most neighbour lists are short and noisy, and on the default world's
validation split this blend lifts Recall@10 from 0.068 (cf first, popularity
as filler) to 0.127 (popularity alone: 0.101). Users without history get the
popularity list.
Search (personalised re-scoring, as in PR²'s query-relevant CF): the BM25 top
`search_candidates` items for the query are re-scored by
`bm25 / max bm25 + history_weight × cf / max cf + popularity_weight × sqrt(prior)`;
items BM25 does not match follow by popularity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genrec.baselines.bm25 import BM25Retriever
from genrec.baselines.popularity import item_popularity, n_item_slots, popularity_prior
from genrec.data.dataset import Dataset
from genrec.data.splits import Split, interactions
from genrec.features.cooccurrence import windowed_cooccurrence
from genrec.retrieval import Ranked, Request, top_k


class ItemCFRetriever:
    """Co-occurrence item-CF for recommendation; history re-scoring of BM25 candidates for search."""

    name = "itemcf"

    def __init__(
        self,
        window: int = 5,
        position_decay: float = 0.7,
        neighbours: int = 200,
        max_history: int = 20,
        recency_decay: float = 0.8,
        search_candidates: int = 200,
        history_weight: float = 1.0,
        popularity_weight: float = 1.0,
    ):
        if window < 1 or neighbours < 1 or max_history < 1 or search_candidates < 1:
            raise ValueError("window, neighbours, max_history and search_candidates must all be ≥ 1")
        for field, value in (("position_decay", position_decay), ("recency_decay", recency_decay)):
            if not 0 < value <= 1:
                raise ValueError(f"{field} must be in (0, 1], got {value}")
        self.window, self.position_decay, self.neighbours = window, position_decay, neighbours
        self.max_history, self.recency_decay = max_history, recency_decay
        self.search_candidates, self.history_weight = search_candidates, history_weight
        if popularity_weight < 0 or history_weight < 0:
            raise ValueError(f"popularity_weight and history_weight must be ≥ 0, got {popularity_weight}, {history_weight}")
        self.popularity_weight = popularity_weight

    @classmethod
    def from_run(cls, run: Path, dataset: Dataset, split: Split) -> "ItemCFRetriever":
        n_slots = n_item_slots(dataset)
        popularity = item_popularity(split.train, n_slots)
        return cls().fit(split.train, n_slots, bm25=BM25Retriever().fit(dataset, popularity))

    def fit(self, train_events: pd.DataFrame, n_slots: int, bm25: BM25Retriever | None = None) -> "ItemCFRetriever":
        """Learn item–item similarity `[n_slots, n_slots]` (sparse) from training events.

        `bm25` supplies search candidates; without it search requests are
        answered like recommendation requests.
        """
        inter = interactions(train_events)
        users = inter["user_id"].to_numpy(dtype=np.int64)
        items = inter["item_id"].to_numpy(dtype=np.int64)
        if len(items) and items.max() >= n_slots:
            raise ValueError(f"train_events has item id {items.max()} but n_slots is {n_slots}")
        self.n_slots_, self.bm25_ = n_slots, bm25
        self.prior_ = popularity_prior(np.bincount(items, minlength=n_slots).astype(np.float64))
        self.similarity_ = self._similarity(users, items, n_slots)
        return self

    def retrieve(self, requests: Sequence[Request], k: int) -> list[Ranked]:
        history_scores = self.history_scores(requests)
        answers = []
        for request, cf in zip(requests, history_scores):
            if request.query is not None and self.bm25_ is not None:
                scores = self._search_scores(request.query, cf)
            else:
                scores = cf / max(float(cf.max()), 1e-12) + self.popularity_weight * np.sqrt(self.prior_)
            answers.append(top_k(scores, k, exclude=np.array([0])))
        return answers

    def history_scores(self, requests: Sequence[Request]) -> np.ndarray:
        """Recency-weighted similarity of every item to each request's history, `[batch, n_slots]`."""
        rows, cols, weights = [], [], []
        for row, request in enumerate(requests):
            recent = np.asarray(request.history[-self.max_history:], dtype=np.int64)
            recent = recent[(recent > 0) & (recent < self.n_slots_)]
            rows.append(np.full(len(recent), row))
            cols.append(recent)
            weights.append(self.recency_decay ** np.arange(len(recent))[::-1])
        if not requests:
            return np.zeros((0, self.n_slots_))
        history = sp.csr_matrix(
            (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(len(requests), self.n_slots_)
        )
        return np.asarray((history @ self.similarity_).todense())

    def _search_scores(self, query: str, cf: np.ndarray) -> np.ndarray:
        lexical = self.bm25_.score_query(query)
        matched = np.flatnonzero(lexical > 0)
        if len(matched) > self.search_candidates:
            matched = matched[np.argsort(-lexical[matched], kind="stable")[: self.search_candidates]]
        scores = self.prior_.copy()
        if len(matched):
            combined = lexical[matched] / lexical[matched].max()
            if cf[matched].max() > 0:
                combined = combined + self.history_weight * cf[matched] / cf[matched].max()
            # offset past every unmatched item's prior (< 1) so matches always come first
            scores[matched] = 1.0 + combined + self.popularity_weight * np.sqrt(self.prior_[matched])
        return scores

    def _similarity(self, users: np.ndarray, items: np.ndarray, n_slots: int) -> sp.csr_matrix:
        """Windowed, IUF-weighted, count-normalised co-occurrence, top `neighbours` per row."""
        per_user = np.bincount(np.unique(users, return_inverse=True)[1]) if len(users) else np.zeros(0, dtype=np.int64)
        iuf = 1.0 / np.log2(2.0 + np.repeat(per_user, per_user))  # a pair from a long history says less
        co = windowed_cooccurrence(users, items, n_slots, self.window, lambda gap: self.position_decay ** (gap - 1), iuf)
        return _keep_top_per_row(co, self.neighbours)


def _keep_top_per_row(matrix: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """Zero all but the `n` largest entries of each row."""
    matrix.sum_duplicates()
    counts = np.diff(matrix.indptr)
    if counts.max(initial=0) <= n:
        return matrix
    row = np.repeat(np.arange(matrix.shape[0]), counts)
    order = np.lexsort((-matrix.data, row))
    rank = np.arange(len(order)) - matrix.indptr[row[order]]
    keep = np.zeros(len(order), dtype=bool)
    keep[order[rank < n]] = True
    pruned = sp.csr_matrix((matrix.data[keep], matrix.indices[keep], np.r_[0, np.cumsum(np.bincount(row[keep], minlength=matrix.shape[0]))]), shape=matrix.shape)
    return pruned
