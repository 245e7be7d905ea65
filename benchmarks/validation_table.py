"""The full validation split: trained generative variants beside the baselines, and where they miss.

    .venv/bin/python benchmarks/validation_table.py --source runs/demo \
        --models runs/variants/variant-4 runs/variants/variant-14

Table 1: search / recommendation Recall@10 and NDCG@10 on every validation
request (the training loop's inline evaluation sees a 1,000-request sample,
too noisy to tell 0.01 apart), for the baselines built from `--source` as the
demo builds them and for each `--models` run folder (its `train/generative`).

Table 2: per SID level, how often the model's teacher-forced top-1 code is the
target's (the level's softmax given the true prefix): where a generator loses
the item. This is how the session-1 model was found to pick the right first
level for 81% of searches but the second for only 38%.

Writes `benchmarks/results/validation_table.md`. Reads the validation split only.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from genrec.data.dataset import Dataset
from genrec.data.splits import build_requests, leave_one_out
from genrec.eval.metrics import ndcg_at_k, ranked_matrix, recall_at_k
from genrec.model.retriever import MODEL_DIR, GenerativeRetriever
from genrec.registry import build_retriever
from genrec.train.generative import load_sid_table

RESULTS = Path(__file__).parent / "results" / "validation_table.md"
BASELINES = ("popularity", "bm25", "dense", "itemcf", "sasrec", "cascade")


def scores(retriever, requests, targets, is_search) -> list[float]:
    ranked = ranked_matrix(retriever.retrieve(requests, 10), 10)
    return [metric(ranked[rows], targets[rows], 10).mean for rows in (is_search, ~is_search)
            for metric in (recall_at_k, ndcg_at_k)]


def level_accuracy(retriever: GenerativeRetriever, sids, requests, targets, is_search) -> list[list[float]]:
    """[search, rec] × level: share of requests whose top-1 code at that level (true prefix given) is right."""
    row_of = dict(zip(sids.item_ids.tolist(), range(len(sids.item_ids))))
    codes = torch.from_numpy(np.asarray(sids.codes)[[row_of[int(t)] for t in targets]])
    hits = []
    with torch.no_grad():
        for start in range(0, len(requests), 512):
            batch = retriever.encoder.transform(requests[start:start + 512])
            logits = retriever.model(batch, codes[start:start + 512])
            hits.append(torch.stack([lg.argmax(1) == codes[start:start + 512, lv] for lv, lg in enumerate(logits)], 1))
    hit = torch.cat(hits).float().numpy()
    return [hit[rows].mean(axis=0).tolist() for rows in (is_search, ~is_search)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("runs/demo"), help="run the baselines are built from")
    parser.add_argument("--models", type=Path, nargs="*", default=[], help="run folders with train/generative")
    parser.add_argument("--baselines", default=",".join(BASELINES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file to write")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    dataset = Dataset.load(args.source / "data")
    split = leave_one_out(dataset.events)
    requests, targets = build_requests(split, "valid")
    is_search = np.array([r.is_search for r in requests])
    rows, levels, beams = [], [], set()
    for name in [n for n in args.baselines.split(",") if n]:
        rows.append((name, scores(build_retriever(name, args.source, dataset, split), requests, targets, is_search)))
        print(rows[-1], flush=True)
    for run in args.models:
        sids = load_sid_table(run)
        retriever = GenerativeRetriever.load(run.joinpath(*MODEL_DIR), sids)
        beams.add(retriever.beams)
        rows.append((f"generative: {run}", scores(retriever, requests, targets, is_search)))
        levels.append((str(run), level_accuracy(retriever, sids, requests, targets, is_search)))
        print(rows[-1], levels[-1], flush=True)

    lines = ["# Full validation split: generative variants beside the baselines", "",
             f"Command: `.venv/bin/python benchmarks/validation_table.py --source {args.source} --models "
             + " ".join(map(str, args.models)) + "`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {len(requests)} validation requests "
             f"({int(is_search.sum())} search, {int((~is_search).sum())} recommendation); generative models decode "
             f"{' / '.join(map(str, sorted(beams))) or '–'} beams, as each serves", "",
             "| row | search R@10 | search N@10 | rec R@10 | rec N@10 |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | " + " | ".join(f"{v:.4f}" for v in values) + " |" for name, values in rows]
    lines += ["", "## Top-1 code accuracy per SID level (true prefix given)", "",
              "| model | request type | " + " | ".join(f"level {i}" for i in range(max(
                  (len(acc[0]) for _, acc in levels), default=0))) + " |",
              "|---|---|" + "---:|" * max((len(acc[0]) for _, acc in levels), default=0)]
    for run, (search, rec) in levels:
        lines.append(f"| {run} | search | " + " | ".join(f"{v:.3f}" for v in search) + " |")
        lines.append(f"| {run} | recommendation | " + " | ".join(f"{v:.3f}" for v in rec) + " |")
    args.results.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
