"""What the server holds for one run folder: catalog, user histories, retrievers.

A `ServedModel` is immutable once built, so the server can swap one for
another with a single assignment (`POST /admin/reload`) while requests that
already hold the old one finish on it.

Which events the served retrievers learn from: **all of them.** Offline
evaluation hides each user's last interactions (`leave_one_out`), but a
deployed model should know everything logged up to now, so `served_split`
gives the retrievers a `Split` whose `train` is the full event log and whose
`valid`/`test` are empty. Histories for requests are cut from the same
`genrec.data.splits.interactions` table the offline requests use (positive
interactions, one per user × visit × item, oldest first), the last
`max_history` of them — exactly the shape `build_requests` produces.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from genrec.data.dataset import Dataset
from genrec.data.splits import INTERACTION_COLUMNS, Split, interactions
from genrec.retrieval import Request, Retriever
from genrec.serve.weights import weights_digest

MAX_HISTORY = 50
"""Interactions a served request carries, as in `build_requests`."""

BuildRetriever = Callable[[str, Path, Dataset, Split], Retriever]


class RunLoadError(ValueError):
    """A run folder the server cannot serve (missing data, broken retriever, …)."""


def served_split(dataset: Dataset) -> Split:
    """A `Split` for serving: every event is training data, nothing is held out."""
    inter = interactions(dataset.events)
    empty = inter.iloc[0:0].copy()
    return Split("served", dataset.events.reset_index(drop=True), empty, empty.copy(), inter)


@dataclass(frozen=True)
class ServedModel:
    """A loaded run: the catalog, every user's interactions and the retrievers.

    `history_items/actions/ts` are the interactions table's columns `[n_interactions]`,
    grouped by user and oldest first; `user_rows[user] = (begin, end)` slices them.
    """

    run: Path
    dataset: Dataset
    retrievers: dict[str, Retriever]
    version: str
    now_ts: int
    items_by_id: dict[int, dict[str, Any]] = field(repr=False)
    profiles: dict[int, dict[str, Any]] = field(repr=False)
    user_rows: dict[int, tuple[int, int]] = field(repr=False)
    history_items: np.ndarray = field(repr=False)
    history_actions: np.ndarray = field(repr=False)
    history_ts: np.ndarray = field(repr=False)

    @classmethod
    def build(cls, run: str | Path, dataset: Dataset, retrievers: dict[str, Retriever], version: str | None = None) -> "ServedModel":
        """Index `dataset` for serving; `retrievers` maps the served name to a retriever."""
        if not retrievers:
            raise RunLoadError("no retrievers to serve; expected at least one name")
        run = Path(run)
        inter = interactions(dataset.events) if len(dataset.events) else pd.DataFrame(columns=INTERACTION_COLUMNS)
        users = inter["user_id"].to_numpy(dtype=np.int64)
        starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1] if len(users) else np.empty(0, dtype=np.int64)
        ends = np.r_[starts[1:], len(users)] if len(users) else np.empty(0, dtype=np.int64)
        user_rows = {int(users[s]): (int(s), int(e)) for s, e in zip(starts, ends)}
        profile_columns = [c for c in dataset.users.columns if c != "user_id"]
        profiles = {
            int(row["user_id"]): {c: _plain(row[c]) for c in profile_columns}
            for row in dataset.users.to_dict("records")
        }
        items_by_id = {int(row["item_id"]): _item_view(row) for row in dataset.items.to_dict("records")}
        now_ts = int(dataset.events["ts"].max()) + 1 if len(dataset.events) else 0
        return cls(
            run=run,
            dataset=dataset,
            retrievers=dict(retrievers),
            version=version or run_version(run, weights_digest(retrievers)),
            now_ts=now_ts,
            items_by_id=items_by_id,
            profiles=profiles,
            user_rows=user_rows,
            history_items=inter["item_id"].to_numpy(dtype=np.int64),
            history_actions=inter["action"].to_numpy(dtype=object),
            history_ts=inter["ts"].to_numpy(dtype=np.int64),
        )

    def item(self, item_id: int) -> dict[str, Any] | None:
        return self.items_by_id.get(int(item_id))

    def is_known_user(self, user_id: int) -> bool:
        return int(user_id) in self.profiles or int(user_id) in self.user_rows

    def history(self, user_id: int | None, limit: int = MAX_HISTORY) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The user's last `limit` interactions, oldest first: (item ids, actions, ts).

        An unknown user (or `None`) is a cold-start user with an empty history.
        """
        begin, end = self.user_rows.get(int(user_id), (0, 0)) if user_id is not None else (0, 0)
        begin = max(begin, end - limit)
        return self.history_items[begin:end], self.history_actions[begin:end], self.history_ts[begin:end]

    def request(self, user_id: int | None, query: str | None) -> Request:
        """The `Request` a retriever sees for a live call: now, with the full history."""
        items, actions, times = self.history(user_id)
        return Request(
            user_id=int(user_id) if user_id is not None else 0,
            query=query,
            scenario="search" if query is not None else "home_feed",
            ts=self.now_ts,
            history=tuple(items.tolist()),
            history_actions=tuple(str(a) for a in actions),
            history_ts=tuple(times.tolist()),
        )

    def most_active_users(self, limit: int) -> list[int]:
        """Users with the most interactions first (ties: smaller id first)."""
        counts = sorted(self.user_rows.items(), key=lambda kv: (-(kv[1][1] - kv[1][0]), kv[0]))
        return [user for user, _ in counts[:limit]]


