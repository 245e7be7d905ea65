"""The generative model: cached decoding equals the full pass, bad input is refused,
every part does what it is there for, and older saves load."""

from dataclasses import replace

import pytest
import torch

from genrec.model import EncoderBatch, GenerativeConfig, GenerativeModel, InputSpec, load_model_config
from genrec.model.checkpoint import migrate_state_dict

CONFIG = GenerativeConfig(item_head=False, d_model=32, n_heads=4, d_ff=64, dropout=0.0, item_buckets=13)
SPEC = InputSpec(codebook_sizes=(7, 5, 3), query_vocab_size=50, user_vocab_size=20, context_vocab_size=10)
RICH = InputSpec(codebook_sizes=(9, 5, 3), query_vocab_size=50, user_vocab_size=20, context_vocab_size=10,
                 query_vector_dim=6, n_categories=4, n_item_slots=50)
RECOMMENDATION = replace(CONFIG, tasks="recommendation", latest_in_summary=True, copy_recent=2)


def _codes(spec, batch, generator):
    return torch.stack([torch.randint(0, v, (batch,), generator=generator) for v in spec.codebook_sizes], dim=1)


def _batch(config, spec, n, generator, recommendations=()):
    """Random requests; the rows in `recommendations` (all rows for a recommendation-only model) have no query."""
    batch = EncoderBatch.random(spec, n, generator)
    rows = list(range(n)) if not config.search else list(recommendations)
    batch.query[rows] = 0
    if batch.query_vector is not None:
        batch.query_vector[rows] = 0
    return batch


CASES = {"search+recommendation, mixed batch": (CONFIG, RICH, (1, 3)),
         "recommendation only, latest + copy": (RECOMMENDATION, SPEC, ())}


@pytest.mark.parametrize("config,spec,recommendations", CASES.values(), ids=CASES.keys())
def test_kv_cached_beam_decoding_gives_the_same_logits_as_a_full_forward_pass(config, spec, recommendations):
    g = torch.Generator().manual_seed(0)
    model = GenerativeModel(config, spec).eval()
    batch = _batch(config, spec, 4, g, recommendations)
    codes = _codes(spec, 4, g)
    full = model(batch, codes)
    beams = 3
    state = model.expand(model.encode(batch), beams)
    tokens = torch.zeros(4 * beams, dtype=torch.long)
    for level in range(spec.levels):
        logits, state = model.step(state, tokens, level)
        size = spec.codebook_sizes[level]
        assert logits.shape == (4 * beams, max(spec.codebook_sizes))
        assert torch.isneginf(logits[:, size:]).all()
        torch.testing.assert_close(logits[:, :size], full[level].repeat_interleave(beams, dim=0), atol=1e-5, rtol=1e-5)
        tokens = codes[:, level].repeat_interleave(beams)


def test_reorder_makes_a_row_continue_another_beams_prefix():
    g = torch.Generator().manual_seed(1)
    model = GenerativeModel(CONFIG, SPEC).eval()
    batch = EncoderBatch.random(SPEC, 2, g)
    a, b = _codes(SPEC, 2, g), _codes(SPEC, 2, g)
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
    model = GenerativeModel(CONFIG, SPEC)
    batch = EncoderBatch.random(SPEC, 2)
    with pytest.raises(ValueError, match="codes"):
        model(batch, torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="codes"):
        model(batch, torch.full((2, 3), 9, dtype=torch.long))
    batch.query[0, 0] = SPEC.query_vocab_size
    with pytest.raises(ValueError, match="query"):
        model(batch, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="d_model"):
        GenerativeConfig(item_head=False, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="tasks"):
        GenerativeConfig(item_head=False, tasks="search")
    with pytest.raises(ValueError, match="level"):
        model.step(model.encode(EncoderBatch.random(SPEC, 2)), torch.zeros(2, dtype=torch.long), 1)
    searches = EncoderBatch.random(SPEC, 2)
    with pytest.raises(ValueError, match="recommendations only"):
        GenerativeModel(RECOMMENDATION, SPEC)(searches, torch.zeros(2, 3, dtype=torch.long))


