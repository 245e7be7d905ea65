"""Semantic ID tokenizers side by side on Amazon Beauty and the default world (no downstream training).

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sid_tokenizers.py \\
        --run beauty=runs/beauty --run world=runs/demo [--epochs 30] [--seed 0]

Each RUN needs data/ and its cached item vectors in features/ (`genrec embed`);
every tokenizer is built with `build_sids` exactly as `genrec sid` would, into a
temporary folder. Writes the section after `MARKER` of `benchmarks/results/sid.md`
(the default-world table above it, from `benchmarks/sid.py`, is left alone):

per tokenizer, the collision rate before the disambiguation counter, codebook
usage and normalised entropy per level, items per full code (max, p99), fit
time (collaborative vectors and the learned level included), and whether the
items sharing a code are alike: the mean pairwise cosine of the text vectors of
items that share every semantic code ("cells" of ≥ 2 items), against the same
items re-split at random, with the same cell sizes, inside their parent (all
codes but the last semantic one) — the arbitrary counter's way of grouping.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from genrec.data.dataset import Dataset
from genrec.features.item_vectors import encode_items
from genrec.sid import build_sids, sid_report

RESULTS = Path(__file__).parent / "results" / "sid.md"
MARKER = "<!-- benchmarks/sid_tokenizers.py writes below this line -->"
NOTES = "<!-- notes: written by hand, kept when the tables are regenerated -->"
PREFIX = ("category", "brand")

TOKENIZERS: dict[str, dict] = {
    "rqkmeans (today's default)": dict(method="rqkmeans", levels=1, prefix=PREFIX),
    "rqkmeans + balanced last level": dict(method="rqkmeans", levels=1, prefix=PREFIX, last_level="balanced"),
    "rqkmeans + balanced last level (K=8)": dict(method="rqkmeans", levels=1, prefix=PREFIX, last_level="balanced",
                                               last_level_size=8),
    "rqkmeans + collaborative 0.5 + balanced": dict(method="rqkmeans", levels=1, prefix=PREFIX, last_level="balanced",
                                                    collaborative_weight=0.5),
    "rqvae": dict(method="rqvae", levels=1, prefix=PREFIX),
    "rqvae + QuaSID (repulsion 5, contrastive 0.1)": dict(method="rqvae", levels=1, prefix=PREFIX, repulsion_weight=5.0,
                                                          contrastive_weight=0.1),
    "rqvae + QuaSID + balanced": dict(method="rqvae", levels=1, prefix=PREFIX, repulsion_weight=5.0,
                                      contrastive_weight=0.1, last_level="balanced"),
    "vrq: text + behaviour views, aligned": dict(method="vrq", levels=1, prefix=PREFIX),
    "vrq + balanced": dict(method="vrq", levels=1, prefix=PREFIX, last_level="balanced"),
    "rqvae (3 levels no prefix)": dict(method="rqvae", levels=3),
    "rqvae + QuaSID (3 levels no prefix)": dict(method="rqvae", levels=3, repulsion_weight=5.0, contrastive_weight=0.1),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="NAME=RUN folder, repeatable")
    parser.add_argument("--epochs", type=int, default=30, help="RQ-VAE epochs (every rqvae and vrq row)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="tokenizer names separated by ; (default: all)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    wanted = [name.strip() for name in args.only.split(";") if name.strip()] or list(TOKENIZERS)
    sections = []
    for spec in args.run:
        label, run = spec.split("=", 1)
        dataset = Dataset.load(Path(run) / "data")
        text = encode_items(dataset, Path(run) / "features", progress=False)
        rows = []
        for name in wanted:
            options = dict(TOKENIZERS[name], seed=args.seed)
            if options["method"] in ("rqvae", "vrq"):
                options["epochs"] = args.epochs
            with tempfile.TemporaryDirectory() as out:
                start = time.process_time()
                table = build_sids(run, progress=False, out=out, **options)
                cpu = time.process_time() - start
                fit = json.loads((Path(out) / "sid_report.json").read_text())["fit_seconds"]
            semantic = table.levels - 1
            report = sid_report(table.codes, semantic, table.codebook_sizes)
            vectors = text.vectors[np.searchsorted(text.item_ids, table.item_ids)]
            cells, arbitrary = _cell_cosines(table.codes[:, :semantic], vectors, args.seed)
            rows.append((name, report, fit, cpu, cells, arbitrary, table.codebook_sizes))
            print(f"{label} {name}: collision {report['collision_rate']:.4f}, max {report['items_per_leaf_max']}, "
                  f"fit {fit:.1f} s, cpu {cpu:.1f} s, cells {cells:.3f} vs {arbitrary:.3f}", file=sys.stderr, flush=True)
        sections.append(_section(label, run, len(text), rows))
    _write(Path(args.out), _header(args) + "\n".join(sections))
    return 0


def _cell_cosines(codes: np.ndarray, vectors: np.ndarray, seed: int) -> tuple[float, float]:
    """Mean pairwise cosine inside cells (items with equal `codes` rows, ≥ 2 of them), and inside
    cells of the same sizes cut at random from each cell's parent group (`codes[:, :-1]`)."""
    rng = np.random.default_rng(seed)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    cell = np.unique(codes, axis=0, return_inverse=True)[1].reshape(-1)
    parent = np.unique(codes[:, :-1], axis=0, return_inverse=True)[1].reshape(-1) if codes.shape[1] > 1 else np.zeros(len(codes), int)
    learned, arbitrary = [], []
    for group in np.unique(parent[np.bincount(cell)[cell] > 1]):
        rows = np.flatnonzero(parent == group)
        sizes = np.bincount(cell[rows])
        sizes = sizes[sizes > 0]
        for member_cell in np.unique(cell[rows]):
            members = rows[cell[rows] == member_cell]
            if len(members) > 1:
                learned.append(_mean_pairwise(unit[members]))
        shuffled = rng.permutation(rows)
        for chunk in np.split(shuffled, np.cumsum(sizes)[:-1]):
            if len(chunk) > 1:
                arbitrary.append(_mean_pairwise(unit[chunk]))
    return (float(np.mean(learned)) if learned else float("nan"), float(np.mean(arbitrary)) if arbitrary else float("nan"))


