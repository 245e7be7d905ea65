"""BM25 over item text (`bm25s`): the lexical search baseline.

Search requests score every item's text (`genrec.features.item_text`: title,
category path, brand, attributes) against the query. Recommendation requests
have no query, so the query is the titles of the user's last
`history_titles` items ("more like what you just looked at"); a user without
history gets the popularity list. Items BM25 does not match at all are ranked
after every match, by popularity, so the answer always has `k` items.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import bm25s
import numpy as np

from genrec.baselines.popularity import item_popularity, n_item_slots, popularity_prior
from genrec.data.dataset import Dataset
from genrec.data.splits import Split
from genrec.features import item_text
from genrec.retrieval import Ranked, Request, top_k


class BM25Retriever:
    """Lexical retrieval with BM25 (Lucene variant, k1=1.5, b=0.75)."""

    name = "bm25"

    def __init__(self, k1: float = 1.5, b: float = 0.75, history_titles: int = 3):
        if history_titles < 0:
            raise ValueError(f"history_titles must be ≥ 0, got {history_titles}")
        self.k1, self.b, self.history_titles = k1, b, history_titles

    @classmethod
    def from_run(cls, run: Path, dataset: Dataset, split: Split) -> "BM25Retriever":
        return cls().fit(dataset, item_popularity(split.train, n_item_slots(dataset)))

    def fit(self, dataset: Dataset, popularity: np.ndarray) -> "BM25Retriever":
        """Index the item texts of `dataset.items`; `popularity` `[n_slots]` orders unmatched items."""
        items = dataset.items
        self.item_ids_ = items["item_id"].to_numpy(dtype=np.int64)
        self.n_slots_ = n_item_slots(dataset)
        if len(popularity) != self.n_slots_:
            raise ValueError(f"popularity must have {self.n_slots_} entries (max item id + 1), got {len(popularity)}")
        self.titles_ = dict(zip(self.item_ids_.tolist(), items["title"].astype(str)))
        self.index_ = bm25s.BM25(k1=self.k1, b=self.b)
        self.index_.index(bm25s.tokenize(item_text(items), show_progress=False), show_progress=False)
        self.prior_ = popularity_prior(np.asarray(popularity, dtype=np.float64))
        return self

    def score_query(self, query: str) -> np.ndarray:
        """BM25 score of every item for `query`, float64 `[n_slots]` (0 = no match)."""
        tokens = bm25s.tokenize([query], return_ids=False, show_progress=False)[0]
        scores = np.zeros(self.n_slots_)
        if tokens:
            scores[self.item_ids_] = self.index_.get_scores(tokens)
        return scores

    def retrieve(self, requests: Sequence[Request], k: int) -> list[Ranked]:
        return [top_k(self._scores(r), k, exclude=np.array([0])) for r in requests]

    def _scores(self, request: Request) -> np.ndarray:
        query = request.query
        if query is None and request.history and self.history_titles:
            recent = request.history[-self.history_titles:]
            query = " ".join(self.titles_.get(int(item), "") for item in recent)
        if query is None:
            return self.prior_
        scores = self.score_query(query)
        return np.where(scores > 0, 1.0 + scores, self.prior_)
