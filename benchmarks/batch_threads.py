"""One torch thread or all of them, by batch size: the measurement behind `genrec serve --parallel-from`.

    .venv/bin/python benchmarks/batch_threads.py --run runs/demo

The served generative retriever (built as `genrec serve` builds it, `load_served_model`) answers
batches of the run's logged searches (drawn as `serve_load.py` draws them) on one worker thread, as the server's micro-batcher calls it,
once with one torch thread and once with every thread of the process, the two interleaved
`--rounds` times so both see the same machine load. A few requests' matrix products are too small
to split across cores with profit; the batch size where the second thread starts to pay is the
server's threshold. Writes `benchmarks/results/batch_threads.md`: median milliseconds per call and
the speed-up of all threads over one.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from serve_load import workload

from genrec.malloc import keep_freed_memory
from genrec.serve.model import load_served_model

RESULTS = Path(__file__).parent / "results" / "batch_threads.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/demo"))
    parser.add_argument("--retriever", default="generative")
    parser.add_argument("--batches", default="1,8,16,24,32,64", help="batch sizes to time")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved passes over the two thread counts")
    parser.add_argument("--calls", type=int, default=5, help="timed calls per batch size, thread count and round")
    parser.add_argument("--seed", type=int, default=0, help="seed of the searches drawn from the run's log")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    keep_freed_memory()  # as `genrec serve` does
    model = load_served_model(args.run, [args.retriever])
    retriever = model.retrievers[args.retriever]
    sizes = [int(b) for b in args.batches.split(",")]
    queries, users = workload(args.run, args.seed, max(sizes))  # the searches serve_load.py sends
    requests = [model.request(int(user), query) for query, user in zip(queries, users)]
    worker = ThreadPoolExecutor(max_workers=1)  # the server's retrieve thread

    def timed(batch, count: int) -> list[float]:
        torch.set_num_threads(count)
        retriever.retrieve(batch, 10)  # untimed: caches and the pool at this count
        seconds = []
        for _ in range(args.calls):
            start = time.perf_counter()
            retriever.retrieve(batch, 10)
            seconds.append(time.perf_counter() - start)
        return seconds

    rows = []
    began = time.perf_counter()
    for size in sizes:
        times: dict[int, list[float]] = {1: [], threads: []}
        for round_ in range(args.rounds):
            for count in (1, threads) if round_ % 2 == 0 else (threads, 1):
                times[count] += worker.submit(timed, requests[:size], count).result()
        one, every = float(np.median(times[1])) * 1000, float(np.median(times[threads])) * 1000
        rows.append((size, one, every))
        print(f"batch {size:>3}: 1 thread {one:7.1f} ms, {threads} threads {every:7.1f} ms, "
              f"speed-up {one / every:.2f}×", flush=True)

    lines = [
        "# One torch thread or all of them, by batch size (`genrec serve --parallel-from`)",
        "",
        f"Command: `.venv/bin/python benchmarks/batch_threads.py --run {args.run} --batches {args.batches} "
        f"--rounds {args.rounds} --calls {args.calls} --seed {args.seed}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {platform.machine()} "
        f"({threads} cores), torch {torch.__version__}; load average at the end "
        f"{os.getloadavg()[0]:.1f}; {time.perf_counter() - began:.0f} s",
        "",
        f"The served `{args.retriever}` retriever of `{args.run}` (as `genrec serve` loads it), called on one "
        "worker thread with batches of searches drawn from the run's log as `serve_load.py` draws them "
        f"(seed {args.seed}); 1 thread and all threads interleaved "
        f"{args.rounds} times, {args.calls} timed calls each after an untimed one; medians.",
        "",
        f"| batch | 1 thread (ms) | {threads} threads (ms) | speed-up of {threads} threads |",
        "|---:|---:|---:|---:|",
    ]
    lines += [f"| {size} | {one:.1f} | {every:.1f} | {one / every:.2f}× |" for size, one, every in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
