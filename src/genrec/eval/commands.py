"""`genrec eval`: evaluate named retrievers on a run's split and write RUN/eval.

`run_evaluation` is the Python function behind it (the demo calls it):

    report = run_evaluation("runs/dev", ["popularity", "bm25", "itemcf"], part="test")
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from genrec.artifacts import MissingStageError, folder_sha256, manifest, write_json_atomic
from genrec.data.dataset import Dataset
from genrec.data.splits import build_requests, leave_one_out
from genrec.eval.harness import EvalConfig, EvalReport, evaluate

log = logging.getLogger(__name__)


def run_evaluation(
    run: str | os.PathLike,
    retriever_names: Sequence[str],
    part: str = "test",
    config: EvalConfig | None = None,
    max_requests: int | None = None,
    write: bool = True,
    progress: bool = True,
    command: str = "",
    threads: int | None = None,
) -> EvalReport:
    """Build each named retriever (`genrec.registry`) for RUN, evaluate on the leave-one-out `part`.

    `max_requests` evaluates a seeded random subset (for quick looks); the full
    part is the default. With `write`, RUN/eval gets report.md, report.json,
    recall_at_k.png, slices.png, config.json and manifest.json. `threads` sets
    torch's and faiss's thread pools for the whole process (None leaves them):
    on a busy machine one thread serves a single request many times faster
    than two threads spinning against other work.
    """
    from genrec.registry import build_retriever

    config = config or EvalConfig()
    if threads is not None:
        set_threads(threads)
    run = Path(run)
    names = [n.strip() for n in retriever_names if n.strip()]
    if not names:
        raise ValueError("retriever_names is empty; expected names from genrec.registry, e.g. ['popularity', 'bm25']")
    if part not in ("valid", "test"):
        raise ValueError(f"part must be 'valid' or 'test', got {part!r}")
    dataset = Dataset.load(run / "data")
    split = leave_one_out(dataset.events)
    requests, targets = build_requests(split, part)
    if max_requests is not None and max_requests < len(requests):
        chosen = np.sort(np.random.default_rng(config.seed).choice(len(requests), size=max_requests, replace=False))
        requests, targets = [requests[i] for i in chosen], targets[chosen]
    retrievers = []
    for name in names:
        tick = time.perf_counter()
        retrievers.append(build_retriever(name, run, dataset, split))
        log.log(logging.INFO if progress else logging.DEBUG, "built %s in %.1fs", name, time.perf_counter() - tick)
    report = evaluate(retrievers, requests, targets, dataset=dataset, split=split, config=config, progress=progress)
    report.meta.update({"run": str(run), "split": split.name, "part": part, "retriever_names": names,
                        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "max_requests": max_requests,
                        "threads": threads if threads is not None else "default",
                        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end"})
    if write:
        from genrec.eval.report import write_report

        out = run / "eval"
        write_report(report, out, command=command)
        write_json_atomic(out / "config.json", {"eval": config, "part": part, "retrievers": names, "max_requests": max_requests})
        write_json_atomic(out / "manifest.json", manifest(config, inputs={"data": folder_sha256(run / "data")},
                                                           part=part, retrievers=names, n_requests=len(targets)))
    return report


def set_threads(threads: int) -> None:
    """Size the torch and faiss (OpenMP) thread pools of this process."""
    if threads < 1:
        raise ValueError(f"threads must be ≥ 1, got {threads}")
    import faiss
    import torch

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate retrievers on a run's split; writes RUN/eval")
    parser.add_argument("--run", required=True, dest="run_dir", help="run folder with data/ (and whatever the retrievers load)")
    parser.add_argument("--retrievers", required=True, help="comma-separated names from genrec.registry")
    parser.add_argument("--part", default="test", choices=("test", "valid"))
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for intervals")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-requests", type=int, default=None, help="evaluate a seeded random subset")
    parser.add_argument("--exclude-seen", action="store_true", help="remove history items from every answer")
    parser.add_argument("--threads", type=int, default=None, help="torch/faiss threads (default: leave as is)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RUN/eval untouched")
    parser.add_argument("--trec-run", type=Path, default=None, metavar="FILE",
                        help="also write the rankings as a TREC run file (one tag per retriever) and the targets "
                             "as FILE with suffix .qrels, for trec_eval or ranx")
    parser.set_defaults(run=_eval)


def _eval(args: argparse.Namespace) -> int:
    from genrec.eval.report import print_report

    config = replace(EvalConfig(), k=args.k, batch_size=args.batch_size, bootstrap=args.bootstrap,
                     seed=args.seed, exclude_seen=args.exclude_seen)
    if args.trec_run is not None and args.trec_run.suffix == ".qrels":
        print(f"genrec eval: --trec-run {args.trec_run} ends in .qrels, the name the qrels file gets; use e.g. run.trec",
              file=sys.stderr)
        return 2
    command = "genrec " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv and sys.argv[0].endswith("genrec") else ""
    try:
        report = run_evaluation(args.run_dir, args.retrievers.split(","), part=args.part, config=config,
                                max_requests=args.max_requests, write=not args.no_write, command=command,
                                threads=args.threads)
    except (ValueError, MissingStageError) as error:
        print(f"genrec eval: {error}", file=sys.stderr)
        return 2
    print_report(report)
    if args.trec_run is not None:
        from genrec.eval.trec import write_trec_run

        run_file, qrels_file = write_trec_run(report, args.trec_run)
        print(f"wrote {run_file} and {qrels_file}")
    if not args.no_write:
        print(f"wrote {Path(args.run_dir) / 'eval' / 'report.md'}")
    return 0
