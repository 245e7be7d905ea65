"""All valid Semantic-ID prefixes as tensors, so a whole batch of beams is constrained by one lookup.

Nodes at depth d are the distinct prefixes of length d (depth 0: the root,
depth L: one leaf per item), numbered in lexicographic order of their codes.
Because of that order, the children of one node are a contiguous run of node
ids at the next depth, so each level is stored in whichever form is smaller:

* dense: `child [n_nodes, V_level]` int32, the child node id or -1 — a lookup
  is a single gather; best near the root, where nodes are few and full.
* CSR: `offsets [n_nodes + 1]` and `keys [n_children]` = parent * V + code,
  sorted — memory grows with the number of prefixes, not prefixes × V; best
  for deep, sparse levels (a 1M-item catalog has ~65k depth-2 nodes).

`children(level, node_ids)` returns every row's candidate codes and their child
node ids as `[N, C]` tensors (C = V_level for dense levels, the level's maximum
fan-out for CSR levels); beam search scores those candidates and picks the next
node ids from the same tensors, so it never searches and never loops per beam.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class TrieLevel:
    """The edges from depth `level` to depth `level + 1`; exactly one of `child` / (`offsets`, `keys`) is set."""

    num_nodes: int
    num_children: int
    vocab_size: int
    max_fanout: int
    child: torch.Tensor | None = None  # [num_nodes, vocab_size] int32, -1 = no child
    offsets: torch.Tensor | None = None  # [num_nodes + 1] int64
    keys: torch.Tensor | None = None  # [num_children] int64, parent * vocab_size + code, ascending

    @property
    def is_dense(self) -> bool:
        return self.child is not None

    def csr(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`(offsets, keys)` of a CSR level; callers check `child` first, so a miss is a malformed level."""
        if self.offsets is None or self.keys is None:
            raise ValueError("a TrieLevel without `child` must have both `offsets` and `keys`")
        return self.offsets, self.keys

    def tensors(self) -> list[torch.Tensor]:
        return [t for t in (self.child, self.offsets, self.keys) if t is not None]

    def fanout(self) -> torch.Tensor:
        """`[num_nodes]` int64: children per node (a node's children are one run of ids at the next depth)."""
        if self.child is not None:
            return (self.child >= 0).sum(1)
        return self.csr()[0].diff()

    def to(self, device: torch.device | str) -> TrieLevel:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return TrieLevel(self.num_nodes, self.num_children, self.vocab_size, self.max_fanout,
                         move(self.child), move(self.offsets), move(self.keys))


