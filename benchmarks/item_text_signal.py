"""How much next-item signal an item table's text carries: Beauty's real titles vs Sports' keyword "titles".

    .venv/bin/python benchmarks/item_text_signal.py [--part valid] [--dense beauty=RUN sports=RUN]

Sports' `title` column holds generated item-ID keywords, not product titles
(shared/data/README.md). The Semantic IDs and the generative model read item
text, so this probe asks what that text is worth, on the same split and
requests as benchmarks/amazon_beauty.py and amazon_sports.py: rank every item
by the cosine between its text and the text of the user's last history item
(history items removed from the answer — the probe measures text similarity,
not repeat purchases), for three texts of each item — the title only, the
category path + brand only, and both. TF-IDF (word unigrams + bigrams,
sublinear tf) keeps it cheap and deterministic; `--dense` adds the same probe
on the MiniLM vectors a run folder already cached (title + category + brand +
attributes, the text the SIDs are built from).

Writes benchmarks/results/item_text_signal.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse
from sequential import RESULTS, SHARED
from sklearn.feature_extraction.text import TfidfVectorizer

from genrec.data.loaders import load_p5_amazon
from genrec.data.splits import build_requests, leave_one_out
from genrec.eval.metrics import ndcg_at_k, recall_at_k

DATASETS = ("amazon-beauty", "amazon-sports")
K = 10
BATCH = 2048


def texts(items: pd.DataFrame) -> dict[str, list[str]]:
    """The three texts of every item, in row order. Why three: the title alone, the
    attributes alone and both separate what the title adds over brand + category."""
    attributes = [" ".join([*(c for c in cat), *([b] if isinstance(b, str) else [])])
                  for cat, b in zip(items["category"], items["brand"])]
    titles = [str(t) for t in items["title"]]
    return {"title only": titles, "category + brand only": attributes,
            "title + category + brand": [f"{t} {a}" for t, a in zip(titles, attributes)]}


def probe(vectors, row_of: dict[int, int], item_ids: np.ndarray, requests, targets) -> tuple[float, float]:
    """R@10 and N@10 of ranking all items by cosine to the last history item's vector.
    `vectors`: rows L2-normalised (sparse or dense), one per entry of `item_ids`."""
    ranked = np.empty((len(requests), K), dtype=np.int64)
    for start in range(0, len(requests), BATCH):
        chunk = requests[start:start + BATCH]
        last = np.array([row_of[r.history[-1]] for r in chunk])
        scores = vectors[last] @ vectors.T
        scores = scores.toarray() if sparse.issparse(scores) else np.asarray(scores)
        scores = scores.astype(np.float32)
        for i, request in enumerate(chunk):
            scores[i, [row_of[h] for h in request.history]] = -np.inf
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        order = np.take_along_axis(scores, top, 1).argsort(axis=1)[:, ::-1]
        ranked[start:start + len(chunk)] = item_ids[np.take_along_axis(top, order, 1)]
    return recall_at_k(ranked, targets, K).mean, ndcg_at_k(ranked, targets, K).mean


def text_stats(title: list[str]) -> str:
    words = [t.split() for t in title]
    unique = len(set(title)) / len(title)
    return f"{np.mean([len(w) for w in words]):.1f} words, {unique:.3f} unique"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", default="valid", choices=("valid", "test"))
    parser.add_argument("--dense", nargs="*", default=[], metavar="DATASET=RUN",
                        help="also probe a run folder's cached MiniLM item vectors, e.g. amazon-sports=runs/sports")
    args = parser.parse_args()
    dense_runs = dict(pair.split("=", 1) for pair in args.dense)
    began = time.process_time()
    rows = []
    for name in DATASETS:
        dataset = load_p5_amazon(SHARED / name)
        requests, targets = build_requests(leave_one_out(dataset.events), args.part, max_history=20)
        items = dataset.items.reset_index(drop=True)
        item_ids = items["item_id"].to_numpy()
        row_of = {int(i): r for r, i in enumerate(item_ids)}
        for label, text in texts(items).items():
            matrix = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2).fit_transform(text).tocsr()
            recall, ndcg = probe(matrix, row_of, item_ids, requests, targets)
            rows.append((name, f"TF-IDF, {label}", recall, ndcg))
            print(rows[-1], file=sys.stderr, flush=True)
        if name in dense_runs:
            cached = sorted((Path(dense_runs[name]) / "features").glob("item_vectors-*.npz"))
            if not cached:
                raise ValueError(f"--dense {name}={dense_runs[name]}: no features/item_vectors-*.npz in that run")
            z = np.load(cached[0])
            order = {int(i): r for r, i in enumerate(z["item_ids"])}
            vectors = z["vectors"][[order[int(i)] for i in item_ids]]
            recall, ndcg = probe(vectors, row_of, item_ids, requests, targets)
            rows.append((name, "MiniLM (the SIDs' input text), cached", recall, ndcg))
        rows.append((name, f"title text: {text_stats([str(t) for t in items['title']])}", np.nan, np.nan))
    cpu = time.process_time() - began
    lines = [
        "# Next-item signal in the item text: Beauty's titles vs Sports' keyword \"titles\"",
        "",
        f"Command: `{' '.join(['.venv/bin/python'] + sys.argv)}`  ",
        f"Split part: **{args.part}**, every user, full ranking, history items removed; score = cosine to the "
        f"last history item's text. Machine: {platform.machine()}; {cpu:.0f} s CPU; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| data set | item text | recall@10 | ndcg@10 |",
        "|---|---|---|---|",
    ]
    for name, label, recall, ndcg in rows:
        cells = "— | —" if np.isnan(recall) else f"{recall:.4f} | {ndcg:.4f}"
        lines.append(f"| {name} | {label} | {cells} |")
    lines.append("")
    out = RESULTS / "item_text_signal.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
