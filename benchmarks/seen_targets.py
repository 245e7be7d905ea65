"""Does anyone re-buy? How often a target is already in its user's history, per split part:
the fact behind evaluating Amazon Beauty a second time with seen items removed (`--exclude-seen`).

    .venv/bin/python benchmarks/seen_targets.py --run runs/beauty-c5     # needs RUN/data
    .venv/bin/python benchmarks/seen_targets.py --run runs/ml100k --out benchmarks/results/seen_targets_ml100k.md

Writes benchmarks/results/seen_targets.md (or --out).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genrec.data.dataset import Dataset
from genrec.data.splits import build_requests, interactions, leave_one_out

RESULTS = Path(__file__).parent / "results" / "seen_targets.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", default="runs/beauty")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    split = leave_one_out(Dataset.load(Path(args.run) / "data").events)
    train = interactions(split.train)
    lines = [f"# Targets already in their user's history (`{args.run}`)", "",
             f"Command: `.venv/bin/python benchmarks/seen_targets.py --run {args.run}"
             + (f" --out {args.out}" if args.out != RESULTS else "") + "`", "",
             "| part | targets | already in the user's history | share |", "|---|---:|---:|---:|"]
    repeats = int(train.duplicated(["user_id", "item_id"]).sum())
    lines.append(f"| train (every interaction, against the user's earlier ones) | {len(train):,} | {repeats:,} | "
                 f"{repeats / max(len(train), 1):.4f} |")
    for part in ("valid", "test"):
        requests, targets = build_requests(split, part, max_history=10**9)
        seen = sum(int(t) in set(r.history) for r, t in zip(requests, targets))
        lines.append(f"| {part} | {len(requests):,} | {seen:,} | {seen / max(len(requests), 1):.4f} |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
