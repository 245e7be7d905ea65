"""The generated world's hidden truth: who likes what, and what a query means.

`genrec.data.synth` samples every session from this model, so it is also the
best ranking any retriever can produce on the world (`genrec.data.oracle`).
Item arrays are indexed by `item_id - 1`, user arrays by `user_id - 1`.

The preference of user u for item i is

    U(u, i) = log leaf_pref[u, leaf(i)]                        which kinds of things u buys
            + POPULARITY_WEIGHT * log_pop[i]                   what everybody buys
            + taste(u, i)

    taste(u, i) = loyalty[u] * [brand(i) ∈ favourite_brands[u]]
                + attribute_weight[u] * #{kinds k: attr[i, k] == attr_pref[u, k]}
                + QUALITY_WEIGHT * quality[i]
                - price_sensitivity[u] * log_price_ratio[i]    price vs the leaf's typical price
                - ai_aversion[u] * is_ai[i]

A session picks its leaf from `leaf_pref` (or stays on the previous session's
leaf with probability `continue_prob`), then an item within it ∝ exp(U). A
search query is written from that item's concepts (category, brand, attributes).
"""

from __future__ import annotations

import bisect
import io
import os
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

POPULARITY_WEIGHT = 0.6
QUALITY_WEIGHT = 0.7
QUERY_MATCH_WEIGHT = 4.0
"""Per matched query concept in the oracle; large, because p(query | item) is ~0
for an item lacking a concept the query names."""

TRUTH_FILE = "truth.npz"
FIXED_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
MIN_PREFIX = 3


