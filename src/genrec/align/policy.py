"""The generative model read as a policy over items: log π(item | request).

Alignment needs the probability the model gives a *whole* item, the same number
beam search ranks by: the sum over levels of the trie-masked log-softmax (codes
that lead to no real item are removed at every level before normalising). With
it, every objective in `genrec.align.objectives` is a function of item
log-probabilities, and the aligned model ranks exactly by what was trained.

Only the model's public teacher-forced call is used, `model(batch, codes) -> [B,
V_level] logits per level`: a request scored for K candidate items is repeated
K times (`repeat_rows`), so the model's internals stay free to change.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from genrec.decode.beam_search import constrained_beam_search
from genrec.decode.trie import PrefixTrie
from genrec.retrieval import Request


def item_log_probs(model, batch, codes: torch.Tensor, trie: PrefixTrie) -> torch.Tensor:
    """log π(item) `[N]` of the SIDs `codes` `[N, L]` for the `N` requests of `batch`.

    Differentiable. Equals `constrained_beam_search`'s score of the same item.
    """
    return trajectory(model, batch, codes, trie)[0]


def trajectory(model, batch, codes: torch.Tensor, trie: PrefixTrie) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One teacher-forced pass along `codes` `[N, L]`: log π(item) `[N]` and the trie-masked
    log-distribution `[N, V_level]` at every level (what the KL term compares)."""
    logits = model(batch, codes)
    nodes = torch.zeros(codes.shape[0], dtype=torch.long, device=codes.device)
    total = torch.zeros(codes.shape[0], device=codes.device)
    levels = []
    for level, level_logits in enumerate(logits):
        log_p = masked_log_softmax(level_logits, trie, level, nodes)
        levels.append(log_p)
        total = total + log_p.gather(1, codes[:, level:level + 1]).squeeze(1)
        nodes = trie.advance(level, nodes, codes[:, level])
        if bool((nodes < 0).any()):
            raise ValueError(f"codes holds a SID that is not in the trie (at level {level})")
    return total, levels


def masked_log_softmax(logits: torch.Tensor, trie: PrefixTrie, level: int, nodes: torch.Tensor) -> torch.Tensor:
    """log-softmax of `logits` `[N, V]` over the codes the prefixes `nodes` `[N]` allow; -inf elsewhere."""
    allowed = trie.allowed_mask(level, nodes)[:, : logits.shape[1]]
    if allowed.shape[1] < logits.shape[1]:
        allowed = F.pad(allowed, (0, logits.shape[1] - allowed.shape[1]))
    return torch.log_softmax(logits.float().masked_fill(~allowed, float("-inf")), dim=1)


def head_log_probs(model, batch, items: torch.Tensor, head_only: bool = False) -> torch.Tensor | None:
    """The item head's log p(item) `[B, K]` of `items` `[B, K]` (-1 pads score 0) for the
    requests of `batch`, or None for a model without an item head. Differentiable.

    The head re-ranks the served beams, so an objective that should move what the
    model serves moves this number beside the SID path's (`trajectory`). `head_only`
    stops the gradient at the summary vector.
    """
    head = getattr(model, "item_head", None)
    if head is None:
        return None
    with torch.set_grad_enabled(torch.is_grad_enabled() and not head_only):  # head_only: the encoder stays
        summary = model.encode_memory(batch)[2]
    return head.score(summary, items.to(summary.device))


def repeat_rows(batch, times: int):
    """`batch` with each request repeated `times` times, request-major: row b*times + j is request b."""
    rows = torch.arange(batch.batch_size, device=batch.query.device).repeat_interleave(times)
    return batch.index(rows)


def propose(model, encoder, trie: PrefixTrie, requests: list[Request], beams: int, k: int) -> np.ndarray:
    """The policy's own top-`k` items per request by constrained beam search: item ids `[B, k]` (-1 pads)."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        state = model.encode(encoder.transform(requests).to(device))
        items, _ = constrained_beam_search(model, state, trie, max(beams, k), k)
    finally:
        model.train(was_training)
    return items.cpu().numpy()


class CodeBook:
    """Item id → SID row lookup, vectorized (`codes_of(item_ids [..]) -> [.., L]`, -1 ids give code 0)."""

    def __init__(self, item_ids: np.ndarray, codes: np.ndarray):
        item_ids = np.asarray(item_ids, dtype=np.int64)
        self.codes = np.asarray(codes, dtype=np.int64)
        self.row = np.full(int(item_ids.max()) + 2 if len(item_ids) else 1, -1, dtype=np.int64)
        self.row[item_ids] = np.arange(len(item_ids))

    def has(self, item_ids: np.ndarray) -> np.ndarray:
        item_ids = np.asarray(item_ids, dtype=np.int64)
        inside = (item_ids >= 0) & (item_ids < len(self.row))
        return inside & (self.row[np.where(inside, item_ids, 0)] >= 0)

    def codes_of(self, item_ids: np.ndarray) -> np.ndarray:
        item_ids = np.asarray(item_ids, dtype=np.int64)
        known = self.has(item_ids)
        rows = np.where(known, self.row[np.where(known, item_ids, 0)], 0)
        return np.where(known[..., None], self.codes[rows], 0)
