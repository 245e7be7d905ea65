"""Item-to-item co-occurrence: the statistic behind item-CF, computed one way for every user.

Two items co-occur when one user interacted with both within `window` steps of
their (time-ordered) sequence. Each such pair adds `gap_weight(gap)` times an
optional per-position weight to both cells (i, j) and (j, i); the sum is then
normalised by sqrt(n_i · n_j), the interaction counts of the two items: the classic
cosine item-CF, so that a popular item is not everyone's neighbour. The item-CF
baseline and the cascade's ranker features both read it, with their own weights.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sp


def windowed_cooccurrence(users: np.ndarray, items: np.ndarray, n_slots: int, window: int,
                          gap_weight: Callable[[int], float],
                          position_weight: np.ndarray | None = None) -> sp.csr_matrix:
    """`[n_slots, n_slots]` symmetric co-occurrence (float64, zero diagonal).

    `users`, `items` `[n]`: interactions ordered by user, then time; item ids < n_slots.
    `gap_weight(g)`: the weight of a pair g steps apart (g = 1..window).
    `position_weight` `[n]`: multiplies each pair by the later position's weight
    (e.g. an inverse user frequency); None for 1.
    """
    users, items = np.asarray(users), np.asarray(items, dtype=np.int64)
    if len(users) != len(items):
        raise ValueError(f"users and items must have the same length, got {len(users)} and {len(items)}")
    if window < 1:
        raise ValueError(f"window must be ≥ 1, got {window}")
    if len(items) and (int(items.min()) < 0 or int(items.max()) >= n_slots):
        raise ValueError(f"items must be ids in [0, {n_slots}), got [{int(items.min())}, {int(items.max())}]")
    rows, cols, values = [], [], []
    for gap in range(1, window + 1):
        if len(users) <= gap:
            break
        same_user = users[gap:] == users[:-gap]
        a, b = items[:-gap][same_user], items[gap:][same_user]
        different = a != b
        weight = np.full(int(different.sum()), gap_weight(gap))
        if position_weight is not None:
            weight = position_weight[gap:][same_user][different] * gap_weight(gap)
        rows += [a[different], b[different]]
        cols += [b[different], a[different]]
        values += [weight, weight]
    if not rows:
        return sp.csr_matrix((n_slots, n_slots))
    matrix = sp.coo_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                           shape=(n_slots, n_slots)).tocsr()
    matrix.sum_duplicates()
    norm = 1.0 / np.sqrt(np.maximum(np.bincount(items, minlength=n_slots)[:n_slots].astype(np.float64), 1.0))
    return (sp.diags(norm) @ matrix @ sp.diags(norm)).tocsr()
