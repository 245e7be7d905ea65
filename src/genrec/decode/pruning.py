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

A beam whose prefix has only one item below it is never stepped again: each of
its remaining levels has one valid child, whose trie-masked log-softmax is 0
whatever the logits, so its score is final and it competes in every later topk
without a decoder row (under a disambiguation level that is most beams at the
last level, and under a sparse catalog many at the level before). This part is
exact; `margin` = inf keeps only it (and the drop of dead beams), and it is what
`constrained_beam_search` runs for a model with `ragged_rows = True`.
"""

from __future__ import annotations

from typing import Any

import torch

from genrec.decode.lookahead import LookaheadGuide
from genrec.decode.protocol import BOS_TOKEN, BeamSearchModel, candidate_log_probs, pad_answers, state_rows
from genrec.decode.trie import PrefixTrie


@torch.inference_mode()
def pruned_beam_search(model: BeamSearchModel, state: Any, trie: PrefixTrie, beams: int, k: int,
                       margin: float, guide: LookaheadGuide | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`constrained_beam_search` with beams more than `margin` nats below their request's best dropped.

    Same inputs and outputs as `constrained_beam_search`. The request's best beam
    is never dropped; `margin` = inf drops only dead beams (score -inf, which can
    never reach the answer), so it returns the unpruned search's items and scores.
    The model holds only the rows with more than one item below (`PrefixTrie.branches`):
    `model.reorder` receives, for those of the surviving rows, their parents' places
    among the rows it held `[N']`, request-major and non-decreasing in request, with
    0 to `beams` rows per request. `guide` as in `constrained_beam_search`.
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
    # The rows the model holds: those with more than one item below (the others' SIDs are forced).
    held = trie.branches(0, node_ids).nonzero()[:, 0]
    if len(held) < batch:
        state = model.reorder(state, held)

    for level in range(trie.levels):
        codes, child_ids, valid = trie.children(level, node_ids)  # [rows, C] each
        width = codes.shape[1]
        if len(held) == len(tokens):
            logits, state = model.step(state, tokens, level)
            log_probs = candidate_log_probs(logits, codes, valid, trie.level_sizes[level], level)
        else:  # a row with one valid child scores it 0 whatever the model says
            log_probs = torch.zeros(valid.shape, device=device).masked_fill(~valid, float("-inf"))
            if len(held):
                logits, state = model.step(state, tokens[held], level)
                log_probs[held] = candidate_log_probs(logits, codes[held], valid[held], trie.level_sizes[level], level)
        if guide is not None:
            log_probs = log_probs + guide.bonus(level, child_ids, request)
        row_total = scores[:, None] + log_probs  # [rows, C]

        # Ragged rows → one [batch, slots * C] table (slot = a row's place among its request's rows).
        counts = torch.bincount(request, minlength=batch)
        slots = int(counts.max())
        row_at = torch.arange(len(request), device=device)
        if len(request) == batch * slots:  # every request has `slots` rows: already a table
            total, row_at = row_total.view(batch, slots * width), row_at.view(batch, slots)
        else:
            slot = row_at - (torch.cumsum(counts, 0) - counts)[request]
            total = row_total.new_full((batch, slots, width), float("-inf"))
            total[request, slot] = row_total
            row_at = torch.zeros(batch, slots, dtype=torch.int64, device=device).index_put_((request, slot), row_at)
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
        if bool(alive.all()):  # nothing dropped (always so under an exact search of a full trie): no masking
            parent_rows, chosen, scores = parents.reshape(-1), chosen.reshape(-1), best_scores.reshape(-1)
            request = requests.expand_as(alive).reshape(-1)
        else:
            parent_rows, chosen, scores = parents[alive], chosen[alive], best_scores[alive]
            request = requests.expand_as(alive)[alive]
        node_ids = child_ids[parent_rows, chosen]
        tokens = codes[parent_rows, chosen]
        # A kept row that branches descends from a held row (its parent branched too): its model row
        # continues that held row's place. Rows whose SID is now forced leave the model.
        branching = trie.branches(level + 1, node_ids)
        place = torch.full((len(log_probs),), -1, dtype=torch.int64, device=device)
        place[held] = torch.arange(len(held), device=device)
        held = branching.nonzero()[:, 0]
        state = model.reorder(state, place[parent_rows[held]])
    raise AssertionError("unreachable: the trie has at least one level")
