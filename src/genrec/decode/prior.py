"""A popularity prior that beam search can subtract level by level, so rare items survive the beam.

A generative retriever learns p(item | request), and the logs make that
probability lean on popularity: under one prefix the frequent items win every
beam, and a long-tail item the query describes exactly never reaches the last
level. Re-scoring the finished beams cannot bring it back — it is not among
them. Dividing by the prior *while* searching can:

    score(item) = log p(item | request) − w · log p_prior(item)

with p_prior(item) ∝ (training interactions of the item + `smoothing`). The
prior factors along the trie, p_prior(item) = Π_l p_prior(node_l | node_{l−1}),
each factor the share of its parent's (smoothed) interactions under that child,
so every level subtracts its own part and a beam's score is always its
prefix's share of the final one. A prefix with one child has factor 1 (log 0),
so forced levels stay free, as beam search assumes. w = 0 is the plain search;
w = 1 ranks by p(request | item) / p(request), the likelihood ratio; the weight
between is chosen on validation, per request kind (search and recommendation
want different amounts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genrec.decode.trie import PrefixTrie


@dataclass(frozen=True)
class PopularityPrior:
    """`log_prior[l]` `[nodes at depth l + 1]`: log p_prior(node | its parent), per trie level."""

    log_prior: tuple[torch.Tensor, ...]

    @classmethod
    def from_counts(cls, trie: PrefixTrie, item_ids: np.ndarray, counts: np.ndarray,
                    smoothing: float = 1.0) -> "PopularityPrior":
        """Build from training `counts` `[n]` of `item_ids` `[n]`; catalogue items absent get 0.

        `smoothing` (> 0) is added to every item's count, so an item never seen
        has a finite prior and the penalty of a popular one is bounded.
        """
        if not smoothing > 0:
            raise ValueError(f"smoothing must be > 0, got {smoothing}")
        item_ids, counts = np.asarray(item_ids), np.asarray(counts, dtype=np.float64)
        if item_ids.shape != counts.shape or item_ids.ndim != 1:
            raise ValueError(f"item_ids and counts must be 1-D of one length, got {item_ids.shape} and {counts.shape}")
        if len(counts) and counts.min() < 0:
            raise ValueError(f"counts must be ≥ 0, found {counts.min()}")
        leaf_items = trie.leaf_item_ids.cpu().numpy()
        leaf_counts = np.zeros(len(leaf_items))
        if len(item_ids):
            order = np.argsort(item_ids)
            sorted_ids = item_ids[order]
            where = np.searchsorted(sorted_ids, leaf_items).clip(max=len(sorted_ids) - 1)
            hit = sorted_ids[where] == leaf_items
            leaf_counts[hit] = counts[order][where][hit]
        mass = torch.from_numpy(leaf_counts + smoothing)  # per leaf node, in the trie's order
        log_prior: list[torch.Tensor] = []
        for level in reversed(trie.trie_levels):  # children → parents: a node's children are one contiguous run
            fanout = level.fanout().cpu()
            parent_of_child = torch.repeat_interleave(torch.arange(len(fanout)), fanout)
            parent_mass = torch.zeros(len(fanout), dtype=torch.float64).index_add_(0, parent_of_child, mass)
            log_prior.append((mass.log() - parent_mass[parent_of_child].log()).float())
            mass = parent_mass
        device = trie.leaf_item_ids.device
        return cls(tuple(t.to(device) for t in reversed(log_prior)))

    def penalty(self, level: int, child_ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """`weight[:, None] · log p_prior(child | parent)` `[N, C]` for the rows' candidate `child_ids` `[N, C]`.

        Beam search subtracts it from the step's log-probs; `weight` `[N]` is each row's request weight."""
        return weight[:, None] * self.log_prior[level][child_ids]

    def item_log_prior(self, trie: PrefixTrie) -> torch.Tensor:
        """`[n_items]` log p_prior of each leaf (in `trie.leaf_item_ids` order): its levels' factors summed."""
        total = torch.zeros(trie.num_items, device=self.log_prior[-1].device)
        for level, factor in enumerate(self.log_prior):
            for deeper in range(level + 1, trie.levels):  # repeat each node's factor over the leaves below it
                factor = torch.repeat_interleave(factor, trie.trie_levels[deeper].fanout().to(factor.device))
            total = total + factor
        return total


def check_prior(prior: PopularityPrior | None, prior_weight: torch.Tensor | None, batch: int) -> None:
    """A prior comes with one weight per request, and a weight only with a prior."""
    if (prior is None) != (prior_weight is None):
        raise ValueError("prior and prior_weight go together: give both or neither")
    if prior_weight is not None and prior_weight.shape != (batch,):
        raise ValueError(f"prior_weight must have shape [{batch}] (one weight per request), "
                         f"got {list(prior_weight.shape)}")
