"""One evaluation harness for every `Retriever`: same requests, same metrics, same policy.

`evaluate` runs each retriever over the requests in batches, scores the
answers against the targets (Recall@{1,5,10,50}, NDCG@{5,10}, MRR, coverage),
times it (per-request latency at batch size 1, throughput at `batch_size`),
cuts the results by slice (`genrec.eval.slices`), and puts bootstrap 95%
intervals on every slice mean. `paired_comparison` then says whether two
retrievers really differ on the same requests.

Seen items: the generated world (and real shops) let users re-buy, so a
retriever may return items already in the request's history and the harness
keeps them (`exclude_seen=False`). Setting `exclude_seen=True` removes history
items from every retriever's answer here, in one place, so no retriever can
gain by a policy the others do not share.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from genrec.eval.bootstrap import PairedComparison, bootstrap_means, paired_test, percentile_interval
from genrec.eval.exposure import EXPOSURE_K, Exposure, ItemOrigins, measure_exposure
from genrec.eval.metrics import hit_rank, item_coverage, mrr, ndcg_at_k, ranked_matrix, recall_at_k
from genrec.eval.slices import SliceConfig, request_slices
from genrec.retrieval import Ranked, Request, Retriever

RECALL_KS: tuple[int, ...] = (1, 5, 10, 50)
NDCG_KS: tuple[int, ...] = (5, 10)
HEADLINE: tuple[str, ...] = ("recall@10", "recall@50", "ndcg@10", "mrr")
"""Metrics the printed tables show; every metric gets an interval in the JSON."""


@dataclass(frozen=True)
class EvalConfig:
    """How `evaluate` runs. `k` is the list length asked of every retriever."""

    k: int = 50
    batch_size: int = 256
    bootstrap: int = 1000
    seed: int = 0
    exclude_seen: bool = False
    latency_requests: int = 100
    level: float = 0.95
    slices: SliceConfig = field(default_factory=SliceConfig)

    def __post_init__(self) -> None:
        for name in ("k", "batch_size", "bootstrap"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.latency_requests < 0:
            raise ValueError(f"latency_requests must be ≥ 0, got {self.latency_requests}")

    def metric_names(self) -> list[str]:
        return [f"recall@{k}" for k in RECALL_KS if k <= self.k] + [f"ndcg@{k}" for k in NDCG_KS if k <= self.k] + ["mrr"]


@dataclass
class RetrieverResult:
    """One retriever's answers and per-request metrics.

    `ranked` int64 `[n_requests, k]` (padding -1), `hit_rank` `[n_requests]`
    (0-based rank of the target, -1 when missed), `metrics` name → `[n_requests]`.
    """

    name: str
    ranked: np.ndarray
    hit_rank: np.ndarray
    metrics: dict[str, np.ndarray]
    latency_ms_p50: float
    latency_ms_p99: float
    throughput_rps: float
    seconds: float
    latency_ms: np.ndarray = field(default_factory=lambda: np.empty(0))
    """Each timed request's latency `[n_timed]`, for the requests `timed` `[n_timed]` (indices)."""
    timed: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def latency_percentiles(self, mask: np.ndarray) -> tuple[float, float]:
        """(p50, p99) in ms over the timed requests inside `mask` `[n_requests]`; NaN when none."""
        inside = self.latency_ms[np.asarray(mask, dtype=bool)[self.timed]] if len(self.timed) else np.empty(0)
        if not len(inside):
            return float("nan"), float("nan")
        return float(np.percentile(inside, 50)), float(np.percentile(inside, 99))


