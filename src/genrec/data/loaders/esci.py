"""Amazon Shopping Queries (ESCI): query–product judgements with product text.

Each judged (query, product) pair becomes a search event whose action follows
the ESCI label — Exact → order, Substitute → cart, Complement → click,
Irrelevant → impression — and whose graded relevance (3/2/1/0) is kept in a
`relevance` column, the judgements `genrec.eval.relevance` scores rankers
against. A query id plays the user (the data has no users), so a search model
sees one session per query. A table with a missing column or a label other
than E/S/C/I is refused with the file, column and row.
"""

from __future__ import annotations

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
    require_columns,
    require_values,
)
from genrec.data.loaders.download import download

SOURCE = "https://github.com/amazon-science/esci-data/raw/main/shopping_queries_dataset"
LABELS = {"E": ("order", 3), "S": ("cart", 2), "C": ("click", 1), "I": ("impression", 0)}
EXAMPLE_COLUMNS = ("query", "query_id", "product_id", "product_locale", "esci_label")
PRODUCT_COLUMNS = ("product_id", "product_locale")


def fetch_esci(folder: str | os.PathLike) -> tuple[Path, Path]:
    folder = Path(folder)
    examples = download(f"{SOURCE}/shopping_queries_dataset_examples.parquet", folder / "shopping_queries_dataset_examples.parquet")
    products = download(f"{SOURCE}/shopping_queries_dataset_products.parquet", folder / "shopping_queries_dataset_products.parquet")
    return examples, products


def load_esci(folder: str | os.PathLike, locale: str = "us", small_version: bool = True) -> Dataset:
    """Read the examples and products tables (Parquet or CSV) from `folder`."""
    folder = Path(folder)
    examples, examples_file = _read(folder, "shopping_queries_dataset_examples")
    products, products_file = _read(folder, "shopping_queries_dataset_products")
    require_columns(examples, EXAMPLE_COLUMNS, examples_file)
    require_columns(products, PRODUCT_COLUMNS, products_file)
    require_values(examples, "esci_label", list(LABELS), examples_file)
    examples = examples[examples["product_locale"] == locale]
    if small_version and "small_version" in examples.columns:
        examples = examples[examples["small_version"].astype(int) == 1]
    products = products[products["product_locale"] == locale].drop_duplicates("product_id").set_index("product_id")

    item_ids, item_map = dense_ids(examples["product_id"].drop_duplicates().reset_index(drop=True))
    user_ids, user_map = dense_ids(examples["query_id"].astype(str).reset_index(drop=True))
    actions = examples["esci_label"].map(lambda l: LABELS[l][0]).to_numpy()
    relevance = examples["esci_label"].map(lambda l: LABELS[l][1]).to_numpy(dtype=np.int64)
    events = make_events(
        user_ids, examples["product_id"].map(item_map).to_numpy(), np.zeros(len(examples), dtype=np.int64),
        action=pd.Series(actions), scenario="search", query=examples["query"].reset_index(drop=True),
        session_id=user_ids, position=pd.Series(examples.groupby("query_id").cumcount().to_numpy()),
        extra={"relevance": relevance},
    )
    rows = products.reindex(list(item_map))
    titles = rows["product_title"].fillna("").tolist() if "product_title" in rows else [""] * len(rows)
    brands = [b if isinstance(b, str) and b else None for b in rows.get("product_brand", pd.Series([None] * len(rows)))]
    attributes = [
        {"source_id": str(pid), **({"color": str(c)} if isinstance(c, str) and c else {})}
        for pid, c in zip(item_map, rows.get("product_color", pd.Series([None] * len(rows))))
    ]
    items = make_items(np.fromiter(item_map.values(), dtype=np.int64), titles, [["Unknown"]] * len(rows), attributes, brands)
    return finish(items, make_users(user_map), events)


def _read(folder: Path, stem: str) -> tuple[pd.DataFrame, str]:
    """The table and its file name (for error messages), Parquet preferred over CSV."""
    for suffix, reader in ((".parquet", pd.read_parquet), (".csv", pd.read_csv)):
        if (folder / f"{stem}{suffix}").exists():
            return reader(folder / f"{stem}{suffix}").reset_index(drop=True), f"{stem}{suffix}"
    raise FileNotFoundError(f"{folder}/{stem}.parquet (or .csv) not found; download it with fetch_esci")
