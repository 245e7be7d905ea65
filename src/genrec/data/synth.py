"""The embedded default dataset: a generated e-commerce world with a known truth.

`generate_world(WorldConfig())` builds ~10k items, 5k users and 300k events in
seconds, fully vectorized, so the same code builds 1M items for scale runs. The
world carries the structure the engine's parts exploit — a category tree,
brands with category affinity, attributes, noisy titles, price tiers, AI vs
human items, users with hidden preferences, Zipf popularity, search queries
typed from an intended item, and a position-biased funnel — and keeps the
hidden preferences (`WorldTruth`) so an oracle can rank by them.

The generative story, in order (docs/data.md tells it in prose):
  catalogue  leaf ~ Dirichlet sizes; brand ~ brands of the leaf's group; one value per attribute kind;
             price = leaf base × brand tier × noise; origin (AI creators list many items each);
             popularity ~ Zipf over a quality-correlated rank
  users      profile (age band, gender, city tier) → department taste → leaf preferences;
             favourite brands, preferred attribute values, price sensitivity, AI aversion;
             cold-start and dormant users
  sessions   per user a count (heavy-tailed activity), scenario, leaf (stay on the last one or draw
             from preferences), an intended item ∝ exp(U) within the leaf (importance resampling)
  slates     the logged engine's impressions: the intended item at a geometric position among
             items of the same leaf (search, item detail) or of preferred leaves and bestsellers (feed)
  funnel     click ∝ position bias × σ(preference), cart | click, order | cart (`genrec.data.funnel`);
             dormant users rarely buy;
             opt-in (`personal_objectives`): users who weigh click, cart and order differently
             (`genrec.data.objectives`); opt-in (`trigger_awakening`): trigger items whose click
             awakens a dormant user's conversion in that leaf (`genrec.data.triggers`)
  queries    for search sessions, words of the intended item's concepts as people type them
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from genrec.artifacts import atomic_path
from genrec.data import vocabulary as V
from genrec.data.dataset import Dataset
from genrec.data.funnel import cart_logit, click_probability, order_logit, sigmoid
from genrec.data.objectives import draw_objectives, funnel_shifts
from genrec.data.schema import SCENARIOS
from genrec.data.triggers import awakened, conversion_scales, draw_triggers
from genrec.data.truth import POPULARITY_WEIGHT, TRUTH_FILE, WorldTruth

SLATE_SIZES = {"search": 10, "home_feed": 8, "item_detail": 6}
TARGET_POSITION_P = {"search": 0.35, "home_feed": 0.25, "item_detail": 0.3}
"""The logged engine puts the intended item at a Geometric(p) - 1 slot: decent, not perfect."""
IMPORTANCE_SAMPLES = 16
WORLD_START_TS = 1_767_225_600  # 2026-01-01T00:00:00Z
EVENT_SPACING_S = 5
QUERY_SHAPES = (
    # (weight, uses brand, attributes, noun level) ; noun level 2 = leaf, 1 = group, 0 = department
    (0.25, False, 0, 2),
    (0.05, False, 0, 1),
    (0.03, False, 0, 0),
    (0.27, False, 1, 2),
    (0.12, True, 0, 2),
    (0.12, True, 1, 2),
    (0.08, False, 2, 2),
    (0.08, False, 1, 1),
)
"""Broad category words through specific brand + attribute queries."""


@dataclass(frozen=True)
class WorldConfig:
    """Size and behaviour of the generated world; the defaults are the default world."""

    n_items: int = 10_000
    n_users: int = 5_000
    n_events: int = 300_000
    seed: int = 0
    ai_item_share: float = 0.35
    cold_start_share: float = 0.08
    dormant_share: float = 0.12
    scenario_mix: tuple[float, float, float] = (0.45, 0.35, 0.20)
    """Session shares of search, home_feed, item_detail."""
    continue_prob: float = 0.4
    """Chance a session stays on the previous session's leaf (short-term interest)."""
    days: int = 90
    zipf_exponent: float = 1.0
    synonym_prob: float = 0.3
    misspell_prob: float = 0.06
    partial_prob: float = 0.12
    personal_objectives: float = 0.0
    """β of `genrec.data.objectives`: how strongly each user's own weights over click, cart and
    order decide what they buy. 0 (the default) leaves them out and the world unchanged."""
    objective_concentration: float = 0.4
    """Dirichlet concentration of those weights: small, each user cares mostly about one objective;
    large, everyone weighs them alike (a control where personal weights cannot matter)."""
    trigger_awakening: float = 0.0
    """How far clicking a trigger item lifts a dormant user's later conversion in its leaf toward an
    active user's (`genrec.data.triggers`; 0, the default, leaves triggers out and the world unchanged)."""

    def __post_init__(self) -> None:
        n_leaves = sum(len(leaves) for groups in V.CATEGORY_TREE.values() for leaves in groups.values())
        if self.n_items < 3 * n_leaves:
            raise ValueError(f"n_items must be ≥ {3 * n_leaves} (3 per leaf), got {self.n_items}")
        if self.n_users < 10:
            raise ValueError(f"n_users must be ≥ 10, got {self.n_users}")
        if self.n_events < 20 * self.n_users:
            raise ValueError(f"n_events must be ≥ 20 × n_users = {20 * self.n_users}, got {self.n_events}")
        if len(self.scenario_mix) != 3 or abs(sum(self.scenario_mix) - 1) > 1e-6 or min(self.scenario_mix) < 0:
            raise ValueError(f"scenario_mix must be 3 shares summing to 1 (search, home_feed, item_detail), got {self.scenario_mix}")
        for name in ("ai_item_share", "cold_start_share", "dormant_share", "continue_prob", "synonym_prob",
                     "misspell_prob", "partial_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.personal_objectives < 0:
            raise ValueError(f"personal_objectives must be ≥ 0 (0 = off), got {self.personal_objectives}")
        if not 0 <= self.trigger_awakening <= 1:
            raise ValueError(f"trigger_awakening must be in [0, 1] (0 = off), got {self.trigger_awakening}")
        if self.objective_concentration <= 0:
            raise ValueError(f"objective_concentration must be > 0, got {self.objective_concentration}")


@dataclass
class World:
    """A generated dataset and the hidden truth that generated it."""

    config: WorldConfig
    dataset: Dataset
    truth: WorldTruth

    def save(self, path: str | os.PathLike) -> None:
        """Write the dataset (`Dataset.save`) and `truth.npz` into one folder, atomically."""
        with atomic_path(path) as tmp:
            self.dataset.save(tmp, config=asdict(self.config), source="genrec.data.synth")
            self.truth.save(tmp / TRUTH_FILE)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "World":
        root = Path(path)
        if not (root / TRUTH_FILE).exists():
            raise ValueError(f"{root}: no {TRUTH_FILE}; expected a folder written by World.save (genrec data synth)")
        config = json.loads((root / "manifest.json").read_text())["config"]
        config["scenario_mix"] = tuple(config["scenario_mix"])
        return cls(WorldConfig(**config), Dataset.load(root), WorldTruth.load(root / TRUTH_FILE))


Progress = Callable[[str], None]


def generate_world(config: WorldConfig = WorldConfig(), progress: Progress | None = None) -> World:
    """Build the world of `config`; `progress(step_name)` is called as each step starts."""
    step = progress or (lambda name: None)
    rng = np.random.default_rng(config.seed)
    step("catalogue")
    vocab = _Vocabulary.build(rng, config)
    catalogue = _build_catalogue(config, vocab, rng)
    step("users")
    users = _build_users(config, vocab, catalogue, rng)
    truth = _truth(config, vocab, catalogue, users)
    if config.personal_objectives > 0:
        weights, values = draw_objectives(config.seed, catalogue.brand, len(vocab.brands), config.n_users,
                                          config.objective_concentration)
        truth = replace(truth, objective_weight=weights, item_objective_value=values)
    if config.trigger_awakening > 0:
        truth = replace(truth, item_is_trigger=draw_triggers(config.seed, catalogue.brand, len(vocab.brands)))
    step("sessions")
    n_sessions = int(config.n_events / _events_per_session(config, catalogue, users, truth))
    sessions = _build_sessions(config, catalogue, users, truth, rng, n_sessions)
    step("funnel")
    events = _build_events(config, catalogue, users, truth, sessions, rng)
    step("queries")
    queries = _build_queries(config, vocab, catalogue, sessions, rng)
    step("tables")
    truth = replace(truth, session_id=np.arange(1, len(sessions.user) + 1, dtype=np.int64),
                    session_leaf=sessions.leaf, session_target=sessions.target.astype(np.int64) + 1)
    dataset = Dataset(
        items=_items_frame(vocab, catalogue, rng),
        users=_users_frame(users),
        events=_events_frame(events, sessions, queries),
    )
    return World(config, dataset, truth)


# --- vocabulary ---------------------------------------------------------------------------------


@dataclass
class _Vocabulary:
    """Concepts (a leaf, a brand, an attribute value…) and every surface form that names them."""

    departments: list[str]
    groups: list[str]
    leaves: list[str]               # canonical leaf text, e.g. "running shoes"
    leaf_group: np.ndarray          # [L]
    group_department: np.ndarray    # [G]
    brands: list[str]
    kinds: list[str]                # attribute kinds, V.ATTRIBUTE_KINDS
    concept_names: list[str] = field(default_factory=list)
    concept_of: dict[str, int] = field(default_factory=dict)
    concept_forms: list[list[str]] = field(default_factory=list)   # per concept: canonical + synonyms
    misspelt: dict[str, str] = field(default_factory=dict)         # surface → a misspelling
    department_kind_values: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # (dept, kind) → concept ids

    @classmethod
    def build(cls, rng: np.random.Generator, config: WorldConfig) -> "_Vocabulary":
        departments, groups, leaves, leaf_group, group_department = [], [], [], [], []
        vocab = cls([], [], [], np.empty(0), np.empty(0), _brand_names(rng, config.n_items), list(V.ATTRIBUTE_KINDS))
        for department, tree in V.CATEGORY_TREE.items():
            departments.append(vocab._concept(department))
            for group, names in tree.items():
                group_department.append(len(departments) - 1)
                groups.append(vocab._concept(group))
                for name in names:
                    leaf_group.append(len(groups) - 1)
                    leaves.append(vocab._concept(name))
        vocab.departments, vocab.groups, vocab.leaves = departments, groups, leaves
        vocab.leaf_group, vocab.group_department = np.array(leaf_group), np.array(group_department)
        for brand in vocab.brands:
            vocab._concept(brand)
        for d, department in enumerate(V.CATEGORY_TREE):
            for kind, values in V.ATTRIBUTES[department].items():
                ids = [vocab.concept_of[vocab._concept(v)] for v in values]
                vocab.department_kind_values[(d, vocab.kinds.index(kind))] = np.array(ids)
        vocab._misspell(rng)
        return vocab

    def _concept(self, text: str) -> str:
        forms = [f.strip().lower() for f in text.split("|")]
        canonical = forms[0]
        if canonical not in self.concept_of:
            self.concept_of[canonical] = len(self.concept_names)
            self.concept_names.append(canonical)
            self.concept_forms.append(forms)
        return canonical

    def _misspell(self, rng: np.random.Generator) -> None:
        """One plausible typo per surface form: a dropped, doubled or swapped letter in its longest word."""
        taken = {form for forms in self.concept_forms for form in forms}
        all_forms = [form for forms in self.concept_forms for form in forms]
        ops = rng.integers(0, 3, len(all_forms))
        spots = rng.random(len(all_forms))
        for form, op, spot in zip(all_forms, ops, spots):
            words = form.split()
            w = max(range(len(words)), key=lambda j: len(words[j]))
            word = words[w]
            if len(word) < 5 or not word.isalpha():
                continue
            i = 1 + int(spot * (len(word) - 2))
            typo = (word[:i] + word[i + 1:], word[:i] + word[i] + word[i:], word[:i - 1] + word[i] + word[i - 1] + word[i + 1:])[op]
            text = " ".join(words[:w] + [typo] + words[w + 1:])
            if text not in taken:
                self.misspelt[form] = text
                taken.add(text)

    def surfaces(self) -> tuple[np.ndarray, np.ndarray]:
        """Every typed form (sorted) and its concept id; raises if one form names two concepts."""
        owner: dict[str, int] = {}
        for concept, forms in enumerate(self.concept_forms):
            for form in forms:
                for text in (form, self.misspelt.get(form)):
                    if text is None:
                        continue
                    if owner.setdefault(text, concept) != concept:
                        raise ValueError(f"surface form {text!r} names two concepts: "
                                         f"{self.concept_names[owner[text]]!r} and {self.concept_names[concept]!r}")
        texts = sorted(owner)
        return np.array(texts), np.array([owner[t] for t in texts], dtype=np.int64)


def _brand_names(rng: np.random.Generator, n_items: int) -> list[str]:
    n_brands = int(np.clip(n_items // 25, 60, len(V.BRAND_HEADS) * len(V.BRAND_TAILS) * len(V.BRAND_TAILS)))
    two = [h + t for h in V.BRAND_HEADS for t in V.BRAND_TAILS]
    three = [h + m.lower() + t for h in V.BRAND_HEADS for m in V.BRAND_TAILS for t in V.BRAND_TAILS]
    names = [two[i] for i in rng.permutation(len(two))] + [three[i] for i in rng.permutation(len(three))]
    return names[:n_brands]


# --- catalogue ----------------------------------------------------------------------------------


@dataclass
class _Catalogue:
    leaf: np.ndarray            # [n]
    brand: np.ndarray           # [n] brand index, -1 = unbranded
    attr: np.ndarray            # [n, K] concept id per kind, -1 where the department lacks the kind
    price: np.ndarray           # [n]
    log_price_ratio: np.ndarray  # [n]
    quality: np.ndarray         # [n]
    log_pop: np.ndarray         # [n]
    is_ai: np.ndarray           # [n]
    creator: np.ndarray         # [n]
    by_leaf: np.ndarray         # [n] item indices sorted by leaf
    leaf_start: np.ndarray      # [L + 1] offsets into by_leaf
    leaf_department: np.ndarray  # [L]
    brand_tier: np.ndarray      # [B]


def _build_catalogue(config: WorldConfig, vocab: _Vocabulary, rng: np.random.Generator) -> _Catalogue:
    n, n_leaves, n_brands = config.n_items, len(vocab.leaves), len(vocab.brands)
    leaf_department = vocab.group_department[vocab.leaf_group]
    leaf_share = rng.dirichlet(np.full(n_leaves, 3.0))
    leaf = np.repeat(np.arange(n_leaves), 3 + rng.multinomial(n - 3 * n_leaves, leaf_share))
    leaf = leaf[rng.permutation(n)]

    # Brands live in one group (category affinity); a Zipf share of the group's items.
    n_groups = len(vocab.groups)
    brand_group = np.r_[np.arange(n_groups), rng.integers(0, n_groups, n_brands - n_groups)] if n_brands >= n_groups \
        else rng.integers(0, n_groups, n_brands)
    brand_tier = rng.choice(len(V.BRAND_TIERS), n_brands, p=V.BRAND_TIER_SHARE)
    brand_size = rng.zipf(1.6, n_brands).clip(max=50).astype(float)
    brand_quality = np.array(V.BRAND_TIER_QUALITY)[brand_tier] + rng.normal(0, 0.3, n_brands)
    group_of_item = vocab.leaf_group[leaf]
    brand = _sample_within(rng, brand_group, brand_size, group_of_item, n_groups)
    brand[rng.random(n) < 0.03] = -1

    kinds = len(vocab.kinds)
    attr = np.full((n, kinds), -1, dtype=np.int64)
    department = leaf_department[leaf]
    for (d, k), values in vocab.department_kind_values.items():
        rows = np.flatnonzero(department == d)
        weights = rng.dirichlet(np.full(len(values), 1.5))
        attr[rows, k] = values[rng.choice(len(values), len(rows), p=weights)]

    is_ai = rng.random(n) < config.ai_item_share
    creator = _creators(rng, is_ai)

    department_price = np.array([V.DEPARTMENT_BASE_PRICE[name] for name in V.CATEGORY_TREE])
    leaf_base = department_price[leaf_department] * rng.lognormal(0, 0.4, n_leaves)
    tier_price = np.where(brand >= 0, np.array(V.BRAND_TIER_PRICE)[brand_tier[brand]], 0.8)
    raw = leaf_base[leaf] * tier_price * rng.lognormal(0, 0.25, n)
    price = np.floor(raw) + 0.99
    log_price_ratio = np.log(price / leaf_base[leaf])

    quality = np.where(brand >= 0, brand_quality[brand], -0.3) + rng.normal(0, 0.5, n) - 0.3 * is_ai
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-(quality + rng.gumbel(0, 1.0, n)), kind="stable")] = np.arange(n)
    log_pop = -config.zipf_exponent * np.log1p(rank)

    by_leaf = np.argsort(leaf, kind="stable")
    leaf_start = np.r_[0, np.cumsum(np.bincount(leaf, minlength=n_leaves))]
    return _Catalogue(leaf, brand, attr, price, log_price_ratio, quality, log_pop, is_ai, creator, by_leaf,
                      leaf_start, leaf_department, brand_tier)


def _sample_within(rng: np.random.Generator, owner_group: np.ndarray, weight: np.ndarray, group: np.ndarray,
                   n_groups: int) -> np.ndarray:
    """For each row's `group`, draw one owner of that group ∝ `weight` (-1 if the group has none)."""
    order = np.argsort(owner_group, kind="stable")
    start = np.r_[0, np.cumsum(np.bincount(owner_group, minlength=n_groups))]
    cum = np.cumsum(weight[order])
    lo = np.where(start[group] > 0, cum[np.maximum(start[group] - 1, 0)], 0.0)
    hi = cum[np.maximum(start[group + 1] - 1, 0)]
    pick = np.searchsorted(cum, lo + rng.random(len(group)) * (hi - lo), side="right")
    pick = np.clip(pick, start[group], np.maximum(start[group + 1] - 1, start[group]))
    return np.where(start[group + 1] > start[group], order[np.minimum(pick, len(order) - 1)], -1)


def _creators(rng: np.random.Generator, is_ai: np.ndarray) -> np.ndarray:
    """Human creators list ~2 items each, AI creators ~15: AIGC wins by volume."""
    creator = np.zeros(len(is_ai), dtype=np.int64)
    next_id = 1
    for mask, mean in ((~is_ai, 2.0), (is_ai, 15.0)):
        count = int(mask.sum())
        sizes = rng.geometric(1 / mean, max(count, 1))
        owner = np.searchsorted(np.cumsum(sizes), np.arange(count), side="right")
        creator[mask] = next_id + owner
        next_id += int(owner.max(initial=-1)) + 1
    return creator


# --- users --------------------------------------------------------------------------------------


@dataclass
class _Users:
    age_band: np.ndarray
    gender: np.ndarray
    city_tier: np.ndarray
    leaf_pref: np.ndarray           # [u, L]
    leaf_cum: "_RowSampler"         # draws a leaf per user row
    favourite_brands: np.ndarray    # [u, 3]
    loyalty: np.ndarray
    attr_pref: np.ndarray           # [u, K]
    attribute_weight: np.ndarray
    price_sensitivity: np.ndarray
    ai_aversion: np.ndarray
    is_dormant: np.ndarray
    is_cold: np.ndarray


def _build_users(config: WorldConfig, vocab: _Vocabulary, catalogue: _Catalogue, rng: np.random.Generator) -> _Users:
    u, n_leaves = config.n_users, len(vocab.leaves)
    department_names = list(V.CATEGORY_TREE)
    age = rng.choice(len(V.AGE_BANDS), u, p=[0.18, 0.3, 0.24, 0.16, 0.12])
    gender = rng.choice(len(V.GENDERS), u, p=[0.52, 0.44, 0.04])
    city = rng.choice(len(V.CITY_TIERS), u, p=[0.25, 0.35, 0.25, 0.15])

    by_gender = np.array([[V.DEPARTMENT_TASTE_BY_GENDER[g].get(d, 1.0) for d in department_names] for g in V.GENDERS])
    by_age = np.array([[V.DEPARTMENT_TASTE_BY_AGE[a].get(d, 1.0) for d in department_names] for a in V.AGE_BANDS])
    department_taste = by_gender[gender] * by_age[age] * rng.gamma(1.0, 1.0, (u, len(department_names)))
    leaf_pref = department_taste[:, catalogue.leaf_department] * rng.gamma(0.3, 1.0, (u, n_leaves)) + 1e-4
    leaf_pref /= leaf_pref.sum(1, keepdims=True)
    leaf_cum = _RowSampler(leaf_pref)

    # Favourite brands: brands of items in leaves the user likes.
    fav_leaves = leaf_cum.draw(rng, np.repeat(np.arange(u), 3)).reshape(u, 3)
    favourite = catalogue.brand[_pick_in_leaf(rng, catalogue, fav_leaves.ravel(), np.ones(len(catalogue.leaf)))]
    favourite = favourite.reshape(u, 3)
    favourite[rng.random((u, 3)) < 0.3] = -1
    loyalty = rng.gamma(2.0, 0.6, u)

    attr_pref = np.full((u, len(vocab.kinds)), -1, dtype=np.int64)
    for k in range(len(vocab.kinds)):
        values = np.unique(np.concatenate([v for (d, kk), v in vocab.department_kind_values.items() if kk == k]))
        attr_pref[:, k] = values[rng.integers(0, len(values), u)]
    attribute_weight = rng.gamma(2.0, 0.35, u)
    price_sensitivity = np.clip(np.array(V.CITY_TIER_PRICE_SENSITIVITY)[city] + rng.normal(0, 0.3, u), 0, None)
    ai_aversion = rng.normal(0.6, 0.4, u)
    is_cold = rng.random(u) < config.cold_start_share
    is_dormant = (rng.random(u) < config.dormant_share / max(1 - config.cold_start_share, 1e-9)) & ~is_cold
    return _Users(age, gender, city, leaf_pref.astype(np.float32), leaf_cum, favourite, loyalty, attr_pref,
                  attribute_weight, price_sensitivity, ai_aversion, is_dormant, is_cold)


class _RowSampler:
    """Draws from many categorical distributions (the rows of `weights` `[rows, k]`) at once.

    Row r's cumulative probabilities are shifted by r, so one `searchsorted` over
    the flattened matrix serves every draw without copying a row per draw."""

    def __init__(self, weights: np.ndarray):
        cum = np.cumsum(weights, 1, dtype=np.float64)
        self.k = weights.shape[1]
        self.flat = (cum / cum[:, -1:] + np.arange(len(weights))[:, None]).ravel()

    def draw(self, rng: np.random.Generator, rows: np.ndarray) -> np.ndarray:
        found = np.searchsorted(self.flat, rows + rng.random(rows.shape) * (1 - 1e-9), side="right")
        return np.minimum(found - rows * self.k, self.k - 1)


def _pick_in_leaf(rng: np.random.Generator, catalogue: _Catalogue, leaf: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """One item index per entry of `leaf`, drawn within the leaf ∝ `weight` `[n]`."""
    cum = np.cumsum(weight[catalogue.by_leaf])
    start, end = catalogue.leaf_start[leaf], catalogue.leaf_start[leaf + 1]
    lo = np.where(start > 0, cum[np.maximum(start - 1, 0)], 0.0)
    hi = cum[end - 1]
    pos = np.searchsorted(cum, lo + rng.random(leaf.shape) * (hi - lo), side="right")
    return catalogue.by_leaf[np.clip(pos, start, end - 1)]


# --- sessions -----------------------------------------------------------------------------------


@dataclass
class _Sessions:
    user: np.ndarray        # [s] 0-based, sorted
    scenario: np.ndarray    # [s] index into SCENARIOS
    leaf: np.ndarray        # [s]
    target: np.ndarray      # [s] item index
    start_ts: np.ndarray    # [s]


def _events_per_session(config: WorldConfig, catalogue: _Catalogue, users: _Users, truth: WorldTruth) -> float:
    """Measure events per session on a small pilot, so the world hits its event budget.

    Repeated items in a slate collapse into one impression, and small leaves
    repeat more, so the ratio depends on the catalogue; a pilot of a few
    thousand sessions (own seeded stream) measures it."""
    rng = np.random.default_rng([config.seed, 1])
    n = min(config.n_users * 4, 4_000)
    sessions = _build_sessions(config, catalogue, users, truth, rng, n)
    return len(_build_events(config, catalogue, users, truth, sessions, rng).item) / len(sessions.user)


def _build_sessions(config: WorldConfig, catalogue: _Catalogue, users: _Users, truth: WorldTruth,
                    rng: np.random.Generator, n_sessions: int) -> _Sessions:
    u = config.n_users
    n_sessions = max(n_sessions, u)
    counts = np.where(users.is_cold, 1 + (rng.random(u) < 0.4), 2)
    activity = np.where(users.is_cold, 0.0, rng.lognormal(0, 0.8, u))
    counts += rng.multinomial(max(n_sessions - int(counts.sum()), 0), activity / activity.sum())
    user = np.repeat(np.arange(u), counts)
    s = len(user)
    first = np.r_[0, np.cumsum(counts)[:-1]]
    is_first = np.zeros(s, dtype=bool)
    is_first[first] = True

    scenario = rng.choice(len(SCENARIOS), s, p=list(config.scenario_mix))
    leaf = users.leaf_cum.draw(rng, user)
    stay = (rng.random(s) < config.continue_prob) & ~is_first
    source = np.maximum.accumulate(np.where(stay, 0, np.arange(s)))
    leaf = leaf[source]

    # The intended item ∝ exp(U) within the leaf: propose ∝ popularity^w, reweight by taste.
    proposal = np.exp(POPULARITY_WEIGHT * catalogue.log_pop)
    candidates = _pick_in_leaf(rng, catalogue, np.repeat(leaf, IMPORTANCE_SAMPLES), proposal).reshape(s, -1)
    taste = truth.taste(np.repeat(user, IMPORTANCE_SAMPLES).reshape(s, -1), candidates)
    target = candidates[np.arange(s), np.argmax(taste + rng.gumbel(size=taste.shape), 1)]

    # Times: each user starts somewhere in the first half of the window and spreads sessions over the rest.
    window = config.days * 86_400
    user_start = WORLD_START_TS + rng.integers(0, window // 2, u)
    gap = 3_600 + rng.exponential(1.0, s) * (window / 2) / counts[user]
    gap[is_first] = 0
    cum_gap = np.cumsum(gap)
    start_ts = user_start[user] + (cum_gap - cum_gap[first][np.searchsorted(first, np.arange(s), side="right") - 1])
    return _Sessions(user, scenario, leaf, target, start_ts.astype(np.int64))


# --- slates and the funnel ----------------------------------------------------------------------


@dataclass
class _Events:
    session: np.ndarray   # [e] session index
    item: np.ndarray      # [e] item index
    action: np.ndarray    # [e] 0 impression .. 3 order
    position: np.ndarray  # [e]
    ts: np.ndarray        # [e]


def _build_events(config: WorldConfig, catalogue: _Catalogue, users: _Users, truth: WorldTruth, sessions: _Sessions,
                  rng: np.random.Generator) -> _Events:
    s, width = len(sessions.user), max(SLATE_SIZES.values())
    sizes = np.array([SLATE_SIZES[name] for name in SCENARIOS])[sessions.scenario]
    geometric_p = np.array([TARGET_POSITION_P[name] for name in SCENARIOS])[sessions.scenario]
    target_pos = np.minimum(rng.geometric(geometric_p) - 1, sizes - 1)

    # Search and item detail show the session's leaf; the feed mixes preferred leaves and bestsellers.
    proposal = np.exp(POPULARITY_WEIGHT * catalogue.log_pop)
    slate = np.empty((s, width), dtype=np.int64)
    is_feed = sessions.scenario == SCENARIOS.index("home_feed")
    rows = np.flatnonzero(~is_feed)
    slate[rows] = _pick_in_leaf(rng, catalogue, np.repeat(sessions.leaf[rows], width), proposal).reshape(-1, width)
    rows = np.flatnonzero(is_feed)
    liked = rng.random((len(rows), width)) < 0.5
    feed = np.empty((len(rows), width), dtype=np.int64)
    feed[liked] = _pick_in_leaf(rng, catalogue, users.leaf_cum.draw(rng, np.repeat(sessions.user[rows], width)[liked.ravel()]),
                                proposal)
    global_cum = np.cumsum(np.exp(catalogue.log_pop))
    feed[~liked] = np.minimum(np.searchsorted(global_cum, rng.random(int((~liked).sum())) * global_cum[-1], side="right"),
                              len(global_cum) - 1)
    slate[rows] = feed
    slate[np.arange(s), target_pos] = sessions.target

    # Impressions, one per (session, item): the first slot an item took.
    position = np.broadcast_to(np.arange(width), (s, width))
    shown = position < sizes[:, None]
    session = np.broadcast_to(np.arange(s)[:, None], (s, width))[shown]
    item, position = slate[shown], position[shown]
    keep = ~pd.DataFrame({"s": session, "i": item}).duplicated().to_numpy()
    session, item, position = session[keep], item[keep], position[keep]

    user = sessions.user[session]
    intended = item == sessions.target[session]
    taste = truth.taste(user, item)
    # Personal objectives (off by default): shifts of 0.0 leave every logit, and so every draw, as it was.
    click_shift, cart_shift, order_shift = (
        funnel_shifts(config.personal_objectives, truth.objective_weight[user], truth.item_objective_value[item])
        if config.personal_objectives > 0 else (0.0, 0.0, 0.0))
    click = rng.random(len(item)) < click_probability(truth, user, item, taste, intended, position, click_shift)
    dormant = users.is_dormant[user]
    # Trigger items (off by default): a dormant user converts in a leaf after clicking one of its triggers.
    awake = (awakened(user, catalogue.leaf[item], session * (width + 1) + position, click & truth.item_is_trigger[item])
             if config.trigger_awakening > 0 else None)
    cart_scale, order_scale = conversion_scales(dormant, awake, config.trigger_awakening)
    cart = click & (rng.random(len(item)) < sigmoid(cart_logit(taste, intended) + cart_shift) * cart_scale)
    order = cart & (rng.random(len(item)) < sigmoid(order_logit(taste) + order_shift) * order_scale)

    # Rows: impressions in slot order, then each clicked slot's click → cart → order.
    rows_session = np.concatenate([session, session[click], session[cart], session[order]])
    rows_item = np.concatenate([item, item[click], item[cart], item[order]])
    rows_position = np.concatenate([position, position[click], position[cart], position[order]])
    rows_action = np.concatenate([np.full(len(item), 0), np.full(click.sum(), 1), np.full(cart.sum(), 2),
                                  np.full(order.sum(), 3)])
    key = np.where(rows_action == 0, rows_position, width + 4 * rows_position + rows_action)
    order_rows = np.lexsort((key, rows_session))
    rows_session = rows_session[order_rows]
    first = np.searchsorted(rows_session, rows_session, side="left")
    step_in_session = np.arange(len(rows_session)) - first
    ts = sessions.start_ts[rows_session] + EVENT_SPACING_S * step_in_session
    return _Events(rows_session, rows_item[order_rows], rows_action[order_rows], rows_position[order_rows], ts)


# --- queries ------------------------------------------------------------------------------------


def _build_queries(config: WorldConfig, vocab: _Vocabulary, catalogue: _Catalogue, sessions: _Sessions,
                   rng: np.random.Generator) -> np.ndarray:
    """One query per search session (None elsewhere), written from the intended item's concepts."""
    queries = np.full(len(sessions.user), None, dtype=object)
    search = np.flatnonzero(sessions.scenario == SCENARIOS.index("search"))
    item = sessions.target[search]
    m = len(search)
    shape = rng.choice(len(QUERY_SHAPES), m, p=[q[0] for q in QUERY_SHAPES])
    uses_brand = np.array([q[1] for q in QUERY_SHAPES])[shape] & (catalogue.brand[item] >= 0)
    n_attrs = np.array([q[2] for q in QUERY_SHAPES])[shape]
    noun_level = np.array([q[3] for q in QUERY_SHAPES])[shape]

    leaf = catalogue.leaf[item]
    group = vocab.leaf_group[leaf]
    department = vocab.group_department[group]
    noun_concept = np.select(
        [noun_level == 2, noun_level == 1],
        [np.array([vocab.concept_of[x] for x in vocab.leaves])[leaf], np.array([vocab.concept_of[x] for x in vocab.groups])[group]],
        np.array([vocab.concept_of[x] for x in vocab.departments])[department],
    )
    brand_concept = np.where(uses_brand, np.array([vocab.concept_of[b.lower()] for b in vocab.brands] + [-1])[catalogue.brand[item]], -1)

    # Attributes people type: a random order of the item's query-able kinds, the first n_attrs of them.
    typeable = np.array([kind in V.QUERY_ATTRIBUTE_KINDS for kind in vocab.kinds])
    attrs = catalogue.attr[item]
    priority = np.where((attrs >= 0) & typeable, rng.random(attrs.shape), -1.0)
    ranked = np.argsort(-priority, 1)
    first_attr = np.where(n_attrs >= 1, attrs[np.arange(m), ranked[:, 0]], -1)
    second_attr = np.where(n_attrs >= 2, attrs[np.arange(m), ranked[:, 1]], -1)
    first_attr = np.where(priority[np.arange(m), ranked[:, 0]] >= 0, first_attr, -1)
    second_attr = np.where(priority[np.arange(m), ranked[:, 1]] >= 0, second_attr, -1)

    noun_last = rng.random(m) < 0.85
    slots = np.where(noun_last[:, None], np.stack([brand_concept, first_attr, second_attr, noun_concept], 1),
                     np.stack([brand_concept, noun_concept, first_attr, second_attr], 1))
    texts = _typed(vocab, config, slots, rng)
    filler = np.array(V.QUERY_FILLERS, dtype=object)[rng.integers(0, len(V.QUERY_FILLERS), m)]
    texts = np.where(rng.random(m) < 0.08, filler + " " + texts, texts)
    queries[search] = texts
    return queries


def _typed(vocab: _Vocabulary, config: WorldConfig, slots: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Join slot concepts `[m, slots]` (-1 = empty) into typed text: synonyms, typos, a half-typed last word."""
    canonical = np.array([forms[0] for forms in vocab.concept_forms] + [""], dtype=object)
    synonym_count = np.array([len(forms) - 1 for forms in vocab.concept_forms] + [0])
    synonym_table = [forms[1:] or [forms[0]] for forms in vocab.concept_forms]
    m, k = slots.shape
    concept = np.where(slots >= 0, slots, len(canonical) - 1)
    words = canonical[concept].copy()
    use_synonym = (rng.random((m, k)) < config.synonym_prob) & (synonym_count[concept] > 0)
    pick = rng.integers(0, 1 << 30, (m, k))
    for r, c in zip(*np.nonzero(use_synonym)):
        options = synonym_table[concept[r, c]]
        words[r, c] = options[pick[r, c] % len(options)]
    typo = (rng.random((m, k)) < config.misspell_prob) & (slots >= 0)
    for r, c in zip(*np.nonzero(typo)):
        words[r, c] = vocab.misspelt.get(words[r, c], words[r, c])
    text = words[:, 0]
    for c in range(1, k):
        text = np.where((text != "") & (words[:, c] != ""), text + " " + words[:, c], text + words[:, c])
    partial = np.flatnonzero(rng.random(m) < config.partial_prob)
    cut = rng.uniform(0.5, 0.8, len(partial))
    for r, fraction in zip(partial, cut):
        last = text[r].rsplit(" ", 1)
        if len(last[-1]) >= 6:
            last[-1] = last[-1][: max(3, int(len(last[-1]) * fraction))]
            text[r] = " ".join(last)
    return text


# --- tables -------------------------------------------------------------------------------------


def _items_frame(vocab: _Vocabulary, catalogue: _Catalogue, rng: np.random.Generator) -> pd.DataFrame:
    """The items table. Titles are assembled column-wise with Arrow string kernels (1M titles in ~1 s)."""
    n, n_leaves, kinds = len(catalogue.leaf), len(vocab.leaves), len(vocab.kinds)
    department_names = list(V.CATEGORY_TREE)
    group_names = [g for tree in V.CATEGORY_TREE.values() for g in tree]
    paths = [[department_names[vocab.group_department[vocab.leaf_group[l]]], group_names[vocab.leaf_group[l]],
              _title_case(vocab.leaves[l])] for l in range(n_leaves)]
    category = [paths[l][:] for l in catalogue.leaf.tolist()]

    concept_value = np.array(vocab.concept_names, dtype=object)
    concept_size = np.array([_title_case(name) for name in vocab.concept_names], dtype=object)  # "M", "EU 42"
    attributes = np.empty(n, dtype=object)
    department = catalogue.leaf_department[catalogue.leaf]
    for d in range(len(department_names)):
        rows = np.flatnonzero(department == d)
        own = [k for k in range(kinds) if (d, k) in vocab.department_kind_values]
        names = [vocab.kinds[k] for k in own]
        values = np.column_stack([(concept_size if vocab.kinds[k] == "size" else concept_value)[catalogue.attr[rows, k]]
                                  for k in own])
        attributes[rows] = [dict(zip(names, row)) for row in values.tolist()]

    titles = pa.array([_title_case(name) for name in vocab.concept_names])
    sizes = pa.array([("Size " + t) if len(t) <= 3 else t for t in titles.to_pylist()])
    size_kind = vocab.kinds.index("size")
    shown = (rng.random((n, kinds)) < 0.75) & (catalogue.attr >= 0)
    described = _nonempty(_joined(*[_take(titles, np.where(shown[:, k], catalogue.attr[:, k], -1))
                                    for k in range(kinds) if k != size_kind]))
    size = _take(sizes, catalogue.attr[:, size_kind])
    synonyms = [(vocab.concept_forms[vocab.concept_of[name]][1:] or [name])[0] for name in vocab.leaves]
    nouns = pa.array([_title_case(name) for name in vocab.leaves + synonyms])
    noun = _take(nouns, catalogue.leaf + n_leaves * (rng.random(n) < 0.2))
    brand = _take(pa.array(vocab.brands), catalogue.brand)

    def sometimes(words: list[str], p: float | np.ndarray) -> pa.Array:
        return _take(pa.array(words), np.where(rng.random(n) < p, rng.integers(0, len(words), n), -1))

    lead, tail = sometimes(V.TITLE_LEADS, 0.25), sometimes(V.TITLE_TAILS, 0.25)
    ai_words = sometimes(V.AI_TITLE_WORDS, np.where(catalogue.is_ai, 0.6, 0.0))
    template = rng.choice(4, n, p=[0.45, 0.25, 0.15, 0.15])
    layouts = [
        _joined(lead, ai_words, brand, described, noun, tail, size),                                  # New Velax Red Boots Size M
        _joined(_joined(brand, noun, ai_words), _wrap(" - ", described), _wrap(", ", size), sep=""),  # Velax Boots - Red, Size M
        _joined(_joined(ai_words, described, noun, _wrap("by ", brand)), _wrap(", ", size), sep=""),  # Red Boots by Velax, Size M
        _joined(_joined(noun, brand, described, tail), _wrap(" (", size, ")"), sep=""),               # Boots Velax Red (Size M)
    ]
    title = pc.choose(pa.array(template, type=pa.int8()), *layouts)
    return pd.DataFrame({
        "item_id": np.arange(1, n + 1, dtype=np.int64),
        "title": title.to_numpy(zero_copy_only=False),
        "category": category,
        "attributes": attributes,
        "brand": brand.to_numpy(zero_copy_only=False),
        "price": catalogue.price.astype(np.float64),
        "origin": np.where(catalogue.is_ai, "ai", "human").astype(object),
        "creator_id": catalogue.creator,
    })


def _take(words: pa.Array, index: np.ndarray) -> pa.Array:
    """`words[index]` as an Arrow string array, null where `index` is -1."""
    return pc.take(words, pa.array(index, mask=index < 0))


def _joined(*parts: pa.Array, sep: str = " ") -> pa.Array:
    """Row-wise join of the non-null parts; a row with none gives "".

    A leading "" part keeps rows whose parts are all null (Arrow's skip mode
    drops them otherwise); its separator is cut off afterwards."""
    text = pc.binary_join_element_wise("", *parts, sep, null_handling="skip")
    return pc.utf8_slice_codeunits(text, len(sep)) if sep else text


def _nonempty(text: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)


def _wrap(prefix: str, part: pa.Array, suffix: str = "") -> pa.Array:
    """prefix + part + suffix, or null where `part` is null."""
    return pc.binary_join_element_wise(prefix, part, suffix, "", null_handling="emit_null")


_UPPER = {"usb", "usb-c", "spf", "eu", "anc", "xs", "xl", "xxl", "s", "m", "l", "stem", "wifi", "wi-fi"}


def _title_case(text: str) -> str:
    return " ".join(w.upper() if w in _UPPER else re.sub(r"^[a-z]", lambda c: c.group().upper(), w) for w in text.split())


def _users_frame(users: _Users) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": np.arange(1, len(users.age_band) + 1, dtype=np.int64),
        "age_band": np.array(V.AGE_BANDS, dtype=object)[users.age_band],
        "gender": np.array(V.GENDERS, dtype=object)[users.gender],
        "city_tier": np.array(V.CITY_TIERS, dtype=np.int64)[users.city_tier],
    })


def _events_frame(events: _Events, sessions: _Sessions, queries: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": sessions.user[events.session].astype(np.int64) + 1,
        "ts": events.ts.astype(np.int64),
        "session_id": events.session.astype(np.int64) + 1,
        "scenario": np.array(SCENARIOS, dtype=object)[sessions.scenario[events.session]],
        "query": queries[events.session],
        "item_id": events.item.astype(np.int64) + 1,
        "action": np.array(["impression", "click", "cart", "order"], dtype=object)[events.action],
        "position": events.position.astype(np.int32),
    })


def _truth(config: WorldConfig, vocab: _Vocabulary, catalogue: _Catalogue, users: _Users) -> WorldTruth:
    """The hidden model; its session arrays stay empty until the sessions are drawn."""
    surface_text, surface_concept = vocab.surfaces()
    department_concept = np.array([vocab.concept_of[x] for x in vocab.departments])
    group_concept = np.array([vocab.concept_of[x] for x in vocab.groups])
    leaf_concept = np.array([vocab.concept_of[x] for x in vocab.leaves])
    brand_concept = np.array([vocab.concept_of[b.lower()] for b in vocab.brands] + [-1])
    group = vocab.leaf_group[catalogue.leaf]
    concepts = np.column_stack([
        department_concept[vocab.group_department[group]], group_concept[group], leaf_concept[catalogue.leaf],
        brand_concept[catalogue.brand], catalogue.attr,
    ])
    return WorldTruth(
        item_leaf=catalogue.leaf, item_brand=catalogue.brand, item_attr=catalogue.attr, item_concepts=concepts,
        item_quality=catalogue.quality, item_log_pop=catalogue.log_pop, item_log_price_ratio=catalogue.log_price_ratio,
        item_is_ai=catalogue.is_ai,
        leaf_pref=users.leaf_pref, favourite_brands=users.favourite_brands, loyalty=users.loyalty,
        attr_pref=users.attr_pref, attribute_weight=users.attribute_weight,
        price_sensitivity=users.price_sensitivity, ai_aversion=users.ai_aversion,
        is_dormant=users.is_dormant, is_cold=users.is_cold,
        session_id=np.empty(0, dtype=np.int64), session_leaf=np.empty(0, dtype=np.int64),
        session_target=np.empty(0, dtype=np.int64),
        attribute_kinds=np.array(vocab.kinds), concept_names=np.array(vocab.concept_names),
        surface_text=surface_text, surface_concept=surface_concept,
        continue_prob=np.array(config.continue_prob),
    )
