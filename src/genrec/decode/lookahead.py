"""An item-level term of the served score as a lookahead inside the beam search, so the items it
favours reach the beams.

A generative retriever's served score is a beam's log-prob plus item-level terms
(`genrec.model.item_head`): for a search, `w · cos(query, item)`. Those terms
re-order the finished beams, but an item that fell out of the beam at an early
level never gets them — typically a long-tail item whose title answers the query
word for word, under a prefix the decoder doubted. The lookahead adds, while
searching, the best bonus any item below a prefix could still get:

    guided(prefix) = log p(prefix | request) + max_{item below prefix} bonus(item)

Per level the search adds the *change* of that maximum from parent to child
(never positive: a child's items are a subset of its parent's), so a beam's
guided score is always its prefix's log-prob plus its prefix's bound, and after
the last level each item's guided score is `log p(item) + bonus(item) −
max_all bonus`. `LookaheadGuide.item_total` is that added part, which the
retriever takes off again: the final ranking is the same formula as without
the lookahead, only the set of items that survive to be ranked differs. A prefix
with one item below has the same bound as its child, so forced levels stay free
(the pruned search's skipping of them stays exact).

`guide` takes any per-item bonus; the retriever uses the text match
(`text_guide`: the searches of a batch, the other requests unguided and free).
Cost: the bonus of every catalogue item per guided request `[searches, items]`
(one matrix product for the text) and one scatter-max per level, so it is for
catalogues that fit a dense per-request item table; it is off unless the
retriever is told to use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genrec.decode.trie import PrefixTrie


@dataclass(frozen=True)
class ItemLookahead:
    """A trie's leaves and each leaf's ancestor at every depth.

    `leaf_items [n_leaves]` the item of each leaf (trie order), `ancestors[l] [n_leaves]` the node at
    depth l + 1 above each leaf, `parents[l] [nodes at depth l + 1]` that node's parent at depth l,
    `leaf_of_item [max item id + 1]` the leaf of an item id (-1: not in the trie), `leaf_text
    [n_leaves, d]` the leaf items' unit text vectors (zero rows: no text; `[n_leaves, 0]`: none given).
    """

    leaf_items: torch.Tensor
    ancestors: tuple[torch.Tensor, ...]
    parents: tuple[torch.Tensor, ...]
    leaf_of_item: torch.Tensor
    leaf_text: torch.Tensor

    @classmethod
    def from_trie(cls, trie: PrefixTrie, item_vectors: torch.Tensor | None = None) -> ItemLookahead:
        """`item_vectors [n_slots, d]` (row = item id), for `text_bonus`: normalised once here, so a
        request pays one product, not a pass over the catalogue's vectors."""
        leaf_items = trie.leaf_item_ids.cpu()
        if item_vectors is None:
            leaf_text = torch.zeros(len(leaf_items), 0)
        elif item_vectors.ndim != 2 or len(item_vectors) <= int(leaf_items.max()):
            raise ValueError(f"item_vectors must be [n_slots, d] with a row for every item id up to "
                             f"{int(leaf_items.max())}, got {list(item_vectors.shape)}")
        else:
            leaf_text = F.normalize(item_vectors.cpu()[leaf_items].float(), dim=-1)
        parents = tuple(torch.repeat_interleave(torch.arange(level.num_nodes), level.fanout().cpu())
                        for level in trie.trie_levels)
        ancestors = [torch.arange(len(leaf_items))]
        for level in range(trie.levels - 1, 0, -1):
            ancestors.append(parents[level][ancestors[-1]])
        leaf_of_item = torch.full((int(leaf_items.max()) + 1,), -1, dtype=torch.int64)
        leaf_of_item[leaf_items] = torch.arange(len(leaf_items))
        device = trie.leaf_item_ids.device
        return cls(leaf_items.to(device), tuple(a.to(device) for a in reversed(ancestors)),
                   tuple(p.to(device) for p in parents), leaf_of_item.to(device), leaf_text.to(device))

    def guide(self, leaf_bonus: torch.Tensor, rows: torch.Tensor | None = None) -> LookaheadGuide:
        """The per-request step bonuses for `leaf_bonus [G, n_leaves]`: the item-level score of every
        leaf's item (finite; a row of zeros leaves that search unguided) for G guided requests.

        `rows [B]` says which row of `leaf_bonus` each of the batch's B requests takes (-1: none, the
        request is not guided); None: request i takes row i. Why rows: in a batch that mixes searches and
        recommendations only the searches have a query to look ahead with, and a recommendation row
        would pay for the `[*, n_leaves]` bonus and every level's scatter-max only to add zeros."""
        if leaf_bonus.ndim != 2 or leaf_bonus.shape[1] != len(self.leaf_items):
            raise ValueError(f"leaf_bonus must be [B, {len(self.leaf_items)}], got {list(leaf_bonus.shape)}")
        if not bool(torch.isfinite(leaf_bonus).all()):
            raise ValueError("leaf_bonus must be finite (an item a request must not get belongs out of the trie)")
        if rows is None:
            rows = torch.arange(len(leaf_bonus), device=leaf_bonus.device)
        rows = torch.as_tensor(rows, dtype=torch.long, device=leaf_bonus.device).reshape(-1)
        if len(rows) and (int(rows.min()) < -1 or int(rows.max()) >= len(leaf_bonus)):
            raise ValueError(f"rows must be in [-1, {len(leaf_bonus)}), got [{int(rows.min())}, {int(rows.max())}]")
        # One zero row after the guided ones: an unguided request reads it and gets bonus 0 everywhere.
        leaf_bonus = torch.cat([leaf_bonus.float(), leaf_bonus.new_zeros(1, leaf_bonus.shape[1], dtype=torch.float)])
        rows = torch.where(rows < 0, torch.full_like(rows, len(leaf_bonus) - 1), rows)
        root = leaf_bonus.max(1, keepdim=True).values  # the root's bound, [B, 1] (node 0 at depth 0)
        parent_bound = root
        steps = []
        for level, ancestor in enumerate(self.ancestors):
            bound = leaf_bonus.new_full((len(leaf_bonus), len(self.parents[level])), float("-inf"))
            bound.scatter_reduce_(1, ancestor.expand_as(leaf_bonus), leaf_bonus, "amax")
            steps.append(bound - parent_bound[:, self.parents[level]])
            parent_bound = bound
        return LookaheadGuide(tuple(steps), leaf_bonus - root, self.leaf_of_item, rows)

    def text_guide(self, query_vectors: torch.Tensor, searches: torch.Tensor, weight: float) -> LookaheadGuide:
        """A batch's text lookahead: `weight` × the query–item cosine for the requests `searches [B]` (bool)
        marks, of `query_vectors [B, d]`; the others are unguided and cost nothing."""
        searches = torch.as_tensor(searches, dtype=torch.bool, device=query_vectors.device).reshape(-1)
        if len(searches) != len(query_vectors):
            raise ValueError(f"searches must have {len(query_vectors)} entries, got {len(searches)}")
        rows = torch.where(searches, torch.cumsum(searches.long(), 0) - 1, -1)  # a search's row among the searches
        query = query_vectors[searches]
        return self.guide(self.text_bonus(query, torch.full((len(query),), float(weight), device=query.device)), rows)

    def text_bonus(self, query_vectors: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """`[B, n_leaves]` weight × cosine of each request's query vector `[B, d]` with each leaf item's
        text vector (zero rows and zero queries give 0)."""
        if not self.leaf_text.shape[1]:
            raise ValueError("this lookahead was built without item vectors (ItemLookahead.from_trie(trie, vectors))")
        if query_vectors.ndim != 2 or query_vectors.shape[1] != self.leaf_text.shape[1]:
            raise ValueError(f"query_vectors must be [B, {self.leaf_text.shape[1]}], got {list(query_vectors.shape)}")
        if weights.shape != (len(query_vectors),) or bool((weights < 0).any()):
            raise ValueError(f"weights must be [{len(query_vectors)}] and ≥ 0")
        return weights.float()[:, None] * (F.normalize(query_vectors.float(), dim=-1) @ self.leaf_text.T)


@dataclass(frozen=True)
class LookaheadGuide:
    """One batch's bonuses: `steps[l] [G + 1, nodes at depth l + 1]`, `leaf_total [G + 1, n_leaves]` (their
    sum along each leaf's path: bonus(item) − max bonus) for the G guided requests and a last row of zeros,
    `leaf_of_item` as in `ItemLookahead`, and `rows [B]` the row each of the batch's requests reads."""

    steps: tuple[torch.Tensor, ...]
    leaf_total: torch.Tensor
    leaf_of_item: torch.Tensor
    rows: torch.Tensor

    def bonus(self, level: int, child_ids: torch.Tensor, request: torch.Tensor) -> torch.Tensor:
        """`[N, C]` what level `level` adds to candidates `child_ids [N, C]` of rows of requests `request [N]`."""
        return self.steps[level][self.rows[request][:, None], child_ids]

    def item_total(self, items: torch.Tensor) -> torch.Tensor:
        """`[B, K]` the guide's whole contribution to the scores of `items [B, K]` (-1: 0)."""
        leaves = self.leaf_of_item[items.clamp(min=0)]
        total = self.leaf_total[self.rows].gather(1, leaves.clamp(min=0))
        return torch.where((items >= 0) & (leaves >= 0), total, torch.zeros_like(total))
