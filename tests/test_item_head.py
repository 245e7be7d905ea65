"""The item head: a catalogue softmax from the summary that re-ranks the model's own beams."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from tiny_generative import tiny_generative

from genrec.model import EncoderBatch, GenerativeConfig, GenerativeModel, InputSpec, SequenceBatch
from genrec.model.item_head import ItemHead
from genrec.model.retriever import GenerativeRetriever
from genrec.retrieval import Request

CONFIG = GenerativeConfig(tasks="recommendation", d_model=16, n_heads=2, d_ff=32, dropout=0.0, copy_recent=0,
                          item_head=True)
SPEC = InputSpec(codebook_sizes=(5, 4, 3), query_vocab_size=20, user_vocab_size=20, n_item_slots=12)


def test_the_head_gives_mass_only_to_catalogue_items():
    head = ItemHead(8, 10)
    head.set_known_items(torch.tensor([2, 3, 7]))
    log_p = head.log_probs(torch.randn(4, 8))
    assert torch.isinf(log_p[:, [0, 1, 4, 5, 6, 8, 9]]).all()
    assert torch.allclose(log_p.exp().sum(1), torch.ones(4))
    with pytest.raises(ValueError, match="item ids must be in"):
        head.set_known_items(torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="catalogue items"):
        head.loss(torch.randn(2, 8), torch.tensor([2, 4]))  # 4 is not in the catalogue


def test_rerank_follows_the_combined_score_and_keeps_missing_beams_last():
    head = ItemHead(4, 6)
    with torch.no_grad():  # the head prefers item 5 by far, then item 1
        head.projection.weight.copy_(torch.eye(4))
        head.projection.bias.zero_()
        head.table.zero_()
        head.table[5, 0], head.table[1, 0] = 20.0, 10.0
    summary = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    items = torch.tensor([[2, 1, 5, -1]])
    beam_scores = torch.tensor([[-1.0, -2.0, -3.0, float("-inf")]])
    same, _ = head.rerank(summary, items, beam_scores, mix=0.0, k=4)
    assert same.tolist() == [[2, 1, 5, -1]]  # mix 0: the beams' own order
    mixed, scores = head.rerank(summary, items, beam_scores, mix=1.0, k=4)
    assert mixed.tolist() == [[5, 1, 2, -1]]
    assert torch.isinf(scores[0, -1]) and bool((scores[0, :-1].diff() <= 0).all())
    top2, _ = head.rerank(summary, items, beam_scores, mix=1.0, k=2)
    assert top2.tolist() == [[5, 1]]


def test_training_the_head_learns_the_next_item():
    """A planted rule (the target is the item after the newest history item) is learned by the head's loss."""
    torch.manual_seed(0)
    model = GenerativeModel(CONFIG, SPEC)
    model.item_head.set_known_items(torch.arange(1, 12))
    items = torch.tensor([[i, i % 11 + 1, (i + 1) % 11 + 1, 0] for i in range(1, 12)])  # 3 items then padding
    codes = torch.stack([items % 5, items % 4, items % 3], dim=2)
    batch = SequenceBatch(user=torch.zeros(11, 1, dtype=torch.long), items=items, codes=codes,
                          action=torch.ones_like(items), target=items > 0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        optimizer.zero_grad()
        model.sequence_loss(batch).backward()
        optimizer.step()
    model.eval()
    history = items[:, :2]  # predict the third item from the first two
    request = EncoderBatch.random(SPEC, 11, torch.Generator().manual_seed(1))
    request = replace(request, query=torch.zeros_like(request.query), user=torch.zeros(11, 1, dtype=torch.long),
                      short_items=history,
                      short_codes=codes[:, :2], short_action=torch.ones_like(history))
    _, _, summary = model.encode_memory(request)
    predicted = model.item_head.log_probs(summary).argmax(1)
    assert (predicted == items[:, 2]).float().mean() >= 0.9


def test_a_model_with_a_head_needs_target_items():
    model = GenerativeModel(replace(CONFIG, tasks="search+recommendation"), SPEC)
    batch = EncoderBatch.random(SPEC, 2, torch.Generator().manual_seed(0))
    codes = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="target item ids"):
        model.loss(batch, codes)
    assert torch.isfinite(model.loss(batch, codes, torch.tensor([3, 4])))
    with pytest.raises(ValueError, match="n_item_slots"):
        GenerativeModel(CONFIG, replace(SPEC, n_item_slots=0))


