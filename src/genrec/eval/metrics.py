"""Ranking metrics, vectorized over a batch of requests.

Retrieval metrics take the ranked item ids `[n_requests, k]` (padding -1, best
first) and the relevant items, either one target id per request (`[n]`, the
next-item task every split builds) or a relevance mapping per request
(`{item_id: gain}`, for graded or multi-target judgements). Each returns a
`PerRequest`: the value for every request `[n]` and their mean, so the harness
can slice and bootstrap without recomputing.

Definitions follow TREC / `ranx` exactly (the tests check agreement):
Recall@k = relevant items in the top k / relevant items; NDCG@k uses the
Järvelin–Kekäläinen gain `rel / log2(rank + 1)` over the ideal ordering of the
judged items; MRR = 1 / rank of the first relevant item (0 when none is ranked).
Items with gain ≤ 0 are not relevant.

Ranker metrics (`auc`, `gauc`) take scores and binary labels of the items a
ranker scored.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

PADDING = -1
"""Fills rows of the ranked matrix shorter than k."""

Relevance = "np.ndarray | Sequence[Mapping[int, float]]"


class PerRequest(NamedTuple):
    """A metric for each request `[n]` and their mean (0.0 for no requests)."""

    values: np.ndarray
    mean: float


def ranked_matrix(ranked: Sequence, k: int) -> np.ndarray:
    """Stack retriever answers (`Ranked` or id arrays) into `[n, k]` int64, padded with -1."""
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    out = np.full((len(ranked), k), PADDING, dtype=np.int64)
    for row, answer in enumerate(ranked):
        ids = np.asarray(getattr(answer, "item_ids", answer), dtype=np.int64).reshape(-1)[:k]
        out[row, : len(ids)] = ids
    return out


def recall_at_k(ranked: np.ndarray, targets, k: int) -> PerRequest:
    """Share of each request's relevant items found in its top `k`."""
    gains, _, n_relevant = _judge(ranked, targets, k)
    hits = (gains > 0).sum(axis=1)
    return _per_request(np.divide(hits, n_relevant, out=np.zeros(len(hits)), where=n_relevant > 0))


def ndcg_at_k(ranked: np.ndarray, targets, k: int) -> PerRequest:
    """DCG of the top `k` over the DCG of the ideal top `k` (0 when nothing is relevant)."""
    gains, ideal, _ = _judge(ranked, targets, k)
    discount = 1.0 / np.log2(np.arange(2, gains.shape[1] + 2))
    dcg = (np.clip(gains, 0, None) * discount).sum(axis=1)
    idcg = (ideal * discount[: ideal.shape[1]]).sum(axis=1)
    return _per_request(np.divide(dcg, idcg, out=np.zeros(len(dcg)), where=idcg > 0))


def mrr(ranked: np.ndarray, targets, k: int | None = None) -> PerRequest:
    """Reciprocal rank of the first relevant item within the top `k` (all columns when None)."""
    gains, _, _ = _judge(ranked, targets, k)
    relevant = gains > 0
    first = relevant.argmax(axis=1)
    return _per_request(np.where(relevant.any(axis=1), 1.0 / (first + 1), 0.0))


