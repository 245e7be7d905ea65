"""The lookahead inside beam search (`genrec.decode.lookahead`): its step bonuses telescope to
each item's text match, it never changes an item's final score, it brings the item the query names into a
beam too narrow to find it otherwise, and the pruned (ragged) search takes it the same way."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from genrec.decode import PrefixTrie, TableStepModel, constrained_beam_search, exhaustive_search
from genrec.decode.lookahead import ItemLookahead
from genrec.decode.pruning import pruned_beam_search
from tests.test_decode import random_catalog

TEXT_DIM = 6


def _setup(seed: int = 0, batch: int = 4):
    codes, item_ids = random_catalog(seed=seed, n_items=200, levels=3, codebook=6)
    trie = PrefixTrie.from_codes(codes, item_ids)
    generator = torch.Generator().manual_seed(seed)
    item_vectors = torch.randn(int(item_ids.max()) + 1, TEXT_DIM, generator=generator)
    queries = torch.randn(batch, TEXT_DIM, generator=generator)
    model = TableStepModel(levels=3, vocab_size=6, seed=seed)
    return codes, item_ids, trie, ItemLookahead.from_trie(trie, item_vectors), item_vectors, queries, model


def _text_guide(lookahead, queries, item_vectors, weights):
    return lookahead.guide(lookahead.text_bonus(queries, weights))


def _cosines(queries: torch.Tensor, item_vectors: torch.Tensor, item_ids) -> torch.Tensor:
    """`[B, n]` cosine of each query with each of `item_ids`, computed directly."""
    rows = torch.nn.functional.normalize(item_vectors[torch.as_tensor(item_ids)], dim=-1)
    return torch.nn.functional.normalize(queries, dim=-1) @ rows.T


@pytest.mark.parametrize("seed", [0, 1])
def test_step_bonuses_telescope_to_each_items_text_match_and_never_rise(seed):
    codes, item_ids, trie, lookahead, vectors, queries, _ = _setup(seed)
    weights = torch.tensor([0.0, 1.0, 2.5, 7.0])
    guide = _text_guide(lookahead, queries, vectors, weights)
    cosine = _cosines(queries, vectors, item_ids)
    expected = weights[:, None] * (cosine - cosine.max(1, keepdim=True).values)
    for step in guide.steps:
        assert bool((step <= 1e-6).all())  # a child's best match is never above its parent's
    nodes = torch.zeros(len(codes), dtype=torch.int64)
    path_total = torch.zeros(len(queries), len(codes))
    for level in range(trie.levels):
        nodes = trie.advance(level, nodes, torch.as_tensor(codes[:, level]))
        path_total += guide.steps[level][guide.rows][:, nodes]
    torch.testing.assert_close(path_total, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(guide.item_total(torch.as_tensor(item_ids)[None].expand(len(queries), -1)),
                               expected, atol=1e-5, rtol=0)
    assert bool((guide.item_total(torch.full((len(queries), 2), -1)) == 0).all())


def test_an_exact_guided_search_gives_every_item_its_unguided_score_back():
    codes, item_ids, trie, lookahead, vectors, queries, model = _setup(0)
    guide = _text_guide(lookahead, queries, vectors, torch.full((len(queries),), 3.0))
    n = len(item_ids)
    found, scores = constrained_beam_search(model, model.initial_state(len(queries)), trie, beams=n, k=n,
                                            guide=guide)
    reference, reference_scores = exhaustive_search(model, model.initial_state(len(queries)), codes, item_ids, n)
    for row in range(len(queries)):
        got = dict(zip(found[row].tolist(), (scores[row] - guide.item_total(found)[row]).tolist()))
        want = dict(zip(reference[row].tolist(), reference_scores[row].tolist()))
        assert got.keys() == want.keys()
        assert all(math.isclose(got[i], want[i], abs_tol=1e-4) for i in want)


def test_a_strong_lookahead_finds_the_item_the_query_names_in_a_greedy_search():
    codes, item_ids, trie, lookahead, vectors, _, model = _setup(0, batch=1)
    greedy, _ = constrained_beam_search(model, model.initial_state(1), trie, beams=1, k=1)
    # The query is some other item's own text: the greedy search does not return that item.
    named = int(next(i for i in item_ids[::-1] if i != int(greedy[0, 0])))
    query = vectors[named][None]
    guided, _ = constrained_beam_search(model, model.initial_state(1), trie, beams=1, k=1,
                                        guide=_text_guide(lookahead, query, vectors, torch.tensor([1000.0])))
    assert int(guided[0, 0]) == named
    unguided_again, _ = constrained_beam_search(model, model.initial_state(1), trie, beams=1, k=1,
                                                guide=_text_guide(lookahead, query, vectors, torch.tensor([0.0])))
    assert int(unguided_again[0, 0]) == int(greedy[0, 0])


def test_a_guide_for_some_requests_searches_the_others_as_if_unguided():
    """Guiding only the searches of a batch (rows -1 for the others) gives the same beams and scores as
    guiding every request with weight 0 for the non-searches, and an unguided request's beams are the
    plain search's."""
    codes, item_ids, trie, lookahead, vectors, queries, model = _setup(1)
    searches = torch.tensor([True, False, True, False])
    weights = torch.where(searches, 5.0, 0.0)
    every_row = _text_guide(lookahead, queries, vectors, weights)
    searches_only = lookahead.text_guide(queries, searches, 5.0)
    assert searches_only.rows.tolist() == [0, 2, 1, 2] and len(searches_only.steps[0]) == 3  # 2 searches + zeros
    state = model.initial_state(len(queries))
    found, scores = constrained_beam_search(model, state, trie, beams=3, k=3, guide=searches_only)
    want, want_scores = constrained_beam_search(model, model.initial_state(len(queries)), trie, beams=3, k=3,
                                                guide=every_row)
    assert torch.equal(found, want)
    torch.testing.assert_close(scores, want_scores)
    torch.testing.assert_close(searches_only.item_total(found), every_row.item_total(found))
    plain, _ = constrained_beam_search(model, model.initial_state(len(queries)), trie, beams=3, k=3)
    assert torch.equal(found[~searches], plain[~searches])
    with pytest.raises(ValueError, match="rows must be in"):
        lookahead.guide(torch.zeros(2, len(lookahead.leaf_items)), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="searches must have"):
        lookahead.text_guide(queries, searches[:2], 5.0)


