"""Beam search that drops hopeless beams early, on a ragged row layout.

After each level's topk, a beam whose cumulative log-prob is more than
`margin` nats below its request's best beam is dropped: its score can still
rise relative to the others, but rarely by that much, and every level after
this one costs a decoder row for it. Requests keep different numbers of beams
(a sure request keeps one or two, an unsure one all `beams`), so the rows are
ragged: request-major, each request's surviving beams adjacent, best first,
and the model is stepped on exactly the surviving rows (padding every request
to the widest one would save nothing: in a batch of 64 some request almost
always keeps every beam).

Per level the ragged rows' candidate scores are scattered into one
`[batch, widest * C]` table for the per-request topk, so the search is still
one topk per level with no Python loop over requests. The model must accept a
ragged `reorder` index (`BeamSearchModel`): `FastDecoder` and `TableStepModel` do.
"""

from __future__ import annotations

from typing import Any

import torch

from genrec.decode.beam_search import pad_answers
from genrec.decode.protocol import BOS_TOKEN, BeamSearchModel, state_rows
from genrec.decode.trie import PrefixTrie


@torch.inference_mode()
def pruned_beam_search(model: BeamSearchModel, state: Any, trie: PrefixTrie, beams: int, k: int,
                       margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`constrained_beam_search` with beams more than `margin` nats below their request's best dropped.

    Same inputs and outputs as `constrained_beam_search`. The request's best beam
    is never dropped; `margin` = inf drops only dead beams (score -inf, which can
    never reach the answer), so it returns the unpruned search's items and scores.
    `model.reorder` receives the surviving rows' parents `[N']`, request-major and
    non-decreasing in request, with 1 to `beams` rows per request.
    """
    if not margin >= 0:  # `not >=` also refuses NaN
        raise ValueError(f"prune_margin must be ≥ 0, got {margin}")
    batch = state_rows(model, state)
    device = trie.leaf_item_ids.device
    tokens = torch.full((batch,), BOS_TOKEN, dtype=torch.int64, device=device)
    node_ids = torch.zeros(batch, dtype=torch.int64, device=device)
    scores = torch.zeros(batch, device=device)
    request = torch.arange(batch, device=device)  # the request of each row
    requests = request[:, None]

    for level in range(trie.levels):
        logits, state = model.step(state, tokens, level)
        _check_logits(logits, trie, level, device)
        codes, child_ids, valid = trie.children(level, node_ids)  # [rows, C] each
        width = codes.shape[1]
        candidate_logits = logits.float().gather(1, codes).masked_fill(~valid, float("-inf"))
        row_total = scores[:, None] + torch.log_softmax(candidate_logits, dim=1)  # [rows, C]

        # Ragged rows → one [batch, slots * C] table (slot = a row's place among its request's rows).
        counts = torch.bincount(request, minlength=batch)
        slots = int(counts.max())
        slot = torch.arange(len(request), device=device) - (torch.cumsum(counts, 0) - counts)[request]
        total = row_total.new_full((batch, slots, width), float("-inf"))
        total[request, slot] = row_total
        row_at = torch.zeros(batch, slots, dtype=torch.int64, device=device)
        row_at[request, slot] = torch.arange(len(request), device=device)
        total = total.view(batch, slots * width)

        keep = min(k if level == trie.levels - 1 else beams, slots * width)
        best_scores, best = torch.topk(total, keep, dim=1)  # [batch, keep], best first
        parents, chosen = row_at.gather(1, best // width), best % width
        if level == trie.levels - 1:
            leaves = child_ids[parents, chosen]
            item_ids = torch.where(best_scores > float("-inf"), trie.item_at(leaves), -1)
            return pad_answers(item_ids, best_scores, k)

        # Sorted best first, so each request's survivors are a prefix of its row; its best is finite.
        alive = (best_scores > float("-inf")) & (best_scores >= best_scores[:, :1] - margin)
        parent_rows, chosen = parents[alive], chosen[alive]
        scores = best_scores[alive]
        request = requests.expand_as(alive)[alive]
        node_ids = child_ids[parent_rows, chosen]
        tokens = codes[parent_rows, chosen]
        state = model.reorder(state, parent_rows)
    raise AssertionError("unreachable: the trie has at least one level")


def _check_logits(logits: torch.Tensor, trie: PrefixTrie, level: int, device: torch.device) -> None:
    if logits.device != device:
        raise ValueError(f"model.step returned logits on {logits.device} but the trie is on {device}; "
                         f"move it with trie.to({str(logits.device)!r})")
    if logits.shape[1] < trie.level_sizes[level]:
        raise ValueError(f"model.step returned {logits.shape[1]} columns at level {level}, "
                         f"the trie needs ≥ {trie.level_sizes[level]}")

