"""The generative model: cached decoding equals the full pass, bad input is refused."""

from dataclasses import replace

import pytest
import torch

from genrec.model.transformer import EncoderBatch, GenerativeConfig, GenerativeModel

CONFIG = GenerativeConfig(codebook_sizes=(7, 5, 3), d_model=32, n_heads=4, d_ff=64, dropout=0.0,
                          query_vocab_size=50, user_vocab_size=20, context_vocab_size=10, item_buckets=13)


def _codes(config, batch, generator):
    return torch.stack([torch.randint(0, v, (batch,), generator=generator) for v in config.codebook_sizes], dim=1)


SUMMARY = GenerativeConfig(codebook_sizes=(9, 5, 3), d_model=32, n_heads=4, d_ff=64, dropout=0.0,
                           query_vocab_size=50, user_vocab_size=20, context_vocab_size=10,
                           query_vector_dim=6, memory_summary=True, tie_heads=True)


@pytest.mark.parametrize("config", [CONFIG, SUMMARY], ids=["plain", "query-vector+summary+tied"])
def test_kv_cached_beam_decoding_gives_the_same_logits_as_a_full_forward_pass(config):
    CONFIG = config  # noqa: N806 (the body reads the config under its usual name)
    g = torch.Generator().manual_seed(0)
    model = GenerativeModel(CONFIG).eval()
    batch = EncoderBatch.random(CONFIG, 4, g)
    codes = _codes(CONFIG, 4, g)
    full = model(batch, codes)
    beams = 3
    state = model.expand(model.encode(batch), beams)
    tokens = torch.zeros(4 * beams, dtype=torch.long)
    for level in range(CONFIG.levels):
        logits, state = model.step(state, tokens, level)
        size = CONFIG.codebook_sizes[level]
        assert logits.shape == (4 * beams, max(CONFIG.codebook_sizes))
        assert torch.isneginf(logits[:, size:]).all()
        torch.testing.assert_close(logits[:, :size], full[level].repeat_interleave(beams, dim=0), atol=1e-5, rtol=1e-5)
        tokens = codes[:, level].repeat_interleave(beams)


def test_reorder_makes_a_row_continue_another_beams_prefix():
    g = torch.Generator().manual_seed(1)
    model = GenerativeModel(CONFIG).eval()
    batch = EncoderBatch.random(CONFIG, 2, g)
    a, b = _codes(CONFIG, 2, g), _codes(CONFIG, 2, g)
    state = model.expand(model.encode(batch), 2)
    _, state = model.step(state, torch.zeros(4, dtype=torch.long), 0)
    # rows: (req0 beam0 → prefix a), (req0 beam1 → prefix b), ...
    first = torch.stack([a[0, 0], b[0, 0], a[1, 0], b[1, 0]])
    _, state = model.step(state, first, 1)
    swapped = model.reorder(state, torch.tensor([1, 0, 3, 2]))  # row 0 now holds request 0's prefix b
    logits2, _ = model.step(swapped, torch.stack([b[0, 1], a[0, 1], b[1, 1], a[1, 1]]), 2)
    full_b = model(batch, b)[2]
    torch.testing.assert_close(logits2[[0, 2], :3], full_b, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="another request"):
        model.reorder(state, torch.tensor([2, 1, 0, 3]))


def test_bad_input_raises_value_errors_that_name_the_field():
    model = GenerativeModel(CONFIG)
    batch = EncoderBatch.random(CONFIG, 2)
    with pytest.raises(ValueError, match="codes"):
        model(batch, torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="codes"):
        model(batch, torch.full((2, 3), 9, dtype=torch.long))
    batch.query[0, 0] = CONFIG.query_vocab_size
    with pytest.raises(ValueError, match="query"):
        model(batch, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="d_model"):
        GenerativeConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="level"):
        model.step(model.encode(EncoderBatch.random(CONFIG, 2)), torch.zeros(2, dtype=torch.long), 1)


def test_trie_constrained_beam_search_drives_the_model_to_real_items_only():
    from genrec.decode.beam_search import constrained_beam_search
    from genrec.decode.trie import PrefixTrie

    g = torch.Generator().manual_seed(2)
    model = GenerativeModel(CONFIG).eval()
    codes = torch.tensor([[0, 0, 0], [0, 1, 2], [3, 4, 1], [6, 0, 0], [6, 0, 1]])
    items = torch.tensor([11, 12, 13, 14, 15])
    trie = PrefixTrie.from_codes(codes, items, list(CONFIG.codebook_sizes))
    batch = EncoderBatch.random(CONFIG, 3, g)
    found, scores = constrained_beam_search(model, model.encode(batch), trie, beams=5, k=5)
    # beams ≥ items: exact, so the ranking must equal scoring every SID with the full pass,
    # each level's softmax restricted to the codes the trie allows after that prefix
    for row in range(3):
        one = batch.index(torch.tensor([row] * len(items)))
        logits = model(one, codes)
        logp = torch.zeros(len(items))
        for level, lg in enumerate(logits):
            for i in range(len(items)):
                siblings = (codes[:, :level] == codes[i, :level]).all(1)
                allowed = torch.unique(codes[siblings, level])
                logp[i] += torch.log_softmax(lg[i, allowed], 0)[allowed == codes[i, level]][0]
        assert found[row].tolist() == items[torch.argsort(logp, descending=True)].tolist()
        torch.testing.assert_close(scores[row], torch.sort(logp, descending=True).values, atol=1e-4, rtol=1e-4)


