"""Thought-augmented queries: what a search means, spelled out, for self-distillation's teacher.

OneSearch-V2 lets a language model write a "thought" about a hard query (its
category, its core attributes) and trains the generator on the query plus that
thought; a student that reads the raw query alone then learns to match the
teacher, so the serving path never pays for the thinking. genrec has no language
model to run offline, so its query-understanding step reads the catalogue: the
query's MiniLM vector finds its `neighbours` nearest items, and their most common
leaf-category path and brand become the thought:

    "fenico tee"  →  "fenico tee | Clothing Tops T-Shirts Fenico"

Why this thought: a typed query names a department ("shirt"), a group or a
leaf, with synonyms and typos; the nearest items resolve it to one leaf and a
brand — exactly the SID's first levels — using knowledge (sentence similarity
over the whole catalogue) that the generator otherwise has to infer from one
projected query vector. The step costs a nearest-neighbour search and a longer
input per request: the serving cost self-distillation removes.

    thoughts = QueryThoughts.build(items, item_ids, item_vectors, query_vectors)
    teacher_requests = thoughts.augment(requests)     # searches rewritten; recommendations untouched
    teacher = ThoughtfulRetriever(student, thoughts)  # evaluation only: what the student is measured against
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from genrec.retrieval import Ranked, Request, Retriever

THOUGHT_SEPARATOR = " | "
"""Between the raw query and its thought in the teacher's query text."""

QueryEncoder = Callable[[Sequence[str]], np.ndarray]
"""Texts → unit vectors `[n, d]` in the item vectors' space (a `TextVectorCache`)."""


@dataclass
class QueryThoughts:
    """`item_vectors [n, d]` unit rows aligned with `leaf_words` / `brands` (one per item);
    `encode` maps query texts into the same space."""

    item_vectors: np.ndarray
    leaf_words: np.ndarray
    brands: np.ndarray
    encode: QueryEncoder
    neighbours: int = 20
    brand_share: float = 0.5

    def __post_init__(self) -> None:
        n = len(self.item_vectors)
        if len(self.leaf_words) != n or len(self.brands) != n:
            raise ValueError(f"item_vectors has {n} rows but leaf_words has {len(self.leaf_words)} "
                             f"and brands {len(self.brands)}: one of each per item")
        if n == 0:
            raise ValueError("QueryThoughts needs at least one item")
        if self.neighbours < 1:
            raise ValueError(f"neighbours must be ≥ 1, got {self.neighbours}")

    @classmethod
    def build(cls, items: pd.DataFrame, item_ids: np.ndarray, item_vectors: np.ndarray, encode: QueryEncoder,
              neighbours: int = 20) -> "QueryThoughts":
        """From the items table (`category` paths, optional `brand`) and the items' text vectors
        (`item_vectors[i]` is item `item_ids[i]`'s); items missing from the table think nothing."""
        table = items.set_index("item_id")
        ids = np.asarray(item_ids, dtype=np.int64)
        known = np.isin(ids, table.index.to_numpy())
        rows = table.reindex(ids[known])
        paths = rows["category"] if "category" in rows else pd.Series([None] * len(rows))
        leaf = [" ".join(str(c) for c in path) if path is not None and len(path) else "" for path in paths]
        brand = ([b if isinstance(b, str) else "" for b in rows["brand"]] if "brand" in rows
                 else [""] * len(rows))
        vectors = np.asarray(item_vectors, dtype=np.float32)[known]
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return cls(vectors, np.asarray(leaf, dtype=object), np.asarray(brand, dtype=object), encode, neighbours)

    @classmethod
    def from_item_vectors(cls, items: pd.DataFrame, vectors, encode: QueryEncoder) -> "QueryThoughts":
        """From `genrec.features.encode_items`' output (its text view) — how training and the
        benchmarks build the thoughts the teacher reads."""
        from genrec.features import TEXT_DIM

        return cls.build(items, np.asarray(vectors.item_ids), vectors.vectors[:, :TEXT_DIM], encode)

    def thoughts(self, queries: Sequence[str], chunk: int = 2048) -> list[str]:
        """One thought per query: its nearest items' most common leaf path, then their most
        common brand when at least `brand_share` of them carry it ("" when nothing is known).
        Each distinct query is thought about once (training repeats queries and item texts)."""
        distinct = list(dict.fromkeys(queries))
        thought = dict(zip(distinct, self._thoughts(distinct, chunk)))
        return [thought[q] for q in queries]

    def _thoughts(self, queries: list[str], chunk: int) -> list[str]:
        out: list[str] = []
        k = min(self.neighbours, len(self.item_vectors))
        for start in range(0, len(queries), chunk):
            vectors = np.asarray(self.encode(queries[start:start + chunk]), dtype=np.float32)
            scores = vectors @ self.item_vectors.T
            nearest = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            for row in nearest:
                words = [_most_common(self.leaf_words[row])]
                brand = _most_common(self.brands[row])
                if brand and np.mean(self.brands[row] == brand) >= self.brand_share:
                    words.append(brand)
                out.append(" ".join(w for w in words if w))
        return out

    def augment(self, requests: Sequence[Request]) -> list[Request]:
        """The teacher's view: each search's query followed by its thought; other requests as they are."""
        searches = [i for i, r in enumerate(requests) if r.query]
        thought = dict(zip(searches, self.thoughts([str(requests[i].query) for i in searches])))
        return [replace(r, query=augmented_query(str(r.query), thought[i])) if i in thought else r
                for i, r in enumerate(requests)]


class ThoughtfulRetriever:
    """A retriever answering every search with its query's thought appended: self-distillation's
    teacher at serving time, measured beside the student (`inner` alone) to show what the
    student gave up and what it saved. Never the served default."""

    def __init__(self, inner: Retriever, thoughts: QueryThoughts):
        self.inner, self.thoughts = inner, thoughts
        self.name = f"{inner.name}-teacher"

    def retrieve(self, requests: Sequence[Request], k: int) -> list[Ranked]:
        return self.inner.retrieve(self.thoughts.augment(requests), k)


def augmented_query(query: str, thought: str) -> str:
    """The teacher's query text: the raw query, then the thought (the raw query alone when empty)."""
    return f"{query}{THOUGHT_SEPARATOR}{thought}" if thought else query


def _most_common(values: np.ndarray) -> str:
    """The most frequent non-empty string (ties: the first seen), "" when all are empty."""
    counts: dict[str, int] = {}
    for value in values:
        if value:
            counts[value] = counts.get(value, 0) + 1
    return max(counts, key=counts.__getitem__) if counts else ""
