"""AIGC exposure control on the generative and cascade retrievers: AI share achieved against the target,
and what it costs in NDCG@10 / Recall@10, chosen on validation, reported once on test.

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/aigc_exposure.py --run runs/demo

RUN needs data/, sid/, train/generative and cascade/model (`genrec cascade train --run RUN`).
For each retriever, on a seeded sample of validation requests: the retriever as it is, then
`NAME+aigc` (`genrec.exposure_control`) at every target × depth of the grid, the target meaning
at most `floor(target · 10)` AI-generated items in the top 10. Target 1.0 is no cap: it shows what
a deeper candidate list alone does. Every variant of a retriever answers the same requests, so the
NDCG differences are paired (bootstrap 95% intervals, sign-flip p-values).

Choice on validation: per retriever, the tightest target that lowers its AI share and whose NDCG@10
cost is not significant (the 95% interval of the paired difference reaches zero) on both search and
recommendation, at the depth with the best NDCG@10 (ties: the shallower); when every binding target
costs significantly, the loosest binding one. That one setting then runs
once on the same-size seeded sample of test requests. Writes `benchmarks/results/aigc_exposure.md`.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from genrec.data.dataset import Dataset
from genrec.data.splits import build_requests, leave_one_out, sample_requests
from genrec.eval.bootstrap import bootstrap_means, percentile_interval
from genrec.eval.harness import EvalConfig, EvalReport, evaluate, paired_comparison
from genrec.exposure_control import AIGCControlConfig, AIGCExposureControl
from genrec.registry import build_retriever
from genrec.retrieval import Ranked, Request

RESULTS = Path(__file__).parent / "results" / "aigc_exposure.md"
K = 10
TYPES = ("search", "recommendation")


class _Cached:
    """A retriever's answers memoised by (k, the requests): every variant of the grid reads the same answers."""

    def __init__(self, retriever, name: str):
        self.retriever = retriever
        self.name = name
        self.memo: dict[tuple, list[Ranked]] = {}

    def retrieve(self, requests: Sequence[Request], k: int) -> list[Ranked]:
        key = (k, tuple(id(r) for r in requests))
        if key not in self.memo:
            self.memo[key] = list(self.retriever.retrieve(list(requests), k))
        return self.memo[key]


def _sample(split, part: str, n: int):
    requests, targets = build_requests(split, part)
    requests, targets = sample_requests(requests, targets, n)
    return requests, targets


def _controlled(inner: _Cached, is_ai: np.ndarray, share: float, depth: int) -> AIGCExposureControl:
    control = AIGCExposureControl(inner, is_ai, AIGCControlConfig(max_share=share, depth=depth, page_size=K))
    control.name = f"{inner.name}+aigc target {share:g} depth {depth}"
    return control


def _evaluate(variants, requests, targets, dataset, bootstrap: int) -> EvalReport:
    config = EvalConfig(k=K, batch_size=len(requests), bootstrap=bootstrap, latency_requests=0)
    return evaluate(variants, requests, targets, dataset=dataset, config=config, progress=False)


def _row(report: EvalReport, base: str, name: str, share: float | str, depth: int | str, is_ai: np.ndarray) -> tuple[list[str], dict]:
    """One table row: AI share achieved, accuracy per request type, and the paired NDCG@10 cost against `base`."""
    exposure = report.exposure(name)
    assert exposure is not None
    shares = exposure.per_request_ai_share[~np.isnan(exposure.per_request_ai_share)]
    low, high = percentile_interval(bootstrap_means(shares, report.config.bootstrap, 0))
    ranked = report.results[name].ranked
    shown = ranked >= 0
    quota = int(np.floor(float(share) * K)) if isinstance(share, float) else K
    ai_count = (is_ai[np.where(shown, ranked, 0)] & shown).sum(axis=1)
    cells = [name.split("+aigc")[0], f"{share}", f"{depth}",
             f"{shares.mean():.3f} [{float(low[0]):.3f}, {float(high[0]):.3f}]",
             f"{(ai_count > quota).mean():.3f}", f"{(shown.sum(axis=1) < K).mean():.3f}"]
    facts: dict = {"name": name, "share": share, "depth": depth, "ai_share": float(shares.mean())}
    for request_type in TYPES:
        for metric in ("ndcg@10", "recall@10"):
            cells.append(f"{report.value(name, metric, request_type)[0]:.4f}")
        if name == base:
            cells.append("—")
            facts[request_type] = (0.0, 0.0, report.value(name, "ndcg@10", request_type)[0])
        else:
            c = paired_comparison(report, name, base, "ndcg@10", request_type)
            cells.append(f"{c.difference:+.4f} [{c.ci_low:+.4f}, {c.ci_high:+.4f}] p={c.p_value:.2g}")
            facts[request_type] = (c.difference, c.ci_high, report.value(name, "ndcg@10", request_type)[0])
    cells.append(f"{exposure.creator_gini:.3f}")
    return cells, facts