@dataclass
class WorldTruth:
    """Arrays of the hidden model. Shapes: n items, u users, L leaves, K attribute kinds, C concepts."""

    # items
    item_leaf: np.ndarray            # [n] int, leaf index
    item_brand: np.ndarray           # [n] int, brand index or -1
    item_attr: np.ndarray            # [n, K] int, concept id of the item's value per kind, -1 if none
    item_concepts: np.ndarray        # [n, 4 + K] int, concept ids (department, group, leaf, brand, attributes), -1 pad
    item_quality: np.ndarray         # [n] float
    item_log_pop: np.ndarray         # [n] float, log of the Zipf popularity (max 0)
    item_log_price_ratio: np.ndarray  # [n] float
    item_is_ai: np.ndarray           # [n] bool
    # users
    leaf_pref: np.ndarray            # [u, L] float, rows sum to 1
    favourite_brands: np.ndarray     # [u, 3] int, brand index or -1
    loyalty: np.ndarray              # [u] float
    attr_pref: np.ndarray            # [u, K] int, preferred concept id per kind
    attribute_weight: np.ndarray     # [u] float
    price_sensitivity: np.ndarray    # [u] float
    ai_aversion: np.ndarray          # [u] float
    is_dormant: np.ndarray           # [u] bool, browses but rarely buys
    is_cold: np.ndarray              # [u] bool, one or two interactions in all
    # sessions (the intent behind each visit)
    session_id: np.ndarray           # [s] int
    session_leaf: np.ndarray         # [s] int
    session_target: np.ndarray       # [s] int, the intended item_id
    # vocabulary
    attribute_kinds: np.ndarray      # [K] str
    concept_names: np.ndarray        # [C] str, canonical lower-case text
    surface_text: np.ndarray         # [F] str, every way a concept is typed (synonyms, misspellings), sorted
    surface_concept: np.ndarray      # [F] int
    continue_prob: np.ndarray        # [] float
    # personal objectives (`genrec.data.objectives`; empty `[0, 3]` unless the world was built with them)
    objective_weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))      # [u, 3] float, rows sum to 1
    item_objective_value: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # [n, 3] float
    # trigger items (`genrec.data.triggers`; empty unless the world was built with trigger_awakening > 0)
    item_is_trigger: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # [n] bool

    @property
    def n_items(self) -> int:
        return len(self.item_leaf)

    @property
    def n_users(self) -> int:
        return len(self.loyalty)

    @property
    def has_objectives(self) -> bool:
        """Whether users weigh click, cart and order differently in this world."""
        return len(self.objective_weight) > 0

    # --- the preference model -------------------------------------------------

    def objective_utility(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Σ_t w_t(u) v_t(i): what decides whether u buys i beyond the shared funnel
        (`genrec.data.objectives`); broadcastable 0-based `users`, `items`."""
        if not self.has_objectives:
            raise ValueError("this world has no personal objectives; build it with WorldConfig(personal_objectives=β > 0)")
        users, items = np.broadcast_arrays(np.asarray(users), np.asarray(items))
        return (self.objective_weight[users] * self.item_objective_value[items]).sum(-1)


    def taste(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """taste(u, i) for 0-based `users` and `items` of broadcastable shapes."""
        users, items = np.broadcast_arrays(np.asarray(users), np.asarray(items))
        brand = self.item_brand[items]
        loyal = ((self.favourite_brands[users] == brand[..., None]) & (brand[..., None] >= 0)).any(-1)
        item_attr = self.item_attr[items]
        matches = ((self.attr_pref[users] == item_attr) & (item_attr >= 0)).sum(-1)
        return (
            self.loyalty[users] * loyal
            + self.attribute_weight[users] * matches
            + QUALITY_WEIGHT * self.item_quality[items]
            - self.price_sensitivity[users] * self.item_log_price_ratio[items]
            - self.ai_aversion[users] * self.item_is_ai[items]
        )

    def utility(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """U(u, i), the log-odds (up to a per-user constant) that u picks i."""
        users, items = np.broadcast_arrays(np.asarray(users), np.asarray(items))
        leaf = np.log(self.leaf_pref[users, self.item_leaf[items]] + 1e-12)
        return leaf + POPULARITY_WEIGHT * self.item_log_pop[items] + self.taste(users, items)

    def score_items(self, user_id: int, query: str | None = None, last_item_id: int | None = None) -> np.ndarray:
        """The oracle's scores `[n_items + 1]` indexed by item id (index 0, the padding id, is -inf).

        Uses the leaf the user was last on (sessions continue it with
        `continue_prob`) and, for search, how many of the query's concepts the
        item carries. Unknown users get the population-average leaf preference.
        """
        if 1 <= user_id <= self.n_users:
            user = user_id - 1
            leaf_p = self.leaf_pref[user].astype(np.float64)
            taste = self._taste_of_user(user)
        else:
            leaf_p = self.leaf_pref.mean(0)
            taste = QUALITY_WEIGHT * self.item_quality
        if last_item_id is not None and 1 <= last_item_id <= self.n_items:
            rho = float(self.continue_prob)
            leaf_p = (1 - rho) * leaf_p
            leaf_p[self.item_leaf[last_item_id - 1]] += rho
        scores = np.log(leaf_p[self.item_leaf] + 1e-12) + POPULARITY_WEIGHT * self.item_log_pop + taste
        if query is not None:
            scores = scores + QUERY_MATCH_WEIGHT * self.query_matches(query)
        return np.r_[-np.inf, scores].astype(np.float32)

    def _taste_of_user(self, user: int) -> np.ndarray:
        """taste(user, every item) `[n_items]`; the same sum as `taste`, without gathering per item."""
        favourites = self.favourite_brands[user]
        loyal = np.isin(self.item_brand, favourites[favourites >= 0])
        matches = (self.item_attr == self.attr_pref[user]).sum(1)  # item_attr -1 never equals a preference
        return (
            self.loyalty[user] * loyal
            + self.attribute_weight[user] * matches
            + QUALITY_WEIGHT * self.item_quality
            - self.price_sensitivity[user] * self.item_log_price_ratio
            - self.ai_aversion[user] * self.item_is_ai
        )

    # --- queries --------------------------------------------------------------

    def parse_query(self, query: str) -> list[np.ndarray]:
        """Concept groups a query names: each group lists the concept ids one phrase may mean.

        Greedy longest match of 1–3 words against every surface form (synonyms
        and misspellings included); a trailing fragment of ≥ 3 characters that
        starts some surface form (typing in progress) matches all of them.
        """
        words = query.lower().split()
        surfaces = self.surface_text.tolist()
        groups: list[np.ndarray] = []
        start = 0
        while start < len(words):
            tail = " ".join(words[start:])
            lo, hi = bisect.bisect_left(surfaces, tail), bisect.bisect_left(surfaces, tail + "\uffff")
            exact = lo < len(surfaces) and surfaces[lo] == tail
            if len(words) - start <= 3 and len(tail) >= MIN_PREFIX and hi > lo and not exact:
                groups.append(np.unique(self.surface_concept[lo:hi]))
                break
            for width in (3, 2, 1):
                phrase = " ".join(words[start:start + width])
                if start + width <= len(words) and (found := _equal_range(surfaces, phrase)) is not None:
                    groups.append(np.unique(self.surface_concept[found[0]:found[1]]))
                    start += width
                    break
            else:
                start += 1
        return groups

    def query_matches(self, query: str) -> np.ndarray:
        """How many of the query's concept groups each item carries, `[n_items]`."""
        count = np.zeros(self.n_items, dtype=np.float32)
        if not hasattr(self, "_concept_items"):
            flat = self.item_concepts.ravel()
            order = np.argsort(flat, kind="stable")
            self._concept_items = (order // self.item_concepts.shape[1],
                                   np.searchsorted(flat[order], np.arange(len(self.concept_names) + 1)))
        items, start = self._concept_items
        for group in self.parse_query(query):
            carries = np.zeros(self.n_items, dtype=bool)
            carries[np.concatenate([items[start[c]:start[c + 1]] for c in group])] = True
            count += carries
        return count

    def graded_relevance(self, query: str) -> np.ndarray:
        """The world's relevance grade 0–3 of every item for `query`, int64 `[n_items]`.

        grade = round(3 × matched / named), where `named` is the number of
        concept groups the query names (category, brand, attributes) and
        `matched` how many of them the item carries: 3 when it carries all
        (ESCI's Exact), 0 when none. The scale is ESCI's and KuaiSearch's 0–3,
        so the same relevance task runs on real judgements and on the world.
        A query that names no concept judges every item 0.
        """
        named = len(self.parse_query(query))
        if named == 0:
            return np.zeros(self.n_items, dtype=np.int64)
        return np.floor(3 * self.query_matches(query) / named + 0.5).astype(np.int64)

    # --- files ----------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write every array into one `.npz` that `np.load` reads.

        Written by hand rather than `np.savez` so the zip entries carry a fixed
        date: the same world gives the same bytes, and folder hashes stay stable.
        Optional arrays left empty are not written, so a world without them
        saves exactly the bytes it did before they existed."""
        with zipfile.ZipFile(Path(path), "w", compression=zipfile.ZIP_STORED) as archive:
            for f in fields(self):
                if f.name in OPTIONAL_ARRAYS and not np.asarray(getattr(self, f.name)).size:
                    continue
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.asarray(getattr(self, f.name)), allow_pickle=False)
                archive.writestr(zipfile.ZipInfo(f"{f.name}.npy", date_time=FIXED_ZIP_DATE), buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "WorldTruth":
        with np.load(Path(path), allow_pickle=False) as arrays:
            missing = [f.name for f in fields(cls) if f.name not in arrays.files and f.name not in OPTIONAL_ARRAYS]
            if missing:
                raise ValueError(f"{path}: not a genrec world truth file; arrays {missing} are missing")
            return cls(**{f.name: arrays[f.name] for f in fields(cls) if f.name in arrays.files})


OPTIONAL_ARRAYS = ("objective_weight", "item_objective_value", "item_is_trigger")
"""Arrays only some worlds have; absent from the file when empty."""


def _equal_range(sorted_texts: list[str], text: str) -> tuple[int, int] | None:
    lo = bisect.bisect_left(sorted_texts, text)
    hi = bisect.bisect_right(sorted_texts, text)
    return (lo, hi) if hi > lo else None
