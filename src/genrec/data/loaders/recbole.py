"""RecBole atomic files (`NAME.inter`, `NAME.item`, `NAME.user`): the format of RecBole's 40+ public data sets.

Each file is tab-separated with a typed header, `field:type`, where type is
`token`, `token_seq`, `float` or `float_seq`. The loader maps the standard
fields (`user_id`, `item_id`, `timestamp`, `rating`) and turns the item's text
fields into a title, its class/genre/category field into a category path, and
every other item field into attributes. Every `.inter` row becomes a `click`
event (RecBole treats them as implicit feedback); `rating` is kept as a column.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from genrec.data.dataset import Dataset
from genrec.data.loaders.canonical import dense_ids, finish, make_events, make_items, make_users

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
TITLE_HINTS = ("title", "name")
CATEGORY_HINTS = ("class", "genre", "categor")


def read_atomic(path: str | os.PathLike) -> pd.DataFrame:
    """One atomic file as a frame with the type suffixes stripped from column names."""
    path = Path(path)
    header = path.open(encoding="utf-8").readline().rstrip("\n").split("\t")
    names = []
    for column in header:
        name, _, type_ = column.partition(":")
        if type_ not in FIELD_TYPES:
            raise ValueError(f"{path}: header field {column!r} has type {type_!r}; expected one of {list(FIELD_TYPES)} as in 'item_id:token'")
        names.append(name)
    frame = pd.read_csv(path, sep="\t", header=0, names=names, dtype=str, keep_default_na=False, quoting=3, encoding="utf-8")
    for column, name in zip(header, names):
        if column.endswith(":float"):
            frame[name] = pd.to_numeric(frame[name], errors="coerce")
    return frame


def load_recbole(folder: str | os.PathLike, name: str | None = None) -> Dataset:
    """Read `folder/NAME.inter` (+ `.item`, `.user` when present) into the canonical dataset."""
    folder = Path(folder)
    name = name or folder.name
    inter_path = folder / f"{name}.inter"
    if not inter_path.exists():
        raise FileNotFoundError(f"{inter_path} not found; expected RecBole atomic files NAME.inter/.item/.user in {folder}")
    inter = read_atomic(inter_path)
    for required in ("user_id", "item_id"):
        if required not in inter.columns:
            raise ValueError(f"{inter_path}: no '{required}' field; expected a header like 'user_id:token\\titem_id:token'")

    item_table = read_atomic(folder / f"{name}.item") if (folder / f"{name}.item").exists() else pd.DataFrame({"item_id": inter["item_id"].unique()})
    user_table = read_atomic(folder / f"{name}.user") if (folder / f"{name}.user").exists() else None

    all_items = pd.concat([item_table["item_id"], inter["item_id"]]).drop_duplicates()
    _, item_map = dense_ids(all_items.reset_index(drop=True))
    user_ids, user_map = dense_ids(inter["user_id"])
    ts = inter["timestamp"] if "timestamp" in inter.columns else pd.Series(np.arange(len(inter)))
    extra = {"rating": inter["rating"].to_numpy(dtype=np.float64)} if "rating" in inter.columns else None
    events = make_events(user_ids, inter["item_id"].map(item_map), ts.fillna(0).astype(np.int64), action="click", extra=extra)

    items = _items(item_table, item_map)
    profile = user_table.set_index("user_id") if user_table is not None else None
    users = make_users(user_map, profile)
    return finish(items, users, events)


def _items(table: pd.DataFrame, item_map: dict) -> pd.DataFrame:
    table = table.drop_duplicates("item_id").set_index("item_id").reindex(list(item_map)).fillna("")
    title_field = next((c for c in table.columns if any(h in c for h in TITLE_HINTS)), None)
    category_field = next((c for c in table.columns if any(h in c for h in CATEGORY_HINTS)), None)
    other = [c for c in table.columns if c not in (title_field, category_field)]
    titles = table[title_field].tolist() if title_field else [""] * len(table)
    categories = [
        [g for g in str(v).split(" ") if g] or ["Unknown"] for v in (table[category_field] if category_field else [""] * len(table))
    ]
    # A RecBole category field is a bag of labels, not a path: the first label is the root.
    categories = [c[:1] + sorted(c[1:]) for c in categories]
    attributes = [
        {"source_id": str(source), **{c: str(row[c]) for c in other if str(row[c]) != ""}, **({"labels": " ".join(cat)} if category_field else {})}
        for source, (_, row), cat in zip(item_map, table.iterrows(), categories)
    ]
    return make_items(np.fromiter(item_map.values(), dtype=np.int64), titles, categories, attributes)
