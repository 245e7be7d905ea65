"""The search path's parts, one at a time: self-distillation (and its teacher), DiffusionGS.

    .venv/bin/python benchmarks/search_parts.py --source runs/demo --part valid \\
        --models base=runs/base self-distill=runs/sd diffusion=runs/dgs

Each `--models NAME=RUN` is a trained generative model (`RUN/train/generative`),
the demo's model with one part switched on, trained on the same data, SIDs and
item vectors. For every model: search Recall@10 / NDCG@10 (95% bootstrap
interval), search Recall@10 on long-tail targets (outside the 20% most
interacted items), recommendation Recall@10 / NDCG@10. A model trained with
self-distillation also gets its teacher's row: the same weights answering each
search with its query's thought appended (`genrec.model.thoughts`), and the
student's and the teacher's CPU time per search request, measured in turn with
every model's on the same requests in this run. `--baselines` (built from `--source` like the demo
builds them) are the yardsticks.

Writes `benchmarks/results/search_parts_<part>.md`.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from genrec.data.dataset import Dataset
from genrec.data.splits import build_requests, leave_one_out
from genrec.eval.bootstrap import mean_with_interval, paired_test
from genrec.eval.metrics import ndcg_at_k, ranked_matrix, recall_at_k
from genrec.eval.slices import request_slices
from genrec.features import encode_items
from genrec.model.retriever import GenerativeRetriever
from genrec.model.thoughts import QueryThoughts, ThoughtfulRetriever
from genrec.registry import build_retriever

RESULTS = Path(__file__).parent / "results"


def measure(retriever, requests, targets, search, tail) -> tuple[list[str], np.ndarray]:
    """The table's cells and the per-request metrics `[n, 2]` (Recall@10, NDCG@10) for paired tests."""
    ranked = ranked_matrix(retriever.retrieve(requests, 10), 10)
    recall, ndcg = recall_at_k(ranked, targets, 10).values, ndcg_at_k(ranked, targets, 10).values
    cells = [mean_with_interval(recall[search]), mean_with_interval(ndcg[search]), f"{recall[search & tail].mean():.4f}",
             f"{recall[~search].mean():.4f}", f"{ndcg[~search].mean():.4f}"]
    return cells, np.stack([recall, ndcg], axis=1)


def paired(values: np.ndarray, reference: np.ndarray, rows: np.ndarray, column: int) -> str:
    """`a − b [interval], p` of one metric column over `rows`, paired request by request."""
    difference, low, high, p = paired_test(values[rows, column], reference[rows, column])
    return f"{difference:+.4f} [{low:+.4f}, {high:+.4f}], p = {p:.3f}"


def cpu_ms_per_request(retrievers: dict[str, object], requests, rounds: int, batch: int = 64) -> dict[str, float]:
    """Median CPU ms per request of each retriever over `rounds` interleaved passes (after one untimed pass)."""
    times: dict[str, list[float]] = {name: [] for name in retrievers}
    for round_ in range(rounds + 1):
        for name, retriever in retrievers.items():
            began = time.process_time()
            for start in range(0, len(requests), batch):
                retriever.retrieve(requests[start:start + batch], 10)
            if round_:
                times[name].append(1000 * (time.process_time() - began) / len(requests))
    return {name: float(np.median(values)) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("runs/demo"), help="run the baselines are built from")
    parser.add_argument("--models", nargs="+", default=[], metavar="NAME=RUN", help="trained generative models")
    parser.add_argument("--part", choices=("valid", "test"), default="valid")
    parser.add_argument("--baselines", default="bm25,cascade")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--latency-requests", type=int, default=512, help="search requests timed per model")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="markdown file (default results/search_parts_PART.md)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()

    dataset = Dataset.load(args.source / "data")
    split = leave_one_out(dataset.events)
    requests, targets = build_requests(split, args.part)
    slices = request_slices(requests, targets, split.train, dataset.items)
    search, tail = slices["search"], slices["long_tail_items"]
    rows: list[tuple[str, list[str]]] = []
    timed: dict[str, object] = {}
    per_request: dict[str, np.ndarray] = {}
    for name in [n for n in args.baselines.split(",") if n]:
        rows.append((name, measure(build_retriever(name, args.source, dataset, split), requests, targets, search, tail)[0]))
        print(rows[-1], flush=True)
    searches = [r for r, s in zip(requests, search) if s][: args.latency_requests]
    for entry in args.models:
        name, run = entry.split("=", 1)
        student = GenerativeRetriever.from_run(run)
        cells, values = measure(student, requests, targets, search, tail)
        rows.append((f"generative: {name}", cells))
        per_request[name] = values
        print(rows[-1], flush=True)
        if student.model.config.self_distill:
            vectors = encode_items(dataset, Path(run) / "features", views=("text",), progress=False)
            thoughts = QueryThoughts.from_item_vectors(dataset.items, vectors, student.encoder.query_vectors)
            teacher = ThoughtfulRetriever(student, thoughts)
            rows.append((f"generative: {name}, its teacher (query + thought)",
                         measure(teacher, requests, targets, search, tail)[0]))
            print(rows[-1], flush=True)
            timed[f"{name}, its teacher"] = teacher
        timed[name] = student
    # Every model in turn on the same searches. Query vectors stay cached (MiniLM is not timed), so a
    # teacher's extra cost here is its thought's nearest-item search and its longer input.
    latency = cpu_ms_per_request(timed, searches, args.rounds) if timed else {}

    n_search = int(search.sum())
    lines = [f"# The search path's parts on the default world ({args.part})", "",
             "Command: `.venv/bin/python benchmarks/search_parts.py --source " + f"{args.source} --part {args.part} "
             + "--models " + " ".join(args.models) + f" --baselines {args.baselines}`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {platform.machine()}, "
             f"{args.threads} torch threads, CPU only; {len(requests)} {args.part} requests ({n_search} searches, "
             f"{int((search & tail).sum())} of them with a long-tail target); "
             f"{(time.perf_counter() - began) / 60:.1f} min", "",
             "| row | search R@10 | search N@10 | search R@10, long-tail targets | rec R@10 | rec N@10 |",
             "|---|---|---|---:|---:|---:|"]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows]
    if len(per_request) > 1:
        (first_name, first), *others = per_request.items()
        lines += ["", f"Paired against `{first_name}`, request by request (mean difference, 95% bootstrap interval, "
                      "randomization p):", "", "| model | search R@10 | search N@10 | rec N@10 |", "|---|---|---|---|"]
        lines += [f"| {name} | {paired(values, first, search, 0)} | {paired(values, first, search, 1)} | "
                  f"{paired(values, first, ~search, 1)} |" for name, values in others]
    if latency:
        first = next(iter(latency.values()))
        lines += ["", f"CPU time per search request (batch 64, {len(searches)} {args.part} searches in split order, median of "
                      f"{args.rounds} interleaved passes after an untimed one, query vectors cached):", "",
                  "| model | CPU ms / search | against the first |", "|---|---:|---:|"]
        lines += [f"| {name} | {ms:.2f} | {ms / first:.2f}× |" for name, ms in latency.items()]
    path = args.out or RESULTS / f"search_parts_{args.part}.md"
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
