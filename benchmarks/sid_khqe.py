"""KHQE's parts side by side on the default world and Amazon Beauty (no downstream training).

    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python benchmarks/sid_khqe.py \\
        --run world=runs/demo --run beauty=runs/beauty [--seed 0]

Each RUN needs data/ and its cached MiniLM item vectors in features/ (`genrec embed`); both
are copied to a temporary folder first, so the run folders are only read (the `sid` stage
rewrites features/config.json, and the keyword vectors are cached there). Every tokenizer is
built with `build_sids` exactly as `genrec sid` would. Writes its own section at the end of
`benchmarks/results/sid.md`, between `BEGIN` and `END` (the other scripts' sections are kept).

Per tokenizer: collision rate before the disambiguation counter, items per code (max, p99),
the *query/code agreement* of `genrec.sid.keyword_level.query_code_agreement` on the held-out
searches (where the data logs queries) at depths 1–3 with its shuffled-cells baseline, the text
cosine inside cells against an arbitrary cut (`sid_tokenizers._cell_cosines`), fit and CPU time.
Then OPQ against plain PQ on the residual the last level sees (relative reconstruction error).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sid_tokenizers import _cell_cosines

from genrec.data.dataset import Dataset
from genrec.features.item_vectors import encode_items
from genrec.sid import RQKMeansTokenizer, build_sids, sid_report
from genrec.sid.keyword_level import query_code_agreement
from genrec.sid.opq import OPQLastLevel
from genrec.sid.prefix import within_group_residual

RESULTS = Path(__file__).parent / "results" / "sid.md"
BEGIN = "<!-- benchmarks/sid_khqe.py writes below this line -->"
END = "<!-- end of benchmarks/sid_khqe.py -->"
BRAND = ("category", "brand")
KEYWORD_AFTER_BRAND = ("category", "brand", "keyword")
DEPTHS = (1, 2, 3)

TOKENIZERS: dict[str, dict] = {
    "rqkmeans (today's default)": dict(prefix=BRAND),
    "+ keyword level after the brand": dict(prefix=KEYWORD_AFTER_BRAND),
    "keyword level in the brand's place (category, keyword, brand)": dict(prefix=("category", "keyword", "brand")),
    "+ keyword level, titles only": dict(prefix=KEYWORD_AFTER_BRAND, keyword_queries=False),
    "+ keyword-enhanced vectors 0.3": dict(prefix=BRAND, keyword_weight=0.3),
    "+ keyword-enhanced vectors 0.6": dict(prefix=BRAND, keyword_weight=0.6),
    "+ OPQ last level (2 codes)": dict(prefix=BRAND, last_level="opq"),
    "+ balanced last level (reference)": dict(prefix=BRAND, last_level="balanced"),
    "KHQE: keyword level + keyword vectors 0.3 + OPQ": dict(prefix=KEYWORD_AFTER_BRAND, keyword_weight=0.3, last_level="opq"),
}
QUERY_ONLY = {"+ keyword level, titles only"}
"""Rows that differ from another only where the data logs queries (skipped elsewhere)."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="NAME=RUN folder, repeatable")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="tokenizer names separated by ; (default: all)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    wanted = [name.strip() for name in args.only.split(";") if name.strip()] or list(TOKENIZERS)
    sections = []
    for spec in args.run:
        label, source = spec.split("=", 1)
        with tempfile.TemporaryDirectory() as scratch:
            run = Path(scratch) / label
            for part in ("data", "features"):
                shutil.copytree(Path(source) / part, run / part)
            sections.append(_measure(label, source, run, wanted, args.seed))
    _write(Path(args.out), _header(args) + "\n".join(sections))
    return 0


def _measure(label: str, source: str, run: Path, wanted: list[str], seed: int) -> str:
    dataset = Dataset.load(run / "data")
    text = encode_items(dataset, run / "features", progress=False)
    queries = "query" in dataset.events.columns and bool(dataset.events["query"].notna().any())
    rows, opq_rows = [], []
    for name in wanted:
        if name in QUERY_ONLY and not queries:
            continue
        options = dict(TOKENIZERS[name], levels=1, seed=seed)
        out = run / "sid-bench"
        start = time.process_time()
        table = build_sids(run, progress=False, out=out, **options)
        cpu = time.process_time() - start
        fit = json.loads((out / "sid_report.json").read_text())["fit_seconds"]
        semantic = table.levels - 1
        report = sid_report(table.codes, semantic, table.codebook_sizes)
        vectors = text.vectors[np.searchsorted(text.item_ids, table.item_ids)]
        cells, arbitrary = _cell_cosines(table.codes[:, :semantic], vectors, seed)
        agreement = query_code_agreement(table.codes, table.item_ids, dataset, DEPTHS, seed=seed) if queries else None
        rows.append((name, report, fit, cpu, cells, arbitrary, table.codebook_sizes, agreement))
        if options.get("last_level") == "opq" and not options.get("keyword_weight"):
            opq_rows.append(_opq_against_pq(table, vectors, out, len(options["prefix"]), seed))
        shutil.rmtree(out)
        print(f"{label} {name}: collision {report['collision_rate']:.4f}, max {report['items_per_leaf_max']}, "
              f"cpu {cpu:.1f} s, agreement {agreement['depth']['narrowing'] if agreement else '-'}", file=sys.stderr, flush=True)
    return _section(label, source, len(text), rows, opq_rows, queries and bool(rows))


