"""The multi-task ranker: P(click), P(cart), P(order) for (request, candidate) pairs.

Architecture (PyTorch, `MMoERanker`):

* candidate and history items share one item tower: PCA'd MiniLM text vector,
  leaf/parent category and brand embeddings, dense item statistics (price,
  popularity, CTR, origin) → `[d]`;
* QIN-style interest: the behaviour sequence `[B, L, d]` is attended by a key built
  from the query *and* the candidate, so for search the query decides which past
  behaviours matter (and for recommendation the candidate does, as in DIN);
* request features (query vector, hashed user, scenario), hand-made pair features
  (`genrec.cascade.features.PAIR_FEATURES`) and element-wise interactions enter a
  shared bottom, then MMoE: `n_experts` experts, one softmax gate and one tower per task;
* ESMM-style nesting: `p_cart = p_click · σ(l_cart)`, `p_order = p_cart · σ(l_order)`,
  every task trained on all impressions, so the sparse order signal shares the click's;
* position bias: a shallow tower on the shown slot adds to the logits while training
  only; at inference every candidate gets the same slot, so position cannot leak
  into the ranking (PAL-style debiasing).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from genrec.cascade.features import ITEM_DENSE, PAIR_FEATURES, SCENARIO_SLOTS, FeatureSpace, RequestArrays
from genrec.cascade.samples import INFERENCE_POSITION, POSITION_BUCKETS, TASKS, ImpressionSamples
from genrec.device import check_device, resolve_device


@dataclass
class RankerConfig:
    dim: int = 32
    bottom: int = 128
    experts: int = 4
    expert_dim: int = 64
    tower: int = 32
    user_dim: int = 16
    dropout: float = 0.1
    epochs: float = 2.0
    batch_size: int = 1024
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    progress: bool = True


class MMoERanker(nn.Module):
    """Logits `[B, 3]` of click, cart|click, order|cart from a batch dict (see `RankerBatch`)."""

    # Buffers (registered in __init__), declared so the type checker knows they are tensors.
    small: torch.Tensor
    leaf: torch.Tensor
    parent: torch.Tensor
    brand: torch.Tensor
    item_dense: torch.Tensor
    pair_mean: torch.Tensor
    pair_std: torch.Tensor

    def __init__(self, space: FeatureSpace, text_dim: int, config: RankerConfig):
        super().__init__()
        d = config.dim
        self.register_buffer("small", torch.from_numpy(space.small_))
        self.register_buffer("leaf", torch.from_numpy(space.leaf_))
        self.register_buffer("parent", torch.from_numpy(space.parent_))
        self.register_buffer("brand", torch.from_numpy(space.brand_))
        self.register_buffer("item_dense", torch.from_numpy(space.item_dense_))
        self.register_buffer("pair_mean", torch.zeros(len(PAIR_FEATURES)))
        self.register_buffer("pair_std", torch.ones(len(PAIR_FEATURES)))
        self.leaf_emb = nn.Embedding(int(space.leaf_.max()) + 1, 16, padding_idx=0)
        self.parent_emb = nn.Embedding(int(space.parent_.max()) + 1, 8, padding_idx=0)
        self.brand_emb = nn.Embedding(int(space.brand_.max()) + 1, 8, padding_idx=0)
        self.item_tower = nn.Sequential(nn.Linear(space.small_dim + 32 + len(ITEM_DENSE), d), nn.ReLU(), nn.Linear(d, d))
        self.action_emb = nn.Embedding(4, d, padding_idx=0)
        self.query_proj = nn.Linear(text_dim, d)
        self.user_emb = nn.Embedding(space.user_buckets + 1, config.user_dim)
        self.scenario_emb = nn.Embedding(SCENARIO_SLOTS, 4)
        self.attention_key = nn.Linear(2 * d, d)
        bottom_in = 6 * d + config.user_dim + 4 + len(PAIR_FEATURES)
        self.bottom = nn.Sequential(nn.Linear(bottom_in, config.bottom), nn.ReLU(), nn.Dropout(config.dropout))
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(config.bottom, config.expert_dim), nn.ReLU()) for _ in range(config.experts))
        self.gates = nn.ModuleList(nn.Linear(config.bottom, config.experts) for _ in TASKS)
        self.towers = nn.ModuleList(
            nn.Sequential(nn.Linear(config.expert_dim, config.tower), nn.ReLU(), nn.Linear(config.tower, 1)) for _ in TASKS)
        self.position_bias = nn.Embedding(POSITION_BUCKETS, len(TASKS))
        nn.init.zeros_(self.position_bias.weight)

    def use_space(self, space: FeatureSpace) -> None:
        for name, array in (("small", space.small_), ("leaf", space.leaf_), ("parent", space.parent_),
                            ("brand", space.brand_), ("item_dense", space.item_dense_)):
            buffer = getattr(self, name)
            if buffer.shape != array.shape:
                raise ValueError(f"space.{name} has shape {array.shape}, the ranker was built for {tuple(buffer.shape)}")
            buffer.copy_(torch.from_numpy(np.ascontiguousarray(array)))

    def items(self, ids: torch.Tensor) -> torch.Tensor:
        """Item tower: ids `[...]` → `[..., d]`."""
        parts = [self.small[ids], self.leaf_emb(self.leaf[ids]), self.parent_emb(self.parent[ids]),
                 self.brand_emb(self.brand[ids]), self.item_dense[ids]]
        return self.item_tower(torch.cat(parts, -1))

    def forward(self, batch: dict[str, torch.Tensor], item_table: torch.Tensor | None = None) -> torch.Tensor:
        """`item_table` `[n_items, d]`: the item tower over every item, precomputed once for inference
        (a request's history is shared by all its candidates, so per-pair towers would repeat it L times)."""
        if item_table is None:
            # One tower pass over the catalogue is cheaper than one per (pair, history slot) once
            # batch × (history + 1) exceeds the number of items.
            n_items = self.small.shape[0]
            if batch["history"].numel() + batch["item"].numel() > n_items:
                item_table = self.items(torch.arange(n_items, device=batch["item"].device))
        tower = item_table.__getitem__ if item_table is not None else self.items
        candidate = tower(batch["item"])  # [B, d]
        history = tower(batch["history"]) + self.action_emb(batch["history_action"])  # [B, L, d]
        mask = batch["history"] > 0  # [B, L]
        query = self.query_proj(batch["query"])  # [B, d]
        key = self.attention_key(torch.cat([query, candidate], -1))  # [B, d]
        attention = (history @ key[:, :, None])[:, :, 0] / math.sqrt(history.shape[-1])
        attention = attention.masked_fill(~mask, -1e9).softmax(-1) * mask.any(1, keepdim=True)
        interest = (attention[:, :, None] * history).sum(1)  # [B, d]
        mean_history = (history * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        pair = (batch["pair"] - self.pair_mean) / self.pair_std
        x = torch.cat([candidate, query, interest, mean_history, candidate * interest, candidate * query,
                       self.user_emb(batch["user"]), self.scenario_emb(batch["scenario"]), pair], -1)
        shared = self.bottom(x)
        experts = torch.stack([expert(shared) for expert in self.experts], 1)  # [B, E, expert_dim]
        logits = [tower((gate(shared).softmax(-1)[:, :, None] * experts).sum(1)) for gate, tower in zip(self.gates, self.towers)]
        return torch.cat(logits, -1) + self.position_bias(batch["position"])

    def log_probs(self, batch: dict[str, torch.Tensor], item_table: torch.Tensor | None = None) -> torch.Tensor:
        """`[B, 3]`: log P(click), log P(cart), log P(order), nested (ESMM)."""
        return torch.cumsum(nn.functional.logsigmoid(self(batch, item_table)), -1)


def funnel_loss(model: MMoERanker, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Binary cross-entropy of each nested probability against its label, summed over tasks."""
    log_p = model.log_probs(batch)
    log_not_p = torch.log((-torch.expm1(log_p)).clamp_min(1e-7))
    y = batch["labels"]
    return -(y * log_p + (1 - y) * log_not_p).mean(0).sum()


class RankerBatch:
    """Index-based examples for `genrec.train.loop.train`: `examples[i] = i`; `collate`
    gathers the precomputed arrays into one batch dict of tensors."""

    def __init__(self, req: RequestArrays, request_index: np.ndarray, item_ids: np.ndarray, pair: np.ndarray,
                 position: np.ndarray | None = None, labels: np.ndarray | None = None):
        self.req = req
        self.request_index = np.asarray(request_index, dtype=np.int64)
        self.item_ids = np.asarray(item_ids, dtype=np.int64)
        self.pair = pair
        self.position = (np.full(len(item_ids), INFERENCE_POSITION, dtype=np.int64) if position is None
                         else np.asarray(position, dtype=np.int64))
        self.labels = labels

    def __len__(self) -> int:
        return len(self.item_ids)

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, indices: list[int] | np.ndarray) -> dict[str, torch.Tensor]:
        rows = np.asarray(indices, dtype=np.int64)
        r = self.request_index[rows]
        batch = {
            "item": torch.from_numpy(self.item_ids[rows]),
            "history": torch.from_numpy(self.req.history[r]),
            "history_action": torch.from_numpy(self.req.history_action[r]),
            "query": torch.from_numpy(self.req.query[r]),
            "user": torch.from_numpy(self.req.user[r]),
            "scenario": torch.from_numpy(self.req.scenario[r]),
            "pair": torch.from_numpy(self.pair[rows]),
            "position": torch.from_numpy(self.position[rows]),
        }
        if self.labels is not None:
            batch["labels"] = torch.from_numpy(np.asarray(self.labels[rows], dtype=np.float32))
        return batch


class MultiTaskRanker:
    """scikit-learn shaped wrapper: `fit(samples)` then `predict_proba(req, request_index, item_ids)` → `[p, 3]`.

    `device` ("cpu", "auto", "cuda", … `genrec.device`) is where the network trains and scores;
    `device_` the `torch.device` it resolved to. Inputs and outputs are numpy arrays either way."""

    def __init__(self, space: FeatureSpace, config: RankerConfig | None = None, device: str = "cpu"):
        check_device(device, "device")
        self.space = space
        self.config = config or RankerConfig()
        self.device = device

    def fit(self, samples: ImpressionSamples, work_dir: Path | None = None) -> "MultiTaskRanker":
        from genrec.train.loop import TrainConfig, train

        if len(samples) == 0:
            raise ValueError("samples is empty; expected impressions to train the ranker on")
        cfg = self.config
        self.device_ = resolve_device(self.device, "device")
        torch.manual_seed(cfg.seed)
        req = self.space.requests(samples.requests)
        pair = self.space.pairs(req, samples.request_index, samples.item_ids)
        data = RankerBatch(req, samples.request_index, samples.item_ids, pair, samples.position, samples.labels)
        self.model_ = MMoERanker(self.space, req.query.shape[1], cfg)
        self.model_.pair_mean.copy_(torch.from_numpy(pair.mean(0)))
        self.model_.pair_std.copy_(torch.from_numpy(pair.std(0) + 1e-6))
        steps = max(1, int(math.ceil(cfg.epochs * len(data) / cfg.batch_size)))
        train_config = TrainConfig(
            steps=steps, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_steps=min(50, steps // 10),
            eval_every=steps, checkpoint_every=steps, seed=cfg.seed, device=str(self.device_), progress=cfg.progress,
        )
        # One thread: under two, two runs of the same training gave weights up to 0.05 apart (some op
        # in this model's backward is not reproducible multi-threaded), so the cascade — and the teacher
        # `genrec align` distils — changed from run to run. This model is small: one thread is no slower.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with tempfile.TemporaryDirectory(dir=work_dir) as out_dir:
                self.train_result_ = train(self.model_, funnel_loss, data, data.collate, train_config, Path(out_dir))
        finally:
            torch.set_num_threads(threads)
        self.model_.to(self.device_).eval()
        return self

    def predict_proba(self, req: RequestArrays, request_index: np.ndarray, item_ids: np.ndarray,
                      pair: np.ndarray | None = None, chunk: int = 8192) -> np.ndarray:
        """`[p, 3]` probabilities of click, cart, order, every candidate at the same (top) slot."""
        if not hasattr(self, "model_"):
            raise ValueError("MultiTaskRanker is not fitted; call fit(samples) first")
        if pair is None:
            pair = self.space.pairs(req, request_index, item_ids)
        data = RankerBatch(req, request_index, item_ids, pair)
        out = np.zeros((len(data), len(TASKS)), dtype=np.float32)
        self.model_.eval()
        with torch.no_grad():
            table = self.model_.items(torch.arange(self.space.n_items_, device=self.device_))
            for begin in range(0, len(data), chunk):
                rows = np.arange(begin, min(begin + chunk, len(data)))
                batch = {name: tensor.to(self.device_) for name, tensor in data.collate(rows).items()}
                out[rows] = self.model_.log_probs(batch, table).exp().cpu().numpy()
        return out

    def use_space(self, space: FeatureSpace) -> "MultiTaskRanker":
        """Read item statistics (and pair features) from `space` from now on — e.g. statistics over
        all training events at inference, after training on statistics from an earlier window."""
        self.space = space
        if hasattr(self, "model_"):
            self.model_.use_space(space)
        return self

    def state_dict(self) -> dict:
        return self.model_.state_dict()

    def load_state_dict(self, state: dict) -> "MultiTaskRanker":
        self.device_ = resolve_device(self.device, "device")
        self.model_ = MMoERanker(self.space, self.space.text_.shape[1], self.config)
        self.model_.load_state_dict(state)
        self.model_.to(self.device_).eval()
        return self
