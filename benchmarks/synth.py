"""How fast the generated world is built: the default world and the 1M-item scale world.

For each size: `generate_world` wall time (median of the repeats), then
`World.save` (Parquet + truth), events/second, and the cost ratio against the
default world measured in the same run (time per event, so 1.0 means it
scales linearly). The machine's load average and the CPU time are recorded
because the dev box is shared: wall time there includes waiting for a core.

    .venv/bin/python benchmarks/synth.py            # writes benchmarks/results/synth.md
    .venv/bin/python benchmarks/synth.py --quick    # default world only, one repeat
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from genrec.data.synth import WorldConfig, generate_world

RESULTS = Path(__file__).parent / "results" / "synth.md"
SIZES = [
    ("default", WorldConfig(), 3),
    ("1M items", WorldConfig(n_items=1_000_000), 1),
    ("1M items, 100k users, 3M events", WorldConfig(n_items=1_000_000, n_users=100_000, n_events=3_000_000), 1),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = SIZES[:1] if args.quick else SIZES
    rows, baseline = [], None
    load_before = os.getloadavg()
    for name, config, repeats in sizes:
        config = WorldConfig(**{**config.__dict__, "seed": args.seed})
        times, cpu, world = [], [], None
        for _ in range(1 if args.quick else repeats):
            started, started_cpu = time.perf_counter(), time.process_time()
            world = generate_world(config)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        folder = Path(tempfile.mkdtemp())
        started = time.perf_counter()
        world.save(folder / "data")
        save_s = time.perf_counter() - started
        shutil.rmtree(folder)
        events = len(world.dataset.events)
        per_event = statistics.median(times) / events
        baseline = baseline or per_event
        rows.append((name, config, events, statistics.median(times), statistics.median(cpu), save_s,
                     events / statistics.median(times), per_event / baseline))
        print(f"{name}: generate {statistics.median(times):.1f} s, save {save_s:.1f} s, {events:,} events", flush=True)
        del world
    load_after = os.getloadavg()
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    lines = [
        "# Generated world: build time",
        "",
        f"`{' '.join(['.venv/bin/python', 'benchmarks/synth.py', *sys.argv[1:]])}` — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"seed {args.seed}, {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (shared machine); peak RSS {peak_gb:.1f} GB.",
        "",
        "| world | items | users | events | generate s (median) | generate CPU s | save s | events/s | time per event vs default |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, config, events, gen_s, cpu_s, save_s, rate, ratio in rows:
        lines.append(f"| {name} | {config.n_items:,} | {config.n_users:,} | {events:,} | {gen_s:.1f} | {cpu_s:.1f} | {save_s:.1f} | "
                     f"{rate:,.0f} | {ratio:.2f} |")
    lines.append("")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