def test_trie_constrained_beam_search_drives_the_model_to_real_items_only():
    from genrec.decode.beam_search import constrained_beam_search
    from genrec.decode.trie import PrefixTrie

    g = torch.Generator().manual_seed(2)
    model = GenerativeModel(CONFIG, SPEC).eval()
    codes = torch.tensor([[0, 0, 0], [0, 1, 2], [3, 4, 1], [6, 0, 0], [6, 0, 1]])
    items = torch.tensor([11, 12, 13, 14, 15])
    trie = PrefixTrie.from_codes(codes, items, list(SPEC.codebook_sizes))
    batch = _batch(CONFIG, SPEC, 3, g, recommendations=(2,))
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


# ---- the parts ---------------------------------------------------------------------------------

def _setup(spec: InputSpec, seed: int, config: GenerativeConfig = CONFIG):
    """A fresh eval-mode model, 2 random search requests and target codes, from one seed."""
    g = torch.Generator().manual_seed(seed)
    model = GenerativeModel(config, spec).eval()
    return model, EncoderBatch.random(spec, 2, g), _codes(spec, 2, g), g


def test_the_query_vector_token_is_read_for_search_and_not_for_recommendation():
    model, batch, codes, g = _setup(RICH, 3)
    batch.query[1], batch.query_vector[1] = 0, 0  # request 1 is a recommendation
    before = model(batch, codes)
    with torch.no_grad():
        model.inputs.query_vector.weight.mul_(-3.0)
        model.inputs.query_vector.bias.add_(1.0)
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
    assert torch.equal(model.state_dict()["inputs.item_category"][:4], torch.tensor([1, 2, 1, 2]))  # saved


def test_query_vector_and_category_inputs_are_checked():
    model = GenerativeModel(CONFIG, RICH)
    batch = EncoderBatch.random(RICH, 2)
    batch.query_vector = None
    with pytest.raises(ValueError, match="query_vector"):
        model(batch, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"item_category must have shape \[50\]"):
        model.set_item_categories(torch.zeros(7, dtype=torch.long))
    with pytest.raises(ValueError, match="outside"):
        model.set_item_categories(torch.full((50,), 4, dtype=torch.long))
    with pytest.raises(ValueError, match="n_item_slots"):
        InputSpec(n_categories=3)


def test_the_summary_feeds_the_request_to_the_first_level_directly():
    model, batch, codes, g = _setup(RICH, 5)
    with torch.no_grad():  # cut every cross-attention: only the summary carries the request now
        for block in model.decoder.blocks:
            block.cross.out.weight.zero_()
            block.cross.out.bias.zero_()
    first = model(batch, codes)[0]
    assert not torch.allclose(first[0], first[1], atol=1e-4)  # two requests, two first-level predictions
    with torch.no_grad():
        model.summary.projection.weight.zero_()  # the same model with a summary that says nothing
    plain = model(batch, codes)[0]
    torch.testing.assert_close(plain[0], plain[1])  # without it the decoder cannot tell them apart


def test_the_copy_bias_adds_only_to_recommendations_first_level():
    model, batch, codes, g = _setup(RICH, 6, replace(CONFIG, copy_recent=2))
    batch.query[1], batch.query_vector[1] = 0, 0  # request 1 is a recommendation
    before = model(batch, codes)
    with torch.no_grad():
        model.copy.gate.bias.fill_(4.0)
    after = model(batch, codes)
    torch.testing.assert_close(before[0][0], after[0][0])  # the search is untouched
    newest = batch.short_codes[1, -1, 0]
    assert after[0][1, newest] - before[0][1, newest] >= 4.0 - 1e-4  # the recommendation's newest leaf gained
    for level in (1, 2):
        torch.testing.assert_close(before[level], after[level])


# ---- saved models of earlier versions ------------------------------------------------------------

