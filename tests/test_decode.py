"""Specifications for the prefix trie and trie-constrained beam search (genrec.decode).

Every fast path has a slow twin here: trie lookups against Python sets of
prefixes, beam search against exhaustive enumeration of all valid SIDs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genrec.decode import (
    BeamSearchModel,
    PrefixTrie,
    TableStepModel,
    constrained_beam_search,
    exhaustive_search,
)


def random_catalog(seed: int, n_items: int, levels: int, codebook: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct random SIDs `[n, levels]` (n ≤ n_items after removing duplicates) and shuffled item ids ≥ 1."""
    rng = np.random.default_rng(seed)
    codes = np.unique(rng.integers(0, codebook, size=(n_items, levels)), axis=0)
    codes = codes[rng.permutation(len(codes))]
    item_ids = rng.permutation(np.arange(1, 10 * len(codes) + 1))[: len(codes)]
    return codes, item_ids


def prefix_sets(codes: np.ndarray) -> dict[tuple[int, ...], set[int]]:
    allowed: dict[tuple[int, ...], set[int]] = {}
    for sid in codes.tolist():
        for level in range(len(sid)):
            allowed.setdefault(tuple(sid[:level]), set()).add(sid[level])
    return allowed


def walk(trie: PrefixTrie, prefixes: list[tuple[int, ...]]) -> torch.Tensor:
    """Node ids of equal-length prefixes, reached by `advance` from the root."""
    nodes = torch.zeros(len(prefixes), dtype=torch.int64)
    for level in range(len(prefixes[0])):
        nodes = trie.advance(level, nodes, torch.tensor([p[level] for p in prefixes]))
    return nodes


# ----- trie ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("storage", ["auto", "dense", "csr"])
def test_allowed_mask_equals_set_reference_at_every_level(storage: str) -> None:
    codes, item_ids = random_catalog(seed=1, n_items=300, levels=3, codebook=9)
    trie = PrefixTrie.from_codes(codes, item_ids, storage=storage)
    allowed = prefix_sets(codes)
    for level in range(3):
        prefixes = sorted(p for p in allowed if len(p) == level)
        nodes = walk(trie, prefixes) if level else torch.zeros(1, dtype=torch.int64)
        assert (nodes >= 0).all()
        assert len(set(nodes.tolist())) == len(prefixes) == trie.num_nodes(level)
        mask = trie.allowed_mask(level, nodes)
        expected = torch.zeros(len(prefixes), trie.vocab_size, dtype=torch.bool)
        for row, prefix in enumerate(prefixes):
            expected[row, sorted(allowed[prefix])] = True
        assert torch.equal(mask, expected)


def test_auto_storage_picks_dense_near_the_root_and_csr_where_sparse() -> None:
    codes, item_ids = random_catalog(seed=2, n_items=2000, levels=3, codebook=64)
    trie = PrefixTrie.from_codes(codes, item_ids)
    assert trie.level_storage()[0] == "dense"
    assert trie.level_storage()[-1] == "csr"
    dense = PrefixTrie.from_codes(codes, item_ids, storage="dense")
    csr = PrefixTrie.from_codes(codes, item_ids, storage="csr")
    assert trie.memory_bytes() <= min(dense.memory_bytes(), csr.memory_bytes())


@pytest.mark.parametrize("storage", ["dense", "csr"])
def test_advance_rejects_codes_outside_the_trie(storage: str) -> None:
    codes = np.array([[0, 1], [0, 2], [2, 0]])
    trie = PrefixTrie.from_codes(codes, np.array([5, 6, 7]), codebook_sizes=[4, 4], storage=storage)
    root = torch.zeros(4, dtype=torch.int64)
    first = trie.advance(0, root, torch.tensor([0, 1, 2, 9]))
    assert first[1] == -1 and first[3] == -1 and first[0] >= 0 and first[2] >= 0
    second = trie.advance(1, first[[0, 0, 2, 2]], torch.tensor([2, 0, 0, 1]))
    assert second[1] == -1 and second[3] == -1
    assert trie.item_at(second).tolist() == [6, -1, 7, -1]


def test_item_at_returns_the_item_whose_full_sid_was_walked() -> None:
    codes, item_ids = random_catalog(seed=3, n_items=500, levels=4, codebook=5)
    trie = PrefixTrie.from_codes(codes, item_ids)
    leaves = walk(trie, [tuple(row) for row in codes.tolist()])
    assert torch.equal(trie.item_at(leaves), torch.as_tensor(item_ids))