HEADER = ["retriever", "target", "depth", "AI share@10 [95% CI]", "pages over the cap", "short lists",
          "search NDCG@10", "search R@10", "search ΔNDCG@10 vs plain [95% CI]",
          "rec NDCG@10", "rec R@10", "rec ΔNDCG@10 vs plain [95% CI]", "creator Gini"]


def _choose(rows: list[dict], own_share: float) -> dict:
    """The rule in the module docstring. A target binds when it lowers the AI share; its cost is
    significant when the 95% interval of ΔNDCG@10 lies below zero on either request type."""
    binding = [r for r in rows if r["ai_share"] < own_share - 1e-9]
    if not binding:
        raise ValueError(f"no target of the grid lowers the retriever's own AI share {own_share:.3f}")

    def best_depth(share: float) -> dict:
        same = sorted((r for r in binding if r["share"] == share), key=lambda r: r["depth"])
        return max(same, key=lambda r: round(sum(r[t][2] for t in TYPES), 9))  # ties: the shallower

    free = sorted({r["share"] for r in binding if all(r[t][1] >= 0 for t in TYPES)})
    return best_depth(free[0] if free else max(r["share"] for r in binding))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", required=True)
    parser.add_argument("--retrievers", default="generative,cascade")
    parser.add_argument("--targets", default="0.3,0.2,0.1,0.0")
    parser.add_argument("--depths", default="2,3,5", help="candidates asked per requested item")
    parser.add_argument("--max-requests", type=int, default=1000)
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    began, cpu = time.perf_counter(), time.process_time()
    run = Path(args.run)
    dataset = Dataset.load(run / "data")
    split = leave_one_out(dataset.events)
    items = dataset.items
    is_ai = np.zeros(int(items["item_id"].max()) + 1, dtype=bool)
    is_ai[items["item_id"].to_numpy()] = (items["origin"] == "ai").to_numpy()
    targets_grid = [float(t) for t in args.targets.split(",")] + [1.0]
    depths = [int(d) for d in args.depths.split(",")]
    valid = _sample(split, "valid", args.max_requests)
    test = _sample(split, "test", args.max_requests)

    lines = ["# AIGC exposure control: AI share against the target, and its NDCG cost", "",
             f"Command: `PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/aigc_exposure.py --run {args.run} "
             f"--retrievers {args.retrievers} --targets {args.targets} --depths {args.depths} --max-requests {args.max_requests}`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}, {os.cpu_count()} cores, "
             f"1 torch thread; seed 0; {len(valid[0])} validation and {len(test[0])} test requests (seeded samples); "
             f"catalogue AI share {float((items['origin'] == 'ai').mean()):.3f}. RUN is the default demo world "
             "(`genrec demo`) with the cascade trained by `genrec cascade train --run RUN`.", "",
             "Target t: at most floor(10·t) AI-generated items in each answer's top 10 (`NAME+aigc`, "
             "`genrec.exposure_control`); depth d: the control re-ranks the retriever's own top 10·d. "
             "Target 1 is no cap (the deeper list alone). \"pages over the cap\": share of answers whose top 10 "
             "holds more AI items than the target allows; \"short lists\": answers with fewer than 10 items "
             "(the control ends a list rather than break the cap). Δ: the variant minus the plain retriever "
             "on the same requests, paired bootstrap 95% CI and sign-flip p.", ""]
    chosen: dict[str, dict] = {}
    for name in [n.strip() for n in args.retrievers.split(",") if n.strip()]:
        inner = _Cached(build_retriever(name, run, dataset, split), name)
        variants = [inner] + [_controlled(inner, is_ai, share, depth) for share in targets_grid for depth in depths]
        report = _evaluate(variants, *valid, dataset, args.bootstrap)
        own = report.exposure(name)
        assert own is not None
        lines += [f"## {name} — validation", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        facts = []
        cells, _ = _row(report, name, name, "plain", "—", is_ai)
        lines.append("| " + " | ".join(cells) + " |")
        for variant in variants[1:]:
            assert isinstance(variant, AIGCExposureControl)
            cells, fact = _row(report, name, variant.name, variant.config.max_share, variant.config.depth, is_ai)
            lines.append("| " + " | ".join(cells) + " |")
            facts.append(fact)
        pick = _choose(facts, own.ai_share)
        chosen[name] = pick
        lines += ["", f"Chosen for {name}: target {pick['share']:g}, depth {pick['depth']} (its own AI share@10 is "
                  f"{own.ai_share:.3f}; rule in `benchmarks/aigc_exposure.py`).", ""]
        print("\n".join(lines[-len(variants) - 6:]), flush=True)

    lines += ["## Test: the chosen setting, once", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for name, pick in chosen.items():
        inner = _Cached(build_retriever(name, run, dataset, split), name)
        control = _controlled(inner, is_ai, pick["share"], pick["depth"])
        report = _evaluate([inner, control], *test, dataset, args.bootstrap)
        for variant, share, depth in ((name, "plain", "—"), (control.name, pick["share"], pick["depth"])):
            cells, _ = _row(report, name, variant, share, depth, is_ai)
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Wall {time.perf_counter() - began:.0f} s, CPU {time.process_time() - cpu:.0f} s.", ""]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines[-len(chosen) * 2 - 6:]))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
