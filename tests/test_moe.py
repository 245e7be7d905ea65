"""The sparse MoE feed-forward (`genrec.model.moe`): each token goes to exactly k experts, the
balance loss punishes skewed usage and its gradient evens usage out, the model trains and decodes
with it (FastDecoder included), and a default model is exactly the model built before MoE existed."""

import hashlib
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from genrec.model import EncoderBatch, GenerativeConfig, GenerativeModel, InputSpec
from genrec.model.inference import FastDecoder
from genrec.model.moe import SparseMoE, balance_loss, route

SPEC = InputSpec(codebook_sizes=(9, 5, 4), query_vocab_size=50, user_vocab_size=20, context_vocab_size=10)
MOE = GenerativeConfig(item_head=False, d_model=32, n_heads=4, d_ff=48, dropout=0.0, moe_experts=4, moe_top_k=2)


def _batch(n: int, seed: int, spec: InputSpec = SPEC):
    g = torch.Generator().manual_seed(seed)
    batch = EncoderBatch.random(spec, n, g)
    batch.query[n // 2:] = 0  # half searches, half recommendations
    codes = torch.stack([torch.randint(0, v, (n,), generator=g) for v in spec.codebook_sizes], dim=1)
    return batch, codes


def test_routing_sends_each_token_to_exactly_k_distinct_experts_with_weights_summing_to_one():
    logits = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    experts, weights = route(logits, 3)
    assert experts.shape == weights.shape == (50, 3)
    assert all(len(set(row.tolist())) == 3 for row in experts)
    torch.testing.assert_close(weights.sum(-1), torch.ones(50))
    best = logits.argsort(dim=-1, descending=True)[:, :3]  # the k highest-scoring experts
    assert torch.equal(experts.sort(-1).values, best.sort(-1).values)


def test_the_moe_output_is_the_weighted_sum_of_its_k_experts_and_usage_counts_k_slots_per_token():
    torch.manual_seed(0)
    moe = SparseMoE(8, 16, n_experts=5, top_k=2, dropout=0.0).train()
    x = torch.randn(3, 7, 8)
    out = moe(x)
    tokens = x.reshape(-1, 8)
    experts, weights = route(moe.router(tokens), 2)
    expected = torch.stack([sum(w * moe.down[int(e)](F.gelu(moe.up[int(e)](t))) for e, w in zip(es, ws))
                            for t, es, ws in zip(tokens, experts, weights)])
    torch.testing.assert_close(out.reshape(-1, 8), expected)
    assert moe.usage.sum() == 21 * 2  # every token fills exactly k slots
    torch.testing.assert_close(moe.take_usage().sum(), torch.tensor(1.0))
    assert moe.usage.sum() == 0  # taken, so reset


def test_the_balance_loss_is_one_for_uniform_usage_and_larger_when_usage_is_skewed():
    n_experts = 4
    uniform_logits = torch.zeros(8, n_experts)
    uniform_experts = torch.arange(8)[:, None] % n_experts
    skewed_logits = torch.zeros(8, n_experts)
    skewed_logits[:, 0] = 3.0
    skewed_experts = torch.zeros(8, 1, dtype=torch.long)
    uniform = balance_loss(uniform_logits, uniform_experts)
    skewed = balance_loss(skewed_logits, skewed_experts)
    torch.testing.assert_close(uniform, torch.tensor(1.0))
    assert skewed > 2.0 * uniform


def test_the_balance_losss_gradient_evens_out_a_skewed_router():
    torch.manual_seed(0)
    moe = SparseMoE(8, 4, n_experts=4, top_k=1, dropout=0.0).train()
    with torch.no_grad():
        moe.router.bias.copy_(torch.tensor([2.0, 0.0, 0.0, 0.0]))  # expert 0 takes nearly every token
    x = torch.randn(256, 8, generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.SGD(moe.router.parameters(), lr=0.5)
    moe(x)
    first_loss, first_share = float(moe.last_balance_loss.detach()), float(moe.take_usage().max())
    for _ in range(60):
        moe(x)
        optimizer.zero_grad()
        moe.last_balance_loss.backward()
        optimizer.step()
    moe.take_usage()
    moe(x)
    assert first_share > 0.6
    assert float(moe.take_usage().max()) < first_share - 0.2
    assert float(moe.last_balance_loss.detach()) < first_loss


def test_a_top_k_above_the_number_of_experts_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="moe_top_k"):
        GenerativeConfig(item_head=False, moe_experts=2, moe_top_k=3)
    with pytest.raises(ValueError, match="moe_top_k"):
        GenerativeConfig(item_head=False, moe_top_k=0)
    with pytest.raises(ValueError, match="moe_experts"):
        GenerativeConfig(item_head=False, moe_experts=-1)
    with pytest.raises(ValueError, match="moe_top_k"):
        GenerativeConfig.from_dict({"moe_experts": 4, "moe_top_k": 5})


def test_a_moe_model_trains_a_few_steps_with_the_balance_loss_in_its_loss_and_reports_expert_usage():
    torch.manual_seed(0)
    model = GenerativeModel(MOE, SPEC).train()
    assert len(model.moe_layers()) == MOE.n_decoder_layers
    batch, codes = _batch(6, 0)
    loss = model.loss(batch, codes)
    balance = model.balance_loss()
    assert balance is not None and 0.0 < float(balance.detach()) <= MOE.moe_experts
    no_balance = GenerativeModel(replace(MOE, moe_balance_weight=0.0), SPEC).train()
    no_balance.load_state_dict(model.state_dict())
    torch.testing.assert_close(loss - no_balance.loss(batch, codes), MOE.moe_balance_weight * balance)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = float(loss.detach())
    for _ in range(8):
        optimizer.zero_grad()
        loss = model.loss(batch, codes)
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < first
    router = model.moe_layers()[0].router.weight
    assert router.grad is not None and router.grad.abs().sum() > 0
    metrics = model.training_metrics()
    shares = [metrics[f"moe_share_{e}"] for e in range(MOE.moe_experts)]
    assert abs(sum(shares) - 1.0) < 1e-5 and "moe_balance_loss" in metrics
    assert GenerativeModel(GenerativeConfig(item_head=False, d_model=32, n_heads=4), SPEC).training_metrics() == {}


def test_the_fast_decoder_runs_a_moe_decoder_as_the_model_does():
    torch.manual_seed(0)
    model = GenerativeModel(MOE, SPEC).eval()
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(8.0)
    batch, _ = _batch(4, 1)
    for precision, tolerance in (("fp32", 1e-5), ("bf16", 0.5)):
        fast = FastDecoder(model, precision)
        ref_state, fast_state = model.encode(batch), fast.encode(batch)
        tokens = torch.full((batch.batch_size,), -1)
        for level in range(SPEC.levels):
            ref_logits, ref_state = model.step(ref_state, tokens, level)
            fast_logits, fast_state = fast.step(fast_state, tokens, level)
            size = SPEC.codebook_sizes[level]
            torch.testing.assert_close(fast_logits, ref_logits[:, :size], atol=tolerance, rtol=tolerance)
            tokens = ref_logits[:, :size].argmax(-1)


# A default model's state_dict keys and a forward pass, recorded from the code before any backbone
# option existed (GenerativeConfig() then; the item head, on by default since, is switched off here as
# the one part that adds weights by default): every other option at its default must leave the model
# exactly as it was.
DEFAULT_KEYS = (99, "161fcf7d00566e6aea5ac96eb25e5b4d086ea1816cb0eaa4e5c6821dfb32e6e1")
DEFAULT_PARAMETERS = 2689099
DEFAULT_FIRST_LOGITS = [0.04741452634334564, -0.5381966829299927, 0.12193268537521362, 0.05020252615213394]


def test_a_default_model_is_bit_for_bit_the_model_before_the_backbone_options():
    torch.manual_seed(0)
    spec = InputSpec()
    model = GenerativeModel(GenerativeConfig(item_head=False), spec).eval()
    keys = list(model.state_dict())
    assert (len(keys), hashlib.sha256("\n".join(keys).encode()).hexdigest()) == DEFAULT_KEYS
    assert model.num_parameters() == DEFAULT_PARAMETERS
    g = torch.Generator().manual_seed(0)
    batch = EncoderBatch.random(spec, 4, g)
    batch.query[2:] = 0
    codes = torch.stack([torch.randint(0, v, (4,), generator=g) for v in spec.codebook_sizes], dim=1)
    with torch.no_grad():
        logits = model(batch, codes)
    torch.testing.assert_close(logits[0][0, :4], torch.tensor(DEFAULT_FIRST_LOGITS), atol=1e-5, rtol=1e-4)


def test_the_training_loop_writes_expert_usage_to_metrics_csv(tmp_path):
    from genrec.train.loop import TrainConfig, train
    from genrec.train.metrics_csv import METRICS_FILE, read_metrics

    torch.manual_seed(0)
    model = GenerativeModel(MOE, SPEC)
    examples = [_batch(4, seed) for seed in range(3)]
    config = TrainConfig(steps=3, batch_size=1, lr=1e-3, warmup_steps=1, checkpoint_every=5, checkpoint_seconds=None,
                         log_every=1, device="cpu", progress=False, cpu_bf16=False)
    train(model, lambda m, b: m.loss(*b), examples, lambda items: items[0], config, tmp_path)
    rows = read_metrics(tmp_path / METRICS_FILE)
    assert [r["step"] for r in rows] == [1, 2, 3]
    for row in rows:
        assert sum(row[f"moe_share_{e}"] for e in range(MOE.moe_experts)) == pytest.approx(1.0, abs=1e-5)
        assert row["moe_balance_loss"] > 0


def test_the_backbone_options_reach_set_and_a_bad_one_is_refused_naming_the_field():
    from genrec.config_file import load_config
    from genrec.pipeline import PipelineConfig
    from genrec.train.generative import GenerativeTrainConfig

    trained = load_config(GenerativeTrainConfig, None, ["model.moe_experts=4", "model.moe_top_k=1",
                                                        "model.moe_balance_weight=0.05", "model.long_queries=8",
                                                        "model.user_id_levels=2"])
    model = trained.model
    assert (model.moe_experts, model.moe_top_k, model.moe_balance_weight, model.long_queries,
            model.user_id_levels) == (4, 1, 0.05, 8, 2)
    assert load_config(PipelineConfig, None, ["train.model.moe_experts=8"]).train.model.moe_experts == 8
    with pytest.raises(ValueError, match="moe_top_k"):
        load_config(GenerativeTrainConfig, None, ["model.moe_experts=2", "model.moe_top_k=3"])