# ---- query-vector token and history categories -------------------------------------------------

RICH = GenerativeConfig(codebook_sizes=(7, 5, 3), d_model=32, n_heads=4, d_ff=64, dropout=0.0,
                        query_vocab_size=50, user_vocab_size=20, context_vocab_size=10,
                        query_vector_dim=6, n_categories=4, n_item_slots=50)


def _setup(config: GenerativeConfig, seed: int):
    """A fresh eval-mode model, a random batch of 2 requests and target codes, from one seed."""
    g = torch.Generator().manual_seed(seed)
    model = GenerativeModel(config).eval()
    return model, EncoderBatch.random(config, 2, g), _codes(config, 2, g), g


def test_the_query_vector_token_is_read_for_search_and_masked_out_for_recommendation():
    model, batch, codes, g = _setup(RICH, 3)
    batch.query_vector[1] = 0  # request 1 has no query
    before = model(batch, codes)
    with torch.no_grad():
        model.query_vector_projection.weight.mul_(-3.0)
        model.query_vector_projection.bias.add_(1.0)
    after = model(batch, codes)
    assert not torch.allclose(before[0][0], after[0][0])  # the search request reads its vector
    for level in range(RICH.levels):  # the recommendation request ignores the projection entirely
        torch.testing.assert_close(before[level][1], after[level][1])


def test_history_items_carry_their_leaf_category_and_unknown_items_fall_back_to_none():
    model, batch, codes, g = _setup(RICH, 4)
    base = model(batch, codes)[0]
    model.set_item_categories(torch.where(torch.arange(50) % 2 == 0, 1, 2))
    changed = model(batch, codes)[0]
    assert not torch.allclose(base, changed)
    batch.short_items[:, -1] = 10_000  # an item id newer than the table: category 0, no index error
    assert torch.isfinite(model(batch, codes)[0]).all()
    state = model.state_dict()
    assert torch.equal(state["item_category"][:4], torch.tensor([1, 2, 1, 2]))  # saved with the weights


def test_query_vector_and_category_inputs_are_checked():
    model = GenerativeModel(RICH)
    batch = EncoderBatch.random(RICH, 2)
    batch.query_vector = None
    with pytest.raises(ValueError, match="query_vector"):
        model(batch, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"item_category must have shape \[50\]"):
        model.set_item_categories(torch.zeros(7, dtype=torch.long))
    with pytest.raises(ValueError, match="outside"):
        model.set_item_categories(torch.full((50,), 4, dtype=torch.long))
    with pytest.raises(ValueError, match="n_item_slots"):
        GenerativeConfig(n_categories=3)


def test_the_memory_summary_feeds_the_request_to_the_first_level_directly():
    model, batch, codes, g = _setup(SUMMARY, 5)
    with torch.no_grad():  # cut every cross-attention: only the summary carries the request now
        for block in model.decoder_blocks:
            block.cross.out.weight.zero_()
            block.cross.out.bias.zero_()
    first = model(batch, codes)[0]
    assert not torch.allclose(first[0], first[1], atol=1e-4)  # two requests, two first-level predictions
    model.summary_projection = None  # the same model without its summary path
    plain = model(batch, codes)[0]
    torch.testing.assert_close(plain[0], plain[1])  # without it the decoder cannot tell them apart


def test_tied_heads_score_codes_with_their_own_embeddings():
    tied, batch, codes, _ = _setup(SUMMARY, 6)
    untied = GenerativeModel(replace(SUMMARY, tie_heads=False)).eval()
    untied.load_state_dict(tied.state_dict())
    with torch.no_grad():  # give the untied heads exactly the code embeddings of their level
        for level, head in enumerate(untied.heads):
            start = untied.offsets[level]
            head.weight.copy_(tied.code_embedding.weight[start:start + SUMMARY.codebook_sizes[level]])
        for head in tied.heads:  # the tied model must not read its heads' own weights at all
            head.weight.normal_()
    for a, b in zip(tied(batch, codes), untied(batch, codes)):
        torch.testing.assert_close(a, b)


def test_a_saved_config_without_the_newer_fields_loads_as_it_was_trained():
    saved = SUMMARY.to_dict()
    for name in ("memory_summary", "input_init_std"):
        saved.pop(name)  # a config.json written before these fields existed
    old = GenerativeConfig.from_dict(saved)
    assert old.memory_summary is False and old.input_init_std == 0.02
    assert GenerativeConfig.from_dict(SUMMARY.to_dict()) == SUMMARY  # today's configs round-trip unchanged
