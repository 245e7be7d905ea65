"""Train/validation/test splits as pure functions of the events.

A split never copies the dataset: it names which interactions are targets and
which events a model may learn from. Requests built from a split carry only the
history strictly before their target, so no target is ever visible to the model
at prediction time (`tests/test_splits.py` checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from genrec.data.schema import ACTIONS
from genrec.retrieval import Request

POSITIVE_ACTIONS: tuple[str, ...] = ("click", "cart", "order")
ACTION_RANK = {action: rank for rank, action in enumerate(ACTIONS)}
SERVED = "served"
"""The name of the split a server builds: every event is training data, nothing is held out."""

INTERACTION_COLUMNS = ["user_id", "ts", "session_id", "scenario", "query", "item_id", "action", "position", "seq"]


@dataclass(frozen=True)
class Split:
    """Which interactions are targets, and which events a model may learn from.

    `train` holds raw events (impressions included, for rankers) strictly before
    each user's first held-out target. `valid` and `test` hold one target
    interaction per evaluation case. `interactions` holds every user's positive
    interactions with their per-user order `seq`, from which histories are cut.
    """

    name: str
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    interactions: pd.DataFrame

    def targets(self, part: Literal["valid", "test"]) -> pd.DataFrame:
        if part not in ("valid", "test"):
            raise ValueError(f"part must be 'valid' or 'test', got {part!r}")
        return self.valid if part == "valid" else self.test


def interactions(events: pd.DataFrame) -> pd.DataFrame:
    """Positive interactions, one per (user, session, item), oldest first.

    An item clicked, carted and ordered in one visit is one interaction with the
    strongest action, at the time of the first. `seq` numbers each user's
    interactions 0, 1, 2, … in time order (ties keep the events' row order).
    """
    positive = events[events["action"].isin(POSITIVE_ACTIONS)].copy()
    positive["_row"] = np.arange(len(positive))
    positive["_rank"] = positive["action"].map(ACTION_RANK)
    positive = positive.sort_values(["user_id", "ts", "_row"], kind="stable")
    key = ["user_id", "session_id", "item_id"]
    strongest = positive.groupby(key, sort=False)["_rank"].transform("max")
    positive["action"] = np.asarray(ACTIONS, dtype=object)[strongest.to_numpy()]
    first = positive[~positive.duplicated(key, keep="first")].copy()
    first["seq"] = first.groupby("user_id", sort=False).cumcount().astype(np.int64)
    return first[INTERACTION_COLUMNS].reset_index(drop=True)


def leave_one_out(events: pd.DataFrame) -> Split:
    """Per user: last interaction → test, second last → validation (TIGER/SASRec).

    Users with a single interaction give a test case with an empty history (the
    cold-start case) and no validation case.
    """
    inter = interactions(events)
    count = inter.groupby("user_id")["seq"].transform("size")
    test = inter[inter["seq"] == count - 1]
    valid = inter[(inter["seq"] == count - 2) & (count >= 3)]
    held_out = pd.concat([valid, test]).groupby("user_id")["ts"].min()
    return Split("leave_one_out", _events_before(events, held_out), valid.reset_index(drop=True), test.reset_index(drop=True), inter)


def temporal_split(events: pd.DataFrame, valid_start: int, test_start: int) -> Split:
    """Cut the timeline: train before `valid_start`; each user's first interaction
    in [valid_start, test_start) is a validation case, in [test_start, ∞) a test case."""
    if not valid_start <= test_start:
        raise ValueError(f"valid_start ({valid_start}) must not be after test_start ({test_start})")
    inter = interactions(events)
    in_valid = inter[(inter["ts"] >= valid_start) & (inter["ts"] < test_start)]
    in_test = inter[inter["ts"] >= test_start]
    valid = in_valid.drop_duplicates("user_id", keep="first")
    test = in_test.drop_duplicates("user_id", keep="first")
    train = events[events["ts"] < valid_start]
    return Split("temporal", train.reset_index(drop=True), valid.reset_index(drop=True), test.reset_index(drop=True), inter)


def build_requests(split: Split, part: Literal["valid", "test"], max_history: int = 50) -> tuple[list[Request], np.ndarray]:
    """One `Request` per target of `part`, and the target item ids `[n]`.

    The history is the user's interactions with a smaller `seq` than the target,
    the last `max_history` of them.
    """
    targets = split.targets(part)
    inter = split.interactions
    starts = np.r_[0, np.flatnonzero(np.diff(inter["user_id"].to_numpy())) + 1]
    first_row = dict(zip(inter["user_id"].to_numpy()[starts].tolist(), starts.tolist()))
    items = inter["item_id"].to_numpy()
    actions = inter["action"].to_numpy()
    times = inter["ts"].to_numpy()
    requests = []
    for user, ts, scenario, query, seq in zip(
        targets["user_id"].to_numpy(), targets["ts"].to_numpy(), targets["scenario"].to_numpy(),
        targets["query"].to_numpy(), targets["seq"].to_numpy(),
    ):
        end = first_row[int(user)] + int(seq)
        begin = max(first_row[int(user)], end - max_history)
        requests.append(Request(
            user_id=int(user),
            query=None if query is None or (isinstance(query, float) and np.isnan(query)) else str(query),
            scenario=str(scenario),
            ts=int(ts),
            history=tuple(items[begin:end].tolist()),
            history_actions=tuple(actions[begin:end].tolist()),
            history_ts=tuple(times[begin:end].tolist()),
        ))
    return requests, targets["item_id"].to_numpy(dtype=np.int64)


def sample_requests(requests: list[Request], targets: np.ndarray, n: int,
                    seed: int = 0) -> tuple[list[Request], np.ndarray]:
    """A seeded sample of `n` requests and their targets, in their original order (all of them when `n` is
    0 or not below their count). Why one function: benchmarks that compare numbers on "5,000 validation
    users" must mean the same 5,000, so every one draws them the same way."""
    if not n or n >= len(requests):
        return requests, targets
    pick = np.sort(np.random.default_rng(seed).choice(len(requests), n, replace=False))
    return [requests[i] for i in pick], targets[pick]


def _events_before(events: pd.DataFrame, cutoff: pd.Series) -> pd.DataFrame:
    """Events strictly before each user's cutoff time; users without one keep all."""
    limit = events["user_id"].map(cutoff).fillna(np.inf).to_numpy()
    return events[events["ts"].to_numpy() < limit].reset_index(drop=True)
