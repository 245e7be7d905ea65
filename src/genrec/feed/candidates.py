"""The candidates a feed session orders into slots: items of the leaves the user's history favours, and bestsellers.

The same recipe as the world's home feed (preferred leaves and bestsellers,
`genrec.data.synth`), but read from what a production system can see — the
user's logged interactions and item popularity (`FeedFeatures`) — never from
the hidden preferences. Which items are candidates is not what this module is
about (the retrievers are); it gives every slot policy the same pool.
"""

from __future__ import annotations

import numpy as np

from genrec.feed.predict import FeedFeatures

BESTSELLERS = 200
"""Most popular items the bestseller part of a pool is drawn from."""


def feed_candidates(features: FeedFeatures, user: int, size: int, rng: np.random.Generator,
                    bestseller_share: float = 0.25) -> np.ndarray:
    """`size` distinct 0-based item indices for one user's session, in no particular order.

    A `bestseller_share` of them is drawn uniformly from the most popular items;
    the rest from the user's history leaves (leaf ∝ its count in the history,
    item ∝ popularity inside it).
    """
    if size < 1 or not 0.0 <= bestseller_share <= 1.0:
        raise ValueError(f"size must be ≥ 1 and bestseller_share in [0, 1], got {size} and {bestseller_share}")
    n_items = len(features.item_leaf)
    if size > n_items:
        raise ValueError(f"size {size} exceeds the catalogue's {n_items} items")
    weight = np.exp(features.item_popularity.astype(np.float64))
    top = np.argsort(-weight, kind="stable")[:BESTSELLERS]
    chosen: set[int] = set(rng.choice(top, min(int(round(bestseller_share * size)), len(top)), replace=False).tolist())
    leaf_count = features.leaf_count[user].astype(np.float64)
    if leaf_count.sum() > 0:
        in_leaves = np.flatnonzero(leaf_count[features.item_leaf] > 0)
        leaf_weight = np.bincount(features.item_leaf, weights=weight, minlength=len(leaf_count))
        leaf = features.item_leaf[in_leaves]
        p = leaf_count[leaf] * weight[in_leaves] / leaf_weight[leaf]
        p /= p.sum()
        draw = rng.choice(in_leaves, min(size - len(chosen), len(in_leaves)), replace=False, p=p)
        chosen.update(int(i) for i in draw if len(chosen) < size)
    while len(chosen) < size:  # thin history: top up with items by popularity
        chosen.add(int(rng.choice(n_items, p=weight / weight.sum())))
    return np.fromiter(sorted(chosen), dtype=np.int64)
