"""How often a recommendation's target shares the leaf of the newest history item, and how often a
trained generative model puts the target's leaf first: the measurement behind `copy_recent`.

    .venv/bin/python benchmarks/recent_leaf.py --models runs/variants/variant-22 runs/demo

Per scenario of the validation split's recommendation requests: the share whose target's first SID
code (the leaf, with attribute-prefixed SIDs) equals the newest history item's, the share where it
equals any of the last 10 items', and for each model the share whose top-ranked item has the target's
leaf, beside its Recall@10. Each model is read with its own run's data and SIDs. Validation only.
Writes `benchmarks/results/recent_leaf.md`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from genrec.data.dataset import Dataset
from genrec.data.splits import build_requests, leave_one_out
from genrec.model.retriever import MODEL_DIR, GenerativeRetriever
from genrec.train.generative import load_sid_table

RESULTS = Path(__file__).parent / "results" / "recent_leaf.md"
SCENARIOS = ("item_detail", "home_feed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="run folders with train/generative")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    lines = ["# The newest item's leaf and the target's (validation split, recommendation requests)", "",
             "Command: `.venv/bin/python benchmarks/recent_leaf.py --models "
             + " ".join(map(str, args.models)) + "`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; 20 beams", "",
             "| run | scenario | requests | target leaf = newest item's | in the last 10 | model's top-1 leaf right | model R@10 |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for run in args.models:
        dataset = Dataset.load(run / "data")
        requests, targets = build_requests(leave_one_out(dataset.events), "valid")
        sids = load_sid_table(run)
        leaf = dict(zip(sids.item_ids.tolist(), sids.codes[:, 0].tolist()))
        retriever = GenerativeRetriever.load(run.joinpath(*MODEL_DIR), sids)
        for scenario in SCENARIOS:
            rows = [i for i, r in enumerate(requests) if r.scenario == scenario and not r.query]
            target_leaf = [leaf[int(targets[i])] for i in rows]
            newest = np.mean([bool(requests[i].history) and leaf.get(requests[i].history[-1]) == t
                              for i, t in zip(rows, target_leaf)])
            recent = np.mean([t in {leaf.get(h) for h in requests[i].history[-10:]} for i, t in zip(rows, target_leaf)])
            answers = retriever.retrieve([requests[i] for i in rows], 10)
            first = np.mean([len(a.item_ids) > 0 and leaf[int(a.item_ids[0])] == t for a, t in zip(answers, target_leaf)])
            hit = np.mean([int(targets[i]) in set(a.item_ids.tolist()) for a, i in zip(answers, rows)])
            lines.append(f"| {run} | {scenario} | {len(rows)} | {newest:.3f} | {recent:.3f} | {first:.3f} | {hit:.3f} |")
            print(lines[-1], flush=True)
    args.results.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
