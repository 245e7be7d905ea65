"""Hand-written pieces against the library that could replace them: same answers? faster? lighter?

    .venv/bin/python benchmarks/dependencies.py        # about half a minute on one core

Measures what `docs/dependencies.md` decides on:
- the learning-rate schedule (`genrec.train.loop.lr_at`) against torch's LinearLR → CosineAnnealingLR;
- AUC and GAUC (`genrec.eval.metrics`) against scikit-learn's `roc_auc_score` (per user for GAUC);
- bootstrap intervals (`genrec.eval.bootstrap`) against `scipy.stats.bootstrap`;
- the import time of argparse against Typer (what `genrec --help` pays before any command runs).
Writes `benchmarks/results/dependencies.md`.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results" / "dependencies.md"
SEED = 0


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def schedule() -> list[str]:
    from genrec.train.loop import TrainConfig, lr_at

    config = TrainConfig(steps=3000, lr=1e-3, warmup_steps=100, min_lr_ratio=0.1)
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=config.lr)
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / config.warmup_steps, total_iters=config.warmup_steps - 1)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps - 1 - config.warmup_steps,
                                                        eta_min=config.lr * config.min_lr_ratio)
    scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[config.warmup_steps])
    theirs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(config.steps):
            theirs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
    ours = np.array([lr_at(step, config) for step in range(config.steps)])
    gap = np.abs(ours - np.array(theirs)) / ours
    return [f"| learning-rate schedule, {config.steps} steps (warm-up {config.warmup_steps}, cosine to 0.1·lr) "
            f"| `lr_at` vs LinearLR → CosineAnnealingLR (SequentialLR) | max relative difference {gap.max():.1e}, "
            f"{int((gap > 1e-9).sum())} of {config.steps} steps differ by more than 1e-9 | — |"]


def auc_rows() -> list[str]:
    from sklearn.metrics import roc_auc_score

    from genrec.eval.metrics import auc, gauc

    rng = np.random.default_rng(SEED)
    n, n_users = 200_000, 20_000
    users = rng.integers(0, n_users, n)
    scores = np.round(rng.normal(size=n), 2)  # rounded: ties, as a ranker's scores have
    labels = (rng.random(n) < 0.2 + 0.1 * (scores > 0)).astype(np.int64)
    ours, theirs = auc(scores, labels), roc_auc_score(labels, scores)
    t_ours, t_theirs = best_of(lambda: auc(scores, labels)), best_of(lambda: roc_auc_score(labels, scores))

    def sklearn_gauc() -> float:
        order = np.argsort(users, kind="stable")
        bounds = np.flatnonzero(np.diff(users[order])) + 1
        values = [roc_auc_score(labels[g], scores[g]) for g in np.split(order, bounds) if 0 < labels[g].sum() < len(g)]
        return float(np.mean(values))

    g_ours, g_theirs = gauc(users, scores, labels), sklearn_gauc()
    tg_ours, tg_theirs = best_of(lambda: gauc(users, scores, labels)), best_of(sklearn_gauc, repeats=1)
    return [
        f"| AUC, {n:,} scored impressions with ties | `auc` vs `roc_auc_score` | {ours:.12f} vs {theirs:.12f} "
        f"| {t_ours * 1e3:.0f} ms vs {t_theirs * 1e3:.0f} ms |",
        f"| GAUC, the same over {n_users:,} users | `gauc` vs `roc_auc_score` per user | {g_ours:.12f} vs {g_theirs:.12f} "
        f"| {tg_ours * 1e3:.0f} ms vs {tg_theirs * 1e3:.0f} ms |",
    ]


def bootstrap_rows() -> list[str]:
    from scipy import stats

    from genrec.eval.bootstrap import bootstrap_means, percentile_interval

    rng = np.random.default_rng(SEED)
    n, columns, resamples = 5000, 36, 1000  # requests × (retrievers × metrics), the demo's order of size
    values = (rng.random((n, columns)) < rng.uniform(0.05, 0.5, columns)).astype(np.float64)

    def ours():
        return percentile_interval(bootstrap_means(values, resamples, seed=SEED))

    def theirs():
        result = stats.bootstrap((values,), np.mean, n_resamples=resamples, method="percentile", axis=0,
                                 vectorized=True, random_state=SEED)
        return result.confidence_interval.low, result.confidence_interval.high

    (low, high), (slow, shigh) = ours(), theirs()
    gap = max(np.abs(low - slow).max(), np.abs(high - shigh).max())
    width = float(np.mean(high - low))
    return [f"| 95% bootstrap intervals, {n:,} requests × {columns} columns, {resamples} resamples "
            f"| `bootstrap_means` + `percentile_interval` vs `scipy.stats.bootstrap(method='percentile')` "
            f"| mean width {width:.4f}; largest bound difference {gap:.4f} (other random draws) "
            f"| {best_of(ours) * 1e3:.0f} ms vs {best_of(theirs) * 1e3:.0f} ms |"]


def import_rows() -> list[str]:
    def import_seconds(module: str) -> float:
        code = f"import time; s = time.perf_counter(); import {module}; print(time.perf_counter() - s)"
        runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
                for _ in range(5)]
        return min(runs)

    return [f"| command-line parser import | argparse vs typer | — | {import_seconds('argparse') * 1e3:.1f} ms vs "
            f"{import_seconds('typer') * 1e3:.1f} ms |"]


def main() -> None:
    torch.set_num_threads(1)
    rows = schedule() + auc_rows() + bootstrap_rows() + import_rows()
    header = [
        "# Hand-written pieces against the libraries that could replace them",
        "",
        f"Command: `.venv/bin/python benchmarks/dependencies.py`; {time.strftime('%Y-%m-%d', time.gmtime())}; "
        f"{platform.machine()}, {os.cpu_count()} cores (one torch thread), Python {platform.python_version()}, "
        f"seed {SEED}. Times are the best of three. Decisions: `docs/dependencies.md`.",
        "",
        "| what | ours vs the library | same answer? | time (ours vs library) |",
        "|---|---|---|---|",
    ]
    RESULTS.write_text("\n".join(header + rows) + "\n")
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