@dataclass
class EvalReport:
    """Everything `evaluate` measured, and the summary rows the reports print.

    `summary` has one row per (retriever, slice, metric): mean, interval, n.
    """

    config: EvalConfig
    n_items: int
    targets: np.ndarray
    slices: dict[str, np.ndarray]
    results: dict[str, RetrieverResult]
    summary: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)
    origins: ItemOrigins | None = None
    """Item origin and creator lookups (from the data set's items); None when the items carry neither."""

    @property
    def retrievers(self) -> list[str]:
        return list(self.results)

    def value(self, retriever: str, metric: str, slice: str = "all") -> tuple[float, float, float]:
        """(mean, low, high) of `metric` for `retriever` on `slice`."""
        row = self.summary[(self.summary.retriever == retriever) & (self.summary.metric == metric) & (self.summary.slice == slice)]
        if row.empty:
            raise ValueError(f"no summary row for retriever={retriever!r}, metric={metric!r}, slice={slice!r}")
        return float(row["mean"].iloc[0]), float(row["low"].iloc[0]), float(row["high"].iloc[0])

    def recall_curve(self, retriever: str, slice: str = "all") -> np.ndarray:
        """Recall@K for K = 1..k on `slice`, `[k]`."""
        ranks = self.results[retriever].hit_rank[self.slices[slice]]
        if not len(ranks):
            return np.zeros(self.config.k)
        hits = np.bincount(ranks[ranks >= 0], minlength=self.config.k)[: self.config.k]
        return np.cumsum(hits) / len(ranks)

    def exposure(self, retriever: str, slice: str = "all") -> Exposure | None:
        """Exposure by origin and creator of `retriever`'s top `EXPOSURE_K` on `slice`; None without origins."""
        if self.origins is None:
            return None
        return measure_exposure(self.results[retriever].ranked[self.slices[slice]], self.origins, min(EXPOSURE_K, self.config.k))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record: config, timings, slice sizes, summary rows, exposure."""
        exposure: dict[str, dict[str, Any]] = {}
        if self.origins is not None:
            for name in self.results:
                exposure[name] = {}
                for slice_name in ("all", "search", "recommendation"):
                    if slice_name in self.slices and self.slices[slice_name].any():
                        found = self.exposure(name, slice_name)
                        assert found is not None
                        exposure[name][slice_name] = {k: v for k, v in asdict(found).items() if k != "per_request_ai_share"}
        return {
            "config": asdict(self.config),
            "n_requests": int(len(self.targets)),
            "n_items": self.n_items,
            "slices": {name: int(mask.sum()) for name, mask in self.slices.items()},
            "retrievers": {
                name: {
                    "latency_ms_p50": r.latency_ms_p50,
                    "latency_ms_p99": r.latency_ms_p99,
                    "latency_ms_p50_p99_by_slice": {
                        name: list(r.latency_percentiles(self.slices[name])) for name in ("search", "recommendation") if name in self.slices
                    },
                    "throughput_rps": r.throughput_rps,
                    "seconds": r.seconds,
                }
                for name, r in self.results.items()
            },
            "summary": self.summary.to_dict(orient="records"),
            "exposure": exposure,
            **self.meta,
        }


def evaluate(
    retrievers: Sequence[Retriever],
    requests: Sequence[Request],
    targets: np.ndarray,
    k: int = 50,
    slices: dict[str, np.ndarray] | None = None,
    dataset=None,
    split=None,
    batch_size: int = 256,
    bootstrap: int = 1000,
    seed: int = 0,
    config: EvalConfig | None = None,
    progress: bool = True,
) -> EvalReport:
    """Evaluate every retriever on the same `requests` (one target item id each, `targets` `[n]`).

    `slices`: masks by name (`[n]` bool); when None they are built by
    `genrec.eval.slices.request_slices` from `dataset` (items) and `split`
    (training events), or only the request-type and scenario slices without
    them. `config` overrides `k`, `batch_size`, `bootstrap` and `seed`.
    """
    config = config or EvalConfig(k=k, batch_size=batch_size, bootstrap=bootstrap, seed=seed)
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    requests = list(requests)
    if len(targets) != len(requests):
        raise ValueError(f"targets has {len(targets)} entries, requests has {len(requests)}")
    if not requests:
        raise ValueError("requests is empty; expected at least one evaluation request")
    names = [getattr(r, "name", type(r).__name__) for r in retrievers]
    if len(set(names)) != len(names):
        raise ValueError(f"retrievers must have distinct names, got {names}")
    for retriever, name in zip(retrievers, names):
        if not callable(getattr(retriever, "retrieve", None)):
            raise ValueError(f"retriever {name!r} has no retrieve(requests, k) method")
    slices = _slices(slices, requests, targets, dataset, split, config)
    n_items = int(dataset.items["item_id"].nunique()) if dataset is not None else int(len(np.unique(targets)))

    results = {}
    for retriever, name in zip(retrievers, names):
        results[name] = _run_one(retriever, name, requests, targets, config, progress)
    summary = _summarize(results, slices, n_items, config)
    origins = ItemOrigins.from_items(dataset.items) if dataset is not None else None
    return EvalReport(config, n_items, targets, slices, results, summary, origins=origins)


def paired_comparison(report: EvalReport, a: str, b: str, metric: str, slice: str = "all") -> PairedComparison:
    """Is `a` better than `b` on `metric` over the same requests of `slice`?"""
    for name in (a, b):
        if name not in report.results:
            raise ValueError(f"retriever {name!r} is not in the report; expected one of {report.retrievers}")
    if metric not in report.results[a].metrics:
        raise ValueError(f"metric {metric!r} is unknown; expected one of {list(report.results[a].metrics)}")
    if slice not in report.slices:
        raise ValueError(f"slice {slice!r} is unknown; expected one of {list(report.slices)}")
    mask = report.slices[slice]
    values_a, values_b = report.results[a].metrics[metric][mask], report.results[b].metrics[metric][mask]
    diff, low, high, p = paired_test(values_a, values_b, report.config.bootstrap, report.config.seed, report.config.level)
    return PairedComparison(a, b, metric, slice, int(mask.sum()), float(values_a.mean()), float(values_b.mean()), diff, low, high, p)


def remove_seen(answers: Sequence[Ranked], requests: Sequence[Request], k: int) -> list[Ranked]:
    """Drop each request's history items from its answer and cut it to `k` (the `exclude_seen` policy)."""
    kept = []
    for answer, request in zip(answers, requests):
        keep = ~np.isin(answer.item_ids, np.asarray(request.history, dtype=np.int64))
        kept.append(Ranked(answer.item_ids[keep][:k], answer.scores[keep][:k]))
    return kept


