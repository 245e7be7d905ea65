"""Your own events (and items, users) from CSV or Parquet files → the canonical dataset.

A shop's export rarely uses genrec's column names or action words, so the loader
takes two small mappings instead of asking for a rewritten export:

* `columns`: canonical field → your column (`{"user": "customer_id", "item": "sku",
  "ts": "time"}`), for every file that has the field; `"items.item": "product_id"`
  names one file's column only. A field left out is looked up under its own name
  and the canonical column name (`user` or `user_id`); only `user` and `item` are required.
* `actions`: your action word → one of `impression`, `click`, `cart`, `order`.
  `DEFAULT_ACTIONS` covers the usual words (`view` → `click`, `purchase` →
  `order`); entries given here are added to it and win.

Timestamps may be numbers (seconds, or `ts_unit`) or datetimes / ISO-8601 strings
(converted to seconds since the epoch, UTC when no zone is given). Users and items
are re-numbered 1..n; the original ids are kept (`users.source_id`,
`items.attributes["source_id"]`) so answers can be mapped back.

Every problem the mappings can see — a missing column, an action word with no
mapping, an unreadable timestamp, an event whose item the items file lacks — is
collected and raised as one `DatasetError`, so an export is fixed in one pass;
`Dataset.validate` then checks the rest of the schema the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from genrec.data.dataset import Dataset, DatasetError
from genrec.data.loaders.canonical import dense_ids, finish, make_events, make_items, make_users
from genrec.data.schema import ACTIONS, UNKNOWN_POSITION

EVENT_FIELDS: dict[str, str] = {
    "user": "user_id", "item": "item_id", "ts": "ts", "action": "action", "query": "query",
    "scenario": "scenario", "session": "session_id", "position": "position",
}
"""Event fields a column can be mapped to, and the canonical column each becomes."""
ITEM_FIELDS: dict[str, str] = {"item": "item_id", "title": "title", "category": "category", "brand": "brand", "price": "price"}
"""Item fields a column can be mapped to; every other items column becomes an attribute."""
USER_FIELDS: dict[str, str] = {"user": "user_id"}
"""The users file's field: its id column; every other column is a profile field."""
FALLBACK_NAMES: dict[str, tuple[str, ...]] = {"ts": ("timestamp", "time"), "session": ("session",)}
"""Further column names tried when a field is not mapped (after the field's own and canonical names)."""

DEFAULT_ACTIONS: dict[str, str] = {
    **{a: a for a in ACTIONS},
    "view": "click", "detail_view": "click", "pageview": "click",
    "add_to_cart": "cart", "addtocart": "cart", "add-to-cart": "cart", "basket": "cart",
    "purchase": "order", "buy": "order", "transaction": "order", "checkout": "order",
}
"""Common action words; a view of an item's page counts as a click (pass `{"view": "impression"}`
when your views are list impressions). Matching ignores case and surrounding spaces."""

