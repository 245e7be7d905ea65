"""Semantic IDs on one catalog: RQ-KMeans vs RQ-VAE vs random codes, and the cost of embedding.

    .venv/bin/python benchmarks/sid.py --run runs/dev [--seed 0] [--embed-sample 2048]

Reads RUN/data (run `genrec data synth --out RUN/data` first), reuses the cached
item vectors in RUN/features (`genrec embed`), and writes
`benchmarks/results/sid.md`:

Tokenizers run with their defaults (`spread_last_level=True`); RQ-KMeans is
also shown with a plain nearest-code last level.

* embedding throughput: MiniLM on the item texts, uncached, timed end to end
  (model load excluded), and the time it implies for 10k items;
* per tokenizer: collision rate before disambiguation, per-level codebook usage
  and normalised entropy, items per leaf prefix, disambiguation size, fit time,
  and how well the codes follow the catalog: *category purity* at depth d = share
  of items whose depth-d code prefix is mostly (plurality) of their own leaf category.
  Random codes of the same sizes are the baseline for both: they collide least
  (nothing pulls items together) and follow no category.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sid_tokenizers import MARKER

from genrec.data.dataset import Dataset
from genrec.features import encode_items, encode_texts, item_text, load_text_encoder
from genrec.sid import RQKMeansTokenizer, RQVAETokenizer, adaptive_codebook_size, append_disambiguation_level, sid_report

RESULTS = Path(__file__).parent / "results" / "sid.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/dev")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--embed-sample", type=int, default=0, help="items to time the encoder on (0: all)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    run = Path(args.run)
    dataset = Dataset.load(run / "data")
    texts = item_text(dataset.items)
    sample = texts if args.embed_sample <= 0 else texts[: args.embed_sample]
    load_text_encoder()
    start = time.perf_counter()
    encode_texts(sample, progress=True)
    embed_seconds = time.perf_counter() - start
    per_10k = embed_seconds / len(sample) * 10_000

    vectors = encode_items(dataset, run / "features", progress=True)
    leaf = dataset.items["category"].map(lambda path: " > ".join(path)).to_numpy()
    n = len(vectors)
    size = adaptive_codebook_size(n, args.levels)

    rows = []
    for name, make in (
        ("random codes", None),
        ("rqkmeans, nearest last level", lambda: RQKMeansTokenizer(args.levels, seed=args.seed, spread_last_level=False)),
        ("rqkmeans", lambda: RQKMeansTokenizer(args.levels, seed=args.seed)),
        ("rqvae", lambda: RQVAETokenizer(args.levels, seed=args.seed, progress=True)),
    ):
        start = time.perf_counter()
        if make is None:
            semantic = np.random.default_rng(args.seed).integers(0, size, (n, args.levels))
            codes = append_disambiguation_level(semantic)
        else:
            codes = make().fit_transform(vectors.vectors)
        seconds = time.perf_counter() - start
        report = sid_report(codes, args.levels, [size] * args.levels)
        purity = [_category_purity(codes[:, : depth + 1], leaf) for depth in range(args.levels)]
        rows.append((name, report, purity, seconds))
        print(f"{name}: collision rate {report['collision_rate']:.4f}, fit {seconds:.1f} s", file=sys.stderr)

    text = _markdown(args, n, size, len(sample), embed_seconds, per_10k, rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    old = out.read_text() if out.exists() else ""
    kept = old[old.index(MARKER):] if MARKER in old else ""  # the tokenizer comparison of sid_tokenizers.py
    out.write_text(text + ("\n" + kept if kept else ""))
    print(text)
    return 0


def _category_purity(prefixes: np.ndarray, leaf: np.ndarray) -> float:
    frame = pd.DataFrame({"group": _group_ids(prefixes), "leaf": leaf})
    plurality = frame.groupby(["group", "leaf"]).size().groupby(level="group").max()
    return float(plurality.sum() / len(frame))


def _group_ids(prefixes: np.ndarray) -> np.ndarray:
    return np.unique(prefixes, axis=0, return_inverse=True)[1].reshape(-1)


def _markdown(args, n, size, n_sample, embed_seconds, per_10k, rows) -> str:
    command = f".venv/bin/python benchmarks/sid.py --run {args.run} --seed {args.seed} --threads {args.threads}"
    if args.embed_sample:
        command += f" --embed-sample {args.embed_sample}"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# Semantic IDs on the default world",
        "",
        f"- command: `{command}`",
        f"- machine: {platform.platform()}, {os.cpu_count()} cores, {args.threads} torch thread(s), load average at the end {load:.1f}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, seed {args.seed}",
        f"- catalog: {n} items from `{args.run}/data`; {args.levels} semantic levels, adaptive codebook size {size}",
        "",
        "## Embedding (MiniLM, uncached, model load excluded)",
        "",
        "| texts | seconds | texts / s | implied seconds for 10k items |",
        "|---:|---:|---:|---:|",
        f"| {n_sample} | {embed_seconds:.1f} | {n_sample / embed_seconds:.1f} | {per_10k:.0f} |",
        "",
        "## Tokenizers (before the disambiguation level)",
        "",
        "| tokenizer | collision rate | usage per level | normalised entropy per level | items / leaf max | p99 | disambiguation size | category purity depth 1…L | fit s | fit time vs RQ-KMeans |",
        "|---|---:|---|---|---:|---:|---:|---|---:|---:|",
    ]
    base = next(seconds for name, _, _, seconds in rows if name == "rqkmeans")
    for name, report, purity, seconds in rows:
        usage = " / ".join(f"{row['usage']:.2f}" for row in report["per_level"])
        entropy = " / ".join(f"{row['normalized_entropy']:.2f}" for row in report["per_level"])
        pur = " / ".join(f"{p:.2f}" for p in purity)
        lines.append(
            f"| {name} | {report['collision_rate']:.4f} | {usage} | {entropy} | {report['items_per_leaf_max']} "
            f"| {report['items_per_leaf_p99']:.0f} | {report['disambiguation_size']} | {pur} | {seconds:.1f} | {seconds / base:.2f}× |"
        )
    lines += [
        "",
        "Collision rate: share of items whose semantic prefix another item shares. Usage: codes used / codebook size.",
        "Normalised entropy: entropy of the level's code distribution / log2(codebook size), 1 = uniform.",
        "Category purity at depth d: share of items whose first-d-codes group is mostly of their own leaf category",
        "(small groups are pure by chance, which is why random codes score high at full depth; compare at depth 1–2).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
