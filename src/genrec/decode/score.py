"""The sequence log-probability of given SIDs, on the scale beam search ranks by.

Beam search only scores the prefixes it keeps. An item that comes from
elsewhere — a candidate another stage proposes, a reasoned candidate
(`genrec.rolegen`) — is scored here by teacher forcing its own SID through the
same `BeamSearchModel` protocol: level by level, the trie-masked log-softmax of
the code it takes, summed. For an item the beam search also returned, the two
scores agree (a test holds it), so the two kinds of candidates can be ranked
together.
"""

from __future__ import annotations

from typing import Any

import torch

from genrec.decode.protocol import BOS_TOKEN, BeamSearchModel, candidate_log_probs, state_rows
from genrec.decode.trie import PrefixTrie


@torch.inference_mode()
def sid_log_probs(model: BeamSearchModel, state: Any, trie: PrefixTrie, codes: torch.Tensor) -> torch.Tensor:
    """`[batch, m]` log p(SID) of `codes` `[batch, m, levels]` (valid SIDs of the trie) for the state's requests.

    `state` holds `batch` rows (before `model.expand`), as beam search takes it."""
    batch = state_rows(model, state)
    if codes.ndim != 3 or codes.shape[0] != batch or codes.shape[2] != trie.levels:
        raise ValueError(f"codes must have shape [{batch}, m, {trie.levels}], got {list(codes.shape)}")
    m = codes.shape[1]
    device = trie.leaf_item_ids.device
    flat = codes.reshape(batch * m, trie.levels).to(device=device, dtype=torch.int64)
    total = torch.zeros(batch * m, device=device)
    if m == 0:
        return total.reshape(batch, 0)
    state = model.expand(state, m)  # row b * m + j scores candidate j of request b
    node_ids = torch.zeros(batch * m, dtype=torch.int64, device=device)
    tokens = torch.full((batch * m,), BOS_TOKEN, dtype=torch.int64, device=device)
    for level in range(trie.levels):
        logits, state = model.step(state, tokens, level)
        candidates, _, valid = trie.children(level, node_ids)
        log_probs = candidate_log_probs(logits, candidates, valid, trie.level_sizes[level], level)
        taken = valid & (candidates == flat[:, level, None])
        if not bool(taken.any(1).all()):
            raise ValueError("codes hold a SID that is not in the trie")
        total += torch.where(taken, log_probs, torch.zeros_like(log_probs)).sum(1)
        tokens = flat[:, level]
        node_ids = trie.advance(level, node_ids, tokens)
    return total.reshape(batch, m)
