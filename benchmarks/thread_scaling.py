"""How much a second torch thread speeds up one Beauty training step: the measurement behind
training c8 (8,500 steps) on two threads inside the 60-minute budget.

    .venv/bin/python benchmarks/thread_scaling.py --run runs/beauty-c5   # needs RUN/data and RUN/sid

The causal-history step of `benchmarks/amazon_beauty.py`'s configuration (128 windows), timed at
each thread count in turn, `--rounds` times, so both counts see the same machine load. Writes
`benchmarks/results/thread_scaling.md`: median seconds per step and the speed-up over one thread.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
from amazon_beauty import GENERATIVE

from genrec.data.dataset import Dataset
from genrec.data.splits import leave_one_out
from genrec.train.config_file import load_train_config
from genrec.train.generative import load_sid_table, prepare_training
from genrec.train.mixed import mixed_loss

RESULTS = Path(__file__).parent / "results" / "thread_scaling.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", default="runs/beauty")
    parser.add_argument("--threads", default="1,2", help="thread counts to compare, the first is the baseline")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the thread counts")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per thread count per round")
    args = parser.parse_args()
    counts = [int(t) for t in args.threads.split(",")]
    run = Path(args.run)
    dataset = Dataset.load(run / "data")
    prepared = prepare_training(run, load_train_config(GENERATIVE), dataset, leave_one_out(dataset.events), load_sid_table(run),
                                progress=False)
    model, windows = prepared.model.train(), prepared.examples
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)

    def step() -> float:
        began = time.perf_counter()
        loss = mixed_loss(model, windows.collate(rng.choice(len(windows), 128, replace=False).tolist()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return time.perf_counter() - began

    seconds: dict[int, list[float]] = {t: [] for t in counts}
    for _ in range(args.rounds):
        for threads in counts:
            torch.set_num_threads(threads)
            step()  # warm-up at this thread count
            seconds[threads] += [step() for _ in range(args.steps)]
    base = float(np.median(seconds[counts[0]]))
    lines = ["# Threads per Beauty training step (causal history, 128 windows)", "",
             f"Command: `.venv/bin/python benchmarks/thread_scaling.py --run {args.run} --threads {args.threads}`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}, CPU; "
             f"{args.rounds} rounds × {args.steps} timed steps per thread count, interleaved; seed 0  ", "",
             "| torch threads | median s / step | steps / s | × one thread |", "|---:|---:|---:|---:|"]
    for threads in counts:
        median = float(np.median(seconds[threads]))
        lines.append(f"| {threads} | {median:.3f} | {1 / median:.2f} | {base / median:.2f} |")
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
