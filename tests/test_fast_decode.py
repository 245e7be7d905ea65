"""`FastDecoder`, the decode-only copy of a `GenerativeModel`: in fp32 it is the model's twin (same logits
at every level, same items from beam search), in bf16 it stays close, and building it changes nothing in
the model it copies."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from genrec.decode import PrefixTrie, constrained_beam_search
from genrec.model import EncoderBatch, GenerativeConfig, GenerativeModel, InputSpec
from genrec.model.inference import FastDecoder

CONFIG = GenerativeConfig(item_head=False, d_model=32, n_heads=4, d_ff=64, dropout=0.0, item_buckets=13)
SPEC = InputSpec(codebook_sizes=(9, 5, 4, 3), query_vocab_size=50, user_vocab_size=20, context_vocab_size=10,
                 query_vector_dim=6, n_categories=4, n_item_slots=50)
RECOMMENDATION = replace(CONFIG, tasks="recommendation", latest_in_summary=True, copy_recent=2)
CASES = {"search+recommendation, mixed batch": (CONFIG, (1, 3)),
         "recommendation only, latest + copy": (RECOMMENDATION, None)}


def _model_and_batch(config: GenerativeConfig, recommendations, n: int = 6, seed: int = 0):
    torch.manual_seed(seed)
    model = GenerativeModel(config, SPEC).eval()
    with torch.no_grad():  # sharper than the N(0, 0.02) init, so that rankings are not all near-ties
        for p in model.decoder.parameters():
            p.mul_(8.0)
    batch = EncoderBatch.random(SPEC, n, torch.Generator().manual_seed(seed))
    rows = list(range(n)) if recommendations is None else list(recommendations)
    batch.query[rows] = 0
    if batch.query_vector is not None:
        batch.query_vector[rows] = 0
    return model, batch


def _trie(seed: int = 0) -> PrefixTrie:
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(v) for v in SPEC.codebook_sizes], indexing="ij"), -1).reshape(-1, SPEC.levels)
    codes = grid[rng.choice(len(grid), size=300, replace=False)]
    return PrefixTrie.from_codes(codes, np.arange(1000, 1000 + len(codes)), list(SPEC.codebook_sizes))


@pytest.mark.parametrize("config,recommendations", CASES.values(), ids=CASES.keys())
def test_fp32_fast_decoder_gives_the_models_logits_at_every_level_through_expand_and_reorder(config, recommendations):
    model, batch = _model_and_batch(config, recommendations)
    fast = FastDecoder(model, "fp32")
    beams, n = 3, batch.batch_size * 3
    g = torch.Generator().manual_seed(5)
    ref_state, fast_state = model.encode(batch), fast.encode(batch)
    tokens = torch.full((batch.batch_size,), -1)
    for level in range(SPEC.levels):
        ref_logits, ref_state = model.step(ref_state, tokens, level)
        fast_logits, fast_state = fast.step(fast_state, tokens, level)
        size = SPEC.codebook_sizes[level]
        assert fast_logits.shape == (len(tokens), size)
        torch.testing.assert_close(fast_logits, ref_logits[:, :size], atol=1e-5, rtol=1e-5)
        if level == 0:
            ref_state, fast_state = model.expand(ref_state, beams), fast.expand(fast_state, beams)
        else:  # every beam continues a random beam of its own request
            index = (torch.arange(n) // beams) * beams + torch.randint(0, beams, (n,), generator=g)
            ref_state, fast_state = model.reorder(ref_state, index), fast.reorder(fast_state, index)
        tokens = torch.randint(0, size, (n,), generator=g)


@pytest.mark.parametrize("config,recommendations", CASES.values(), ids=CASES.keys())
def test_fp32_fast_decoder_returns_the_models_items_and_bf16_stays_close(config, recommendations):
    model, batch = _model_and_batch(config, recommendations, n=8)
    trie = _trie()
    ref_items, ref_scores = constrained_beam_search(model, model.encode(batch), trie, beams=6, k=5)
    fast = FastDecoder(model, "fp32")
    items, scores = constrained_beam_search(fast, fast.encode(batch), trie, beams=6, k=5)
    assert torch.equal(items, ref_items)
    torch.testing.assert_close(scores, ref_scores, atol=1e-4, rtol=1e-5)
    half = FastDecoder(model, "bf16")
    half_items, half_scores = constrained_beam_search(half, half.encode(batch), trie, beams=6, k=5)
    assert torch.equal(half_items[:, 0], ref_items[:, 0])  # the best item survives bf16 rounding here
    assert (half_scores - ref_scores).abs().max() < 0.05 * ref_scores.abs().max()
    assert all(len(set(row)) == 5 and set(row) <= set(trie.leaf_item_ids.tolist()) for row in half_items.tolist())


def test_building_a_fast_decoder_leaves_the_model_as_it_was():
    model, batch = _model_and_batch(CONFIG, (1,))
    before = {name: t.clone() for name, t in model.state_dict().items()}
    state_before = model.encode(batch)
    for precision in ("fp32", "bf16"):
        FastDecoder(model, precision)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) and before[name].dtype == after[name].dtype for name in before)
    state_after = model.encode(batch)
    assert all(torch.equal(a, b) for a, b in zip(state_before.memory_k, state_after.memory_k))


def test_bad_arguments_are_refused_with_a_message_naming_them():
    model, batch = _model_and_batch(CONFIG, (1,))
    with pytest.raises(ValueError, match="precision"):
        FastDecoder(model, "int4")
    fast = FastDecoder(model, "fp32")
    state = fast.encode(batch)
    with pytest.raises(ValueError, match="level"):
        fast.step(state, torch.full((batch.batch_size,), -1), 1)
    with pytest.raises(ValueError, match="tokens"):
        fast.step(state, torch.zeros(batch.batch_size + 1, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="beams"):
        fast.expand(state, 0)


def test_the_retriever_with_precision_fp32_answers_real_requests_as_the_model_does(small_world):
    from tiny_generative import tiny_generative

    from genrec.data.splits import build_requests, leave_one_out
    from genrec.model.retriever import GenerativeRetriever

    model, encoder, trie = tiny_generative(small_world, seed=3, decoder_scale=8.0)
    requests, _ = build_requests(leave_one_out(small_world.dataset.events), "test")
    requests = [r for r in requests if r.is_search][:8] + [r for r in requests if not r.is_search and r.history][:8]
    reference = GenerativeRetriever(model, encoder, trie, beams=8).retrieve(requests, k=8)
    fast = GenerativeRetriever(model, encoder, trie, beams=8, precision="fp32").retrieve(requests, k=8)
    for ref, got in zip(reference, fast):
        np.testing.assert_array_equal(got.item_ids, ref.item_ids)
        np.testing.assert_allclose(got.scores, ref.scores, rtol=1e-4, atol=1e-4)
    half = GenerativeRetriever(model, encoder, trie, beams=8, precision="bf16").retrieve(requests, k=8)
    assert all(len(r) == 8 for r in half)
    with pytest.raises(ValueError, match="precision"):
        GenerativeRetriever(model, encoder, trie, precision="fp16")


def test_bf16_on_a_cpu_without_native_bf16_warns_that_fp32_is_faster(monkeypatch):
    import warnings

    from genrec import device

    model = GenerativeModel(GenerativeConfig(item_head=False, d_model=16, n_heads=2, d_ff=32, dropout=0.0),
                            InputSpec(codebook_sizes=(4, 4), query_vocab_size=20, user_vocab_size=10))
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: False)
    with pytest.warns(UserWarning, match="emulated and slower than fp32"):
        FastDecoder(model, "bf16")
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FastDecoder(model, "bf16")
        monkeypatch.setattr(device, "cpu_has_bf16", lambda: False)
        FastDecoder(model, "fp32")  # fp32 never warns
