"""SASRec: a self-attentive sequential recommender, the sequence baseline a generative model must beat.

A causal Transformer reads the user's interactions (item embedding + learned
position) and its hidden state at each position scores every item through the
same item embedding table (Kang & McAuley, 2018). We train with a softmax
instead of the paper's binary loss with one sampled negative: the full softmax
over the catalogue (`loss="ce"`, the default) or a sampled softmax over shared
negatives with the logQ correction (`loss="sampled"`,
`genrec.baselines.next_item_losses`), which costs far less per step on a large
catalogue.

Training sees every prefix of each user's training interactions: a user's
sequence is cut into windows of `max_history + 1` items and every position of a
window predicts the next item, so one forward pass covers all its prefixes.
It runs through `genrec.train.loop.train` (same loop as the generative model).

`SASRecRetriever.train` (the `genrec train --model sasrec` stage) trains and saves
`RUN/train/sasrec/best.pt` unless its manifest says it was trained on the same
interactions with the same config; `SASRecRetriever.from_run` only loads it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genrec.artifacts import MissingStageError, code_fingerprint, manifest, write_json_atomic
from genrec.baselines.next_item_losses import LOSSES, SAMPLERS, next_item_loss
from genrec.data.dataset import Dataset
from genrec.data.splits import SERVED, Split, build_requests, interactions, leave_one_out
from genrec.retrieval import Ranked, Request
from genrec.train.loop import TrainConfig, load_best, train

RANK_BATCH = 512  # requests scored per forward pass at retrieval time
SASREC_CODE: tuple[str, ...] = ("genrec.baselines.sasrec", "genrec.baselines.next_item_losses", "genrec.train.loop")
"""The modules whose source decides what SASRec learns: edit one and the cached model is retrained."""


@dataclass
class SASRecModelConfig:
    """Shape of the network. `n_items` is the largest item id (embedding rows = n_items + 1, row 0 = padding)."""

    n_items: int
    max_history: int = 50
    dim: int = 64
    heads: int = 2
    layers: int = 2
    dropout: float = 0.2
    n_categories: int = 0  # leaf categories whose embedding is added to each item's (0: none)
    item_bias: bool = True  # a learned per-item score offset (popularity) in the output layer

    def __post_init__(self) -> None:
        if self.n_items < 1:
            raise ValueError(f"n_items must be ≥ 1, got {self.n_items}")
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        if self.max_history < 1:
            raise ValueError(f"max_history must be ≥ 1, got {self.max_history}")


@dataclass
class SASRecConfig:
    """Everything that fixes a trained SASRec: network shape, training run, validation sample.

    Defaults train on the default world (≈5k users) in about two minutes on 2 CPU cores.
    """

    max_history: int = 50
    dim: int = 64
    heads: int = 2
    layers: int = 2
    dropout: float = 0.2
    use_category: bool = True  # item vector = own embedding + its leaf category's (shares strength across sparse items)
    item_bias: bool = True
    exclude_history: bool = False  # never recommend an item the user already interacted with
    valid_requests: int = 2000  # validation requests scored at each evaluation (a fixed sample)
    loss: str = "ce"  # "ce": full softmax over the catalogue; "sampled": sampled softmax (next_item_losses)
    negatives: int = 256  # loss="sampled": negatives drawn per batch, shared by every position
    negative_sampler: str = "uniform"  # loss="sampled": "uniform" or "popularity" (logQ-corrected either way)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=400, batch_size=128, lr=2e-3, weight_decay=0.01, warmup_steps=50, eval_every=100, checkpoint_every=100,
    ))

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {list(LOSSES)}, got {self.loss!r}")
        if self.negative_sampler not in SAMPLERS:
            raise ValueError(f"negative_sampler must be one of {list(SAMPLERS)}, got {self.negative_sampler!r}")
        if self.negatives < 1:
            raise ValueError(f"negatives must be ≥ 1, got {self.negatives}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SASRecConfig":
        values = dict(values)
        train_values = values.pop("train", {})
        return cls(**values, train=TrainConfig.from_dict(train_values))

    def model_config(self, n_items: int, n_categories: int = 0) -> SASRecModelConfig:
        return SASRecModelConfig(n_items, self.max_history, self.dim, self.heads, self.layers, self.dropout,
                                 n_categories if self.use_category else 0, self.item_bias)


class SASRec(nn.Module):
    """Item + position embeddings → pre-norm causal Transformer blocks → final norm.

    `forward(items [batch, length]) -> hidden [batch, length, dim]`, items
    right-padded with 0; position i attends to positions ≤ i, so padding after
    the last real item never leaks into it. An item's vector (input and output
    side alike) is its own embedding plus, with `n_categories`, its leaf
    category's: `item_category` `[n_items + 1]` maps item id → category 1..n (0 = none).
    """

    item_category: Tensor  # buffer [n_items + 1], registered in __init__

    def __init__(self, config: SASRecModelConfig, item_category: Tensor | None = None,
                 block: Callable[[SASRecModelConfig], nn.Module] | None = None):
        """`block(config)` builds one layer `[batch, length, dim] -> same`, causal (default:
        `softmax_block`, SASRec's; `genrec.baselines.hstu` passes HSTU's)."""
        super().__init__()
        self.config = config
        if item_category is None:
            item_category = torch.zeros(config.n_items + 1, dtype=torch.long)
        if item_category.shape != (config.n_items + 1,) or int(item_category.max()) > config.n_categories:
            raise ValueError(f"item_category must be [{config.n_items + 1}] with values in [0, {config.n_categories}]")
        self.register_buffer("item_category", item_category.long().clone())
        self.item_embedding = nn.Embedding(config.n_items + 1, config.dim, padding_idx=0)
        self.category_embedding = (
            nn.Embedding(config.n_categories + 1, config.dim, padding_idx=0) if config.n_categories else None
        )
        self.item_bias = nn.Parameter(torch.zeros(config.n_items + 1)) if config.item_bias else None
        self.position_embedding = nn.Embedding(config.max_history, config.dim)
        self.dropout = nn.Dropout(config.dropout)
        block = block or softmax_block
        self.blocks = nn.ModuleList(block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.dim)
        nn.init.normal_(self.item_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.02)
        if self.category_embedding is not None:
            nn.init.normal_(self.category_embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
            if self.category_embedding is not None:
                self.category_embedding.weight[0].zero_()

    def forward(self, items: Tensor) -> Tensor:
        length = items.shape[1]
        if length > self.config.max_history:
            raise ValueError(f"sequence length {length} exceeds max_history {self.config.max_history}")
        positions = torch.arange(length, device=items.device)
        x = self.dropout(self.item_vectors(items) + self.position_embedding(positions))
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def item_logits(self, hidden: Tensor) -> Tensor:
        """Scores of items 1..n_items for hidden states `[..., dim]` → `[..., n_items]` (column j = item j+1)."""
        ids = torch.arange(1, self.config.n_items + 1, device=hidden.device)
        logits = hidden @ self.item_vectors(ids).T
        return logits + self.item_bias[1:] if self.item_bias is not None else logits

    def item_vectors(self, items: Tensor) -> Tensor:
        """Vectors of item ids `[...]` → `[..., dim]` (padding id 0 → zeros)."""
        vectors = self.item_embedding(items)
        if self.category_embedding is not None:
            vectors = vectors + self.category_embedding(self.item_category[items])
        return vectors

    def last_hidden(self, items: Tensor, lengths: Tensor) -> Tensor:
        """Hidden state after each sequence's last real item: `[batch, dim]` (lengths ≥ 1)."""
        hidden = self(items)
        return hidden[torch.arange(len(items), device=items.device), lengths - 1]


