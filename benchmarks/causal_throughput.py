"""Training throughput of the causal-history path against the per-request path, same model, same data.

    .venv/bin/python benchmarks/causal_throughput.py --run runs/beauty     # needs RUN/data and RUN/sid

Both paths train the Beauty configuration of `benchmarks/amazon_beauty.py` (the
same network; the per-request model only differs in reading its history
right-aligned and bidirectionally). One step each, alternating, so both see the
same machine load: the per-request path on `--batch` requests (one target each),
the causal path on `--windows` windows (every prefix of each a target). Reports
the median step time and *targets per second* (training prefixes whose loss the
step computes) and their ratio. Writes `benchmarks/results/causal_throughput.md`.
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from amazon_beauty import GENERATIVE
from genrec.data.dataset import Dataset
from genrec.data.splits import leave_one_out
from genrec.train.generative import _loss, _sequence_loss, load_sid_table, prepare_training

RESULTS = Path(__file__).parent / "results" / "causal_throughput.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", default="runs/beauty")
    parser.add_argument("--batch", type=int, default=256, help="requests per per-request step")
    parser.add_argument("--windows", type=int, default=128, help="windows per causal step")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per path (after 3 warm-up steps)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    dataset = Dataset.load(run / "data")
    split = leave_one_out(dataset.events)
    sids = load_sid_table(run)
    causal_config = GENERATIVE
    request_config = replace(GENERATIVE, model=replace(GENERATIVE.model, causal_history=False))
    paths = {}
    for name, config, batch, loss in (("per-request", request_config, args.batch, _loss),
                                      ("causal history", causal_config, args.windows, _sequence_loss)):
        prepared = prepare_training(run, config, dataset, split, sids, progress=False)
        model = prepared.model.train()
        paths[name] = (model, prepared.examples, batch, loss, torch.optim.AdamW(model.parameters(), lr=1e-3), [], [])
    rng = np.random.default_rng(0)
    for step in range(args.steps + 3):
        for name, (model, examples, batch, loss_fn, optimizer, seconds, targets) in paths.items():
            picked = rng.choice(len(examples), min(batch, len(examples)), replace=False).tolist()
            began = time.perf_counter()
            data = examples.collate(picked)
            loss = loss_fn(model, data)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step >= 3:
                seconds.append(time.perf_counter() - began)
                targets.append(int((data.target & (data.items > 0)).sum()) if hasattr(data, "target") else len(picked))
    rows = {}
    for name, (model, examples, batch, _, _, seconds, targets) in paths.items():
        median = float(np.median(seconds))
        rows[name] = (batch, float(np.mean(targets)), median, float(np.mean(targets)) / median, model.num_parameters())
    base = rows["per-request"][3]
    lines = ["# Causal-history training throughput (Amazon Beauty configuration)", "",
             f"Command: `.venv/bin/python benchmarks/causal_throughput.py --run {args.run} --threads {args.threads}`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}, {args.threads} torch "
             f"threads, CPU; {args.steps} timed steps per path, alternating; seed 0  ", "",
             "| path | batch | targets / step | median step s | targets / s | × per-request | parameters |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, (batch, targets, median, rate, parameters) in rows.items():
        lines.append(f"| {name} | {batch} | {targets:.0f} | {median:.3f} | {rate:.0f} | {rate / base:.2f} | {parameters:,} |")
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
