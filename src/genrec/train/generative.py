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

    path = train_generative(run)            # RUN/train/generative/{best.pt, config.json, encoder.json, manifest.json}
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from genrec.artifacts import code_fingerprint, folder_sha256, manifest, write_json_atomic
from genrec.data.dataset import Dataset
from genrec.data.splits import Split, build_requests, interactions, leave_one_out
from genrec.eval.metrics import ndcg_at_k, ranked_matrix, recall_at_k
from genrec.features import TEXT_DIM, encode_items
from genrec.features.text_cache import TextVectorCache
from genrec.model.inputs import RequestEncoder, item_query_text, leaf_categories
from genrec.model.transformer import EncoderBatch, GenerativeConfig, GenerativeModel, SequenceBatch
from genrec.retrieval import Request
from genrec.train.loop import TrainConfig, train
from genrec.train.mixed import MixedTable, mixed_loss
from genrec.train.sequences import SequenceTable

MODEL_DIR = ("train", "generative")
GENERATIVE_CODE: tuple[str, ...] = ("genrec.model", "genrec.train")
"""The packages whose source decides what the generative model learns; its manifest records their hash
(`code`), so the demo retrains a model cached by older code and `GenerativeRetriever.from_run` says so."""
NO_USER = 0
"""user_id of indexing-task requests: the item's text, asked by nobody in particular."""


def _default_model_config() -> GenerativeConfig:
    # Causal recommendation: on the default world's validation split it beat the per-request
    # model on recommendation (NDCG@10 0.1008 vs 0.0861 on all 1,763 requests; SASRec 0.0954)
    # and held search (Recall@10 0.333 vs 0.329) at the same steps and training time; copying
    # the 3 newest leaves lifted both again (0.1028, 0.342). benchmarks/results/
    # generative_variants.md, variants 22 and 28.
    return GenerativeConfig(causal_recommendation=True, copy_recent=3)


def _default_train_config() -> TrainConfig:
    # 700 steps keep `make demo` within 15 minutes on 2 cores. With causal recommendation and
    # the copy pointer, validation-sample search Recall@10 rose from 0.326 at 500 steps to
    # 0.369 at 700 and recommendation NDCG@10 from 0.098 to 0.106 (generative_variants.md,
    # variants 28 and 29); at 500 steps the per-request model had 0.309 and 0.075.
    return TrainConfig(steps=700, batch_size=256, lr=2e-3, warmup_steps=50, eval_every=350,
                       checkpoint_every=350, weight_decay=0.01)


@dataclass
class GenerativeTrainConfig:
    """What `train_generative` does; saved as `config.json` next to the model.

    `model.codebook_sizes` is overwritten by the SID table's. `index_copies`:
    how many times each item's text → SID example appears per epoch (0 turns
    the indexing task off). `valid_requests`: how many validation requests the
    inline evaluation decodes (a seeded sample; all when 0). `query_vectors`:
    give the model the query's MiniLM vector as one more encoder token (only
    when the training data has queries). `categories`: add each history item's
    leaf-category embedding (only when items have categories).
    `search_as_recommendation`: every search interaction is also a
    recommendation example, its query dropped (`search_as_recommendation`).
    `sequence_targets`: with `model.causal_recommendation`, which window
    positions are recommendation targets: "all" interactions or only the
    "recommendation" ones (`genrec.train.sequences`).
    """

    model: GenerativeConfig = field(default_factory=_default_model_config)
    train: TrainConfig = field(default_factory=_default_train_config)
    max_history: int = 50
    index_copies: int = 1
    valid_requests: int = 1000
    beams: int = 20
    query_vectors: bool = True
    categories: bool = True
    search_as_recommendation: bool = False
    sequence_targets: str = "all"

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "train": asdict(self.train), "max_history": self.max_history,
                "index_copies": self.index_copies, "valid_requests": self.valid_requests, "beams": self.beams,
                "query_vectors": self.query_vectors, "categories": self.categories,
                "search_as_recommendation": self.search_as_recommendation,
                "sequence_targets": self.sequence_targets}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "GenerativeTrainConfig":
        return cls(model=GenerativeConfig.from_dict(values.get("model", {})),
                   train=TrainConfig.from_dict(values.get("train", {})),
                   **{k: values[k] for k in ("max_history", "index_copies", "valid_requests", "beams",
                                             "query_vectors", "categories", "search_as_recommendation",
                                             "sequence_targets")
                      if k in values})