def _mean_pairwise(unit: np.ndarray) -> float:
    similarity = unit @ unit.T
    n = len(unit)
    return float((similarity.sum() - np.trace(similarity)) / (n * (n - 1)))


def _header(args) -> str:
    runs = " ".join(f"--run {spec}" for spec in args.run)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return "\n".join([
        MARKER,
        "",
        "# Semantic ID tokenizers on Amazon Beauty and the default world",
        "",
        f"- command: `PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sid_tokenizers.py {runs} "
        f"--epochs {args.epochs} --seed {args.seed}`",
        f"- machine: {platform.platform()}, {os.cpu_count()} cores, 1 torch thread, load average at the end {load:.1f}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, seed {args.seed}; RQ-VAE rows train {args.epochs} epochs",
        "- no downstream training here: these are properties of the codes only",
        "",
        "Columns: *collision* = share of items whose semantic code (every level before the disambiguation counter)",
        "another item shares; *max / p99* = items per semantic code; *usage / entropy* per level (prefix levels first,",
        "then the residual levels, then the learned level where there is one); *cell cos* = mean pairwise text cosine of",
        "items sharing a semantic code, *arbitrary* = the same items re-cut at random into cells of the same sizes inside",
        "their parent (what the row-order counter would group); *fit s* = wall time of the fit as `build_sids` reports it",
        "(collaborative vectors and the learned level included, embedding excluded: cached); *CPU s* = process CPU time",
        "of the whole `build_sids` call (one thread).",
        "",
    ]) + "\n"


def _section(label: str, run: str, n: int, rows) -> str:
    lines = [
        f"## {label} ({n} items, `{run}`)",
        "",
        "| tokenizer | codebook sizes | collision | max | p99 | usage per level | normalised entropy per level | cell cos | arbitrary | fit s | CPU s |",
        "|---|---|---:|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for name, report, fit, cpu, cells, arbitrary, sizes in rows:
        usage = " / ".join(f"{level['usage']:.2f}" for level in report["per_level"])
        entropy = " / ".join(f"{level['normalized_entropy']:.2f}" for level in report["per_level"])
        lines.append(
            f"| {name} | {sizes} | {report['collision_rate']:.4f} | {report['items_per_leaf_max']} "
            f"| {report['items_per_leaf_p99']:.0f} | {usage} | {entropy} | {cells:.3f} | {arbitrary:.3f} | {fit:.1f} | {cpu:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _write(path: Path, section: str) -> None:
    """Replace what lies between MARKER and NOTES in `path` (or append it), keeping the rest:
    the table above MARKER and the hand-written reading of the numbers from NOTES on."""
    old = path.read_text() if path.exists() else ""
    head = old.split(MARKER)[0].rstrip("\n")
    notes = old[old.index(NOTES):] if NOTES in old else ""
    path.write_text((head + "\n\n" if head else "") + section + ("\n" + notes if notes else ""))
    print(section)


if __name__ == "__main__":
    sys.exit(main())
