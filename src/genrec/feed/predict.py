"""A slot model a feed can learn: P(order), P(view) and P(swipe on) from logged feed sessions.

The policies in `genrec.feed.stcrank` need, for every candidate, what it would
do in the next slot — and that depends on the slot before it (fatigue). The
model sees only what a production ranker sees: how much of the user's history
falls in the item's leaf and brand (from the world's logged events, never its
hidden preferences), the item's popularity, the item's brand (a learned
embedding: brands carry most of an item's hook and push) and whether the
previous slot showed the same leaf. One shared bottom, three heads — the
objectives overlap (an engaging item is watched and scrolled past alike) and
conflict (a bought item often ends the visit), and a shared representation is
how one model learns both from the same slots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from genrec.feed.truth import LoggedSlots

OBJECTIVES: tuple[str, ...] = ("order", "view", "swipe")
INTERACTIONS = ("click", "cart", "order")
"""Logged actions that count as the user's history (impressions do not)."""


class FeedFeatures:
    """What the feed may observe about a user, an item and the slot before it.

    Built from the world's event log (`events` with `user_id`, `item_id`,
    `action`) and each item's leaf and brand (0-based item index → leaf index,
    brand index or −1).
    """

    def __init__(self, events: pd.DataFrame, item_leaf: np.ndarray, item_brand: np.ndarray, n_users: int):
        self.item_leaf = np.asarray(item_leaf, dtype=np.int64)
        self.n_brands = int(np.max(item_brand)) + 1 if len(item_brand) else 0
        self.item_brand = np.where(np.asarray(item_brand) >= 0, item_brand, self.n_brands).astype(np.int64)
        missing = {"user_id", "item_id", "action"} - set(events.columns)
        if missing:
            raise ValueError(f"events lack the column(s) {sorted(missing)}")
        history = events[events["action"].isin(INTERACTIONS)]
        users = history["user_id"].to_numpy(np.int64) - 1
        items = history["item_id"].to_numpy(np.int64) - 1
        n_leaves = int(self.item_leaf.max()) + 1
        self.leaf_count = np.zeros((n_users, n_leaves), dtype=np.float32)
        np.add.at(self.leaf_count, (users, self.item_leaf[items]), 1.0)
        self.brand_count = np.zeros((n_users, self.n_brands + 1), dtype=np.float32)
        np.add.at(self.brand_count, (users, self.item_brand[items]), 1.0)
        self.history_length = self.leaf_count.sum(1)
        popularity = np.bincount(items, minlength=len(self.item_leaf)).astype(np.float64)
        log_pop = np.log1p(popularity)
        self.item_popularity = ((log_pop - log_pop.mean()) / (log_pop.std() + 1e-9)).astype(np.float32)

    @property
    def n_columns(self) -> int:
        return 5

    def matrix(self, users: np.ndarray, items: np.ndarray, same_leaf: np.ndarray) -> np.ndarray:
        """Numeric features `[n, 5]` of rows (user, item, previous slot of the same leaf or not)."""
        users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        total = self.history_length[users] + 1.0
        leaf_share = (self.leaf_count[users, self.item_leaf[items]] + 0.1) / total
        brand_share = (self.brand_count[users, self.item_brand[items]] + 0.1) / total
        return np.stack([
            np.log(leaf_share), np.log(brand_share), self.item_popularity[items],
            np.log1p(self.history_length[users]), np.asarray(same_leaf, dtype=np.float32),
        ], axis=1).astype(np.float32)


@dataclass(frozen=True)
class SlotModelConfig:
    """Training of `SlotOutcomeModel`."""

    hidden: int = 32
    brand_dim: int = 8
    epochs: int = 8
    batch_size: int = 512
    lr: float = 3e-3
    weight_decay: float = 1e-5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hidden", "brand_dim", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"SlotModelConfig.{name} must be ≥ 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"SlotModelConfig.lr must be > 0, got {self.lr}")


class SlotOutcomeModel(nn.Module):
    """Shared bottom over (features, brand embedding) → logits of order, view, swipe `[n, 3]`."""

    def __init__(self, features: FeedFeatures, config: SlotModelConfig = SlotModelConfig()):
        super().__init__()
        self.features = features
        self.config = config
        self.brand = nn.Embedding(features.n_brands + 1, config.brand_dim)
        self.bottom = nn.Sequential(nn.Linear(features.n_columns + config.brand_dim, config.hidden), nn.ReLU(),
                                    nn.Linear(config.hidden, config.hidden), nn.ReLU())
        self.heads = nn.Linear(config.hidden, len(OBJECTIVES))
        self.mean_ = torch.zeros(features.n_columns)
        self.scale_ = torch.ones(features.n_columns)

    def forward(self, numeric: torch.Tensor, brand: torch.Tensor) -> torch.Tensor:
        x = torch.cat([(numeric - self.mean_) / self.scale_, self.brand(brand)], dim=1)
        return self.heads(self.bottom(x))

    def _inputs(self, users: np.ndarray, items: np.ndarray, same_leaf: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        numeric = torch.from_numpy(self.features.matrix(users, items, same_leaf))
        brand = torch.from_numpy(self.features.item_brand[np.asarray(items, dtype=np.int64)])
        return numeric, brand

    def fit(self, logged: LoggedSlots) -> "SlotOutcomeModel":
        """Binary cross-entropy of the three outcomes of every logged slot."""
        if len(logged) == 0:
            raise ValueError("no logged slots to learn from")
        leaf = self.features.item_leaf
        same_leaf = (logged.previous_item >= 0) & (leaf[logged.item] == leaf[np.maximum(logged.previous_item, 0)])
        numeric, brand = self._inputs(logged.user, logged.item, same_leaf)
        self.mean_ = numeric.mean(0)
        self.scale_ = numeric.std(0).clamp_min(1e-3)
        labels = torch.from_numpy(np.stack([logged.ordered, logged.viewed, logged.swiped], axis=1).astype(np.float32))
        generator = torch.Generator().manual_seed(self.config.seed)
        torch.manual_seed(self.config.seed)
        for module in (self.brand, self.bottom, self.heads):  # every weight from the config's seed alone
            for parameter in module.parameters():
                if parameter.dim() > 1:
                    nn.init.xavier_uniform_(parameter, generator=generator)
                else:
                    nn.init.zeros_(parameter)
        optimizer = torch.optim.Adam(self.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)
        loss_fn = nn.BCEWithLogitsLoss()
        self.train()
        for _ in range(self.config.epochs):
            for batch in torch.randperm(len(labels), generator=generator).split(self.config.batch_size):
                loss = loss_fn(self(numeric[batch], brand[batch]), labels[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        self.eval()
        return self

    @torch.no_grad()
    def predict(self, users: np.ndarray, items: np.ndarray, same_leaf: np.ndarray) -> np.ndarray:
        """P(order), P(view), P(swipe on) `[n, 3]` of rows (user, item, previous slot of the same leaf or not)."""
        numeric, brand = self._inputs(users, items, same_leaf)
        return torch.sigmoid(self(numeric, brand)).numpy().astype(np.float64)
