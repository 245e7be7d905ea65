"""Training the generative retriever: every positive interaction teaches the
model to generate the SID of the item from what the user knew before it.

Examples (one per positive interaction of `split.train`, built like
`build_requests` builds evaluation requests: the user's earlier interactions as
history, the interaction's own query/scenario/time), plus an indexing task —
each item's own text as a query with no user, whose target is the item's SID
(DSI; OneSearch) — which teaches the model every item, including the ones no
one interacted with in training (cold items), by the words that describe it.

The loss is teacher-forced cross-entropy over the SID levels. The loop is
`genrec.train.loop.train` (CPU, GPU, torchrun alike); every `eval_every` steps it
measures Recall@10 / NDCG@10 of trie-constrained beam search on the validation
requests and keeps the best checkpoint.

Under torchrun every rank builds the same example tables (tensors indexed by the
loop, see docs/scale.md for their size) and trains its share of each global
batch; rank 0 alone computes the MiniLM item-vector cache (the others then read
it), evaluates, and writes the folder (checkpoints, metrics.csv, config.json,
encoder.json, manifest.json); the other ranks wait for it before returning.

    path = train_generative(run)            # RUN/train/generative/{best.pt, config.json, encoder.json, manifest.json}
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from genrec.artifacts import code_fingerprint, folder_sha256, manifest, write_json_atomic
from genrec.config_check import build_config
from genrec.data.dataset import Dataset
from genrec.data.splits import Split, build_requests, interactions, leave_one_out
from genrec.decode.trie import PrefixTrie
from genrec.eval.metrics import ndcg_at_k, ranked_matrix, recall_at_k
from genrec.features import TEXT_DIM, encode_items
from genrec.features.text_cache import TextVectorCache
from genrec.model.config import GenerativeConfig, InputSpec
from genrec.model.inputs import RequestEncoder, item_query_text, leaf_categories
from genrec.model.model import GenerativeModel
from genrec.model.retriever import GENERATIVE_CODE, MODEL_DIR, GenerativeRetriever
from genrec.model.thoughts import QueryThoughts
from genrec.retrieval import Request
from genrec.sid.table import SidTable
from genrec.train.distributed import barrier, is_main, main_first, process_group
from genrec.train.examples import ExampleTable
from genrec.train.loop import TrainConfig, train, train_options
from genrec.train.mixed import MixedTable, batch_targets, mixed_loss
from genrec.train.sequences import SequenceTable

SAVED_RECORDS: tuple[str, ...] = ("inputs", "align")
"""Entries of a saved `config.json` beside the training config (see `GenerativeTrainConfig.from_dict`)."""

NO_USER = 0
"""user_id of indexing-task requests: the item's text, asked by nobody in particular."""


def _default_train_config() -> TrainConfig:
    """The demo's schedule: 700 steps keep `make demo` within 15 minutes on 2 cores
    (why 700 and not 500: docs/generative.md)."""
    return TrainConfig(steps=700, batch_size=256, lr=2e-3, warmup_steps=50, eval_every=350,
                       checkpoint_every=350, weight_decay=0.01)


@dataclass
class GenerativeTrainConfig:
    """What `train_generative` does; saved as `config.json` next to the model.

    `index_copies`: how many times each item's text → SID example appears per epoch
    (0 turns the indexing task off; a recommendation-only model reads no query, so it
    must be 0). 3, chosen on the default world's validation split against 1 at the demo's
    700 steps: search R@10 +0.014 (p = 0.08), search NDCG@10 +0.009 (p = 0.03), recommendation
    NDCG@10 +0.006 (p = 0.03), long-tail searches 0.080 → 0.096; with a second training
    seed −0.004 / +0.001 and long-tail +0.013 (`benchmarks/results/search_parts_valid.md`):
    a wash on the main metrics, a gain on the long tail — the words of every item, not only
    the ones people bought, are what a search for a rarely bought item needs. `valid_requests`: how many validation requests the inline evaluation
    decodes (a seeded sample; all when 0). `query_vectors`: give the model the query's
    MiniLM vector as one more encoder token (only when the training data has queries).
    `categories`: add each history item's leaf-category embedding (only when items have
    categories). A config file sets any of these (`genrec train --config FILE`).
    """

    model: GenerativeConfig = field(default_factory=GenerativeConfig)
    train: TrainConfig = field(default_factory=_default_train_config)
    max_history: int = 50
    index_copies: int = 3
    valid_requests: int = 1000
    beams: int = 50
    query_vectors: bool = True
    categories: bool = True

    def __post_init__(self) -> None:
        if self.index_copies < 0:
            raise ValueError(f"index_copies must be ≥ 0, got {self.index_copies}")
        if self.index_copies and not self.model.search:
            raise ValueError("index_copies must be 0 for a recommendation-only model (tasks='recommendation'): "
                             "it reads no query, so the text → SID indexing task cannot be fed to it")

    def to_dict(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in fields(self)},
                "model": self.model.to_dict(), "train": asdict(self.train)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "GenerativeTrainConfig":
        """A config file's or `config.json`'s content; `train` starts from the stage's defaults. A saved
        "inputs" entry (the data's shape) and "align" entry (an aligned model's post-training) record
        what the model is, not how to train it, and are skipped."""
        return build_config(cls, {k: v for k, v in values.items() if k not in SAVED_RECORDS})


