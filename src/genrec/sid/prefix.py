"""Attribute-prefixed Semantic IDs: the first levels name the item's leaf category
and brand, the rest quantize what those leave unexplained.

Why. Pure RQ-KMeans over text vectors puts a leaf's items under several
first-level codes and makes every code a mix of leaves; the deeper codes are
residual directions that a user's words barely determine, so the generator has
to memorise them item by item (on the default world a model trained 500 steps
picked the right second-level code for only 38% of validation searches, the
first for 81%). A searcher types the product type and often the brand
("fenico shirt"); a shopper keeps browsing one leaf. Making those the SID's
first levels turns "which item" into "which leaf, which brand of it, which of a
handful of items": each level is a choice people's words and behaviour
actually make, and every training example about one item teaches its siblings
the shared prefix. OneSearch's keyword-enhanced hierarchical SIDs (KHQE) make
the same move: core attributes first, residual quantization after.

Codes are conditional: a level's code is the value's rank among the values seen
under the same parent prefix (most frequent first), so a brand level needs only
as many codes as the leaf with the most brands, not one per brand in the
catalog. The trie makes that unambiguous. Past `MAX_CODEBOOK_SIZE` values under
one parent, the rarest share the last code and the later levels tell them apart.

    prefix = attribute_prefix(items, item_ids, ("category", "brand"))
    residual = within_group_residual(vectors, prefix.codes)   # vectors minus their group's mean
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from genrec.sid.codebook import MAX_CODEBOOK_SIZE

PREFIX_FIELDS: tuple[str, ...] = ("category1", "category2", "category", "keyword", "brand")
"""Item columns a prefix level can come from: `category1` / `category2` (the first one / two levels of
the category path: department, then department > group — coarse intent tokens generated before the
leaf, as the detection-guided search paper generates category tokens coarse to fine), `category`
(the whole leaf path), `keyword` (the item's keyword-level value, a column `build_sids` adds from
`genrec.sid.keyword_level`) and `brand`."""


@dataclass
class AttributePrefix:
    """`codes` int64 `[n, P]` (P = number of fields used), `sizes` one codebook size
    per level, `fields` the fields used, `vocab[p]` maps `parent codes → value → code`
    (JSON-ready: keys are strings) so new items can be coded the same way."""

    codes: np.ndarray
    sizes: list[int]
    fields: tuple[str, ...]
    vocab: list[dict[str, dict[str, int]]]


def attribute_prefix(items: pd.DataFrame, item_ids: np.ndarray,
                     fields: Sequence[str] = ("category", "keyword", "brand")) -> AttributePrefix:
    """Prefix codes for `item_ids` (in that order) from the `items` table.

    A field no item has a value for (a catalog without brands) is skipped, so
    the prefix has between 0 and len(fields) levels. A missing value is its own
    value (""), so unbranded items sit together under their leaf.
    """
    unknown = [f for f in fields if f not in PREFIX_FIELDS]
    if unknown:
        raise ValueError(f"prefix fields must be among {PREFIX_FIELDS}, got {unknown}")
    item_ids = np.asarray(item_ids, dtype=np.int64)
    rows = pd.Series(np.arange(len(items)), index=items["item_id"].to_numpy(dtype=np.int64))
    missing = ~np.isin(item_ids, rows.index.to_numpy())
    if missing.any():
        raise ValueError(f"item {int(item_ids[missing][0])} has a vector but no row in items")
    table = items.iloc[rows.loc[item_ids].to_numpy()]
    columns, used = [], []
    for name in fields:
        values = _field_values(table, name)
        if any(values):
            columns.append(values)
            used.append(name)
    n = len(item_ids)
    codes = np.zeros((n, len(columns)), dtype=np.int64)
    sizes, vocab = [], []
    for level, values in enumerate(columns):
        parents = [",".join(map(str, row)) for row in codes[:, :level].tolist()]
        frame = pd.DataFrame({"parent": parents, "value": values})
        counts = frame.value_counts(["parent", "value"]).reset_index(name="count")
        counts = counts.sort_values(["parent", "count", "value"], ascending=[True, False, True], kind="stable")
        counts["code"] = np.minimum(counts.groupby("parent").cumcount().to_numpy(), MAX_CODEBOOK_SIZE - 1)
        level_vocab: dict[str, dict[str, int]] = {}
        for parent, value, code in counts[["parent", "value", "code"]].itertuples(index=False):
            level_vocab.setdefault(parent, {})[value] = int(code)
        codes[:, level] = [level_vocab[p][v] for p, v in zip(parents, values)]
        sizes.append(int(codes[:, level].max()) + 1 if n else 1)
        vocab.append(level_vocab)
    return AttributePrefix(codes, sizes, tuple(used), vocab)


def within_group_residual(vectors: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """`vectors [n, d]` minus the mean vector of their prefix group (rows of `groups [n, P]`
    with equal codes): what the prefix levels have not explained, for the residual levels."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if groups.shape[1] == 0:
        return vectors.copy()
    group = np.unique(groups, axis=0, return_inverse=True)[1].reshape(-1)
    sums = np.zeros((int(group.max()) + 1, vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, group, vectors)
    means = sums / np.bincount(group)[:, None]
    return (vectors - means[group]).astype(np.float32)


def group_sizes(groups: np.ndarray) -> np.ndarray:
    """How many items share each distinct prefix row of `groups [n, P]`."""
    if groups.shape[1] == 0:
        return np.array([len(groups)])
    return np.unique(groups, axis=0, return_counts=True)[1]


def leaf_path(category) -> str:
    """An item's leaf as its whole category path ("Beauty > Hair > Oil"; "" for none), so two
    leaves sharing a last name under different parents stay apart."""
    return " > ".join(str(c) for c in category) if category is not None and len(category) else ""


def _field_values(table: pd.DataFrame, name: str) -> list[str]:
    if name in ("category1", "category2"):  # a path's ancestors; a path no deeper than that has none
        depth = int(name[-1])
        paths = table["category"] if "category" in table.columns else [None] * len(table)
        return [leaf_path(path[:depth]) if path is not None and len(path) > depth else "" for path in paths]
    if name not in table.columns:
        return [""] * len(table)
    if name == "category":
        return [leaf_path(path) for path in table[name]]
    return [str(v).strip() if isinstance(v, str) else "" for v in table[name]]