def softmax_block(config: SASRecModelConfig) -> nn.Module:
    """SASRec's layer for `config`."""
    return CausalBlock(config.dim, config.heads, config.dropout)


class CausalBlock(nn.Module):
    """Pre-norm self-attention (causal) and feed-forward, each with a residual."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.attention_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.dropout = nn.Dropout(dropout)
        self.attention_dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).split(dim, dim=-1)
        q, k, v = (t.view(batch, length, self.heads, dim // self.heads).transpose(1, 2) for t in (q, k, v))
        attended = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.attention_dropout if self.training else 0.0
        )
        x = x + self.dropout(self.out(attended.transpose(1, 2).reshape(batch, length, dim)))
        return x + self.dropout(self.mlp(self.mlp_norm(x)))


# --------------------------------------------------------------------------- training data


def training_windows(inter: pd.DataFrame, max_history: int) -> list[np.ndarray]:
    """Each user's item sequence cut into windows of ≤ `max_history + 1` items, int64.

    Windows are taken from the end backwards with a stride of `max_history`, so
    every interaction after a user's first is a target exactly once, with up to
    `max_history` items of context. `inter` is `genrec.data.splits.interactions`
    output (grouped by user, oldest first).
    """
    items = inter["item_id"].to_numpy(dtype=np.int64)
    users = inter["user_id"].to_numpy()
    starts = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1, len(users)] if len(users) else np.array([0])
    windows = []
    for begin, end in zip(starts[:-1], starts[1:]):
        stop = end
        while stop - begin >= 2:
            windows.append(items[max(begin, stop - max_history - 1):stop])
            stop -= max_history
    return windows


def collate_windows(windows: list[np.ndarray]) -> dict[str, Tensor]:
    """Windows → `inputs` and next-item `targets`, both `[batch, longest - 1]`, right-padded with 0."""
    length = max(len(w) for w in windows) - 1
    inputs = torch.zeros(len(windows), length, dtype=torch.long)
    targets = torch.zeros(len(windows), length, dtype=torch.long)
    for row, window in enumerate(windows):
        sequence = torch.tensor(window, dtype=torch.long)
        inputs[row, : len(sequence) - 1] = sequence[:-1]
        targets[row, : len(sequence) - 1] = sequence[1:]
    return {"inputs": inputs, "targets": targets}


# --------------------------------------------------------------------------- the retriever


class SASRecRetriever:
    """Ranks every item for a request's history with one batched forward pass.

    Requests with an empty history (cold-start users) get the training
    popularity list: the network has no input to condition on. A query, if
    any, is ignored — SASRec is a recommendation model.

    A variant with other layers (`genrec.baselines.hstu.HSTURetriever`) sets the class
    attributes: its `name` (registry name and `RUN/train/<name>` folder), `config_type`,
    `block` (one layer for a `SASRecModelConfig`) and `code` (the modules whose source
    decides what it learns).
    """

    name = "sasrec"
    config_type: type[SASRecConfig] = SASRecConfig
    block: Callable[[SASRecModelConfig], nn.Module] = staticmethod(softmax_block)
    code: tuple[str, ...] = SASREC_CODE

    def __init__(self, model: SASRec, popularity: np.ndarray, exclude_history: bool = False, device: str = "cpu"):
        n_slots = model.config.n_items + 1
        popularity = np.asarray(popularity, dtype=np.float32)
        if popularity.shape != (n_slots,):
            raise ValueError(f"popularity must have shape [{n_slots}] (n_items + 1), got {popularity.shape}")
        self.model = model.to(device).eval()
        self.popularity_ = popularity
        self.exclude_history = exclude_history
        self.device = torch.device(device)

    @classmethod
    def from_run(cls, run: Path, dataset: Dataset, split: Split, config: SASRecConfig | None = None) -> "SASRecRetriever":
        """Load the model `genrec train --model sasrec` trained on `split` with `config`; never
        trains (`MissingStageError` names the command). Serving's all-events split (`SERVED`)
        is answered by the leave-one-out model, the one the evaluation report measured;
        its popularity fallback counts every event."""
        config = config or cls.config_type()
        trained_on = leave_one_out(dataset.events) if split.name == SERVED else split
        folder = artefact_dir(run, trained_on, cls.name)
        model, fingerprint = cls._model_for(dataset, trained_on, config)
        if not _manifest_matches(folder, fingerprint):
            raise MissingStageError(folder, f"genrec train --run {run} --model {cls.name}"
                                    + (" --force (the saved model is for other data or another config)"
                                       if (folder / "manifest.json").exists() else ""))
        load_best(model, folder)
        return cls(model, _popularity(split, model.config.n_items), config.exclude_history)

    @classmethod
    def train(cls, run: Path, dataset: Dataset, split: Split, config: SASRecConfig | None = None,
              resume: bool = False, force: bool = False) -> "SASRecRetriever":
        """Train and save the model for `split` and `config` unless a matching one is saved
        (or `force`), then load it: the training stage, which `from_run` never is."""
        config = config or cls.config_type()
        folder = artefact_dir(run, split, cls.name)
        model, fingerprint = cls._model_for(dataset, split, config)
        if force or not _manifest_matches(folder, fingerprint):
            fit(model, interactions(split.train), split, config, folder, fingerprint,  # ends on best.pt
                lambda counts: cls.training_loss(config, counts), resume=resume)
        else:
            load_best(model, folder)
        return cls(model, _popularity(split, model.config.n_items), config.exclude_history)

    @classmethod
    def _model_for(cls, dataset: Dataset, split: Split, config: SASRecConfig) -> tuple[SASRec, str]:
        """A fresh model sized for `dataset` and the fingerprint of what it trains on."""
        n_items = int(dataset.items["item_id"].max())
        item_category, n_categories = leaf_categories(dataset)
        with torch.random.fork_rng():  # initialised from the config's seed, whatever ran before in this process
            torch.manual_seed(config.train.seed)
            model = cls.network(config, config.model_config(n_items, n_categories),
                                torch.from_numpy(item_category) if config.use_category else None)
        return model, _fingerprint(interactions(split.train), item_category, config, cls.code)

    @classmethod
    def network(cls, config: SASRecConfig, shape: SASRecModelConfig, item_category: Tensor | None) -> SASRec:
        """A fresh network for `config` (a variant with more than other layers overrides this)."""
        return SASRec(shape, item_category, block=cls.block)

    @classmethod
    def training_loss(cls, config: SASRecConfig, item_counts: np.ndarray) -> Callable[[Any, dict[str, Tensor]], Tensor]:
        """`loss_fn(model, batch)` for the shared loop; `item_counts` `[n_items + 1]` are training interactions."""
        return next_item_loss(config.loss, item_counts, config.negatives, config.negative_sampler)

    def retrieve(self, requests: Sequence[Request], k: int) -> list[Ranked]:
        if k < 1:
            raise ValueError(f"k must be ≥ 1, got {k}")
        answers: list[Ranked] = []
        for begin in range(0, len(requests), RANK_BATCH):
            chunk = [r.history for r in requests[begin:begin + RANK_BATCH]]
            ids, scores = rank_items(self.model, chunk, k, self.popularity_, self.exclude_history, self.device)
            answers.extend(Ranked(i[np.isfinite(s)], s[np.isfinite(s)]) for i, s in zip(ids, scores))
        return answers


def rank_items(model: SASRec, histories: Sequence[Sequence[int]], k: int, popularity: np.ndarray,
               exclude_history: bool = False, device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Top-`k` item ids and scores `[n, k]` for each history (last `max_history` items used).

    Padding (id 0) is never returned; excluded slots score -inf.
    """
    n_slots = model.config.n_items + 1
    k = min(k, n_slots - 1)
    scores = score_histories(model, histories, popularity, device)
    scores[:, 0] = -math.inf
    if exclude_history:
        for row, history in enumerate(histories):
            if len(history):
                scores[row, torch.as_tensor(list(history), dtype=torch.long)] = -math.inf
    top = torch.topk(scores, k, dim=1)
    return top.indices.numpy().astype(np.int64), top.values.numpy().astype(np.float32)