TS_UNITS: dict[str, int] = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def load_csv(
    events: str | os.PathLike,
    items: str | os.PathLike | None = None,
    users: str | os.PathLike | None = None,
    *,
    columns: dict[str, str] | None = None,
    actions: dict[str, str] | None = None,
    ts_unit: str = "s",
    category_separator: str = ">",
) -> Dataset:
    """Read an events file (and optionally items and users files) into a validated `Dataset`.

    `events`, `items`, `users`: `.csv`, `.tsv` or `.parquet` files. Items without a
    title get "item <original id>"; `category` is split on `category_separator`
    ("Beauty > Skin > Cream"). Users-file columns other than the user column are
    profile fields. Raises one `DatasetError` listing every problem found.
    """
    per_file = _columns_per_file(columns or {})
    if ts_unit not in TS_UNITS:
        raise ValueError(f"ts_unit must be one of {list(TS_UNITS)}, got {ts_unit!r}")
    action_map = {**DEFAULT_ACTIONS, **{_word(k): v for k, v in (actions or {}).items()}}
    bad_targets = sorted({v for v in action_map.values() if v not in ACTIONS})
    if bad_targets:
        raise ValueError(f"actions: {bad_targets} are not genrec actions; map each word to one of {list(ACTIONS)}")

    errors: list[DatasetError] = []
    event_file = str(events)
    raw = read_table(events)
    found = _resolve(raw, event_file, EVENT_FIELDS, per_file["events"], required=("user", "item"), errors=errors)
    item_table, item_found = None, {}
    if items is not None:
        item_table = read_table(items)
        item_found = _resolve(item_table, str(items), ITEM_FIELDS, per_file["items"], required=("item",), errors=errors)
    user_table, user_column = None, None
    if users is not None:
        user_table = read_table(users)
        user_column = _resolve(user_table, str(users), USER_FIELDS, per_file["users"], required=("user",), errors=errors).get("user")

    ts = _timestamps(raw, found.get("ts"), event_file, ts_unit, errors)
    action = _actions(raw, found.get("action"), event_file, action_map, errors)
    if "item" in found and "item" in item_found and item_table is not None:
        missing = ~_ids(raw[found["item"]]).isin(set(_ids(item_table[item_found["item"]])))
        if missing.any():
            errors.append(DatasetError(event_file, found["item"], f"events name items absent from {items}",
                                       f"every event's item to have a row in {items} (or load without --items)", raw[missing]))
    if errors:
        raise DatasetError.of(errors)

    source_items = _ids(raw[found["item"]])
    if item_table is not None:
        source_items = pd.concat([_ids(item_table[item_found["item"]]), source_items])
    _, item_map = dense_ids(source_items.drop_duplicates().reset_index(drop=True))
    user_ids, user_map = dense_ids(_ids(raw[found["user"]]))

    query = _text(raw, found.get("query"))
    scenario = _text(raw, found.get("scenario"))
    if scenario is None:
        scenario = pd.Series(np.where(query.notna(), "search", "home_feed") if query is not None else "home_feed",
                             index=raw.index, dtype=object)
    session = _integers(raw, found.get("session"), event_file, None)
    if "session" in found and (session is None or session.isna().any()):  # text keys: numbered in order of appearance
        session, _ = dense_ids(_ids(raw[found["session"]]))
    position = _integers(raw, found.get("position"), event_file, errors)
    if errors:
        raise DatasetError.of(errors)
    table = make_events(
        user_ids, _ids(raw[found["item"]]).map(item_map), ts, action=action, scenario=scenario.fillna("home_feed"),
        query=query, session_id=session,
        position=None if position is None else position.fillna(UNKNOWN_POSITION))
    profile = None
    if user_table is not None and user_column is not None:
        profile = user_table.assign(**{user_column: _ids(user_table[user_column])}).drop_duplicates(user_column)
        profile = profile.set_index(user_column).drop(columns=["user_id", "source_id"], errors="ignore")
    return finish(_items(item_table, item_found, item_map, category_separator), make_users(user_map, profile), table)


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A `.csv`, `.tsv` or `.parquet` file as a frame; CSV cells are read as text (empty = missing)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; expected a .csv, .tsv or .parquet file")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")


def _columns_per_file(columns: dict[str, str]) -> dict[str, dict[str, str]]:
    """`columns` split per file. A plain field applies to every file that has it (`item=sku` names
    the item column of events and items); `items.item=product_id` applies to one file only and wins."""
    fields = {"events": EVENT_FIELDS, "items": ITEM_FIELDS, "users": USER_FIELDS}
    out: dict[str, dict[str, str]] = {name: {} for name in fields}
    scoped: list[tuple[str, str, str]] = []
    for key, column in columns.items():
        file, dot, field_ = key.rpartition(".")
        targets = [file] if dot else [name for name in fields if field_ in fields[name]]
        if not targets or any(t not in fields or field_ not in fields[t] for t in targets):
            known = sorted({f for table in fields.values() for f in table}) + [f"{t}.{f}" for t in fields for f in fields[t]]
            raise ValueError(f"columns: unknown field {key!r}; expected one of {known}")
        (scoped if dot else []).append((targets[0], field_, column))
        for target in targets:
            out[target].setdefault(field_, column)
    for target, field_, column in scoped:
        out[target][field_] = column
    return out


def _word(value: object) -> str:
    return str(value).strip().lower()


def _ids(values: pd.Series) -> pd.Series:
    """Source ids as text, so "7" in a CSV and 7 in a Parquet file are one id."""
    return values.map(lambda v: str(int(v)) if isinstance(v, (float, np.floating)) and float(v).is_integer() else str(v))


def _resolve(frame: pd.DataFrame, file: str, fields: dict[str, str], columns: dict[str, str],
             required: tuple[str, ...], errors: list[DatasetError]) -> dict[str, str]:
    """field → the frame's column holding it; a mapped or required field without one is an error."""
    found = {}
    for name, canonical in fields.items():
        if name in columns:
            if columns[name] in frame.columns:
                found[name] = columns[name]
            else:
                errors.append(DatasetError(file, columns[name], f"column is missing (mapped to '{name}')",
                                           f"one of the file's columns {list(frame.columns)}"))
            continue
        candidate = next((c for c in (name, canonical, *FALLBACK_NAMES.get(name, ())) if c in frame.columns), None)
        if candidate is not None:
            found[name] = candidate
        elif name in required:
            errors.append(DatasetError(file, canonical, f"no '{name}' column",
                                       f"a column named '{name}' or '{canonical}', or a mapping such as "
                                       f"--map {name}=YOUR_COLUMN (the file has {list(frame.columns)})"))
    for name in required:
        if name in found and frame[found[name]].isna().any():
            errors.append(DatasetError(file, found[name], "empty ids", f"a {name} id in every row", frame[frame[found[name]].isna()]))
    return found


