"""The text lookahead inside the beam search (and a search's keyword weight): quality and beam coverage per weight.

    .venv/bin/python benchmarks/lookahead.py --run runs/demo --part valid --weights 0,4,8,16
    .venv/bin/python benchmarks/lookahead.py --run runs/demo --part test --weights 8 --keyword-weights 0,1

One generative model (`RUN/align/generative` as the demo serves it — its beams,
item-head mixes and text-match weight; `--model train` for `RUN/train/generative`)
answers the split's requests for each weight of `GenerativeRetriever(text_lookahead=w)`
(`genrec.decode.lookahead`; 0 = the plain beam search): the weight of a search's
query–item cosine inside the search. Per weight and task (search, recommendation;
recommendations have no query, so they are a control): Recall@10 / NDCG@10
(95% bootstrap interval), how often the target is among the beams at all, and
the paired difference from the first setting; with `--keyword-weights` every
lookahead weight is crossed with every weight of a search's BM25 keyword term
(`GenerativeRetriever(keyword_match=…)`, `genrec.model.keywords`; default: the
model's own); for searches also Recall@10 on
long-tail targets (outside the 20% most interacted items); and the process CPU
time per request of the decode (after one untimed pass over every request, so
query vectors are cached for all settings alike).

Writes `benchmarks/results/lookahead_<part>.md` (`--out` to write elsewhere).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from genrec.align.retriever import AlignedGenerativeRetriever
from genrec.data.dataset import Dataset
from genrec.data.splits import build_requests, leave_one_out
from genrec.eval.bootstrap import mean_with_interval, paired_test
from genrec.eval.metrics import ndcg_at_k, ranked_matrix, recall_at_k
from genrec.eval.slices import request_slices
from genrec.model.retriever import GenerativeRetriever

RESULTS = Path(__file__).parent / "results"


def paired(values: np.ndarray, reference: np.ndarray) -> str:
    difference, low, high, p = paired_test(values, reference)
    return f"{difference:+.4f} [{low:+.4f}, {high:+.4f}], p = {p:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"))
    parser.add_argument("--model", choices=("align", "train"), default="align")
    parser.add_argument("--part", choices=("valid", "test"), default="valid")
    parser.add_argument("--weights", default="0,4,8", help="comma-separated text-lookahead weights")
    parser.add_argument("--keyword-weights", default=None,
                        help="comma-separated keyword-match weights (default: the model's; >0 needs keywords.npz)")
    parser.add_argument("--max-requests", type=int, default=0, help="a seeded sample of this many requests (0: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    dataset = Dataset.load(args.run / "data")
    split = leave_one_out(dataset.events)
    requests, targets = build_requests(split, args.part)
    targets = np.asarray(targets)
    slices = request_slices(requests, targets, split.train, dataset.items)
    search, tail = np.asarray(slices["search"]), np.asarray(slices["long_tail_items"])
    if args.max_requests and args.max_requests < len(requests):
        keep = np.sort(np.random.default_rng(0).choice(len(requests), args.max_requests, replace=False))
        requests, targets, search, tail = [requests[i] for i in keep], targets[keep], search[keep], tail[keep]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a model made by other code still answers: that is what is measured
        retriever = (AlignedGenerativeRetriever.from_run(args.run) if args.model == "align"
                     else GenerativeRetriever.from_run(args.run))
    beams = retriever.beams
    retriever.retrieve(requests, beams)  # query vectors and lazy tables load outside the clock

    lines, reference = [], None
    keyword_weights = ([float(w) for w in args.keyword_weights.split(",")] if args.keyword_weights
                       else [retriever.keyword_match])
    if max(keyword_weights) > 0 and retriever.keywords is None:
        raise SystemExit(f"keyword weights > 0 need the keyword index beside the model ({args.run}/{args.model}/generative"
                         "/keywords.npz: genrec align writes it when validation chose the term)")
    settings = [(float(w), k) for w in args.weights.split(",") for k in keyword_weights]
    for text, keyword in settings:
        retriever.text_lookahead = text if search.any() else 0.0
        retriever.keyword_match = keyword
        cpu = time.process_time()
        ranked = ranked_matrix(retriever.retrieve(requests, beams), beams)
        cpu = time.process_time() - cpu
        recall, ndcg = recall_at_k(ranked, targets, 10).values, ndcg_at_k(ranked, targets, 10).values
        among = recall_at_k(ranked, targets, beams).values
        if reference is None:
            reference = (recall, ndcg)
        cells = [f"{text:g}", f"{keyword:g}"]
        for rows, name in ((search, "search"), (~search, "rec")):
            if not rows.any():
                cells += ["–"] * (6 if name == "search" else 5)
                continue
            cells += [mean_with_interval(recall[rows]), mean_with_interval(ndcg[rows]), f"{among[rows].mean():.4f}"]
            if name == "search":
                cells.append(f"{recall[rows & tail].mean():.4f}")
            cells += [paired(recall[rows], reference[0][rows]), paired(ndcg[rows], reference[1][rows])]
        cells.append(f"{1000 * cpu / len(requests):.2f}")
        lines.append("| " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    config = retriever.model.config
    table = [
        "# A search's keyword weight beside the text lookahead" if args.keyword_weights
        else "# The text lookahead inside the beam search", "",
        f"Command: `.venv/bin/python benchmarks/lookahead.py --run {args.run} --model {args.model} --part {args.part} "
        f"--weights {args.weights}" + (f" --keyword-weights {args.keyword_weights}" if args.keyword_weights else "")
        + (f" --max-requests {args.max_requests}" if args.max_requests else "") + "`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.threads} torch thread(s), CPU only "
        f"(shared machine); {len(requests)} {args.part} requests ({int(search.sum())} searches, "
        f"{int((search & tail).sum())} with a long-tail target); {(time.perf_counter() - began) / 60:.1f} min  ",
        f"Model: `{args.run}/{args.model}/generative`, {beams} beams, recommendation mix {retriever.item_head_mix:g}, "
        f"search mix {retriever.search_mix:g}, text-match weight {config.item_head_text_match:g} (the final score's "
        f"terms; the lookahead weight only decides which items survive the beam)", "",
        "| text lookahead weight | keyword weight | search R@10 | search N@10 | search target among the beams | search R@10, "
        "long-tail targets | search R@10 − first | search N@10 − first | rec R@10 | rec N@10 | rec target among "
        "the beams | rec R@10 − first | rec N@10 − first | CPU ms / request |",
        "|---|---|---|---|---:|---:|---|---|---|---|---:|---|---|---:|", *lines]
    out = args.out or RESULTS / f"lookahead_{args.part}.md"
    out.write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