@torch.no_grad()
def score_histories(model: SASRec, histories: Sequence[Sequence[int]], popularity: np.ndarray,
                    device: torch.device | str = "cpu") -> Tensor:
    """Scores of every item slot for each history: float32 `[n, n_items + 1]` on the CPU."""
    was_training = model.training
    model.eval()
    max_history, n_slots = model.config.max_history, model.config.n_items + 1
    clipped = [list(h)[-max_history:] for h in histories]
    for history in clipped:
        if any(not 0 < item < n_slots for item in history):
            raise ValueError(f"history item ids must be in [1, {n_slots - 1}], got {history}")
    lengths = torch.tensor([len(h) for h in clipped], dtype=torch.long)
    scores = torch.as_tensor(popularity, dtype=torch.float32).repeat(len(clipped), 1)
    known = (lengths > 0).nonzero().squeeze(1)
    if len(known):
        items = torch.zeros(len(known), int(lengths.max()), dtype=torch.long)
        for row, index in enumerate(known.tolist()):
            items[row, : lengths[index]] = torch.as_tensor(clipped[index])
        hidden = model.last_hidden(items.to(device), lengths[known].to(device))
        logits = model.item_logits(hidden).float().cpu()
        scores[known, 1:] = logits
    model.train(was_training)
    return scores