def train_generative(run: str | os.PathLike, config: GenerativeTrainConfig | None = None, *,
                     dataset: Dataset | None = None, split: Split | None = None, sids: Any = None,
                     resume: bool = False, progress: bool = True) -> Path:
    """Train on `run`'s data and SIDs; write `run/train/generative/`; return that folder.

    `dataset`, `split` and `sids` default to `RUN/data`, its leave-one-out split
    and `RUN/sid`. `sids` is anything with `item_ids [n]`, `codes [n, L]` and
    `codebook_sizes`. Under torchrun (`WORLD_SIZE > 1`) every rank calls this;
    rank 0 writes, and every rank returns once the folder is complete.
    """
    config = config or GenerativeTrainConfig()
    with process_group(config.train.device):
        out = _train_generative(Path(run), config, dataset, split, sids, resume, progress and is_main())
        barrier()  # the other ranks return (and may read the folder) once rank 0 has written it
    return out


def _train_generative(run: Path, config: GenerativeTrainConfig, dataset: Dataset | None, split: Split | None,
                      sids: Any, resume: bool, progress: bool) -> Path:
    dataset = dataset if dataset is not None else Dataset.load(run / "data")
    split = split if split is not None else leave_one_out(dataset.events)
    sids = sids if sids is not None else load_sid_table(run)
    torch.manual_seed(config.train.seed)
    out = run.joinpath(*MODEL_DIR)
    if is_main():
        out.mkdir(parents=True, exist_ok=True)
        (out / "manifest.json").unlink(missing_ok=True)  # the folder is incomplete until training ends

    prepared = prepare_training(run, config, dataset, split, sids, progress=progress)
    encoder, examples, model = prepared.encoder, prepared.examples, prepared.model
    valid, valid_targets = validation_requests(split, config.valid_requests, config.train.seed,
                                               recommendation_only=not config.model.search)
    evaluate = _validation(encoder, sids, valid, valid_targets, config.beams) if len(valid) else None
    began = time.perf_counter()
    result = train(model, mixed_loss, range(len(examples)), examples.collate, config.train, out,
                   evaluate=evaluate, metric="ndcg@10", resume=resume, batch_weight=batch_targets)
    seconds = time.perf_counter() - began
    if not is_main():
        return out

    saved = {**config.to_dict(), "inputs": model.spec.to_dict()}
    write_json_atomic(out / "config.json", saved)
    write_json_atomic(out / "encoder.json", encoder.state())
    # Any: a missing input folder is recorded as None (what `genrec.demo` compares against), which
    # `manifest`'s `dict[str, str]` annotation does not spell out.
    inputs: dict[str, Any] = {"data": _hash_or_none(run / "data"), "sid": _hash_or_none(run / "sid")}
    write_json_atomic(out / "manifest.json", manifest(
        saved, inputs=inputs,
        code=code_fingerprint(*GENERATIVE_CODE), result={"best_metric": result.best_metric, "best_step": result.best_step, "history": result.history,
                "train_seconds": round(seconds, 1), "examples_per_second": round(result.examples_per_second, 1),
                "n_examples": len(examples), "n_interaction_examples": prepared.n_interaction_examples,
                "n_index_examples": prepared.n_index_examples, "parameters": model.num_parameters()}))
    return out


@dataclass
class PreparedTraining:
    """What `prepare_training` hands the loop: the fitted request encoder, every example
    and a fresh model whose input spec was read off the data."""

    encoder: RequestEncoder
    examples: MixedTable
    model: GenerativeModel
    n_interaction_examples: int
    n_index_examples: int