# --- helpers -----------------------------------------------------------------


def _slices(slices, requests, targets, dataset, split, config: EvalConfig) -> dict[str, np.ndarray]:
    if slices is None:
        if dataset is not None and split is not None:
            return request_slices(requests, targets, split.train, dataset.items, config.slices)
        search = np.array([r.is_search for r in requests], dtype=bool)
        slices = {"all": np.ones(len(requests), dtype=bool), "search": search, "recommendation": ~search}
        for scenario in sorted({r.scenario for r in requests}):
            slices[f"scenario={scenario}"] = np.array([r.scenario == scenario for r in requests], dtype=bool)
        return slices
    checked = {"all": np.ones(len(requests), dtype=bool)}
    for name, mask in slices.items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (len(requests),):
            raise ValueError(f"slice {name!r} must be a bool mask [{len(requests)}], got shape {mask.shape}")
        checked[name] = mask
    return checked


def _call(retriever: Retriever, name: str, batch: list[Request], config: EvalConfig) -> list[Ranked]:
    ask = config.k + (max((len(r.history) for r in batch), default=0) if config.exclude_seen else 0)
    answers = list(retriever.retrieve(batch, ask))
    if len(answers) != len(batch):
        raise ValueError(f"retriever {name!r} returned {len(answers)} answers for {len(batch)} requests")
    return remove_seen(answers, batch, config.k) if config.exclude_seen else answers


def _run_one(retriever, name, requests, targets, config: EvalConfig, progress: bool) -> RetrieverResult:
    # Latency first, on a seeded sample one request at a time, so caches the
    # batched pass fills (e.g. query vectors) do not flatter it.
    rng = np.random.default_rng(config.seed)
    timed = rng.choice(len(requests), size=min(config.latency_requests, len(requests)), replace=False)
    timings: list[float] = []
    for i in timed:
        tick = time.perf_counter()
        _call(retriever, name, [requests[i]], config)
        timings.append((time.perf_counter() - tick) * 1000)
    latencies = np.asarray(timings, dtype=np.float64)

    answers: list[Ranked] = []
    start = time.perf_counter()
    batches = range(0, len(requests), config.batch_size)
    for begin in tqdm(batches, desc=f"eval {name}", unit="batch", disable=not progress, leave=False):
        answers += _call(retriever, name, requests[begin : begin + config.batch_size], config)
    seconds = time.perf_counter() - start

    ranked = ranked_matrix(answers, config.k)
    metrics = {f"recall@{k}": recall_at_k(ranked, targets, k).values for k in RECALL_KS if k <= config.k}
    metrics.update({f"ndcg@{k}": ndcg_at_k(ranked, targets, k).values for k in NDCG_KS if k <= config.k})
    metrics["mrr"] = mrr(ranked, targets).values
    return RetrieverResult(
        name, ranked, hit_rank(ranked, targets), metrics,
        float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
        float(np.percentile(latencies, 99)) if len(latencies) else float("nan"),
        len(requests) / max(seconds, 1e-9), seconds, latencies, timed.astype(np.int64),
    )


def _summarize(results: dict[str, RetrieverResult], slices: dict[str, np.ndarray], n_items: int, config: EvalConfig) -> pd.DataFrame:
    """One row per (retriever, slice, metric) with the bootstrap interval; coverage without one."""
    metric_names = config.metric_names()
    rows = []
    for slice_index, (slice_name, mask) in enumerate(slices.items()):
        n = int(mask.sum())
        if n == 0:
            continue
        columns = [(name, metric) for name in results for metric in metric_names]
        values = np.stack([results[name].metrics[metric][mask] for name, metric in columns], axis=1)
        means = values.mean(axis=0)
        samples = bootstrap_means(values, config.bootstrap, seed=config.seed + slice_index)
        low, high = percentile_interval(samples, config.level)
        for j, (name, metric) in enumerate(columns):
            rows.append((name, slice_name, metric, float(means[j]), float(low[j]), float(high[j]), n))
        for name, result in results.items():
            coverage = item_coverage(result.ranked[mask], max(n_items, 1))
            rows.append((name, slice_name, f"coverage@{config.k}", coverage, np.nan, np.nan, n))
    return pd.DataFrame(rows, columns=["retriever", "slice", "metric", "mean", "low", "high", "n"])
