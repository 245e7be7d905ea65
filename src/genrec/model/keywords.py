"""BM25 keyword scores of catalogue items for a search's query, saved beside a generative model.

Why a lexical score beside a generative model: on the default world the aligned
model's 50 beams hold the target of a long-tail search more often than the
cascade's top 50 does (0.54 vs 0.52 on validation), yet rank it into the top 10
less than half as often (0.11 vs 0.17), while BM25 alone ranks it there 0.20 of
the time. A rare item's Semantic ID is improbable and its item-head row is barely
trained, so nothing in the served score says "this item's title holds the query's
words"; the MiniLM cosine (`ItemHead.text_match`) says it only loosely. A query's
keywords matched against each beam's item text is the relevance signal OneSearch
keeps beside its generated codes (KHQE's keyword-enhanced levels and query–item
relevance constraint). It only reorders the beams the model generated; its weight
is chosen on validation by the align stage (`GenerativeConfig.keyword_match`).

The scoring is the BM25 baseline's (`bm25s`, Lucene variant, same tokens: lower
case, words of two or more characters, English stop words dropped), whose index
is one sparse document × term matrix of precomputed term weights; it is kept with
rows numbered by item id, so scoring a query is a sum of a few columns and the
index saves to one `.npz` file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import bm25s
import numpy as np
import scipy.sparse as sp

from genrec.artifacts import atomic_path

FILE = "keywords.npz"
"""The index's file in a model folder (`GenerativeRetriever.load` reads it when present)."""


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Each text's tokens, as the BM25 baseline makes them."""
    if not texts:
        return []
    return bm25s.tokenize(list(texts), return_ids=False, show_progress=False)


class KeywordIndex:
    """`weights [n_slots, n_terms]` (CSC): the BM25 weight of each term in each item's text (item id = row)."""

    def __init__(self, weights: sp.csc_matrix, vocabulary: Sequence[str]):
        if weights.shape[1] != len(vocabulary):
            raise ValueError(f"weights has {weights.shape[1]} term columns, the vocabulary {len(vocabulary)} terms")
        self.weights = weights.tocsc()
        self.vocabulary = list(vocabulary)
        self.term_id = {term: i for i, term in enumerate(self.vocabulary)}

    @classmethod
    def build(cls, item_ids: np.ndarray, texts: Sequence[str], n_slots: int, k1: float = 1.5,
              b: float = 0.75) -> "KeywordIndex":
        """Index `texts[i]` as the text of item `item_ids[i]` (ids in `[1, n_slots)`)."""
        item_ids = np.asarray(item_ids, dtype=np.int64)
        if len(item_ids) != len(texts):
            raise ValueError(f"{len(item_ids)} item ids but {len(texts)} texts")
        if len(item_ids) and (item_ids.min() < 1 or item_ids.max() >= n_slots):
            raise ValueError(f"item ids must be in [1, {n_slots})")
        if len(np.unique(item_ids)) != len(item_ids):
            raise ValueError("item ids must be unique")
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"BM25 needs k1 ≥ 0 and 0 ≤ b ≤ 1, got k1={k1}, b={b}")
        # The BM25 baseline's own index (`bm25s`, Lucene variant) holds each term's weight per document as
        # one sparse documents × terms matrix; its rows are renumbered here from text position to item id.
        index = bm25s.BM25(k1=k1, b=b)
        index.index(bm25s.tokenize(list(texts), show_progress=False), show_progress=False)
        n_terms = len(index.scores["indptr"]) - 1  # bm25s gives its empty-text token no column
        vocabulary = [t for t in sorted(index.vocab_dict, key=index.vocab_dict.__getitem__)
                      if index.vocab_dict[t] < n_terms]
        by_text = sp.csc_matrix((index.scores["data"], index.scores["indices"], index.scores["indptr"]),
                                shape=(len(item_ids), n_terms)).tocoo()
        weights = sp.csc_matrix((by_text.data.astype(np.float32), (item_ids[by_text.row], by_text.col)),
                                shape=(n_slots, len(vocabulary)))
        return cls(weights, vocabulary)

    @property
    def n_slots(self) -> int:
        return self.weights.shape[0]

    def score_all(self, query: str | None) -> np.ndarray:
        """`[n_slots]` float32: every item's BM25 score for `query` (zeros for None or no known word)."""
        columns = self._columns(query)
        if not columns:
            return np.zeros(self.n_slots, dtype=np.float32)
        return np.asarray(self.weights[:, columns].sum(axis=1), dtype=np.float32).reshape(-1)

    def scores(self, queries: Sequence[str | None], items: np.ndarray) -> np.ndarray:
        """`[B, K]` float32: the score of each of `items [B, K]` for its row's query (0 for no
        query, item -1, or an item outside the index).

        Only the postings of the query's words are read (not a catalogue-wide score vector), so
        the cost per search follows how many items hold its words, not the catalogue's size."""
        items = np.asarray(items, dtype=np.int64)
        if items.ndim != 2 or len(items) != len(queries):
            raise ValueError(f"items must have shape [{len(queries)}, K], got {list(items.shape)}")
        out = np.zeros(items.shape, dtype=np.float32)
        for row, query in enumerate(queries):
            columns = self._columns(query)
            if not columns:
                continue
            postings = self.weights[:, columns]  # [n_slots, words]: the items holding each word, and its weight
            wanted, where = np.unique(items[row], return_inverse=True)
            at = np.minimum(np.searchsorted(wanted, postings.indices), len(wanted) - 1)
            hit = wanted[at] == postings.indices
            totals = np.zeros(len(wanted), dtype=np.float64)
            np.add.at(totals, at[hit], postings.data[hit])
            out[row] = totals[where.reshape(-1)]
        return out

    def _columns(self, query: str | None) -> list[int]:
        """The term columns of `query`'s known words, a repeated word once per repetition (as BM25 scores it)."""
        if not query:
            return []
        return [self.term_id[t] for t in tokenize([query])[0] if t in self.term_id]

    def save(self, path: str | Path) -> Path:
        """One `.npz` (atomic: a crash leaves the old file or none)."""
        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, data=self.weights.data, indices=self.weights.indices,
                                    indptr=self.weights.indptr, shape=np.asarray(self.weights.shape),
                                    vocabulary=np.asarray(self.vocabulary, dtype=str))
        return path

    @classmethod
    def beside(cls, folder: str | Path) -> "KeywordIndex | None":
        """The index saved in a model folder (`FILE`), or None where the model has none."""
        path = Path(folder) / FILE
        return cls.load(path) if path.exists() else None

    @classmethod
    def load(cls, path: str | Path) -> "KeywordIndex":
        with np.load(Path(path), allow_pickle=False) as saved:
            shape = tuple(int(v) for v in saved["shape"])
            weights = sp.csc_matrix((saved["data"], saved["indices"], saved["indptr"]), shape=shape)
            return cls(weights, [str(t) for t in saved["vocabulary"]])


__all__ = ["FILE", "KeywordIndex", "tokenize"]
