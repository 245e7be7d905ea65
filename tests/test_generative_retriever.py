"""The generative retriever: learns, answers only with real items, one model for search and recommendation."""

import json

import numpy as np
import pytest
import torch

from genrec.decode.trie import PrefixTrie
from genrec.model import GenerativeConfig, GenerativeModel, InputSpec
from genrec.model.inputs import RequestEncoder
from genrec.model.retriever import GenerativeRetriever
from genrec.retrieval import Request
from genrec.sid.table import SidTable
from genrec.train.generative import GenerativeTrainConfig, train_generative
from genrec.train.loop import TrainConfig

WORDS = ["apple", "banana", "cherry", "grape", "lemon", "mango", "olive", "peach",
         "pear", "plum", "kiwi", "melon", "lime", "fig", "date", "guava"]
TINY = GenerativeConfig(item_head=False, d_model=32, n_heads=2, d_ff=64, dropout=0.0, n_encoder_layers=1, n_decoder_layers=1,
                        max_short=4, max_long=4)


def _base8_sids(item_ids: np.ndarray, levels: int = 3) -> SidTable:
    index = np.arange(len(item_ids))
    codes = np.stack([(index // 8 ** (levels - 1 - lv)) % 8 for lv in range(levels)], axis=1)
    return SidTable(item_ids, codes, [8] * levels)


def _spec(sids: SidTable) -> InputSpec:
    return InputSpec(codebook_sizes=tuple(sids.codebook_sizes), query_vocab_size=64, user_vocab_size=64)


def _fitted_retriever(config: GenerativeConfig, sids: SidTable, texts, beams: int = 8) -> GenerativeRetriever:
    encoder = RequestEncoder(config, _spec(sids), sids.item_ids, sids.codes).fit(texts)
    trie = PrefixTrie.from_codes(sids.codes, sids.item_ids, sids.codebook_sizes)
    return GenerativeRetriever(GenerativeModel(config, _spec(sids)), encoder, trie, beams=beams)


def test_the_model_learns_a_query_word_to_item_mapping():
    torch.manual_seed(0)
    item_ids = np.arange(101, 101 + len(WORDS))
    sids = _base8_sids(item_ids, levels=2)
    config = TINY
    retriever = _fitted_retriever(config, sids, WORDS)
    requests = [Request(user_id=1, query=w, scenario="search") for w in WORDS]
    batch = retriever.encoder.transform(requests)
    codes = torch.from_numpy(sids.codes)
    model = retriever.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(300):
        loss = model.loss(batch, codes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    top1 = np.array([r.item_ids[0] for r in retriever.retrieve(requests, k=1)])
    assert (top1 == item_ids).mean() == 1.0


@pytest.fixture(scope="module")
def world_sids(small_world):
    items = small_world.dataset.items.sort_values("item_id")
    return _base8_sids(items["item_id"].to_numpy(), levels=4)


@pytest.fixture(scope="module")
def world_requests(small_world):
    from genrec.data.splits import build_requests, leave_one_out

    split = leave_one_out(small_world.dataset.events)
    requests, _ = build_requests(split, "test")
    search = [r for r in requests if r.is_search][:6]
    rec = [r for r in requests if not r.is_search and r.history][:6]
    return search + rec


def test_retriever_only_returns_real_items_without_duplicates(small_world, world_sids, world_requests):
    torch.manual_seed(1)
    config = TINY
    retriever = _fitted_retriever(config, world_sids, list(small_world.dataset.items["title"]), beams=12)
    catalog = set(world_sids.item_ids.tolist())
    for ranked in retriever.retrieve(world_requests, k=12):
        assert len(ranked) == 12
        assert set(ranked.item_ids.tolist()) <= catalog
        assert len(set(ranked.item_ids.tolist())) == 12
        assert np.all(np.diff(ranked.scores) <= 1e-6)


def test_a_huge_k_is_answered_with_at_most_max_beams_items(small_world, world_sids, world_requests):
    torch.manual_seed(1)
    config = TINY
    retriever = _fitted_retriever(config, world_sids, list(small_world.dataset.items["title"]), beams=4)
    retriever.max_beams = 6
    for ranked in retriever.retrieve(world_requests[:3], k=1000):
        assert len(ranked) == 6 and len(set(ranked.item_ids.tolist())) == 6


def test_search_and_recommendation_go_through_the_same_weights_in_one_batch(small_world, world_sids, world_requests):
    torch.manual_seed(2)
    config = TINY
    retriever = _fitted_retriever(config, world_sids, list(small_world.dataset.items["title"]))
    mixed = retriever.retrieve(world_requests, k=5)
    for request, together in zip(world_requests, mixed):
        alone = retriever.retrieve([request], k=5)[0]  # padding to other requests' lengths must not matter
        np.testing.assert_array_equal(alone.item_ids, together.item_ids)
        np.testing.assert_allclose(alone.scores, together.scores, rtol=1e-4, atol=1e-4)
    # the query is read: dropping it turns a search into a different (recommendation) request
    search = [r for r in world_requests if r.is_search]
    as_rec = [Request(r.user_id, None, r.scenario, r.ts, r.history, r.history_actions, r.history_ts) for r in search]
    before = [r.scores for r in retriever.retrieve(search, k=5)]
    after = [r.scores for r in retriever.retrieve(as_rec, k=5)]
    assert any(not np.allclose(a, b) for a, b in zip(before, after))


def test_bad_input_is_refused_with_a_message_naming_it(small_world, world_sids, world_requests):
    config = TINY
    retriever = _fitted_retriever(config, world_sids, ["x"])
    with pytest.raises(ValueError, match="k must be"):
        retriever.retrieve(world_requests, k=0)
    with pytest.raises(ValueError, match=r"requests\[0\]"):
        retriever.retrieve(["red shoes"], k=3)
    with pytest.raises(ValueError, match="codes must have shape"):
        RequestEncoder(config, _spec(world_sids), world_sids.item_ids, world_sids.codes[:, :2])
    with pytest.raises(ValueError, match="not fitted"):
        RequestEncoder(config, _spec(world_sids), world_sids.item_ids, world_sids.codes).transform(world_requests)
    three = _base8_sids(world_sids.item_ids[:500], levels=3)
    wrong_levels = PrefixTrie.from_codes(three.codes, three.item_ids)
    with pytest.raises(ValueError, match="levels"):
        GenerativeRetriever(retriever.model, retriever.encoder, wrong_levels)


def test_pruning_is_off_by_default_and_an_infinite_margin_changes_no_answer(small_world, world_sids, world_requests):
    torch.manual_seed(3)
    retriever = _fitted_retriever(TINY, world_sids, list(small_world.dataset.items["title"]), beams=12)
    assert retriever.prune_margin is None
    fast = GenerativeRetriever(retriever.model, retriever.encoder, retriever.trie, beams=12, precision="fp32")
    want = fast.retrieve(world_requests, k=10)
    fast.prune_margin = float("inf")
    for a, b in zip(fast.retrieve(world_requests, k=10), want):
        np.testing.assert_array_equal(a.item_ids, b.item_ids)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-5)
    fast.prune_margin = 0.0  # the greedy path: still real items, best first, at most k
    for ranked in fast.retrieve(world_requests, k=10):
        assert 1 <= len(ranked) <= 10 and np.all(np.diff(ranked.scores) <= 1e-6)


def test_prune_margin_is_refused_when_negative_or_without_a_fast_decoder(small_world, world_sids):
    retriever = _fitted_retriever(TINY, world_sids, ["x"])
    parts = (retriever.model, retriever.encoder, retriever.trie)
    with pytest.raises(ValueError, match="prune_margin must be"):
        GenerativeRetriever(*parts, precision="fp32", prune_margin=-1.0)
    with pytest.raises(ValueError, match="prune_margin needs precision"):
        GenerativeRetriever(*parts, prune_margin=2.0)
    retriever.prune_margin = 2.0  # set later, on a retriever decoding with the model's own code
    with pytest.raises(ValueError, match="prune_margin needs precision"):
        retriever.retrieve([Request(user_id=1, query="x")], k=3)


@pytest.mark.slow
def test_train_generative_writes_a_model_folder_that_from_run_serves(small_world, world_sids, world_requests, tmp_path):
    from genrec.data.splits import leave_one_out

    run = tmp_path / "run"
    small_world.save(run / "data")
    world_sids.save(run / "sid")
    config = GenerativeTrainConfig(
        model=TINY,
        train=TrainConfig(steps=6, batch_size=32, eval_every=3, checkpoint_every=3, warmup_steps=1, progress=False),
        valid_requests=40, beams=10)
    split = leave_one_out(small_world.dataset.events)
    folder = train_generative(run, config, progress=False)
    assert {"best.pt", "config.json", "encoder.json", "manifest.json"} <= {p.name for p in folder.iterdir()}
    saved = json.loads((folder / "manifest.json").read_text())
    result = saved["result"]
    assert [h["step"] for h in result["history"]] == [3, 6]
    from genrec.artifacts import code_fingerprint
    from genrec.model.retriever import GENERATIVE_CODE

    assert saved["code"] == code_fingerprint(*GENERATIVE_CODE)  # what the demo's reuse check compares
    assert result["n_index_examples"] == config.index_copies * len(small_world.dataset.items)
    retriever = GenerativeRetriever.from_run(run, small_world.dataset, split)
    assert retriever.model.spec.codebook_sizes == tuple(world_sids.codebook_sizes)
    # the query-vector token and the history categories are on by default and survive loading
    from genrec.model.inputs import leaf_categories

    assert retriever.model.spec.query_vector_dim == 384
    table, n_categories = leaf_categories(small_world.dataset.items)
    assert retriever.model.spec.n_categories == n_categories > 1
    assert torch.equal(retriever.model.inputs.item_category, torch.from_numpy(table))
    answers = retriever.retrieve(world_requests, k=10)
    assert all(len(a) == 10 for a in answers)


def test_loading_never_trains_an_absent_or_interrupted_model(small_world, world_sids, tmp_path):
    from genrec.artifacts import MissingStageError
    from genrec.data.splits import leave_one_out

    run = tmp_path / "run"
    small_world.save(run / "data")
    world_sids.save(run / "sid")
    split = leave_one_out(small_world.dataset.events)
    with pytest.raises(MissingStageError, match=r"genrec train --run .* --model generative"):
        GenerativeRetriever.from_run(run, small_world.dataset, split)
    folder = run / "train" / "generative"
    folder.mkdir(parents=True)
    (folder / "last.pt").write_bytes(b"an interrupted run's resume point")
    with pytest.raises(MissingStageError, match="interrupted"):
        GenerativeRetriever.from_run(run, small_world.dataset, split)
    assert (folder / "last.pt").read_bytes() == b"an interrupted run's resume point"  # untouched
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt"]


@pytest.mark.parametrize("head", [False, True])
def test_excluding_history_answers_the_same_beams_without_the_users_items(small_world, head):
    from dataclasses import replace

    from tiny_generative import tiny_generative

    model, encoder, trie = tiny_generative(small_world, seed=5, decoder_scale=3.0)
    if head:
        spec = replace(model.spec, n_item_slots=int(small_world.dataset.items["item_id"].max()) + 1)
        headed = GenerativeModel(replace(model.config, item_head=True, item_head_text=False), spec).eval()
        headed.load_state_dict(model.state_dict(), strict=False)
        model = headed
    asked = [Request(user_id=1, history=(3, 4)), Request(user_id=2, history=(5,)), Request(user_id=3)]
    first = GenerativeRetriever(model, encoder, trie, beams=16).retrieve(asked, 16)
    # each user now "has" every other item the model proposed to them, beside their own history
    owning = [Request(r.user_id, history=r.history + tuple(int(i) for i in a.item_ids[::2]))
              for r, a in zip(asked, first)]
    kept = GenerativeRetriever(model, encoder, trie, beams=16).retrieve(owning, 16)
    for precision in (None, "fp32"):
        dropped = GenerativeRetriever(model, encoder, trie, beams=16, precision=precision,
                                      exclude_history=True).retrieve(owning, 16)
        for request, all_beams, answer in zip(owning, kept, dropped):
            expected = [int(i) for i in all_beams.item_ids if int(i) not in request.history]
            assert answer.item_ids.tolist() == expected  # the same beams in the same order, minus owned items
            assert len(expected) < 16 or not request.history
            assert np.all(np.isfinite(answer.scores))
        short = GenerativeRetriever(model, encoder, trie, beams=16, precision=precision,
                                    exclude_history=True).retrieve(owning, 3)
        assert [a.item_ids.tolist() for a in short] == [e.item_ids[:3].tolist() for e in dropped]
    assert GenerativeRetriever(replace_config(model, exclude_history=True), encoder, trie).exclude_history
    assert not GenerativeRetriever(replace_config(model, exclude_history=True), encoder, trie,
                                   exclude_history=False).exclude_history


def replace_config(model: GenerativeModel, **changes) -> GenerativeModel:
    """The same weights under a config with `changes` (serving settings only)."""
    from dataclasses import replace

    model.config = replace(model.config, **changes)
    return model
