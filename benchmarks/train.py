"""Generative retriever: training throughput, and serving latency beside BM25 and dense.

Table 1 — training: optimizer steps of the default `GenerativeModel` on the
run's real training examples (teacher-forced SID cross-entropy, AdamW), batch
256; examples/s = batch / median step time.

Table 2 — serving: end-to-end `retrieve(requests, k=10)` latency (request
objects in, item ids out: featurization, encoder, trie-constrained beam search)
of `GenerativeRetriever` and of the BM25 and dense baselines built by the
registry, at batch 1 and batch 64, on the same test requests (mixed search and
recommendation), retrievers interleaved so all see the same machine load.

    .venv/bin/python benchmarks/train.py --run runs/demo     # needs RUN/data, RUN/sid, RUN/train/generative
    .venv/bin/python benchmarks/train.py --run runs/demo --quick

Writes `benchmarks/results/train.md`.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/decode.py: busy-waiting collapses on a shared CPU

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from genrec.data.dataset import Dataset  # noqa: E402
from genrec.data.splits import build_requests, leave_one_out  # noqa: E402
from genrec.registry import build_retriever  # noqa: E402
from genrec.train.generative import GenerativeTrainConfig, load_sid_table, prepare_training  # noqa: E402
from genrec.train.mixed import (  # noqa: E402
    MixedBatch,
    batch_targets,
    mixed_loss,  # noqa: E402
)

RESULTS = Path(__file__).parent / "results" / "train.md"


def training_throughput(run: Path, dataset: Dataset, split, steps: int, batch_size: int, seed: int) -> dict:
    tick = time.perf_counter()
    prepared = prepare_training(run, GenerativeTrainConfig(), dataset, split, load_sid_table(run), progress=False)
    build_seconds = time.perf_counter() - tick
    table = prepared.examples
    torch.manual_seed(seed)
    model = prepared.model.train()
    loss_fn = mixed_loss
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    times, targets = [], []
    for step in range(steps + 2):
        batch = table.collate(rng.integers(0, len(table), batch_size).tolist())
        tick = time.perf_counter()
        loss = loss_fn(model, batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step >= 2:  # first steps warm up allocators
            times.append(time.perf_counter() - tick)
            # a window trains several targets: count them, so throughput compares across example kinds
            targets.append(batch_targets(batch) if isinstance(batch, MixedBatch) else batch_size)
    median = float(np.median(times))
    return {"examples": len(table), "build_s": build_seconds, "step_ms": median * 1e3,
            "examples_per_s": batch_size / median, "targets_per_s": float(np.median(targets)) / median,
            "parameters": model.num_parameters(), "epoch_s": len(table) / (batch_size / median)}


def serving_latency(retrievers: dict, requests: list, batch: int, repeats: int) -> dict[str, tuple[float, float]]:
    """name → (p50 ms, p99 ms) per `retrieve` call of `batch` requests, interleaved across retrievers."""
    times: dict[str, list[float]] = {name: [] for name in retrievers}
    for r in retrievers.values():  # warm-up
        r.retrieve(requests[:batch], 10)
    for i in range(repeats):
        chunk = [requests[(i * batch + j) % len(requests)] for j in range(batch)]
        for name, r in retrievers.items():
            tick = time.perf_counter()
            r.retrieve(chunk, 10)
            times[name].append((time.perf_counter() - tick) * 1e3)
    return {name: (float(np.percentile(t, 50)), float(np.percentile(t, 99))) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"))
    parser.add_argument("--retrievers", default="generative,bm25,dense")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats-1", type=int, default=200)
    parser.add_argument("--repeats-64", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats_1, args.repeats_64 = 5, 20, 3
    torch.set_num_threads(args.threads)
    command = "python benchmarks/train.py " + " ".join(sys.argv[1:])

    dataset = Dataset.load(args.run / "data")
    split = leave_one_out(dataset.events)
    train = training_throughput(args.run, dataset, split, args.steps, args.batch_size, args.seed)
    print(f"training: {train['examples_per_s']:.0f} examples/s ({train['step_ms']:.0f} ms/step)")

    requests, _ = build_requests(split, "test")
    order = np.random.default_rng(args.seed).permutation(len(requests))
    requests = [requests[i] for i in order[:2000]]
    retrievers = {}
    for name in [n.strip() for n in args.retrievers.split(",") if n.strip()]:
        try:
            retrievers[name] = build_retriever(name, args.run, dataset, split)
        except Exception as error:  # a baseline that is missing is reported, not fatal
            print(f"skipping {name}: {error}", file=sys.stderr)
    one = serving_latency(retrievers, requests, 1, args.repeats_1)
    many = serving_latency(retrievers, requests, 64, args.repeats_64)
    base = "bm25" if "bm25" in one else next(iter(one))

    lines = [
        "# Generative retriever: training throughput and serving latency",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs (shared with other jobs), torch {torch.__version__}, "
        f"{args.threads} threads  ",
        f"Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}; seed {args.seed}; run `{args.run}` "
        f"({len(dataset.items)} items, {len(dataset.events)} events)",
        "",
        "## Training (default GenerativeConfig, batch %d)" % args.batch_size,
        "",
        "Examples are search requests (one target each) and recommendation windows (one target per position: "
        "every prefix of a user's history in one causal encoder pass); targets/s counts both.",
        "",
        "| parameters | examples / epoch | building examples | median step | examples/s | targets/s | one epoch |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {train['parameters']:,} | {train['examples']:,} | {train['build_s']:.1f} s | {train['step_ms']:.0f} ms "
        f"| {train['examples_per_s']:.0f} | {train['targets_per_s']:.0f} | {train['epoch_s']:.0f} s |",
        "",
        f"## Serving: `retrieve(requests, k=10)` latency, end to end (ratios against {base})",
        "",
        "| retriever | batch 1 p50 | batch 1 p99 | batch 64 p50 | batch 64 p99 | per request at 64 | p50 ratio (1 / 64) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in one:
        lines.append(
            f"| {name} | {one[name][0]:.1f} ms | {one[name][1]:.1f} ms | {many[name][0]:.1f} ms | {many[name][1]:.1f} ms "
            f"| {many[name][0] / 64:.2f} ms | {one[name][0] / one[base][0]:.2f}× / {many[name][0] / many[base][0]:.2f}× |")
    lines += ["", f"Batch 1: {args.repeats_1} calls; batch 64: {args.repeats_64} calls; medians and 99th percentiles "
              "of wall time per call. Test requests of the leave-one-out split, seeded sample, search and "
              "recommendation mixed as they come.", ""]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
