"""Beam width of a trained generative retriever, chosen on the validation split.

    .venv/bin/python benchmarks/beam_width.py --run runs/beauty --beams 20,40,80 --max-requests 5000

Loads `RUN/train/generative` once and evaluates it on the same (seeded) validation
requests at each width, so the widths differ in nothing else. Writes
`benchmarks/results/beam_width_<run name>.md`. A wider beam keeps more prefixes
alive at the early SID levels, where a coarse code hides many items; it costs
decode time roughly in proportion.
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
from genrec.train.generative import load_sid_table

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", required=True, help="run folder with data/, sid/ and train/generative/")
    parser.add_argument("--beams", default="20,40", help="comma-separated beam widths")
    parser.add_argument("--max-requests", type=int, default=5000, help="seeded sample of validation requests (0: all)")
    parser.add_argument("--max-history", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    dataset = Dataset.load(run / "data")
    split = leave_one_out(dataset.events)
    requests, targets = build_requests(split, "valid", max_history=args.max_history)
    if args.max_requests and len(requests) > args.max_requests:
        pick = np.sort(np.random.default_rng(0).choice(len(requests), args.max_requests, replace=False))
        requests, targets = [requests[i] for i in pick], targets[pick]
    retriever = GenerativeRetriever.load(run.joinpath(*MODEL_DIR), load_sid_table(run))
    lines = [f"# Beam width on the validation split: {run.name}", "",
             f"Command: `.venv/bin/python benchmarks/beam_width.py --run {args.run} --beams {args.beams} "
             f"--max-requests {args.max_requests}`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {len(requests)} validation requests; "
             f"{torch.get_num_threads()} torch threads, CPU", "",
             "| beams | recall@5 | ndcg@5 | recall@10 | ndcg@10 | seconds |", "|---:|---:|---:|---:|---:|---:|"]
    for beams in (int(b) for b in args.beams.split(",")):
        retriever.beams = beams
        began = time.perf_counter()
        ranked = ranked_matrix(retriever.retrieve(requests, 10), 10)
        seconds = time.perf_counter() - began
        cells = [recall_at_k(ranked, targets, 5).mean, ndcg_at_k(ranked, targets, 5).mean,
                 recall_at_k(ranked, targets, 10).mean, ndcg_at_k(ranked, targets, 10).mean]
        lines.append(f"| {beams} | " + " | ".join(f"{v:.4f}" for v in cells) + f" | {seconds:.0f} |")
        print(lines[-1], flush=True)
    out = RESULTS / f"beam_width_{run.name}.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
