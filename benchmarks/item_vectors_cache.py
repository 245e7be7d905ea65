"""What a served request costs with the item head's catalogue vectors kept between calls, and without.

The item head scores every catalogue item from `table + text_projection(item text)`. That
`[items, text_dim] x [text_dim, d]` product is the same for every request, so a served retriever (one
with a `precision`, whose weights are fixed) keeps it from its first call
(`GenerativeRetriever.keep_item_vectors`). This benchmark answers the same test requests one at a
time (batch 1, as a lightly loaded server does) and in batches of 64 with the server's retriever
(`genrec.serve.model.fastest_exact` of the aligned model) against (1) the same retriever recomputing
the vectors per call and (2) the aligned model as the server ran it before `fastest_exact` took
subclasses (its own decoding, vectors per call), alternating call by call so machine load slows both
alike, and checks that both answer the same items.

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
    built = build_retriever(args.retriever, args.run, dataset, split)  # as evaluation builds it
    served = fastest_exact(built)
    head = getattr(getattr(served, "model", None), "item_head", None)
    if head is None or head.text_projection is None or not getattr(served, "keep_item_vectors", False):
        raise SystemExit(f"{args.retriever} in {args.run} is not served with a kept text-reading item head: "
                         "nothing to compare")
    recomputing = fastest_exact(built)
    recomputing.keep_item_vectors = False
    requests, _ = build_requests(split, "test")
    pick = np.random.default_rng(0).choice(len(requests), min(len(requests), max(args.requests, 64 * args.batches)),
                                           replace=False)
    chosen = [requests[int(i)] for i in pick]
    # Every query's MiniLM vector is computed here, outside the clock: otherwise the first of two
    # calls of a new query would pay for encoding it and the second would find it cached.
    for retriever in (built, served, recomputing):
        retriever.retrieve(chosen, args.k)

    product_ms = []  # what keeping the vectors saves per call: the catalogue-wide map itself
    with torch.no_grad():
        for _ in range(20):
            start = time.perf_counter()
            head.item_vectors()
            product_ms.append(1e3 * (time.perf_counter() - start))

    singles = chosen[:args.requests]
    batches = [chosen[i:i + 64] for i in range(0, 64 * args.batches, 64) if len(chosen[i:i + 64]) == 64]
    calls = [(f"{label}, one at a time", [[r] for r in singles if r.is_search == kind])
             for label, kind in (("searches", True), ("recommendations", False))] + [("mixed batches of 64", batches)]
    comparisons = [("vectors recomputed per call → kept (both the served fast decoder)", recomputing),
                   ("as served before: the model's own decoding, vectors per call → served now", built)]
    rows = [(comparison, label, *_paired(before, served, group, args.k))
            for comparison, before in comparisons for label, group in calls]

    lines = [
        "# The item head's catalogue vectors kept between requests", "",
        f"Command: `.venv/bin/python benchmarks/item_vectors_cache.py --run {args.run} --retriever {args.retriever} "
        f"--requests {args.requests} --batches {args.batches} --threads {args.threads}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), {args.threads} torch thread(s), CPU only  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; served = `fastest_exact` of `{args.retriever}` "
        f"(fp32 `FastDecoder`, item vectors kept), k = {args.k}; item slots {head.table.shape[0]:,}, text dim "
        f"{head.text.shape[1]}, d {head.table.shape[1]}; the two sides alternate call by call, each first on every "
        "other call; every query's vector encoded before the clock starts", "",
        "| comparison | calls | n | p50 ms, before | p50 ms, after | p50 ratio | CPU ms, before (median) | "
        "CPU ms, after (median) | same items and scores |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for comparison, name, n, wall_before, wall_after, cpu_before, cpu_after, equal in rows:
        lines.append(f"| {comparison} | {name} | {n} | {wall_before:.1f} | {wall_after:.1f} | "
                     f"{wall_before / wall_after:.2f}× | {cpu_before:.1f} | {cpu_after:.1f} | "
                     f"{'yes' if equal else 'NO'} |")
    lines += ["", f"`ItemHead.item_vectors()` alone (the map kept vectors skip): {np.median(product_ms):.1f} ms, "
              "median of 20 calls.",
              "", "p50 = median wall-clock milliseconds per call; CPU = the process's CPU time per call. \"Same\" "
              "compares items exactly and scores to 1e-4 (the fast decoder sums in another order)."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if not all(row[-1] for row in rows):
        raise SystemExit("an answer changed")


def _paired(before, after, calls: list[list[Request]], k: int) -> tuple[int, float, float, float, float, bool]:
    """Each call answered by both retrievers, alternating which goes first: medians of wall and CPU ms, and
    whether they agree."""
    wall: dict[int, list[float]] = {0: [], 1: []}
    cpu: dict[int, list[float]] = {0: [], 1: []}
    equal = True
    for i, call in enumerate(calls):
        answers = {}
        for side in ((0, 1) if i % 2 == 0 else (1, 0)):  # neither side always goes first
            retriever = (before, after)[side]
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            answers[side] = retriever.retrieve(call, k)
            wall[side].append(1e3 * (time.perf_counter() - wall_start))
            cpu[side].append(1e3 * (time.process_time() - cpu_start))
        equal = equal and all(np.array_equal(a.item_ids, b.item_ids) and np.allclose(a.scores, b.scores, atol=1e-4)
                              for a, b in zip(answers[0], answers[1]))
    return (len(calls), float(np.median(wall[0])), float(np.median(wall[1])), float(np.median(cpu[0])),
            float(np.median(cpu[1])), equal)


if __name__ == "__main__":
    main()
