"""The whole cascade as one `Retriever`: recall → rank → fuse → calibrate → post-rank.

`train_cascade(run, config)` learns everything the cascade needs from `split.train`
and writes it to `RUN/cascade/model/` (atomically, with `config.json` and
`manifest.json`); `CascadeRetriever.from_run(run, dataset, split)` loads that folder
and never trains (`CascadeRetriever.train` is the stage that does).

Training uses the visits of `split.train` only. The most recent `holdout_share` of
them are kept away from the ranker: fusion weights and calibrators are fitted on the
ranker's predictions there, as they would be on the day after a ranker ships.
"""

from __future__ import annotations

import functools
import json
import logging
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from genrec.artifacts import (
    MissingStageError,
    atomic_path,
    code_fingerprint,
    manifest,
    warn_if_trained_by_other_code,
    write_json_atomic,
)
from genrec.cascade.calibrate import UMCCalibrator, UMCConfig
from genrec.cascade.features import FeatureSpace, RequestArrays
from genrec.cascade.fuse import AUCEnsembleFusion, FixedWeightFusion, Fusion, FusionConfig, PersonalizedWeightFusion
from genrec.cascade.rank import MultiTaskRanker, RankerConfig
from genrec.cascade.recall import PersonalizedDenseRecall, PersonalizedRecallConfig, RecallUnion
from genrec.cascade.rerank import PostRankConfig, PostRanker
from genrec.cascade.samples import ImpressionSamples, add_sampled_negatives, impression_samples
from genrec.data.dataset import Dataset
from genrec.data.splits import Split, leave_one_out
from genrec.device import check_device
from genrec.retrieval import Ranked, Request, Retriever

log = logging.getLogger(__name__)

MODEL_FOLDER = "model"
CASCADE_CODE: tuple[str, ...] = ("genrec.cascade",)
"""The package whose source decides what the cascade learns: edit it and a cached cascade is retrained."""
FUSIONS = ("fixed", "grade", "harmonrank")
TextEncoder = Callable[[list[str]], np.ndarray]
GAINS = np.array([1.0, 2.0, 3.0], dtype=np.float32)
"""Graded relevance of a click, a cart, an order (the strongest action counts)."""


@dataclass
class CascadeConfig:
    """Everything `train_cascade` and the cascade's inference read; saved as `config.json`."""

    seed: int = 0
    history_length: int = 20
    max_train_visits: int = 8_000
    """Visits of split.train the ranker sees (a seeded random subset): bounds training time."""
    feature_share: float = 0.4
    """Item statistics and co-occurrence the ranker trains with come from the first `feature_share`
    of split.train's visits; the ranker learns from the visits after (labels never feed their own features)."""
    holdout_share: float = 0.15
    fusion: str = "grade"
    fixed_weights: tuple[float, float, float] = (1.0, 0.3, 0.3)
    search_quotas: dict[str, int] = field(default_factory=lambda: {
        "pr2": 80, "itemcf": 80, "bm25": 80, "category_popularity": 40, "dense": 40})
    recommendation_quotas: dict[str, int] = field(default_factory=lambda: {
        "pr2": 120, "itemcf": 100, "category_popularity": 60, "popularity": 20})
    """Recall sources (registry names, plus "pr2") and how many of each one's top items enter the union."""
    max_candidates: int = 200
    """Candidates ranked per request: the union's round-robin order by source rank, cut here."""
    sampled_negatives: int = 6
    """Never-shown items added per training visit as negatives (see `add_sampled_negatives`)."""
    ranker: RankerConfig = field(default_factory=RankerConfig)
    recall: PersonalizedRecallConfig = field(default_factory=PersonalizedRecallConfig)
    fusion_config: FusionConfig = field(default_factory=FusionConfig)
    umc: UMCConfig = field(default_factory=UMCConfig)
    postrank: PostRankConfig = field(default_factory=PostRankConfig)
    progress: bool = True
    device: str = "cpu"
    """Where the ranker, PR² recall and MiniLM (query vectors) train and run: "auto", "cpu", "cuda", …
    (`genrec.device`). Not part of what the cascade learns: a saved cascade loads on any device."""

    def __post_init__(self) -> None:
        check_device(self.device, "device")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if not 0 < self.holdout_share < 1 or not 0 <= self.feature_share < 1 - self.holdout_share:
            raise ValueError(f"need 0 < holdout_share < 1 and 0 ≤ feature_share < 1 − holdout_share, "
                             f"got {self.holdout_share}, {self.feature_share}")
        for name in ("ranker", "recall", "fusion_config", "umc", "postrank"):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, _SUB_CONFIGS[name](**value))
        weights = tuple(self.fixed_weights)  # a list when read from JSON
        if len(weights) != 3:
            raise ValueError(f"fixed_weights must have 3 values (click, cart, order), got {weights}")
        self.fixed_weights = (weights[0], weights[1], weights[2])

    @classmethod
    def from_json(cls, text: str) -> "CascadeConfig":
        values = json.loads(text)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


