"""Replaying a recommended slate on a world with trigger items: orders now, and visits awakened for later.

A recommendation for a dormant user is judged by what it does to them, which
the logs cannot say for a slate nobody was shown: the world's hidden funnel
(`genrec.data.funnel`, `genrec.data.triggers`) can. For user u shown the slate
i_1 … i_K at slots 0 … K−1, clicks are independent across slots, and slot j
converts awake when u was awake in leaf(i_j) before the visit or clicked a
trigger of that leaf at an earlier slot:

    P(awake_j)  = 1 − (1 − awake_before[u, leaf_j]) · Π_{p<j, leaf_p = leaf_j, i_p trigger} (1 − P(click_p))
    E[order_j]  = P(click_j) · σ(cart) · σ(order) · (P(awake_j) · a_cart · a_order + (1 − P(awake_j)) · d_cart · d_order)

(a, d: the awake and dormant scales; an active user converts at scale 1). The
visit's expected orders are Σ_j E[order_j], exactly, with no sampling. What a
trigger click leaves behind is the *awake share*: Σ_L leaf_pref[u, L] ·
P(awake in L after the visit), the share of the user's future visits (which
follow their leaf preferences) that will convert at the awake rate.

A visit is usually for something: the world draws an intended item (the leaf of
the last interaction again with `continue_prob`, else one from the user's
preferences; an item of it ∝ exp(U)), and the slot that shows it gets the
funnel's intent terms. `intent_probabilities` gives each slot's chance of
showing it; the replay mixes the two funnels by that chance, so a page is paid
both for what the user came for and for what sells while they browse.

On a world without trigger items nothing wakes anyone: the replay is then the
plain funnel, and the expected orders of a slate are what any retriever's page
would sell (`benchmarks/expected_orders.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd

from genrec.data.funnel import cart_logit, click_probability, order_logit, sigmoid
from genrec.data.splits import Split, build_requests
from genrec.data.synth import World
from genrec.data.triggers import conversion_scales
from genrec.data.truth import WorldTruth
from genrec.retrieval import Request, Retriever


@dataclass(frozen=True)
class SlateOutcome:
    """Per replayed slate: expected orders and clicks in the visit, the awake share of later visits (dormant users)."""

    orders: np.ndarray       # [B]
    awake_share: np.ndarray  # [B]; for an active user, 1
    clicks: np.ndarray       # [B] expected clicks in the visit


def awake_before(truth: WorldTruth, events: pd.DataFrame, users: np.ndarray, before_ts: np.ndarray) -> np.ndarray:
    """`[B, L]` bool: whether user `users[b]` (1-based ids) clicked a trigger of leaf L before `before_ts[b]`."""
    if not len(truth.item_is_trigger):
        raise ValueError("this world has no trigger items; build it with WorldConfig(trigger_awakening > 0)")
    row_of_user = pd.Series(np.arange(len(users)), index=users)
    if not row_of_user.index.is_unique:
        raise ValueError("users must be distinct (one slate per user)")
    clicks = events[(events["action"] == "click") & events["user_id"].isin(users)]
    clicks = clicks[truth.item_is_trigger[clicks["item_id"].to_numpy() - 1]]
    out = np.zeros((len(users), truth.leaf_pref.shape[1]), dtype=bool)
    rows = row_of_user.reindex(clicks["user_id"]).to_numpy()
    earlier = clicks["ts"].to_numpy() < before_ts[rows]
    out[rows[earlier], truth.item_leaf[clicks["item_id"].to_numpy()[earlier] - 1]] = True
    return out


def leaf_intent(truth: WorldTruth, users: np.ndarray, last_items: np.ndarray, rows_per_chunk: int = 256) -> np.ndarray:
    """`[B, L]`: P(the visit is for leaf L) / Σ_{i in L} exp(U(u, i)) — so that P(intended item = i) is this
    at leaf(i) times exp(U(u, i)). The one pass over the whole catalogue a set of visits needs.

    A visit stays on the leaf of the user's last interaction (`last_items`, 1-based, ≤ 0 = none) with
    `continue_prob`, else draws a leaf from the user's preferences, then an item of it ∝ exp(U)
    (`genrec.data.synth`)."""
    users = np.asarray(users, dtype=np.int64)
    n_leaves, stay = truth.leaf_pref.shape[1], float(truth.continue_prob)
    last_leaf = np.where(last_items > 0, truth.item_leaf[np.maximum(last_items, 1) - 1], -1)
    everything = np.arange(truth.n_items)
    out = np.zeros((len(users), n_leaves))
    for start in range(0, len(users), rows_per_chunk):
        block = slice(start, start + rows_per_chunk)
        u = users[block] - 1
        weight = np.exp(truth.utility(u[:, None], everything[None, :]))
        per_leaf = np.stack([np.bincount(truth.item_leaf, weights=row, minlength=n_leaves) for row in weight])
        leaf_p = truth.leaf_pref[u].astype(np.float64)
        known = last_leaf[block] >= 0
        leaf_p[known] *= 1 - stay
        leaf_p[np.flatnonzero(known), last_leaf[block][known]] += stay
        out[block] = leaf_p / np.maximum(per_leaf, 1e-300)
    return out


def intent_probabilities(truth: WorldTruth, users: np.ndarray, last_items: np.ndarray, slates: np.ndarray,
                         leaf_weights: np.ndarray | None = None) -> np.ndarray:
    """`[B, K]`: the chance that the visit's intended item is `slates[b, j]` (1-based, -1 = empty), under the
    world's session model; `leaf_weights` is `leaf_intent(truth, users, last_items)` when already computed.
    The page that shows what the user came for gets its extra click and cart chance."""
    users, slates = np.asarray(users, dtype=np.int64), np.asarray(slates, dtype=np.int64)
    weights = leaf_intent(truth, users, last_items) if leaf_weights is None else leaf_weights
    item = slates - 1
    real = item >= 0
    item = np.where(real, item, 0)
    rows = np.arange(len(users))[:, None]
    own = np.exp(truth.utility((users - 1)[:, None], item))
    return np.where(real, weights[rows, truth.item_leaf[item]] * own, 0.0)


def replay_slates(truth: WorldTruth, users: np.ndarray, slates: np.ndarray, awake: np.ndarray,
                  awakening: float, intent: np.ndarray | None = None) -> SlateOutcome:
    """Exact expected outcomes of showing `slates` `[B, K]` (1-based item ids, -1 = empty slot) to `users` `[B]`
    (1-based), each awake before the visit in the leaves `awake` `[B, L]` marks (`awake_before`).

    `intent` `[B, K]` (`intent_probabilities`): the chance each slot shows the item the user came
    for, which adds the funnel's intent terms to its click and cart; None: a visit without one."""
    users, slates = np.asarray(users, dtype=np.int64), np.asarray(slates, dtype=np.int64)
    if slates.ndim != 2 or len(slates) != len(users) or awake.shape != (len(users), truth.leaf_pref.shape[1]):
        raise ValueError(f"slates must be [{len(users)}, K] and awake [{len(users)}, {truth.leaf_pref.shape[1]}], "
                         f"got {list(slates.shape)} and {list(awake.shape)}")
    if intent is not None and intent.shape != slates.shape:
        raise ValueError(f"intent must have the slates' shape {list(slates.shape)}, got {list(intent.shape)}")
    u = users - 1
    dormant = truth.is_dormant[u]
    is_trigger = truth.item_is_trigger if len(truth.item_is_trigger) else np.zeros(truth.n_items, dtype=bool)
    awake_cart, awake_order = conversion_scales(dormant, np.ones(len(u), dtype=bool), awakening)
    asleep_cart, asleep_order = conversion_scales(dormant, None, 0.0)
    awake_prob = awake.astype(np.float64)
    orders, clicks = np.zeros(len(users)), np.zeros(len(users))
    for slot in range(slates.shape[1]):
        item = slates[:, slot] - 1
        real = item >= 0
        item = np.where(real, item, 0)
        taste = truth.taste(u, item)
        p = intent[:, slot] if intent is not None else np.zeros(len(u))
        position = np.full(len(u), slot)
        click_browsing = click_probability(truth, u, item, taste, False, position) * real
        click_intended = click_probability(truth, u, item, taste, True, position) * real
        click = p * click_intended + (1 - p) * click_browsing
        clicks += click
        carted = (p * click_intended * sigmoid(cart_logit(taste, True))
                  + (1 - p) * click_browsing * sigmoid(cart_logit(taste, False)))
        leaf = truth.item_leaf[item]
        awake_now = awake_prob[np.arange(len(u)), leaf]
        scale = awake_now * awake_cart * awake_order + (1 - awake_now) * asleep_cart * asleep_order
        orders += carted * sigmoid(order_logit(taste)) * scale
        # A click on a trigger wakes the user in its leaf for every later slot and visit.
        woken = click * is_trigger[item]
        awake_prob[np.arange(len(u)), leaf] = 1 - (1 - awake_now) * (1 - woken)
    share = np.where(dormant, (truth.leaf_pref[u] * awake_prob).sum(1), 1.0)
    return SlateOutcome(orders, share, clicks)