def train_generative(run: str | os.PathLike, config: GenerativeTrainConfig | None = None, *,
                     dataset: Dataset | None = None, split: Split | None = None, sids: Any = None,
                     resume: bool = False, progress: bool = True) -> Path:
    """Train on `run`'s data and SIDs; write `run/train/generative/`; return that folder.

    `dataset`, `split` and `sids` default to `RUN/data`, its leave-one-out split
    and `RUN/sid`. `sids` is anything with `item_ids [n]`, `codes [n, L]` and
    `codebook_sizes`.
    """
    run = Path(run)
    config = config or GenerativeTrainConfig()
    dataset = dataset if dataset is not None else Dataset.load(run / "data")
    split = split if split is not None else leave_one_out(dataset.events)
    sids = sids if sids is not None else load_sid_table(run)
    config = replace(config, model=replace(config.model, codebook_sizes=tuple(int(v) for v in sids.codebook_sizes)))
    torch.manual_seed(config.train.seed)
    out = run.joinpath(*MODEL_DIR)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)  # the folder is incomplete until training ends

    prepared = prepare_training(run, config, dataset, split, sids, progress=progress)
    config, encoder, examples, model = prepared.config, prepared.encoder, prepared.examples, prepared.model
    n_interaction_examples, n_index_examples = prepared.n_interaction_examples, prepared.n_index_examples
    valid, valid_targets = validation_requests(split, config.valid_requests, config.train.seed,
                                               recommendation_only=config.model.causal_history)
    evaluate = _validation(encoder, sids, valid, valid_targets, config.beams) if len(valid) else None
    began = time.perf_counter()
    result = train(model, training_loss(config.model), range(len(examples)), examples.collate, config.train, out,
                   evaluate=evaluate, metric="ndcg@10", resume=resume)
    seconds = time.perf_counter() - began

    write_json_atomic(out / "config.json", config.to_dict())
    write_json_atomic(out / "encoder.json", encoder.state())
    write_json_atomic(out / "manifest.json", manifest(
        config.to_dict(), inputs={"data": _hash_or_none(run / "data"), "sid": _hash_or_none(run / "sid")},
        code=code_fingerprint(*GENERATIVE_CODE), result={"best_metric": result.best_metric, "best_step": result.best_step, "history": result.history,
                "train_seconds": round(seconds, 1), "examples_per_second": round(result.examples_per_second, 1),
                "n_examples": len(examples), "n_interaction_examples": n_interaction_examples,
                "n_index_examples": n_index_examples, "parameters": model.num_parameters()}))
    return out


@dataclass
class PreparedTraining:
    """What `prepare_training` hands the loop: the config completed from the data,
    the fitted request encoder, every example, and a fresh model."""

    config: GenerativeTrainConfig
    encoder: RequestEncoder
    examples: "ExampleTable | SequenceTable | MixedTable"
    model: GenerativeModel
    n_interaction_examples: int
    n_index_examples: int


