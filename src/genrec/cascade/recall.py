"""Recall: the first stage, many cheap sources, a few hundred candidates per request.

* `RecallUnion` merges any `Retriever`s with per-source quotas (separately for
  search and recommendation requests), dedupes, and keeps where each candidate came
  from (`Candidates.sources` `[m, n_sources]`, its rank in each source).
* `PersonalizedDenseRecall` (PR²): a two-tower retriever of its own. The request tower
  reads the query vector *and* the user's recent behaviour (MiniLM vectors of the
  history items), the item tower the item's MiniLM vector and category; trained on
  the logged positives with in-batch negatives (sampled softmax over the batch).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from genrec.cascade.features import FeatureSpace
from genrec.cascade.samples import ImpressionSamples
from genrec.device import check_device, resolve_device
from genrec.retrieval import Ranked, Request, Retriever, top_k

NOT_RETRIEVED = -1
"""`Candidates.source_rank` where a source did not return the item."""


@dataclass
class Candidates:
    """One request's recalled items: `item_ids` `[m]` (unique), `source_rank` `[m, n_sources]`
    (0-based rank in each source, `NOT_RETRIEVED` when absent), `source_names` `[n_sources]`."""

    item_ids: np.ndarray
    source_rank: np.ndarray
    source_names: tuple[str, ...]

    def from_source(self, name: str) -> np.ndarray:
        """Items that source `name` returned, `[m_source]`."""
        return self.item_ids[self.source_rank[:, self.source_names.index(name)] != NOT_RETRIEVED]


class RecallUnion:
    """Union of several retrievers, each capped at its quota.

    `search_quotas` / `recommendation_quotas`: source name → how many of its top items
    enter the union (0 or missing: the source is not asked). Order of the union:
    round-robin over the sources by rank, so the best of every source comes first;
    `max_candidates` keeps the first that many of that order (a pre-rank by source rank).
    """

    def __init__(self, sources: Mapping[str, Retriever], search_quotas: Mapping[str, int],
                 recommendation_quotas: Mapping[str, int], max_candidates: int | None = None):
        unknown = [n for n in (*search_quotas, *recommendation_quotas) if n not in sources]
        if unknown:
            raise ValueError(f"quota for unknown source {unknown[0]!r}; expected one of {sorted(sources)}")
        for quotas in (search_quotas, recommendation_quotas):
            bad = [n for n, q in quotas.items() if int(q) < 0]
            if bad:
                raise ValueError(f"quota of {bad[0]!r} must be ≥ 0, got {quotas[bad[0]]}")
        if max_candidates is not None and max_candidates < 1:
            raise ValueError(f"max_candidates must be ≥ 1 or None, got {max_candidates}")
        self.max_candidates = max_candidates
        self.sources = dict(sources)
        self.names = tuple(self.sources)
        self.search_quotas = {n: int(q) for n, q in search_quotas.items() if int(q) > 0}
        self.recommendation_quotas = {n: int(q) for n, q in recommendation_quotas.items() if int(q) > 0}

    def candidates(self, requests: Sequence[Request]) -> list[Candidates]:
        per_source: dict[str, list[Ranked | None]] = {name: [None] * len(requests) for name in self.names}
        for is_search, quotas in ((True, self.search_quotas), (False, self.recommendation_quotas)):
            rows = [i for i, r in enumerate(requests) if r.is_search == is_search]
            if not rows:
                continue
            subset = [requests[i] for i in rows]
            for name, quota in quotas.items():
                for row, answer in zip(rows, self.sources[name].retrieve(subset, quota)):
                    per_source[name][row] = answer
        return [self._merge([per_source[name][i] for name in self.names]) for i in range(len(requests))]

    def _merge(self, answers: list[Ranked | None]) -> Candidates:
        lists = [np.asarray(a.item_ids, dtype=np.int64) if a is not None else np.zeros(0, np.int64) for a in answers]
        depth = max((len(x) for x in lists), default=0)
        if depth == 0:
            return Candidates(np.zeros(0, np.int64), np.zeros((0, len(self.names)), np.int64), self.names)
        # Round-robin interleave: rank 0 of every source, then rank 1, ...
        grid = np.full((depth, len(lists)), 0, dtype=np.int64)
        for column, ids in enumerate(lists):
            grid[: len(ids), column] = ids
        flat = grid.reshape(-1)
        flat = flat[flat > 0]
        item_ids = flat[np.sort(np.unique(flat, return_index=True)[1])][: self.max_candidates]
        position = {int(item): row for row, item in enumerate(item_ids)}
        source_rank = np.full((len(item_ids), len(self.names)), NOT_RETRIEVED, dtype=np.int64)
        for column, ids in enumerate(lists):
            for rank, item in enumerate(ids.tolist()):
                row = position.get(item)
                if row is not None and source_rank[row, column] == NOT_RETRIEVED:
                    source_rank[row, column] = rank
        return Candidates(item_ids, source_rank, self.names)


# ---------------------------------------------------------------------- PR² dense recall


@dataclass
class PersonalizedRecallConfig:
    dim: int = 64
    hidden: int = 256
    temperature: float = 0.07
    epochs: float = 2.0
    batch_size: int = 1024
    lr: float = 2e-3
    history_decay: float = 0.8
    seed: int = 0
    progress: bool = True


class TwoTower(nn.Module):
    """Request tower `[B, 3·text + 1]` → unit `[B, dim]`; item tower ids → unit `[n, dim]`."""

    # Buffers (registered in __init__), declared so the type checker knows they are tensors.
    text: torch.Tensor
    leaf: torch.Tensor
    parent: torch.Tensor
    popularity: torch.Tensor

    def __init__(self, space: FeatureSpace, config: PersonalizedRecallConfig, decay: float):
        super().__init__()
        text_dim = space.text_.shape[1]
        self.register_buffer("text", torch.from_numpy(space.text_))
        self.register_buffer("leaf", torch.from_numpy(space.leaf_))
        self.register_buffer("parent", torch.from_numpy(space.parent_))
        self.register_buffer("popularity", torch.from_numpy(np.log1p(space.popularity_).astype(np.float32)))
        self.decay = decay
        self.request_tower = nn.Sequential(
            nn.Linear(3 * text_dim + 1, config.hidden), nn.ReLU(), nn.Linear(config.hidden, config.dim))
        self.request_skip = nn.Linear(3 * text_dim + 1, config.dim, bias=False)
        self.item_text = nn.Linear(text_dim, config.dim)
        self.leaf_emb = nn.Embedding(int(space.leaf_.max()) + 1, config.dim, padding_idx=0)
        self.parent_emb = nn.Embedding(int(space.parent_.max()) + 1, config.dim, padding_idx=0)
        self.item_popularity = nn.Parameter(torch.zeros(config.dim))
        self.temperature = config.temperature

    def requests(self, query: torch.Tensor, history: torch.Tensor, is_search: torch.Tensor) -> torch.Tensor:
        """query `[B, text]`, history ids `[B, L]` (most recent last) → `[B, dim]`."""
        mask = (history > 0).float()
        age = torch.arange(history.shape[1] - 1, -1, -1, device=history.device, dtype=torch.float32)
        weight = mask * self.decay ** age
        behaviour = (weight[:, :, None] * self.text[history]).sum(1) / weight.sum(1, keepdim=True).clamp_min(1e-6)
        last = self.text[history[:, -1]]
        x = torch.cat([query, behaviour, last, is_search[:, None]], -1)
        return nn.functional.normalize(self.request_tower(x) + self.request_skip(x), dim=-1)

    def items(self, ids: torch.Tensor) -> torch.Tensor:
        vector = (self.item_text(self.text[ids]) + self.leaf_emb(self.leaf[ids]) + self.parent_emb(self.parent[ids])
                  + self.popularity[ids][:, None] * self.item_popularity)
        return nn.functional.normalize(vector, dim=-1)


def in_batch_softmax_loss(model: TwoTower, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each request's positive against every other positive of the batch (same-item
    collisions masked), cross-entropy over `[B, B]` cosine / temperature."""
    users = model.requests(batch["query"], batch["history"], batch["is_search"])
    items = model.items(batch["item"])
    logits = users @ items.T / model.temperature
    same = batch["item"][:, None] == batch["item"][None, :]
    logits = logits.masked_fill(same & ~torch.eye(len(items), dtype=torch.bool, device=logits.device), -1e9)
    return nn.functional.cross_entropy(logits, torch.arange(len(items), device=logits.device))


