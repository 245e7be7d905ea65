"""A learned last level: split crowded prefixes by what their items differ in, not by a counter.

Why. Attribute and residual levels leave groups of look-alikes on one code (on
Amazon Beauty up to 52 items: one leaf, one brand, one residual code). The
disambiguation level then numbers them in row order, a token that means nothing,
so the generator can only memorise it item by item. This level instead gives
every item one of `codebook_size` shared codes, learned by k-means on what the
levels above left unexplained (the residual), and assigns them *balanced within
each prefix group*: a group of g items fills at most ceil(g / K) items per code,
so a group no larger than the codebook gets distinct codes and a larger one is
cut into near-equal cells of similar items (fewest shared codes first: a group of
K + 1 items leaves one pair, not several). The codes are shared across groups,
so code 3 means the same residual direction (a size, a shade, a refill) under
every prefix: a token the model can learn once and reuse.

The assignment within a group is an exact minimum-cost assignment (each code
offered ceil(g / K) times, scipy's `linear_sum_assignment`); the codebook then
moves to the mean of its items and the two steps alternate, which is k-means
with a capacity per group ("balanced k-means"). Ties between identical items
(duplicate texts) are broken by the assignment itself, so duplicates still
spread over distinct codes while codes are free.

    level = BalancedLastLevel(codebook_size=16, seed=0)
    codes = level.fit_assign(residual, groups)   # residual [n, d], groups [n, P] → codes [n]
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linear_sum_assignment

from genrec.sid.codebook import MAX_CODEBOOK_SIZE
from genrec.sid.config import LAST_LEVELS  # noqa: F401  (re-exported: where the level is)
from genrec.sid.kmeans import assign, kmeans_centroids, squared_distances

MAX_ITEMS_PER_CELL = 8
"""The adaptive codebook is big enough that no code of the largest group holds more items than this."""
COVERED_ITEMS = 0.97
"""…and that the groups holding this share of the items get one code per item."""


def balanced_codebook_size(group_sizes: np.ndarray, max_items_per_cell: int = MAX_ITEMS_PER_CELL,
                           covered: float = COVERED_ITEMS) -> int:
    """Codes for the learned level: the smallest power of two ≥ both the size of the groups
    that hold a `covered` share of the items (smallest groups first; a group no larger than
    the codebook ends collision-free) and largest group / `max_items_per_cell`, clamped to
    [2, MAX_CODEBOOK_SIZE]."""
    sizes = np.sort(np.asarray(group_sizes))
    if sizes.size == 0 or (sizes < 1).any():
        raise ValueError(f"group_sizes must be a non-empty array of counts ≥ 1, got {sizes!r}")
    if max_items_per_cell < 1:
        raise ValueError(f"max_items_per_cell must be ≥ 1, got {max_items_per_cell}")
    if not 0 < covered <= 1:
        raise ValueError(f"covered must be in (0, 1], got {covered}")
    items_so_far = np.cumsum(sizes) / sizes.sum()
    typical = sizes[min(int(np.searchsorted(items_so_far, covered - 1e-12)), len(sizes) - 1)]
    need = max(float(typical), sizes[-1] / max_items_per_cell, 2.0)
    return int(min(2 ** math.ceil(math.log2(need) - 1e-9), MAX_CODEBOOK_SIZE))


class BalancedLastLevel:
    """Shared last-level codebook fitted by k-means with a per-group capacity.

    Parameters: `codebook_size` K; `iterations` of assign/update after a faiss
    k-means start; `seed`. Learned by `fit_assign`: `centroids_` float32 `[K, d]`.
    """

    def __init__(self, codebook_size: int, iterations: int = 5, seed: int = 0):
        if not isinstance(codebook_size, (int, np.integer)) or not 2 <= codebook_size <= MAX_CODEBOOK_SIZE:
            raise ValueError(f"codebook_size must be an integer in [2, {MAX_CODEBOOK_SIZE}], got {codebook_size!r}")
        if not isinstance(iterations, (int, np.integer)) or iterations < 0:
            raise ValueError(f"iterations must be an integer ≥ 0, got {iterations!r}")
        self.codebook_size = int(codebook_size)
        self.iterations = int(iterations)
        self.seed = seed

    def fit_assign(self, residual: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """Fit the codebook on `residual [n, d]` and return each item's code int64 `[n]`;
        `groups [n, P]` are the codes above this level (items with equal rows are siblings)."""
        residual = np.ascontiguousarray(residual, dtype=np.float32)
        groups = np.asarray(groups, dtype=np.int64)
        if residual.ndim != 2 or groups.ndim != 2 or len(groups) != len(residual) or len(residual) == 0:
            raise ValueError(f"residual must be [n ≥ 1, d] and groups [n, P]; got shapes {residual.shape} and {groups.shape}")
        self.centroids_ = kmeans_centroids(residual, self.codebook_size, self.seed)
        codes = self.assign(residual, groups)
        for _ in range(self.iterations):
            counts = np.bincount(codes, minlength=self.codebook_size)
            sums = np.zeros_like(self.centroids_, dtype=np.float64)
            np.add.at(sums, codes, residual)
            used = counts > 0
            self.centroids_[used] = (sums[used] / counts[used, None]).astype(np.float32)
            new_codes = self.assign(residual, groups)
            if np.array_equal(new_codes, codes):
                break
            codes = new_codes
        return codes

    def assign(self, residual: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """Balanced codes `[n]` with the fitted codebook: within each group of g siblings, at most
        ceil(g / K) items per code, total squared distance to the chosen codes minimal."""
        if not hasattr(self, "centroids_"):
            raise ValueError("this BalancedLastLevel is not fitted yet; call fit_assign(residual, groups) first")
        residual = np.ascontiguousarray(residual, dtype=np.float32)
        codes = assign(residual, self.centroids_)
        group = _group_ids(np.asarray(groups, dtype=np.int64))
        order = np.argsort(group, kind="stable")
        bounds = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0, True])
        for start, end in zip(bounds[:-1], bounds[1:]):
            if end - start < 2:
                continue
            rows = order[start:end]
            capacity = math.ceil(len(rows) / self.codebook_size)
            cost = squared_distances(residual[rows], self.centroids_).astype(np.float64)
            # the s-th item on one code pays s × (more than any assignment's whole distance saving):
            # fewest shared codes first, then the nearest codes
            step = len(rows) * float(cost.max() - cost.min()) + 1.0
            slots = np.repeat(cost, capacity, axis=1) + np.tile(np.arange(capacity) * step, self.codebook_size)
            _, slot = linear_sum_assignment(slots)
            codes[rows] = slot // capacity
        return codes


def _group_ids(groups: np.ndarray) -> np.ndarray:
    if groups.shape[1] == 0:
        return np.zeros(len(groups), dtype=np.int64)
    return np.unique(groups, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)
