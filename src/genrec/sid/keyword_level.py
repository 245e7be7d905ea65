"""The relevance constraint of KHQE: a keyword level after the category, so items that match
a query's keywords share their early codes — and a measurement of how often they do.

Why. A generative retriever decodes a query's SID code by code; when the items a query's
words match are spread over several second-level codes, the beam must guess which
branch holds them before it has seen anything but the first code. OneSearch keeps
query–item relevance as a constraint on the codes. Here it is an explicit decision
list per leaf category:

1. rank the leaf's words by `KeywordScorer` (c-TF-IDF over titles and, where logged,
   the queries that found the leaf's items), leaving out the leaf's name — a word
   that more than `LEAF_NAME_SHARE` of its items carry ("pan" in the frying-pan leaf):
   the category code already says it;
2. keep the best `codes - 1`;
3. an item's keyword is the best-ranked of them its document holds ("" for none).

So every item of a leaf that holds the leaf's first keyword gets that keyword, every
item holding the second but not the first gets the second, and so on: the items a
query's top keyword matches share one code *by construction*, and the level has at
most `codes` values per leaf. `genrec.sid.prefix` turns the values into codes like a
brand's (`prefix=("category", "keyword", "brand")`).

    values, ranked = keyword_values(scorer, classes, codes=16)
    agreement = query_code_agreement(codes, item_ids, dataset)   # {"searches": …, "depth": {1: …, 2: …}}
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from genrec.data.dataset import Dataset
from genrec.data.splits import leave_one_out
from genrec.sid.keywords import KeywordScorer, tokenize
from genrec.sid.prefix import leaf_path

LEAF_NAME_SHARE = 0.5
"""A word carried by more than this share of a leaf's items names the leaf; it is no keyword level value."""
KEYWORD_CODES = 16
"""Default size of the keyword level: the 15 best keywords of a leaf and one code for items holding none."""


def keyword_values(scorer: KeywordScorer, codes: int = KEYWORD_CODES, leaf_name_share: float = LEAF_NAME_SHARE,
                   exclude: Sequence[Iterable[str]] | None = None) -> tuple[list[str], dict[int, list[str]]]:
    """Each item's keyword-level value (`[n]` strings, "" for none) and each class's ranked keyword
    list (the decision list, best first), from a fitted `scorer` whose classes are leaf categories.

    `exclude[i]`: words item i's class may not rank (its brand's words when the brand has a level of
    its own: a keyword level repeating the brand would hold one value per brand group)."""
    if not isinstance(codes, (int, np.integer)) or codes < 2:
        raise ValueError(f"keyword_codes must be an integer ≥ 2 (keywords per category + one for none), got {codes!r}")
    if not 0 < leaf_name_share <= 1:
        raise ValueError(f"leaf_name_share must be in (0, 1], got {leaf_name_share}")
    documents = [set(doc) for doc in scorer.documents_]
    classes = np.asarray(scorer.classes_)
    if exclude is not None and len(exclude) != len(documents):
        raise ValueError(f"exclude must hold one word set per item ({len(documents)}), got {len(exclude)}")
    banned: dict[int, set[str]] = defaultdict(set)
    for cls, words in zip(classes.tolist(), exclude or []):
        banned[cls].update(words)
    leaf_names = _leaf_names(documents, classes, leaf_name_share)
    ranked = {cls: [w for w, _ in scorer.ranked_words(cls) if w not in leaf_names[cls] and w not in banned[cls]][: codes - 1]
              for cls in np.unique(classes).tolist()}
    values = []
    for doc, cls in zip(documents, classes.tolist()):
        values.append(next((w for w in ranked[cls] if w in doc), ""))
    return values, ranked


