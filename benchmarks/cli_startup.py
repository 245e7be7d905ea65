"""How long `genrec --help` and `genrec COMMAND --help` take: what a user waits for before any work starts.

    .venv/bin/python benchmarks/cli_startup.py                        # about a minute on one core
    .venv/bin/python benchmarks/cli_startup.py run sid                # only these commands (nothing written)
    .venv/bin/python benchmarks/cli_startup.py --src OTHER/src run    # another checkout's genrec, to compare

Each command is a fresh `python -m genrec.cli … --help` process (the interpreter's own start included),
timed `REPEATS` times; the table gives the median and which heavy modules the process imported.
Writes `benchmarks/results/cli_startup.md` (all commands only).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "cli_startup.md"
REPEATS = 5
HEAVY = ("torch", "pandas", "scipy", "sklearn", "fastapi", "sentence_transformers")
PROBE = ("import runpy, sys\nsys.argv = ['genrec', *sys.argv[1:]]\n"
         "try:\n    runpy.run_module('genrec.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
         f"sys.stderr.write(' '.join(m for m in {HEAVY!r} if m in sys.modules))")


def commands() -> list[str]:
    sys.path.insert(0, str(REPO / "src"))
    from genrec.cli import COMMAND_SUMMARIES

    return sorted(name for name, _ in COMMAND_SUMMARIES.values())


def median_seconds(command: str | None, src: Path) -> tuple[float, str]:
    """Median wall time of `genrec [command] --help` over `REPEATS` fresh processes, and its heavy imports."""
    argv = [sys.executable, "-c", PROBE, *([command] if command else []), "--help"]
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    times, imported = [], ""
    for _ in range(REPEATS):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
        times.append(time.perf_counter() - start)
        imported = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    return statistics.median(times), imported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commands", nargs="*", help="only these commands (default: every one, and write the table)")
    parser.add_argument("--src", type=Path, default=REPO / "src", help="the genrec source folder to time")
    args = parser.parse_args()
    chosen = args.commands
    rows = []
    for command in [None, *(chosen or commands())]:
        seconds, imported = median_seconds(command, args.src)
        name = f"genrec {command} --help" if command else "genrec --help"
        rows.append(f"| `{name}` | {seconds:.2f} | {imported or '—'} |")
        print(rows[-1], flush=True)
    if chosen or args.src != REPO / "src":
        return
    load = os.getloadavg()[0]
    RESULTS.write_text("\n".join([
        "# CLI start-up: `--help` per command",
        "",
        f"Command: `python benchmarks/cli_startup.py`; {platform.platform()}, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}, load average {load:.1f}. Median of {REPEATS} fresh processes each.",
        "",
        "| command | median seconds | heavy modules imported |",
        "|---|---:|---|",
        *rows,
        "",
        "A command's module is imported only when that command runs (`genrec.cli`), and a command module",
        "imports its stage (torch, the model) inside the function that runs it, so `--help` never waits for torch.",
        "`genrec serve --help` imports fastapi: its options are uvicorn's and the app's.",
        "",
    ]))


if __name__ == "__main__":
    main()