@dataclass(frozen=True)
class HomeFeedVisits:
    """Every held-out moment of a split part as a home-feed visit (the same history, no query), replayable.

    What a set of visits needs once, whatever retriever fills them: the users, their last
    interaction, where they are already awake, and the intent model's catalogue pass."""

    world: World
    requests: list[Request]
    users: np.ndarray          # [B] 1-based
    last_items: np.ndarray     # [B] 1-based, 0 = no history
    awake: np.ndarray          # [B, L] bool
    leaf_weights: np.ndarray   # [B, L] `leaf_intent`

    @classmethod
    def of(cls, world: World, split: Split, part: Literal["valid", "test"]) -> "HomeFeedVisits":
        requests = [replace(r, query=None, scenario="home_feed") for r in build_requests(split, part)[0]]
        users = np.array([r.user_id for r in requests], dtype=np.int64)
        last_items = np.array([r.history[-1] if r.history else 0 for r in requests], dtype=np.int64)
        awake = (awake_before(world.truth, world.dataset.events, users, np.array([r.ts for r in requests]))
                 if world.config.trigger_awakening > 0
                 else np.zeros((len(users), world.truth.leaf_pref.shape[1]), dtype=bool))
        return cls(world, requests, users, last_items, awake, leaf_intent(world.truth, users, last_items))

    def slates(self, retriever: Retriever, k: int = 10) -> np.ndarray:
        """`[B, k]` the retriever's pages (-1 where it returned fewer items)."""
        return fill_slates(retriever.retrieve(self.requests, k), k)

    def replay(self, slates: np.ndarray) -> SlateOutcome:
        truth = self.world.truth
        intent = intent_probabilities(truth, self.users, self.last_items, slates, self.leaf_weights)
        return replay_slates(truth, self.users, slates, self.awake, self.world.config.trigger_awakening, intent)


def fill_slates(answers: Sequence, k: int) -> np.ndarray:
    """`[len(answers), k]` item ids of ranked answers, -1 where an answer is shorter."""
    slates = np.full((len(answers), k), -1, dtype=np.int64)
    for i, answer in enumerate(answers):
        slates[i, :min(k, len(answer))] = answer.item_ids[:k]
    return slates
