"""HSTU: its layer is causal, its attention is pointwise SiLU (not a softmax), its gate U
multiplies the attention output, and as a retriever it trains, saves and loads like SASRec."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_sasrec import small_config, successor_world

from genrec.artifacts import MissingStageError
from genrec.baselines.hstu import HSTUBlock, HSTUConfig, HSTURetriever, hstu_block
from genrec.baselines.sasrec import SASRec, SASRecModelConfig
from genrec.data.splits import build_requests, leave_one_out
from genrec.registry import build_retriever
from genrec.retrieval import Retriever


def hstu_model(seed: int = 0) -> SASRec:
    torch.manual_seed(seed)
    config = SASRecModelConfig(n_items=30, max_history=10, dim=16, heads=2, layers=2, dropout=0.0)
    return SASRec(config, block=hstu_block).eval()


def test_a_prefix_output_never_depends_on_later_positions():
    model = hstu_model()
    items = torch.tensor([[3, 7, 1, 9, 4, 12, 5, 0, 0, 0]])
    changed = items.clone()
    changed[0, 4:] = torch.tensor([20, 21, 22, 23, 24, 25])  # new future, same prefix of 4
    with torch.no_grad():
        short, long, other = model(items[:, :4]), model(items), model(changed)
    assert torch.allclose(long[:, :4], short, atol=1e-6)
    assert torch.allclose(other[:, :4], short, atol=1e-6)
    assert not torch.allclose(other[:, 4:], long[:, 4:], atol=1e-3)  # the later positions do read the change


def test_attention_weights_are_pointwise_silu_and_do_not_sum_to_one():
    """With every position identical, a softmax would give every position the same average; HSTU's
    un-normalised SiLU weights sum the i + 1 visible positions, so position i's output is i + 1 times
    position 0's."""
    torch.manual_seed(0)
    block = HSTUBlock(dim=8, heads=2, dropout=0.0, max_length=6).eval()
    x = torch.randn(1, 1, 8).expand(1, 6, 8).contiguous()
    with torch.no_grad():
        _, attended = block.gate_and_attend(x)
    for position in range(6):
        assert torch.allclose(attended[0, position], (position + 1) * attended[0, 0], atol=1e-6)

    # and the weights themselves are SiLU(q·k + bias) / max_length, causal
    with torch.no_grad():
        block.relative_bias.copy_(torch.linspace(-1, 1, 6))
        x = torch.randn(1, 6, 8)
        _, attended = block.gate_and_attend(x)
        _, v, q, k = F.silu(block.uvqk(block.input_norm(x))).split(8, dim=-1)
        head = slice(0, 4)  # the first head's dimensions
        expected = torch.zeros(6, 4)
        for i in range(6):
            for j in range(i + 1):
                weight = F.silu(q[0, i, head] @ k[0, j, head] + block.relative_bias[i - j]) / 6
                expected[i] += weight * v[0, j, head]
    assert torch.allclose(attended[0, :, head], expected, atol=1e-5)


def test_the_gate_u_multiplies_the_attention_output():
    torch.manual_seed(0)
    block = HSTUBlock(dim=8, heads=2, dropout=0.0, max_length=5).eval()
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        assert not torch.allclose(block(x), x)
        block.uvqk.weight[:8].zero_()  # U = SiLU(0) = 0: nothing passes the gate
        block.uvqk.bias[:8].zero_()
        assert torch.allclose(block(x), x + block.out.bias, atol=1e-6)


def test_sequences_longer_than_max_history_are_refused():
    block = HSTUBlock(dim=8, heads=2, dropout=0.0, max_length=4)
    with pytest.raises(ValueError, match="max_history"):
        block(torch.zeros(1, 5, 8))


def test_hstu_retriever_learns_the_successor_pattern_and_loads_from_its_own_folder(tmp_path):
    dataset = successor_world()
    split = leave_one_out(dataset.events)
    base = small_config(steps=120)
    config = HSTUConfig(**{**base.__dict__, "dim": 32})
    with pytest.raises(MissingStageError, match="--model hstu"):
        HSTURetriever.from_run(tmp_path, dataset, split, config)
    trained = HSTURetriever.train(tmp_path, dataset, split, config)
    assert isinstance(trained, Retriever) and trained.name == "hstu"
    assert (tmp_path / "train" / "hstu" / "best.pt").exists() and not (tmp_path / "train" / "sasrec").exists()
    assert all(isinstance(block, HSTUBlock) for block in trained.model.blocks)
    requests, targets = build_requests(split, "test", max_history=8)
    first = np.array([a.item_ids[0] for a in trained.retrieve(requests, k=5)])
    assert np.mean(first == targets) > 0.8
    loaded = HSTURetriever.from_run(tmp_path, dataset, split, config)
    for name, tensor in trained.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor)


def test_the_registry_builds_hstu_and_names_its_training_command(tmp_path):
    dataset = successor_world()
    with pytest.raises(MissingStageError, match="genrec train --run .* --model hstu"):
        build_retriever("hstu", tmp_path, dataset, leave_one_out(dataset.events))
