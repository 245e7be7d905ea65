"""Keywords of an item: the words of its title (and of the searches that found it) that say
what sets it apart within its category, scored by class-based TF-IDF.

Why. OneSearch's KHQE makes the early SID levels follow category *and keywords*, so
that a query's words decide the first codes. A keyword must be explainable: a word
is a keyword of an item in leaf c when it is frequent among c's items (term
frequency within the class) and rare across the catalogue (inverse frequency), the
c-TF-IDF of topic models:

    score[c, w] = tf[c, w] / words[c] · log(1 + A / f[w])

`tf[c, w]` counts w in the documents of class c, `words[c]` all words of c, `f[w]`
all occurrences of w in the catalogue and `A` the mean number of words per class.
"skillet" in the frying-pan leaf outranks "black", which every leaf has. An item's
keywords are the words of its own document ranked by its class's score.

An item's document is its title's words and, where the data logs searches, the
words of the training-split queries that led to it (a synonym typed by shoppers,
"sunblock" for a sunscreen, becomes a keyword of the item it found). Stop words,
shopping fillers ("cheap", "best") and tokens holding digits (sizes, volumes, model
numbers) are never keywords; neither is a word seen fewer than `min_count` times
in the catalogue (typos, serial numbers).

    scorer = KeywordScorer(top_k=3).fit(documents, classes)   # token lists [n], class ids [n]
    scorer.keywords(i)                                         # [("skillet", 0.41), ...]
    scorer, leaves = catalogue_keywords(dataset, item_ids)     # titles (+ logged queries) by leaf
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genrec.data.dataset import Dataset
from genrec.data.splits import interactions, leave_one_out
from genrec.sid.prefix import leaf_path

WORD = re.compile(r"[a-z0-9]+")
STOP_WORDS: frozenset[str] = frozenset(
    # English function words
    "a an and are as at be but by for from has have in into is it its of on or per the to with without "
    "this that these those your our you we my me he she they them his her their all any each both "
    "more most other some such no not only own same so than too very can will just one two set pack "
    # shopping fillers: words typed around a product, never about it
    "best cheap buy new good top sale deal deals discount quality price online shop affordable great "
    "nice premium value".split()
)
"""Words that are never keywords: function words and the fillers shoppers add to a query."""
TOP_KEYWORDS = 3
MIN_COUNT = 2


def tokenize(text: object) -> list[str]:
    """Lower-cased word tokens of `text` that may be keywords (no stop words, no token with a digit,
    at least two characters); a missing text gives []."""
    if not isinstance(text, str):
        return []
    return [w for w in WORD.findall(text.lower()) if len(w) > 1 and w not in STOP_WORDS and not any(c.isdigit() for c in w)]


class KeywordScorer:
    """Class-based TF-IDF keyword scores and each item's top keywords.

    Parameters: `top_k` keywords per item; `min_count` occurrences in the whole catalogue a
    word needs to be a keyword. Learned by `fit`: `vocabulary_` (word → column), `words_` (column → word), `scores_`
    float64 `[n_classes, n_words]` (sparse CSR), `documents_` and `classes_` as given.
    """

    def __init__(self, top_k: int = TOP_KEYWORDS, min_count: int = MIN_COUNT):
        if not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise ValueError(f"top_k must be an integer ≥ 1, got {top_k!r}")
        if not isinstance(min_count, (int, np.integer)) or min_count < 1:
            raise ValueError(f"min_count must be an integer ≥ 1, got {min_count!r}")
        self.top_k = int(top_k)
        self.min_count = int(min_count)

    def fit(self, documents: Sequence[Sequence[str]], classes: np.ndarray) -> "KeywordScorer":
        """`documents`: one token list per item (`tokenize`d title, plus query tokens); `classes`
        int `[n]`: the item's class (its leaf category), the unit c-TF-IDF contrasts."""
        classes = np.asarray(classes)
        if classes.ndim != 1 or len(classes) != len(documents):
            raise ValueError(f"classes must be [n={len(documents)}] (one class per document), got shape {classes.shape}")
        if len(documents) == 0:
            raise ValueError("documents must hold at least one document")
        if not np.issubdtype(classes.dtype, np.integer) or (classes < 0).any():
            raise ValueError("classes must be integer class ids ≥ 0")
        totals = Counter(w for doc in documents for w in doc)
        words = sorted(w for w, count in totals.items() if count >= self.min_count)
        self.vocabulary_ = {w: j for j, w in enumerate(words)}
        self.words_ = words
        self._rows: dict[int, dict[str, float]] = {}
        rows, cols = [], []
        for doc, cls in zip(documents, classes.tolist()):
            for w in doc:
                j = self.vocabulary_.get(w)
                if j is not None:
                    rows.append(cls)
                    cols.append(j)
        n_classes = int(classes.max()) + 1
        tf = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_classes, len(words)), dtype=np.float64)
        tf.sum_duplicates()
        class_words = np.asarray(tf.sum(axis=1)).reshape(-1)
        word_total = np.asarray(tf.sum(axis=0)).reshape(-1)
        mean_words = class_words[class_words > 0].mean() if (class_words > 0).any() else 1.0
        idf = np.log1p(mean_words / np.maximum(word_total, 1.0))
        self.scores_ = sp.csr_matrix(sp.diags(1.0 / np.maximum(class_words, 1.0)) @ tf @ sp.diags(idf))
        self.documents_ = [list(doc) for doc in documents]
        self.classes_ = classes
        return self

    def score(self, cls: int, word: str) -> float:
        """c-TF-IDF of `word` in class `cls` (0 for a word outside the vocabulary or the class)."""
        return self._class_scores(cls).get(word, 0.0)

    def ranked_words(self, cls: int) -> list[tuple[str, float]]:
        """Every word with a positive score in class `cls`, best first (ties by word)."""
        return sorted(self._class_scores(cls).items(), key=lambda pair: (-pair[1], pair[0]))

    def keywords(self, item: int) -> list[tuple[str, float]]:
        """The `top_k` distinct words of document `item` with the highest score in its class, best first."""
        self._check_fitted()
        scores = self._class_scores(int(self.classes_[item]))
        scored = [(w, scores[w]) for w in set(self.documents_[item]) if w in scores]
        return sorted(scored, key=lambda pair: (-pair[1], pair[0]))[: self.top_k]

    def _class_scores(self, cls: int) -> dict[str, float]:
        """word → positive score in class `cls`, built once per class (a sparse row lookup per word is slow)."""
        self._check_fitted()
        if cls not in self._rows:
            row = self.scores_.getrow(cls) if 0 <= cls < self.scores_.shape[0] else sp.csr_matrix((1, 0))
            self._rows[cls] = {self.words_[j]: float(s) for j, s in zip(row.indices.tolist(), row.data.tolist()) if s > 0}
        return self._rows[cls]

    def _check_fitted(self) -> None:
        if not hasattr(self, "scores_"):
            raise ValueError("this KeywordScorer is not fitted yet; call fit(documents, classes) first")