def prepare_training(run: Path, config: GenerativeTrainConfig, dataset: Dataset, split: Split, sids: Any,
                     progress: bool = True) -> PreparedTraining:
    """Read the input spec off the data (codebook sizes, query-vector width when there
    are queries, the leaf-category table when items have categories), fit the request
    encoder and build every example: searches one by one, recommendation as windows of
    each user's history. Shared by `train_generative` and the training benchmark, so the
    benchmark measures the model that is trained."""
    searches: list[Request] = []
    search_targets = np.zeros(0, np.int64)
    if config.model.search:
        requests, targets = training_requests(split, config.max_history)
        is_search = np.asarray([bool(r.query) for r in requests], dtype=bool)
        searches, search_targets = [r for r, s in zip(requests, is_search) if s], targets[is_search]
    index_requests, index_targets = indexing_requests(dataset.items, config.index_copies)
    item_category, n_categories = leaf_categories(dataset.items)
    use_categories = config.categories and n_categories > 1
    reads_query_vectors = config.query_vectors and bool(searches or index_requests)
    head_reads_text = config.model.item_head and config.model.item_head_text
    vectors = None
    if reads_query_vectors or head_reads_text:  # the item text vectors, read once for both users
        with main_first():  # rank 0 computes and caches them; the other ranks read the cache
            vectors = encode_items(dataset, run / "features", views=("text",), progress=False)
    item_text = None
    if head_reads_text and vectors is not None:
        item_text = (np.array(vectors.item_ids, dtype=np.int64), np.array(vectors.vectors[:, :TEXT_DIM], np.float32))
    spec = InputSpec(
        codebook_sizes=tuple(int(v) for v in sids.codebook_sizes),
        query_vector_dim=TEXT_DIM if reads_query_vectors else 0,
        n_categories=n_categories if use_categories else 0,
        n_item_slots=len(item_category) if use_categories or config.model.item_head else 0,
        item_text_dim=0 if item_text is None else item_text[1].shape[1])
    encoder = RequestEncoder(config.model, spec, sids.item_ids, sids.codes,
                             query_vectors=_primed_query_vectors(vectors, dataset)
                             if spec.query_vector_dim and vectors is not None else None)
    encoder.fit(item_query_text(dataset.items) + [r.query for r in searches if r.query], dataset.users)
    search_table = (ExampleTable.build(encoder, sids, searches + index_requests,
                                       np.concatenate([search_targets, index_targets]), progress=progress)
                    if searches or index_requests else None)  # data without queries: windows alone
    teacher_table = None
    if config.model.self_distill and search_table is not None:
        if vectors is None or encoder.query_vectors is None:
            raise ValueError("self_distill needs the items' MiniLM text vectors and query vectors "
                             "(GenerativeTrainConfig.query_vectors true): a query's thought comes from its nearest items")
        thoughts = QueryThoughts.from_item_vectors(dataset.items, vectors, encoder.query_vectors)
        teacher_table = ExampleTable.build(encoder, sids, thoughts.augment(searches + index_requests),
                                           np.concatenate([search_targets, index_targets]), progress=progress)
    windows = SequenceTable.build(encoder, interactions(split.train))
    model = GenerativeModel(config.model, spec)
    if use_categories:
        model.set_item_categories(torch.from_numpy(item_category))
    if model.item_head is not None:
        model.item_head.set_known_items(torch.from_numpy(np.array(sids.item_ids, dtype=np.int64)))
        if item_text is not None:
            model.item_head.set_item_text(torch.from_numpy(item_text[0]), torch.from_numpy(item_text[1]))
    return PreparedTraining(encoder, MixedTable(search_table, windows, teacher_table), model,
                            len(searches) + windows.n_targets, len(index_requests))


def training_requests(split: Split, max_history: int = 50) -> tuple[list[Request], np.ndarray]:
    """One request per positive interaction of `split.train`, with the user's
    earlier interactions as history (as `build_requests` does), and its item `[n]`."""
    inter = interactions(split.train)
    users = inter["user_id"].to_numpy()
    items = inter["item_id"].to_numpy()
    actions = inter["action"].to_numpy()
    times = inter["ts"].to_numpy()
    queries = inter["query"].to_numpy()
    scenarios = inter["scenario"].to_numpy()
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1] if len(users) else np.zeros(0, np.int64)
    first = np.repeat(starts, np.diff(np.r_[starts, len(users)]))
    requests = []
    for row in range(len(users)):
        begin = max(int(first[row]), row - max_history)
        query = queries[row]
        requests.append(Request(
            user_id=int(users[row]), query=None if _missing(query) else str(query), scenario=str(scenarios[row]),
            ts=int(times[row]), history=tuple(items[begin:row].tolist()),
            history_actions=tuple(actions[begin:row].tolist()), history_ts=tuple(times[begin:row].tolist())))
    return requests, items.astype(np.int64)


