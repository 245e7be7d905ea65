"""The training step's cheaper kernels compute what the library ops they replace compute:
the dropout mask keeps the right share at the right scale, attention with dropout is
`F.scaled_dot_product_attention` in expectation (and exactly when no element is dropped),
eval mode never sees either, and the CPU's fused AdamW takes the steps the per-parameter
loop takes."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import genrec.model.layers as layers
from genrec.model import GenerativeConfig
from genrec.model.dropout import Dropout, dropout, keep_mask
from genrec.model.layers import Attention
from genrec.train.loop import TrainConfig, _optimizer


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_the_mask_drops_a_share_p_and_scales_the_rest_by_the_inverse_of_the_keep_rate(p):
    torch.manual_seed(0)
    mask = keep_mask(torch.Size([1000, 1000]), p, torch.float32, torch.device("cpu"))
    kept = mask > 0
    assert abs(1.0 - kept.float().mean().item() - p) < 3e-3
    for lane in range(4):  # each 16-bit lane of the random words drops its share, the top one too
        assert abs(1.0 - kept.view(-1, 4)[:, lane].float().mean().item() - p) < 5e-3
    assert torch.unique(mask[kept]).numel() == 1  # one scale for every kept element
    scale = mask[kept][0].item()
    assert abs(scale - 1.0 / (1.0 - p)) < 1e-4
    assert abs(mask.mean().item() - 1.0) < 5e-3  # the expectation of x is kept


def test_the_mask_has_the_input_shape_even_when_it_is_not_a_multiple_of_four():
    mask = keep_mask(torch.Size([3, 5, 7]), 0.3, torch.bfloat16, torch.device("cpu"))
    assert mask.shape == (3, 5, 7) and mask.dtype == torch.bfloat16


def test_the_same_seed_draws_the_same_mask_and_a_restored_rng_state_repeats_it():
    torch.manual_seed(7)
    first = keep_mask(torch.Size([64, 33]), 0.2, torch.float32, torch.device("cpu"))
    state = torch.get_rng_state()
    second = keep_mask(torch.Size([64, 33]), 0.2, torch.float32, torch.device("cpu"))
    torch.manual_seed(7)
    assert torch.equal(keep_mask(torch.Size([64, 33]), 0.2, torch.float32, torch.device("cpu")), first)
    torch.set_rng_state(state)
    assert torch.equal(keep_mask(torch.Size([64, 33]), 0.2, torch.float32, torch.device("cpu")), second)
    assert not torch.equal(first, second)


def test_dropout_is_the_identity_in_eval_mode_and_at_p_zero_and_has_no_state():
    x = torch.randn(4, 8)
    module = Dropout(0.2)
    assert module.eval()(x) is x
    assert dropout(x, 0.0, True) is x
    assert module.state_dict() == {} and nn.Dropout(0.2).state_dict() == {}
    with pytest.raises(ValueError, match="dropout p"):
        Dropout(1.0)


def test_the_gradient_passes_through_kept_elements_only_with_their_scale():
    torch.manual_seed(3)
    x = torch.randn(50, 40, requires_grad=True)
    y = Dropout(0.25).train()(x)
    y.sum().backward()
    assert x.grad is not None
    factor = y.detach() / x.detach()
    assert torch.allclose(x.grad, factor, atol=1e-6)


def _attention(dropout_p: float) -> Attention:
    return Attention(GenerativeConfig(d_model=32, n_heads=4, dropout=dropout_p))


def _qkv(batch=3, heads=4, tq=5, tk=6, dim=8):
    torch.manual_seed(11)
    return (torch.randn(batch, heads, tq, dim, requires_grad=True), torch.randn(batch, heads, tk, dim, requires_grad=True),
            torch.randn(batch, heads, tk, dim, requires_grad=True))


@pytest.mark.parametrize("causal", [False, True])
def test_attention_with_nothing_dropped_equals_sdpa_in_values_and_gradients(monkeypatch, causal):
    q, k, v = _qkv(tk=5)
    mask = None if causal else torch.rand(3, 1, 5, 5) > 0.3
    if mask is not None:
        mask[..., 0] = True  # every query sees at least one key
    monkeypatch.setattr(layers, "dropout", lambda x, p, training: x)
    ours = layers._attention_with_dropout(q, k, v, mask, causal, 0.2)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    assert torch.allclose(ours, reference, atol=1e-6)
    grads = torch.autograd.grad(ours.square().sum(), (q, k, v))
    reference_grads = torch.autograd.grad(reference.square().sum(), (q, k, v))
    for got, want in zip(grads, reference_grads):
        assert torch.allclose(got, want, atol=1e-5)


def test_attention_with_dropout_is_sdpa_in_expectation():
    q, k, v = _qkv()
    mask = torch.ones(3, 1, 1, 6, dtype=torch.bool)
    mask[0, ..., 4:] = False
    attention = _attention(0.3).train()
    with torch.no_grad():
        mean = torch.stack([attention.attend(q, k, v, mask) for _ in range(4000)]).mean(0)
        reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert (mean - reference).abs().max() < 0.05
    assert not torch.allclose(attention.attend(q, k, v, mask), reference, atol=1e-3)  # it does drop


def test_eval_mode_attention_is_exactly_sdpa():
    q, k, v = _qkv()
    mask = torch.rand(3, 1, 1, 6) > 0.2
    mask[..., 0] = True
    with torch.no_grad():
        assert torch.equal(_attention(0.3).eval().attend(q, k, v, mask),
                           F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_the_cpu_optimizer_is_fused_and_takes_the_steps_of_the_per_parameter_loop():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Embedding(10, 6), nn.Linear(6, 4), nn.LayerNorm(4))
    twin = nn.Sequential(nn.Embedding(10, 6), nn.Linear(6, 4), nn.LayerNorm(4))
    twin.load_state_dict(model.state_dict())
    config = TrainConfig(lr=1e-2, weight_decay=0.1)
    fused = _optimizer(model, config, torch.device("cpu"))
    assert fused.defaults["fused"] is True
    loop = torch.optim.AdamW([{k: v for k, v in g.items() if k in ("params", "weight_decay")}
                              for g in _optimizer(twin, config, torch.device("cpu")).param_groups],
                             lr=1e-2, betas=(0.9, 0.98), foreach=False)
    tokens = torch.randint(0, 10, (8, 3))
    for _ in range(5):
        for net, optimizer in ((model, fused), (twin, loop)):
            optimizer.zero_grad()
            net(tokens).square().mean().backward()
            optimizer.step()
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
