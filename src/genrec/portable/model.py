"""`genrec.load(folder)`: a saved model that answers in your own ids.

`PretrainedModel.search` and `.recommend` build the `Request` the retriever reads
and translate ids both ways: users and history items may be given by their
original ids (what `genrec load csv` kept as `source_id`) and answers come back
with the original id and title when the folder holds the catalog.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from genrec.portable.folder import CATALOG_FILE, USERS_FILE, from_pretrained
from genrec.retrieval import Ranked, Request


@dataclass(frozen=True)
class Hit:
    """One answer: `item_id` is the original id when the folder knows it (else genrec's id),
    `internal_id` genrec's dense id, `title` None without a catalog; scores fall with rank."""

    item_id: str | int
    title: str | None
    score: float
    internal_id: int


class PretrainedModel:
    """A generative retriever loaded from a `save_pretrained` folder, with id translation."""

    def __init__(self, retriever: Any, catalog: pd.DataFrame | None = None, users: pd.DataFrame | None = None):
        self.retriever = retriever
        self.catalog = catalog
        self._titles: dict[int, str] = {}
        self._item_source: dict[int, str] = {}
        self._item_by_source: dict[str, int] = {}
        if catalog is not None:
            self._titles = dict(zip(catalog["item_id"].astype(int), catalog["title"]))
            known = catalog[catalog["source_id"].notna()]
            self._item_source = dict(zip(known["item_id"].astype(int), known["source_id"]))
            self._item_by_source = {s: i for i, s in self._item_source.items()}
        self._user_by_source: dict[str, int] = {}
        if users is not None:
            known = users[users["source_id"].notna()]
            self._user_by_source = dict(zip(known["source_id"], known["user_id"].astype(int)))

    @classmethod
    def load(cls, folder: str | os.PathLike, beams: int | None = None) -> "PretrainedModel":
        folder = Path(folder)
        catalog = pd.read_parquet(folder / CATALOG_FILE) if (folder / CATALOG_FILE).exists() else None
        users = pd.read_parquet(folder / USERS_FILE) if (folder / USERS_FILE).exists() else None
        return cls(from_pretrained(folder, beams=beams), catalog, users)

    def search(self, query: str, user: str | int | None = None, k: int = 10, history: Sequence[str | int] = (),
               ts: int | None = None) -> list[Hit]:
        """The k best items for `query`, personalised by `user` and `history` (oldest first) when given.

        `ts`: the request's moment in seconds since the epoch (default: now); the model reads its
        hour and weekday, so pass it when answers must be reproducible."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"query must be a non-empty string, got {query!r}")
        return self._answer(Request(**self._request(user, history, ts), query=query, scenario="search"), k)

    def recommend(self, user: str | int | None = None, history: Sequence[str | int] = (), k: int = 10,
                  scenario: str = "home_feed", ts: int | None = None) -> list[Hit]:
        """The k items `user` is most likely to act on next, after `history` (their items, oldest first);
        `scenario` is where they will be shown (home_feed, item_detail, …), `ts` as in `search`."""
        return self._answer(Request(**self._request(user, history, ts), scenario=scenario), k)

    def user_id(self, user: str | int | None) -> int:
        """genrec's id for `user`: looked up by original id first; an unknown user is a new one (0)."""
        if user is None:
            return 0
        if str(user) in self._user_by_source:
            return self._user_by_source[str(user)]
        if not self._user_by_source and isinstance(user, (int, np.integer)):
            return int(user)
        return 0

    def item_ids(self, items: Sequence[str | int]) -> list[int]:
        """genrec's ids for `items` (original ids when the catalog has them); an unknown item is an error."""
        out, unknown = [], []
        for item in items:
            if str(item) in self._item_by_source:
                out.append(self._item_by_source[str(item)])
            elif not self._item_by_source and isinstance(item, (int, np.integer)) and self.retriever.encoder.has_sid([item])[0]:
                out.append(int(item))
            else:
                unknown.append(item)
        if unknown:
            raise ValueError(f"history: items not in this model's catalog: {unknown[:10]}")
        return out

    def _request(self, user: str | int | None, history: Sequence[str | int], ts: int | None) -> dict[str, Any]:
        if isinstance(history, (str, bytes)):
            raise ValueError("history must be a list of item ids, oldest first, not one string")
        now = int(time.time()) if ts is None else int(ts)
        items = tuple(self.item_ids(list(history)))
        return {"user_id": self.user_id(user), "ts": now, "history": items,
                "history_actions": ("click",) * len(items), "history_ts": (now,) * len(items)}

    def _answer(self, request: Request, k: int) -> list[Hit]:
        ranked: Ranked = self.retriever.retrieve([request], k=k)[0]
        return [Hit(self._item_source.get(int(i), int(i)), self._titles.get(int(i)), float(s), int(i))
                for i, s in zip(ranked.item_ids, ranked.scores)]


def load(path: str | os.PathLike, beams: int | None = None) -> PretrainedModel:
    """A model folder written by `genrec export` / `save_pretrained`, ready to `.search` and `.recommend`."""
    return PretrainedModel.load(path, beams=beams)