def prepare_training(run: Path, config: GenerativeTrainConfig, dataset: Dataset, split: Split, sids: Any,
                     progress: bool = True) -> PreparedTraining:
    """Complete `config.model` from the data (codebook sizes, query-vector width when
    there are queries, the leaf-category table when items have categories), fit the
    request encoder and build every example: shared by `train_generative` and the
    training benchmark, so the benchmark measures the model that is trained."""
    causal = config.model.causal_history
    if causal and config.index_copies:
        raise ValueError("index_copies must be 0 for a causal_history model: it reads no query, "
                         "so the text → SID indexing task cannot be fed to it")
    requests, targets = training_requests(split, config.max_history) if not causal else ([], np.zeros(0, np.int64))
    windowed = config.model.causal_recommendation  # recommendation is trained on windows, not request by request
    if windowed:
        if config.search_as_recommendation:
            raise ValueError("search_as_recommendation and causal_recommendation exclude each other: the "
                             "windows already train every search interaction as a recommendation target "
                             "(sequence_targets='all')")
        searches = np.asarray([bool(r.query) for r in requests], dtype=bool)
        requests, targets = [r for r, s in zip(requests, searches) if s], targets[searches]
    if config.search_as_recommendation:
        extra, extra_targets = search_as_recommendation(requests, targets, config.train.seed)
        requests, targets = requests + extra, np.concatenate([targets, extra_targets])
    index_requests, index_targets = indexing_requests(dataset.items, config.index_copies)
    queries = [r.query for r in requests if r.query]
    item_category, n_categories = leaf_categories(dataset.items)
    use_categories = config.categories and n_categories > 1
    config = replace(config, model=replace(
        config.model,
        codebook_sizes=tuple(int(v) for v in sids.codebook_sizes),
        query_vector_dim=TEXT_DIM if config.query_vectors and (queries or index_requests) else 0,
        n_categories=n_categories if use_categories else 0,
        n_item_slots=len(item_category) if use_categories else 0))
    encoder = RequestEncoder(config.model, sids.item_ids, sids.codes,
                             query_vectors=_primed_query_vectors(run, dataset) if config.model.query_vector_dim else None)
    encoder.fit(item_query_text(dataset.items) + queries, dataset.users)
    if causal:
        # a window reads at most model.max_short earlier items, the causal twin of max_history
        examples = SequenceTable.build(encoder, interactions(split.train))
        n_interaction_examples = examples.n_targets
    elif windowed:
        searches_table = (ExampleTable.build(encoder, sids, requests + index_requests,
                                             np.concatenate([targets, index_targets]), progress=progress)
                          if requests or index_requests else None)  # data without queries: windows alone
        windows = SequenceTable.build(encoder, interactions(split.train), targets=config.sequence_targets)
        examples = MixedTable(searches_table, windows)
        n_interaction_examples = len(requests) + windows.n_targets
    else:
        examples = ExampleTable.build(encoder, sids, requests + index_requests,
                                      np.concatenate([targets, index_targets]), progress=progress)
        n_interaction_examples = len(requests)
    model = GenerativeModel(config.model)
    if use_categories:
        model.set_item_categories(torch.from_numpy(item_category))
    return PreparedTraining(config, encoder, examples, model, n_interaction_examples, len(index_requests))


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


def search_as_recommendation(requests: Sequence[Request], targets: np.ndarray,
                             seed: int = 0) -> tuple[list[Request], np.ndarray]:
    """A recommendation twin of every search request: same user, history, time and
    target, no query, a recommendation scenario drawn as often as the training data
    has each. Why: the item a user searched for is also an item they wanted, and a
    recommendation example is short of data where a search one is not (search has
    the query, recommendation only the history). In the generated world a session's
    intended item is drawn from the user's taste whatever its scenario, so the
    twins come from the distribution recommendation is evaluated on. Targets `[n]`."""
    scenarios = [r.scenario for r in requests if not r.query]
    search = [i for i, r in enumerate(requests) if r.query]
    if not search or not scenarios:
        return [], np.zeros(0, dtype=np.int64)
    names, counts = np.unique(np.asarray(scenarios, dtype=object), return_counts=True)
    drawn = np.random.default_rng(seed).choice(len(names), len(search), p=counts / counts.sum())
    twins = [replace(requests[i], query=None, scenario=str(names[j])) for i, j in zip(search, drawn)]
    return twins, np.asarray(targets)[search].astype(np.int64)


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


def _primed_query_vectors(run: Path, dataset: Dataset) -> TextVectorCache:
    """A MiniLM query-vector cache that already knows the indexing task's texts: an
    item's pseudo-query gets the item's own text vector (`RUN/features`, computed
    there if missing), so 10k item texts are not encoded a second time."""
    vectors = encode_items(dataset, run / "features", views=("text",), progress=False)
    row_of = dict(zip(vectors.item_ids.tolist(), range(len(vectors))))
    rows = [row_of[int(i)] for i in dataset.items["item_id"]]
    cache = TextVectorCache()
    cache.prime(item_query_text(dataset.items), vectors.vectors[rows, :TEXT_DIM])
    return cache


def load_sid_table(run: str | os.PathLike):
    """The SID table the `sid` stage wrote to `RUN/sid`."""
    from genrec.sid import SidTable

    return SidTable.load(Path(run) / "sid")