# --------------------------------------------------------------------------- fitting


def fit(model: SASRec, train_inter: pd.DataFrame, split: Split, config: SASRecConfig, folder: Path,
        fingerprint: str, loss_for: Callable[[np.ndarray], Callable[[Any, dict[str, Tensor]], Tensor]],
        resume: bool = False) -> dict[str, Any]:
    """Train `model` with the shared loop into `folder` and write the manifest last.

    Validation (NDCG@10 on a fixed sample of `split.valid`) picks `best.pt`;
    without validation cases the final weights are kept.
    """
    windows = training_windows(train_inter, config.max_history)
    if not windows:
        raise ValueError("split.train has no user with two or more interactions; SASRec needs sequences to learn from")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").unlink(missing_ok=True)  # the folder is not trustworthy until training ends
    pending = folder / "pending.json"
    if resume and not (pending.exists() and json.loads(pending.read_text()).get("fingerprint") == fingerprint):
        resume = False  # last.pt belongs to other data or config
    write_json_atomic(pending, {"fingerprint": fingerprint})
    write_json_atomic(folder / "config.json", asdict(config))

    counts = np.bincount(train_inter["item_id"].to_numpy(dtype=np.int64),
                         minlength=model.config.n_items + 1)[: model.config.n_items + 1]
    evaluate = validation_ndcg(split, config, popularity=counts)
    loss = loss_for(counts)  # the retriever's `training_loss`, given the training interactions per item
    began, began_cpu = time.perf_counter(), time.process_time()
    result = train(model, loss, windows, collate_windows, config.train, folder,
                   evaluate=evaluate, metric="ndcg@10", resume=resume)
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - began_cpu
    if evaluate is not None:
        load_best(model, folder)
    summary = {"best_metric": result.best_metric, "best_step": result.best_step, "last_step": result.last_step,
               "train_seconds": seconds, "train_cpu_seconds": cpu_seconds, "examples_per_second": result.examples_per_second,
               "training_windows": len(windows), "history": result.history}
    write_json_atomic(folder / "manifest.json", manifest(config, inputs={"train_interactions": fingerprint},
                                                         fingerprint=fingerprint, result=summary))
    pending.unlink(missing_ok=True)
    (folder / "last.pt").unlink(missing_ok=True)  # optimizer state is only needed to resume
    return summary


