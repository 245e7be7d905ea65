"""KuaiSAR: search and recommendation logs of the same users, interleaved in time (Kuaishou).

Files: `rec_inter.csv` (recommendation feed: user_id, item_id, timestamp in ms,
click, …), `src_inter.csv` (search sessions: user_id, search_session_id,
search_session_timestamp, keyword as a list of anonymised word ids, item_id,
click_cnt, …) and `item_features.csv` (caption as word ids, category names at
four levels). Word ids become tokens `w<id>`, so queries and titles share a
vocabulary a model can match. Shown-but-not-clicked rows become impressions.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np
import pandas as pd

from genrec.data.dataset import Dataset
from genrec.data.loaders.canonical import dense_ids, finish, make_events, make_items, make_users

LEVELS = ("first", "second", "third", "fourth")
EMPTY_CATEGORY = {"", "empty", "空", "nan"}


def load_kuaisar(folder: str | os.PathLike) -> Dataset:
    folder = Path(folder)
    rec = _read(folder / "rec_inter.csv", ("user_id", "item_id", "timestamp", "click"))
    src = _read(folder / "src_inter.csv", ("user_id", "search_session_id", "search_session_timestamp", "keyword", "item_id", "click_cnt"))
    features = _read(folder / "item_features.csv", ("item_id",)) if (folder / "item_features.csv").exists() else pd.DataFrame({"item_id": []})

    all_items = pd.concat([rec["item_id"], src["item_id"]]).drop_duplicates().reset_index(drop=True)
    _, item_map = dense_ids(all_items)
    _, user_map = dense_ids(pd.concat([rec["user_id"], src["user_id"]]).drop_duplicates().reset_index(drop=True))

    rec_events = make_events(
        rec["user_id"].map(user_map), rec["item_id"].map(item_map), (rec["timestamp"] // 1000).astype(np.int64),
        action=pd.Series(np.where(rec["click"].astype(int) > 0, "click", "impression")), scenario="home_feed",
    )
    rec_events["session_id"] = rec_events["session_id"] + int(src["search_session_id"].max()) + 1
    src_events = make_events(
        src["user_id"].map(user_map), src["item_id"].map(item_map), (src["search_session_timestamp"] // 1000).astype(np.int64),
        action=pd.Series(np.where(src["click_cnt"].astype(int) > 0, "click", "impression")), scenario="search",
        query=src["keyword"].map(_words), session_id=src["search_session_id"],
        position=src.groupby("search_session_id").cumcount(),
    )
    events = pd.concat([src_events, rec_events], ignore_index=True)

    features = features.drop_duplicates("item_id").set_index("item_id").reindex(list(item_map))
    captions = features["caption"].map(lambda v: _words(v) if isinstance(v, str) else "") if "caption" in features else [""] * len(item_map)
    categories = []
    for _, row in features.iterrows():
        path = [str(row.get(f"{level}_level_category_name_en", "")) for level in LEVELS]
        path = [p for p in path if p.strip().lower() not in EMPTY_CATEGORY]
        categories.append(path or ["Unknown"])
    attributes = [
        {"source_id": str(source), **({"author_id": str(int(a))} if pd.notna(a) else {})}
        for source, a in zip(item_map, features.get("author_id", pd.Series([np.nan] * len(item_map))))
    ]
    items = make_items(np.fromiter(item_map.values(), dtype=np.int64), list(captions), categories, attributes)
    profile = _read(folder / "user_features.csv", ("user_id",)).set_index("user_id") if (folder / "user_features.csv").exists() else None
    return finish(items, make_users(user_map, profile), events)


def _words(value: str) -> str | None:
    """`"[20, 34, 3]"` → `"w20 w34 w3"`; an empty list → None (no query typed)."""
    try:
        ids = ast.literal_eval(value) if isinstance(value, str) else list(value)
    except (ValueError, SyntaxError) as error:
        raise ValueError(f"KuaiSAR word list {value!r} is not a list of integers") from error
    return " ".join(f"w{int(i)}" for i in ids) or None


def _read(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; expected the KuaiSAR release files (rec_inter.csv, src_inter.csv, item_features.csv)")
    frame = pd.read_csv(path)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    return frame
