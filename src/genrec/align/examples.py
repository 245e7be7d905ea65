"""The requests alignment trains on, and the teacher's lists for them.

Alignment post-trains on the *latest* positive interactions of each user in
`split.train` (the `per_user` newest): they are the closest in time to the
validation and test targets, and their requests are built exactly as
`build_requests` builds evaluation requests (the user's earlier interactions as
history, the interaction's own query, scenario and time). Validation and test
targets are never among them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from genrec.data.splits import Split, interactions
from genrec.retrieval import Request


@dataclass
class AlignExamples:
    """`requests` `[n]` with their logged `targets`, `actions`, `positions` and `sessions` `[n]`."""

    requests: list[Request]
    targets: np.ndarray
    actions: np.ndarray
    positions: np.ndarray
    sessions: np.ndarray

    def __len__(self) -> int:
        return len(self.requests)

    def subset(self, rows: np.ndarray) -> "AlignExamples":
        rows = np.asarray(rows, dtype=np.int64)
        return AlignExamples([self.requests[i] for i in rows], self.targets[rows], self.actions[rows],
                             self.positions[rows], self.sessions[rows])

    @property
    def is_search(self) -> np.ndarray:
        return np.asarray([r.is_search for r in self.requests], dtype=bool)

    def visits(self) -> pd.DataFrame:
        """(user_id, ts, session_id) per example: what `PARSReward.from_events` looks visits up by."""
        return pd.DataFrame({"user_id": [r.user_id for r in self.requests], "ts": [r.ts for r in self.requests],
                             "session_id": self.sessions})


def align_examples(split: Split, per_user: int = 3, max_history: int = 50, limit: int = 0,
                   seed: int = 0) -> AlignExamples:
    """The `per_user` newest positive interactions of each user in `split.train` as requests.

    `limit` > 0 keeps a seeded random sample of that many (bounded CPU).
    """
    if per_user < 1:
        raise ValueError(f"per_user must be ≥ 1, got {per_user}")
    inter = interactions(split.train)
    if inter.empty:
        raise ValueError("split.train has no positive interaction to align on")
    users = inter["user_id"].to_numpy()
    count = inter.groupby("user_id")["seq"].transform("size").to_numpy()
    seq = inter["seq"].to_numpy()
    chosen = np.flatnonzero((seq >= count - per_user) & (seq >= 1))  # a first interaction has no history
    if limit and len(chosen) > limit:
        chosen = np.sort(np.random.default_rng(seed).choice(chosen, limit, replace=False))
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, len(users)]))
    items = inter["item_id"].to_numpy(np.int64)
    actions = inter["action"].to_numpy()
    times = inter["ts"].to_numpy(np.int64)
    queries = inter["query"].to_numpy()
    scenarios = inter["scenario"].to_numpy()
    requests = []
    for row in chosen:
        begin = max(int(first[row]), int(row) - max_history)
        query = queries[row]
        requests.append(Request(
            user_id=int(users[row]), query=query if isinstance(query, str) and query else None,
            scenario=str(scenarios[row]), ts=int(times[row]), history=tuple(items[begin:row].tolist()),
            history_actions=tuple(actions[begin:row].tolist()), history_ts=tuple(times[begin:row].tolist())))
    return AlignExamples(requests, items[chosen], actions[chosen].astype(str),
                         inter["position"].to_numpy(np.int64)[chosen], inter["session_id"].to_numpy(np.int64)[chosen])


@dataclass
class TeacherLists:
    """A teacher's ranked list per example: `item_ids` `[n, M]` (-1 pads) and `weights` `[n, M]` ≥ 0."""

    item_ids: np.ndarray
    weights: np.ndarray

    def save(self, path) -> None:
        from genrec.artifacts import atomic_path

        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, item_ids=self.item_ids, weights=self.weights)

    @classmethod
    def load(cls, path) -> "TeacherLists":
        with np.load(path) as saved:
            return cls(saved["item_ids"], saved["weights"])


def teacher_lists(teacher, examples: AlignExamples, size: int, temperature: float, target_share: float,
                  batch_size: int = 256, progress=None, taught: np.ndarray | None = None) -> TeacherLists:
    """The teacher's top-`size` list for every example, as distillation targets.

    Weights: softmax(score / temperature) over the teacher's list scaled to 1 − `target_share`,
    plus `target_share` on the logged target (appended when the teacher missed it), so the
    student learns the teacher's ranking *and* what the user actually chose. Examples where
    `taught` `[n]` is False get no teacher list: their whole weight is on the logged target.
    """
    if size < 1:
        raise ValueError(f"teacher list size must be ≥ 1, got {size}")
    if not 0.0 <= target_share <= 1.0:
        raise ValueError(f"target_share must be in [0, 1], got {target_share}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = len(examples)
    item_ids = np.full((n, size + 1), -1, dtype=np.int64)
    weights = np.zeros((n, size + 1), dtype=np.float32)
    taught_rows = np.flatnonzero(np.ones(n, bool) if taught is None else np.asarray(taught, bool))
    share = np.where(np.isin(np.arange(n), taught_rows), target_share, 1.0)
    for start in range(0, len(taught_rows), batch_size):
        rows = taught_rows[start:start + batch_size]
        for row, ranked in zip(rows, teacher.retrieve([examples.requests[i] for i in rows], size)):
            m = len(ranked.item_ids)
            item_ids[row, :m] = ranked.item_ids
            if m:
                z = np.asarray(ranked.scores, dtype=np.float64) / temperature
                p = np.exp(z - z.max())
                weights[row, :m] = (1 - target_share) * p / p.sum()
        if progress is not None:
            progress(min(start + batch_size, len(taught_rows)), len(taught_rows))
    targets = examples.targets
    hit = item_ids == targets[:, None]
    has = hit.any(1)
    weights[hit] += np.broadcast_to(share[:, None], hit.shape)[hit]
    item_ids[~has, size] = targets[~has]
    weights[~has, size] = share[~has]
    return TeacherLists(item_ids, weights)