def load_served_model(
    run: str | Path,
    names: Sequence[str],
    build: BuildRetriever | None = None,
) -> ServedModel:
    """Load `RUN/data` and build each named retriever on the full event log.

    Raises `RunLoadError` naming what was wrong, so a reload can reject a
    broken run folder and keep serving the old one.
    """
    from genrec.registry import build_retriever

    run = Path(run)
    build = build or build_retriever
    if not names:
        raise RunLoadError("retrievers: expected at least one retriever name")
    if not run.is_dir():
        raise RunLoadError(f"run folder {str(run)!r} does not exist")
    try:
        dataset = Dataset.load(run / "data")
    except ValueError as error:
        raise RunLoadError(f"run folder {str(run)!r} has no valid dataset: {error}") from error
    split = served_split(dataset)
    retrievers = {}
    for name in names:
        try:
            retrievers[name] = fastest_exact(build(name, run, dataset, split))
        except Exception as error:  # any failure means this run cannot be served
            raise RunLoadError(f"retriever {name!r} could not be built from {str(run)!r}: {type(error).__name__}: {error}") from error
    return ServedModel.build(run, dataset, retrievers)


SERVED_PRECISION = "fp32"
"""How the server decodes a generative model: the `FastDecoder` copy that returns the model's own items
(the same top-k on every request, `benchmarks/results/decode.md`), with fewer small kernels per step."""


def fastest_exact(retriever: Retriever) -> Retriever:
    """`retriever`, or for a `GenerativeRetriever` that decodes with the model's own code, the same
    model, encoder, trie and scoring settings decoding with `SERVED_PRECISION`; any other retriever as it is.

    Only the exact mode: a served answer must be what evaluation measured, so
    the faster bf16 mode (which reorders near-tied items) is never chosen here.
    A subclass that answers with the base class's `retrieve` and `score` (`generative-aligned`)
    is served the same way and keeps its class, so its name; one that answers otherwise is left alone.
    """
    module = sys.modules.get("genrec.model.retriever")  # loaded if and only if a generative retriever exists
    generative: Any = retriever
    if module is None or not isinstance(generative, module.GenerativeRetriever) or generative.precision is not None:
        return retriever
    base = module.GenerativeRetriever
    kind = type(generative)
    if kind.retrieve is not base.retrieve or kind.score is not base.score:
        return retriever
    return generative.with_precision(SERVED_PRECISION)


def run_version(run: str | Path, weights: str = "") -> str:
    """A short id of what is served: a hash of the run folder's manifests and of the weights.

    Every stage writes `manifest.json` (config, inputs, versions), so a new
    training run changes the id while re-serving the same folder keeps it.
    `weights` (`genrec.serve.weights.weights_digest`) makes two models with the
    same manifests but other weights — a checkpoint rewritten in place — differ too.
    """
    run = Path(run)
    digest = hashlib.sha256()
    manifests = sorted(run.rglob("manifest.json")) if run.is_dir() else []
    for path in manifests:
        digest.update(str(path.relative_to(run)).encode())
        digest.update(path.read_bytes())
    if not manifests:
        digest.update(str(run.resolve()).encode())
    digest.update(weights.encode())
    return digest.hexdigest()[:12]


def _item_view(row: dict[str, Any]) -> dict[str, Any]:
    price = row.get("price")
    return {
        "item_id": int(row["item_id"]),
        "title": str(row["title"]),
        "category": [str(c) for c in (row.get("category") or [])],
        "brand": None if row.get("brand") is None or _is_nan(row.get("brand")) else str(row["brand"]),
        "price": None if price is None or _is_nan(price) else float(price),
        "origin": str(row.get("origin", "human")),
        "attributes": {str(k): str(v) for k, v in (row.get("attributes") or {}).items()},
    }


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and np.isnan(value)


def _plain(value: Any) -> Any:
    """A profile value as plain JSON (numpy scalars → Python, NaN → None)."""
    if hasattr(value, "item") and np.ndim(value) == 0:
        value = value.item()
    if _is_nan(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
