"""CPU cost of DimeRec's diffusion steps against SASRec, per batch of requests and per training step.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dimerec_cost.py      # under a minute on one core

Same shape for every row (Amazon Beauty's catalogue of 12,101 items, d = 64, 2 layers, histories of 20,
a batch of `BATCH`): SASRec, then DimeRec with 1, 2, 5 (the default), 10 and 20 reverse steps at
inference. CPU seconds (`time.process_time`, one thread), median of `REPEATS` after a warm-up, of
ranking a batch (`score_histories`: encoder, guidance, diffusion, scores over the catalogue) and of
one training step (forward + backward of the model's own loss, sampled softmax with 512 negatives).
Writes `benchmarks/results/dimerec_cost.md`.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from genrec.baselines.dimerec import DimeRecConfig, DimeRecRetriever  # noqa: E402
from genrec.baselines.sasrec import SASRecConfig, SASRecRetriever, score_histories  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "dimerec_cost.md"
N_ITEMS, HISTORY, BATCH, REPEATS, SEED = 12_101, 20, 256, 7, 0


def cpu_seconds(fn) -> float:
    fn()
    times = []
    for _ in range(REPEATS):
        began = time.process_time()
        fn()
        times.append(time.process_time() - began)
    return statistics.median(times)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    histories = [list(rng.integers(1, N_ITEMS + 1, HISTORY)) for _ in range(BATCH)]
    windows = torch.as_tensor(rng.integers(1, N_ITEMS + 1, (BATCH, HISTORY + 1)))
    batch = {"inputs": windows[:, :-1], "targets": windows[:, 1:]}
    popularity = np.ones(N_ITEMS + 1, dtype=np.float32)
    counts = np.ones(N_ITEMS + 1)
    variants: list[tuple[str, type[SASRecRetriever], SASRecConfig]] = [
        ("SASRec", SASRecRetriever, SASRecConfig(max_history=HISTORY, loss="sampled", negatives=512, use_category=False))]
    variants += [(f"DimeRec, {steps} reverse step{'s' * (steps > 1)}", DimeRecRetriever,
                  DimeRecConfig(max_history=HISTORY, loss="sampled", negatives=512, use_category=False,
                                sampling_steps=steps)) for steps in (1, 2, 5, 10, 20)]
    rows = []
    for label, retriever, config in variants:
        model = retriever.network(config, config.model_config(N_ITEMS), None)
        loss_fn = retriever.training_loss(config, counts)
        rank = cpu_seconds(lambda model=model: score_histories(model, histories, popularity))

        def step(model=model, loss_fn=loss_fn) -> None:
            model.train()
            model.zero_grad()
            loss_fn(model, batch).backward()

        rows.append((label, sum(p.numel() for p in model.parameters()), rank, cpu_seconds(step)))
    base_rank, base_step = rows[0][2], rows[0][3]
    lines = [
        "# DimeRec's diffusion steps: CPU cost against SASRec", "",
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/dimerec_cost.py`; {platform.platform()}, Python "
        f"{platform.python_version()}, torch {torch.__version__}, {date.today()}, load average {os.getloadavg()[0]:.1f}, "
        f"one thread, seed {SEED}. {N_ITEMS:,} items, d = 64, 2 layers, histories of {HISTORY}, {BATCH} requests per "
        "batch (random weights: cost only); CPU ms, median of 7.", "",
        "| model | parameters | rank a batch (ms) | × SASRec | train step (ms) | × SASRec |",
        "|---|---:|---:|---:|---:|---:|",
        *[f"| {label} | {params:,} | {rank * 1000:.1f} | {rank / base_rank:.2f}× | {step * 1000:.1f} | "
          f"{step / base_step:.2f}× |" for label, params, rank, step in rows],
        "",
        "Training draws one noise step per example whatever `sampling_steps` is, so only ranking grows with it.",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
