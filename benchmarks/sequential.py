"""Shared protocol for the real-data sequential benchmarks (Amazon Beauty, MovieLens-100k).

Leave-one-out per user (last item → test, second last → validation, the rest
→ training; every prefix of a training sequence is a training example), full
ranking over the whole catalog (no sampled negatives), the history cut to the
last `max_history` items. Every row is measured in the same run on the same
requests; published rows are printed beside them and labelled as published.
Hyper-parameters are chosen with `--part valid`; the test split is reported
once with the chosen ones.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from genrec.data.dataset import Dataset
from genrec.data.splits import build_requests, leave_one_out, sample_requests
from genrec.eval.harness import EvalConfig, evaluate

RESULTS = Path(__file__).parent / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class Published:
    """A row copied from a paper — never measured here."""

    name: str
    source: str
    metrics: dict[str, float]


def parse_args(description: str, default_run: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--run", default=default_run, help="run folder (data, features, sid, train/*)")
    parser.add_argument("--part", default="test", choices=("valid", "test"))
    parser.add_argument("--retrievers", default="popularity,itemcf,sasrec,cascade,generative")
    parser.add_argument("--steps", type=int, default=None, help="generative training steps (default: the config's)")
    parser.add_argument("--max-requests", type=int, default=None, help="evaluate a seeded subset (for quick looks only)")
    parser.add_argument("--device", default="auto", help="training device for the generative model (cpu, cuda, auto)")
    parser.add_argument("--out", default=None, help="results file (default: benchmarks/results/NAME.md)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--config", type=Path, default=None,
                        help="generative training config file (default: the benchmark's, configs/NAME.toml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one field of the generative config, dotted (repeatable), "
                             "e.g. --set model.latest_in_summary=true --set train.lr=3e-3")
    parser.add_argument("--sasrec-steps", type=int, default=None,
                        help="SASRec and HSTU training steps (default: the benchmark's choice, else SASRecConfig's)")
    parser.add_argument("--sasrec-set", dest="sasrec_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one SASRecConfig field, dotted (repeatable), e.g. --sasrec-set loss=sampled "
                             "--sasrec-set negatives=512 --sasrec-set train.lr=1e-3")
    parser.add_argument("--resume-baselines", action="store_true",
                        help="continue an interrupted SASRec / HSTU training of the same config from its last.pt")
    parser.add_argument("--hstu-set", dest="hstu_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one HSTUConfig field for the hstu row, as --sasrec-set")
    parser.add_argument("--dimerec-set", dest="dimerec_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one DimeRecConfig field for the dimerec row, as --sasrec-set")
    parser.add_argument("--align-config", type=Path, default=None,
                        help="AlignConfig file for the generative-aligned row (default: the demo's schedule)")
    parser.add_argument("--beams", type=int, default=None,
                        help="beam width of the generative rows (default: the one the model was trained with)")
    parser.add_argument("--item-head-mix", type=float, default=None,
                        help="re-rank weight of the generative row's item head (default: the model's; "
                             "choose it on validation with benchmarks/item_head_mix.py; the generative-aligned "
                             "row keeps the settings its align config chose)")
    parser.add_argument("--item-head-candidates", type=int, default=None,
                        help="the item head's most likely items added to the generative row's beams (default: the "
                             "model's; GenerativeConfig.item_head_candidates)")
    parser.add_argument("--exclude-seen", action="store_true",
                        help="remove each request's history items from every row's answer (the harness's exclude_seen)")
    return parser.parse_args()


def run_benchmark(
    name: str,
    args: argparse.Namespace,
    load: Callable[[], Dataset],
    max_history: int,
    metrics: tuple[str, ...],
    published: tuple[Published, ...],
    generative_config: Path,
    protocol: str,
    sid_levels: int = 3,
    sid_codebook_size: int | None = None,
    sid_prefix: tuple[str, ...] = (),
    sasrec_steps: int | None = None,
) -> str:
    """Prepare the run, train what is missing, evaluate every row, write the results table.
    `generative_config`: the benchmark's training config file (`--config` replaces it)."""
    from genrec.model.retriever import GenerativeRetriever
    from genrec.registry import build_retriever
    from genrec.stages import train_missing

    torch.set_num_threads(args.threads)
    run = Path(args.run)
    began, began_cpu = time.perf_counter(), time.process_time()
    commit = _commit()  # the code this process imported, not whatever HEAD is when it ends
    stage_seconds: dict[str, float] = {}
    stage_cpu: dict[str, float] = {}

    def stage(label: str, action: Callable[[], object]) -> object:
        start, start_cpu = time.perf_counter(), time.process_time()
        print(f"== {label}", file=sys.stderr, flush=True)
        result = action()
        stage_seconds[label] = time.perf_counter() - start
        stage_cpu[label] = time.process_time() - start_cpu
        print(f"== {label}: {stage_seconds[label]:.0f}s wall, {stage_cpu[label]:.0f}s CPU", file=sys.stderr, flush=True)
        return result

    if not (run / "data" / "manifest.json").exists():
        stage("load data", lambda: load().save(run / "data", source=name))
    dataset = Dataset.load(run / "data")
    split = leave_one_out(dataset.events)
    names = [n.strip() for n in args.retrievers.split(",") if n.strip()]

    if "generative" in names or "generative-aligned" in names:
        from genrec.model.retriever import MODEL_DIR
        from genrec.sid.build import build_sids
        from genrec.train.config_file import load_train_config
        from genrec.train.generative import train_generative

        if not (run / "sid" / "manifest.json").exists():
            stage("Semantic IDs from item text (MiniLM + RQ-KMeans)",
                  lambda: build_sids(run, levels=sid_levels, codebook_size=sid_codebook_size, prefix=sid_prefix))
        if not (run.joinpath(*MODEL_DIR) / "manifest.json").exists():
            config = load_train_config(args.config or generative_config, args.overrides)
            config.train = replace(config.train, device=args.device, **({"steps": args.steps} if args.steps else {}))
            stage("train the generative retriever", lambda: train_generative(run, config, dataset=dataset, split=split))

    def build(retriever_name: str):
        if retriever_name in ("sasrec", "hstu", "dimerec"):  # the protocol's history length, not SASRec's default
            from genrec.baselines.dimerec import DimeRecRetriever
            from genrec.baselines.hstu import HSTURetriever
            from genrec.baselines.sasrec import SASRecRetriever
            from genrec.config_file import load_config

            retriever = {"sasrec": SASRecRetriever, "hstu": HSTURetriever, "dimerec": DimeRecRetriever}[retriever_name]
            defaults = asdict(retriever.config_type(max_history=max_history))  # every field: `train` is rebuilt whole
            steps = args.sasrec_steps or sasrec_steps
            if steps:
                defaults["train"]["steps"] = steps
            overrides = {"sasrec": args.sasrec_overrides, "hstu": args.hstu_overrides,
                         "dimerec": args.dimerec_overrides}[retriever_name]
            config = load_config(retriever.config_type, None, overrides, defaults=defaults)
            return retriever.train(run, dataset, split, config, resume=args.resume_baselines)  # loads a matching saved model
        if retriever_name == "generative-aligned":  # post-trains the generative model above when stale
            from genrec.align.config import AlignConfig
            from genrec.align.stage import align_if_stale
            from genrec.config_file import load_config

            align_if_stale(run, load_config(AlignConfig, args.align_config))
        train_missing(run, [retriever_name], dataset, split)
        retriever = build_retriever(retriever_name, run, dataset, split)
        if retriever_name == "generative" and isinstance(retriever, GenerativeRetriever):  # not the aligned row:
            # it serves with the settings its align config chose
            if args.item_head_mix is not None:
                retriever.item_head_mix = args.item_head_mix
            if args.beams is not None:
                retriever.beams = args.beams
            if args.item_head_candidates is not None:
                if args.item_head_candidates < 0 or retriever.model.item_head is None:
                    raise SystemExit("--item-head-candidates needs a value ≥ 0 and a model with an item head")
                retriever.item_head_candidates = args.item_head_candidates
        return retriever

    retrievers = [stage(f"build {n}", lambda n=n: build(n)) for n in names]

    requests, targets = build_requests(split, args.part, max_history=max_history)
    requests, targets = sample_requests(requests, targets, args.max_requests)
    report = stage("evaluate", lambda: evaluate(retrievers, requests, targets, dataset=dataset, split=split,
                                                 config=EvalConfig(k=10, bootstrap=1000, exclude_seen=args.exclude_seen)))
    times = (stage_seconds, stage_cpu, time.perf_counter() - began, time.process_time() - began_cpu)
    table = _table(name, args, report, metrics, published, protocol, times, len(requests), commit)
    out = Path(args.out) if args.out else RESULTS / f"{name}{'' if args.part == 'test' else '_valid'}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    (run / f"{name}_{args.part}.json").write_text(json.dumps(report.to_dict(), default=float, indent=1))
    print(table)
    print(f"wrote {out}", file=sys.stderr)
    return table


