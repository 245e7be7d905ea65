"""Scaling on a CPU: validation quality of the generative model against its parameters and its
active compute, dense widths beside sparse mixtures of experts, on Amazon Beauty.

    .venv/bin/python benchmarks/scaling.py --source runs/beauty --work runs/scaling --steps 2000 --jobs 2

Each variant is the Beauty benchmark's model (`configs/amazon_beauty.toml`: item head, 50 beams)
with its width or its decoder's feed-forward changed, trained by `genrec train` for the same
`--steps` on the same data, Semantic IDs and item vectors (`--source` holds `data/`, `features/`
and `sid/`, e.g. a run `benchmarks/amazon_beauty.py` made; each variant's run folder links them).
Variants train in `--jobs` parallel processes of one torch thread; a variant whose model is saved
is not trained again, and one that was interrupted resumes from its last checkpoint.

Measured per variant, after training:
- parameters (all of them; a mixture's experts count whether or not a token uses them);
- active compute: forward FLOPs per served request (`torch.utils.flop_counter` around encoding and
  the 50-beam search of seeded validation requests): what a request costs, so a mixture of experts
  sits at the compute its routed experts use, not at its parameter count;
- validation Recall@10 / NDCG@10 on `--valid-requests` seeded validation users (the model's
  beams and item-head mix, as it serves); and the training loop's 1,000-request validation
  sample at every evaluation, which gives the curve of each schedule (where is it heading).

Test is never read. Writes `benchmarks/results/scaling.md` and `docs/scaling.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode
from validation_sample import validation_sample

from genrec.eval.metrics import ndcg_at_k, ranked_matrix, recall_at_k
from genrec.model.retriever import MODEL_DIR, GenerativeRetriever
from genrec.train.generative import load_sid_table

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "amazon_beauty.toml"
RESULTS = REPO / "benchmarks" / "results" / "scaling.md"
FIGURE = REPO / "docs" / "scaling.png"
LINKED = ("data", "features", "sid")
"""What every variant's run folder shares with `--source`."""

VARIANTS: dict[str, dict[str, str]] = {
    "dense-d64": {"model.d_model": "64", "model.d_ff": "256"},
    "dense-d128": {},
    "dense-d192": {"model.d_model": "192", "model.d_ff": "768"},
    "moe8-ff256": {"model.moe_experts": "8", "model.moe_top_k": "2", "model.d_ff": "256"},
    "moe8-ff512": {"model.moe_experts": "8", "model.moe_top_k": "2"},
}
"""Name → config overrides of `configs/amazon_beauty.toml` (d_model 128, d_ff 512, dense).
A mixture replaces the decoder's feed-forward with 8 experts, 2 per token: at d_ff 256 a decoder
token's routed experts do the work of one d_ff-512 MLP (the encoder's MLP is d_ff wide too, so it
halves there); at d_ff 512, twice that. The FLOPs column measures what each variant really costs."""

DESCRIPTIONS = {
    "dense-d64": "dense, d_model 64, d_ff 256",
    "dense-d128": "dense, d_model 128, d_ff 512 (the benchmark's model)",
    "dense-d192": "dense, d_model 192, d_ff 768",
    "moe8-ff256": "MoE decoder, 8 experts top-2, d_ff 256",
    "moe8-ff512": "MoE decoder, 8 experts top-2, d_ff 512",
}