_SUB_CONFIGS = {"ranker": RankerConfig, "recall": PersonalizedRecallConfig, "fusion_config": FusionConfig,
                "umc": UMCConfig, "postrank": PostRankConfig}


@dataclass
class CascadeModel:
    """The trained parts, in memory."""

    config: CascadeConfig
    space: FeatureSpace
    ranker: MultiTaskRanker
    recall: PersonalizedDenseRecall
    fusions: dict[str, Fusion]
    calibrator: UMCCalibrator
    """Maps the chosen fusion's score (read as a logit) to P(click)."""
    holdout_space: FeatureSpace | None = None
    """Item statistics as of the hold-out's start: how the report scores the hold-out without leaking its labels."""


def encode_queries(texts: list[str], device: str = "cpu") -> np.ndarray:
    from genrec.features import encode_texts

    return encode_texts(texts, progress=False, device=device)


def fusion_context(req: RequestArrays) -> np.ndarray:
    """Request features the GRADE weight network reads, `[r, 7]`: search or not, scenario,
    history length, and how often this user carts and orders (buyers vs browsers)."""
    n_hist = (req.history > 0).sum(1)
    denominator = np.maximum(n_hist, 1)
    return np.stack([
        req.is_search, req.scenario == 1, req.scenario == 2, req.scenario == 3, np.log1p(n_hist),
        (req.history_action == 2).sum(1) / denominator, (req.history_action == 3).sum(1) / denominator,
    ], 1).astype(np.float32)


def train_cascade(run: str | Path, config: CascadeConfig | None = None, dataset: Dataset | None = None,
                  split: Split | None = None, encoder: TextEncoder | None = None) -> CascadeModel:
    """Fit every learned stage on `split.train` (default: leave-one-out of RUN/data) and save RUN/cascade/model.

    `encoder` (texts → unit vectors `[n, d]`) replaces MiniLM for items and queries (tests use a toy one).
    """
    config = config or CascadeConfig()
    run = Path(run)
    dataset = dataset if dataset is not None else Dataset.load(run / "data")
    split = split if split is not None else leave_one_out(dataset.events)
    torch.manual_seed(config.seed)
    began = time.perf_counter()
    level = logging.INFO if config.progress else logging.DEBUG

    def say(message: str) -> None:
        log.log(level, "[cascade %5.1fs] %s", time.perf_counter() - began, message)

    from genrec.features.text import item_text

    say("item vectors (cached in RUN/features)")
    texts = item_text(dataset.items)
    if encoder is None:
        item_ids, vectors = item_vectors(run, dataset)
    else:
        item_ids, vectors = dataset.items["item_id"].to_numpy(np.int64), encoder(texts)
    say("ranker examples from split.train visits")
    samples = impression_samples(split.train, split.interactions, config.history_length)
    fit_part, holdout, (feature_cut, holdout_cut) = training_windows(samples, config)

    say("feature spaces: item statistics and co-occurrence as of each window's start, and of all of split.train")
    space = FeatureSpace(history_length=config.history_length).fit(
        dataset.items, split.train, item_ids, vectors, texts, encoder or functools.partial(encode_queries, device=config.device))
    if encoder is None:
        _reuse_query_vectors(space, run / "cascade" / MODEL_FOLDER)
    train_ts = split.train["ts"].to_numpy()
    early = space.refit_events(dataset.items, split.train[train_ts < feature_cut])
    before_holdout = space.refit_events(dataset.items, split.train[train_ts < holdout_cut])
    known_items = np.flatnonzero(space.leaf_ > 0)
    fit_part = add_sampled_negatives(fit_part, known_items, early.popularity_, config.sampled_negatives, config.seed)
    holdout = add_sampled_negatives(holdout, known_items, before_holdout.popularity_, config.sampled_negatives, config.seed + 1)
    work = run / "cascade"
    work.mkdir(parents=True, exist_ok=True)
    say(f"{len(fit_part):,} ranker rows, {len(holdout):,} held-out rows; training PR² recall")
    recall = PersonalizedDenseRecall(space, _with_progress(config.recall, config.progress), config.device).fit(samples, work)
    say("training the MMoE ranker")
    ranker = MultiTaskRanker(early, _with_progress(config.ranker, config.progress), config.device).fit(fit_part, work)
    say("fitting fusion and calibration on the held-out visits")
    fusions, calibrator = fit_fusions_and_calibrator(config, ranker.use_space(before_holdout), holdout)
    model = CascadeModel(config, ranker.use_space(space).space, ranker, recall, fusions, calibrator, before_holdout)
    save_cascade(run, model, dataset)
    say(f"saved {run / 'cascade' / MODEL_FOLDER}")
    return model


