"""Users who weigh click, cart and order differently: the world where personal fusion weights matter.

In the default world every user's funnel responds to items the same way, so one
fixed blend of P(click), P(cart), P(order) ranks as well as any personal blend.
With `WorldConfig.personal_objectives = β > 0` each item gets three hidden
*objective values* `v[i] = (eye-catching, worth keeping, worth buying)` and each
user a hidden weight `w[u]` on the simplex over them. Which item of a slate a
user picks follows the user's own weighted utility; the later stages respond to
their own value alike for everyone (so stage-wise rankers can learn them):

    click        logit += 3β · Σ_t w_t(u) v_t(i)                     the user's weighted utility
    cart | click logit += SHARED · β · v_cart(i)  + HABIT · (3 w_cart(u) − 1)
    order | cart logit += SHARED · β · v_order(i) + HABIT · (3 w_order(u) − 1)

An impulse buyer (w_click ≈ 1) goes for what catches the eye, a deliberate one
(w_order ≈ 1) for what is worth buying: the item that maximises one user's
utility is not another's, and the oracle ranks by it (`WorldTruth.objective_utility`).
The personal term sits on the click because within a visit the click is the
choice: a visit rarely carts two items, so a personal term on a later stage would
change *whether* the user buys, not *which* item. The HABIT terms make what a
user values show in what they do (a keeper carts more often, a buyer orders
more), which is how a fusion can tell users apart from their history without
seeing `w`.

An item's values are mostly its brand's (some brands catch the eye, others are
what people buy) plus a little item noise, so a ranker can learn them from the
brand it sees. Everything is drawn from its own random stream (`[seed, 2]`), so
switching the knob on changes no other draw and leaving it off leaves the
default world bit-identical.
"""

from __future__ import annotations

import numpy as np

OBJECTIVES: tuple[str, ...] = ("click", "cart", "order")
HABIT = 1.0
"""How much a user's weight on cart / order raises their cart / order base rate."""
SHARED = 0.5
"""How much everyone's cart and order stages respond to an item's cart and order values (× β)."""
ITEM_NOISE = 0.3
"""Std of an item's own deviation from its brand's objective values (the brand's have std 1)."""


def draw_objectives(seed: int, item_brand: np.ndarray, n_brands: int, n_users: int,
                    concentration: float) -> tuple[np.ndarray, np.ndarray]:
    """Users' objective weights `[u, 3]` (rows on the simplex, Dirichlet(concentration)) and
    items' objective values `[n, 3]` (brand value + item noise; unbranded items have their own)."""
    rng = np.random.default_rng([seed, 2])
    weights = rng.dirichlet(np.full(len(OBJECTIVES), concentration), n_users)
    brand_value = rng.normal(0.0, 1.0, (n_brands + 1, len(OBJECTIVES)))  # row n_brands: unbranded
    brand = np.where(item_brand >= 0, item_brand, n_brands)
    values = brand_value[brand] + rng.normal(0.0, ITEM_NOISE, (len(item_brand), len(OBJECTIVES)))
    return weights.astype(np.float64), values.astype(np.float64)


def weighted_utility(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Σ_t w_t v_t for rows of `weights` `[..., 3]` and `values` `[..., 3]` (broadcast)."""
    return (np.asarray(weights) * np.asarray(values)).sum(-1)


def funnel_shifts(strength: float, weights: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What `strength` = β adds to the click, cart | click and order | cart logits of impressions
    whose users have `weights` `[m, 3]` and items `values` `[m, 3]` (see the module docstring)."""
    click = 3 * strength * weighted_utility(weights, values)
    cart = SHARED * strength * values[:, 1] + HABIT * (3 * weights[:, 1] - 1)
    order = SHARED * strength * values[:, 2] + HABIT * (3 * weights[:, 2] - 1)
    return click, cart, order
