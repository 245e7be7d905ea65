"""`genrec cascade train|eval --run RUN`: train the cascade into RUN/cascade/model, measure it into RUN/cascade/report.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    cascade = subparsers.add_parser("cascade", help="the multi-stage cascade: recall → rank → fuse → calibrate → post-rank")
    commands = cascade.add_subparsers(dest="cascade_command", required=True)

    train = commands.add_parser("train", help="train every learned stage on RUN/data (writes RUN/cascade/model)")
    train.add_argument("--run", dest="run_folder", required=True, type=Path, help="run folder holding data/")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--fusion", choices=("fixed", "grade", "harmonrank"), default="grade",
                       help="the fusion the retriever uses (all three are trained and reported)")
    train.add_argument("--max-train-visits", type=int, default=None, help="visits the ranker learns from (default: the config's)")
    train.add_argument("--device", default="cpu",
                       help="where the ranker, PR² recall and MiniLM run: cpu (default), auto (cuda if available), "
                            "cuda, cuda:1, …")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("eval", help="measure ranker, calibration, fusion and end-to-end (writes RUN/cascade/report.md)")
    evaluate.add_argument("--run", dest="run_folder", required=True, type=Path, help="run folder holding data/ and cascade/")
    evaluate.add_argument("--max-requests", type=int, default=None, help="evaluate on a seeded subset of the test requests")
    evaluate.add_argument("--copy-png", type=Path, default=None, help="also copy the reliability diagram here (docs/reliability.png)")
    evaluate.set_defaults(run=_eval)


def _train(args: argparse.Namespace) -> int:
    from genrec.cascade.retriever import CascadeConfig, train_cascade

    if not (args.run_folder / "data").is_dir():
        print(f"{args.run_folder}/data does not exist; create it first (genrec data synth)", file=sys.stderr)
        return 1
    try:
        config = CascadeConfig(seed=args.seed, fusion=args.fusion, device=args.device)
    except ValueError as error:
        print(f"genrec cascade train: {error}", file=sys.stderr)
        return 2
    if args.max_train_visits is not None:
        config.max_train_visits = args.max_train_visits
    train_cascade(args.run_folder, config)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from genrec.cascade.report import evaluate_cascade

    if not (args.run_folder / "cascade" / "model" / "manifest.json").exists():
        print(f"no trained cascade in {args.run_folder}/cascade/model; run `genrec cascade train --run {args.run_folder}`",
              file=sys.stderr)
        return 1
    evaluate_cascade(args.run_folder, max_requests=args.max_requests, copy_png_to=args.copy_png)
    print((args.run_folder / "cascade" / "report.md").read_text())
    return 0