def fit_fusions_and_calibrator(config: CascadeConfig, ranker: MultiTaskRanker, holdout: ImpressionSamples):
    space = ranker.space
    req = space.requests(holdout.requests)
    probs = ranker.predict_proba(req, holdout.request_index, holdout.item_ids)
    context = fusion_context(req)[holdout.request_index]
    gains = (holdout.labels * (GAINS - np.r_[0, GAINS[:-1]])).sum(1)
    fusions: dict[str, Fusion] = {
        "fixed": FixedWeightFusion(config.fixed_weights),
        "grade": PersonalizedWeightFusion(config.fusion_config, config.fixed_weights).fit(
            probs, holdout.request_index, context, gains),
        "harmonrank": AUCEnsembleFusion(config.fusion_config, config.fixed_weights).fit(
            probs, holdout.request_index, holdout.labels),
    }
    score = fusions[config.fusion].score(probs, context)
    calibrator = UMCCalibrator(config.umc).fit(_as_probability(score), holdout.labels[:, 0])
    return fusions, calibrator


def training_windows(samples: ImpressionSamples, config: CascadeConfig):
    """Split split.train's visits by time: `[feature_cut, holdout_cut)` trains the ranker (at most
    `max_train_visits`, seeded), `[holdout_cut, end]` fits fusion and calibration.
    Returns (fit part, hold-out, (feature_cut, holdout_cut))."""
    visit_ts = np.asarray([r.ts for r in samples.requests])
    feature_cut, holdout_cut = np.quantile(visit_ts, [config.feature_share, 1 - config.holdout_share])
    fit_visits = (visit_ts >= feature_cut) & (visit_ts < holdout_cut)
    if fit_visits.sum() > config.max_train_visits:
        chosen = np.random.default_rng(config.seed).choice(np.flatnonzero(fit_visits), config.max_train_visits, replace=False)
        fit_visits = np.zeros_like(fit_visits)
        fit_visits[chosen] = True
    holdout = samples.subset_requests(visit_ts >= holdout_cut)
    return samples.subset_requests(fit_visits), holdout, (float(feature_cut), float(holdout_cut))


def split_by_time(samples: ImpressionSamples, late_share: float) -> tuple[ImpressionSamples, ImpressionSamples]:
    """The most recent `late_share` of visits apart from the rest: (early, late)."""
    ts = np.asarray([r.ts for r in samples.requests])
    late = ts >= np.quantile(ts, 1 - late_share)
    if late.all() or not late.any():
        late = np.arange(len(ts)) >= int(len(ts) * (1 - late_share))
    return samples.subset_requests(~late), samples.subset_requests(late)


