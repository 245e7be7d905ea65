"""Popularity baselines: the floor every personalised retriever must clear.

`PopularityRetriever` returns the items with the most positive training
interactions, the same list for everyone. `CategoryPopularityRetriever` returns
the popular items of the categories the request points at: the leaf category
whose path words best match the query (search), else the leaf categories of the
user's history (recommendation), else the global list.

`item_popularity` is also the tie-breaker the other baselines fill short lists
with, so every baseline answers `k` items when the catalogue has them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from genrec.data.dataset import Dataset
from genrec.data.splits import Split, interactions
from genrec.retrieval import Ranked, Request, top_k

WORD = re.compile(r"\w\w+")


def item_popularity(train_events: pd.DataFrame, n_slots: int) -> np.ndarray:
    """Positive training interactions per item id, float64 `[n_slots]` (index = item id).

    Counts `genrec.data.splits.interactions` (one per user, visit and item), so a
    user clicking an item ten times in one visit counts once.
    """
    inter = interactions(train_events)
    return np.bincount(inter["item_id"].to_numpy(dtype=np.int64), minlength=n_slots).astype(np.float64)[:n_slots]


def popularity_prior(popularity: np.ndarray) -> np.ndarray:
    """Popularity squashed into [0, 1) `[n_slots]`: added to a score, it only breaks ties."""
    return popularity / (popularity.max(initial=0.0) + 1.0)


def n_item_slots(dataset: Dataset) -> int:
    """Length of a dense per-item vector: max item id + 1 (slot 0 is padding)."""
    return int(dataset.items["item_id"].max()) + 1


class PopularityRetriever:
    """The same most-popular list for every request (search and recommendation)."""

    name = "popularity"

    def __init__(self, popularity: np.ndarray):
        popularity = np.asarray(popularity, dtype=np.float64)
        if popularity.ndim != 1 or len(popularity) < 2:
            raise ValueError(f"popularity must be a vector [n_slots ≥ 2] indexed by item id, got shape {popularity.shape}")
        self.popularity_ = popularity

    @classmethod
    def from_run(cls, run: Path, dataset: Dataset, split: Split) -> "PopularityRetriever":
        return cls(item_popularity(split.train, n_item_slots(dataset)))

    def retrieve(self, requests: Sequence[Request], k: int) -> list[Ranked]:
        answer = top_k(self.popularity_, k, exclude=np.array([0]))
        return [answer for _ in requests]


class CategoryPopularityRetriever:
    """Popular items within the categories a request points at.

    Items are ranked first by how strongly their leaf category is indicated
    (query-word matches for search, number of history items for
    recommendation), then by popularity; a request that points at no category
    gets the global popularity list.
    """

    name = "category_popularity"

    def __init__(self, popularity: np.ndarray, item_category: np.ndarray, category_words: Sequence[set[str]]):
        self.popularity_ = np.asarray(popularity, dtype=np.float64)
        self.item_category_ = np.asarray(item_category, dtype=np.int64)
        if self.item_category_.shape != self.popularity_.shape:
            raise ValueError(
                f"item_category must have one entry per item slot {self.popularity_.shape}, got {self.item_category_.shape}"
            )
        self.category_words_ = [set(words) for words in category_words]
        self.prior_ = popularity_prior(self.popularity_)
        self.prior_[0] = -np.inf

    @classmethod
    def from_run(cls, run: Path, dataset: Dataset, split: Split) -> "CategoryPopularityRetriever":
        n_slots = n_item_slots(dataset)
        leaves = dataset.items["category"].map(lambda path: " > ".join(path) if len(path) else "")
        names, codes = np.unique(leaves.to_numpy(dtype=object).astype(str), return_inverse=True)
        item_category = np.full(n_slots, -1, dtype=np.int64)
        item_category[dataset.items["item_id"].to_numpy(dtype=np.int64)] = codes
        words = [set(WORD.findall(name.lower())) for name in names]
        return cls(item_popularity(split.train, n_slots), item_category, words)

    def retrieve(self, requests: Sequence[Request], k: int) -> list[Ranked]:
        return [top_k(self._category_weight(r)[self.item_category_] + self.prior_, k, exclude=np.array([0])) for r in requests]

    def _category_weight(self, request: Request) -> np.ndarray:
        """Weight per category `[n_categories + 1]`; the last entry is for items without one."""
        weight = np.zeros(len(self.category_words_) + 1)
        if request.query is not None:
            query = set(WORD.findall(request.query.lower()))
            overlap = np.array([len(query & words) for words in self.category_words_] + [0], dtype=np.float64)
            if overlap.max() > 0:
                return overlap
        if request.history:
            categories = self.item_category_[np.asarray(request.history, dtype=np.int64)]
            np.add.at(weight, categories, 1.0)
        return weight
