"""The collaborative view: co-occurrence of the training histories only, factorised small."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from genrec.data.dataset import Dataset
from genrec.features import item_vectors as item_vectors_module
from genrec.sid import RQKMeansTokenizer, build_sids
from genrec.sid.collaborative import collaborative_vectors, train_cooccurrence, with_collaborative_view
from tests.test_sid import fake_text_encoder, tiny_run


def _events(sequences: dict[int, list[int]]) -> pd.DataFrame:
    rows = [(user, step, item) for user, items in sequences.items() for step, item in enumerate(items)]
    n = len(rows)
    return pd.DataFrame({
        "user_id": np.array([r[0] for r in rows], dtype=np.int64),
        "ts": np.array([r[1] for r in rows], dtype=np.int64),
        "session_id": np.arange(n, dtype=np.int64),
        "scenario": ["home_feed"] * n,
        "query": [None] * n,
        "item_id": np.array([r[2] for r in rows], dtype=np.int64),
        "action": ["click"] * n,
        "position": np.zeros(n, dtype=np.int32),
    })


def test_cooccurrence_reads_only_the_training_part_of_each_history(tmp_path):
    base = Dataset.load(tiny_run(tmp_path) / "data")
    users = pd.DataFrame({"user_id": np.array([1, 2], dtype=np.int64)})
    # user 1: 1, 2 train; 3 validation; 4 test. user 2: 5, 6, 7 train; 8 validation; 9 test
    dataset = Dataset(base.items, users, _events({1: [1, 2, 3, 4], 2: [5, 6, 7, 8, 9]}))
    item_ids = np.arange(1, 11)
    matrix = train_cooccurrence(dataset, item_ids).toarray()
    slot = {int(item): i for i, item in enumerate(item_ids)}
    assert matrix[slot[1], slot[2]] > 0 and matrix[slot[5], slot[6]] > 0 and matrix[slot[5], slot[7]] > 0
    for a, b in ((2, 3), (3, 4), (7, 8), (8, 9)):  # a held-out item never co-occurs with anything
        assert matrix[slot[a], slot[b]] == 0 and matrix[slot[b], slot[a]] == 0
    assert matrix[slot[3]].sum() == matrix[slot[4]].sum() == matrix[slot[9]].sum() == 0
    np.testing.assert_allclose(matrix, matrix.T)


def test_items_bought_together_get_close_vectors_and_loners_get_zero():
    n = 12
    dense = np.zeros((n, n))
    # Two cliques of different sizes (5 and 4), so the leading eigenvalues (4 and 3) are distinct and
    # the vectors are defined up to sign; equal cliques would leave any rotation of a shared eigenspace
    # correct, and ARPACK picks one differently from call to call on some CPUs. Items 9-11 never co-occur.
    for block in (range(0, 5), range(5, 9)):
        for a in block:
            for b in block:
                if a != b:
                    dense[a, b] = 1.0
    vectors = collaborative_vectors(sp.csr_matrix(dense), dim=4)
    assert vectors.shape == (n, 4)
    np.testing.assert_allclose(np.linalg.norm(vectors[:9], axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[9:], 0.0)
    cosine = vectors[:9] @ vectors[:9].T
    assert cosine[0, 1:5].min() > 0.9 and abs(cosine[0, 5:9]).max() < 0.1
    np.testing.assert_allclose(vectors, collaborative_vectors(sp.csr_matrix(dense), dim=4), atol=1e-6)


def run_with_histories(tmp_path):
    """`tiny_run`'s items with 29 users who each bought 6 of the first 40 items: co-occurrence to learn from."""
    run = tiny_run(tmp_path)
    base = Dataset.load(run / "data")
    history = {user: [1 + (user * 7 + step) % 40 for step in range(6)] for user in range(1, 30)}
    Dataset(base.items, pd.DataFrame({"user_id": np.arange(1, 30, dtype=np.int64)}), _events(history)).save(run / "data")
    return run


def test_the_weight_scales_the_appended_view_and_must_not_be_negative():
    text, collab = np.ones((3, 2)), np.full((3, 4), 0.5)
    np.testing.assert_allclose(with_collaborative_view(text, collab, 2.0), np.c_[np.ones((3, 2)), np.ones((3, 4))])
    with pytest.raises(ValueError, match="collaborative_weight"):
        with_collaborative_view(text, collab, -1.0)


def test_build_sids_quantizes_text_and_collaborative_vectors_together(tmp_path, monkeypatch):
    monkeypatch.setattr(item_vectors_module, "encode_texts", fake_text_encoder)
    run = run_with_histories(tmp_path)
    table = build_sids(run, levels=2, collaborative_weight=0.5, progress=False)
    assert len(np.unique(table.codes, axis=0)) == len(table)
    assert RQKMeansTokenizer.load(run / "sid" / "tokenizer.npz").dim_ == 32 + 32  # text + collaborative columns
    assert json.loads((run / "sid" / "config.json").read_text())["collaborative_weight"] == 0.5
    with pytest.raises(ValueError, match="collaborative_weight"):
        build_sids(run, collaborative_weight=-0.1)