def item_vectors(run: Path, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """MiniLM item vectors `[n, 384]` and their ids, from the features stage's cache."""
    from genrec.features import encode_items

    vectors = encode_items(dataset, Path(run) / "features", views=("text",))
    return vectors.item_ids, vectors.vectors


def save_cascade(run: Path, model: CascadeModel, dataset: Dataset) -> None:
    target = Path(run) / "cascade" / MODEL_FOLDER
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        model.space.save(tmp)
        if model.holdout_space is not None:
            model.holdout_space.save(tmp / "holdout_space")
        torch.save({
            "ranker": model.ranker.state_dict(),
            "recall": model.recall.state_dict(),
            "grade": model.fusions["grade"].state_dict(),
            "harmonrank": model.fusions["harmonrank"].state_dict(),
            "calibrator": model.calibrator.state_dict(),
        }, tmp / "weights.pt")
        write_json_atomic(tmp / "config.json", model.config)
        data_hash = _dataset_fingerprint(dataset)
        write_json_atomic(tmp / "manifest.json", manifest(model.config, inputs={"dataset": data_hash},
                                                           code=code_fingerprint(*CASCADE_CODE)))


def saved_cascade_fits(folder: Path, dataset: Dataset) -> bool:
    """Whether `folder` holds a cascade trained on `dataset` by the current cascade code: what the
    training stage (`CascadeRetriever.train`) reuses instead of retraining. Warns why not when one is there."""
    return trained_on(folder, dataset) and not warn_if_other_code(folder)


def trained_on(folder: Path, dataset: Dataset) -> bool:
    """Whether `folder` holds a cascade trained on `dataset`; warns when it holds one trained on other data."""
    if not (folder / "manifest.json").exists():
        return False
    saved = json.loads((folder / "manifest.json").read_text())
    if saved.get("inputs", {}).get("dataset") != _dataset_fingerprint(dataset):
        warnings.warn(f"{folder} was trained on other data", stacklevel=3)
        return False
    return True


def warn_if_other_code(folder: Path) -> bool:
    """Warn when the cascade in `folder` was trained by other `genrec.cascade` code; return whether it was.

    Loading keeps it, as `GenerativeRetriever.from_run` keeps a generative model (an upgrade of genrec
    must not take a served cascade away); the training stage retrains instead."""
    return warn_if_trained_by_other_code(folder, code_fingerprint(*CASCADE_CODE), "cascade",
                                         f"genrec cascade train --run {folder.parent.parent}")


def load_cascade(run: Path, encoder: TextEncoder | None = None, device: str | None = None) -> CascadeModel:
    """The model `train_cascade` saved; `encoder` must be the one it was trained with (default MiniLM).
    `device` (None: the saved config's) is where it runs; the weights load on any device."""
    folder = Path(run) / "cascade" / MODEL_FOLDER
    config = CascadeConfig.from_json((folder / "config.json").read_text())
    if device is not None:
        config = replace(config, device=device)
    encoder = encoder or functools.partial(encode_queries, device=config.device)
    space = FeatureSpace.load(folder, encoder)
    state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=False)
    ranker = MultiTaskRanker(space, config.ranker, config.device).load_state_dict(state["ranker"])
    recall = PersonalizedDenseRecall(space, config.recall, config.device).load_state_dict(state["recall"])
    harmonrank = AUCEnsembleFusion(config.fusion_config, config.fixed_weights)
    harmonrank.weights_ = np.asarray(state["harmonrank"]["weights"], dtype=np.float32)
    fusions: dict[str, Fusion] = {
        "fixed": FixedWeightFusion(config.fixed_weights),
        "grade": PersonalizedWeightFusion.from_state_dict(state["grade"], config.fusion_config),
        "harmonrank": harmonrank,
    }
    calibrator = UMCCalibrator.from_state_dict(state["calibrator"], config.umc)
    holdout_space = FeatureSpace.load(folder / "holdout_space", encoder) \
        if (folder / "holdout_space").is_dir() else None
    return CascadeModel(config, space, ranker, recall, fusions, calibrator, holdout_space)


