"""The relevance-judgement task: graded NDCG and a relevance classifier, on the default world and on judged data.

    .venv/bin/python benchmarks/relevance.py --run runs/demo   # needs RUN/data (with truth.npz), features, cascade, train

1. Ranking. Each retriever's top 10 for the world's search requests (a seeded
   sample of the validation and the test part) is scored by NDCG@10 with gains
   2^grade − 1, where every item's grade is the world's truth
   (`WorldTruth.graded_relevance`: 3 when the item carries every concept the
   query names, 0 when none). Unlike Recall@10 on the one item the user took,
   this credits every item that answers the query.
2. Classification. BM25's and dense's score of a (query, item) pair,
   thresholded, says relevant (grade ≥ 2) or not. Pairs are sampled per request
   stratified by grade (up to 3 items of each grade 0–3), because nearly every
   item in the catalogue is irrelevant to a given query. The threshold
   maximises macro-F1 on the validation pairs and is applied unchanged to the
   test pairs.
3. Judged data through the loaders: ESCI (E/S/C/I → 3/2/1/0) and KuaiSearch
   (0–3), each from the folder given (by default the loaders' test fixtures: a
   handful of rows, so those rows check the path end to end and measure
   nothing).

Writes benchmarks/results/relevance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Literal

import numpy as np

from genrec.artifacts import MissingStageError
from genrec.baselines.bm25 import BM25Retriever
from genrec.baselines.popularity import n_item_slots
from genrec.data.dataset import Dataset
from genrec.data.loaders import load_esci, load_kuaisearch
from genrec.data.splits import build_requests, leave_one_out
from genrec.data.truth import TRUTH_FILE, WorldTruth
from genrec.eval.bootstrap import bootstrap_means, percentile_interval
from genrec.eval.metrics import ranked_matrix, recall_at_k
from genrec.eval.relevance import (
    best_threshold,
    binarise,
    classification_scores,
    exponential_gain,
    graded_ndcg_at_k,
    judgements_from_events,
)
from genrec.registry import build_retriever
from genrec.retrieval import Request

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
RESULTS = Path(__file__).parent / "results" / "relevance.md"
RELEVANT_GRADE = 2
PAIRS_PER_GRADE = 3
K = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/demo", help="a run of the generated world: data (with truth.npz), features, cascade, train")
    parser.add_argument("--retrievers", default="oracle,bm25,dense,cascade,generative")
    parser.add_argument("--max-requests", type=int, default=500, help="search requests sampled per part (seeded)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--esci", type=Path, default=FIXTURES / "esci", help="folder with the ESCI examples and products tables")
    parser.add_argument("--kuaisearch", type=Path, default=FIXTURES / "kuaisearch", help="folder with KuaiSearch's relevance.jsonl")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    start, cpu_start = time.perf_counter(), time.process_time()
    run = Path(args.run)
    dataset = Dataset.load(run / "data")
    split = leave_one_out(dataset.events)
    truth = WorldTruth.load(run / "data" / TRUTH_FILE)
    names = [n.strip() for n in args.retrievers.split(",") if n.strip()]
    retrievers, notes = {}, []
    for name in names:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            retrievers[name], note = _build(name, run, dataset, split)
        notes += [f"{name}: {w.message}" for w in caught if "trained by other" in str(w.message)]
        if note:
            notes.append(note)

    ranking: dict[str, dict[str, tuple[float, ...]]] = {}
    pairs: dict[str, dict[str, np.ndarray]] = {}
    counts: dict[str, tuple[int, int]] = {}
    parts: tuple[Literal["valid", "test"], ...] = ("valid", "test")
    for part in parts:
        requests, targets, judgements, drawn = _search_requests(split, truth, part, args.max_requests, args.seed)
        counts[part] = (drawn, len(requests))
        ranking[part] = {}
        for name, retriever in retrievers.items():
            answers = [a for i in range(0, len(requests), 64) for a in retriever.retrieve(requests[i:i + 64], K)]
            ranked = ranked_matrix(answers, K)
            ndcg = graded_ndcg_at_k(ranked, judgements, K).values
            exact = np.mean([[judged.get(int(i), 0) == 3 for i in row] for row, judged in zip(ranked, judgements)])
            low, high = percentile_interval(bootstrap_means(ndcg, 1000, args.seed))
            took = recall_at_k(ranked, targets, K).mean
            ranking[part][name] = (float(ndcg.mean()), float(low[0]), float(high[0]), float(exact), float(took))
        pairs[part] = _scored_pairs(requests, truth, retrievers, args.seed)

    classifier = {}
    for scorer in ("bm25", "dense"):
        if scorer not in retrievers:
            continue
        threshold = best_threshold(pairs["valid"][scorer], binarise(pairs["valid"]["grade"], RELEVANT_GRADE))
        test_labels = binarise(pairs["test"]["grade"], RELEVANT_GRADE)
        classifier[scorer] = (threshold, classification_scores(test_labels, (pairs["test"][scorer] >= threshold).astype(np.int64)))

    judged = {"ESCI": (args.esci, load_esci), "KuaiSearch": (args.kuaisearch, load_kuaisearch)}
    judged_rows = {name: _judged_data_set(loader(folder)) for name, (folder, loader) in judged.items()}

    lines = _report(args, run, ranking, counts, pairs, classifier, judged, judged_rows, notes,
                    time.perf_counter() - start, time.process_time() - cpu_start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _build(name: str, run: Path, dataset: Dataset, split):
    """The named retriever, and a note when the run's cascade was trained by an earlier cascade code revision."""
    try:
        return build_retriever(name, run, dataset, split), ""
    except MissingStageError:
        folder = run / "cascade" / "model"
        if name != "cascade" or not (folder / "manifest.json").exists():
            raise
    from genrec.cascade.retriever import CascadeRetriever, load_cascade, recall_sources

    model = load_cascade(run)
    return CascadeRetriever(model, recall_sources(run, dataset, split, model.config)), (
        f"cascade: loaded the saved model in {folder} as it is, not retrained.")


