"""Two rules every tokenizer shares: how big a codebook is, and how SIDs are made unique.

Codebook size. A code of `levels` levels with K codes each names K^levels leaf
prefixes. Too few and many items share a prefix (long disambiguation lists);
too many and the decoder spreads a small catalog over a huge, mostly empty
vocabulary (a 3×256 code for 2k items leaves 99.99% of prefixes empty and
each code seen by a handful of items). The adaptive rule gives just enough
room for one item per prefix on a balanced tree:

    K = smallest power of two ≥ n_items ** (1 / levels), clamped to [8, 256]

e.g. 600 items × 3 levels → 16, 10k → 32, 1M → 128, 2k → 16.

Spreading the last level. Residual codebooks are shared by every parent, so
near-duplicate items (same product type, brand and colour, another size) fall
on one full prefix even when their parent has free codes. With
`spread_last_level`, siblings under one parent prefix take the nearest
last-level code no sibling holds yet (most confident item first), in the
spirit of LC-Rec's uniform last-level mapping; only a parent with more
children than codes still collides. The codebooks are unchanged; only the
assignment at the last level is.

Disambiguation. Items whose semantic prefix collides get one more level: the
k-th item (in row order) with a given prefix gets code k, so every full SID is
distinct and the extra level is as small as the largest collision group.
"""

from __future__ import annotations

import numpy as np

MIN_CODEBOOK_SIZE = 8
MAX_CODEBOOK_SIZE = 256


def adaptive_codebook_size(n_items: int, levels: int) -> int:
    """K = smallest power of two ≥ n_items^(1/levels), clamped to [8, 256]."""
    if n_items < 1:
        raise ValueError(f"n_items must be ≥ 1, got {n_items}")
    if levels < 1:
        raise ValueError(f"levels must be ≥ 1, got {levels}")
    root = n_items ** (1.0 / levels)
    size = 1
    while size < root - 1e-9:
        size *= 2
    return int(min(max(size, MIN_CODEBOOK_SIZE), MAX_CODEBOOK_SIZE))


def append_disambiguation_level(codes: np.ndarray) -> np.ndarray:
    """`[n, levels]` semantic codes → `[n, levels + 1]`, the last column numbering
    items that share a prefix 0, 1, 2, … in row order (0 for an item alone)."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2:
        raise ValueError(f"codes must be 2-d [n, levels], got shape {codes.shape}")
    n = len(codes)
    if n == 0:
        return np.zeros((0, codes.shape[1] + 1), dtype=np.int64)
    order = np.lexsort(codes.T[::-1])  # rows sorted by prefix, ties kept in row order
    ordered = codes[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - group_start
    return np.concatenate([codes, rank[:, None]], axis=1)


def spread_last_level(parents: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """Last-level codes `[n]` that avoid collisions between siblings where codes allow.

    `parents` int `[n, levels - 1]` are the codes above the last level (may have no
    columns); `distances` float `[n, K]` from each item to each last-level code.
    Within one parent, items are served in order of their nearest distance
    (ties by row) and each takes its nearest code not yet taken; once a parent's
    K codes are all taken, further items take their nearest code.
    """
    parents = np.asarray(parents, dtype=np.int64)
    distances = np.asarray(distances)
    n, k = distances.shape
    if parents.shape[1] == 0:
        group = np.zeros(n, dtype=np.int64)
    else:
        group = np.unique(parents, axis=0, return_inverse=True)[1].reshape(-1)
    preference = np.argsort(distances, axis=1, kind="stable")
    codes = preference[:, 0].copy()
    taken = np.zeros((int(group.max()) + 1 if n else 0, k), dtype=bool)
    for row in np.lexsort((np.arange(n), distances.min(axis=1), group)):
        free = ~taken[group[row]][preference[row]]
        if free.any():
            codes[row] = preference[row, free.argmax()]
            taken[group[row], codes[row]] = True
    return codes.astype(np.int64)