def query_code_agreement(codes: np.ndarray, item_ids: np.ndarray, dataset: Dataset,
                         depths: tuple[int, ...] = (1, 2, 3), seed: int | None = None) -> dict[str, Any]:
    """How often the items a held-out search's keywords match share the first codes of the item
    the search led to.

    For each validation or test interaction of `leave_one_out` with a query (never used to build
    the codes): Q = the query's keyword tokens (`tokenize`); the matched items are every other
    item whose TITLE holds every word of Q (a definition independent of any tokenizer). Agreement
    at depth d = share of matched items whose first d codes equal the target's, averaged over
    searches with at least one matched item ("all"), and over the *narrowing* ones among them
    ("narrowing"): a query with a word that is not the name of the target's leaf (a brand, a
    colour, a material: see `LEAF_NAME_SHARE`), which asks for a part of the leaf, not all of
    it. A broad query ("frying pan") matches the whole leaf, so at depth 2 any split of the leaf
    lowers its agreement whatever the split follows; a narrowing one is what a level after the
    category can serve. `codes` int `[n, L]` rows in `item_ids` order. Returns {"logged": held-out
    searches with a query, "searches": {"all": n, "narrowing": n}, "depth": {"all": {d: mean},
    "narrowing": {d: mean}}}.

    With a `seed`, also "shuffled": the same agreement after the codes of level d are shuffled
    among the items of each parent (equal first d - 1 codes) — the same cell sizes, cut without
    regard to queries. Fewer, larger cells agree more by chance; the ratio to "shuffled" is what
    a level's choice of cells adds.
    """
    codes = np.asarray(codes)
    item_ids = np.asarray(item_ids, dtype=np.int64)
    if codes.ndim != 2 or len(codes) != len(item_ids):
        raise ValueError(f"codes must be [n={len(item_ids)}, levels], got shape {codes.shape}")
    if any(d < 1 or d > codes.shape[1] for d in depths):
        raise ValueError(f"depths must lie in [1, {codes.shape[1]}], got {depths}")
    kinds = ("all", "narrowing")
    result: dict[str, Any] = {"logged": 0, "searches": {k: 0 for k in kinds},
                              "depth": {k: {d: float("nan") for d in depths} for k in kinds}}
    if seed is not None:
        result["shuffled"] = {k: {d: float("nan") for d in depths} for k in kinds}
    events = dataset.events
    if "query" not in events.columns or not events["query"].notna().any():
        return result
    split = leave_one_out(events)
    held_out = pd.concat([split.valid, split.test])
    held_out = held_out[held_out["query"].notna() & held_out["item_id"].isin(item_ids)]
    result["logged"] = len(held_out)
    items = dataset.items.set_index("item_id").loc[item_ids]
    titles = [set(tokenize(title)) for title in items["title"].tolist()]
    leaves = np.unique([leaf_path(c) for c in items["category"]], return_inverse=True)[1].reshape(-1)
    holders: dict[str, set[int]] = defaultdict(set)
    for row, words in enumerate(titles):
        for word in words:
            holders[word].add(row)
    leaf_names = _leaf_names(titles, leaves)
    row_of = pd.Series(np.arange(len(item_ids)), index=item_ids)
    shuffled = {d: _shuffled_level(codes, d - 1, np.random.default_rng(seed)) for d in depths} if seed is not None else {}
    sums = {k: {d: 0.0 for d in depths} for k in kinds}
    chance = {k: {d: 0.0 for d in depths} for k in kinds}
    for query, target in zip(held_out["query"].tolist(), row_of.loc[held_out["item_id"].to_numpy()].tolist()):
        words = set(tokenize(query))
        if not words:
            continue
        matched = set.intersection(*(holders.get(w, set()) for w in words)) - {target}
        if not matched:
            continue
        rows = np.fromiter(matched, dtype=np.int64)
        for kind in kinds if words - leaf_names[leaves[target]] else kinds[:1]:
            result["searches"][kind] += 1
            for d in depths:
                sums[kind][d] += float((codes[rows, :d] == codes[target, :d]).all(axis=1).mean())
                if d in shuffled:
                    chance[kind][d] += float((shuffled[d][rows, :d] == shuffled[d][target, :d]).all(axis=1).mean())
    for kind in kinds:
        if result["searches"][kind]:
            result["depth"][kind] = {d: sums[kind][d] / result["searches"][kind] for d in depths}
            if seed is not None:
                result["shuffled"][kind] = {d: chance[kind][d] / result["searches"][kind] for d in depths}
    return result


def _shuffled_level(codes: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """`codes` with column `level` permuted among the rows of each parent (equal columns before it)."""
    out = codes.copy()
    parent = (np.unique(codes[:, :level], axis=0, return_inverse=True)[1].reshape(-1) if level
              else np.zeros(len(codes), dtype=np.int64))
    order = np.argsort(parent, kind="stable")
    bounds = np.flatnonzero(np.r_[True, np.diff(parent[order]) != 0, True])
    for start, end in zip(bounds[:-1], bounds[1:]):
        rows = order[start:end]
        out[rows, level] = codes[rng.permutation(rows), level]
    return out


def _leaf_names(documents: list[set[str]], leaves: np.ndarray, share: float = LEAF_NAME_SHARE) -> dict[int, set[str]]:
    """Per leaf id, the words more than `share` of its items' documents carry."""
    names = {}
    for leaf in np.unique(leaves).tolist():
        members = np.flatnonzero(leaves == leaf)
        carried = pd.Series([w for i in members for w in documents[i]], dtype=object).value_counts()
        names[leaf] = set(carried.index[carried > share * len(members)])
    return names
