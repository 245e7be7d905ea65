"""Dividing the popularity prior out of the beam search: search and recommendation quality per weight.

    .venv/bin/python benchmarks/popularity_prior.py --run runs/demo --part valid \\
        --search-weights 0,0.05,0.1,0.2,0.4,0.7,1 --rec-weights 0.1,0.2,0.4

One trained generative model (`RUN/train/generative`) decodes the split with
`GenerativeRetriever(prior=PopularityPrior of the training interactions,
search_prior_weight=w)` (then `rec_prior_weight=w`), everything else as the
demo serves it. Each row: search Recall@10 / NDCG@10 (95% bootstrap interval),
search Recall@10 on long-tail targets, recommendation Recall@10 / NDCG@10, and
the paired difference from weight 0 on search R@10 and recommendation N@10.

Writes `benchmarks/results/popularity_prior_<part>.md`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from search_parts import measure, paired

from genrec.data.dataset import Dataset
from genrec.data.splits import POSITIVE_ACTIONS, build_requests, leave_one_out
from genrec.decode.prior import PopularityPrior
from genrec.eval.slices import request_slices
from genrec.model.retriever import GenerativeRetriever

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"))
    parser.add_argument("--part", choices=("valid", "test"), default="valid")
    parser.add_argument("--search-weights", default="0,0.05,0.1,0.2,0.4,0.7,1")
    parser.add_argument("--rec-weights", default="0.1,0.2,0.4")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    dataset = Dataset.load(args.run / "data")
    split = leave_one_out(dataset.events)
    requests, targets = build_requests(split, args.part)
    slices = request_slices(requests, targets, split.train, dataset.items)
    search, tail = slices["search"], slices["long_tail_items"]
    retriever = GenerativeRetriever.from_run(args.run)
    positives = split.train[split.train["action"].isin(POSITIVE_ACTIONS)]["item_id"].value_counts()
    retriever.prior = PopularityPrior.from_counts(retriever.trie, positives.index.to_numpy(), positives.to_numpy())

    rows = []
    reference = None
    settings = [("search", float(w)) for w in args.search_weights.split(",")]
    settings += [("recommendation", float(w)) for w in args.rec_weights.split(",") if w]
    for kind, weight in settings:
        retriever.search_prior_weight = weight if kind == "search" else 0.0
        retriever.rec_prior_weight = weight if kind == "recommendation" else 0.0
        cells, values = measure(retriever, requests, targets, search, tail)
        if reference is None:
            reference = values
        rows.append(f"| {kind} | {weight:g} | " + " | ".join(cells)
                    + f" | {paired(values, reference, search, 0)} | {paired(values, reference, ~search, 1)} |")
        print(rows[-1], flush=True)
    lines = ["# The popularity prior divided out of the beam search", "",
             f"Command: `.venv/bin/python benchmarks/popularity_prior.py --run {args.run} --part {args.part} "
             f"--search-weights {args.search_weights} --rec-weights {args.rec_weights}`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.threads} torch thread(s), CPU only; "
             f"{len(requests)} {args.part} requests ({int(search.sum())} searches, {int((search & tail).sum())} with a "
             f"long-tail target); {(time.perf_counter() - began) / 60:.1f} min", "",
             "| prior on | weight | search R@10 | search N@10 | search R@10, long-tail | rec R@10 | rec N@10 "
             "| search R@10 − weight 0 | rec N@10 − weight 0 |", "|---|---:|---|---|---:|---:|---:|---|---|"] + rows
    path = RESULTS / f"popularity_prior_{args.part}.md"
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
