"""The item head's mix and the beam width of a trained generative model, chosen on validation.

    .venv/bin/python benchmarks/item_head_mix.py --run runs/beauty --mixes 0,0.5,1,2 --beams 20,50

A model trained with `GenerativeConfig.item_head` answers with its beams re-ranked by
beam log-prob + mix × item log-prob. This decodes each seeded validation request
once per beam width, then scores every mix on the same beams (the mix does not change
what beam search finds, only the order), so the rows differ in nothing else. Mix 0
is the beams' own order: the model without its head at inference. A model without an
item head gets the mix-0 rows alone, which makes this the beam-width sweep too. Writes
`benchmarks/results/item_head_mix_<run name>.md`; the chosen mix goes into the
model's config (`model.item_head_mix`) for the test run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from validation_sample import metric_cells, validation_sample

from genrec.align.head_mix import beams_and_head_scores, ranked_by
from genrec.model.retriever import MODEL_DIR, GenerativeRetriever
from genrec.train.generative import load_sid_table

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", required=True, help="run folder with data/, sid/ and train/generative/")
    parser.add_argument("--mixes", default="0,0.25,0.5,1,2", help="comma-separated item-head mixes")
    parser.add_argument("--beams", default="20", help="comma-separated beam widths")
    parser.add_argument("--max-requests", type=int, default=5000, help="seeded sample of validation requests (0: all)")
    parser.add_argument("--max-history", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=None,
                        help="model folder to score (default RUN/train/generative; e.g. RUN/align/generative)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    _, _, requests, targets = validation_sample(run, args.max_requests, args.max_history)
    folder = Path(args.model) if args.model else run.joinpath(*MODEL_DIR)
    retriever = GenerativeRetriever.load(folder, load_sid_table(run))
    lines = [f"# Item-head mix and beam width on the validation split: {run.name}", "",
             f"Command: `.venv/bin/python benchmarks/item_head_mix.py --run {args.run} --mixes {args.mixes} "
             f"--beams {args.beams} --max-requests {args.max_requests} --max-history {args.max_history}"
             + (f" --model {args.model}" if args.model else "") + "`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {len(requests)} validation requests; "
             f"{torch.get_num_threads()} torch threads, CPU. Mix 0 = the beams' own order. "
             f"The model's saved mix: {retriever.model.config.item_head_mix}.", "",
             "| beams | mix | requests | recall@5 | ndcg@5 | recall@10 | ndcg@10 | target among the beams | decode s |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    search = np.asarray([bool(r.query) for r in requests], dtype=bool)
    groups = [("all", np.ones(len(requests), dtype=bool))]
    if search.any() and not search.all():  # search and recommendation apart: they differ by far
        groups += [("search", search), ("recommendation", ~search)]
    for beams in (int(b) for b in args.beams.split(",")):
        began = time.perf_counter()
        items, beam_scores, head_scores, _ = beams_and_head_scores(retriever.model, retriever.encoder,
                                                                   retriever.trie, requests, beams)
        seconds = time.perf_counter() - began
        covered = (items == targets[:, None]).any(axis=1)
        mixes = [float(m) for m in args.mixes.split(",")] if retriever.model.item_head is not None else [0.0]
        for mix in mixes:
            ranked = ranked_by(items, beam_scores, head_scores, mix, 10)
            for name, rows in groups:
                lines.append(f"| {beams} | {mix:g} | {name} ({int(rows.sum())}) | "
                             f"{metric_cells(ranked[rows], targets[rows])} | {covered[rows].mean():.4f} | {seconds:.0f} |")
                print(lines[-1], flush=True)
    out = RESULTS / f"item_head_mix_{run.name}{'_' + folder.parent.name if args.model else ''}.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