@dataclass
class ExampleTable:
    """All training examples as one pre-built `EncoderBatch` (int32) and target
    codes `[n, L]`, so a training step only indexes tensors."""

    batch: EncoderBatch
    codes: torch.Tensor

    @classmethod
    def build(cls, encoder: RequestEncoder, sids: Any, requests: Sequence[Request], targets: np.ndarray,
              chunk: int = 4096, progress: bool = True) -> "ExampleTable":
        code_of = dict(zip(np.asarray(sids.item_ids).tolist(), range(len(sids.item_ids))))
        keep = np.asarray([int(t) in code_of for t in targets], dtype=bool)
        if not keep.all():  # an interaction with an item the SID table lacks cannot be a target
            requests = [r for r, k in zip(requests, keep) if k]
            targets = targets[keep]
        if not len(requests):
            raise ValueError("no training examples: split.train has no positive interaction with a SID")
        parts = []
        for start in tqdm(range(0, len(requests), chunk), desc="examples", unit="chunk", disable=not progress):
            parts.append(_pad_to_config(encoder.transform(requests[start:start + chunk]), encoder.config))
        def stacked(name: str) -> torch.Tensor | None:  # ints as int32, the query vector as float16
            if getattr(parts[0], name) is None:
                return None
            return torch.cat([getattr(p, name) for p in parts]).to(torch.float16 if name == "query_vector" else torch.int32)

        batch = EncoderBatch(**{f: stacked(f) for f in vars(parts[0])})
        rows = np.asarray([code_of[int(t)] for t in targets])
        return cls(batch, torch.from_numpy(np.asarray(sids.codes)[rows].astype(np.int64)))

    def __len__(self) -> int:
        return len(self.codes)

    def collate(self, indices: list[int]) -> tuple[EncoderBatch, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        b = self.batch.index(idx)
        return b.map(lambda t: t.float() if t.is_floating_point() else t.long()).trim(), self.codes[idx]


def _pad_to_config(b: EncoderBatch, c: GenerativeConfig) -> EncoderBatch:
    """Full fixed widths (left-aligned parts padded right, behaviour views padded left), so chunks concatenate."""
    right = lambda t, n: F.pad(t, (0, n - t.shape[1]))  # noqa: E731
    left = lambda t, n: F.pad(t, (0, 0, n - t.shape[1], 0)) if t.ndim == 3 else F.pad(t, (n - t.shape[1], 0))  # noqa: E731
    return EncoderBatch(
        query=right(b.query, c.max_query_tokens), user=right(b.user, c.max_user_tokens), context=right(b.context, 3),
        **{f"{view}_{part}": left(getattr(b, f"{view}_{part}"), size)
           for view, size in (("short", c.max_short), ("long", c.max_long))
           for part in ("codes", "items", "action", "recency")},
        query_vector=b.query_vector)


def training_loss(model: GenerativeConfig):
    """The loss `train` calls for the examples `prepare_training` builds for this model."""
    if model.causal_history:
        return _sequence_loss
    return mixed_loss if model.causal_recommendation else _loss


def _loss(model: GenerativeModel, batch: tuple[EncoderBatch, torch.Tensor]) -> torch.Tensor:
    return model.loss(*batch)


def _sequence_loss(model: GenerativeModel, batch: SequenceBatch) -> torch.Tensor:
    return model.sequence_loss(batch)


def _validation(encoder, sids, requests, targets, beams):
    """`evaluate(model)` for the loop: Recall@10 / NDCG@10 overall, for search and for recommendation."""
    from genrec.decode.trie import PrefixTrie
    from genrec.model.retriever import GenerativeRetriever

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
                             device: str = "auto", causal_history: bool = False, checkpoint_every: int | None = None,
                             checkpoint_seconds: float | None = None) -> dict[str, Any]:
    """`genrec train --model generative [--causal-history]`: train unless a finished model is
    there (or `force`). `causal_history`: the recommendation-only model (no indexing task)."""
    out = run.joinpath(*MODEL_DIR)
    if force or resume or not (out / "manifest.json").exists():
        config = GenerativeTrainConfig()
        if causal_history:
            config = replace(config, index_copies=0,
                             model=replace(config.model, causal_history=True, causal_recommendation=False))
        from genrec.train.commands import train_options

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