def _table(name, args, report, metrics, published, protocol, times, n_requests, commit) -> str:
    stage_seconds, stage_cpu, total, total_cpu = times
    lines = [
        f"# {name}: measured beside the published table",
        "",
        f"Protocol: {protocol}",
        "",
        f"Command: `{' '.join(['.venv/bin/python'] + sys.argv)}`  ",
        f"Split part: **{args.part}** ({n_requests} requests)  ",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, {_device(args)}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; commit {commit} (at start); seed 0  ",
        f"Wall time: {total / 60:.1f} min ({', '.join(f'{k} {v:.0f}s' for k, v in stage_seconds.items())})  ",
        f"CPU time (this process, all threads): {total_cpu / 60:.1f} min "
        f"({', '.join(f'{k} {v:.0f}s' for k, v in stage_cpu.items())}); stages cached in the run folder "
        "from an earlier invocation are not counted. The machine was shared with other jobs, so wall time is inflated.",
        "History items in answers: " + ("**removed** from every measured row's answer (`--exclude-seen`)"
                                        if args.exclude_seen else "kept (a row may rank an item the user already has)"),
        "",
        "| row | " + " | ".join(metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for retriever in report.retrievers:
        cells = []
        for metric in metrics:
            mean, low, high = report.value(retriever, metric)
            cells.append(f"{mean:.4f} [{low:.4f}, {high:.4f}]")
        lines.append(f"| {retriever} (measured) | " + " | ".join(cells) + " |")
    for row in published:
        lines.append(f"| {row.name} (published, {row.source}) | " + " | ".join(
            f"{row.metrics[m]:.4f}" if m in row.metrics else "—" for m in metrics) + " |")
    lines += ["", "Measured cells: mean [95% bootstrap interval]. Published rows are copied from the paper, not measured here.", ""]
    return "\n".join(lines)


def _device(args) -> str:
    if args.device in ("cuda", "auto") and torch.cuda.is_available():
        return f"generative trained on {torch.cuda.get_device_name(0)}"
    return "CPU only (no GPU was lent to this session)"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