OLD_LAYOUT = {  # a config.json "model" entry as genrec wrote it before config and input spec were split
    "codebook_sizes": [7, 5, 3], "query_vocab_size": 50, "user_vocab_size": 20, "context_vocab_size": 10,
    "item_buckets": 13, "query_vector_dim": 0, "n_categories": 0, "n_item_slots": 0, "memory_summary": True,
    "tie_heads": False, "input_init_std": 1.0, "causal_history": False, "causal_recommendation": True,
    "latest_in_summary": False, "latest_age": False, "copy_recent": 3, "n_actions": 4, "n_recency": 16,
    "max_query_tokens": 24, "max_user_tokens": 8, "max_short": 10, "max_long": 10, "max_context": 8,
    "d_model": 32, "n_heads": 4, "n_encoder_layers": 2, "n_decoder_layers": 2, "d_ff": 64, "dropout": 0.0}


def test_an_older_saved_config_migrates_and_a_removed_variant_is_refused_with_the_reason():
    config, spec = load_model_config(OLD_LAYOUT)
    assert config == replace(CONFIG, copy_recent=3, item_head_text=False) and spec == SPEC
    assert not config.item_head  # saved before the item head existed: it has none, whatever today's default
    history_only, _ = load_model_config({**OLD_LAYOUT, "causal_recommendation": False, "causal_history": True})
    assert history_only.tasks == "recommendation"
    assert load_model_config(config.to_dict(), spec.to_dict()) == (config, spec)  # today's round-trips
    for change, reason in (({"tie_heads": True}, "tie_heads"), ({"latest_age": True}, "latest_age"),
                           ({"causal_recommendation": False}, "per-request"), ({"memory_summary": False}, "summary")):
        with pytest.raises(ValueError, match=reason):
            load_model_config({**OLD_LAYOUT, **change})
    with pytest.raises(ValueError, match="d_modle: unknown key .did you mean 'd_model'"):
        GenerativeConfig.from_dict({"d_modle": 64})


def test_weights_saved_under_the_old_flat_names_load_into_the_parts():
    model = GenerativeModel(CONFIG, SPEC)
    renames = {  # every part's parameters under the names genrec saved before the parts split
        "inputs.query.": "query_embedding.", "inputs.user.": "user_embedding.", "inputs.context.": "context_embedding.",
        "inputs.code.": "code_embedding.", "inputs.item.": "item_embedding.", "inputs.action.": "action_embedding.",
        "inputs.recency.": "recency_embedding.", "inputs.part_type.": "type_embedding.",
        "inputs.position.": "position_embedding.", "inputs.item_category": "item_category",
        "encoder.blocks.": "encoder_blocks.", "encoder.norm.": "encoder_norm.",
        "summary.projection.": "summary_projection.", "copy.gate.": "copy_gate.",
        "decoder.level.": "level_embedding.", "decoder.blocks.": "decoder_blocks.", "decoder.norm.": "decoder_norm.",
        "decoder.heads.": "heads."}
    old = {}
    for name, value in model.state_dict().items():
        for new, flat in renames.items():
            if name.startswith(new):
                name = flat + name[len(new):]
        old[name] = value
    assert not any(name.startswith(("inputs.", "decoder.")) for name in old)
    migrated = migrate_state_dict(old)
    assert migrated.keys() == model.state_dict().keys()
    GenerativeModel(CONFIG, SPEC).load_state_dict(migrated)  # strict: every parameter found


def test_a_mixed_batch_trains_under_cpu_bf16_autocast_with_the_loss_fp32_gives():
    g = torch.Generator().manual_seed(4)
    model = GenerativeModel(CONFIG, RICH).train()
    batch, codes = _batch(CONFIG, RICH, 6, g, (1, 3, 4)), _codes(RICH, 6, g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.loss(batch, codes)  # the two paths' summaries come out in different dtypes
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    assert abs(loss.item() - model.loss(batch, codes).item()) < 0.05  # dropout 0: bf16 rounding only
