"""How large a generated world the generative model trains on here: time and peak memory per phase.

For each world size (events; users scale with events, 60 events per user as in the
default world; items stay 10,000) one fresh process — so its peak RSS is that
world's alone — generates the world, splits it, gives every item a block SID
(3 levels, no text model), builds the training examples with `prepare_training`
(the default `GenerativeConfig`, the indexing task on, MiniLM query vectors off:
encoding every distinct query is a separate, cached cost) and takes a few
optimizer steps of `genrec.train.loop.train` at the default batch of 256.

Reported per world: seconds and CPU seconds of each phase, the RSS after it, the
example tables' bytes, and the process's peak RSS. Under torchrun every rank
builds the same tables, so a machine running N ranks needs about N times the
"after examples" RSS.

    .venv/bin/python benchmarks/train_scale.py --events 300000,1000000     # writes benchmarks/results/train_scale.md
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/decode.py: busy-waiting collapses on a shared CPU

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "train_scale.md"
EVENTS_PER_USER = 60  # the default world: 300,000 events, 5,000 users
N_ITEMS = 10_000


def _peak_mb() -> float:
    """The process's peak resident memory so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # KB on Linux


def _table_bytes(value) -> int:
    """Bytes of every tensor reachable from an example table (dataclasses, nested)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if hasattr(value, "__dict__"):
        return sum(_table_bytes(v) for v in vars(value).values())
    return 0


class _Phases:
    """Wall seconds, CPU seconds and the peak RSS up to the end of each phase."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, float]] = {}

    def run(self, name: str, work):
        wall, cpu = time.perf_counter(), time.process_time()
        result = work()
        self.rows[name] = {"s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "rss_mb": _peak_mb()}
        print(f"  {name}: {self.rows[name]['s']:.1f} s, peak RSS {self.rows[name]['rss_mb']:.0f} MB", file=sys.stderr, flush=True)
        return result


def measure_one(n_events: int, steps: int, batch_size: int) -> dict:
    """One world, in this process: the phases, the tables' bytes, the step time and the peak RSS."""
    from genrec.data.splits import interactions, leave_one_out
    from genrec.data.synth import WorldConfig, generate_world
    from genrec.sid.table import SidTable
    from genrec.train.generative import GenerativeTrainConfig, prepare_training
    from genrec.train.loop import TrainConfig, train
    from genrec.train.mixed import batch_targets, mixed_loss

    torch.set_num_threads(1)
    phases = _Phases()
    phases.rows["start"] = {"s": 0.0, "cpu_s": time.process_time(), "rss_mb": _peak_mb()}  # Python, torch, genrec imported
    world = phases.run("generate", lambda: generate_world(WorldConfig(n_items=N_ITEMS, n_users=max(10, n_events // EVENTS_PER_USER),
                                                                      n_events=n_events, seed=0)))
    dataset = world.dataset
    split = phases.run("split", lambda: leave_one_out(dataset.events))
    ids = dataset.items["item_id"].to_numpy()
    side = math.ceil(len(ids) ** (1 / 3))
    index = np.arange(len(ids))
    sids = SidTable(ids, np.stack([index // side**2, (index // side) % side, index % side], axis=1), [side] * 3)
    config = GenerativeTrainConfig(query_vectors=False)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = phases.run("examples", lambda: prepare_training(Path(tmp), config, dataset, split, sids, progress=False))
        table = prepared.examples
        train_config = TrainConfig(steps=steps, batch_size=batch_size, lr=2e-3, warmup_steps=1, eval_every=steps,
                                   checkpoint_every=steps, checkpoint_seconds=None, log_every=1, device="cpu", progress=False)
        result = phases.run("train", lambda: train(prepared.model, mixed_loss, range(len(table)), table.collate, train_config,
                                                   Path(tmp) / "out", batch_weight=batch_targets))
        step_rates = [float(line.split(",")[3]) for line in (Path(tmp) / "out" / "metrics.csv").read_text().splitlines()[2:]]
    step_s = batch_size / float(np.median(step_rates)) if step_rates else result.seconds / steps  # step 1 warms up
    return {"events": int(len(dataset.events)), "users": int(dataset.users["user_id"].nunique()) if dataset.users is not None else None,
            "items": int(len(ids)), "positives": int(len(interactions(split.train))),
            "examples": len(table), "requests": table.n_requests, "windows": len(table.windows),
            "table_mb": _table_bytes(table) / 1e6, "phases": phases.rows, "step_s": step_s,
            "parameters": prepared.model.num_parameters(), "peak_rss_mb": _peak_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="300000,1000000", help="comma-separated world sizes (events)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the child process: one world, JSON out
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure_one(args.one, args.steps, args.batch_size)))
        return

    command = "python benchmarks/train_scale.py " + " ".join(sys.argv[1:])
    load_before = os.getloadavg()[0]
    rows = []
    for n_events in [int(v) for v in args.events.split(",")]:
        print(f"world of {n_events:,} events", file=sys.stderr, flush=True)
        child = [sys.executable, __file__, "--one", str(n_events), "--steps", str(args.steps), "--batch-size", str(args.batch_size)]
        done = subprocess.run(child, stdout=subprocess.PIPE, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    load_after = os.getloadavg()[0]

    lines = [
        "# Generative training at scale: the largest generated world trained here",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs shared with other jobs (load average {load_before:.1f} before, "
        f"{load_after:.1f} after), torch {torch.__version__}, 1 thread, one process per world  ",
        f"Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}; default GenerativeConfig "
        f"({rows[0]['parameters']:,} parameters), batch {args.batch_size}, {args.steps} steps; block SIDs "
        f"(3 levels), MiniLM query vectors off",
        "",
        "| events | users | positives (train) | examples (requests + windows) | tables | generate | split | build examples "
        "| peak RSS: imports / world / before training | s / step | peak RSS |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        p = r["phases"]
        lines.append(
            f"| {r['events']:,} | {r['users']:,} | {r['positives']:,} | {r['examples']:,} ({r['requests']:,} + {r['windows']:,}) "
            f"| {r['table_mb']:.0f} MB | {p['generate']['s']:.0f} s ({p['generate']['cpu_s']:.0f} CPU) "
            f"| {p['split']['s']:.0f} s | {p['examples']['s']:.0f} s ({p['examples']['cpu_s']:.0f} CPU) "
            f"| {p['start']['rss_mb']:,.0f} / {p['generate']['rss_mb']:,.0f} / {p['examples']['rss_mb']:,.0f} MB "
            f"| {r['step_s']:.2f} | {r['peak_rss_mb']:,.0f} MB |")
    lines += ["", "Seconds are wall time on the shared machine (CPU seconds in brackets where they differ most); "
              "s / step is the median of the steps after the first.", ""]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
