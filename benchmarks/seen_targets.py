"""Does anyone re-buy? How often a target is already in its user's history, per split part:
the fact behind evaluating Amazon Beauty a second time with seen items removed (`--exclude-seen`).

    .venv/bin/python benchmarks/seen_targets.py --run runs/beauty-c5     # needs RUN/data
    .venv/bin/python benchmarks/seen_targets.py --run runs/ml100k --out benchmarks/results/seen_targets_ml100k.md

    .venv/bin/python benchmarks/seen_targets.py --run runs/ml100k --answers cascade,generative --max-history 50

`--answers` also asks the named trained retrievers for the top 10 of the first validation requests and
counts the slots they give to the user's own history items. Writes benchmarks/results/seen_targets.md
(or --out).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from genrec.data.dataset import Dataset
from genrec.data.splits import build_requests, interactions, leave_one_out
from genrec.registry import build_retriever

RESULTS = Path(__file__).parent / "results" / "seen_targets.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", default="runs/beauty")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--answers", default="", help="comma-separated retrievers whose answers are checked")
    parser.add_argument("--max-history", type=int, default=20, help="history items per request for --answers")
    parser.add_argument("--requests", type=int, default=500, help="validation requests for --answers")
    args = parser.parse_args()
    dataset = Dataset.load(Path(args.run) / "data")
    split = leave_one_out(dataset.events)
    train = interactions(split.train)
    lines = [f"# Targets already in their user's history (`{args.run}`)", "",
             f"Command: `.venv/bin/python benchmarks/seen_targets.py --run {args.run}"
             + (f" --out {args.out}" if args.out != RESULTS else "")
             + (f" --answers {args.answers} --max-history {args.max_history} --requests {args.requests}"
                if args.answers else "") + "`", "",
             "| part | targets | already in the user's history | share |", "|---|---:|---:|---:|"]
    repeats = int(train.duplicated(["user_id", "item_id"]).sum())
    lines.append(f"| train (every interaction, against the user's earlier ones) | {len(train):,} | {repeats:,} | "
                 f"{repeats / max(len(train), 1):.4f} |")
    for part in ("valid", "test"):
        requests, targets = build_requests(split, part, max_history=10**9)
        seen = sum(int(t) in set(r.history) for r, t in zip(requests, targets))
        lines.append(f"| {part} | {len(requests):,} | {seen:,} | {seen / max(len(requests), 1):.4f} |")
    if args.answers:
        requests, _ = build_requests(split, "valid", max_history=args.max_history)
        requests = requests[:args.requests]
        lines += ["", f"History items in each retriever's top 10 ({len(requests)} validation requests, history = the "
                  f"last {args.max_history} items):", "",
                  "| retriever | answers holding a history item | history items per answer |", "|---|---:|---:|"]
        for name in args.answers.split(","):
            answers = build_retriever(name, Path(args.run), dataset, split).retrieve(requests, 10)
            slots = np.array([np.isin(a.item_ids, r.history).sum() for r, a in zip(requests, answers)])
            lines.append(f"| {name} | {(slots > 0).mean():.3f} | {slots.mean():.2f} |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
