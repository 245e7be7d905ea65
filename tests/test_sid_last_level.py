"""The learned balanced last level: crowded prefixes split into small cells of similar items."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genrec import cli
from genrec.data.dataset import Dataset
from genrec.features import item_vectors as item_vectors_module
from genrec.sid import SidTable, build_sids, sid_report
from genrec.sid.last_level import BalancedLastLevel, balanced_codebook_size
from tests.test_sid import fake_text_encoder, tiny_run


def test_codebook_covers_the_groups_holding_most_items_and_caps_the_largest_cell():
    # 97 singletons + one group of 3 items: 3% of the items are in the big group → K covers 1 item, floor 2
    assert balanced_codebook_size(np.array([1] * 97 + [3])) == 2
    # half the items sit in groups of 20 → K must cover 20 → 32
    assert balanced_codebook_size(np.array([1] * 100 + [20] * 5)) == 32
    # one huge group: at most 8 items per cell → 1000 / 8 = 125 → 128
    assert balanced_codebook_size(np.array([1] * 100_000 + [1000])) == 128
    with pytest.raises(ValueError, match="group_sizes"):
        balanced_codebook_size(np.array([]))


def test_siblings_get_distinct_codes_while_the_codebook_has_room_and_balanced_cells_beyond():
    rng = np.random.default_rng(0)
    residual = rng.normal(size=(45, 6)).astype(np.float32)
    groups = np.array([[0]] * 5 + [[1]] * 9 + [[2]] * 31)  # K = 8: fits, one over, ~4 per code
    codes = BalancedLastLevel(8, seed=0).fit_assign(residual, groups)
    assert len(set(codes[:5])) == 5
    per_code = np.bincount(codes[5:14], minlength=8)
    assert sorted(per_code.tolist()) == [1] * 7 + [2]  # 9 items on 8 codes: one pair, never two
    assert np.bincount(codes[14:], minlength=8).max() == 4  # ceil(31 / 8)


def test_items_in_one_cell_are_the_similar_ones():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(2, 8)) * 5
    which = np.array([0, 1] * 6)
    residual = (centres[which] + rng.normal(size=(12, 8)) * 0.1).astype(np.float32)
    codes = BalancedLastLevel(2, seed=0).fit_assign(residual, np.zeros((12, 0), dtype=np.int64))
    assert np.bincount(codes).tolist() == [6, 6]
    assert len(set(zip(codes.tolist(), which.tolist()))) == 2  # each cell is one cluster


def _duplicate_text_run(root):
    dataset = Dataset.load(tiny_run(root / "tiny") / "data")
    items = dataset.items.copy()
    items["title"] = [f"the same item {i % 2}" for i in range(len(items))]  # 4 leaves × 2 texts → 15 twins each
    items["attributes"] = [{"size": "0"} for _ in range(len(items))]
    Dataset(items, dataset.users, dataset.events).save(root / "run" / "data")
    return root / "run"


def test_a_catalogue_with_duplicate_texts_still_gets_unique_codes(tmp_path, monkeypatch):
    monkeypatch.setattr(item_vectors_module, "encode_texts", fake_text_encoder)
    run = _duplicate_text_run(tmp_path)
    plain = build_sids(run, levels=1, codebook_size=4, prefix=("category",), progress=False, out=tmp_path / "plain")
    table = build_sids(run, levels=1, codebook_size=4, prefix=("category",), progress=False, last_level="balanced")
    assert len(np.unique(table.codes, axis=0)) == len(table) == 120
    assert table.levels == plain.levels + 1
    learned = sid_report(table.codes, table.levels - 1)
    assert learned["items_per_leaf_max"] < sid_report(plain.codes, plain.levels - 1)["items_per_leaf_max"]
    assert learned["items_per_leaf_max"] <= 8
    again = build_sids(run, levels=1, codebook_size=4, prefix=("category",), progress=False, last_level="balanced", out=tmp_path / "again")
    np.testing.assert_array_equal(again.codes, table.codes)
    assert SidTable.load(run / "sid").codebook_sizes == table.codebook_sizes
    assert json.loads((run / "sid" / "config.json").read_text())["last_level"] == "balanced"
    assert (run / "sid" / "last_level.npz").exists()


def test_sid_command_takes_the_learned_last_level_and_refuses_bad_options(tmp_path, monkeypatch):
    monkeypatch.setattr(item_vectors_module, "encode_texts", fake_text_encoder)
    run = tiny_run(tmp_path)
    assert cli.main(["sid", "--run", str(run), "--levels", "1", "--prefix", "category", "--last-level", "balanced",
                     "--last-level-size", "4"]) == 0
    assert SidTable.load(run / "sid").codebook_sizes[2] == 4
    with pytest.raises(ValueError, match="last_level"):
        build_sids(run, last_level="kmeans")
    with pytest.raises(ValueError, match="last_level_size"):
        build_sids(run, last_level_size=8)
    with pytest.raises(ValueError, match="codebook_size"):
        BalancedLastLevel(1)