def prepare_run(source: Path, folder: Path) -> None:
    """A run folder whose data, item vectors and Semantic IDs are `source`'s (symlinks)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        target = (source / name).resolve()
        if not target.is_dir():
            raise FileNotFoundError(f"{source / name} is missing: --source must hold {', '.join(LINKED)}")
        link = folder / name
        if link.is_symlink() and link.resolve() != target:
            raise ValueError(f"{link} points at {link.resolve()}, not {target}: use another --work folder")
        if not link.exists():
            link.symlink_to(target)


def train_variant(name: str, folder: Path, steps: int, threads: int) -> float:
    """Train (or resume, or skip a finished) variant; returns the CPU seconds this call spent."""
    model_dir = folder.joinpath(*MODEL_DIR)
    if (model_dir / "manifest.json").exists():
        return 0.0
    command = [sys.executable, "-m", "genrec.cli", "train", "--run", str(folder), "--model", "generative",
               "--config", str(CONFIG), "--set", f"train.steps={steps}"]
    for key, value in VARIANTS[name].items():
        command += ["--set", f"{key}={value}"]
    if (model_dir / "last.pt").exists():
        command.append("--resume")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with open(folder / "train.log", "a") as log:
        print(f"[{name}] {' '.join(command[1:])}", flush=True)
        child = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        # This child's own CPU time: the process-wide children counters (os.times) would also count the
        # variants trained beside it that finish meanwhile.
        _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise subprocess.CalledProcessError(os.waitstatus_to_exitcode(status), command)
    return usage.ru_utime + usage.ru_stime


def measure(folder: Path, requests, targets, flop_requests: int) -> dict:
    """Parameters, forward FLOPs per served request, validation R@10 / N@10 and the training curve."""
    retriever = GenerativeRetriever.load(folder.joinpath(*MODEL_DIR), load_sid_table(folder))
    model = retriever.model
    with FlopCounterMode(display=False) as counter:
        retriever.retrieve(requests[:flop_requests], 10)
    began = time.process_time()
    ranked = ranked_matrix(retriever.retrieve(requests, 10), 10)
    decode_cpu = time.process_time() - began
    manifest = json.loads((folder.joinpath(*MODEL_DIR) / "manifest.json").read_text())
    curve = pd.read_csv(folder.joinpath(*MODEL_DIR) / "metrics.csv")
    curve = curve.dropna(subset=["ndcg@10"])[["step", "recall@10", "ndcg@10"]]
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "gflops_per_request": counter.get_total_flops() / flop_requests / 1e9,
        "recall": float(recall_at_k(ranked, targets, 10).mean),
        "ndcg": float(ndcg_at_k(ranked, targets, 10).mean),
        "decode_cpu_ms": 1e3 * decode_cpu / len(requests),
        "train_seconds": float(manifest["result"].get("train_seconds", float("nan"))),
        "curve": curve.to_dict("list"),
    }


def plot(rows: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, row in rows.items():
        marker = "s" if name.startswith("moe") else "o"
        for ax, x in ((axes[0], row["parameters"] / 1e6), (axes[1], row["gflops_per_request"])):
            ax.scatter(x, row["ndcg"], marker=marker, s=60)
            ax.annotate(name, (x, row["ndcg"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
        axes[2].plot(row["curve"]["step"], row["curve"]["ndcg@10"], marker=marker, label=name)
    axes[0].set(xlabel="parameters (millions)", ylabel="validation NDCG@10", title="quality vs parameters")
    axes[1].set(xlabel="forward GFLOPs per served request", ylabel="validation NDCG@10",
                title="quality vs active compute")
    axes[2].set(xlabel="training step", ylabel="NDCG@10, 1,000-request validation sample",
                title="training curves")
    axes[2].legend(fontsize=8)
    for ax in axes[:2]:  # room for the labels at the right
        ax.margins(x=0.25, y=0.1)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle("Amazon Beauty, generative model, same data and schedule (circles dense, squares MoE)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(args, rows: dict[str, dict], train_cpu: dict[str, float], loads: tuple[float, float],
                 n_valid: int) -> str:
    command = " ".join(["benchmarks/scaling.py"] + sys.argv[1:])
    with_cpu = any(train_cpu.values())  # variants trained by this call (CPU of earlier calls is not known)
    lines = [
        "# Scaling on a CPU: quality vs parameters and vs active compute (Amazon Beauty, validation)", "",
        f"Command: `.venv/bin/python {command}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}; training: {args.jobs} parallel processes of {args.threads} torch thread(s); "
        f"load average (1 min) {loads[0]:.1f} at start, {loads[1]:.1f} at end  ",
        f"Every variant: `configs/amazon_beauty.toml` with the overrides named, {args.steps} optimizer steps "
        f"(the benchmark's model trains 6,000), the same data, SIDs and item vectors (`{args.source}`); "
        f"validation: {n_valid} seeded users, "
        "the model's 50 beams and item-head mix; test not read.", "",
        "| variant | overrides | parameters | forward GFLOPs / request | valid R@10 | valid N@10 | best sample N@10 (step) "
        "| decode CPU ms / request | training wall min |" + (" training CPU min |" if with_cpu else ""),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if with_cpu else ""),
    ]
    for name, row in rows.items():
        overrides = " ".join(f"`{k}={v}`" for k, v in VARIANTS[name].items()) or "—"
        curve = row["curve"]
        best = int(np.argmax(curve["ndcg@10"])) if curve["ndcg@10"] else None
        best_cell = "—" if best is None else f"{curve['ndcg@10'][best]:.4f} ({int(curve['step'][best])})"
        cpu = train_cpu.get(name, 0.0)
        cpu_cell = (f" {cpu / 60:.1f} |" if cpu else " (an earlier call) |") if with_cpu else ""
        lines.append(f"| {DESCRIPTIONS[name]} | {overrides} | {row['parameters']:,} | {row['gflops_per_request']:.3f} "
                     f"| {row['recall']:.4f} | {row['ndcg']:.4f} | {best_cell} | {row['decode_cpu_ms']:.2f} "
                     f"| {row['train_seconds'] / 60:.1f} |{cpu_cell}")
    lines += ["", "Training curves (the loop's 1,000-request validation sample, NDCG@10, at each evaluation):", "",
              "| step | " + " | ".join(rows) + " |", "|---:|" + "---:|" * len(rows)]
    steps = sorted({int(s) for row in rows.values() for s in row["curve"]["step"]})
    for step in steps:
        cells = []
        for row in rows.values():
            by_step = dict(zip((int(s) for s in row["curve"]["step"]), row["curve"]["ndcg@10"]))
            cells.append(f"{by_step[step]:.4f}" if step in by_step else "")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    lines += ["", f"![quality vs parameters and active compute](../../docs/{FIGURE.name})", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="run folder with data/, features/ and sid/")
    parser.add_argument("--work", type=Path, required=True, help="folder for the variants' run folders")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=2, help="variants trained at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    parser.add_argument("--valid-requests", type=int, default=5000, help="seeded validation users (0: all)")
    parser.add_argument("--flop-requests", type=int, default=64, help="requests whose FLOPs are counted")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--figure", type=Path, default=FIGURE)
    args = parser.parse_args()
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    if args.steps < 1 or args.jobs < 1 or args.threads < 1:
        parser.error("--steps, --jobs and --threads must be ≥ 1")
    load_start = os.getloadavg()[0]
    folders = {name: args.work / name for name in names}
    for folder in folders.values():
        prepare_run(args.source, folder)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        train_cpu = dict(zip(names, pool.map(lambda n: train_variant(n, folders[n], args.steps, args.threads), names)))
    torch.set_num_threads(2)
    _, _, requests, targets = validation_sample(args.source, args.valid_requests, max_history=20)
    rows = {}
    for name in names:
        rows[name] = measure(folders[name], requests, targets, args.flop_requests)
        print(f"{name}: {rows[name]['parameters']:,} parameters, {rows[name]['gflops_per_request']:.3f} GFLOPs/request, "
              f"valid R@10 {rows[name]['recall']:.4f} N@10 {rows[name]['ndcg']:.4f}", flush=True)
    plot(rows, args.figure)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(write_report(args, rows, train_cpu, (load_start, os.getloadavg()[0]), len(requests)))
    print(f"wrote {args.out} and {args.figure}")


if __name__ == "__main__":
    main()