def hit_rank(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based position of each single target in its row `[n]`, -1 when absent."""
    ranked, targets = _check_single(ranked, targets)
    hit = ranked == targets[:, None]
    return np.where(hit.any(axis=1), hit.argmax(axis=1), -1)


def item_coverage(ranked: np.ndarray, n_items: int, k: int | None = None) -> float:
    """Share of the catalogue's `n_items` that appear in at least one top `k`."""
    if n_items < 1:
        raise ValueError(f"n_items must be ≥ 1, got {n_items}")
    ranked = np.asarray(ranked, dtype=np.int64)
    if k is not None:
        ranked = ranked[:, :k]
    return float(len(np.unique(ranked[ranked != PADDING])) / n_items)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: P(a random positive outscores a random negative), ties count ½.

    NaN when `labels` hold only one class.
    """
    scores, labels = _check_scored(scores, labels)
    values, _ = _grouped_auc(np.zeros(len(scores), dtype=np.int64), scores, labels)
    return float(values[0]) if len(values) else float("nan")


def gauc(users: np.ndarray, scores: np.ndarray, labels: np.ndarray, weighting: str = "uniform") -> float:
    """AUC within each user, averaged over users that have both a positive and a negative.

    `weighting="uniform"` averages users equally; `"impressions"` weights each
    user by their number of scored items (the DIN paper's GAUC). NaN when no
    user has both classes.
    """
    if weighting not in ("uniform", "impressions"):
        raise ValueError(f"weighting must be 'uniform' or 'impressions', got {weighting!r}")
    scores, labels = _check_scored(scores, labels)
    users = np.asarray(users).reshape(-1)
    if len(users) != len(scores):
        raise ValueError(f"users has {len(users)} entries, scores has {len(scores)}")
    _, group = np.unique(users, return_inverse=True)
    values, sizes = _grouped_auc(group.astype(np.int64), scores, labels)
    keep = ~np.isnan(values)
    if not keep.any():
        return float("nan")
    weights = sizes[keep] if weighting == "impressions" else np.ones(keep.sum())
    return float(np.average(values[keep], weights=weights))


# --- helpers -----------------------------------------------------------------


def _per_request(values: np.ndarray) -> PerRequest:
    values = values.astype(np.float64)
    return PerRequest(values, float(values.mean()) if len(values) else 0.0)


def _check_ranked(ranked: np.ndarray, k: int | None) -> np.ndarray:
    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or not np.issubdtype(ranked.dtype, np.integer):
        raise ValueError(f"ranked must be an integer matrix [n_requests, k], got shape {ranked.shape} dtype {ranked.dtype}")
    if k is not None:
        if k < 1:
            raise ValueError(f"k must be ≥ 1, got {k}")
        ranked = ranked[:, :k]
    return ranked.astype(np.int64, copy=False)


def _check_single(ranked: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ranked = _check_ranked(ranked, None)
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    if len(targets) != len(ranked):
        raise ValueError(f"targets has {len(targets)} entries, ranked has {len(ranked)} rows")
    return ranked, targets


def _judge(ranked: np.ndarray, targets, k: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gains of the ranked items `[n, k]`, ideal gains best first `[n, k]`, relevant count `[n]`."""
    ranked = _check_ranked(ranked, k)
    n, width = ranked.shape
    if isinstance(targets, np.ndarray) or (len(targets) and np.isscalar(targets[0])) or len(targets) == 0:
        ranked, single = _check_single(ranked, np.asarray(targets, dtype=np.int64))
        gains = (ranked == single[:, None]).astype(np.float64)
        ideal = np.zeros((n, max(width, 1)))
        ideal[:, 0] = 1.0
        return gains, ideal[:, :width], np.ones(n)
    if len(targets) != n:
        raise ValueError(f"targets has {len(targets)} relevance mappings, ranked has {n} rows")
    rows = np.repeat(np.arange(n), [len(t) for t in targets])
    items = np.fromiter((int(i) for t in targets for i in t), dtype=np.int64, count=len(rows))
    values = np.fromiter((float(g) for t in targets for g in t.values()), dtype=np.float64, count=len(rows))
    span = int(max(items.max(initial=0), ranked.max(initial=0))) + 2
    keys = rows * span + items
    order = np.argsort(keys, kind="stable")
    keys, values_sorted = keys[order], values[order]
    query = np.arange(n)[:, None] * span + np.where(ranked == PADDING, span - 1, ranked)
    at = np.clip(np.searchsorted(keys, query), 0, max(len(keys) - 1, 0))
    found = (keys[at] == query) if len(keys) else np.zeros_like(query, dtype=bool)
    gains = np.where(found & (ranked != PADDING), values_sorted[at] if len(keys) else 0.0, 0.0)
    positive = values > 0
    n_relevant = np.bincount(rows[positive], minlength=n).astype(np.float64)
    ideal = np.zeros((n, width))
    by_gain = np.lexsort((-values, rows))
    ranks_in_row = np.arange(len(rows)) - np.r_[0, np.cumsum(np.bincount(rows, minlength=n))][rows[by_gain]]
    keep = (ranks_in_row < width) & (values[by_gain] > 0)
    ideal[rows[by_gain][keep], ranks_in_row[keep]] = values[by_gain][keep]
    return gains, ideal, n_relevant


def _check_scored(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if len(scores) != len(labels):
        raise ValueError(f"scores has {len(scores)} entries, labels has {len(labels)}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return scores, labels.astype(bool)


def _grouped_auc(group: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mann–Whitney AUC per group id `[n_groups]` (NaN for one-class groups) and group sizes."""
    if len(scores) == 0:
        return np.empty(0), np.empty(0)
    order = np.lexsort((scores, group))
    g, s = group[order], scores[order]
    n_groups = int(group.max()) + 1
    sizes = np.bincount(g, minlength=n_groups)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    position = np.arange(len(g)) - starts[g] + 1.0  # 1-based rank within the group
    tie_start = np.r_[True, (g[1:] != g[:-1]) | (s[1:] != s[:-1])]
    tie_id = np.cumsum(tie_start) - 1
    tie_rank = np.bincount(tie_id, weights=position) / np.bincount(tie_id)
    rank = tie_rank[tie_id]
    pos = labels[order]
    n_pos = np.bincount(g, weights=pos, minlength=n_groups)
    n_neg = sizes - n_pos
    rank_sum = np.bincount(g, weights=rank * pos, minlength=n_groups)
    u = rank_sum - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)
    return values, sizes.astype(np.float64)