def validation_ndcg(split: Split, config: SASRecConfig, popularity: np.ndarray):
    """An `evaluate(model) -> {"ndcg@10", "recall@10"}` callback on a fixed sample of validation requests, or None."""
    if len(split.valid) == 0:
        return None
    from genrec.eval.metrics import ndcg_at_k, recall_at_k

    requests, targets = build_requests(split, "valid", max_history=config.max_history)
    if len(requests) > config.valid_requests:
        keep = np.sort(np.random.default_rng(config.train.seed).choice(len(requests), config.valid_requests, replace=False))
        requests, targets = [requests[i] for i in keep], targets[keep]
    histories = [r.history for r in requests]

    def evaluate(model: SASRec) -> dict[str, float]:
        device = next(model.parameters()).device
        ranked = np.concatenate([
            rank_items(model, histories[b:b + RANK_BATCH], 10, popularity, config.exclude_history, device)[0]
            for b in range(0, len(histories), RANK_BATCH)
        ])
        return {"ndcg@10": ndcg_at_k(ranked, targets, 10).mean, "recall@10": recall_at_k(ranked, targets, 10).mean}

    return evaluate


def artefact_dir(run: Path, split: Split, model: str = "sasrec") -> Path:
    """`RUN/train/<model>` for the evaluation split; another split (e.g. serving on all events) gets a subfolder."""
    folder = Path(run) / "train" / model
    return folder if split.name == "leave_one_out" else folder / split.name


def leaf_categories(dataset: Dataset) -> tuple[np.ndarray, int]:
    """Each item's leaf category as 1..n, int64 `[max_item_id + 1]` (0 = padding), and n.

    A leaf is the item's whole category path, so leaves with one name under two parents stay apart.
    """
    items = dataset.items
    paths = np.array([" > ".join(map(str, path)) for path in items["category"]], dtype=object)
    names, index = np.unique(paths, return_inverse=True)
    category = np.zeros(int(items["item_id"].max()) + 1, dtype=np.int64)
    category[items["item_id"].to_numpy(dtype=np.int64)] = index + 1
    return category, len(names)


def _fingerprint(train_inter: pd.DataFrame, item_category: np.ndarray, config: SASRecConfig,
                 code: Sequence[str] = SASREC_CODE) -> str:
    """Hash of what the weights depend on: the training interactions, the catalogue's categories, the
    config and the training code `code` (module names: a model cached by older code must not stand in
    for the current one)."""
    digest = hashlib.sha256()
    digest.update(code_fingerprint(*code).encode())
    for column in ("user_id", "item_id", "seq"):
        digest.update(np.ascontiguousarray(train_inter[column].to_numpy(dtype=np.int64)).tobytes())
    digest.update(np.ascontiguousarray(item_category, dtype=np.int64).tobytes())
    settings = asdict(config)
    for where_it_runs in ("device", "progress", "checkpoint_every", "checkpoint_seconds", "log_every"):  # how it runs, not what it learns
        settings["train"].pop(where_it_runs)
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


def _popularity(split: Split, n_items: int) -> np.ndarray:
    """Interactions per item id `[n_items + 1]` in `split.train` (the cold-history fallback)."""
    items = interactions(split.train)["item_id"].to_numpy(dtype=np.int64)
    return np.bincount(items[items <= n_items], minlength=n_items + 1)[: n_items + 1]


def _manifest_matches(folder: Path, fingerprint: str) -> bool:
    path = folder / "manifest.json"
    if not (path.exists() and (folder / "best.pt").exists()):
        return False
    return json.loads(path.read_text()).get("fingerprint") == fingerprint

