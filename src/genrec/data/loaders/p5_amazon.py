"""Amazon Reviews 2014 as preprocessed by P5 and used by TIGER (`sequential.txt` + an item table).

`sequential.txt` holds one user a line, `user_id item_id item_id …`, oldest
first, with no timestamps: the position in the line becomes the time, so
leave-one-out on the result is exactly the TIGER/P5 split. The item table
(`items.tsv`: item_id, asin, title, attributes) carries `|`-separated brand and
category names; the brand, when present, is the first name, and it is told
apart from categories because a brand never appears below the root of any path.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np
import pandas as pd

from genrec.data.dataset import Dataset
from genrec.data.loaders.canonical import finish, make_events, make_items

UNKNOWN_BRANDS = {"", "unknown", "generic"}


def load_p5_amazon(folder: str | os.PathLike, scenario: str = "home_feed") -> Dataset:
    """Read `sequential.txt` and `items.tsv` from `folder` into the canonical dataset.

    Every review is an `order` event in its own session. Item and user ids are
    kept as in the files (they are already dense and 1-based).
    """
    folder = Path(folder)
    sequences = _read_sequences(folder / "sequential.txt")
    table = _read_items(folder / "items.tsv")

    users, items, positions = [], [], []
    for user, sequence in sequences:
        users.extend([user] * len(sequence))
        items.extend(sequence)
        positions.extend(range(len(sequence)))
    events = make_events(pd.Series(users), pd.Series(items), pd.Series(positions), action="order", scenario=scenario)

    known = set(table["item_id"].tolist())
    missing = sorted(set(items) - known)
    if missing:
        raise ValueError(f"{folder / 'sequential.txt'}: item ids {missing[:5]} have no row in items.tsv")
    user_ids = np.array(sorted({u for u, _ in sequences}), dtype=np.int64)
    return finish(table, pd.DataFrame({"user_id": user_ids}), events)


def _read_sequences(path: Path) -> list[tuple[int, list[int]]]:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; expected P5's sequential.txt (`user item item …` per line)")
    sequences = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.split()
            if not fields:
                continue
            # isascii: str.isdigit alone accepts '²' (int() then fails without naming the line) and
            # '١٢' (int() reads it as 12, silently inventing an id).
            bad = next((f for f in fields if not (f.isascii() and f.isdigit())), None)
            if len(fields) < 2 or bad is not None:
                what = f"{bad!r} is not a non-negative integer" if bad is not None else "a user with no items"
                raise ValueError(f"{path}, line {number}: expected `user_id item_id …` as integers; "
                                 f"{what} in {line.strip()[:80]!r}")
            sequences.append((int(fields[0]), [int(f) for f in fields[1:]]))
    return sequences


def _read_items(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; expected an item table with columns item_id, asin, title, attributes")
    raw = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    expected = {"item_id", "asin", "title", "attributes"}
    if not expected <= set(raw.columns):
        raise ValueError(f"{path}: columns {sorted(raw.columns)}; expected {sorted(expected)}")
    paths = [[html.unescape(n) for n in a.split("|") if n] for a in raw["attributes"]]
    below_root = {name for p in paths for name in p[1:]}
    brands, categories = [], []
    for names in paths:
        if names and names[0] not in below_root:
            brand, category = names[0], names[1:]
        else:
            brand, category = None, names
        brands.append(None if brand is None or brand.lower() in UNKNOWN_BRANDS else brand)
        categories.append(category or ["Unknown"])
    attributes = [{"source_id": asin} for asin in raw["asin"]]
    return make_items(
        raw["item_id"].astype(np.int64).to_numpy(),
        [html.unescape(t) for t in raw["title"]],
        categories,
        attributes,
        brand=brands,
    )
