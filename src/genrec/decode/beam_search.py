"""Trie-constrained beam search, vectorized over requests and beams.

Per level: one model step for all N = batch * beams rows (batch rows at level 0,
where all beams share the empty prefix), one gather of each
row's candidate codes from the trie, a masked log-softmax, one `topk` over
beams × candidates per request, and one `reorder` of the model state (its KV
caches) by the surviving rows. There is no Python loop over requests, beams or
tokens, and no per-token callback, so the cost per level does not depend on
how many items the catalog holds.

`prune_margin` switches to `genrec.decode.pruning`, which drops beams that fell
too far behind their request's best and steps the model on the survivors only.
A model that steps ragged rows (`ragged_rows = True`, e.g. `FastDecoder`) takes
that path even without a margin, with an infinite one: same items and scores,
but the last level steps only prefixes with more than one valid child (a single
child scores 0 whatever the logits), which under a disambiguation level is most
of them.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from genrec.decode.lookahead import LookaheadGuide
from genrec.decode.protocol import BOS_TOKEN, BeamSearchModel, candidate_log_probs, pad_answers, state_rows
from genrec.decode.trie import PrefixTrie


@torch.inference_mode()  # no autograd bookkeeping: ~5% of a CPU decode at batch 64
def constrained_beam_search(
    model: BeamSearchModel, state: Any, trie: PrefixTrie, beams: int, k: int, prune_margin: float | None = None,
    guide: LookaheadGuide | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-k items per request by sequence log-probability, generating only valid SIDs.

    `state` holds `batch` rows (before `model.expand`). Returns `item_ids`
    `[batch, k]` int64 and `scores` `[batch, k]` float32 (sum over levels of the
    trie-masked log-softmax), best first, without duplicates; where fewer than
    k items can be reached the tail is padded with item -1 and score -inf.
    The search is exact when `beams` ≥ the number of items: every valid prefix
    then survives every level. With k > beams at most beams × (the last level's
    fan-out) items can come back. The trie must sit on the model's device.

    `prune_margin` (nats, ≥ 0; None, the default: off) drops a beam once its
    score is more than that far below its request's best beam, so later levels
    step the model on fewer rows (`genrec.decode.pruning.pruned_beam_search`;
    the model must accept a ragged `reorder` index). Faster, and approximate.
    Models with `ragged_rows = True` always take that path (margin inf when None: exact).

    `guide` (`genrec.decode.lookahead`) adds each level's text-lookahead bonus to the
    candidates' scores, so the search keeps the prefixes whose items could still match
    the query; the returned scores then include `guide.item_total` of the returned items.
    """
    if beams < 1:
        raise ValueError(f"beams must be ≥ 1, got {beams}")
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    if prune_margin is not None or getattr(model, "ragged_rows", False):
        from genrec.decode.pruning import pruned_beam_search

        return pruned_beam_search(model, state, trie, beams, k, math.inf if prune_margin is None else prune_margin,
                                  guide)
    batch = state_rows(model, state)
    device = trie.leaf_item_ids.device
    # Level 0 runs once per request: every beam would start from the same empty prefix, so the
    # state is expanded to `beams` rows only after the first topk (a quarter of a 4-level decode).
    tokens = torch.full((batch,), BOS_TOKEN, dtype=torch.int64, device=device)
    node_ids = torch.zeros(batch, dtype=torch.int64, device=device)
    scores = torch.zeros(batch, device=device)

    for level in range(trie.levels):
        logits, state = model.step(state, tokens, level)
        codes, child_ids, valid = trie.children(level, node_ids)  # [rows, C] each
        width = codes.shape[1]
        rows_per_request = scores.shape[0] // batch  # 1 at level 0, `beams` after
        step_log_probs = candidate_log_probs(logits, codes, valid, trie.level_sizes[level], level)
        if guide is not None:
            request = torch.arange(batch, device=device).repeat_interleave(rows_per_request)
            step_log_probs = step_log_probs + guide.bonus(level, child_ids, request)
        total = (scores[:, None] + step_log_probs).reshape(batch, rows_per_request * width)

        if level == trie.levels - 1:
            keep = min(k, total.shape[1])
            best_scores, best = torch.topk(total, keep, dim=1)  # [batch, keep]
            leaves = child_ids.reshape(batch, -1).gather(1, best)
            item_ids = torch.where(best_scores > float("-inf"), trie.item_at(leaves), -1)
            return pad_answers(item_ids, best_scores, k)

        best_scores, best = torch.topk(total, min(beams, total.shape[1]), dim=1)
        if best.shape[1] < beams:  # fewer valid prefixes than beams (only possible at level 0)
            missing = beams - best.shape[1]
            best_scores = torch.cat([best_scores, best_scores.new_full((batch, missing), float("-inf"))], 1)
            best = torch.cat([best, best[:, :1].expand(batch, missing)], 1)
        parent_rows = (best // width + (torch.arange(batch, device=device) * rows_per_request)[:, None]).reshape(-1)
        chosen = best.reshape(-1) % width
        scores = best_scores.reshape(-1)
        # Dead rows (score -inf) park at node 0 of the next depth, which always has children.
        node_ids = torch.where(scores > float("-inf"), child_ids[parent_rows, chosen], 0)
        tokens = codes[parent_rows, chosen]
        if rows_per_request == 1:
            state = model.expand(state, beams)  # row b * beams + j copies request b, its only parent
        else:
            state = model.reorder(state, parent_rows)
    raise AssertionError("unreachable: the trie has at least one level")