def logged_query_tokens(dataset: Dataset, item_ids: np.ndarray) -> list[list[str]]:
    """Per item of `item_ids` (in that order), the tokens of the queries of the searches that led to
    it (positive interactions with a query) in the TRAINING part of `leave_one_out`, so a held-out
    search never shapes the codes. Every list is empty when the data logs no queries."""
    item_ids = np.asarray(item_ids, dtype=np.int64)
    out: list[list[str]] = [[] for _ in range(len(item_ids))]
    events = dataset.events
    if "query" not in events.columns or not events["query"].notna().any():
        return out
    train = interactions(leave_one_out(events).train)
    searches = train[train["query"].notna() & train["item_id"].isin(item_ids)]
    slot = pd.Series(np.arange(len(item_ids)), index=item_ids)
    for item, query in zip(slot.loc[searches["item_id"].to_numpy()].to_numpy().tolist(), searches["query"].tolist()):
        out[item].extend(tokenize(query))
    return out


def catalogue_keywords(dataset: Dataset, item_ids: np.ndarray, queries: bool = True,
                       top_k: int = TOP_KEYWORDS) -> tuple[KeywordScorer, list[str]]:
    """A `KeywordScorer` fitted on the items of `item_ids` (in that order), and the leaf path of each
    class id. Documents are the title's tokens, plus (`queries`) the training searches' query tokens
    of `logged_query_tokens`; classes are the leaf categories."""
    item_ids = np.asarray(item_ids, dtype=np.int64)
    items = dataset.items.set_index("item_id")
    missing = ~np.isin(item_ids, items.index.to_numpy())
    if missing.any():
        raise ValueError(f"item {int(item_ids[missing][0])} has a vector but no row in items")
    rows = items.loc[item_ids]
    names, leaves = np.unique([leaf_path(c) for c in rows["category"]], return_inverse=True)
    searched = logged_query_tokens(dataset, item_ids) if queries else [[] for _ in range(len(item_ids))]
    documents = [tokenize(title) + words for title, words in zip(rows["title"].tolist(), searched)]
    return KeywordScorer(top_k=top_k).fit(documents, leaves.reshape(-1).astype(np.int64)), [str(n) for n in names]