class CascadeRetriever:
    """recall (PR² ∪ baselines) → MMoE rank → fuse → UMC calibrate → post-rank.

    `Ranked.scores` are calibrated P(click) of the fused score (kept non-increasing
    when a post-rank policy reorders the list).
    """

    name = "cascade"

    def __init__(self, model: CascadeModel, sources: dict[str, Retriever] | None = None, fusion: str | None = None):
        self.model = model
        self.fusion = fusion or model.config.fusion
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        sources = {"pr2": model.recall, **(sources or {})}
        cfg = model.config
        self.recall = RecallUnion(
            sources,
            {n: q for n, q in cfg.search_quotas.items() if n in sources},
            {n: q for n, q in cfg.recommendation_quotas.items() if n in sources},
            cfg.max_candidates,
        )
        space = model.space
        self.postrank = PostRanker(cfg.postrank, space.leaf_, space.parent_, space.is_ai_)

    @classmethod
    def from_run(cls, run: Path, dataset: Dataset, split: Split, device: str | None = None) -> "CascadeRetriever":
        """Load the cascade `genrec cascade train` saved for this data; never trains (`MissingStageError`
        names the command). One trained by other cascade code is loaded with a warning, as the
        generative model is; `train` (the pipeline's `stages.train_missing`) retrains it. `device`:
        where it runs (None: the device it was trained with, as its config.json says)."""
        run = Path(run)
        folder = run / "cascade" / MODEL_FOLDER
        if not trained_on(folder, dataset):  # its item and user tables are another catalogue's
            raise MissingStageError(folder, f"genrec cascade train --run {run}")
        warn_if_other_code(folder)
        model = load_cascade(run, device=device)
        return cls(model, recall_sources(run, dataset, split, model.config))

    @classmethod
    def train(cls, run: Path, dataset: Dataset, split: Split, config: CascadeConfig | None = None) -> "CascadeRetriever":
        """Train the cascade unless a fitting one is saved, then load it. `config` None keeps the saved
        cascade's config (or the default); a given one retrains a cascade saved with other settings
        (its device and progress bar aside: they do not change what it learns)."""
        train_if_stale(run, dataset, split, config)
        return cls.from_run(run, dataset, split, None if config is None else config.device)

    def retrieve(self, requests: Sequence[Request], k: int) -> list[Ranked]:
        if k < 1:
            raise ValueError(f"k must be ≥ 1, got {k}")
        scored = self.score_candidates(requests)
        answers = []
        for item_ids, score, calibrated in scored:
            order = np.lexsort((-score, -calibrated))
            item_ids, calibrated = item_ids[order], calibrated[order]
            ids, _ = self.postrank(item_ids, calibrated, k)
            probability = dict(zip(item_ids.tolist(), calibrated.tolist()))
            values = np.minimum.accumulate(np.asarray([probability[i] for i in ids.tolist()], dtype=np.float32)) \
                if len(ids) else np.zeros(0, np.float32)
            answers.append(Ranked(ids, values))
        return answers

    def score_candidates(self, requests: Sequence[Request]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per request: candidate ids `[m]`, fused score `[m]`, calibrated P(click) `[m]` (unsorted)."""
        return self.fuse(self.rank_candidates(requests), self.fusion)

    def rank_candidates(self, requests: Sequence[Request]) -> dict[str, Any]:
        """Recall and rank: per candidate row `[p]` its request, item id, task probabilities `[p, 3]`
        and fusion context `[p, c]` (None when there is no candidate); `sizes` `[r]` candidates per request."""
        model = self.model
        candidates = self.recall.candidates(requests)
        sizes = np.asarray([len(c.item_ids) for c in candidates], dtype=np.int64)
        request_index = np.repeat(np.arange(len(requests)), sizes)
        item_ids = np.concatenate([c.item_ids for c in candidates]) if len(candidates) else np.zeros(0, np.int64)
        if len(item_ids) == 0:
            return {"sizes": sizes, "item_ids": item_ids, "probs": np.zeros((0, 3), np.float32), "context": None}
        req = model.space.requests(requests)
        return {"sizes": sizes, "item_ids": item_ids, "probs": model.ranker.predict_proba(req, request_index, item_ids),
                "context": fusion_context(req)[request_index]}

    def fuse(self, ranked: dict[str, Any], fusion: str) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Fuse (and, for the trained fusion, calibrate) `rank_candidates`' output, split per request."""
        model, sizes, item_ids = self.model, ranked["sizes"], ranked["item_ids"]
        if len(item_ids) == 0:
            return [(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32)) for _ in sizes]
        score = model.fusions[fusion].score(ranked["probs"], ranked["context"])
        calibrated = model.calibrator.predict(_as_probability(score)) if fusion == model.config.fusion \
            else _as_probability(score)
        bounds = np.r_[0, np.cumsum(sizes)]
        return [(item_ids[b:e], score[b:e], calibrated[b:e].astype(np.float32)) for b, e in zip(bounds[:-1], bounds[1:])]


