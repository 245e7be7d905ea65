"""The main job: the whole path on the embedded default world, in one command.

generate → validate → embed → Semantic IDs → train the generative model → align
it → evaluate it beside every baseline, the cascade and the oracle ceiling →
table, plots and `report.md` in the run folder. `genrec demo` is `genrec run`
(`genrec.pipeline`) with the default `PipelineConfig`: the demo's retrievers and
SIDs (`genrec.pipeline.config.DEMO_RETRIEVERS`, `DEMO_SIDS`) and each stage's own
config defaults; `configs/demo.yaml` spells the same config out as a file to copy
and edit. This module imports nothing heavy at the top, so `genrec demo --help` is quick.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def run_demo(run: str | Path = "runs/demo", retrievers: tuple[str, ...] | None = None, fresh: bool = False,
             max_requests: int | None = None, images: Path | None = None):
    """Run every stage on the default world in `run`; return the stage times (`genrec.pipeline.run_pipeline`).
    `retrievers`: None evaluates the demo's (`DEMO_RETRIEVERS`)."""
    from dataclasses import replace

    from genrec.pipeline import PipelineConfig, run_pipeline

    config = PipelineConfig()
    chosen = config.eval.retrievers if retrievers is None else tuple(retrievers)
    config = replace(config, eval=replace(config.eval, retrievers=chosen, max_requests=max_requests))
    return run_pipeline(run, config, fresh=fresh, images=images, command="make demo")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="the whole path on the embedded default world (≤ 15 min on 2 cores)")
    parser.add_argument("--run", default="runs/demo", dest="run_dir", help="run folder (reused stage by stage)")
    parser.add_argument("--retrievers", default=None,
                        help="comma-separated names to evaluate (default: every baseline, the cascade, the generative "
                             "model before and after alignment, the oracle)")
    parser.add_argument("--fresh", action="store_true", help="delete the run folder first")
    parser.add_argument("--max-requests", type=int, default=None, help="evaluate a seeded subset of test requests")
    parser.add_argument("--images", type=Path, default=None,
                        help="also copy the plots there as demo_recall_at_k.png / demo_slices.png (make readme-images)")
    parser.set_defaults(run=_demo)


def _demo(args: argparse.Namespace) -> int:
    retrievers = None if args.retrievers is None else tuple(n.strip() for n in args.retrievers.split(",") if n.strip())
    run_demo(args.run_dir, retrievers, args.fresh, args.max_requests, args.images)
    return 0