def test_children_lists_each_allowed_code_once_with_its_child_node() -> None:
    codes, item_ids = random_catalog(seed=4, n_items=400, levels=3, codebook=12)
    trie = PrefixTrie.from_codes(codes, item_ids, storage="csr")
    nodes = torch.arange(trie.num_nodes(1))
    child_codes, child_ids, valid = trie.children(1, nodes)
    for row in range(len(nodes)):
        picked = child_codes[row][valid[row]]
        assert len(set(picked.tolist())) == len(picked)
        assert torch.equal(trie.advance(1, nodes[row].repeat(len(picked)), picked), child_ids[row][valid[row]])


def test_trie_from_sid_table_walks_to_the_table_items() -> None:
    from genrec.sid.table import SidTable

    codes, item_ids = random_catalog(seed=6, n_items=200, levels=3, codebook=6)
    table = SidTable(item_ids=item_ids, codes=codes, codebook_sizes=[6, 6, 8])
    trie = PrefixTrie.from_sid_table(table)
    assert trie.level_sizes == [6, 6, 8]
    leaves = walk(trie, [tuple(row) for row in codes.tolist()])
    assert torch.equal(trie.item_at(leaves), torch.as_tensor(item_ids))


def test_trie_orders_codes_whose_mixed_radix_key_would_overflow() -> None:
    codes, item_ids = random_catalog(seed=7, n_items=300, levels=3, codebook=4)
    codes = codes * np.array([2**20, 2**20, 1])  # codebook sizes 2**22 per level: a 66-bit key
    trie = PrefixTrie.from_codes(codes, item_ids, codebook_sizes=[2**22, 2**22, 4])
    leaves = walk(trie, [tuple(row) for row in codes.tolist()])
    assert torch.equal(trie.item_at(leaves), torch.as_tensor(item_ids))


def test_trie_rejects_bad_input_with_a_named_field() -> None:
    with pytest.raises(ValueError, match="distinct SID"):
        PrefixTrie.from_codes(np.array([[1, 2], [1, 2]]), np.array([1, 2]))
    with pytest.raises(ValueError, match="item_ids"):
        PrefixTrie.from_codes(np.array([[1, 2], [1, 3]]), np.array([1]))
    with pytest.raises(ValueError, match="item_ids must be unique"):
        PrefixTrie.from_codes(np.array([[1, 2], [1, 3], [0, 0]]), np.array([4, 9, 4]))
    with pytest.raises(ValueError, match="codebook_sizes"):
        PrefixTrie.from_codes(np.array([[1, 2], [1, 3]]), np.array([1, 2]), codebook_sizes=[2, 3])
    with pytest.raises(ValueError, match="codes must be ≥ 0"):
        PrefixTrie.from_codes(np.array([[1, -2]]), np.array([1]))


@pytest.mark.parametrize("storage", ["auto", "dense", "csr"])
def test_branches_marks_exactly_the_prefixes_shared_by_more_than_one_item(storage: str) -> None:
    codes, item_ids = random_catalog(seed=3, n_items=400, levels=4, codebook=5)
    trie = PrefixTrie.from_codes(codes, item_ids, storage=storage)
    for depth in range(4):
        prefixes, counts = np.unique(codes[:, :depth], axis=0, return_counts=True)  # lexicographic, as node ids
        if depth == 0:
            prefixes, counts = np.zeros((1, 0), dtype=np.int64), np.array([len(codes)])
        nodes = walk(trie, [tuple(p) for p in prefixes.tolist()]) if depth else torch.zeros(1, dtype=torch.int64)
        assert torch.equal(nodes, torch.arange(len(prefixes)))
        assert torch.equal(trie.branches(depth, nodes), torch.from_numpy(counts > 1))
        assert 0 < int((counts == 1).sum()) or depth < 3  # the deepest level holds forced prefixes


def test_memory_grows_with_prefixes_not_prefixes_times_vocabulary() -> None:
    codes, item_ids = random_catalog(seed=5, n_items=5000, levels=3, codebook=256)
    trie = PrefixTrie.from_codes(codes, item_ids)
    assert trie.memory_bytes() < 40 * len(codes) + 256 * 4 * 2
    assert trie.memory_bytes() < PrefixTrie.from_codes(codes, item_ids, storage="dense").memory_bytes() / 10


# ----- beam search --------------------------------------------------------------------------------
def test_table_step_model_implements_the_protocol() -> None:
    assert isinstance(TableStepModel(levels=2, vocab_size=3), BeamSearchModel)


