"""The hidden slot model of an immersive feed, on top of a generated world, and exact replay.

A feed shows one item per slot. In a slot showing item i to user u the user

    orders it            with P(order) = σ(order_bias + affinity(u, i) + push · push[i])
    watches it           with P(view)  = σ(view_bias + affinity(u, i) + hook · hook[i])
    swipes on            with P(swipe) = σ(swipe_bias + swipe_hook · hook[i] − swipe_push · push[i]
                                           − fatigue · [leaf(i) = leaf of the previous slot])
                         times (1 − exit_after_order) if they ordered

and the session ends at the first slot they do not swipe on. `affinity` is the
world's preference U(u, i) (`genrec.data.truth`) less the user's 90th percentile
over the catalogue, so a good candidate sits near 0.

Every item has two hidden traits, mostly its brand's (so a model that sees the
brand can learn them) plus a little item noise: *hook*, what keeps people
watching and scrolling, and *push*, what makes people buy now and then leave
(a hard sell, a deal that ends the visit). The two are drawn anti-correlated
(`conflict`): the items that convert are often not the ones that keep the
session alive. That conflict inside a slot, fatigue across consecutive slots of
one leaf, and leaving after an order are the greedy traps STCRank is about.
`FeedConfig.control()` switches all three off: the chance to go on no longer
depends on what was shown, and ranking each slot by its own conversion is then
optimal.

The traits come from their own random stream (`[seed, 7]`): the world's events
and every other draw are unchanged, and the default demo is not touched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.special import expit

from genrec.data.truth import WorldTruth

AFFINITY_QUANTILE = 90.0
"""Percentile of U(u, ·) over the catalogue that `affinity` measures from."""
USERS_PER_CHUNK = 128
"""Users per block when the affinity offsets are computed (bounds memory at `128 × n_items`)."""


@dataclass(frozen=True)
class FeedConfig:
    """Coefficients of the slot model (see the module docstring); the defaults make greedy traps."""

    order_bias: float = -3.0
    push: float = 1.0
    view_bias: float = -0.5
    hook: float = 1.0
    swipe_bias: float = 1.5
    swipe_hook: float = 1.0
    swipe_push: float = 1.0
    fatigue: float = 1.5
    exit_after_order: float = 0.5
    conflict: float = 0.5
    """Correlation −conflict between a brand's hook and its push."""
    item_noise: float = 0.3
    """Std of an item's own deviation from its brand's traits (the brand's have std 1)."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("push", "hook", "swipe_hook", "swipe_push", "fatigue", "item_noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"FeedConfig.{name} must be ≥ 0, got {getattr(self, name)}")
        for name in ("exit_after_order", "conflict"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"FeedConfig.{name} must be in [0, 1], got {getattr(self, name)}")

    def control(self) -> "FeedConfig":
        """The same feed where a slot cannot change the chance to go on: no swipe effect of hook or push,
        no fatigue, no leaving after an order."""
        return replace(self, swipe_hook=0.0, swipe_push=0.0, fatigue=0.0, exit_after_order=0.0)


@dataclass(frozen=True)
class SlotProbabilities:
    """What each slot of a session does, `[..., n_slots]` each.

    `reach_next[t]` is the chance of seeing slot t + 1 given slot t was seen:
    `swipe[t] · (1 − exit_after_order · order[t])`.
    """

    order: np.ndarray
    view: np.ndarray
    swipe: np.ndarray
    reach_next: np.ndarray


@dataclass(frozen=True)
class SessionValue:
    """Expected orders, views and depth (slots seen) of sessions, `[n_sessions]` each."""

    orders: np.ndarray
    views: np.ndarray
    depth: np.ndarray


@dataclass(frozen=True)
class LoggedSlots:
    """Slots shown in sampled sessions, one row per slot the user saw, `[n_rows]` each.

    `previous_item` is the item of the slot before (−1 on a session's first slot).
    """

    user: np.ndarray
    item: np.ndarray
    previous_item: np.ndarray
    ordered: np.ndarray
    viewed: np.ndarray
    swiped: np.ndarray

    def __len__(self) -> int:
        return len(self.item)


class FeedTruth:
    """The slot model of one world. Users and items are 0-based indices (`user_id − 1`, `item_id − 1`)."""

    def __init__(self, world: WorldTruth, config: FeedConfig = FeedConfig()):
        self.world = world
        self.config = config
        rng = np.random.default_rng([config.seed, 7])
        n_brands = int(world.item_brand.max()) + 1 if len(world.item_brand) else 0
        brand_base = rng.normal(size=(n_brands + 1, 2))  # row n_brands: the unbranded items
        brand_hook = brand_base[:, 0]
        brand_push = -config.conflict * brand_base[:, 0] + np.sqrt(1.0 - config.conflict ** 2) * brand_base[:, 1]
        brand = np.where(world.item_brand >= 0, world.item_brand, n_brands)
        noise = rng.normal(size=(len(brand), 2)) * config.item_noise
        self.hook: np.ndarray = brand_hook[brand] + noise[:, 0]
        self.push: np.ndarray = brand_push[brand] + noise[:, 1]
        self.affinity_offset: np.ndarray = self._affinity_offsets()

    def _affinity_offsets(self) -> np.ndarray:
        items = np.arange(self.world.n_items)
        offsets = np.empty(self.world.n_users)
        for start in range(0, self.world.n_users, USERS_PER_CHUNK):
            users = np.arange(start, min(start + USERS_PER_CHUNK, self.world.n_users))
            utility = self.world.utility(users[:, None], items[None, :])
            offsets[users] = np.percentile(utility, AFFINITY_QUANTILE, axis=1)
        return offsets

    def affinity(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """U(u, i) less the user's 90th percentile over the catalogue; broadcastable 0-based indices."""
        users, items = np.broadcast_arrays(np.asarray(users), np.asarray(items))
        return self.world.utility(users, items) - self.affinity_offset[users]

    def slot_probabilities(self, users: np.ndarray, slates: np.ndarray) -> SlotProbabilities:
        """The slot model for sessions showing `slates` `[n_sessions, n_slots]` (item indices, in slot order)
        to `users` `[n_sessions]`."""
        slates = np.asarray(slates, dtype=np.int64)
        if slates.ndim != 2:
            raise ValueError(f"slates must be [n_sessions, n_slots], got shape {slates.shape}")
        users = np.asarray(users, dtype=np.int64).reshape(-1, 1)
        if len(users) != len(slates):
            raise ValueError(f"one user per session: {len(users)} users for {len(slates)} slates")
        leaf = self.world.item_leaf[slates]
        same_leaf = np.zeros(slates.shape, dtype=bool)
        same_leaf[:, 1:] = leaf[:, 1:] == leaf[:, :-1]
        return self.shown(users, slates, same_leaf)

    def shown(self, users: np.ndarray, items: np.ndarray, same_leaf: np.ndarray) -> SlotProbabilities:
        """The slot model for `items` shown to `users` after a slot of the same leaf or not (`same_leaf`),
        all broadcastable."""
        c = self.config
        users, items, same_leaf = np.broadcast_arrays(np.asarray(users), np.asarray(items), np.asarray(same_leaf))
        affinity = self.affinity(users, items)
        order = expit(c.order_bias + affinity + c.push * self.push[items])
        view = expit(c.view_bias + affinity + c.hook * self.hook[items])
        swipe = expit(c.swipe_bias + c.swipe_hook * self.hook[items] - c.swipe_push * self.push[items]
                         - c.fatigue * same_leaf)
        return SlotProbabilities(order, view, swipe, swipe * (1.0 - c.exit_after_order * order))

    def session_value(self, users: np.ndarray, slates: np.ndarray) -> SessionValue:
        """Expected orders, views and depth of each session: exact, not sampled."""
        return expected_session(self.slot_probabilities(users, slates))

    def log_sessions(self, users: np.ndarray, slates: np.ndarray, rng: np.random.Generator) -> LoggedSlots:
        """Sample what the users do, slot by slot, until each session ends: the feed's interaction log."""
        p = self.slot_probabilities(users, slates)
        ordered = rng.random(slates.shape) < p.order
        viewed = rng.random(slates.shape) < p.view
        swiped = rng.random(slates.shape) < p.swipe * np.where(ordered, 1.0 - self.config.exit_after_order, 1.0)
        seen = np.ones(slates.shape, dtype=bool)
        seen[:, 1:] = np.cumprod(swiped[:, :-1], axis=1).astype(bool)
        previous = np.full(slates.shape, -1, dtype=np.int64)
        previous[:, 1:] = slates[:, :-1]
        session_user = np.broadcast_to(np.asarray(users, dtype=np.int64)[:, None], slates.shape)
        return LoggedSlots(session_user[seen], slates[seen], previous[seen], ordered[seen], viewed[seen], swiped[seen])


def expected_session(p: SlotProbabilities) -> SessionValue:
    """Σ_t P(slot t seen) · (order, view, 1) with P(slot t + 1 seen) = P(slot t seen) · reach_next[t]."""
    reach = np.asarray(p.reach_next, dtype=np.float64)
    seen = np.ones_like(reach)
    seen[..., 1:] = np.cumprod(reach[..., :-1], axis=-1)
    return SessionValue((seen * p.order).sum(-1), (seen * p.view).sum(-1), seen.sum(-1))
