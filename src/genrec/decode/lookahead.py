"""A search's query text as a lookahead inside the beam search, so items the query names reach the beams.

A search's final score adds `w · cos(query, item)` (the item head's text match):
it can re-order the beams, but an item that fell out of the beam at an early
level never gets that term. Long-tail items are the usual victims — the model
puts little mass on their prefixes, though their titles may answer the query
word for word. The lookahead adds, while searching, the best text match any
item below a prefix could still get:

    guided(prefix) = log p(prefix | request) + w · max_{item below prefix} cos(query, item)

Per level the search adds the *change* of that maximum from parent to child
(never positive: a child's items are a subset of its parent's), so a beam's
guided score is always its prefix's log-prob plus its prefix's bound, and after
the last level each item's guided score is `log p(item) + w · cos(item) −
w · max_all cos`. `LookaheadGuide.item_total` is that added part, which the
retriever takes off again: the final ranking is the same formula as without
the lookahead, only the set of items that survive to be ranked differs. A prefix
with one item below has the same bound as its child, so forced levels stay free
(the pruned search's skipping of them stays exact).

Cost: one `[batch, d] × [d, items]` product and one scatter-max per level per
batch, so it is for catalogues that fit a dense per-request item table (it is
off unless a weight is set).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genrec.decode.trie import PrefixTrie


@dataclass(frozen=True)
class TextLookahead:
    """A trie's item text vectors in leaf order and each leaf's ancestor at every depth.

    `leaf_vectors [n_leaves, d]` unit rows (zero: no text), `ancestors[l] [n_leaves]` the node at
    depth l + 1 above each leaf, `parents[l] [nodes at depth l + 1]` that node's parent at depth l,
    `leaf_of_item [max item id + 1]` the leaf of an item id (-1: not in the trie).
    """

    leaf_vectors: torch.Tensor
    ancestors: tuple[torch.Tensor, ...]
    parents: tuple[torch.Tensor, ...]
    leaf_of_item: torch.Tensor

    @classmethod
    def from_trie(cls, trie: PrefixTrie, item_vectors: torch.Tensor) -> TextLookahead:
        """`item_vectors [n_slots, d]`: the text vector of each item id (row = id), for every trie item."""
        leaf_items = trie.leaf_item_ids.cpu()
        if item_vectors.ndim != 2 or int(leaf_items.max()) >= len(item_vectors):
            raise ValueError(f"item_vectors must be [n_slots, d] with a row for every item id up to "
                             f"{int(leaf_items.max())}, got {list(item_vectors.shape)}")
        vectors = F.normalize(item_vectors[leaf_items].float(), dim=-1)
        parents = tuple(torch.repeat_interleave(torch.arange(level.num_nodes), level.fanout().cpu())
                        for level in trie.trie_levels)
        ancestors = [torch.arange(len(leaf_items))]
        for level in range(trie.levels - 1, 0, -1):
            ancestors.append(parents[level][ancestors[-1]])
        leaf_of_item = torch.full((int(leaf_items.max()) + 1,), -1, dtype=torch.int64)
        leaf_of_item[leaf_items] = torch.arange(len(leaf_items))
        device = trie.leaf_item_ids.device
        return cls(vectors.to(device), tuple(a.to(device) for a in reversed(ancestors)),
                   tuple(p.to(device) for p in parents), leaf_of_item.to(device))

    def guide(self, query_vectors: torch.Tensor, weights: torch.Tensor) -> LookaheadGuide:
        """The per-request step bonuses for `query_vectors [B, d]` at `weights [B]` (≥ 0; 0: unguided)."""
        if query_vectors.ndim != 2 or query_vectors.shape[1] != self.leaf_vectors.shape[1]:
            raise ValueError(f"query_vectors must be [B, {self.leaf_vectors.shape[1]}], got {list(query_vectors.shape)}")
        if weights.shape != (len(query_vectors),) or bool((weights < 0).any()):
            raise ValueError(f"weights must be [{len(query_vectors)}] and ≥ 0")
        cosine = F.normalize(query_vectors.float(), dim=-1) @ self.leaf_vectors.T  # [B, n_leaves]
        weights = weights.float()[:, None]
        root = cosine.max(1, keepdim=True).values  # the root's bound, [B, 1] (node 0 at depth 0)
        parent_bound = root
        steps = []
        for level, ancestor in enumerate(self.ancestors):
            bound = cosine.new_full((len(cosine), len(self.parents[level])), float("-inf"))
            bound.scatter_reduce_(1, ancestor.expand_as(cosine), cosine, "amax")
            steps.append(weights * (bound - parent_bound[:, self.parents[level]]))
            parent_bound = bound
        return LookaheadGuide(tuple(steps), weights * (cosine - root), self.leaf_of_item)


@dataclass(frozen=True)
class LookaheadGuide:
    """One batch's bonuses: `steps[l] [B, nodes at depth l + 1]`, `leaf_total [B, n_leaves]` (their sum
    along each leaf's path: w · (cos(item) − max cos)), `leaf_of_item` as in `TextLookahead`."""

    steps: tuple[torch.Tensor, ...]
    leaf_total: torch.Tensor
    leaf_of_item: torch.Tensor

    def bonus(self, level: int, child_ids: torch.Tensor, request: torch.Tensor) -> torch.Tensor:
        """`[N, C]` what level `level` adds to candidates `child_ids [N, C]` of rows of requests `request [N]`."""
        return self.steps[level][request[:, None], child_ids]

    def item_total(self, items: torch.Tensor) -> torch.Tensor:
        """`[B, K]` the guide's whole contribution to the scores of `items [B, K]` (-1: 0)."""
        leaves = self.leaf_of_item[items.clamp(min=0)]
        total = self.leaf_total.gather(1, leaves.clamp(min=0))
        return torch.where((items >= 0) & (leaves >= 0), total, torch.zeros_like(total))