def test_the_retriever_reorders_beams_by_the_head_and_mix_zero_is_the_plain_model(small_world):
    model, encoder, trie = tiny_generative(small_world, seed=0, decoder_scale=3.0)
    spec = replace(model.spec, n_item_slots=int(small_world.dataset.items["item_id"].max()) + 1)
    with_head = GenerativeModel(replace(model.config, item_head=True), spec).eval()
    missing = with_head.load_state_dict(model.state_dict(), strict=False)
    assert all(name.startswith("item_head.") for name in missing.missing_keys)
    requests = [Request(user_id=1, history=(3, 4)), Request(user_id=2, history=(5,))]
    plain = GenerativeRetriever(model, encoder, trie, beams=16).retrieve(requests, 5)
    off = GenerativeRetriever(with_head, encoder, trie, beams=16, item_head_mix=0.0).retrieve(requests, 5)
    assert [r.item_ids.tolist() for r in off] == [r.item_ids.tolist() for r in plain]
    # Make the head certain of one item that the beams ranked last among their 16.
    last = GenerativeRetriever(model, encoder, trie, beams=16).retrieve(requests, 16)
    favourite = [int(r.item_ids[-1]) for r in last]
    with torch.no_grad():
        with_head.item_head.projection.weight.zero_()
        with_head.item_head.projection.bias.fill_(1.0)
        with_head.item_head.table.zero_()
        with_head.item_head.table[favourite[0]] = 50.0
    ranked = GenerativeRetriever(with_head, encoder, trie, beams=16, item_head_mix=1.0).retrieve(requests[:1], 5)
    assert int(ranked[0].item_ids[0]) == favourite[0]
    assert set(ranked[0].item_ids.tolist()) <= set(last[0].item_ids.tolist())  # candidates stay the beams
    fast = GenerativeRetriever(with_head, encoder, trie, beams=16, item_head_mix=1.0, precision="fp32")
    assert fast.retrieve(requests[:1], 5)[0].item_ids.tolist() == ranked[0].item_ids.tolist()  # the served path
    with pytest.raises(ValueError, match="item_head_mix"):
        GenerativeRetriever(with_head, encoder, trie, item_head_mix=-1.0)
    # A search mix of its own: the search is re-ranked by the head, the recommendation beside it is not.
    search = Request(user_id=1, query=str(small_world.dataset.items["title"].iloc[0]), history=(3, 4))
    mixed = [search, requests[1]]
    beams_only = GenerativeRetriever(model, encoder, trie, beams=16).retrieve(mixed, 16)
    with torch.no_grad():  # the head now favours each request's last beam, so the head's order differs from the beams'
        for answer in beams_only:
            with_head.item_head.table[int(answer.item_ids[-1])] = 50.0
    per_task = GenerativeRetriever(with_head, encoder, trie, beams=16, item_head_mix=0.0,
                                   item_head_search_mix=1.0).retrieve(mixed, 5)
    headed = GenerativeRetriever(with_head, encoder, trie, beams=16, item_head_mix=1.0).retrieve(mixed, 5)
    unheaded = [a.item_ids[:5].tolist() for a in beams_only]
    assert [a.item_ids.tolist() for a in headed] != unheaded and headed[0].item_ids.tolist() != unheaded[0]
    assert per_task[0].item_ids.tolist() == headed[0].item_ids.tolist()
    assert per_task[1].item_ids.tolist() == unheaded[1] != headed[1].item_ids.tolist()
    with pytest.raises(ValueError, match="item_head_search_mix"):
        GenerativeRetriever(with_head, encoder, trie, item_head_search_mix=float("nan"))
    with pytest.raises(ValueError, match="text-aware item head and a model that reads query vectors"):
        GenerativeRetriever(with_head, encoder, trie, item_head_text_match=1.0)  # this head reads no text
    with pytest.raises(ValueError, match="text_lookahead needs a text-aware item head"):
        GenerativeRetriever(with_head, encoder, trie, text_lookahead=1.0)
    with pytest.raises(ValueError, match="text_lookahead must be ≥ 0"):
        GenerativeRetriever(with_head, encoder, trie, text_lookahead=-1.0)


