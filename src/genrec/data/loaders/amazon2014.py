"""Raw Amazon Reviews 2014 (McAuley et al.): review and metadata JSON, gzip, one record a line.

The standard preprocessing of the generative-recommendation literature: keep
the 5-core (users and items with at least 5 reviews, applied until stable),
order each user's reviews by time, and build item text from the metadata's
title, category path, brand and price. Review files are strict JSON; the 2014
metadata files are Python literals, so both forms are accepted.
"""

from __future__ import annotations

import ast
import gzip
import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from genrec.data.dataset import Dataset
from genrec.data.loaders.canonical import dense_ids, finish, make_events, make_items, make_users
from genrec.data.loaders.download import download

SOURCE = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles"


def fetch_amazon2014(category: str, folder: str | os.PathLike) -> tuple[Path, Path]:
    """Download `reviews_{category}_5.json.gz` and `meta_{category}.json.gz` (users with internet only)."""
    folder = Path(folder)
    reviews = download(f"{SOURCE}/reviews_{category}_5.json.gz", folder / f"reviews_{category}_5.json.gz")
    meta = download(f"{SOURCE}/meta_{category}.json.gz", folder / f"meta_{category}.json.gz")
    return reviews, meta


def load_amazon2014(reviews_path: str | os.PathLike, meta_path: str | os.PathLike, min_count: int = 5) -> Dataset:
    """Reviews + metadata → canonical dataset (one `order` event per review, 5-core filtered)."""
    reviews = pd.DataFrame(
        [(r["reviewerID"], r["asin"], int(r["unixReviewTime"])) for r in _records(reviews_path, ("reviewerID", "asin", "unixReviewTime"))],
        columns=["user", "asin", "ts"],
    )
    reviews = reviews.drop_duplicates(["user", "asin"], keep="first")
    reviews = k_core(reviews, min_count)
    if reviews.empty:
        raise ValueError(f"{reviews_path}: no user and item has {min_count} reviews after the k-core filter")
    reviews = reviews.sort_values(["user", "ts"], kind="stable")

    meta = {r["asin"]: r for r in _records(meta_path, ("asin",)) if r["asin"] in set(reviews["asin"])}
    asins = pd.Series(sorted(reviews["asin"].unique()))
    _, item_map = dense_ids(asins)
    user_ids, user_map = dense_ids(reviews["user"].reset_index(drop=True))
    events = make_events(user_ids, reviews["asin"].map(item_map).to_numpy(), reviews["ts"].to_numpy(), action="order")

    titles, categories, attributes, brands, prices = [], [], [], [], []
    for asin in item_map:
        record = meta.get(asin, {})
        path = (record.get("categories") or [[]])[0]
        titles.append(record.get("title", ""))
        categories.append([c for c in path[1:]] or path[:1] or ["Unknown"])  # drop the store root ("Beauty")
        brand = record.get("brand")
        brands.append(brand if brand else None)
        price = record.get("price")
        prices.append(float(price) if isinstance(price, (int, float)) else None)
        attributes.append({"source_id": asin})
    items = make_items(np.fromiter(item_map.values(), dtype=np.int64), titles, categories, attributes, brands, prices)
    return finish(items, make_users(user_map), events)


def k_core(frame: pd.DataFrame, k: int, user: str = "user", item: str = "asin") -> pd.DataFrame:
    """Drop users and items with fewer than `k` rows, repeatedly, until none remain."""
    while True:
        user_ok = frame.groupby(user)[item].transform("size") >= k
        item_ok = frame.groupby(item)[user].transform("size") >= k
        keep = user_ok & item_ok
        if keep.all():
            return frame
        frame = frame[keep]


def _records(path: str | os.PathLike, required: tuple[str, ...]) -> Iterator[dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; download it with genrec.data.loaders.amazon2014.fetch_amazon2014")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                try:
                    record = ast.literal_eval(line)
                except (ValueError, SyntaxError) as error:
                    raise ValueError(f"{path}, line {number}: neither JSON nor a Python literal ({error})") from error
            missing = [f for f in required if f not in record]
            if missing:
                raise ValueError(f"{path}, line {number}: missing field(s) {missing}")
            yield record
