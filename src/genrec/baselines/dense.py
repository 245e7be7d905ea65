"""Dense retrieval: MiniLM query and item vectors, faiss inner-product search.

Items are the text vectors of `genrec.features.encode_items` (cached in
RUN/features), queries go through the same `encode_texts`, so a dot product is
a cosine similarity. Recommendation requests have no query: the user vector is
the recency-weighted mean of their last `max_history` item vectors
(weight `recency_decay ** age`, age 0 = newest); a user without history gets
the popularity list.

`DenseRetriever` searches exactly (`IndexFlatIP`); `HNSWDenseRetriever` searches
an HNSW graph (approximate, sub-linear), so the harness shows what
approximation costs in recall and buys in latency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import faiss
import numpy as np

from genrec.baselines.popularity import item_popularity, n_item_slots, popularity_prior
from genrec.data.dataset import Dataset
from genrec.data.splits import Split
from genrec.features import encode_items, encode_texts
from genrec.features.text_cache import TextVectorCache
from genrec.retrieval import Ranked, Request, top_k

QUERY_CACHE_SIZE = 100_000
"""Query vectors kept in memory: evaluation and serving repeat popular queries."""


class DenseRetriever:
    """Exact maximum-inner-product search over unit item vectors."""

    name = "dense"

    def __init__(self, max_history: int = 20, recency_decay: float = 0.8):
        if max_history < 1:
            raise ValueError(f"max_history must be ≥ 1, got {max_history}")
        if not 0 < recency_decay <= 1:
            raise ValueError(f"recency_decay must be in (0, 1], got {recency_decay}")
        self.max_history, self.recency_decay = max_history, recency_decay

    @classmethod
    def from_run(cls, run: Path, dataset: Dataset, split: Split) -> "DenseRetriever":
        vectors = encode_items(dataset, Path(run) / "features", views=("text",))
        encode_texts(["warm up"], progress=False)  # load the encoder now, not inside the first request
        return cls().fit(vectors.item_ids, vectors.vectors, item_popularity(split.train, n_item_slots(dataset)))

    def fit(self, item_ids: np.ndarray, vectors: np.ndarray, popularity: np.ndarray) -> "DenseRetriever":
        """Index `vectors` float32 `[n_items, d]` of `item_ids` `[n_items]`; `popularity` `[n_slots]`."""
        item_ids = np.asarray(item_ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(item_ids):
            raise ValueError(f"vectors must be [n_items={len(item_ids)}, d], got shape {vectors.shape}")
        if len(popularity) <= item_ids.max(initial=0):
            raise ValueError(f"popularity must cover item ids up to {item_ids.max()}, got {len(popularity)} entries")
        self.item_ids_, self.vectors_ = item_ids, vectors
        self.row_of_item_ = np.full(len(popularity), -1, dtype=np.int64)
        self.row_of_item_[item_ids] = np.arange(len(item_ids))
        self.prior_ = popularity_prior(np.asarray(popularity, dtype=np.float64))
        self.index_ = self._build_index(vectors)
        # the module's encode_texts is looked up at call time, so tests can stand in a cheap encoder
        self._query_vectors = TextVectorCache(lambda texts: encode_texts(texts, progress=False),
                                              dim=vectors.shape[1], capacity=QUERY_CACHE_SIZE)
        return self

    def retrieve(self, requests: Sequence[Request], k: int) -> list[Ranked]:
        answers: list[Ranked | None] = [None] * len(requests)
        rows, user_vectors = [], []
        for i, request in enumerate(requests):
            vector = self._request_vector(request)
            if vector is None:
                answers[i] = top_k(self.prior_, k, exclude=np.array([0]))
            else:
                rows.append(i)
                user_vectors.append(vector)
        queries = [v for v in user_vectors if isinstance(v, str)]
        encoded = dict(zip(queries, self._query_vectors(queries)))
        if rows:
            matrix = np.stack([v if isinstance(v, np.ndarray) else encoded[v] for v in user_vectors])
            scores, found = self.index_.search(np.ascontiguousarray(matrix, dtype=np.float32), min(k, len(self.item_ids_)))
            for i, row_scores, row_found in zip(rows, scores, found):
                keep = row_found >= 0
                answers[i] = Ranked(self.item_ids_[row_found[keep]], row_scores[keep])
        return answers  # type: ignore[return-value]

    def score_query(self, query: str) -> np.ndarray:
        """Cosine of `query`'s text vector with every item's, float64 `[n_slots]` (-inf for unindexed ids).

        The pair scorer behind a relevance classifier: any (query, item) pair
        gets a score, not only the items a top-k search returns.
        """
        scores = np.full(len(self.row_of_item_), -np.inf)
        scores[self.item_ids_] = self.vectors_ @ self._query_vectors([query])[0]
        return scores

    def _build_index(self, vectors: np.ndarray) -> faiss.Index:
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        return index

    def _request_vector(self, request: Request) -> np.ndarray | str | None:
        """The query text (encoded later, in one batch), a history vector `[d]`, or None."""
        if request.query is not None:
            return request.query
        rows = self.row_of_item_[np.asarray(request.history[-self.max_history:], dtype=np.int64)] if request.history else []
        rows = np.asarray(rows, dtype=np.int64)
        weights = self.recency_decay ** np.arange(len(rows))[::-1]
        weights, rows = weights[rows >= 0], rows[rows >= 0]
        if not len(rows):
            return None
        vector = weights @ self.vectors_[rows]
        return vector / max(float(np.linalg.norm(vector)), 1e-12)


class HNSWDenseRetriever(DenseRetriever):
    """Approximate search over an HNSW graph (`M` links per node, `ef_search` beam)."""

    name = "dense_hnsw"

    def __init__(self, max_history: int = 20, recency_decay: float = 0.8, m: int = 32, ef_construction: int = 200, ef_search: int = 128):
        super().__init__(max_history, recency_decay)
        if m < 2 or ef_construction < 1 or ef_search < 1:
            raise ValueError(f"HNSW needs m ≥ 2, ef_construction ≥ 1, ef_search ≥ 1; got {m}, {ef_construction}, {ef_search}")
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search

    @classmethod
    def from_run(cls, run: Path, dataset: Dataset, split: Split) -> "HNSWDenseRetriever":
        vectors = encode_items(dataset, Path(run) / "features", views=("text",))
        encode_texts(["warm up"], progress=False)
        return cls().fit(vectors.item_ids, vectors.vectors, item_popularity(split.train, n_item_slots(dataset)))

    def _build_index(self, vectors: np.ndarray) -> faiss.Index:
        index = faiss.IndexHNSWFlat(vectors.shape[1], self.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        index.add(vectors)
        return index