def test_text_match_is_the_query_item_cosine_and_zero_without_a_query_or_an_item():
    head = ItemHead(4, 6, text_dim=3)
    head.set_item_text(torch.tensor([1, 2, 3]), torch.tensor([[2.0, 0, 0], [1.0, 1.0, 0], [0, 0, 5.0]]))
    query = torch.tensor([[3.0, 0, 0], [0.0, 0, 0]])  # a search, then a recommendation (no query vector)
    items = torch.tensor([[1, 2, 3, -1], [1, 2, 3, -1]])
    cosine = head.text_match(query, items)
    torch.testing.assert_close(cosine, torch.tensor([[1.0, 2 ** -0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]),
                               atol=1e-3, rtol=0)  # fp16 text vectors
    # As a bonus in the re-rank it lifts the matching item over a better beam, and only with a query.
    scores = torch.tensor([[0.0, -0.1, -0.2, float("-inf")]] * 2)
    with torch.no_grad():
        head.table.zero_()
        head.text_projection.weight.zero_()  # a flat head: the bonus alone can reorder
    top, _ = head.rerank(torch.zeros(2, 4), torch.tensor([[3, 2, 1, -1]] * 2), scores, 1.0, 2, bonus=2.0 * torch.tensor(
        [[0.0, 2 ** -0.5, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    assert top.tolist() == [[1, 2], [3, 2]]
    with pytest.raises(ValueError, match="without text"):
        ItemHead(4, 6).text_match(query, items)


def test_the_item_head_config_is_checked():
    with pytest.raises(ValueError, match="item_head_text_match needs a text-aware"):
        GenerativeConfig(item_head_text=False, item_head_text_match=1.0)
    with pytest.raises(ValueError, match="item_head_text_match"):
        GenerativeConfig(item_head_text_match=-1.0)
    with pytest.raises(ValueError, match="item_head_mix"):
        GenerativeConfig(item_head_mix=float("nan"))
    with pytest.raises(ValueError, match="item_head_weight"):
        GenerativeConfig(item_head_weight=-1.0)
    assert np.isfinite(GenerativeConfig().item_head_mix)


def test_a_head_that_reads_text_scores_items_by_their_text_before_any_training():
    """With the learned rows at zero, items with the same text score the same and an item's
    score follows its text: what lets a rarely-seen item borrow from look-alikes."""
    head = ItemHead(4, 5, text_dim=3)
    with torch.no_grad():
        head.table.zero_()
        head.text_projection.weight.copy_(torch.eye(4, 3))
        head.projection.weight.copy_(torch.eye(4))
        head.projection.bias.zero_()
    head.set_item_text(torch.tensor([1, 2, 3, 4]), torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]))
    log_p = head.log_probs(torch.tensor([[5.0, 0.0, 0.0, 0.0]]))[0]
    assert torch.isclose(log_p[1], log_p[2]) and bool(log_p[1] > log_p[3]) and bool(log_p[1] > log_p[4])
    head.loss(torch.randn(2, 4), torch.tensor([3, 4])).backward()
    assert head.text_projection.weight.grad is not None and bool(head.text_projection.weight.grad.abs().sum() > 0)
    with pytest.raises(ValueError, match="vectors must be"):
        head.set_item_text(torch.tensor([1]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="without text"):
        ItemHead(4, 5).set_item_text(torch.tensor([1]), torch.zeros(1, 3))


def _text_head_model(small_world, seed: int = 0):
    """The tiny model with a text-reading item head whose text map matters (random item text vectors)."""
    model, encoder, trie = tiny_generative(small_world, seed=seed, decoder_scale=3.0)
    n_slots = int(small_world.dataset.items["item_id"].max()) + 1
    headed = GenerativeModel(replace(model.config, item_head=True, item_head_text=True),
                             replace(model.spec, n_item_slots=n_slots, item_text_dim=6)).eval()
    headed.load_state_dict(model.state_dict(), strict=False)
    item_ids = torch.tensor(small_world.dataset.items["item_id"].to_numpy())
    torch.manual_seed(seed + 1)
    headed.item_head.set_item_text(item_ids, torch.randn(len(item_ids), 6))
    with torch.no_grad():
        headed.item_head.text_projection.weight.mul_(20.0)  # let the text map decide the head's order
    return headed, encoder, trie


def test_a_served_retriever_keeps_the_head_item_vectors_and_answers_as_if_it_did_not(small_world):
    """The served path (a `precision`) computes the catalogue's item vectors once; its answers are
    those of the same retriever recomputing them per call."""
    model, encoder, trie = _text_head_model(small_world)
    requests = [Request(user_id=1, history=(3, 4)), Request(user_id=2, history=(5,)), Request(user_id=3, history=())]
    kept = GenerativeRetriever(model, encoder, trie, beams=16, item_head_mix=1.0, precision="fp32")
    fresh = GenerativeRetriever(model, encoder, trie, beams=16, item_head_mix=1.0, precision="fp32")
    fresh.keep_item_vectors = False
    assert kept.keep_item_vectors and not GenerativeRetriever(model, encoder, trie).keep_item_vectors
    calls = []
    original = model.item_head.item_vectors
    model.item_head.item_vectors = lambda: calls.append(1) or original()  # type: ignore[method-assign]
    for _ in range(3):
        for a, b in zip(kept.retrieve(requests, 5), fresh.retrieve(requests, 5)):
            assert a.item_ids.tolist() == b.item_ids.tolist() and np.array_equal(a.scores, b.scores)
    assert len(calls) == 1 + 3  # kept: once; fresh: every call
    items = np.array([[int(a.item_ids[0]), int(a.item_ids[1])] for a in fresh.retrieve(requests, 5)])
    assert np.array_equal(kept.score(requests, items), fresh.score(requests, items))


def test_evaluation_during_training_sees_every_optimizer_step_of_the_head(small_world):
    """Training evaluates with a retriever over the model it is training (no `precision`): after a
    fused AdamW step — which writes the weights without bumping their version counters — its
    scores must be a fresh retriever's, not those of the weights before the step."""
    model, encoder, trie = _text_head_model(small_world)
    requests = [Request(user_id=1, history=(3, 4)), Request(user_id=2, history=(5,))]
    evaluator = GenerativeRetriever(model, encoder, trie, beams=16, item_head_mix=1.0)
    items = np.array([[int(a.item_ids[0]), int(a.item_ids[-1])] for a in evaluator.retrieve(requests, 5)])
    before = evaluator.score(requests, items)
    head = model.item_head
    optimizer = torch.optim.AdamW([head.table, head.text_projection.weight], lr=0.5, fused=True)
    model.train()
    head.loss(torch.randn(4, head.table.shape[1]), torch.tensor(items[:, 1].tolist() * 2)).backward()
    optimizer.step()
    model.eval()
    after = evaluator.score(requests, items)
    assert not np.allclose(after, before)
    assert np.array_equal(after, GenerativeRetriever(model, encoder, trie, beams=16, item_head_mix=1.0)
                          .score(requests, items))


def test_a_model_with_a_text_reading_head_builds():
    model = GenerativeModel(replace(CONFIG, item_head_text=True), replace(SPEC, item_text_dim=6))
    assert model.item_head.text.shape == (SPEC.n_item_slots, 6)


def test_head_candidates_add_an_item_beam_search_pruned_scored_as_score_would(small_world):
    model, encoder, trie = tiny_generative(small_world, seed=0, decoder_scale=3.0)
    spec = replace(model.spec, n_item_slots=int(small_world.dataset.items["item_id"].max()) + 1)
    with_head = GenerativeModel(replace(model.config, item_head=True, item_head_text=False), spec).eval()
    with_head.load_state_dict(model.state_dict(), strict=False)
    requests = [Request(user_id=1, history=(3, 4)), Request(user_id=2, history=(5,))]
    beams = GenerativeRetriever(with_head, encoder, trie, beams=8, item_head_mix=0.0).retrieve(requests, 8)
    outside = next(int(i) for i in encoder.item_ids if all(int(i) not in set(b.item_ids.tolist()) for b in beams))
    with torch.no_grad():  # the head is sure of one item no beam holds
        with_head.item_head.projection.weight.zero_()
        with_head.item_head.projection.bias.fill_(1.0)
        with_head.item_head.table.zero_()
        with_head.item_head.table[outside] = 50.0
    alone = GenerativeRetriever(with_head, encoder, trie, beams=8, item_head_mix=1.0)
    assert all(outside not in r.item_ids.tolist() for r in alone.retrieve(requests, 8))  # beams only: unreachable
    for precision in (None, "fp32"):
        union = GenerativeRetriever(with_head, encoder, trie, beams=8, item_head_mix=1.0, precision=precision,
                                    item_head_candidates=3)
        for request, answer in zip(requests, union.retrieve(requests, 5)):
            assert int(answer.item_ids[0]) == outside
            assert len(set(answer.item_ids.tolist())) == len(answer.item_ids)  # a head pick already a beam is not doubled
            scored = union.score([request], answer.item_ids[None, :])[0]
            np.testing.assert_allclose(answer.scores, scored, rtol=1e-4, atol=1e-4)  # one scale for beams and picks
        wide = GenerativeRetriever(with_head, encoder, trie, beams=8, item_head_mix=1.0, precision=precision,
                                   item_head_candidates=len(encoder.item_ids))  # every item: each beam again too
        for answer in wide.retrieve(requests, 20):
            assert len(answer.item_ids) == 20 and len(set(answer.item_ids.tolist())) == 20
    with pytest.raises(ValueError, match="item_head_candidates"):
        GenerativeRetriever(model, encoder, trie, item_head_candidates=3)  # no head to propose them
    with pytest.raises(ValueError, match="item_head_candidates"):
        GenerativeConfig(item_head=False, item_head_candidates=3)