def _search_requests(split, truth: WorldTruth, part: Literal["valid", "test"], max_requests: int, seed: int):
    """A seeded sample of the part's search requests that have something relevant: the requests, the items
    their users took `[n]`, their judgements, and how many were drawn."""
    all_requests, all_targets = build_requests(split, part)
    search = [i for i, r in enumerate(all_requests) if r.is_search]
    rng = np.random.default_rng(seed)
    if max_requests < len(search):
        search = [search[i] for i in np.sort(rng.choice(len(search), size=max_requests, replace=False))]
    kept, judgements = [], []
    for i in search:
        grades = truth.graded_relevance(str(all_requests[i].query))
        positive = np.flatnonzero(grades > 0)
        if len(positive):
            kept.append(i)
            judgements.append(dict(zip((positive + 1).tolist(), grades[positive].tolist())))
    return [all_requests[i] for i in kept], np.asarray(all_targets)[kept], judgements, len(search)


def _scored_pairs(requests, truth: WorldTruth, retrievers, seed: int) -> dict[str, np.ndarray]:
    """Up to PAIRS_PER_GRADE items of each grade per request, their grades, and each pair scorer's score."""
    rng = np.random.default_rng(seed + 1)
    scorers = {name: retrievers[name] for name in ("bm25", "dense") if name in retrievers}
    out: dict[str, list] = {"grade": [], **{name: [] for name in scorers}}
    for request in requests:
        grades = truth.graded_relevance(str(request.query))
        chosen = np.concatenate([rng.permutation(np.flatnonzero(grades == g))[:PAIRS_PER_GRADE] for g in range(4)])
        items = chosen + 1
        out["grade"].append(grades[chosen])
        for name, scorer in scorers.items():
            out[name].append(scorer.score_query(request.query)[items])
    return {name: np.concatenate(values) for name, values in out.items()}


def _judged_data_set(dataset: Dataset) -> dict:
    """BM25 on a judged data set's own catalogue: graded NDCG@10 and the grade counts."""
    queries, judgements = judgements_from_events(dataset.events)
    bm25 = BM25Retriever().fit(dataset, np.zeros(n_item_slots(dataset)))
    answers = bm25.retrieve([Request(user_id=0, query=q, scenario="search") for q in queries], K)
    has_positive = [any(g > 0 for g in j.values()) for j in judgements]
    ndcg = graded_ndcg_at_k(ranked_matrix(answers, K), judgements, K).values[has_positive]
    grades = np.array([g for j in judgements for g in j.values()])
    return {"queries": len(queries), "pairs": len(grades), "grades": np.bincount(grades, minlength=4).tolist(),
            "ndcg": float(ndcg.mean()) if len(ndcg) else float("nan")}


