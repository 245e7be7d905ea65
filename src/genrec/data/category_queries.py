"""Search queries made from category paths: personalised product search on review data.

Review data sets (Amazon Beauty, Sports, …) log purchases but no queries. The
personalised product search literature (Van Gysel et al., CIKM 2016; Ai et al.,
SIGIR 2017, HEM, and the models compared with it since) turns them into a search
benchmark by giving each purchase the query a shopper for that item would plausibly
type: the words of the item's category path. The construction, followed here:

- the words of every level of one category hierarchy, root to leaf, lowercased,
  split on anything that is not a letter, digit or in-word apostrophe;
- stopwords removed (`ENGLISH_STOPWORDS`);
- a word that appears at several levels is kept once, at its deepest level, so the
  leaf's own wording stays intact ("Skin Care > Face > Creams & Moisturizers >
  Fluids & Lotions > Fluids" → "skin care face creams moisturizers lotions fluids").

An item has exactly one path in the canonical schema (`items.category`), so every
purchase gets exactly one query. Items without a category have no query: the
builder raises rather than inventing one, because a purchase whose query is empty
would silently turn into a recommendation request.

    dataset = with_category_queries(load_p5_amazon(folder))
    split = leave_one_out(dataset.events)   # each target's query is its item's category query
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from genrec.data.dataset import Dataset
from genrec.data.splits import POSITIVE_ACTIONS

ENGLISH_STOPWORDS: frozenset[str] = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not",
    "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was",
    "will", "with",
))
"""Lucene's classic English stop set (the one BM25 baselines use), so the query builder
and the lexical retriever agree on which words carry no meaning."""

NO_CATEGORY: tuple[str, ...] = ("Unknown",)
"""The placeholder path loaders give an item whose source names no category (`p5_amazon`)."""

SEARCH_SCENARIO = "search"

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def category_query(path: Sequence[str]) -> str:
    """The query of one category path (root first), built as the module docstring says.

    Raises ValueError when the path is empty, is the loaders' "Unknown" placeholder,
    or has no word left after stopword removal.
    """
    levels = [str(level) for level in path]
    if not levels or tuple(levels) == NO_CATEGORY:
        raise ValueError(f"category path {levels!r} names no category; a category query needs at least one level")
    words = [word for level in levels for word in _WORD.findall(level.lower()) if word not in ENGLISH_STOPWORDS]
    if not words:
        raise ValueError(f"category path {levels!r} has no word left after stopword removal")
    last = {word: position for position, word in enumerate(words)}
    return " ".join(word for position, word in enumerate(words) if last[word] == position)


def item_queries(dataset: Dataset) -> dict[int, str]:
    """item_id → its category query, for every item of `dataset.items`.

    Raises ValueError naming the first items whose category path yields no query."""
    queries, missing, reason = {}, [], ""
    for item_id, path in zip(dataset.items["item_id"].tolist(), dataset.items["category"].tolist()):
        try:
            queries[int(item_id)] = category_query(list(path) if path is not None else [])
        except ValueError as error:
            missing.append(int(item_id))
            reason = reason or str(error)
    if missing:
        raise ValueError(f"items.category: {len(missing)} items have no category to build a query from "
                         f"(item_id {missing[:5]}; first: {reason}); drop them or give them a category path")
    return queries


def with_category_queries(dataset: Dataset) -> Dataset:
    """`dataset` with every positive event turned into a search: its `query` the category query
    of the item acted on, its `scenario` "search". Impressions keep their query and scenario.

    Items are checked first (`item_queries`), so an item without a category is an error
    even if nobody bought it: the benchmark's catalogue is the whole item table."""
    queries = item_queries(dataset)
    events = dataset.events.copy()
    positive = events["action"].isin(POSITIVE_ACTIONS).to_numpy()
    built = np.array([queries[int(item)] for item in events.loc[positive, "item_id"].tolist()], dtype=object)
    query = events["query"].astype(object).to_numpy().copy()
    scenario = events["scenario"].astype(object).to_numpy().copy()
    query[positive] = built
    scenario[positive] = SEARCH_SCENARIO
    events["query"] = query
    events["scenario"] = scenario
    return Dataset(dataset.items, dataset.users, events)