def train_if_stale(run: str | Path, dataset: Dataset, split: Split, config: CascadeConfig | None = None) -> bool:
    """Train RUN/cascade/model unless one trained on `dataset` by the current code is saved; return whether
    it trained. `config` None keeps the saved cascade's config (or the default); a given one also retrains
    a cascade saved with other settings (its device and progress bar aside: they do not change what it learns)."""
    run = Path(run)
    folder = run / "cascade" / MODEL_FOLDER
    saved = CascadeConfig.from_json((folder / "config.json").read_text()) if (folder / "config.json").exists() else None
    if saved_cascade_fits(folder, dataset) and (config is None or saved is None or _learned(saved) == _learned(config)):
        log.info("reusing %s", folder)
        return False
    train_cascade(run, config or saved, dataset, split)
    return True


def recall_sources(run: Path, dataset: Dataset, split: Split, config: CascadeConfig) -> dict[str, Retriever]:
    """The baseline retrievers the quotas name, built through the registry; a missing one is skipped."""
    from genrec.registry import build_retriever

    names = sorted((set(config.search_quotas) | set(config.recommendation_quotas)) - {"pr2"})
    sources = {}
    for name in names:
        try:
            sources[name] = build_retriever(name, run, dataset, split)
        except (ImportError, AttributeError) as error:
            warnings.warn(f"recall source {name!r} unavailable ({error}); the cascade recalls without it", stacklevel=2)
    return sources


def _reuse_query_vectors(space: FeatureSpace, previous: Path) -> None:
    """Seed the query cache with the MiniLM vectors a previous training saved (encoding is the slow part)."""
    file = previous / "feature_space.npz"
    if file.exists():
        with np.load(file, allow_pickle=True) as saved:
            space.query_cache_.update(zip(saved["query_texts"].tolist(), saved["query_vectors"]))


def _as_probability(score: np.ndarray) -> np.ndarray:
    """Read a fused score as a logit: σ(score), so the calibrator's logit input is the score itself."""
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(score, dtype=np.float64), -30, 30)))


def _learned(config: CascadeConfig) -> object:
    """The settings that decide what a cascade learns, as plain JSON values (a saved config reads its
    tuples back as lists): all but where it runs and whether it shows progress."""
    def plain(value: object) -> object:
        if isinstance(value, dict):
            return {key: plain(v) for key, v in value.items() if key not in ("device", "progress")}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(asdict(config))


def _with_progress(config, progress: bool):
    values = asdict(config)
    values["progress"] = progress and values.get("progress", True)
    return type(config)(**values)


def _dataset_fingerprint(dataset: Dataset) -> str:
    """A cheap content hash of the tables (ids, sizes, a sample of events) — enough to tell two datasets apart."""
    import hashlib

    digest = hashlib.sha256()
    for frame in (dataset.items[["item_id"]], dataset.users[["user_id"]], dataset.events[["user_id", "ts", "item_id"]]):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()