def _report(args, run, ranking, counts, pairs, classifier, judged, judged_rows, notes, wall, cpu) -> list[str]:
    command = ".venv/bin/python benchmarks/relevance.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [
        "# Relevance judgement: graded NDCG and a relevance classifier", "",
        f"Command: `{command}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {args.threads} thread(s); "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; seed {args.seed}; "
        f"{wall:.0f} s wall, {cpu:.0f} s CPU.", "",
        f"## Ranking on the generated world (`{run}`): NDCG@{K} with gains 2^grade − 1", "",
        "Grades from the world's truth: an item's grade is round(3 × the share of the query's concepts it carries). "
        f"Each part: a seeded sample of its search requests ({', '.join(f'{p} {counts[p][1]} of {counts[p][0]} drawn' for p in counts)}"
        " have at least one item of grade ≥ 1). Interval: 95% bootstrap over requests. "
        f"Exact@{K}: the share of the top {K} that carries every concept of the query (grade 3). "
        f"Took@{K}: Recall@{K} of the one item the user took (the usual search metric), on the same requests.", "",
        "| retriever | valid graded NDCG@10 | test graded NDCG@10 | test 95% interval | test exact@10 | test took@10 |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for name in ranking["test"]:
        v, t = ranking["valid"][name], ranking["test"][name]
        lines.append(f"| {name} | {v[0]:.4f} | {t[0]:.4f} | [{t[1]:.4f}, {t[2]:.4f}] | {t[3]:.3f} | {t[4]:.3f} |")
    if "oracle" in ranking["test"]:
        lines += ["", "The oracle ranks by what the user will take (their preference plus the query's concepts), not by "
                      "relevance alone, so it is not this metric's ceiling: ranking by grade scores 1.0."]
    lines += ["", "## A relevance classifier on the generated world", "",
              f"Relevant = grade ≥ {RELEVANT_GRADE}. Pairs: up to {PAIRS_PER_GRADE} items of each grade 0–3 per request "
              f"(valid {len(pairs['valid']['grade'])} pairs, {binarise(pairs['valid']['grade'], RELEVANT_GRADE).mean():.2f} relevant; "
              f"test {len(pairs['test']['grade'])} pairs, {binarise(pairs['test']['grade'], RELEVANT_GRADE).mean():.2f} relevant). "
              "The threshold maximises macro-F1 on the validation pairs; the scores are on the test pairs.", "",
              "| scorer | threshold (from valid) | test accuracy | test macro-F1 | F1 relevant | F1 not relevant |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, (threshold, scores) in classifier.items():
        lines.append(f"| {name} | {threshold:.4f} | {scores.accuracy:.4f} | {scores.macro_f1:.4f} | "
                     f"{scores.per_class[1].f1:.4f} | {scores.per_class[0].f1:.4f} |")
    lines += ["", "## Judged data through the loaders", "",
              "BM25 over each data set's own catalogue (every judged product), graded NDCG@10 against the judgements "
              "(queries with a positive grade). The default folders are the loaders' test fixtures — a few "
              "hand-written rows in the published formats — so these rows show the path runs end to end and "
              "measure nothing; point `--esci` / `--kuaisearch` at the real files to measure.", "",
              "| data set | folder | queries | judged pairs | grades 0/1/2/3 | BM25 graded NDCG@10 |", "|---|---|---:|---:|---|---:|"]
    for name, row in judged_rows.items():
        folder = judged[name][0]
        shown = folder.relative_to(ROOT) if folder.resolve().is_relative_to(ROOT) else folder
        lines.append(f"| {name} | `{shown}` | {row['queries']} | {row['pairs']} | "
                     f"{'/'.join(map(str, row['grades']))} | {row['ndcg']:.4f} |")
    gains = exponential_gain(np.arange(4)).astype(int).tolist()
    lines += ["", f"Gains per grade 0/1/2/3: {gains}."]
    if notes:
        lines += ["", "Notes:"] + [f"- {note}" for note in notes]
    lines += ["", "<details><summary>raw numbers</summary>", "", "```json",
              json.dumps({"ranking": ranking, "classifier": {n: {"threshold": t, "accuracy": s.accuracy, "macro_f1": s.macro_f1}
                                                             for n, (t, s) in classifier.items()},
                          "judged": judged_rows}, indent=1), "```", "</details>"]
    return lines


if __name__ == "__main__":
    main()