@pytest.mark.parametrize("storage", ["dense", "csr"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_search_is_exact_when_beams_cover_every_item(storage: str, seed: int) -> None:
    codes, item_ids = random_catalog(seed=seed, n_items=40, levels=3, codebook=4)
    trie = PrefixTrie.from_codes(codes, item_ids, storage=storage)
    model = TableStepModel(levels=3, vocab_size=6, seed=seed)  # 2 extra columns the trie must mask
    k = 10
    got_items, got_scores = constrained_beam_search(model, model.initial_state(4), trie, beams=len(codes), k=k)
    want_items, want_scores = exhaustive_search(model, model.initial_state(4), codes, item_ids, k=k)
    assert torch.equal(got_items, want_items)
    torch.testing.assert_close(got_scores, want_scores, rtol=1e-5, atol=1e-5)


def test_beam_search_with_more_beams_than_root_children_pads_and_stays_exact() -> None:
    codes = np.array([[0, 0, 1], [0, 1, 0], [2, 0, 0]])  # two root children, three items
    item_ids = np.array([11, 12, 13])
    trie = PrefixTrie.from_codes(codes, item_ids)
    model = TableStepModel(levels=3, vocab_size=3, seed=7)
    got_items, got_scores = constrained_beam_search(model, model.initial_state(2), trie, beams=8, k=5)
    want_items, want_scores = exhaustive_search(model, model.initial_state(2), codes, item_ids, k=5)
    assert torch.equal(got_items, want_items)
    assert (got_items[:, 3:] == -1).all() and torch.isneginf(got_scores[:, 3:]).all()
    torch.testing.assert_close(got_scores[:, :3], want_scores[:, :3])


def test_scores_of_a_narrow_beam_are_the_true_sequence_log_probabilities() -> None:
    codes, item_ids = random_catalog(seed=9, n_items=200, levels=3, codebook=8)
    trie = PrefixTrie.from_codes(codes, item_ids)
    model = TableStepModel(levels=3, vocab_size=8, seed=3)
    items, scores = constrained_beam_search(model, model.initial_state(3), trie, beams=4, k=4)
    all_items, all_scores = exhaustive_search(model, model.initial_state(3), codes, item_ids, k=len(codes))
    for b in range(3):
        true_score = dict(zip(all_items[b].tolist(), all_scores[b].tolist()))
        for item, score in zip(items[b].tolist(), scores[b].tolist()):
            assert score == pytest.approx(true_score[item], abs=1e-5)
        assert scores[b, 0] <= all_scores[b, 0] + 1e-6


@st.composite
def search_cases(draw):
    levels = draw(st.integers(1, 4))
    codebook = draw(st.integers(1, 5))
    n_items = draw(st.integers(1, 30))
    seed = draw(st.integers(0, 10_000))
    beams = draw(st.integers(1, 12))
    k = draw(st.integers(1, 12))
    batch = draw(st.integers(1, 3))
    storage = draw(st.sampled_from(["auto", "dense", "csr"]))
    return levels, codebook, n_items, seed, beams, k, batch, storage


@settings(max_examples=60, deadline=None)
@given(search_cases())
def test_beam_search_never_emits_an_invalid_sid_or_a_duplicate_item(case) -> None:
    levels, codebook, n_items, seed, beams, k, batch, storage = case
    codes, item_ids = random_catalog(seed, n_items, levels, codebook)
    trie = PrefixTrie.from_codes(codes, item_ids, storage=storage)
    model = TableStepModel(levels=levels, vocab_size=codebook + 1, seed=seed)
    items, scores = constrained_beam_search(model, model.initial_state(batch), trie, beams=beams, k=k)
    assert items.shape == scores.shape == (batch, k)
    catalog = set(item_ids.tolist())
    for b in range(batch):
        found = [i for i in items[b].tolist() if i != -1]
        assert set(found) <= catalog
        assert len(found) == len(set(found))
        n_found = len(found)
        assert (items[b, n_found:] == -1).all()  # padding only at the tail
        assert torch.isfinite(scores[b, :n_found]).all() and torch.isneginf(scores[b, n_found:]).all()
        assert (scores[b, :n_found].diff() <= 1e-6).all()
        assert n_found >= min(k, beams, len(catalog))  # every live beam reaches at least one item


def test_beam_search_rejects_bad_arguments() -> None:
    codes, item_ids = random_catalog(seed=0, n_items=10, levels=2, codebook=3)
    trie = PrefixTrie.from_codes(codes, item_ids)
    model = TableStepModel(levels=2, vocab_size=3)
    with pytest.raises(ValueError, match="beams"):
        constrained_beam_search(model, model.initial_state(1), trie, beams=0, k=1)
    with pytest.raises(ValueError, match="k must"):
        constrained_beam_search(model, model.initial_state(1), trie, beams=2, k=0)
    narrow = TableStepModel(levels=2, vocab_size=1)
    with pytest.raises(ValueError, match="columns"):
        constrained_beam_search(narrow, narrow.initial_state(1), trie, beams=2, k=1)
