"""What the validation benchmarks share: a run's seeded validation sample, and the table cells they report.

Why a module: `head_candidates.py`, `item_head_mix.py`, `teacher_headroom.py` and `scaling.py`
each loaded a run's data, split it, built its validation requests, drew the seeded sample and
formatted Recall/NDCG at 5 and 10 with their own copy of the same lines; numbers meant to be
compared across them ("5,000 validation users") must come from one draw and one formatter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genrec.data.dataset import Dataset
from genrec.data.splits import Split, build_requests, leave_one_out, sample_requests
from genrec.eval.metrics import ndcg_at_k, recall_at_k
from genrec.retrieval import Request


def validation_sample(run: Path, n: int, max_history: int) -> tuple[Dataset, Split, list[Request], np.ndarray]:
    """The run's dataset, its leave-one-out split, and a seeded sample of `n` validation requests (0: all)
    with their targets (`genrec.data.splits.sample_requests`)."""
    dataset = Dataset.load(Path(run) / "data")
    split = leave_one_out(dataset.events)
    requests, targets = build_requests(split, "valid", max_history=max_history)
    requests, targets = sample_requests(requests, targets, n)
    return dataset, split, requests, targets


def metric_cells(ranked: np.ndarray, targets: np.ndarray) -> str:
    """`R@5 | N@5 | R@10 | N@10` of `ranked [n, ≥10]` against `targets [n]`, as table cells."""
    values = (recall_at_k(ranked, targets, 5).mean, ndcg_at_k(ranked, targets, 5).mean,
              recall_at_k(ranked, targets, 10).mean, ndcg_at_k(ranked, targets, 10).mean)
    return " | ".join(f"{v:.4f}" for v in values)
