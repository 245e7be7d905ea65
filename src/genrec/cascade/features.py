"""Features of (request, candidate) pairs for the ranker, built from the training events only.

`FeatureSpace.fit(dataset, split.train, ...)` learns the item tables (category,
brand, price, popularity, origin, a small PCA of the MiniLM text vector), the
item-to-item co-occurrence of the training sequences and the word vocabulary of
the item texts. Then:

* `requests(list[Request]) -> RequestArrays` — query vector, behaviour sequence,
  user and scenario, as arrays over the requests;
* `pairs(RequestArrays, request_index [p], item_ids [p]) -> float32 [p, N_PAIR]` —
  hand-made interactions the network would learn slowly: query·item cosine, share of
  query words in the item text, history·item cosine (max, mean, last), item-CF score
  of the candidate given the history, same category/brand shares, price ratio.

Every array is indexed by item id (length `max_item_id + 1`, row 0 is padding).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genrec.features.cooccurrence import windowed_cooccurrence
from genrec.retrieval import Request

PAIR_FEATURES: tuple[str, ...] = (
    "query_cos", "query_word_share", "query_word_hits", "hist_cos_max", "hist_cos_mean", "hist_cos_last",
    "cf_sum", "cf_max", "same_leaf", "same_parent", "same_brand", "in_history", "price_ratio", "is_search",
)
ITEM_DENSE: tuple[str, ...] = ("log_clicks", "log_impressions", "ctr", "log_orders", "price_z", "price_rank_in_leaf", "is_ai")
SCENARIO_SLOTS = 16
ACTION_CODES = {"click": 1, "cart": 2, "order": 3}
WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


@dataclass
class RequestArrays:
    """Request-side inputs for `r` requests.

    query `[r, text_dim]` float32 (zeros for recommendation), history `[r, L]` item
    ids (0 = padding, most recent last), history_action `[r, L]` codes 1..3,
    user `[r]`, scenario `[r]`, is_search `[r]`, query_words: one int array of word
    ids per request.
    """

    query: np.ndarray
    history: np.ndarray
    history_action: np.ndarray
    user: np.ndarray
    scenario: np.ndarray
    is_search: np.ndarray
    query_words: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.user)


class FeatureSpace:
    """Item tables, co-occurrence and vocabulary learned from the training events."""

    def __init__(self, history_length: int = 20, small_dim: int = 32, user_buckets: int = 8192, cf_window: int = 5):
        self.history_length = history_length
        self.small_dim = small_dim
        self.user_buckets = user_buckets
        self.cf_window = cf_window

    # ------------------------------------------------------------------ fit

    def fit(
        self, items: pd.DataFrame, train_events: pd.DataFrame, item_ids: np.ndarray, item_vectors: np.ndarray,
        item_texts: Sequence[str], encode_queries: Callable[[list[str]], np.ndarray],
    ) -> "FeatureSpace":
        """`item_vectors` `[n, d]` unit rows aligned with `item_ids`; `item_texts` aligned with `items` rows."""
        item_ids = np.asarray(item_ids, dtype=np.int64)
        if len(item_vectors) != len(item_ids):
            raise ValueError(f"item_vectors has {len(item_vectors)} rows, item_ids has {len(item_ids)}")
        size = int(max(items["item_id"].max(), item_ids.max())) + 1
        self.n_items_ = size
        self.encode_queries = encode_queries
        self.text_ = np.zeros((size, item_vectors.shape[1]), dtype=np.float32)
        self.text_[item_ids] = item_vectors
        self.small_ = self._pca(self.text_, item_ids)
        self._fit_item_tables(items, train_events)
        self._fit_cooccurrence(train_events)
        self._fit_vocabulary(items, item_texts)
        self.query_cache_: dict[str, np.ndarray] = {}
        return self

    def refit_events(self, items: pd.DataFrame, train_events: pd.DataFrame) -> "FeatureSpace":
        """A copy with the event statistics (popularity, CTR, co-occurrence) of `train_events`
        and everything text-derived (vectors, PCA, vocabulary, query cache) shared with this one."""
        import copy

        other = copy.copy(self)
        other._fit_item_tables(items, train_events)
        other._fit_cooccurrence(train_events)
        return other

    def _pca(self, text: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        rows = text[item_ids]
        self.text_mean_ = rows.mean(0)
        _, _, vt = np.linalg.svd(rows - self.text_mean_, full_matrices=False)
        self.text_basis_ = vt[: self.small_dim].T.astype(np.float32)  # [d, small]
        small = np.zeros((len(text), self.small_dim), dtype=np.float32)
        projected = (rows - self.text_mean_) @ self.text_basis_
        small[item_ids] = projected / (projected.std(0, keepdims=True) + 1e-6)
        return small

    def _fit_item_tables(self, items: pd.DataFrame, events: pd.DataFrame) -> None:
        size = self.n_items_
        ids = items["item_id"].to_numpy(dtype=np.int64)
        leaf_names = items["category"].map(lambda c: " > ".join(c) if len(c) else "")
        parent_names = items["category"].map(lambda c: " > ".join(c[:-1]) if len(c) > 1 else (c[0] if len(c) else ""))
        top_names = items["category"].map(lambda c: c[0] if len(c) else "")
        self.leaf_, self.leaf_names_ = _codes(ids, leaf_names, size)
        self.parent_, _ = _codes(ids, parent_names, size)
        self.top_, _ = _codes(ids, top_names, size)
        self.brand_, _ = _codes(ids, items["brand"].fillna(""), size)
        self.is_ai_ = np.zeros(size, dtype=bool)
        self.is_ai_[ids] = (items["origin"] == "ai").to_numpy()
        price = np.zeros(size, dtype=np.float32)
        raw_price = items["price"].to_numpy(dtype=np.float64)
        known = np.isfinite(raw_price)
        log_price = np.log1p(np.where(known, raw_price, np.nanmedian(raw_price) if known.any() else 0.0))
        price[ids] = log_price
        self.log_price_ = price
        rank_in_leaf = pd.Series(log_price).groupby(self.leaf_[ids]).rank(pct=True).to_numpy()

        counts = {}
        for action in ("impression", "click", "order"):
            hit = events.loc[events["action"] == action, "item_id"].to_numpy(dtype=np.int64)
            counts[action] = np.bincount(hit, minlength=size)[:size].astype(np.float64)
        clicks = counts["click"] + np.bincount(
            events.loc[events["action"].isin(("cart", "order")), "item_id"].to_numpy(dtype=np.int64), minlength=size)[:size]
        prior = clicks.sum() / max(counts["impression"].sum(), 1.0)
        dense = np.zeros((size, len(ITEM_DENSE)), dtype=np.float32)
        dense[:, 0] = np.log1p(clicks)
        dense[:, 1] = np.log1p(counts["impression"])
        dense[:, 2] = (clicks + 20 * prior) / (counts["impression"] + 20)
        dense[:, 3] = np.log1p(counts["order"])
        dense[ids, 4] = (log_price - log_price.mean()) / (log_price.std() + 1e-6)
        dense[ids, 5] = rank_in_leaf
        dense[:, 6] = self.is_ai_
        scale = dense[ids].std(0) + 1e-6
        self.item_dense_mean_ = dense[ids].mean(0)
        self.item_dense_ = ((dense - self.item_dense_mean_) / scale).astype(np.float32)
        self.item_dense_[0] = 0
        self.popularity_ = clicks.astype(np.float32)

    def _fit_cooccurrence(self, events: pd.DataFrame) -> None:
        """Item-CF: items interacted with close together (within `cf_window` steps) by one user,
        weighted 1/distance and normalised by sqrt(n_i n_j) (the classic cosine item-CF)."""
        positive = events[events["action"].isin(tuple(ACTION_CODES))]
        positive = positive.drop_duplicates(["user_id", "session_id", "item_id"]).sort_values(["user_id", "ts"], kind="stable")
        users = positive["user_id"].to_numpy()
        items = positive["item_id"].to_numpy(dtype=np.int64)
        co = windowed_cooccurrence(users, items, self.n_items_, self.cf_window, lambda gap: 1.0 / gap)
        self.cooc_ = co.astype(np.float32)

    def _fit_vocabulary(self, items: pd.DataFrame, item_texts: Sequence[str]) -> None:
        """Word ids in order of first appearance. Why not `set(words(text))`: a set of strings iterates
        in an order Python's per-process hash seed decides, so word ids (and everything trained on
        them) differed between two runs of the same command on the same data."""
        vocabulary: dict[str, int] = {}
        rows, cols = [], []
        for item_id, text in zip(items["item_id"].to_numpy(dtype=np.int64), item_texts):
            for word in dict.fromkeys(words(text)):  # distinct, in text order
                cols.append(vocabulary.setdefault(word, len(vocabulary)))
                rows.append(item_id)
        self.vocabulary_ = vocabulary
        self.item_words_ = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))),
            shape=(self.n_items_, max(len(vocabulary), 1)),
        )

    # ------------------------------------------------------------------ transform

    def query_vectors(self, queries: Sequence[str | None]) -> np.ndarray:
        """MiniLM vectors `[n, d]` for queries (zeros for None), encoded once per distinct text."""
        new = sorted({q for q in queries if q is not None and q not in self.query_cache_})
        if new:
            for query, vector in zip(new, self.encode_queries(new)):
                self.query_cache_[query] = np.asarray(vector, dtype=np.float32)
        out = np.zeros((len(queries), self.text_.shape[1]), dtype=np.float32)
        for row, text in enumerate(queries):
            if text is not None:
                out[row] = self.query_cache_[text]
        return out

    def requests(self, requests: Sequence[Request]) -> RequestArrays:
        length = self.history_length
        history = np.zeros((len(requests), length), dtype=np.int64)
        actions = np.zeros((len(requests), length), dtype=np.int64)
        for row, request in enumerate(requests):
            recent = request.history[-length:]
            codes = request.history_actions[-length:] if request.history_actions else ("click",) * len(recent)
            kept = [(i, ACTION_CODES.get(a, 1)) for i, a in zip(recent, codes) if 0 < i < self.n_items_]
            if kept:
                history[row, length - len(kept):] = [i for i, _ in kept]
                actions[row, length - len(kept):] = [a for _, a in kept]
        queries = [r.query for r in requests]
        return RequestArrays(
            query=self.query_vectors(queries),
            history=history,
            history_action=actions,
            user=np.asarray([r.user_id % self.user_buckets + 1 for r in requests], dtype=np.int64),
            scenario=np.asarray([_scenario_slot(r.scenario) for r in requests], dtype=np.int64),
            is_search=np.asarray([r.query is not None for r in requests], dtype=np.float32),
            query_words=[np.asarray([self.vocabulary_[w] for w in dict.fromkeys(words(q)) if w in self.vocabulary_], dtype=np.int64)
                         if q else np.zeros(0, dtype=np.int64) for q in queries],
        )

    def pairs(self, req: RequestArrays, request_index: np.ndarray, item_ids: np.ndarray, chunk: int = 20_000) -> np.ndarray:
        """Interaction features `[p, len(PAIR_FEATURES)]` of candidate `item_ids[i]` for request `request_index[i]`."""
        request_index = np.asarray(request_index, dtype=np.int64)
        item_ids = np.asarray(item_ids, dtype=np.int64)
        if len(request_index) != len(item_ids):
            raise ValueError(f"request_index has {len(request_index)} entries, item_ids has {len(item_ids)}")
        if len(item_ids) and (item_ids.min() < 1 or item_ids.max() >= self.n_items_):
            raise ValueError(f"item_ids must be known item ids in [1, {self.n_items_ - 1}]")
        out = np.zeros((len(item_ids), len(PAIR_FEATURES)), dtype=np.float32)
        for begin in range(0, len(item_ids), chunk):
            end = begin + chunk
            out[begin:end] = self._pairs(req, request_index[begin:end], item_ids[begin:end])
        return out

    def _pairs(self, req: RequestArrays, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        text = self.text_[c]  # [p, d]
        hist = req.history[r]  # [p, L]
        valid = hist > 0
        n_hist = valid.sum(1)
        has_hist = n_hist > 0
        denominator = np.maximum(n_hist, 1)
        hist_cos, cf = self._history_similarity(req, r, c)
        hist_cos_masked = np.where(valid, hist_cos, -1.0)
        cf = cf * valid
        query_words = [req.query_words[i] for i in r]
        hits = np.zeros(len(c), dtype=np.float32)
        lengths = np.asarray([len(w) for w in query_words], dtype=np.float32)
        if lengths.sum():
            flat_words = np.concatenate(query_words)
            flat_items = np.repeat(c, lengths.astype(np.int64))
            found = np.asarray(self.item_words_[flat_items, flat_words]).reshape(-1)
            hits = np.bincount(np.repeat(np.arange(len(c)), lengths.astype(np.int64)), found, minlength=len(c)).astype(np.float32)
        mean_price = (self.log_price_[hist] * valid).sum(1) / denominator
        features = np.stack([
            (req.query[r] * text).sum(1),
            hits / np.maximum(lengths, 1),
            np.log1p(hits),
            np.where(has_hist, hist_cos_masked.max(1), 0.0),
            (hist_cos * valid).sum(1) / denominator,
            np.where(has_hist, hist_cos[:, -1], 0.0),
            np.log1p(10 * cf.sum(1)),
            np.log1p(10 * cf.max(1)),
            ((self.leaf_[hist] == self.leaf_[c][:, None]) & valid).sum(1) / denominator,
            ((self.parent_[hist] == self.parent_[c][:, None]) & valid).sum(1) / denominator,
            ((self.brand_[hist] == self.brand_[c][:, None]) & valid & (self.brand_[c][:, None] > 0)).sum(1) / denominator,
            ((hist == c[:, None]) & valid).any(1),
            np.where(has_hist, self.log_price_[c] - mean_price, 0.0),
            req.is_search[r],
        ], 1)
        return features.astype(np.float32)

    def _history_similarity(self, req: RequestArrays, r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Text cosine and co-occurrence of each candidate with each history slot, both `[p, L]`.

        Computed one request at a time (`[L, d] @ [d, m]`, a BLAS call) rather than by
        gathering a `[p, L, d]` tensor: candidates of one request share its history."""
        length = req.history.shape[1]
        cosine = np.zeros((len(c), length), dtype=np.float32)
        cooc = np.zeros((len(c), length), dtype=np.float32)
        order = np.argsort(r, kind="stable")
        sorted_r = r[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_r)) + 1]
        for begin, end in zip(starts, np.r_[starts[1:], len(order)]):
            rows = order[begin:end]
            hist = req.history[sorted_r[begin]]
            slots = np.flatnonzero(hist > 0)
            if not len(slots):
                continue
            cands = c[rows]
            cosine[np.ix_(rows, slots)] = (self.text_[cands] @ self.text_[hist[slots]].T)
            block = self.cooc_[hist[slots]][:, cands]
            if block.nnz:
                cooc[np.ix_(rows, slots)] = block.toarray().T
        return cosine, cooc

    # ------------------------------------------------------------------ persistence

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {name: getattr(self, name) for name in self._ARRAYS}
        np.savez(folder / "feature_space.npz", **arrays,
                 query_texts=np.asarray(list(self.query_cache_), dtype=object),
                 query_vectors=np.asarray(list(self.query_cache_.values()), dtype=np.float32).reshape(-1, self.text_.shape[1]),
                 vocabulary=np.asarray(list(self.vocabulary_), dtype=object),
                 params=np.asarray([self.history_length, self.small_dim, self.user_buckets, self.cf_window, self.n_items_]))
        sp.save_npz(folder / "cooccurrence.npz", self.cooc_)
        sp.save_npz(folder / "item_words.npz", self.item_words_)

    @classmethod
    def load(cls, folder: Path, encode_queries: Callable[[list[str]], np.ndarray]) -> "FeatureSpace":
        data = np.load(folder / "feature_space.npz", allow_pickle=True)
        history_length, small_dim, user_buckets, cf_window, n_items = (int(v) for v in data["params"])
        space = cls(history_length, small_dim, user_buckets, cf_window)
        space.n_items_ = n_items
        space.encode_queries = encode_queries
        for name in cls._ARRAYS:
            setattr(space, name, data[name])
        space.query_cache_ = dict(zip(data["query_texts"].tolist(), data["query_vectors"]))
        space.vocabulary_ = {word: i for i, word in enumerate(data["vocabulary"].tolist())}
        space.cooc_ = sp.load_npz(folder / "cooccurrence.npz").tocsr()
        space.item_words_ = sp.load_npz(folder / "item_words.npz").tocsr()
        return space

    _ARRAYS = ("text_", "small_", "text_mean_", "text_basis_", "leaf_", "parent_", "top_", "brand_", "is_ai_",
               "log_price_", "item_dense_", "item_dense_mean_", "popularity_")

    @property
    def n_leaf(self) -> int:
        return int(self.leaf_.max()) + 1

    @property
    def n_top(self) -> int:
        return int(self.top_.max()) + 1

    @property
    def n_brand(self) -> int:
        return int(self.brand_.max()) + 1


def _codes(item_ids: np.ndarray, names: pd.Series, size: int) -> tuple[np.ndarray, list[str]]:
    """Dense codes ≥ 1 per item id (0 = padding/unknown) and the names behind them."""
    codes, uniques = pd.factorize(names.to_numpy())
    out = np.zeros(size, dtype=np.int64)
    out[item_ids] = codes + 1
    return out, [str(u) for u in uniques]


def _scenario_slot(scenario: str) -> int:
    known = {"search": 1, "home_feed": 2, "item_detail": 3}
    return known.get(scenario, 4 + (sum(map(ord, scenario)) % (SCENARIO_SLOTS - 4)))
