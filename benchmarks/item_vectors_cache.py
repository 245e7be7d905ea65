"""What a served request costs with the item head's catalogue vectors kept between calls, and without.

The item head scores every catalogue item from `table + text_projection(item text)`. That
`[items, text_dim] x [text_dim, d]` product is the same for every request, so a served retriever (one
with a `precision`, whose weights are fixed) keeps it from its first call
(`GenerativeRetriever.keep_item_vectors`). This benchmark answers the same
test requests one at a time (batch 1, as a lightly loaded server does) and in batches of 64 with the
server's retriever (`genrec.serve.model.fastest_exact` of the aligned model), the cache on and off
alternating request by request so machine load slows both alike, and checks that both answer the
same items with the same scores.

    .venv/bin/python benchmarks/item_vectors_cache.py --run runs/demo

Writes benchmarks/results/item_vectors_cache.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from genrec.data.dataset import Dataset
from genrec.data.splits import build_requests, leave_one_out
from genrec.malloc import keep_freed_memory
from genrec.registry import build_retriever
from genrec.retrieval import Request
from genrec.serve.model import fastest_exact

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"), help="a run with an aligned generative model")
    parser.add_argument("--retriever", default="generative-aligned")
    parser.add_argument("--requests", type=int, default=300, help="test requests answered one at a time")
    parser.add_argument("--batches", type=int, default=10, help="batches of 64 test requests")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS / "item_vectors_cache.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as a server worker does

    dataset = Dataset.load(args.run / "data")
    split = leave_one_out(dataset.events)
    retriever = fastest_exact(build_retriever(args.retriever, args.run, dataset, split))
    head = getattr(getattr(retriever, "model", None), "item_head", None)
    if head is None or head.text_projection is None or not hasattr(retriever, "keep_item_vectors"):
        raise SystemExit(f"{args.retriever} in {args.run} has no text-reading item head: nothing to compare")
    requests, _ = build_requests(split, "test")
    pick = np.random.default_rng(0).choice(len(requests), min(len(requests), max(args.requests, 64 * args.batches)),
                                           replace=False)
    chosen = [requests[int(i)] for i in pick]
    # Every query's MiniLM vector is computed here, outside the clock: otherwise the first of the two
    # calls of a new query would pay for encoding it and the second would find it cached.
    retriever.retrieve(chosen, args.k)

    rows = []
    same = True
    singles = chosen[:args.requests]
    for label, kind in (("searches", True), ("recommendations", False)):
        subset = [[r] for r in singles if r.is_search == kind]
        rows.append((f"{label}, one at a time", *_paired(retriever, subset, args.k)))
    batches = [chosen[i:i + 64] for i in range(0, 64 * args.batches, 64) if len(chosen[i:i + 64]) == 64]
    rows.append(("mixed batches of 64", *_paired(retriever, batches, args.k)))
    for row in rows:
        same = same and row[-1]

    lines = [
        "# The item head's catalogue vectors kept between requests", "",
        f"Command: `.venv/bin/python benchmarks/item_vectors_cache.py --run {args.run} --retriever {args.retriever} "
        f"--requests {args.requests} --batches {args.batches} --threads {args.threads}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), {args.threads} torch thread(s), CPU only  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; the served retriever (`fastest_exact`), "
        f"k = {args.k}; item slots {head.table.shape[0]:,}, text dim {head.text.shape[1]}, d {head.table.shape[1]}; "
        "cache on and off alternating call by call, each side first on every other call; every query's "
        "vector encoded before the clock starts", "",
        "| calls | n | p50 ms, recomputed | p50 ms, kept | p50 ratio | CPU ms, recomputed (median) | "
        "CPU ms, kept (median) | same items and scores |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, n, wall_off, wall_on, cpu_off, cpu_on, equal in rows:
        lines.append(f"| {name} | {n} | {wall_off:.1f} | {wall_on:.1f} | {wall_off / wall_on:.2f}× | {cpu_off:.1f} | "
                     f"{cpu_on:.1f} | {'yes' if equal else 'NO'} |")
    lines += ["", "p50 = median wall-clock milliseconds per call; CPU = the process's CPU time per call."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if not same:
        raise SystemExit("the cache changed an answer")


def _paired(retriever, calls: list[list[Request]], k: int) -> tuple[int, float, float, float, float, bool]:
    """Each call answered with the cache off, then on: medians of wall and CPU ms, and whether they agree."""
    wall: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    equal = True
    for i, call in enumerate(calls):
        answers = {}
        for cached in ((False, True) if i % 2 == 0 else (True, False)):  # neither side always goes first
            retriever.keep_item_vectors = cached  # the kept matrix stays while the switch is off
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            answers[cached] = retriever.retrieve(call, k)
            wall[cached].append(1e3 * (time.perf_counter() - wall_start))
            cpu[cached].append(1e3 * (time.process_time() - cpu_start))
        equal = equal and all(np.array_equal(a.item_ids, b.item_ids) and np.array_equal(a.scores, b.scores)
                              for a, b in zip(answers[False], answers[True]))
    retriever.keep_item_vectors = True
    return (len(calls), float(np.median(wall[False])), float(np.median(wall[True])), float(np.median(cpu[False])),
            float(np.median(cpu[True])), equal)


if __name__ == "__main__":
    main()
