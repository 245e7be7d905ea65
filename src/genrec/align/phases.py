"""The losses of the alignment phases, each `loss(model, example_rows) -> scalar` for the training loop.

Built over an `AlignmentContext` (the policy, its request encoder and trie, the
examples): `sft_loss` (reward-weighted SFT), `distillation_loss` (a teacher's
lists), `grpo_rollout_loss` (GRPO over the policy's own beams, KL to a frozen
reference). `genrec.align.stage` chains them; the tests drive them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from genrec.align.config import AlignConfig
from genrec.align.examples import AlignExamples, TeacherLists
from genrec.align.objectives import group_advantages, grpo_loss, level_kl, listwise_distillation, weighted_nll
from genrec.align.policy import CodeBook, head_log_probs, propose, repeat_rows, trajectory


@dataclass
class AlignmentContext:
    """What every phase's loss reads: the policy, its encoder and trie, the examples and their PARS weights."""

    config: AlignConfig
    model: Any
    encoder: Any
    trie: Any
    codebook: CodeBook
    examples: AlignExamples
    pars_weights: np.ndarray
    reference: Any = None
    starts: dict = field(default_factory=dict)
    """phase → the model's weights when it began (restored when validation drops the phase)"""


def sft_loss(c: AlignmentContext, weights: np.ndarray) -> Callable:
    """Reward-weighted SFT: −Σ w log π(target) / Σ w over a batch of example rows."""
    def loss(model, rows: np.ndarray) -> torch.Tensor:
        _dropout(model, c.config.dropout)
        requests = [c.examples.requests[i] for i in rows]
        codes = torch.from_numpy(c.codebook.codes_of(c.examples.targets[rows]))
        log_p, _ = trajectory(model, c.encoder.transform(requests), codes, c.trie)
        return weighted_nll(log_p, torch.from_numpy(weights[rows]))
    return loss


def distillation_loss(c: AlignmentContext, lists: TeacherLists) -> Callable:
    """List-wise distillation of `lists` (the teacher's items and weights per example row).

    Into the item head (weight `head_weight`): the head re-ranks the served beams, so it
    is where the teacher's order among them (look-alike items the SID path cannot tell
    apart) is learned. Into the SID path as well with `distill_sid`, and always for a
    model without a head. Head alone, the gradient stops at the summary vector, so the
    beams the model generates stay exactly the trained model's. With `distill_encoder` the
    head's lists also train the encoder, and the SID path's NLL of the logged target
    (weight `anchor_weight`) keeps it generating what it did."""
    def loss(model, rows: np.ndarray) -> torch.Tensor:
        _dropout(model, c.config.dropout)
        requests = [c.examples.requests[i] for i in rows]
        items = lists.item_ids[rows]
        valid = torch.from_numpy(items >= 0)
        items = np.where(items >= 0, items, items[:, :1])  # padding scored as the first item, then masked out
        width = items.shape[1]
        teacher = torch.from_numpy(lists.weights[rows])
        encoded = c.encoder.transform(requests)
        has_head = getattr(model, "item_head", None) is not None
        into_sid = c.config.distill_sid or not has_head  # a head-less model learns them in its SID path
        total = torch.zeros(())
        if into_sid:
            codes = torch.from_numpy(c.codebook.codes_of(items).reshape(-1, c.codebook.codes.shape[1]))
            log_p, _ = trajectory(model, repeat_rows(encoded, width), codes, c.trie)
            total = listwise_distillation(log_p.view(len(rows), width), teacher, valid)
        if has_head and c.config.head_weight:
            through_encoder = into_sid or c.config.distill_encoder
            head = head_log_probs(model, encoded, torch.from_numpy(items), head_only=not through_encoder)
            assert head is not None  # has_head
            total = total + c.config.head_weight * listwise_distillation(head, teacher, valid)
        if has_head and c.config.distill_encoder and c.config.anchor_weight:  # the beams stay the model's own
            codes = torch.from_numpy(c.codebook.codes_of(c.examples.targets[rows]))
            log_p, _ = trajectory(model, encoded, codes, c.trie)
            total = total + c.config.anchor_weight * weighted_nll(log_p, torch.ones(len(rows)))
        return total
    return loss


def grpo_rollout_loss(c: AlignmentContext, reward) -> Callable:
    """GRPO over the policy's own `grpo_group` beams per request, rewarded by `reward`, with
    `kl_weight` · KL to `c.reference` (the frozen model that entered the phase)."""
    config = c.config

    def loss(model, rows: np.ndarray) -> torch.Tensor:
        _dropout(model, config.dropout)
        requests = [c.examples.requests[i] for i in rows]
        items = propose(model, c.encoder, c.trie, requests, config.grpo_group, config.grpo_group)
        valid = items >= 0
        rewards = torch.from_numpy(reward.score(requests, items))
        items = np.where(valid, items, items[:, :1])
        width = items.shape[1]
        codes = torch.from_numpy(c.codebook.codes_of(items).reshape(-1, c.codebook.codes.shape[1]))
        batch = repeat_rows(c.encoder.transform(requests), width)
        valid_t = torch.from_numpy(valid)
        log_p, levels = trajectory(model, batch, codes, c.trie)
        kl = None
        if config.kl_weight:
            if c.reference is None:
                raise ValueError("kl_weight > 0 needs a reference model (AlignmentContext.reference)")
            with torch.no_grad():
                _, reference = trajectory(c.reference, batch, codes, c.trie)
            kl = level_kl(levels, reference)
        advantages = group_advantages(rewards, valid_t, debiased=config.debiased)
        return grpo_loss(log_p.view(len(rows), width), advantages, valid_t, kl, config.kl_weight)
    return loss


def _dropout(model, on: bool) -> None:
    """Alignment runs without dropout unless asked: the KL term and the policy's own
    beams must see the model that serves."""
    if not on:
        model.eval()
