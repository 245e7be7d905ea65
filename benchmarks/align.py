"""Post-training ladder: head mixes, SFT → +PARS, +distillation → +GRPO / +debiased GRPO.

    .venv/bin/python benchmarks/align.py --run runs/demo --part valid --max-requests 1000   # screening
    .venv/bin/python benchmarks/align.py --run runs/demo                                    # the test table
    .venv/bin/python benchmarks/align.py --run runs/ml100k --config configs/align_ml100k.toml \
        --exclude-seen --max-history 50 --set +distillation:distill_steps=3000 --plot '' --out …  # another data set

Each row post-trains the model of the row it names in ROWS (the aligned folder has the
trained model's layout, so it can be the next row's base): row folders live under
RUN/align-ladder/<row>/ and link RUN's data, SIDs, features and cascade. "head mixes"
runs no phase, only the final choice of the item head's mixes that every row makes, so
it shows what that choice alone gives; SFT, +PARS and +distillation start from the
trained model; "+debiased GRPO" starts from the same model as "+GRPO" (the distilled
one), so the two differ only in the advantage scale. Every row chooses its checkpoints on the validation
split inside `align_generative`; the test part is evaluated once per row.

Writes benchmarks/results/align.md (test) or align_valid.md (valid) and, from the
GRPO rows' validation history, docs/align_reward.png. `--config FILE` (an AlignConfig file, e.g. a
data set's recipe) sets every row's fields but the phases' step counts, which stay the ladder's
(`--set` changes them); `--exclude-seen` and `--max-history` give the rows the protocol of that
data set's benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LINKED = ("data", "sid", "features", "cascade")

COMMON = dict(eval_every=50, select_metric="balanced")
ZERO = dict(sft_steps=0, high_value_steps=0, distill_steps=0, grpo_steps=0)
SFT = dict(sft_steps=100, high_value_steps=50, lr=3e-4)
ROWS: dict[str, tuple[str, dict]] = {
    # name: (the row whose model it starts from, the phases it adds); the rest of AlignConfig keeps its
    # defaults, so every row of a model with an item head ends by choosing the head's mixes on validation
    "head mixes": ("generative", {**ZERO}),
    "SFT": ("generative", {**ZERO, **SFT, "pars_weighted": False}),
    "+PARS": ("generative", {**ZERO, **SFT, "pars_weighted": True}),
    "+distillation": ("generative", {**ZERO, "distill_steps": 200}),
    "+GRPO": ("+distillation", {**ZERO, "grpo_steps": 60, "eval_every": 10, "debiased": False}),
    "+debiased GRPO": ("+distillation", {**ZERO, "grpo_steps": 60, "eval_every": 10, "debiased": True}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/demo", help="a demo run: data, sid, train/generative, cascade/model")
    parser.add_argument("--part", default="test", choices=("valid", "test"))
    parser.add_argument("--max-requests", type=int, default=None, help="evaluate a seeded subset of the part")
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows to train and evaluate")
    parser.add_argument("--set", action="append", default=[], metavar="ROW:FIELD=VALUE",
                        help="override one AlignConfig field of one row (ROW may be * for every row)")
    parser.add_argument("--ladder", default="align-ladder", help="folder under RUN for the rows' runs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--config", default=None, help="an AlignConfig file under every row (its step counts excepted)")
    parser.add_argument("--exclude-seen", action="store_true", help="leave history items out of every row's answer")
    parser.add_argument("--max-history", type=int, default=50, help="history items per request")
    parser.add_argument("--out", default=None)
    parser.add_argument("--plot", default=str(ROOT / "docs" / "align_reward.png"))
    parser.add_argument("--plot-only", action="store_true", help="redraw the plot from the ladder's manifests")
    parser.add_argument("--latency", type=int, default=0, metavar="N",
                        help="only time RUN/train/generative and RUN/align/generative on N test requests, "
                             "alternating one request at a time (writes align_latency.md)")
    args = parser.parse_args()
    if args.latency:
        _paired_latency(Path(args.run), args.latency, args.threads)
        return
    if args.plot_only:
        ladder = Path(args.run) / args.ladder
        _plot({name: json.loads((ladder / _folder_name(name) / "align" / "generative" / "manifest.json").read_text())
               ["result"]["phases"] for name in ROWS if (ladder / _folder_name(name) / "align" / "generative").is_dir()},
              Path(args.plot))
        return

    import torch

    torch.set_num_threads(args.threads)
    from genrec.align import AlignConfig, align_generative
    from genrec.align.retriever import AlignedGenerativeRetriever
    from genrec.cascade.retriever import CascadeRetriever
    from genrec.data.dataset import Dataset
    from genrec.data.splits import build_requests, leave_one_out, sample_requests
    from genrec.eval.harness import EvalConfig, evaluate
    from genrec.model.retriever import GenerativeRetriever
    from genrec.train.generative import load_sid_table

    run = Path(args.run).resolve()
    dataset = Dataset.load(run / "data")
    split = leave_one_out(dataset.events)
    sids = load_sid_table(run)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    overrides = _overrides(args.set)
    base = {}
    if args.config:
        from genrec.config_file import read_config_file

        steps = {"sft_steps", "high_value_steps", "distill_steps", "grpo_steps"}
        base = {k: v for k, v in read_config_file(args.config).items() if k not in steps}
    folders = {"generative": run / "train" / "generative"}
    cpu, wall, phases, mixes = {}, {}, {}, {}
    for name in ROWS:
        if name not in rows and not _needed_by(name, rows):
            continue
        start_from, values = ROWS[name]
        values = {**COMMON, **base, **values, **overrides.get("*", {}), **overrides.get(name, {})}
        row_run = _row_run(run, args.ladder, name, folders[start_from])
        tick_cpu, tick = time.process_time(), time.perf_counter()
        print(f"== {name}: from {start_from}, {values}", file=sys.stderr, flush=True)
        folders[name] = align_generative(row_run, AlignConfig(**values), dataset=dataset, split=split, sids=sids)
        cpu[name], wall[name] = time.process_time() - tick_cpu, time.perf_counter() - tick
        result = json.loads((folders[name] / "manifest.json").read_text())["result"]
        phases[name], mixes[name] = result["phases"], result.get("head_mix")

    requests, targets = build_requests(split, args.part, max_history=args.max_history)
    requests, targets = sample_requests(requests, targets, args.max_requests)
    retrievers = [CascadeRetriever.from_run(run, dataset, split), GenerativeRetriever.load(folders["generative"], sids)]
    for name in rows:
        model = AlignedGenerativeRetriever.load(folders[name], sids)
        model.name = f"generative-aligned ({name})"
        retrievers.append(model)
    tick = time.perf_counter()
    report = evaluate(retrievers, requests, targets, dataset=dataset, split=split,
                      config=replace(EvalConfig(), k=50, exclude_seen=args.exclude_seen), progress=False)
    eval_seconds = time.perf_counter() - tick
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"align{'' if args.part == 'test' else '_valid'}.md"
    _write(out, report, args, rows, cpu, wall, phases, mixes, eval_seconds, len(requests))
    if args.plot:
        _plot(phases, Path(args.plot))
    print(out.read_text())


def _needed_by(name: str, rows: list[str]) -> bool:
    """Whether a requested row starts (directly or not) from row `name`."""
    for row in rows:
        while row in ROWS:
            row = ROWS[row][0]
            if row == name:
                return True
    return False


def _row_run(run: Path, ladder: str, name: str, base: Path) -> Path:
    """RUN/<ladder>/<row>/ linking RUN's inputs and its other trained models (a teacher), with
    train/generative → the model it starts from."""
    folder = run / ladder / _folder_name(name)
    (folder / "train").mkdir(parents=True, exist_ok=True)
    for part in LINKED:
        link = folder / part
        if not link.exists() and (run / part).exists():
            link.symlink_to(run / part)
    for trained in (run / "train").iterdir() if (run / "train").is_dir() else ():  # a teacher such as SASRec
        if trained.name != "generative" and not (folder / "train" / trained.name).exists():
            (folder / "train" / trained.name).symlink_to(trained.resolve())
    link = folder / "train" / "generative"
    if link.is_symlink() and link.resolve() != base.resolve():
        link.unlink()
    if not link.exists():
        link.symlink_to(base.resolve())
    return folder


def _paired_latency(run: Path, n: int, threads: int) -> None:
    """Serving cost of the aligned model beside the unaligned one: the same N test requests, one at a
    time, the two models alternating request by request so a busy machine slows both alike."""
    import torch

    from genrec.data.dataset import Dataset
    from genrec.data.splits import build_requests, leave_one_out
    from genrec.model.retriever import GenerativeRetriever
    from genrec.train.generative import load_sid_table

    torch.set_num_threads(threads)
    sids = load_sid_table(run)
    models = {"generative": GenerativeRetriever.load(run / "train" / "generative", sids),
              "generative-aligned": GenerativeRetriever.load(run / "align" / "generative", sids)}
    requests, _ = build_requests(leave_one_out(Dataset.load(run / "data").events), "test")
    pick = np.random.default_rng(0).choice(len(requests), min(n, len(requests)), replace=False)
    for model in models.values():  # warm up
        model.retrieve([requests[int(pick[0])]], 50)
    times: dict[str, list[float]] = {name: [] for name in models}
    for i in pick:
        for name, model in models.items():
            tick = time.perf_counter()
            model.retrieve([requests[int(i)]], 50)
            times[name].append((time.perf_counter() - tick) * 1000)
    lines = ["# Serving latency: aligned vs unaligned generative model", "",
             f"Command: `PYTHONPATH=src .venv/bin/python benchmarks/align.py --run {run} --latency {n} --threads {threads}`  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs, {threads} torch thread(s), CPU only  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {len(pick)} test requests, k = 50, "
             "one request at a time, the two models alternating request by request", "",
             "| model | p50 ms | p90 ms | p99 ms |", "|---|---|---|---|"]
    for name, values in times.items():
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        lines.append(f"| {name} | {p50:.1f} | {p90:.1f} | {p99:.1f} |")
    lines += ["", "Same architecture, same beam search, same beams: the aligned model answers alone, no ranker runs."]
    out = ROOT / "benchmarks" / "results" / "align_latency.md"
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


def _folder_name(row: str) -> str:
    return row.replace(" ", "_").replace("+", "plus_")


def _overrides(items: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for item in items:
        row, _, assignment = item.partition(":")
        key, _, value = assignment.partition("=")
        if not key or not _:
            raise SystemExit(f"--set expects ROW:FIELD=VALUE, got {item!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(row, {})[key] = parsed
    return out


def _cell(report, name: str, metric: str, part: str) -> str:
    if not report.slices[part].any():  # a data set without searches
        return "—"
    mean, low, high = report.value(name, metric, part)
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def _write(out: Path, report, args, rows, cpu, wall, phases, mixes, eval_seconds, n_requests) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    command = "PYTHONPATH=src .venv/bin/python benchmarks/align.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [f"# Post-training ladder ({args.part} split): {Path(args.run).name}", "",
             f"Command: `{command}`  ",
             f"Split part: **{args.part}** ({n_requests} requests; search {int(report.slices['search'].sum())}, "
             f"recommendation {int(report.slices['recommendation'].sum())})  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs, {args.threads} torch thread(s), CPU only  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; commit {commit}; seed 0  ",
             f"Evaluation of every row: {eval_seconds:.0f} s wall", "",
             "| row | search R@10 | search NDCG@10 | rec R@10 | rec NDCG@10 | latency p50 ms | align CPU s |",
             "|---|---|---|---|---|---|---|"]
    for name in report.retrievers:
        result = report.results[name]
        row = name.split("(")[-1].rstrip(")") if name.startswith("generative-aligned") else None
        lines.append(f"| {name} | {_cell(report, name, 'recall@10', 'search')} | {_cell(report, name, 'ndcg@10', 'search')} "
                     f"| {_cell(report, name, 'recall@10', 'recommendation')} | {_cell(report, name, 'ndcg@10', 'recommendation')} "
                     f"| {result.latency_ms_p50:.1f} | {f'{cpu[row]:.0f}' if row in cpu else '—'} |")
    lines += ["", "Cells: mean [95% bootstrap interval]. Latency: one request at a time, same process, same machine.",
              "", "## Phases (validation, inside `align_generative`)", "",
              "| row | phase | kept | best step | select (valid) | search R@10 | rec NDCG@10 | coverage@10 | popularity@10 | ranker reward@10 | true R@10 | CPU s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    def value(entry: dict, key: str, digits: int) -> str:  # "—": a metric the data set has no requests or truth for
        number = entry.get(key, float("nan"))
        return "—" if number != number else f"{number:.{digits}f}"

    for name in rows:
        for phase, result in phases.get(name, {}).items():
            best = next((h for h in result["history"] if h["step"] == result["best_step"]), {})
            lines.append(f"| {name} | {phase} | {'yes' if result['kept'] else 'no'} | {result['best_step']} "
                         f"| {result['best_select']:.4f} | {value(best, 'search_recall@10', 3)} "
                         f"| {value(best, 'rec_ndcg@10', 4)} | {value(best, 'coverage@10', 3)} "
                         f"| {value(best, 'popularity@10', 2)} | {value(best, 'ranker_reward@10', 4)} "
                         f"| {value(best, 'true_recall@10', 4)} | {result['cpu_seconds']:.0f} |")
    chosen = [(name, mixes[name]) for name in rows if mixes.get(name)]
    if chosen:
        lines += ["", "## The item head's mixes (chosen last, on the same validation requests)", "",
                  "| row | recommendation mix | search mix | search text match |", "|---|---|---|---|"]
        lines += [f"| {name} | {mix['item_head_mix']} | {mix['item_head_search_mix']} | "
                  f"{mix.get('item_head_text_match', 0.0)} |" for name, mix in chosen]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


def _plot(phases: dict[str, dict], path: Path) -> None:
    """The GRPO rows' validation history, from the model the phase started from (step 0)."""
    history = {name: [{**phases[name]["grpo"]["start"], "step": 0}, *phases[name]["grpo"]["history"]]
               for name in ("+GRPO", "+debiased GRPO") if name in phases and "grpo" in phases[name]}
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = (("ranker_reward@10", "ranker reward (mean, top 10)"), ("true_recall@10", "true utility: oracle expected R@10"),
            ("select", "validation metric (search R@10 + rec NDCG@10) / 2"))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for name, entries in history.items():
        steps = [h["step"] for h in entries]
        for ax, (key, title) in zip(axes, keys):
            ax.plot(steps, [h.get(key, np.nan) for h in entries], marker="o", label=name)
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("RL step")
    axes[0].legend(fontsize=8)
    fig.suptitle("GRPO on the default world (validation sample): reward vs true utility vs metric", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
