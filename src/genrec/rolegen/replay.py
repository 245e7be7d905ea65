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

from dataclasses import dataclass

import numpy as np
import pandas as pd

from genrec.data.funnel import cart_logit, click_logit, order_logit, position_bias, sigmoid
from genrec.data.triggers import conversion_scales
from genrec.data.truth import WorldTruth


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
    clicks = events[(events["action"] == "click")].copy()
    clicks = clicks[truth.item_is_trigger[clicks["item_id"].to_numpy() - 1]]
    out = np.zeros((len(users), truth.leaf_pref.shape[1]), dtype=bool)
    row_of_user = pd.Series(np.arange(len(users)), index=users)
    if not row_of_user.index.is_unique:
        raise ValueError("users must be distinct (one slate per user)")
    clicks = clicks[clicks["user_id"].isin(users)]
    rows = row_of_user.reindex(clicks["user_id"]).to_numpy()
    earlier = clicks["ts"].to_numpy() < before_ts[rows]
    out[rows[earlier], truth.item_leaf[clicks["item_id"].to_numpy()[earlier] - 1]] = True
    return out


def intent_probabilities(truth: WorldTruth, users: np.ndarray, last_items: np.ndarray, slates: np.ndarray,
                         rows_per_chunk: int = 256) -> np.ndarray:
    """`[B, K]`: the chance that the visit's intended item is `slates[b, j]`, under the world's session model.

    A visit stays on the leaf of the user's last interaction (`last_items`, 1-based, ≤ 0 = none) with
    `continue_prob`, else draws a leaf from the user's preferences, then an item of that leaf ∝ exp(U)
    (`genrec.data.synth`): the page that shows what the user came for gets its extra click and cart chance."""
    users, slates = np.asarray(users, dtype=np.int64), np.asarray(slates, dtype=np.int64)
    n_leaves, stay = truth.leaf_pref.shape[1], float(truth.continue_prob)
    last_leaf = np.where(last_items > 0, truth.item_leaf[np.maximum(last_items, 1) - 1], -1)
    everything = np.arange(truth.n_items)
    out = np.zeros(slates.shape)
    for start in range(0, len(users), rows_per_chunk):
        block = slice(start, start + rows_per_chunk)
        u = users[block] - 1
        weight = np.exp(truth.utility(u[:, None], everything[None, :]))  # within a leaf, ∝ P(item | leaf)
        per_leaf = np.stack([np.bincount(truth.item_leaf, weights=row, minlength=n_leaves) for row in weight])
        leaf_p = truth.leaf_pref[u].astype(np.float64)
        known = last_leaf[block] >= 0
        leaf_p[known] *= 1 - stay
        leaf_p[np.flatnonzero(known), last_leaf[block][known]] += stay
        item = slates[block] - 1
        real = item >= 0
        item = np.where(real, item, 0)
        leaf = truth.item_leaf[item]
        rows = np.arange(len(u))[:, None]
        out[block] = np.where(real, leaf_p[rows, leaf] * weight[rows, item] / per_leaf[rows, leaf], 0.0)
    return out


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
    awake_prob = awake.astype(np.float64)
    orders, clicks = np.zeros(len(users)), np.zeros(len(users))
    for slot in range(slates.shape[1]):
        item = slates[:, slot] - 1
        real = item >= 0
        item = np.where(real, item, 0)
        taste = truth.taste(u, item)
        p = intent[:, slot] if intent is not None else np.zeros(len(u))
        seen = position_bias(np.full(len(u), slot)) * real
        click_browsing = sigmoid(click_logit(truth, u, item, taste, False))
        click_intended = sigmoid(click_logit(truth, u, item, taste, True))
        click = seen * (p * click_intended + (1 - p) * click_browsing)
        clicks += click
        carted = seen * (p * click_intended * sigmoid(cart_logit(taste, True))
                         + (1 - p) * click_browsing * sigmoid(cart_logit(taste, False)))
        leaf = truth.item_leaf[item]
        awake_now = awake_prob[np.arange(len(u)), leaf]
        awake_cart, awake_order = conversion_scales(dormant, np.ones(len(u), dtype=bool), awakening)
        asleep_cart, asleep_order = conversion_scales(dormant, None, 0.0)
        scale = awake_now * awake_cart * awake_order + (1 - awake_now) * asleep_cart * asleep_order
        orders += carted * sigmoid(order_logit(taste)) * scale
        # A click on a trigger wakes the user in its leaf for every later slot and visit.
        woken = click * is_trigger[item]
        awake_prob[np.arange(len(u)), leaf] = 1 - (1 - awake_now) * (1 - woken)
    share = np.where(dormant, (truth.leaf_pref[u] * awake_prob).sum(1), 1.0)
    return SlateOutcome(orders, share, clicks)
