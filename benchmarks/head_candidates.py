"""The item head's own candidates beside the beams, and leaving history items out, chosen on validation.

    .venv/bin/python benchmarks/head_candidates.py --run runs/beauty --candidates 0,20,50 --mixes 0.5,1 --exclude-history 0,1

A model with an item head re-ranks its beams by beam log-prob + mix × item log-prob, but
only items beam search kept can be answered. `item_head_candidates` C adds the head's C most
likely items to the beams (scored by their SID's teacher-forced log-prob, the beams' scale);
`exclude_history` leaves the request's own history items out of the answer. Every setting is
answered by the served code path (`GenerativeRetriever.retrieve`) on the same seeded
validation requests. Writes `benchmarks/results/head_candidates_<run name>.md`; the chosen
values go into the model's config (`model.item_head_candidates`, `model.exclude_history`).
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import torch
from validation_sample import metric_cells, validation_sample

from genrec.decode.beam_search import constrained_beam_search
from genrec.eval.metrics import ranked_matrix
from genrec.model.retriever import MODEL_DIR, GenerativeRetriever
from genrec.train.generative import load_sid_table

RESULTS = Path(__file__).parent / "results"


def reachable(retriever: GenerativeRetriever, requests, targets: np.ndarray, candidates: int) -> float:
    """The share of requests whose target is among the candidates `retrieve` ranks: the beams, plus the
    head's `candidates` most likely items (the retriever's own `with_head_candidates`)."""
    head = retriever.model.item_head
    assert head is not None
    retriever.item_head_candidates = candidates
    hits = []
    with torch.no_grad():
        for start in range(0, len(requests), retriever.batch_size):
            chunk = requests[start:start + retriever.batch_size]
            state = retriever.decoder.encode(retriever.encoder.transform(chunk))
            pool, scores = constrained_beam_search(retriever.decoder, state, retriever.trie, retriever.beams,
                                                   retriever.beams)
            if candidates:
                pool, _ = retriever.with_head_candidates(state, head, pool, scores)
            hits.append((pool.numpy() == targets[start:start + len(chunk), None]).any(axis=1))
    return float(np.concatenate(hits).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", required=True, help="run folder with data/, sid/ and train/generative/")
    parser.add_argument("--candidates", default="0,20,50", help="comma-separated item_head_candidates")
    parser.add_argument("--mixes", default="0.5,1", help="comma-separated item-head mixes")
    parser.add_argument("--exclude-history", default="0,1", help="comma-separated 0/1")
    parser.add_argument("--beams", type=int, default=None, help="beam width (default: the model's)")
    parser.add_argument("--max-requests", type=int, default=5000, help="seeded sample of validation requests (0: all)")
    parser.add_argument("--max-history", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    _, _, requests, targets = validation_sample(run, args.max_requests, args.max_history)
    retriever = GenerativeRetriever.load(run.joinpath(*MODEL_DIR), load_sid_table(run), beams=args.beams)
    if retriever.model.item_head is None:
        raise SystemExit(f"{run} has no item head: nothing to propose candidates or re-rank")
    lines = [f"# The item head's candidates and history items on the validation split: {run.name}", "",
             "Command: `.venv/bin/python benchmarks/head_candidates.py --run " + args.run
             + f" --candidates {args.candidates} --mixes {args.mixes} --exclude-history {args.exclude_history}"
             + (f" --beams {args.beams}" if args.beams else "")
             + f" --max-requests {args.max_requests} --max-history {args.max_history}`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {len(requests)} validation requests; "
             f"{retriever.beams} beams; {torch.get_num_threads()} torch threads, CPU.", "",
             "| head candidates | mix | history items | recall@5 | ndcg@5 | recall@10 | ndcg@10 | target among the candidates | s |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    settings = itertools.product((int(c) for c in args.candidates.split(",")),
                                 (float(m) for m in args.mixes.split(",")),
                                 (bool(int(e)) for e in args.exclude_history.split(",")))
    coverage: dict[int, float] = {}
    for candidates, mix, exclude in settings:
        retriever.item_head_candidates, retriever.item_head_mix, retriever.exclude_history = candidates, mix, exclude
        began = time.perf_counter()
        ranked = ranked_matrix(retriever.retrieve(requests, 10), 10)
        seconds = time.perf_counter() - began
        if candidates not in coverage:  # depends on the candidates only
            coverage[candidates] = reachable(retriever, requests, targets, candidates)
        covered = coverage[candidates]
        lines.append(f"| {candidates} | {mix:g} | {'left out' if exclude else 'kept'} | "
                     f"{metric_cells(ranked, targets)} | {covered:.4f} | {seconds:.0f} |")
        print(lines[-1], flush=True)
    out = RESULTS / f"head_candidates_{run.name}.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
