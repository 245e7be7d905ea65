"""`RoleGenRetriever`: the generative backbone plus a conversion-trajectory reasoner for hesitant users.

For a recommendation request of a user the roles count as low-converting
(`ItemRoles.hesitant_users`, learned from training events):

1. the backbone proposes its candidates (its beams), as for anyone;
2. intent: the leaves of its best `leaves` distinct-leaf candidates — what the backbone
   believes the user is after;
3. counterfactual paths: in each such leaf, the `per_leaf` items of largest positive
   trigger uplift that the backbone did not propose — "had the user clicked this,
   would they go on to buy in this leaf?", answered by the roles;
4. the reasoned candidates are fed to the backbone, which scores them on its own scale
   (`GenerativeRetriever.score`), and every candidate ranks by backbone score +
   `weight` × uplift / (the catalogue's uplift spread).

Moving each leaf's trigger ahead of that leaf's other items (so its click comes before
the sales it unlocks) was measured and lost at every weight: the slot it takes is worth
more to an item that sells (`benchmarks/results/rolegen_replay_valid.md`).

Every other request (searches, users who convert) gets the backbone's answer unchanged,
and the backbone alone answers at serving: the reasoning is a table lookup and one
teacher-forced scoring of at most `leaves` × `per_leaf` items.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from genrec.data.dataset import Dataset
from genrec.data.splits import Split
from genrec.model.inputs import leaf_categories
from genrec.model.retriever import GenerativeRetriever
from genrec.retrieval import Ranked, Request
from genrec.rolegen.roles import ItemRoles


class RoleGenRetriever:
    """See the module docstring. `items` is the catalogue (`item_id`, `category`) the roles were learned on."""

    name = "rolegen"

    def __init__(self, backbone: GenerativeRetriever, roles: ItemRoles, items: pd.DataFrame, weight: float = 1.0,
                 leaves: int = 3, per_leaf: int = 2):
        if not weight >= 0:
            raise ValueError(f"weight must be ≥ 0, got {weight}")
        if leaves < 0 or per_leaf < 0:
            raise ValueError(f"leaves and per_leaf must be ≥ 0, got {leaves} and {per_leaf}")
        self.backbone, self.weight, self.leaves, self.per_leaf = backbone, weight, leaves, per_leaf
        self.hesitant = set(roles.hesitant_users.tolist())
        self.leaf_of, _ = leaf_categories(items)  # item id → leaf (0: none)
        size = len(self.leaf_of)
        if len(roles.item_ids) and roles.item_ids.max() >= size:
            raise ValueError("the roles name items outside this catalogue: learn them on the same items")
        spread = float(roles.uplift.std()) or 1.0
        self.strength = np.zeros(size)  # uplift in units of its spread over the catalogue
        self.strength[roles.item_ids] = roles.uplift / spread
        known = backbone.encoder.known_item
        scored = roles.item_ids[(roles.uplift > 0) & (roles.item_ids < len(known))]
        scored = scored[known[scored]]
        order = scored[np.argsort(-self.strength[scored], kind="stable")]
        self.triggers_in_leaf: dict[int, np.ndarray] = {
            int(leaf): group.to_numpy() for leaf, group in pd.Series(order).groupby(self.leaf_of[order], sort=False)}

    @classmethod
    def from_run(cls, run: str | Path, dataset: Dataset, split: Split) -> "RoleGenRetriever":
        """The run's generative model as the backbone, roles learned from `split.train` (seconds)."""
        return cls(GenerativeRetriever.from_run(run), ItemRoles.learn(split.train, dataset.items), dataset.items)

    def retrieve(self, requests: Sequence[Request], k: int) -> list[Ranked]:
        if k < 1:
            raise ValueError(f"k must be ≥ 1, got {k}")
        answers = self.backbone.retrieve(requests, max(k, self.backbone.beams))
        rows = [i for i, r in enumerate(requests) if not r.is_search and r.user_id in self.hesitant]
        out = [Ranked(a.item_ids[:k], a.scores[:k]) for a in answers]
        if not rows:
            return out
        reasoned = [self._reasoned(answers[i].item_ids) for i in rows]
        width = max(len(r) for r in reasoned)
        scores = np.zeros((len(rows), 0), dtype=np.float32)
        if width:  # pad each row to one width with an item it scores anyway; the pads' scores are dropped
            filler = self._any_item()
            padded = np.stack([np.pad(r, (0, width - len(r)), constant_values=r[0] if len(r) else filler)
                               for r in reasoned])
            scores = self.backbone.score([requests[i] for i in rows], padded)
        for n, i in enumerate(rows):
            items = np.concatenate([answers[i].item_ids, reasoned[n]])
            base = np.concatenate([answers[i].scores, scores[n, :len(reasoned[n])]])
            combined = base + self.weight * self.strength[items]
            top = np.argsort(-combined, kind="stable")[:k]
            out[i] = Ranked(items[top], combined[top])
        return out

    def _reasoned(self, proposed: np.ndarray) -> np.ndarray:
        """The counterfactual candidates for one answer: top triggers of its first `leaves` leaves, not proposed."""
        taken = set(proposed.tolist())
        kept: list[int] = []
        for leaf in pd.unique(self.leaf_of[proposed])[: self.leaves]:
            triggers = self.triggers_in_leaf.get(int(leaf), np.empty(0, dtype=np.int64))
            kept += [int(t) for t in triggers if int(t) not in taken][: self.per_leaf]
        return np.asarray(kept, dtype=np.int64)

    def _any_item(self) -> int:
        return int(np.flatnonzero(self.backbone.encoder.known_item)[0])