def _opq_against_pq(table, vectors: np.ndarray, out: Path, prefix_levels: int, seed: int) -> tuple:
    """Relative reconstruction error of the residual the OPQ level quantized, by OPQ and by plain
    PQ with the same slices and codebook sizes (`rotate=False`), and their fit CPU seconds."""
    tokenizer = RQKMeansTokenizer.load(out / "tokenizer.npz")
    x = within_group_residual(vectors, table.codes[:, :prefix_levels])
    residual = tokenizer.residual(x, table.codes[:, prefix_levels:prefix_levels + tokenizer.levels])
    size = table.codebook_sizes[-2]
    energy = float((residual.astype(np.float64) ** 2).sum(1).mean())
    result = {}
    for rotate in (True, False):
        start = time.process_time()
        level = OPQLastLevel(size, rotate=rotate, seed=seed).fit(residual)
        error = float(((level.reconstruct(level.assign(residual)) - residual) ** 2).sum(1).mean())
        result[rotate] = (error / energy, time.process_time() - start)
    return size, level.subspaces, result


def _header(args) -> str:
    runs = " ".join(f"--run {spec}" for spec in args.run)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return "\n".join([
        BEGIN,
        "",
        "# KHQE: keyword level, keyword-enhanced vectors, OPQ last level",
        "",
        f"- command: `PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python benchmarks/sid_khqe.py {runs} --seed {args.seed}`",
        f"- machine: {platform.platform()}, {os.cpu_count()} cores, 1 thread, load average at the end {load:.1f}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, seed {args.seed}",
        "- **no downstream training**: no generative model was trained on these codes (no CPU time for it in this",
        "  round); every number is a property of the codes only",
        "",
        "All rows: one residual RQ-KMeans level (`--levels 1`). *agreement d* = on the held-out searches (validation",
        "and test interactions with a query, never seen by the tokenizer) whose query has a word beyond the target's",
        "leaf name (*narrowing* searches), the share of the other items whose title holds every query word that share",
        "the first d codes of the item the search led to; in brackets the same after shuffling level d's codes inside",
        "each parent (same cell sizes, cut blind to queries). *cell cos / arbitrary*, *fit s*, *CPU s*: as in the",
        "tokenizer tables above (fit includes keyword scoring and, when not cached, the MiniLM keyword embedding).",
        "",
    ]) + "\n"


def _section(label: str, run: str, n: int, rows, opq_rows, has_queries: bool) -> str:
    lines = [
        f"## {label} ({n} items, `{run}`)",
        "",
        "| tokenizer | codebook sizes | collision | max | p99 | agreement d=1 / 2 / 3 (shuffled) | cell cos | arbitrary | fit s | CPU s |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for name, report, fit, cpu, cells, arbitrary, sizes, agreement in rows:
        if agreement is None:
            cell = "– (no logged queries)"
        else:
            got, chance = agreement["depth"]["narrowing"], agreement["shuffled"]["narrowing"]
            cell = " / ".join(f"{got[d]:.3f}" for d in DEPTHS) + " (" + " / ".join(f"{chance[d]:.3f}" for d in DEPTHS) + ")"
        lines.append(f"| {name} | {sizes} | {report['collision_rate']:.4f} | {report['items_per_leaf_max']} "
                     f"| {report['items_per_leaf_p99']:.0f} | {cell} | {cells:.3f} | {arbitrary:.3f} | {fit:.1f} | {cpu:.1f} |")
    if has_queries:
        first = rows[0][7]
        lines += ["", f"{first['searches']['narrowing']} narrowing searches of {first['logged']} held-out searches with a query "
                      f"({first['searches']['all']} with at least one other matching item)."]
    for size, subspaces, result in opq_rows:
        lines += [
            "",
            f"OPQ against plain PQ on the residual the last level sees ({subspaces} slices × {size} codes):",
            "",
            "| last level | relative reconstruction error | fit CPU s |",
            "|---|---:|---:|",
            f"| OPQ (rotation learned) | {result[True][0]:.4f} | {result[True][1]:.1f} |",
            f"| plain PQ (dimensions as they come) | {result[False][0]:.4f} | {result[False][1]:.1f} |",
        ]
    return "\n".join(lines) + "\n"


def _write(path: Path, section: str) -> None:
    """Replace this script's section (BEGIN … END) of `path`, or append it; the rest stays."""
    old = path.read_text() if path.exists() else ""
    block = section.rstrip("\n") + "\n\n" + END + "\n"
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + block + old[old.index(END) + len(END):].lstrip("\n")
    else:
        new = old.rstrip("\n") + "\n\n" + block
    path.write_text(new)
    print(section)


if __name__ == "__main__":
    sys.exit(main())
