"""`genrec train --run RUN --model NAME`: train one model on a run folder's data.

`TRAINERS` maps a model name to `"module:function"` (imported only when that
model is trained). Each function has the signature

    fn(run: Path, *, steps: int | None, resume: bool, force: bool, device: str,
       checkpoint_every: int | None, checkpoint_seconds: float | None) -> dict[str, Any]

reads `RUN/data`, trains into `RUN/train/<name>` (skipping the work when a
matching model is already there, unless `force`) and returns a summary to print.
`None` means the model's own default (`TrainConfig`).

Under torchrun the separator `--` keeps torchrun from reading genrec's options
(`--run` is otherwise an ambiguous abbreviation of torchrun's `--run-path`):

    torchrun --standalone --nproc_per_node=2 -m genrec.cli -- train --run RUN --model generative

Every rank trains its share of each batch; rank 0 writes and prints (docs/scale.md).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

TRAINERS: dict[str, str] = {
    "sasrec": "genrec.train.commands:train_sasrec",
    "hstu": "genrec.train.commands:train_hstu",
    "dimerec": "genrec.train.commands:train_dimerec",
    "generative": "genrec.train.generative:train_generative_command",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a model on a run folder (writes RUN/train/<model>)")
    parser.add_argument("--run", dest="run_folder", required=True, type=Path, help="run folder holding data/")
    parser.add_argument("--model", required=True, choices=sorted(TRAINERS), help="which model to train")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the model's config)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from last.pt")
    parser.add_argument("--force", action="store_true", help="train even if a matching model is saved")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--config", type=Path, default=None,
                        help="generative only: a TOML, YAML or JSON training config (fields that differ from the "
                             "defaults, e.g. configs/amazon_beauty.toml, or a trained model's config.json)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="generative only: override one config field, dotted (repeatable), "
                             "e.g. --set model.tasks=recommendation --set index_copies=0")
    parser.add_argument("--checkpoint-every", type=int, default=None, metavar="STEPS",
                        help="write last.pt every STEPS optimizer steps (default: the model's config)")
    parser.add_argument("--checkpoint-seconds", type=float, default=None, metavar="SECONDS",
                        help="also write last.pt before SECONDS of training pass without one, so a crash loses "
                             "at most that much work (default: 60)")
    parser.set_defaults(run=_train)


def train_model(name: str, run: Path, **options: Any) -> dict[str, Any]:
    """Train the model called `name` (a key of `TRAINERS`) on `run`."""
    if name not in TRAINERS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(TRAINERS)}")
    module_name, function_name = TRAINERS[name].split(":")
    return getattr(importlib.import_module(module_name), function_name)(Path(run), **options)


def train_sasrec(run: Path, **options: Any) -> dict[str, Any]:
    """Train SASRec on the leave-one-out split of `RUN/data` into `RUN/train/sasrec`."""
    from genrec.baselines.sasrec import SASRecRetriever

    return _train_sequence_model(SASRecRetriever, run, **options)


def train_hstu(run: Path, **options: Any) -> dict[str, Any]:
    """Train HSTU on the leave-one-out split of `RUN/data` into `RUN/train/hstu`."""
    from genrec.baselines.hstu import HSTURetriever

    return _train_sequence_model(HSTURetriever, run, **options)


def train_dimerec(run: Path, **options: Any) -> dict[str, Any]:
    """Train DimeRec on the leave-one-out split of `RUN/data` into `RUN/train/dimerec`."""
    from genrec.baselines.dimerec import DimeRecRetriever

    return _train_sequence_model(DimeRecRetriever, run, **options)


def _train_sequence_model(retriever: Any, run: Path, *, steps: int | None = None, resume: bool = False,
                          force: bool = False, device: str = "auto", checkpoint_every: int | None = None,
                          checkpoint_seconds: float | None = None) -> dict[str, Any]:
    """Train `retriever` (`SASRecRetriever` or a variant of it) with its default config."""
    from genrec.baselines.sasrec import artefact_dir
    from genrec.data.dataset import Dataset
    from genrec.data.splits import leave_one_out
    from genrec.train.loop import LAST_CHECKPOINT, CheckpointError, train_options

    dataset = Dataset.load(run / "data")
    split = leave_one_out(dataset.events)
    config = retriever.config_type()
    config.train = train_options(config.train, steps=steps, device=device, checkpoint_every=checkpoint_every,
                                 checkpoint_seconds=checkpoint_seconds)
    folder = artefact_dir(run, split, retriever.name)
    if resume and not (folder / LAST_CHECKPOINT).exists() and not (folder / "manifest.json").exists():
        # SASRec's own resume falls back to a fresh start; --resume promised to continue.
        raise CheckpointError(folder / LAST_CHECKPOINT, "nothing to resume: no checkpoint was written (the run "
                              "stopped before its first one, or never started here)",
                              "train without --resume to start from step 0")
    retriever.train(run, dataset, split, config, resume=resume, force=force)
    saved = json.loads((folder / "manifest.json").read_text())["result"]
    return {"model": retriever.name, "folder": str(folder), **{k: v for k, v in saved.items() if k != "history"}}


def _train(args: argparse.Namespace) -> int:
    from genrec.train.distributed import is_main  # torch: imported when a model trains, not for --help

    if not (args.run_folder / "data").is_dir():
        print(f"run folder {args.run_folder} has no data/ folder; expected RUN/data with the dataset", file=sys.stderr)
        return 1
    if (args.config or args.overrides) and args.model != "generative":
        print("--config and --set apply to --model generative only", file=sys.stderr)
        return 1
    began = time.perf_counter()
    try:
        extra = {}
        if args.model == "generative":
            from genrec.train.config_file import load_train_config

            extra["config"] = load_train_config(args.config, args.overrides)
        summary = train_model(args.model, args.run_folder, steps=args.steps, resume=args.resume, force=args.force,
                              device=args.device, checkpoint_every=args.checkpoint_every,
                              checkpoint_seconds=args.checkpoint_seconds, **extra)
    except ValueError as error:
        print(f"cannot train {args.model}: {error}", file=sys.stderr)
        return 1
    summary["wall_seconds"] = round(time.perf_counter() - began, 1)
    if is_main():  # under torchrun every rank gets here; the summary is printed once
        print(json.dumps(summary, indent=2, default=str))
    return 0