def indexing_requests(items: pd.DataFrame, copies: int = 1) -> tuple[list[Request], np.ndarray]:
    """Each item's own text as a search request by no one, `copies` times; targets `[n]`."""
    if copies < 0:
        raise ValueError(f"index_copies must be ≥ 0, got {copies}")
    texts = item_query_text(items)
    ids = items["item_id"].to_numpy(dtype=np.int64)
    requests = [Request(user_id=NO_USER, query=text, scenario="search") for text in texts] * copies
    return requests, np.tile(ids, copies)


def validation_requests(split: Split, limit: int, seed: int,
                        recommendation_only: bool = False) -> tuple[list[Request], np.ndarray]:
    """`build_requests(split, "valid")`, a seeded sample of `limit` of them (all when 0);
    only those without a query with `recommendation_only` (what a causal-history model answers)."""
    requests, targets = build_requests(split, "valid")
    if recommendation_only:
        keep = np.asarray([not r.query for r in requests], dtype=bool)
        requests, targets = [r for r, k in zip(requests, keep) if k], targets[keep]
    if limit and len(requests) > limit:
        pick = np.sort(np.random.default_rng(seed).choice(len(requests), limit, replace=False))
        requests, targets = [requests[i] for i in pick], targets[pick]
    return requests, targets


def _primed_query_vectors(vectors: Any, dataset: Dataset) -> TextVectorCache:
    """A MiniLM query-vector cache that already knows the indexing task's texts: an
    item's pseudo-query gets the item's own text vector (`vectors`, the items' text view
    from `RUN/features`), so 10k item texts are not encoded a second time."""
    row_of = dict(zip(vectors.item_ids.tolist(), range(len(vectors))))
    rows = [row_of[int(i)] for i in dataset.items["item_id"]]
    cache = TextVectorCache()
    cache.prime(item_query_text(dataset.items), vectors.vectors[rows, :TEXT_DIM])
    return cache


def load_sid_table(run: str | os.PathLike) -> SidTable:
    """The SID table the `sid` stage wrote to `RUN/sid`."""
    return SidTable.load(Path(run) / "sid")


def _validation(encoder, sids, requests, targets, beams):
    """`evaluate(model)` for the loop: Recall@10 / NDCG@10 overall, for search and for recommendation."""
    trie = PrefixTrie.from_codes(sids.codes, sids.item_ids, list(sids.codebook_sizes))
    is_search = np.asarray([r.is_search for r in requests])

    def evaluate(model: GenerativeModel) -> dict[str, float]:
        ranked = ranked_matrix(GenerativeRetriever(model, encoder, trie, beams=beams).retrieve(requests, 10), 10)
        scores = {"recall@10": recall_at_k(ranked, targets, 10).mean, "ndcg@10": ndcg_at_k(ranked, targets, 10).mean}
        for name, rows in (("search", is_search), ("rec", ~is_search)):
            if rows.any():
                scores[f"{name}_ndcg@10"] = ndcg_at_k(ranked[rows], targets[rows], 10).mean
                scores[f"{name}_recall@10"] = recall_at_k(ranked[rows], targets[rows], 10).mean
        return scores

    return evaluate


def train_generative_command(run: Path, *, steps: int | None = None, resume: bool = False, force: bool = False,
                             device: str = "auto", config: GenerativeTrainConfig | None = None,
                             checkpoint_every: int | None = None, checkpoint_seconds: float | None = None) -> dict[str, Any]:
    """`genrec train --model generative [--config FILE] [--set key=value]`: train unless a
    finished model is there (or `force`)."""
    out = run.joinpath(*MODEL_DIR)
    if force or resume or not (out / "manifest.json").exists():
        config = config or GenerativeTrainConfig()
        config.train = train_options(config.train, steps=steps, device=device, checkpoint_every=checkpoint_every,
                                     checkpoint_seconds=checkpoint_seconds)
        train_generative(run, config, resume=resume)
    result = json.loads((out / "manifest.json").read_text())["result"]
    return {"model": "generative", "folder": str(out), **{k: v for k, v in result.items() if k != "history"},
            "history": result["history"]}


def _hash_or_none(path: Path) -> str | None:
    return folder_sha256(path) if path.is_dir() else None


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))