def _timestamps(raw: pd.DataFrame, column: str | None, file: str, unit: str, errors: list[DatasetError]) -> pd.Series:
    """Seconds since the epoch; without a ts column, the row order (a monotone clock is all genrec needs)."""
    if column is None:
        return pd.Series(np.arange(len(raw), dtype=np.int64), index=raw.index)
    values = raw[column]
    if pd.api.types.is_datetime64_any_dtype(values):
        moments = pd.to_datetime(values, utc=True)
        return ((moments - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).astype(np.int64)
    numbers = pd.to_numeric(values, errors="coerce")
    seconds = (numbers // TS_UNITS[unit]).astype("Float64")
    dates = numbers.isna()  # a column may mix numbers and dates: each row is read as what it is
    if dates.any():
        moments = pd.to_datetime(values[dates].astype(str), utc=True, errors="coerce", format="mixed")
        seconds[dates] = (moments - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    bad = seconds.isna()
    if bad.any():
        errors.append(DatasetError(file, column, "timestamps that are neither numbers nor dates",
                                   "seconds since the epoch or an ISO-8601 date such as 2024-05-01T13:45:00", raw[bad]))
        return pd.Series(np.zeros(len(raw), dtype=np.int64), index=raw.index)
    return seconds.astype(np.int64)


def _actions(raw: pd.DataFrame, column: str | None, file: str, mapping: dict[str, str],
             errors: list[DatasetError]) -> str | pd.Series:
    if column is None:
        return "click"
    words = raw[column].map(_word)
    mapped = words.map(mapping)
    unmapped = mapped.isna()
    if unmapped.any():
        unknown = sorted(set(words[unmapped]))
        errors.append(DatasetError(file, column, f"action words with no mapping: {unknown}",
                                   f"one of {list(ACTIONS)}, or a mapping such as --action {unknown[0]}=order",
                                   raw[unmapped]))
        return "click"
    return mapped


def _text(raw: pd.DataFrame, column: str | None) -> pd.Series | None:
    if column is None:
        return None
    return raw[column].map(lambda v: str(v).strip() if isinstance(v, str) and v.strip() else None).astype(object)


def _integers(raw: pd.DataFrame, column: str | None, file: str, errors: list[DatasetError] | None) -> pd.Series | None:
    """A column of whole numbers (missing kept as NaN). Text in it is an error when `errors` is
    given, else None is returned (session keys may be text: the caller numbers them)."""
    if column is None:
        return None
    numbers = pd.to_numeric(raw[column], errors="coerce")
    bad = (numbers.isna() & raw[column].notna()) | (numbers.notna() & (numbers % 1 != 0))
    if bad.any():
        if errors is not None:
            errors.append(DatasetError(file, column, "values that are not whole numbers", "a whole number, or empty", raw[bad]))
        return None
    return numbers


def _items(table: pd.DataFrame | None, found: dict[str, str], item_map: dict, separator: str) -> pd.DataFrame:
    ids = np.fromiter(item_map.values(), dtype=np.int64)
    sources = [str(s) for s in item_map]
    if table is None:
        return make_items(ids, [""] * len(ids), [["Unknown"]] * len(ids), [{"source_id": s} for s in sources])
    table = table.assign(**{found["item"]: _ids(table[found["item"]])}).drop_duplicates(found["item"])
    table = table.set_index(found["item"]).reindex(sources)

    def column(field: str) -> list:
        name = found.get(field)
        return [None] * len(table) if name is None else [None if _missing(v) else v for v in table[name]]

    categories = [[p.strip() for p in str(c).split(separator) if p.strip()] or ["Unknown"] if c is not None else ["Unknown"]
                  for c in column("category")]
    mapped = {found[f] for f in ("title", "category", "brand", "price") if f in found}
    others = [c for c in table.columns if c not in mapped]
    attributes = [{"source_id": s, **{c: str(row[c]) for c in others if not _missing(row[c])}}
                  for s, (_, row) in zip(sources, table.iterrows())]
    prices = pd.to_numeric(pd.Series(column("price"), dtype=object), errors="coerce").tolist()
    return make_items(ids, [t if isinstance(t, str) else "" for t in column("title")], categories, attributes,
                      brand=[None if b is None else str(b) for b in column("brand")], price=prices)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or (isinstance(value, str) and not value.strip())
