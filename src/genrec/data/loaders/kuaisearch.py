"""KuaiSearch's relevance table: human 0–3 judgements of (query, product) pairs from Kuaishou's shop search.

KuaiSearch (Li, Chen et al., SIGIR 2026, github.com/benchen4395/KuaiSearch)
has three parts — recall, ranking and relevance. This loader reads the
relevance part, the one with graded labels, into the canonical schema the way
the ESCI loader does: each judged pair is a search event whose `relevance`
column holds the grade (`genrec.eval.relevance` scores rankers and relevance
classifiers against it), whose action follows it (3 → order, 2 → cart,
1 → click, 0 → impression, ESCI's convention) and whose query plays the user.

What was verified, and where (the full data were not yet downloadable when
this was written; the repository held demo files and baseline code):
- the file is JSON Lines, `relevance.jsonl`, one judged pair per line, read
  as `data/relevance.jsonl` by the repository's `relevance/data/process.py`;
- its fields `query`, `item_title`, `brand`, `seller_name`, `attr_value` and
  `label` are the ones that script reads (`label` an integer), and `无品牌`
  ("no brand") is the brand of an unbranded product;
- the labels are relevance scores 0–3 (the project page's table of fields:
  "query, title, brand, seller, attribute, relevance score (0–3)").
Not verified: whether lines carry an item id. An `item_id` field is used when
present; otherwise a product is known by its title, brand and seller. Missing
values written as `\\N` (a Hive export's null, seen in the repository's files)
count as empty.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from genrec.data.dataset import Dataset
from genrec.data.loaders.canonical import (
    dense_ids,
    finish,
    make_events,
    make_items,
    make_users,
    reject_rows,
    require_columns,
)
from genrec.data.loaders.download import download

RELEVANCE_FILE = "relevance.jsonl"
SOURCE = "https://github.com/benchen4395/KuaiSearch/raw/main/data/relevance.jsonl"
"""Where the repository's own scripts expect the file; pass `url` when the release puts it elsewhere."""
COLUMNS = ("query", "item_title", "brand", "seller_name", "attr_value", "label")
GRADES = [0, 1, 2, 3]
ACTIONS = {3: "order", 2: "cart", 1: "click", 0: "impression"}
NO_BRAND = "无品牌"
NULL = "\\N"


def fetch_kuaisearch(folder: str | os.PathLike, url: str = SOURCE, sha256: str | None = None) -> Path:
    """Download the relevance table into `folder/relevance.jsonl` (resumable; see `download`)."""
    return download(url, Path(folder) / RELEVANCE_FILE, sha256=sha256)


def load_kuaisearch(folder: str | os.PathLike) -> Dataset:
    """Read `folder/relevance.jsonl`; a missing field, an empty query or a label outside 0–3 is a
    `ValueError` naming the file, the field and the row."""
    frame = _read_jsonl(Path(folder) / RELEVANCE_FILE)
    require_columns(frame, COLUMNS, RELEVANCE_FILE)
    labels = pd.to_numeric(frame["label"], errors="coerce")
    reject_rows(frame["label"], ~labels.isin(GRADES).to_numpy(), "label", RELEVANCE_FILE,
                f"is not one of {'/'.join(map(str, GRADES))}")
    grades = labels.astype(np.int64)
    text = {column: frame[column].map(_text) for column in ("query", "item_title", "brand", "seller_name", "attr_value")}
    reject_rows(frame["query"], (text["query"] == "").to_numpy(), "query", RELEVANCE_FILE,
                "is empty; every judgement needs a query")

    product = frame["item_id"].astype(str) if "item_id" in frame.columns else (
        text["item_title"] + " | " + text["brand"] + " | " + text["seller_name"])
    item_ids, item_map = dense_ids(product)
    user_ids, user_map = dense_ids(text["query"])
    events = make_events(
        user_ids, item_ids, np.zeros(len(frame), dtype=np.int64),
        action=grades.map(ACTIONS), scenario="search", query=text["query"], session_id=user_ids,
        position=pd.Series(frame.groupby(user_ids.to_numpy()).cumcount().to_numpy()), extra={"relevance": grades.to_numpy()},
    )
    first = frame.assign(item_id_=item_ids.to_numpy()).drop_duplicates("item_id_").index
    brands = [b if b and b != NO_BRAND else None for b in text["brand"][first]]
    attributes = [
        {"source_id": source, **({"seller": s} if s else {}), **({"attr_value": a} if a else {})}
        for source, s, a in zip(item_map, text["seller_name"][first], text["attr_value"][first])
    ]
    items = make_items(item_ids[first].to_numpy(), text["item_title"][first].tolist(), [["Unknown"]] * len(first),
                       attributes, brands)
    return finish(items, make_users(user_map), events)


def _read_jsonl(path: Path) -> pd.DataFrame:
    """One row per non-empty line, in file order (so row N is the N-th record, the file's line N when it has
    no blank lines); a line that is not a JSON object is an error naming its line number."""
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; download it with fetch_kuaisearch or place KuaiSearch's {RELEVANCE_FILE} there")
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path.name}: line {number} is not valid JSON ({error.msg})") from error
            if not isinstance(record, dict):
                raise ValueError(f"{path.name}: line {number} is not a JSON object")
            records.append(record)
    return pd.DataFrame.from_records(records)


def _text(value: object) -> str:
    """A field as stripped text; None, NaN and the `\\N` null are empty."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    text = str(value).strip()
    return "" if text == NULL else text
