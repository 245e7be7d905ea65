"""Trigger items that awaken dormant users: the world where RoleGen's item roles matter.

In the default world a dormant user converts rarely whatever they are shown: each
cart and order chance is scaled by DORMANT_CART (0.06) and DORMANT_ORDER (0.3).
Nothing they see changes that, so no recommendation can awaken them. With
`WorldConfig.trigger_awakening = a > 0` some items are *triggers*: once a
dormant user clicks a trigger item of a leaf, their later carts and orders of
that leaf's items — in the rest of that visit and in every later one — are
scaled by the awake factors instead,

    cart:  DORMANT_CART  + a · (1 − DORMANT_CART)
    order: DORMANT_ORDER + a · (1 − DORMANT_ORDER)

(a = 1: as an active user). The trigger's value is instrumental: it is not what
the user buys, it is what makes the next item of its kind sell — RoleGen's
"functional role" of an item along a conversion trajectory, which a model of
immediate click or order probability cannot see.

Whether an item is a trigger is mostly its brand's (TRIGGER_BRAND_SHARE of brands
are trigger brands, whose items are triggers with probability BRAND_TRIGGER_P;
any other item with STRAY_TRIGGER_P), so a role can be learned from trajectories
at the brand level where one item is rarely seen. The trait is drawn from its
own random stream (`[seed, 11]`), so switching the knob on changes no other draw
and leaving it off leaves the default world bit-identical.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DORMANT_CART = 0.06
DORMANT_ORDER = 0.3
TRIGGER_BRAND_SHARE = 0.15
BRAND_TRIGGER_P = 0.8
STRAY_TRIGGER_P = 0.02


def draw_triggers(seed: int, item_brand: np.ndarray, n_brands: int) -> np.ndarray:
    """`[n]` bool: which items are triggers (brand trait plus strays; unbranded items only strays)."""
    rng = np.random.default_rng([seed, 11])
    trigger_brand = rng.random(n_brands) < TRIGGER_BRAND_SHARE
    branded = item_brand >= 0
    p = np.where(branded & trigger_brand[np.where(branded, item_brand, 0)], BRAND_TRIGGER_P, STRAY_TRIGGER_P)
    return rng.random(len(item_brand)) < p


def awakened(user: np.ndarray, leaf: np.ndarray, time_key: np.ndarray, trigger_click: np.ndarray) -> np.ndarray:
    """`[e]` bool: whether each event comes strictly after its user's first trigger click in its leaf.

    `time_key` orders one user's events in time; `trigger_click` marks the clicks on trigger items."""
    first = (pd.DataFrame({"u": user[trigger_click], "l": leaf[trigger_click], "t": time_key[trigger_click]})
             .groupby(["u", "l"])["t"].min())
    if first.empty:
        return np.zeros(len(user), dtype=bool)
    index = pd.MultiIndex.from_arrays([user, leaf])
    since = first.reindex(index).to_numpy(dtype=np.float64)  # NaN: no trigger clicked in that leaf
    return np.nan_to_num(since, nan=np.inf) < time_key


def conversion_scales(dormant: np.ndarray, awake: np.ndarray | None, awakening: float) -> tuple[np.ndarray, np.ndarray]:
    """The cart and order chance multipliers `[e]` of each event (1 for active users)."""
    cart = np.where(dormant, DORMANT_CART, 1.0)
    order = np.where(dormant, DORMANT_ORDER, 1.0)
    if awake is not None and awakening > 0:
        up = dormant & awake
        cart = np.where(up, DORMANT_CART + awakening * (1 - DORMANT_CART), cart)
        order = np.where(up, DORMANT_ORDER + awakening * (1 - DORMANT_ORDER), order)
    return cart, order
