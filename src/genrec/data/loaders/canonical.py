"""Shared steps every loader takes to reach the canonical schema.

Sources name users and items with strings or sparse numbers; the canonical
tables use dense int64 ids from 1 (0 is padding). The source id is kept
(`users.source_id`, `items.attributes["source_id"]`) so results can be mapped
back.
`remap_ids` does the same for a dataset already in the canonical shape whose
ids are too sparse to allocate one slot per id (`genrec data remap`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from genrec.data.dataset import Dataset, DatasetError
from genrec.data.schema import UNKNOWN_POSITION


def dense_ids(values: pd.Series) -> tuple[pd.Series, dict]:
    """Map source ids to 1..n in order of first appearance; returns (ids, source→id)."""
    codes, uniques = pd.factorize(values, sort=False)
    mapping = {source: i + 1 for i, source in enumerate(uniques.tolist())}
    return pd.Series(codes.astype(np.int64) + 1, index=values.index), mapping


def make_events(
    user_id: pd.Series,
    item_id: pd.Series,
    ts: pd.Series,
    *,
    action: str | pd.Series = "click",
    scenario: str | pd.Series = "home_feed",
    query: pd.Series | None = None,
    session_id: pd.Series | None = None,
    position: pd.Series | None = None,
    extra: dict[str, pd.Series] | None = None,
) -> pd.DataFrame:
    """An events table in the canonical column order; one session per event by default."""
    n = len(user_id)
    events = pd.DataFrame({
        "user_id": np.asarray(user_id, dtype=np.int64),
        "ts": np.asarray(ts, dtype=np.int64),
        "session_id": np.arange(1, n + 1, dtype=np.int64) if session_id is None else np.asarray(session_id, dtype=np.int64),
        "scenario": scenario if isinstance(scenario, str) else np.asarray(scenario, dtype=object),
        "query": pd.Series([None] * n, dtype=object) if query is None else np.asarray(query, dtype=object),
        "item_id": np.asarray(item_id, dtype=np.int64),
        "action": action if isinstance(action, str) else np.asarray(action, dtype=object),
        "position": np.full(n, UNKNOWN_POSITION, dtype=np.int32) if position is None else np.asarray(position, dtype=np.int32),
    })
    for name, values in (extra or {}).items():
        events[name] = np.asarray(values)
    return events


def make_items(
    item_id: np.ndarray,
    title: list[str],
    category: list[list[str]],
    attributes: list[dict[str, str]],
    brand: list[str | None] | None = None,
    price: list[float | None] | None = None,
) -> pd.DataFrame:
    """An items table; empty titles fall back to the source id so validation passes honestly."""
    n = len(item_id)
    titles = [
        t.strip() if isinstance(t, str) and t.strip() else f"item {attrs.get('source_id', i)}"
        for t, attrs, i in zip(title, attributes, item_id)
    ]
    return pd.DataFrame({
        "item_id": np.asarray(item_id, dtype=np.int64),
        "title": titles,
        "category": [list(c) for c in category],
        "attributes": [{str(k): str(v) for k, v in a.items()} for a in attributes],
        "brand": [None] * n if brand is None else brand,
        "price": np.full(n, np.nan) if price is None else np.asarray(price, dtype=np.float64),
        "origin": "human",
    })


def make_users(user_ids: dict, profile: pd.DataFrame | None = None) -> pd.DataFrame:
    """A users table from a source→id mapping, with optional profile columns indexed by source id."""
    users = pd.DataFrame({"user_id": np.fromiter(user_ids.values(), dtype=np.int64), "source_id": [str(s) for s in user_ids]})
    if profile is not None:
        profile = profile.copy()
        profile.index = profile.index.map(str)
        users = users.join(profile, on="source_id")
    return users


def require_columns(frame: pd.DataFrame, required: tuple[str, ...], file: str) -> None:
    """Raise a `ValueError` naming `file` and the first of `required` that `frame` lacks."""
    for column in required:
        if column not in frame.columns:
            raise ValueError(f"{file}: column {column} is missing; expected columns {list(required)}, "
                             f"the file has {list(frame.columns)}")


def require_values(frame: pd.DataFrame, column: str, allowed: list, file: str) -> None:
    """Raise a `ValueError` naming `file`, `column` and the first row whose value is not in `allowed`."""
    reject_rows(frame[column], ~frame[column].isin(allowed).to_numpy(), column, file,
                f"is not one of {'/'.join(str(a) for a in allowed)}")


def reject_rows(values: pd.Series, bad: np.ndarray, column: str, file: str, problem: str) -> None:
    """Raise a `ValueError` for the first row where `bad` `[n]` is set: `file: column C, row R: 'v' problem`.

    Rows are counted from 1 in file order (a header is not a row), so a user
    can go straight to the bad one: `values` must hold the file's rows in
    file order, unfiltered.
    """
    bad = np.asarray(bad, dtype=bool)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        more = f" ({int(bad.sum())} bad rows in all)" if bad.sum() > 1 else ""
        value = values.iloc[row]
        value = value.item() if isinstance(value, np.generic) else value  # 4, not np.int64(4)
        shown = "None" if value is None or (isinstance(value, float) and np.isnan(value)) else repr(value)
        raise ValueError(f"{file}: column {column}, row {row + 1}: {shown} {problem}{more}")


def finish(items: pd.DataFrame, users: pd.DataFrame, events: pd.DataFrame) -> Dataset:
    """Sort events by user and time (stable, so source order breaks ties) and validate."""
    events = events.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)
    dataset = Dataset(items=items.reset_index(drop=True), users=users.reset_index(drop=True), events=events)
    dataset.validate()
    return dataset


def remap_ids(dataset: Dataset) -> Dataset:
    """Re-number items and users 1..n in the order of their old ids; events follow.

    Models and retrievers allocate one slot per id up to the largest, so a
    catalogue of 600 items with one id of 2**31 costs gigabytes; validation
    refuses it and points here. The old ids are kept in `items.original_item_id`
    and `users.original_user_id` (when those columns already exist, from an
    earlier re-map, they are kept as they are: they hold the first ids).
    Raises `DatasetError` when events point to ids the tables do not have.
    """
    items, item_map = _renumbered(dataset.items, "item_id", "items.parquet")
    users, user_map = _renumbered(dataset.users, "user_id", "users.parquet")
    events = dataset.events.copy()
    for column, mapping, table in (("item_id", item_map, "items"), ("user_id", user_map, "users")):
        unknown = ~events[column].isin(mapping.index)
        if unknown.any():
            raise DatasetError("events.parquet", column, f"events point to unknown {table}",
                               f"a {column} present in {table}.parquet", events[unknown])
        events[column] = events[column].map(mapping).astype(np.int64)
    return Dataset(items=items, users=users, events=events)


def _renumbered(frame: pd.DataFrame, column: str, file: str) -> tuple[pd.DataFrame, pd.Series]:
    """`frame` with `column` replaced by 1..n in the order of the old ids, and the old → new map."""
    old = frame[column]
    if old.isna().any() or old.duplicated().any():
        raise DatasetError(file, column, "null or duplicate ids", "each id once, so it can be re-numbered",
                           frame[old.isna() | old.duplicated(keep=False)])
    old = old.astype(np.int64)
    mapping = pd.Series(np.arange(1, len(old) + 1, dtype=np.int64), index=np.sort(old.to_numpy()))
    frame = frame.copy()
    if f"original_{column}" not in frame.columns:
        frame[f"original_{column}"] = old.to_numpy()
    frame[column] = old.map(mapping).to_numpy(dtype=np.int64)
    return frame, mapping