class PrefixTrie:
    """The valid SIDs of a catalog as per-level tensors; see the module docstring.

    Build with `PrefixTrie.from_codes(codes [n, L], item_ids [n])` or
    `PrefixTrie.from_sid_table(table)`. Node ids given to a level's methods are
    ids at depth `level`; the root is node 0 at depth 0.
    """

    def __init__(self, levels: list[TrieLevel], leaf_item_ids: torch.Tensor) -> None:
        self.trie_levels = levels
        self.leaf_item_ids = leaf_item_ids  # [n_items] int64, item id of leaf node j
        self.branches_below = _branches_below(levels, leaf_item_ids)  # [depth] → [num_nodes] bool

    # ----- construction -------------------------------------------------------------------------
    @classmethod
    def from_codes(
        cls, codes: Any, item_ids: Any, codebook_sizes: list[int] | None = None, storage: str = "auto"
    ) -> PrefixTrie:
        """Build from `codes` `[n, L]` (int, ≥ 0, every row unique) and `item_ids` `[n]`.

        `codebook_sizes[l]` is the number of codes at level l (default: largest
        code + 1); it fixes the width V_l of the level's masks. `storage` is
        "auto" (per level, whichever of dense / CSR takes fewer bytes), "dense" or "csr".
        """
        if storage not in ("auto", "dense", "csr"):
            raise ValueError(f"storage must be 'auto', 'dense' or 'csr', got {storage!r}")
        codes_np = _as_numpy(codes, "codes")
        items_np = _as_numpy(item_ids, "item_ids")
        if codes_np.ndim != 2 or codes_np.shape[1] < 1:
            raise ValueError(f"codes must have shape [n_items, levels] with levels ≥ 1, got {list(codes_np.shape)}")
        n, n_levels = codes_np.shape
        if n == 0:
            raise ValueError("codes must hold at least one item, got 0 rows")
        if items_np.shape != (n,):
            raise ValueError(f"item_ids must have shape [{n}] to match codes, got {list(items_np.shape)}")
        if codes_np.min() < 0:
            raise ValueError(f"codes must be ≥ 0, found {codes_np.min()}")
        sorted_items = np.sort(items_np)
        if n > 1 and (sorted_items[1:] == sorted_items[:-1]).any():
            raise ValueError("item_ids must be unique")
        observed_sizes = (codes_np.max(axis=0) + 1).tolist()
        if codebook_sizes is None:
            codebook_sizes = observed_sizes
        codebook_sizes = [int(s) for s in codebook_sizes]
        if len(codebook_sizes) != n_levels:
            raise ValueError(f"codebook_sizes must have {n_levels} entries (one per level), got {len(codebook_sizes)}")
        for level, (size, seen) in enumerate(zip(codebook_sizes, observed_sizes)):
            if size < seen:
                raise ValueError(f"codebook_sizes[{level}] = {size} but codes use code {seen - 1} at that level")

        order = _lexicographic_order(codes_np, codebook_sizes)
        sorted_codes = codes_np[order]
        if n > 1 and not np.any(sorted_codes[1:] != sorted_codes[:-1], axis=1).all():
            raise ValueError("codes must give every item a distinct SID; found two identical rows")

        # starts_new[d][i]: row i begins a new prefix of length d + 1 (rows are sorted).
        differs = np.ones((n, n_levels), dtype=bool)
        differs[1:] = np.cumsum(sorted_codes[1:] != sorted_codes[:-1], axis=1) > 0
        levels: list[TrieLevel] = []
        parent_of_row = np.zeros(n, dtype=np.int64)  # node id at depth d of each row's prefix
        num_parents = 1
        for depth in range(n_levels):
            first_rows = np.flatnonzero(differs[:, depth])
            parents = parent_of_row[first_rows]
            child_codes = sorted_codes[first_rows, depth]
            levels.append(_build_level(parents, child_codes, num_parents, codebook_sizes[depth], storage))
            parent_of_row = np.cumsum(differs[:, depth]) - 1
            num_parents = len(first_rows)
        return cls(levels, torch.from_numpy(items_np[order].astype(np.int64)))

    @classmethod
    def from_sid_table(cls, table: Any) -> PrefixTrie:
        """Build from a `genrec.sid.SidTable` (`item_ids [n]`, `codes [n, L]`, `codebook_sizes`)."""
        return cls.from_codes(table.codes, table.item_ids, list(table.codebook_sizes))

    # ----- shape --------------------------------------------------------------------------------
    @property
    def levels(self) -> int:
        return len(self.trie_levels)

    @property
    def level_sizes(self) -> list[int]:
        """V_l, the width of level l's masks."""
        return [lv.vocab_size for lv in self.trie_levels]

    @property
    def vocab_size(self) -> int:
        """The widest level; `allowed_mask` rows and the model's logits have this many columns."""
        return max(self.level_sizes)

    @property
    def num_items(self) -> int:
        return int(self.leaf_item_ids.shape[0])

    def num_nodes(self, depth: int) -> int:
        """Distinct prefixes of length `depth` (1 at depth 0, `num_items` at depth `levels`)."""
        return self.num_items if depth == self.levels else self.trie_levels[depth].num_nodes

    def memory_bytes(self) -> int:
        tensors = [t for lv in self.trie_levels for t in lv.tensors()] + [self.leaf_item_ids, *self.branches_below]
        return sum(t.numel() * t.element_size() for t in tensors)

    def level_storage(self) -> list[str]:
        """'dense' or 'csr' per level, for reports."""
        return ["dense" if lv.is_dense else "csr" for lv in self.trie_levels]

    def to(self, device: torch.device | str) -> PrefixTrie:
        return PrefixTrie([lv.to(device) for lv in self.trie_levels], self.leaf_item_ids.to(device))

    # ----- lookups (all vectorized over N rows) ------------------------------------------------
    def children(self, level: int, node_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Candidate next codes of N nodes at depth `level`.

        Returns `codes [N, C]`, `child_ids [N, C]` (node ids at depth level+1)
        and `valid [N, C]` (bool); where `valid` is False the other two hold 0.
        """
        lv = self._level(level)
        node_ids = node_ids.to(torch.int64)
        if lv.child is not None:  # dense
            child_ids = lv.child[node_ids].to(torch.int64)  # [N, V_l]
            valid = child_ids >= 0
            codes = torch.arange(lv.vocab_size, device=node_ids.device).expand_as(child_ids)
            return codes, child_ids.clamp_min(0), valid
        offsets, keys = lv.csr()
        start = offsets[node_ids]  # [N]
        fanout = offsets[node_ids + 1] - start
        slot = torch.arange(lv.max_fanout, device=node_ids.device)
        valid = slot < fanout[:, None]  # [N, D]
        child_ids = torch.where(valid, start[:, None] + slot, 0)
        codes = torch.where(valid, keys[child_ids] % lv.vocab_size, 0)
        return codes, child_ids, valid

    def allowed_mask(self, level: int, node_ids: torch.Tensor) -> torch.Tensor:
        """`[N, vocab_size]` bool: which codes may follow each of N prefixes (node ids at depth `level`)."""
        lv = self._level(level)
        node_ids = node_ids.to(torch.int64)
        # One spare column receives the padding slots of CSR rows, so they never overwrite a real code.
        mask = torch.zeros(node_ids.shape[0], self.vocab_size + 1, dtype=torch.bool, device=node_ids.device)
        if lv.child is not None:  # dense
            mask[:, : lv.vocab_size] = lv.child[node_ids] >= 0
        else:
            codes, _, valid = self.children(level, node_ids)
            mask.scatter_(1, torch.where(valid, codes, self.vocab_size), True)
        return mask[:, : self.vocab_size]

    def advance(self, level: int, node_ids: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Node ids at depth `level + 1` reached by appending `tokens [N]`; -1 where the SID would be invalid."""
        lv = self._level(level)
        node_ids = node_ids.to(torch.int64)
        tokens = tokens.to(torch.int64)
        in_range = (tokens >= 0) & (tokens < lv.vocab_size)
        safe_tokens = torch.where(in_range, tokens, 0)
        if lv.child is not None:  # dense
            found = lv.child[node_ids, safe_tokens].to(torch.int64)
        else:
            _, keys = lv.csr()
            wanted = node_ids * lv.vocab_size + safe_tokens
            position = torch.searchsorted(keys, wanted).clamp_max(lv.num_children - 1)
            found = torch.where(keys[position] == wanted, position, -1)
        return torch.where(in_range, found, -1)

    def branches(self, depth: int, node_ids: torch.Tensor) -> torch.Tensor:
        """`[N]` bool: whether more than one item lies below each node at `depth` (0 ≤ depth < levels).

        Where it is False the rest of the SID is forced (one valid child per level), so every later
        level's trie-masked log-softmax is 0 and beam search need not step the model for that prefix."""
        if not 0 <= depth < self.levels:
            raise ValueError(f"depth must be in [0, {self.levels}), got {depth}")
        return self.branches_below[depth][node_ids.to(torch.int64)]

    def item_at(self, leaf_ids: torch.Tensor) -> torch.Tensor:
        """Item ids `[...]` of leaf node ids (depth `levels`); -1 stays -1."""
        leaf_ids = leaf_ids.to(torch.int64)
        items = self.leaf_item_ids[leaf_ids.clamp_min(0)]
        return torch.where(leaf_ids >= 0, items, -1)

    def _level(self, level: int) -> TrieLevel:
        if not 0 <= level < self.levels:
            raise ValueError(f"level must be in [0, {self.levels}), got {level}")
        return self.trie_levels[level]


def _branches_below(levels: list[TrieLevel], leaf_item_ids: torch.Tensor) -> list[torch.Tensor]:
    """Per depth, `[num_nodes]` bool: more than one item below the node. Item counts are summed
    bottom-up over each node's run of children (ids are in lexicographic order, so a run is contiguous)."""
    counts = torch.ones(len(leaf_item_ids), dtype=torch.int64, device=leaf_item_ids.device)
    out: list[torch.Tensor] = []
    for level in reversed(levels):
        fanout = level.fanout().to(counts.device)
        ends = torch.cumsum(fanout, 0)
        running = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
        counts = running[ends] - running[ends - fanout]
        out.append(counts > 1)
    return out[::-1]


def _build_level(
    parents: np.ndarray, child_codes: np.ndarray, num_parents: int, vocab_size: int, storage: str
) -> TrieLevel:
    """Edges parent → child at one depth; children are numbered 0..len-1 in (parent, code) order."""
    num_children = len(parents)
    fanout = np.bincount(parents, minlength=num_parents)
    max_fanout = int(fanout.max())
    dense_bytes = num_parents * vocab_size * 4
    csr_bytes = (num_parents + 1) * 8 + num_children * 8
    if storage == "dense" or (storage == "auto" and dense_bytes <= csr_bytes):
        if num_children >= 2**31:
            raise ValueError(f"too many prefixes for int32 node ids: {num_children}")
        child = np.full((num_parents, vocab_size), -1, dtype=np.int32)
        child[parents, child_codes] = np.arange(num_children, dtype=np.int32)
        return TrieLevel(num_parents, num_children, vocab_size, max_fanout, child=torch.from_numpy(child))
    offsets = np.zeros(num_parents + 1, dtype=np.int64)
    np.cumsum(fanout, out=offsets[1:])
    keys = parents.astype(np.int64) * vocab_size + child_codes.astype(np.int64)
    return TrieLevel(num_parents, num_children, vocab_size, max_fanout,
                     offsets=torch.from_numpy(offsets), keys=torch.from_numpy(keys))


def _lexicographic_order(codes: np.ndarray, codebook_sizes: list[int]) -> np.ndarray:
    """Row order sorting SIDs lexicographically (level 0 first); one mixed-radix key when it fits in int64,
    which sorts 1M rows several times faster than `np.lexsort` over the columns."""
    if float(np.prod([float(s) for s in codebook_sizes])) < 2.0**62:
        key = np.zeros(len(codes), dtype=np.int64)
        for level, size in enumerate(codebook_sizes):
            key = key * size + codes[:, level]
        return np.argsort(key, kind="stable")
    return np.lexsort(codes.T[::-1])


def _as_numpy(values: Any, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)
