"""How far can a teacher built on the cascade's ranker lift the generative model?

    .venv/bin/python benchmarks/ranker_ceiling.py --run runs/demo

Alignment distils the cascade and rewards with its ranker; neither can teach the
student more than the ranker knows. This measures that ceiling on a seeded
validation sample (never test): the generative model's own top 20 re-ordered by
the ranker, and the union of those 20 with the cascade's top 10 re-ordered by it,
beside the two retrievers alone. It also checks whether a wider beam changes the
model's top 10 (if it does not, search is not what limits the model).

Writes benchmarks/results/ranker_ceiling.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from genrec.align.rewards import RankerReward
from genrec.cascade.retriever import CascadeRetriever
from genrec.data.dataset import Dataset
from genrec.data.splits import build_requests, leave_one_out
from genrec.eval.metrics import ndcg_at_k, ranked_matrix, recall_at_k
from genrec.model.retriever import GenerativeRetriever
from genrec.sid import SidTable

RESULTS = Path(__file__).parent / "results" / "ranker_ceiling.md"


def reorder_by(ranker: RankerReward, requests, items: np.ndarray) -> np.ndarray:
    """`items` `[n, m]` (-1 pads) sorted per row by the ranker's calibrated, fused score."""
    scores = ranker.score(requests, items)
    scores[items < 0] = -np.inf
    return np.take_along_axis(items, np.argsort(-scores, axis=1, kind="stable"), axis=1)


def union(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row-wise union, first's order first, duplicates and padding dropped, padded with -1."""
    rows = [list(dict.fromkeys(int(x) for x in (*a, *b) if x >= 0)) for a, b in zip(first, second)]
    out = np.full((len(rows), max(map(len, rows))), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/demo"))
    parser.add_argument("--requests", type=int, default=1000, help="seeded validation sample")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()

    dataset = Dataset.load(args.run / "data")
    split = leave_one_out(dataset.events)
    requests, targets = build_requests(split, "valid")
    pick = np.sort(np.random.default_rng(0).choice(len(requests), min(args.requests, len(requests)), replace=False))
    requests, targets = [requests[i] for i in pick], targets[pick]
    search = np.array([r.is_search for r in requests])

    sids = SidTable.load(args.run / "sid")
    folder = args.run / "train" / "generative"
    own = ranked_matrix(GenerativeRetriever.load(folder, sids, beams=20).retrieve(requests, 20), 20)
    wide = ranked_matrix(GenerativeRetriever.load(folder, sids, beams=50).retrieve(requests, 10), 10)
    cascade = ranked_matrix(CascadeRetriever.from_run(args.run, dataset, split).retrieve(requests, 10), 10)
    ranker = RankerReward.from_run(args.run)
    rows = {
        "generative (20 beams)": own,
        "generative (50 beams)": wide,
        "cascade": cascade,
        "ranker over the generative top 20": reorder_by(ranker, requests, own),
        "ranker over the generative top 20 ∪ cascade top 10": reorder_by(ranker, requests, union(own, cascade)),
    }
    same = float(np.mean([set(a[:10]) == set(b) for a, b in zip(own, wide)]))

    lines = [
        "# The ranker's ceiling as a teacher (validation)", "",
        f"Command: `.venv/bin/python benchmarks/ranker_ceiling.py --run {args.run}`  ",
        f"Validation sample: {len(requests)} seeded requests ({int(search.sum())} search, "
        f"{int((~search).sum())} recommendation); {args.threads} torch thread(s); "
        f"{time.perf_counter() - began:.0f} s wall; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
        "| row | search R@10 | search N@10 | rec R@10 | rec N@10 |", "|---|---|---|---|---|",
    ]
    for name, ranked in rows.items():
        cells = []
        for part in (search, ~search):
            cells += [f"{recall_at_k(ranked[part], targets[part], 10).mean:.4f}",
                      f"{ndcg_at_k(ranked[part], targets[part], 10).mean:.4f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Top 10 of 20 beams as a set equal to that of 50 beams on {same:.1%} of the requests.", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
