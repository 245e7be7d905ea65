"""The main job: the whole path on the embedded default world, in one command.

generate → validate → embed → Semantic IDs → train the generative model →
evaluate it beside every baseline, the cascade and the oracle ceiling → table,
plots and `report.md` in the run folder. Each stage is the same Python
function its CLI subcommand calls; a stage whose artefact is already complete
in the run folder is reused, so a second `make demo` is quick and a crashed one
resumes where it stopped.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

DEMO_RETRIEVERS: tuple[str, ...] = (
    "popularity", "bm25", "dense", "itemcf", "sasrec", "cascade", "generative", "generative-aligned", "oracle",
)


DEMO_SIDS: dict = {"prefix": ("category", "brand"), "levels": 1}
"""`build_sids` arguments of the demo: leaf and brand first, one residual RQ-KMeans level
(chosen on the validation split, `benchmarks/generative_variants.py`)."""

@dataclass
class StageTimes:
    """Wall time per stage, in order, for the closing summary."""

    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, action: Callable[[], object]) -> object:
        print(f"\n== {name}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        result = action()
        self.seconds[name] = time.perf_counter() - start
        print(f"== {name}: {self.seconds[name]:.1f}s", file=sys.stderr, flush=True)
        return result


def run_demo(run: str | Path = "runs/demo", retrievers: tuple[str, ...] = DEMO_RETRIEVERS, fresh: bool = False,
             max_requests: int | None = None, images: Path | None = None) -> StageTimes:
    """Run every stage on the default world in `run`; return the stage times. With `images`,
    the evaluation's plots are also copied there as `demo_recall_at_k.png` and `demo_slices.png`
    (the README's pictures, so they always show the table they sit beside)."""
    import shutil

    import torch

    torch.set_num_threads(min(torch.get_num_threads(), 2))
    run = Path(run)
    if fresh and run.exists():
        shutil.rmtree(run)
    times = StageTimes()
    times.run("generate the default world", lambda: _world(run))
    times.run("dataset statistics", lambda: _stats(run))
    times.run("embed items (MiniLM)", lambda: _embed(run))
    times.run("Semantic IDs (leaf + brand + RQ-KMeans)", lambda: _sids(run))
    times.run("train the generative retriever", lambda: _generative(run))
    times.run("align it: distil the cascade into it (genrec align)", lambda: _align(run))
    report = times.run("evaluate every retriever (test split)", lambda: _evaluate(run, retrievers, max_requests))

    from genrec.eval.report import print_report

    print_report(report)
    if images is not None:
        images.mkdir(parents=True, exist_ok=True)
        for name in ("recall_at_k", "slices"):
            shutil.copyfile(run / "eval" / f"{name}.png", images / f"demo_{name}.png")
    total = sum(times.seconds.values())
    print("\nstage times: " + ", ".join(f"{name} {s:.0f}s" for name, s in times.seconds.items()))
    print(f"total: {total / 60:.1f} min — report: {run / 'eval' / 'report.md'}, plots: {run / 'eval'}")
    return times


def _complete(folder: Path, config: dict | None = None, inputs: dict[str, Path] | None = None,
              code: str | None = None) -> bool:
    """A stage's folder is reusable once its manifest exists (it is written last), was
    made with `config` (every key given must match the manifest's), from the current
    `inputs` (name → folder, compared by content hash) and, when `code` is given, by the
    current code (`artifacts.code_fingerprint`). A folder left by an older genrec, or
    built on SIDs that have since changed, is rebuilt rather than loaded into a model it
    no longer fits or reported as the current code's."""
    path = folder / "manifest.json"
    if not path.exists():
        return False
    import json

    from genrec.artifacts import folder_sha256

    recorded = json.loads(path.read_text())
    stale = [key for key, value in (config or {}).items()
             if _plain(_lookup(recorded.get("config", {}), key)) != _plain(value)]
    stale += [name for name, source in (inputs or {}).items()
              if recorded.get("inputs", {}).get(name) != (folder_sha256(source) if source.is_dir() else None)]
    if code is not None and recorded.get("code") != code:
        stale.append("code")
    if stale:
        print(f"{folder} was made with another {', '.join(stale)}; rebuilding it", file=sys.stderr)
    return not stale


def _lookup(config: dict, key: str):
    """`config[key]`, a dotted key reading into nested dicts ("model.d_model"); None if absent."""
    for part in key.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def _plain(value):
    """Tuples as lists, so a config compares equal to its JSON round trip."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _world(run: Path) -> None:
    from genrec.data.synth import WorldConfig, generate_world

    if (run / "data" / "truth.npz").exists() and _complete(run / "data"):
        print(f"reusing {run / 'data'}", file=sys.stderr)
        return
    generate_world(WorldConfig()).save(run / "data")


def _stats(run: Path) -> None:
    from genrec.data.dataset import Dataset
    from genrec.data.stats import dataset_stats, print_stats

    print_stats(dataset_stats(Dataset.load(run / "data")))


def _embed(run: Path) -> None:
    from genrec.features.embed import embed_run

    embed_run(run)


def _sids(run: Path) -> None:
    from genrec.sid.build import SidConfig, build_sids

    if _complete(run / "sid", asdict(SidConfig(**DEMO_SIDS))):
        print(f"reusing {run / 'sid'}", file=sys.stderr)
        return
    build_sids(run, **DEMO_SIDS)


def _generative(run: Path) -> None:
    from genrec.artifacts import code_fingerprint
    from genrec.model.retriever import GENERATIVE_CODE, MODEL_DIR
    from genrec.train.generative import GenerativeTrainConfig, train_generative

    wanted = GenerativeTrainConfig().to_dict()
    model = wanted.pop("model")  # what the data gives (the input spec) is checked by the inputs' hashes
    wanted.update({f"model.{key}": value for key, value in model.items()})
    if _complete(run.joinpath(*MODEL_DIR), wanted, {"sid": run / "sid", "data": run / "data"},
                 code=code_fingerprint(*GENERATIVE_CODE)):
        print(f"reusing {run.joinpath(*MODEL_DIR)}", file=sys.stderr)
        return
    train_generative(run)


def _align(run: Path) -> None:
    from genrec.align.stage import align_if_stale

    align_if_stale(run)  # the cascade (teacher and reward) is trained first when missing


def _evaluate(run: Path, retrievers: tuple[str, ...], max_requests: int | None):
    from genrec.data.dataset import Dataset
    from genrec.data.splits import leave_one_out
    from genrec.eval.commands import run_evaluation
    from genrec.stages import train_missing

    dataset = Dataset.load(run / "data")
    train_missing(run, retrievers, dataset, leave_one_out(dataset.events))  # SASRec and the cascade, if missing

    return run_evaluation(run, list(retrievers), part="test", max_requests=max_requests, command="make demo")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="the whole path on the embedded default world (≤ 15 min on 2 cores)")
    parser.add_argument("--run", default="runs/demo", dest="run_dir", help="run folder (reused stage by stage)")
    parser.add_argument("--retrievers", default=",".join(DEMO_RETRIEVERS), help="comma-separated names to evaluate")
    parser.add_argument("--fresh", action="store_true", help="delete the run folder first")
    parser.add_argument("--max-requests", type=int, default=None, help="evaluate a seeded subset of test requests")
    parser.add_argument("--images", type=Path, default=None,
                        help="also copy the plots there as demo_recall_at_k.png / demo_slices.png (make readme-images)")
    parser.set_defaults(run=_demo)


def _demo(args: argparse.Namespace) -> int:
    run_demo(args.run_dir, tuple(n.strip() for n in args.retrievers.split(",") if n.strip()), args.fresh, args.max_requests,
             args.images)
    return 0
