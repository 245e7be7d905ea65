"""A tiny hand-made shop for the cascade's tests: users with a favourite category,
position-biased impressions, and a click → cart → order funnel driven by that taste.

Text vectors come from a bag of seeded random word vectors (`toy_encode`), so the
tests never load MiniLM and query/item cosines still mean something.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from genrec.data.dataset import Dataset

TOPS = ["home", "sport"]
LEAVES = {"home": ["lamp", "chair", "table", "rug"], "sport": ["ball", "racket", "shoe", "bike"]}
COLOURS = ["red", "blue", "green", "black"]
BRANDS = ["acme", "zenit", "orbo", "kiro", "lumo"]


def toy_encode(texts: list[str], dim: int = 48) -> np.ndarray:
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.lower().replace("|", " ").replace(">", " ").replace(":", " ").split():
            out[row] += np.random.default_rng(zlib.crc32(word.encode())).normal(size=dim)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)


def toy_dataset(n_items: int = 160, n_users: int = 60, sessions: int = 14, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    leaves = [(top, leaf) for top in TOPS for leaf in LEAVES[top]]
    rows = []
    for item_id in range(1, n_items + 1):
        top, leaf = leaves[item_id % len(leaves)]
        colour, brand = COLOURS[rng.integers(len(COLOURS))], BRANDS[rng.integers(len(BRANDS))]
        rows.append((item_id, f"{brand} {colour} {leaf}", [top, leaf], {"colour": colour}, brand,
                     float(rng.uniform(5, 100)), "ai" if rng.random() < 0.3 else "human"))
    items = pd.DataFrame(rows, columns=["item_id", "title", "category", "attributes", "brand", "price", "origin"])
    leaf_of = np.array([""] + [leaves[i % len(leaves)][1] for i in range(1, n_items + 1)])
    users = pd.DataFrame({"user_id": np.arange(1, n_users + 1, dtype=np.int64)})
    favourite = {u: leaves[rng.integers(len(leaves))][1] for u in users["user_id"]}
    events, ts, session = [], 0, 0
    for user in users["user_id"]:
        for _ in range(sessions):
            session += 1
            ts += 10
            search = rng.random() < 0.5
            wanted = leaves[rng.integers(len(leaves))][1] if search and rng.random() < 0.5 else favourite[user]
            query = f"{COLOURS[rng.integers(len(COLOURS))]} {wanted}" if search else None
            pool = np.flatnonzero(leaf_of == wanted)
            shown = np.unique(np.r_[rng.choice(pool, 4, replace=False), rng.integers(1, n_items + 1, 4)])
            rng.shuffle(shown)
            for position, item in enumerate(shown):
                events.append((user, ts, session, "search" if search else "home_feed", query, int(item), "impression", position))
                like = 0.55 if leaf_of[item] == wanted else 0.04
                if rng.random() < like / (1 + 0.3 * position):
                    events.append((user, ts + 1, session, "search" if search else "home_feed", query, int(item), "click", position))
                    if rng.random() < 0.5:
                        events.append((user, ts + 2, session, "search" if search else "home_feed", query, int(item), "cart", position))
                        if rng.random() < 0.6:
                            events.append((user, ts + 3, session, "search" if search else "home_feed", query, int(item), "order", position))
    frame = pd.DataFrame(events, columns=["user_id", "ts", "session_id", "scenario", "query", "item_id", "action", "position"])
    frame["position"] = frame["position"].astype(np.int32)
    dataset = Dataset(items, users, frame.sort_values(["ts", "user_id"], kind="stable").reset_index(drop=True))
    dataset.validate()
    return dataset
