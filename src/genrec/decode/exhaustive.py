"""The slow, obviously-correct twin of `constrained_beam_search`, for tests and small catalogs.

It enumerates every valid SID, feeds each one through the model level by
level, masks each step with the allowed codes computed from plain Python sets
of prefixes (not from `PrefixTrie`), and sorts. Cost: batch × items model rows
per level — only for tiny vocabularies.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from genrec.decode.protocol import BOS_TOKEN, BeamSearchModel, state_rows


@torch.no_grad()
def exhaustive_search(
    model: BeamSearchModel, state: Any, codes: Any, item_ids: Any, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k items per request: `item_ids [batch, k]`, `scores [batch, k]`, padded with -1 / -inf.

    `state` holds `batch` rows; `codes [n, L]` and `item_ids [n]` are the catalog's SIDs.
    """
    code_rows = np.asarray(codes, dtype=np.int64).tolist()
    items = torch.as_tensor(np.asarray(item_ids, dtype=np.int64))
    n, levels = len(code_rows), len(code_rows[0])
    allowed_after: dict[tuple[int, ...], set[int]] = {}
    for sid in code_rows:
        for level in range(levels):
            allowed_after.setdefault(tuple(sid[:level]), set()).add(sid[level])

    state = model.expand(state, n)  # row b * n + i follows item i for request b
    rows = state_rows(model, state)
    batch = rows // n
    tokens = torch.full((rows,), BOS_TOKEN, dtype=torch.int64)
    total = torch.zeros(rows)
    for level in range(levels):
        logits, state = model.step(state, tokens, level)
        mask = torch.zeros(logits.shape, dtype=torch.bool)
        for row in range(rows):
            sid = code_rows[row % n]
            for code in allowed_after[tuple(sid[:level])]:
                mask[row, code] = True
        log_probs = torch.log_softmax(logits.float().masked_fill(~mask, float("-inf")), dim=1)
        tokens = torch.tensor([code_rows[row % n][level] for row in range(rows)], dtype=torch.int64)
        total += log_probs[torch.arange(rows), tokens]

    scores = total.reshape(batch, n)
    order = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :k]
    top_scores, top_items = scores.gather(1, order), items[order]
    missing = k - top_items.shape[1]
    if missing > 0:
        top_items = torch.cat([top_items, top_items.new_full((batch, missing), -1)], 1)
        top_scores = torch.cat([top_scores, top_scores.new_full((batch, missing), float("-inf"))], 1)
    return top_items, top_scores
