"""`genrec run --config FILE --run RUN`: every stage from one config file (the demo's is `configs/demo.yaml`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="the whole pipeline (data → SIDs → train → align → eval) from one config file",
        description="Run every stage into RUN, each reused while its output is up to date. The config file "
                    "(TOML, YAML or JSON) has a section per stage — data, sid, train, cascade, align, eval — and names "
                    "only what differs from the demo's defaults; configs/demo.yaml spells them all out.")
    parser.add_argument("--config", type=Path, default=None, help="config file (.toml, .yaml, .yml or .json)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting by its dotted path, e.g. --set train.train.steps=300 "
                             "--set eval.retrievers=bm25,generative (repeatable)")
    parser.add_argument("--run", required=True, dest="run_dir", type=Path, help="run folder (reused stage by stage)")
    parser.add_argument("--fresh", action="store_true", help="delete the run folder first")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from genrec.config_file import load_config
    from genrec.pipeline import PipelineConfig, run_pipeline

    try:
        config = load_config(PipelineConfig, args.config, args.set)
    except ValueError as error:
        print(f"genrec run: {error}", file=sys.stderr)
        return 2
    command = " ".join(["genrec run", *(["--config", str(args.config)] if args.config else []),
                        *(f"--set {s}" for s in args.set), "--run", str(args.run_dir)])
    try:
        run_pipeline(args.run_dir, config, fresh=args.fresh, command=command)
    except (ValueError, FileNotFoundError) as error:  # a stage refusing its input (missing files, a model that does not fit)
        print(f"genrec run: {error}", file=sys.stderr)
        return 1
    return 0