class PersonalizedDenseRecall:
    """PR²-style personalized dense retriever (`name="pr2"`).

    `device` ("cpu", "auto", "cuda", … `genrec.device`) is where the two towers train and encode
    requests; `device_` the `torch.device` it resolved to. The item vectors are kept in host
    memory (numpy), where the top-k over the catalogue runs."""

    name = "pr2"

    def __init__(self, space: FeatureSpace, config: PersonalizedRecallConfig | None = None, device: str = "cpu"):
        check_device(device, "device")
        self.space = space
        self.config = config or PersonalizedRecallConfig()
        self.device = device

    def fit(self, samples: ImpressionSamples, work_dir: Path | None = None) -> "PersonalizedDenseRecall":
        """Train on the clicked rows of `samples` (request, item) with in-batch negatives."""
        from genrec.train.loop import TrainConfig, train

        positive = np.flatnonzero(samples.labels[:, 0] > 0)
        if len(positive) < 2:
            raise ValueError("samples has fewer than 2 clicked rows; PR² recall needs positives to learn from")
        cfg = self.config
        self.device_ = resolve_device(self.device, "device")
        req = self.space.requests(samples.requests)
        r, items = samples.request_index[positive], samples.item_ids[positive]
        query, history, is_search = req.query, req.history, req.is_search

        def collate(indices):
            rows = np.asarray(indices, dtype=np.int64)
            return {"query": torch.from_numpy(query[r[rows]]), "history": torch.from_numpy(history[r[rows]]),
                    "is_search": torch.from_numpy(is_search[r[rows]]), "item": torch.from_numpy(items[rows])}

        self.model_ = TwoTower(self.space, cfg, cfg.history_decay)
        steps = max(1, int(math.ceil(cfg.epochs * len(positive) / cfg.batch_size)))
        train_config = TrainConfig(steps=steps, batch_size=min(cfg.batch_size, len(positive)), lr=cfg.lr, weight_decay=0.0,
                                   warmup_steps=min(50, steps // 10), eval_every=steps, checkpoint_every=steps,
                                   seed=cfg.seed, device=str(self.device_), progress=cfg.progress)
        with tempfile.TemporaryDirectory(dir=work_dir) as out_dir:
            train(self.model_, in_batch_softmax_loss, list(range(len(positive))), collate, train_config, Path(out_dir))
        self._index()
        return self

    def _index(self) -> None:
        self.model_.to(self.device_).eval()
        with torch.no_grad():
            self.item_vectors_ = self.model_.items(torch.arange(self.space.n_items_, device=self.device_)).cpu().numpy()
        self.item_vectors_[0] = 0
        self.known_ = np.zeros(self.space.n_items_, dtype=bool)
        self.known_[np.flatnonzero(self.space.leaf_ > 0)] = True

    def retrieve(self, requests: Sequence[Request], k: int, chunk: int = 1024) -> list[Ranked]:
        if not hasattr(self, "model_"):
            raise ValueError("PersonalizedDenseRecall is not fitted")
        answers = []
        exclude = np.flatnonzero(~self.known_)
        for begin in range(0, len(requests), chunk):
            req = self.space.requests(requests[begin:begin + chunk])
            with torch.no_grad():
                users = self.model_.requests(*(torch.from_numpy(x).to(self.device_)
                                               for x in (req.query, req.history, req.is_search))).cpu().numpy()
            scores = users @ self.item_vectors_.T  # [chunk, n_items]
            answers += [top_k(row, k, exclude) for row in scores]
        return answers

    def state_dict(self) -> dict:
        return self.model_.state_dict()

    def load_state_dict(self, state: dict) -> "PersonalizedDenseRecall":
        self.device_ = resolve_device(self.device, "device")
        self.model_ = TwoTower(self.space, self.config, self.config.history_decay)
        self.model_.load_state_dict(state)
        self._index()
        return self
