"""Ranker examples from logged events: one row per item shown (or acted on) in a visit.

A visit (user, session) becomes a `Request` whose history is the user's positive
interactions strictly before the visit began, so a visit's own clicks never leak
into its features. Each item of the visit gets nested labels from its strongest
action — click ⊇ cart ⊇ order — and the slot it was shown in, bucketed for the
ranker's position-bias tower (bucket 0 = unknown).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from genrec.data.schema import ACTIONS
from genrec.retrieval import Request

TASKS: tuple[str, ...] = ("click", "cart", "order")
POSITION_BUCKETS = 22
"""0 = unknown, 1..20 = slots 0..19, 21 = slot 20 and below."""
INFERENCE_POSITION = 1
"""The constant bucket every candidate gets at inference (the top slot)."""


@dataclass
class ImpressionSamples:
    """`requests` `[r]` (one per visit); per row `[p]`: request_index, item_ids,
    position (bucket), labels `[p, 3]` (click, cart, order as 0/1)."""

    requests: list[Request]
    request_index: np.ndarray
    item_ids: np.ndarray
    position: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.item_ids)

    def subset_requests(self, keep: np.ndarray) -> "ImpressionSamples":
        """Only the visits where `keep` `[r]` is true, renumbered."""
        keep = np.asarray(keep, dtype=bool)
        new_index = np.cumsum(keep) - 1
        rows = keep[self.request_index]
        return ImpressionSamples(
            [r for r, k in zip(self.requests, keep) if k], new_index[self.request_index[rows]],
            self.item_ids[rows], self.position[rows], self.labels[rows],
        )


def position_bucket(position: np.ndarray) -> np.ndarray:
    position = np.asarray(position, dtype=np.int64)
    return np.where(position < 0, 0, np.minimum(position, POSITION_BUCKETS - 2) + 1)


def impression_samples(
    events: pd.DataFrame, interactions: pd.DataFrame, max_history: int = 20, max_requests: int | None = None, seed: int = 0,
) -> ImpressionSamples:
    """Examples from `events` (e.g. `split.train`); histories are cut from `interactions`
    (`split.interactions`, sorted by user then time). `max_requests` keeps a random
    subset of visits (seeded) to bound training time."""
    if events.empty:
        raise ValueError("events is empty; expected logged impressions/clicks to learn from")
    rank = events["action"].map({a: i for i, a in enumerate(ACTIONS)}).to_numpy()
    frame = pd.DataFrame({
        "user_id": events["user_id"].to_numpy(), "session_id": events["session_id"].to_numpy(),
        "item_id": events["item_id"].to_numpy(), "ts": events["ts"].to_numpy(), "rank": rank,
        "position": np.where(events["position"].to_numpy() < 0, np.iinfo(np.int32).max, events["position"].to_numpy()),
        "query": events["query"].to_numpy(), "scenario": events["scenario"].to_numpy(),
    })
    visits = frame.groupby(["user_id", "session_id"], sort=False).agg(
        ts=("ts", "min"), query=("query", "first"), scenario=("scenario", "first"),
    ).reset_index()
    if max_requests is not None and len(visits) > max_requests:
        pick = np.sort(np.random.default_rng(seed).choice(len(visits), max_requests, replace=False))
        visits = visits.iloc[pick].reset_index(drop=True)
    visits["request"] = np.arange(len(visits))
    rows = frame.merge(visits[["user_id", "session_id", "request"]], on=["user_id", "session_id"])
    per_item = rows.groupby(["request", "item_id"], sort=True).agg(rank=("rank", "max"), position=("position", "min")).reset_index()
    position = per_item["position"].to_numpy()
    position = np.where(position == np.iinfo(np.int32).max, -1, position)
    labels = np.stack([per_item["rank"].to_numpy() >= level for level in (1, 2, 3)], 1).astype(np.float32)
    requests = _visit_requests(visits, interactions, max_history)
    return ImpressionSamples(
        requests, per_item["request"].to_numpy(np.int64), per_item["item_id"].to_numpy(np.int64),
        position_bucket(position), labels,
    )


def _visit_requests(visits: pd.DataFrame, interactions: pd.DataFrame, max_history: int) -> list[Request]:
    """One `Request` per visit, history = positive interactions before the visit's first event."""
    inter_user = interactions["user_id"].to_numpy(np.int64)
    inter_ts = interactions["ts"].to_numpy(np.int64)
    items = interactions["item_id"].to_numpy(np.int64)
    actions = interactions["action"].to_numpy()
    order = np.lexsort((inter_ts, inter_user))
    inter_user, inter_ts, items, actions = inter_user[order], inter_ts[order], items[order], actions[order]
    users = visits["user_id"].to_numpy(np.int64)
    times = visits["ts"].to_numpy(np.int64)
    first = np.searchsorted(inter_user, users, "left")
    user_end = np.searchsorted(inter_user, users, "right")
    # Within the user's block, the first interaction at or after the visit's start.
    end = np.array([f + np.searchsorted(inter_ts[f:e], t, "left") for f, e, t in zip(first, user_end, times)], dtype=np.int64)
    begin = np.maximum(first, end - max_history)
    requests = []
    for user, ts, query, scenario, b, e in zip(users, times, visits["query"].to_numpy(), visits["scenario"].to_numpy(), begin, end):
        requests.append(Request(
            user_id=int(user), query=query if isinstance(query, str) and query else None, scenario=str(scenario), ts=int(ts),
            history=tuple(items[b:e].tolist()), history_actions=tuple(actions[b:e].tolist()), history_ts=tuple(inter_ts[b:e].tolist()),
        ))
    return requests


def add_sampled_negatives(samples: ImpressionSamples, candidates: np.ndarray, popularity: np.ndarray,
                          per_visit: int, seed: int = 0) -> ImpressionSamples:
    """Add `per_visit` never-shown items per visit as negatives (labels 0, position unknown).

    Logged impressions were already chosen by a ranker, so a model trained on them alone
    never learns to reject the off-topic items recall brings; these negatives (half uniform
    over `candidates`, half by popularity^0.75) are what the ranker sees at inference.
    """
    if per_visit <= 0 or not len(samples.requests):
        return samples
    rng = np.random.default_rng(seed)
    candidates = np.asarray(candidates, dtype=np.int64)
    weight = np.asarray(popularity, dtype=np.float64)[candidates] ** 0.75 + 1e-9
    n = len(samples.requests) * per_visit
    half = n // 2
    drawn = np.r_[rng.choice(candidates, half), rng.choice(candidates, n - half, p=weight / weight.sum())]
    request_index = np.repeat(np.arange(len(samples.requests)), per_visit)
    shown = set(zip(samples.request_index.tolist(), samples.item_ids.tolist()))
    keep = np.asarray([(r, i) not in shown for r, i in zip(request_index.tolist(), drawn.tolist())])
    request_index, drawn = request_index[keep], drawn[keep]
    order = np.argsort(np.r_[samples.request_index, request_index], kind="stable")
    return ImpressionSamples(
        samples.requests,
        np.r_[samples.request_index, request_index][order],
        np.r_[samples.item_ids, drawn][order],
        np.r_[samples.position, np.zeros(len(drawn), dtype=np.int64)][order],
        np.r_[samples.labels, np.zeros((len(drawn), samples.labels.shape[1]), dtype=np.float32)][order],
    )
