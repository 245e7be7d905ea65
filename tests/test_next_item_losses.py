"""The sequence baselines' two losses: the sampled softmax equals its definition (logQ-corrected
logits, accidental hits masked), is chosen by `SASRecConfig.loss`, and trains a model that learns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_sasrec import small_config, successor_world

from genrec.baselines.next_item_losses import SampledSoftmaxLoss, full_softmax_loss, next_item_loss
from genrec.baselines.sasrec import SASRec, SASRecConfig, SASRecModelConfig, SASRecRetriever
from genrec.data.splits import build_requests, leave_one_out


def tiny_model(n_items: int = 12, seed: int = 0) -> SASRec:
    torch.manual_seed(seed)
    model = SASRec(SASRecModelConfig(n_items=n_items, max_history=6, dim=16, heads=2, layers=1, dropout=0.0))
    with torch.no_grad():
        model.item_bias.normal_()  # a non-zero bias, so a loss that drops it is caught
    return model.eval()


def batch_of() -> dict[str, torch.Tensor]:
    inputs = torch.tensor([[1, 2, 3, 4, 5, 0], [7, 8, 9, 0, 0, 0]])
    targets = torch.tensor([[2, 3, 4, 5, 6, 0], [8, 9, 10, 0, 0, 0]])
    return {"inputs": inputs, "targets": targets}


def test_sampled_softmax_is_cross_entropy_over_the_target_and_the_drawn_negatives_with_log_q_subtracted():
    model, batch = tiny_model(), batch_of()
    counts = np.r_[0, np.arange(1, 13) ** 2].astype(np.int64)  # very unequal: the correction matters
    loss_fn = SampledSoftmaxLoss(counts, negatives=7, sampler="popularity")
    torch.manual_seed(3)
    got = loss_fn(model, batch)

    torch.manual_seed(3)  # the same draw, recomputed from the definition
    probability = (counts[1:] + 1.0) / (counts[1:] + 1.0).sum()
    negatives = torch.multinomial(torch.tensor(np.r_[0.0, probability], dtype=torch.float32), 7, replacement=True)
    with torch.no_grad():
        hidden = model(batch["inputs"])
    real = batch["targets"] > 0
    losses = []
    def corrected(h: torch.Tensor, item: int) -> float:
        with torch.no_grad():
            score = float(h @ model.item_vectors(torch.tensor(item)) + model.item_bias[item])
        return score - math.log(7 * probability[item - 1])

    for h, target in zip(hidden[real], batch["targets"][real]):
        logits = [corrected(h, int(target))] + [corrected(h, int(n)) if n != target else -math.inf for n in negatives]
        losses.append(-F.log_softmax(torch.tensor(logits), dim=0)[0])
    assert torch.allclose(got, torch.stack(losses).mean(), atol=1e-5)


def test_a_negative_equal_to_the_target_is_masked_so_a_one_item_catalogue_has_zero_loss():
    model = tiny_model(n_items=1)
    batch = {"inputs": torch.tensor([[1, 1, 0]]), "targets": torch.tensor([[1, 1, 0]])}
    assert float(SampledSoftmaxLoss(np.array([0, 5]), negatives=4)(model, batch)) == 0.0


def test_the_config_chooses_the_loss_and_refuses_unknown_names():
    assert next_item_loss("ce", np.ones(5), 8, "uniform") is full_softmax_loss
    assert isinstance(next_item_loss("sampled", np.ones(5), 8, "popularity"), SampledSoftmaxLoss)
    with pytest.raises(ValueError, match="loss"):
        SASRecConfig(loss="bpr")
    with pytest.raises(ValueError, match="negative_sampler"):
        SASRecConfig(loss="sampled", negative_sampler="hard")
    with pytest.raises(ValueError, match="negatives"):
        SASRecConfig(negatives=0)
    assert SASRecConfig.from_dict({"loss": "sampled", "negatives": 64}).negatives == 64


def test_sasrec_trained_with_sampled_softmax_learns_the_successor_pattern(tmp_path):
    dataset = successor_world()
    split = leave_one_out(dataset.events)
    config = small_config(steps=200)
    config.loss, config.negatives = "sampled", 16  # fewer negatives than the 40 items
    retriever = SASRecRetriever.train(tmp_path, dataset, split, config)
    requests, targets = build_requests(split, "test", max_history=8)
    first = np.array([a.item_ids[0] for a in retriever.retrieve(requests, k=5)])
    assert np.mean(first == targets) > 0.8
