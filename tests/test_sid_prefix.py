"""Attribute-prefixed SIDs: leaf and brand first, conditional codes, the residual levels after."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from genrec.features import item_vectors as item_vectors_module
from genrec.sid import SidTable, build_sids
from genrec.sid.prefix import attribute_prefix, group_sizes, within_group_residual
from tests.test_sid import fake_text_encoder, tiny_run


def _items() -> pd.DataFrame:
    return pd.DataFrame({
        "item_id": [10, 11, 12, 13, 14, 15],
        "category": [["A", "x"], ["A", "x"], ["A", "x"], ["B", "x"], ["B", "y"], []],
        "brand": ["acme", "acme", "zen", "zen", None, "acme"],
    })


def test_prefix_codes_rank_values_within_their_parent_most_frequent_first():
    prefix = attribute_prefix(_items(), np.array([10, 11, 12, 13, 14, 15]))
    assert prefix.fields == ("category", "brand")
    leaf, brand = prefix.codes[:, 0], prefix.codes[:, 1]
    assert leaf[0] == leaf[1] == leaf[2] == 0  # "A > x" holds the most items: code 0
    assert len({leaf[3], leaf[4], leaf[5]}) == 3 and leaf[3] != leaf[4]  # "B > x" and "B > y" are two leaves
    assert brand[0] == brand[1] == 0 and brand[2] == 1  # acme (2 items) before zen (1) inside "A > x"
    assert brand[3] == 0 and brand[4] == 0  # zen alone in "B > x", the unbranded item alone in "B > y": code 0
    assert prefix.sizes == [4, 2]
    assert prefix.vocab[1]["0"] == {"acme": 0, "zen": 1}


def test_prefix_follows_the_requested_item_order_and_skips_fields_nobody_has():
    items = _items().assign(brand=None)
    prefix = attribute_prefix(items, np.array([15, 10, 11]))  # only the requested items are counted
    assert prefix.fields == ("category",) and prefix.codes.shape == (3, 1)
    assert prefix.codes[:, 0].tolist() == [1, 0, 0]
    with pytest.raises(ValueError, match="no row in items"):
        attribute_prefix(items, np.array([99]))
    with pytest.raises(ValueError, match="prefix fields"):
        attribute_prefix(items, np.array([10]), ("colour",))


def test_within_group_residual_removes_each_groups_mean():
    vectors = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 5.0]], dtype=np.float32)
    groups = np.array([[0, 1], [0, 1], [2, 0]])
    residual = within_group_residual(vectors, groups)
    np.testing.assert_allclose(residual, [[-1, 0], [1, 0], [0, 0]])
    assert sorted(group_sizes(groups).tolist()) == [1, 2]


def test_build_sids_with_a_prefix_starts_every_sid_with_the_leaf_code(tmp_path, monkeypatch):
    monkeypatch.setattr(item_vectors_module, "encode_texts", fake_text_encoder)
    run = tiny_run(tmp_path)
    table = build_sids(run, levels=1, prefix=("category", "brand"), progress=False)
    items = pd.read_parquet(run / "data" / "items.parquet")
    leaf = items.set_index("item_id").loc[table.item_ids, "category"].map(" > ".join).to_numpy()
    for code in np.unique(table.codes[:, 0]):  # one leaf per first-level code and one code per leaf
        assert len(set(leaf[table.codes[:, 0] == code])) == 1
    assert len(np.unique(table.codes, axis=0)) == len(table)
    assert SidTable.load(run / "sid").codebook_sizes == table.codebook_sizes
    saved = json.loads((run / "sid" / "prefix.json").read_text())
    assert saved["fields"][0] == "category" and saved["sizes"][0] == table.codebook_sizes[0]
    assert json.loads((run / "sid" / "sid_report.json").read_text())["prefix"] == saved["fields"]


def test_coarse_intent_levels_follow_each_items_category_path():
    """`category1` / `category2` are the path's department and group: items share a level's code
    exactly when they share that much of their path, and the leaf level comes after them."""
    items = pd.DataFrame({
        "item_id": [1, 2, 3, 4, 5],
        "category": [["Home", "Kitchen", "Pans"], ["Home", "Kitchen", "Pots"], ["Home", "Bath", "Towels"],
                     ["Toys", "Plush", "Bears"], ["Home", "Kitchen", "Pans"]],
    })
    prefix = attribute_prefix(items, np.array([1, 2, 3, 4, 5]), ("category1", "category2", "category"))
    assert prefix.fields == ("category1", "category2", "category")
    paths = [tuple(p) for p in items["category"]]
    for level in range(3):
        for a in range(5):
            for b in range(5):
                same_path = paths[a][: level + 1] == paths[b][: level + 1]
                assert (tuple(prefix.codes[a, : level + 1]) == tuple(prefix.codes[b, : level + 1])) == same_path
    assert prefix.vocab[0][""] == {"Home": 0, "Toys": 1}  # most frequent first
