"""The generated world's funnel as functions of its hidden truth: what `synth` draws events from,
and what a replay (`genrec.rolegen.replay`) evaluates a slate with, so the two cannot drift apart.

For user u shown item i at slot p (0-based) of a visit:

    P(click)        = (1 + p)^−0.7 · σ(−1.5 + 0.6 · clip(log(L · leaf_pref[u, leaf(i)]), −5, 2.5)
                                        + 0.5 · taste(u, i) + 0.3 · (log_pop[i] + 3) + 2.5 · [i intended])
    P(cart | click) = σ(−1 + 0.5 · taste + 0.8 · [i intended]) · cart scale
    P(order | cart) = σ(0.5 + 0.3 · taste) · order scale

(L leaves; the scales are 1 for active users, lower for dormant ones: `genrec.data.triggers`).
A cold-start user clicks the item they came for, wherever it is shown, and nothing else.
"""

from __future__ import annotations

import numpy as np

from genrec.data.truth import WorldTruth


def position_bias(position: np.ndarray) -> np.ndarray:
    """How much less a lower slot is looked at: (1 + position)^−0.7."""
    return (1.0 + position) ** -0.7


def click_logit(truth: WorldTruth, user: np.ndarray, item: np.ndarray, taste: np.ndarray,
                intended: np.ndarray | bool) -> np.ndarray:
    """The click's logit before the position bias, for 0-based `user` and `item` (and their `taste`)."""
    leaf_affinity = np.log(truth.leaf_pref[user, truth.item_leaf[item]] * truth.leaf_pref.shape[1] + 1e-9)
    return -1.5 + 0.6 * np.clip(leaf_affinity, -5, 2.5) + 0.5 * taste + 0.3 * (truth.item_log_pop[item] + 3) \
        + 2.5 * intended


def click_probability(truth: WorldTruth, user: np.ndarray, item: np.ndarray, taste: np.ndarray,
                      intended: np.ndarray | bool, position: np.ndarray, shift: np.ndarray | float = 0.0) -> np.ndarray:
    """P(click) of each impression: position bias × σ(click logit + `shift`); 1 or 0 for a cold-start user
    (the intended item or not)."""
    browsing = position_bias(position) * sigmoid(click_logit(truth, user, item, taste, intended) + shift)
    return np.where(truth.is_cold[user], np.asarray(intended, dtype=np.float64), browsing)


def cart_logit(taste: np.ndarray, intended: np.ndarray | bool) -> np.ndarray:
    return -1.0 + 0.5 * taste + 0.8 * intended


def order_logit(taste: np.ndarray) -> np.ndarray:
    return 0.5 + 0.3 * taste


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
