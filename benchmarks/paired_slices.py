"""Paired tests between two retrievers on the test split, by task and by target popularity.

The evaluation report (`runs/demo/eval/report.md`) pairs neighbouring rows on Recall@10; the README
also quotes NDCG@10 and the popular / long-tail slices of the aligned model against the cascade.
This script answers the split once with each named retriever (as evaluation builds it) and prints
every pair's mean difference, 95% bootstrap interval and randomization p-value (`genrec.eval.bootstrap`).

    .venv/bin/python benchmarks/paired_slices.py --run runs/demo
    .venv/bin/python benchmarks/paired_slices.py --run runs/beauty --pairs generative:cascade --max-history 20 \
        --exclude-seen --item-head-candidates 20 --item-head-mix 1 --out benchmarks/results/paired_beauty.md

Writes benchmarks/results/paired_slices.md.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from genrec.align.teachers import load_teacher
from genrec.data.dataset import Dataset
from genrec.data.splits import build_requests, leave_one_out
from genrec.eval.bootstrap import paired_test
from genrec.eval.harness import remove_seen
from genrec.eval.metrics import ndcg_at_k, ranked_matrix, recall_at_k
from genrec.eval.slices import request_slices
from genrec.model.retriever import GenerativeRetriever
from genrec.registry import build_retriever

RESULTS = Path(__file__).parent / "results"
PAIRS = "generative-aligned:cascade,generative:itemcf,generative-aligned:generative,generative:cascade,generative:sasrec"
SLICES = (("search", lambda s: s["search"]), ("search, popular targets", lambda s: s["search"] & ~s["long_tail_items"]),
          ("search, long-tail targets", lambda s: s["search"] & s["long_tail_items"]),
          ("recommendation", lambda s: s["recommendation"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"))
    parser.add_argument("--part", default="test", choices=("valid", "test"))
    parser.add_argument("--pairs", default=PAIRS, help="comma-separated A:B pairs of retriever names")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "paired_slices.md")
    parser.add_argument("--max-history", type=int, default=None, help="history items per request (default: all)")
    parser.add_argument("--exclude-seen", action="store_true",
                        help="remove each request's history items from every answer (the harness's exclude_seen)")
    parser.add_argument("--item-head-candidates", type=int, default=None,
                        help="the generative row's item_head_candidates (default: the model's; generative-aligned keeps its own)")
    parser.add_argument("--item-head-mix", type=float, default=None, help="the generative row's mix (default: the model's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pairs = [tuple(pair.split(":")) for pair in args.pairs.split(",")]
    if any(len(pair) != 2 for pair in pairs):
        raise SystemExit(f"--pairs must be A:B,… got {args.pairs!r}")

    dataset = Dataset.load(args.run / "data")
    split = leave_one_out(dataset.events)
    requests, targets = build_requests(split, args.part, max_history=args.max_history)
    targets = np.asarray(targets)
    slices = request_slices(requests, targets, split.train, dataset.items)
    metrics = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a model made by other code still answers: that is what is measured
        for name in dict.fromkeys(name for pair in pairs for name in pair):
            retriever = (load_teacher("sasrec", args.run, dataset, split) if name == "sasrec"  # with the config it was
                         else build_retriever(name, args.run, dataset, split))  # trained with, not the default one
            if name == "generative" and isinstance(retriever, GenerativeRetriever):  # the aligned row keeps its own
                if args.item_head_candidates is not None:
                    retriever.item_head_candidates = args.item_head_candidates
                if args.item_head_mix is not None:
                    retriever.item_head_mix = args.item_head_mix
            answers = retriever.retrieve(requests, 50)
            ranked = ranked_matrix(remove_seen(answers, requests, 10) if args.exclude_seen else answers, 50)
            metrics[name] = {"R@10": recall_at_k(ranked, targets, 10).values, "NDCG@10": ndcg_at_k(ranked, targets, 10).values}

    lines = ["# Paired tests by slice", "",
             f"Command: `.venv/bin/python {' '.join(sys.argv)}`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {len(requests)} {args.part} requests; "
             "A − B, mean [95% bootstrap interval], randomization p-value (1,000 resamples)", "",
             "| slice | n | A | B | metric | A | B | A − B | p |", "|---|---:|---|---|---|---:|---:|---|---:|"]
    for label, pick in SLICES:
        rows = np.asarray(pick(slices))
        if not rows.any():
            continue
        for a, b in pairs:
            for metric in ("R@10", "NDCG@10"):
                va, vb = metrics[a][metric][rows], metrics[b][metric][rows]
                diff, low, high, p = paired_test(va, vb)
                lines.append(f"| {label} | {int(rows.sum())} | {a} | {b} | {metric} | {va.mean():.4f} | {vb.mean():.4f} "
                             f"| {diff:+.4f} [{low:+.4f}, {high:+.4f}] | {p:.3f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