@pytest.mark.parametrize("beams", [2, 5])
def test_the_ragged_search_takes_the_guide_like_the_uniform_one(beams):
    _, _, trie, lookahead, vectors, queries, model = _setup(1)
    guide = _text_guide(lookahead, queries, vectors, torch.tensor([0.0, 2.0, 5.0, 9.0]))
    uniform = constrained_beam_search(model, model.initial_state(len(queries)), trie, beams, k=beams, guide=guide)
    ragged = pruned_beam_search(model, model.initial_state(len(queries)), trie, beams, beams, math.inf, guide)
    assert torch.equal(uniform[0], ragged[0])
    torch.testing.assert_close(uniform[1], ragged[1])


def test_bad_inputs_are_refused():
    _, _, trie, lookahead, vectors, queries, _ = _setup(0)
    with pytest.raises(ValueError, match="≥ 0"):
        lookahead.text_bonus(queries, torch.tensor([1.0, -1.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="query_vectors"):
        lookahead.text_bonus(queries[:, :3], torch.zeros(len(queries)))
    with pytest.raises(ValueError, match="every item id"):
        ItemLookahead.from_trie(trie, vectors[:5])
    with pytest.raises(ValueError, match="without item vectors"):
        ItemLookahead.from_trie(trie).text_bonus(queries, torch.zeros(len(queries)))
    with pytest.raises(ValueError, match="leaf_bonus must be \\["):
        lookahead.guide(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="finite"):
        lookahead.guide(torch.full((1, len(lookahead.leaf_items)), float("-inf")))
    assert bool((lookahead.guide(torch.zeros(2, len(lookahead.leaf_items))).leaf_total == 0).all())


def _named_item_searches():
    """A tiny model (16 items, 4 × 4 codes) whose 4 searches each name, by their query's text, an item
    the model ranks among its worst: (model with text match 32 and mix 1, encoder, trie, searches, targets)."""
    from genrec.features.text_cache import TextVectorCache
    from genrec.model import GenerativeConfig, GenerativeModel, InputSpec
    from genrec.model.inputs import RequestEncoder
    from genrec.model.retriever import GenerativeRetriever
    from genrec.retrieval import Request
    from tests.test_align_objectives import CODES, ITEMS, TINY, WORDS

    dim = 8
    basis = np.eye(dim, dtype=np.float32)
    vectors = TextVectorCache(lambda texts: np.stack([basis[WORDS.index(t)] for t in texts]), dim=dim)
    torch.manual_seed(3)
    spec = InputSpec(codebook_sizes=(4, 4), query_vocab_size=64, user_vocab_size=64,
                     n_item_slots=int(ITEMS.max()) + 1, query_vector_dim=dim, item_text_dim=dim)
    config = GenerativeConfig(item_head=True, **TINY)
    encoder = RequestEncoder(config, spec, ITEMS, CODES, query_vectors=vectors).fit(WORDS)
    model = GenerativeModel(config, spec).eval()
    model.item_head.set_known_items(torch.from_numpy(ITEMS))
    trie = PrefixTrie.from_codes(CODES, ITEMS, [4, 4])
    searches = [Request(user_id=1, query=w, scenario="search") for w in WORDS[:4]]
    everything = GenerativeRetriever(model, encoder, trie, beams=16, item_head_mix=1.0).retrieve(searches, 16)
    targets: list[int] = []
    for ranked in everything:  # each search's worst item that is not already another's target
        targets.append(next(int(i) for i in ranked.item_ids[::-1] if int(i) not in targets))
    text = np.zeros((len(ITEMS), dim), np.float32)
    text[:, dim - 1] = 1.0  # every other item: a text no query matches
    for k, target in enumerate(targets):
        text[np.searchsorted(ITEMS, target)] = basis[k]
    model.item_head.set_item_text(torch.from_numpy(ITEMS), torch.from_numpy(text))
    model.config = replace(config, item_head_mix=1.0, item_head_text_match=32.0)
    return model, encoder, trie, searches, targets


def test_the_retriever_finds_a_searchs_named_item_with_the_lookahead_and_scores_it_unguided():
    """Two beams never reach a search's named item, even with a text-match weight that would rank it
    first; with the lookahead they do, and its returned score is what `score` (the unguided scale)
    gives it. Recommendations (no query) are untouched."""
    from genrec.model.retriever import GenerativeRetriever
    from genrec.retrieval import Request

    model, encoder, trie, searches, targets = _named_item_searches()
    recommendation = Request(user_id=2, history=(int(trie.leaf_item_ids[0]),))
    for precision in (None, "fp32"):
        plain = GenerativeRetriever(model, encoder, trie, beams=2, precision=precision)
        guided = GenerativeRetriever(model, encoder, trie, beams=2, precision=precision, text_lookahead=32.0)
        assert not any(t in r.item_ids.tolist() for r, t in zip(plain.retrieve(searches, 2), targets))
        found = guided.retrieve(searches + [recommendation], 2)
        assert [int(r.item_ids[0]) for r in found[:4]] == targets
        items = np.stack([r.item_ids for r in found])
        np.testing.assert_allclose(guided.score(searches + [recommendation], items),
                                   np.stack([r.scores for r in found]), rtol=1e-4, atol=1e-4)
        assert found[4].item_ids.tolist() == plain.retrieve([recommendation], 2)[0].item_ids.tolist()


def test_align_chooses_the_lookahead_weight_where_validation_searches_gain_and_serving_follows():
    """The lookahead is chosen with the search's other weights, each weight's grid on the beams that
    weight finds: two beams never hold a search's named item unguided, so weight 0 scores Recall@10 0
    whatever its text-match weight, and 32 and 64 score 1 (ties: the smaller)."""
    from genrec.align.head_mix import choose_search_scoring
    from genrec.model import GenerativeConfig
    from genrec.model.retriever import GenerativeRetriever

    model, encoder, trie, searches, targets = _named_item_searches()
    scoring = choose_search_scoring(model, encoder, trie, searches, np.array(targets), beams=2, candidates=(1.0,),
                                    text_matches=(0.0, 32.0), text_lookaheads=(0.0, 32.0, 64.0))
    assert scoring.text_lookahead == 32.0 and scoring.lookahead_table == [(0.0, 0.0), (32.0, 1.0), (64.0, 1.0)]
    assert scoring.choice.search_text_match == 0.0  # both guided beams are in the top 10 either way: ties, 0
    assert scoring.choice.rec_mix is None  # no recommendation among the requests
    only_guided = choose_search_scoring(model, encoder, trie, searches, np.array(targets), beams=2,
                                        candidates=(1.0,), text_matches=(32.0,), text_lookaheads=(64.0,))
    assert only_guided.text_lookahead == 64.0 and only_guided.lookahead_table == [(64.0, 1.0)]
    model.config = replace(model.config, item_head_text_lookahead=scoring.text_lookahead)  # what align saves
    served = GenerativeRetriever(model, encoder, trie, beams=2)
    assert served.text_lookahead == 32.0
    assert [int(r.item_ids[0]) for r in served.retrieve(searches, 2)] == targets
    recommendations_only = [replace(r, query=None, scenario="home") for r in searches]
    unguided = choose_search_scoring(model, encoder, trie, recommendations_only, np.array(targets), beams=2,
                                     candidates=(1.0,), text_lookaheads=(0.0, 32.0))
    assert unguided.text_lookahead == 0.0 and unguided.lookahead_table == []
    with pytest.raises(ValueError, match="candidates"):
        choose_search_scoring(model, encoder, trie, searches, np.array(targets), beams=2, candidates=(1.0,),
                              text_lookaheads=())
    with pytest.raises(ValueError, match="item_head_text_lookahead needs a text-aware item head"):
        GenerativeConfig(item_head_text=False, item_head_text_lookahead=4.0)
    with pytest.raises(ValueError, match="item_head_text_lookahead must be ≥ 0"):
        GenerativeConfig(item_head_text_lookahead=-1.0)

