"""Training losses of the sequence baselines (SASRec, HSTU): which items the next item competes with.

Both read a `batch` of `collate_windows` (`inputs`, `targets` `[batch, length]`,
0 = padding) and a model with `forward(items) -> hidden [batch, length, dim]`,
`item_vectors(ids) -> [..., dim]` and an optional `item_bias` `[n_items + 1]`.

- `full_softmax_loss` ("ce"): cross-entropy over the whole catalogue. Exact, and
  on a CPU its cost is the `[targets, n_items]` logit matrix, which dominates a
  step once the catalogue reaches ten thousand items.
- `SampledSoftmaxLoss` ("sampled"): cross-entropy over the true item and N
  negatives drawn once per batch and shared by every position, with the logQ
  correction (each logit minus the log of its expected count in the sample), so
  the gradient is an unbiased-in-the-limit estimate of the full softmax's even
  when negatives are drawn by popularity. A negative that is the position's own
  target (an accidental hit) is masked out. Its cost is `[targets, N]`, so more
  epochs and wider models fit the same CPU time.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

LOSSES: tuple[str, ...] = ("ce", "sampled")
SAMPLERS: tuple[str, ...] = ("uniform", "popularity")


def full_softmax_loss(model: Any, batch: dict[str, Tensor]) -> Tensor:
    """Full-softmax cross-entropy of the next item at every real position."""
    hidden = model(batch["inputs"])
    real = batch["targets"] > 0
    return full_softmax_of(model, hidden[real], batch["targets"][real])


def full_softmax_of(model: Any, hidden: Tensor, targets: Tensor) -> Tensor:
    """Full-softmax cross-entropy of item ids `targets` `[n]` (≥ 1) for vectors `hidden` `[n, dim]`."""
    return F.cross_entropy(model.item_logits(hidden).float(), targets - 1)


class SampledSoftmaxLoss:
    """Sampled softmax with `negatives` shared negatives per batch and the logQ correction.

    `item_counts` `[n_items + 1]`: training interactions per item id (slot 0, padding, is
    never drawn). `sampler` "uniform" draws items 1..n_items equally; "popularity" in
    proportion to `item_counts + 1` (the +1 keeps every item drawable). Negatives are drawn
    with replacement from torch's global generator, which the training loop seeds and
    checkpoints, so a resumed run draws what the uninterrupted one would have.
    """

    def __init__(self, item_counts: np.ndarray, negatives: int, sampler: str = "uniform"):
        if negatives < 1:
            raise ValueError(f"negatives must be ≥ 1, got {negatives}")
        if sampler not in SAMPLERS:
            raise ValueError(f"negative_sampler must be one of {list(SAMPLERS)}, got {sampler!r}")
        counts = np.asarray(item_counts, dtype=np.float64)
        if counts.ndim != 1 or len(counts) < 2:
            raise ValueError(f"item_counts must be [n_items + 1] with n_items ≥ 1, got shape {counts.shape}")
        weights = np.ones(len(counts) - 1) if sampler == "uniform" else counts[1:] + 1.0
        probability = np.r_[0.0, weights / weights.sum()]
        self.negatives = negatives
        self.probability = torch.as_tensor(probability, dtype=torch.float32)
        # log of each item's expected count among `negatives` draws: the correction the paper-style estimator subtracts
        self.log_expected = torch.as_tensor(np.log(np.maximum(probability * negatives, 1e-30)), dtype=torch.float32)

    def __call__(self, model: Any, batch: dict[str, Tensor]) -> Tensor:
        hidden = model(batch["inputs"])
        real = batch["targets"] > 0
        return self.of(model, hidden[real], batch["targets"][real])

    def of(self, model: Any, hidden: Tensor, targets: Tensor) -> Tensor:
        """The loss of item ids `targets` `[n]` (≥ 1) for vectors `hidden` `[n, dim]`, negatives drawn anew."""
        device = hidden.device
        negatives = torch.multinomial(self.probability, self.negatives, replacement=True).to(device)  # [N]
        log_expected = self.log_expected.to(device)
        positive = (hidden * model.item_vectors(targets)).sum(-1)  # [n]
        negative = hidden @ model.item_vectors(negatives).T  # [n, N]
        if model.item_bias is not None:
            positive = positive + model.item_bias[targets]
            negative = negative + model.item_bias[negatives]
        positive = positive.float() - log_expected[targets]
        negative = negative.float() - log_expected[negatives]
        negative = negative.masked_fill(negatives[None, :] == targets[:, None], -math.inf)  # accidental hits
        logits = torch.cat([positive[:, None], negative], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=device))


def next_item_loss(loss: str, item_counts: np.ndarray, negatives: int, sampler: str):
    """The loss called `loss` ("ce" or "sampled") as a `loss_fn(model, batch)` for `genrec.train.loop.train`."""
    if loss == "ce":
        return full_softmax_loss
    if loss == "sampled":
        return SampledSoftmaxLoss(item_counts, negatives, sampler)
    raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
