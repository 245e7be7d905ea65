"""LLM4PR as the post-rank stage over the cascade's (and the aligned generative model's) top 10, default world.

    PYTHONPATH=src OMP_NUM_THREADS=2 .venv/bin/python benchmarks/llm4pr.py --run RUN --retrievers cascade,generative-aligned

RUN is a `genrec demo` run folder (data, SIDs, the trained cascade, the aligned generative model).
The post-ranker is a stacker on top of a trained retriever, so it learns from requests the retriever
never trained on: the validation requests, split in two by a seeded draw — one half fits it (lists
whose held-out item is among the top 10), the other picks its epoch by NDCG@10. Test requests are
then re-ordered once. Re-ordering the top 10 cannot change Recall@10, so NDCG@10 is the measure;
search and recommendation are reported apart, with a paired randomization test against the
retriever's own order. Writes `benchmarks/results/llm4pr.md`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from genrec.cascade.retriever import CascadeRetriever
from genrec.data.dataset import Dataset
from genrec.data.splits import build_requests, interactions, leave_one_out
from genrec.eval.bootstrap import bootstrap_means, paired_test, percentile_interval
from genrec.features.text import load_text_encoder
from genrec.postrank.llm4pr import FEATURES, LLM4PR, LanguageModel, LLM4PRConfig, candidate_features, encode_lists, list_ndcg
from genrec.registry import build_retriever

RESULTS = Path(__file__).parent / "results" / "llm4pr.md"


def own_order_ndcg(item_ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """NDCG@10 `[lists]` of the lists in the order the retriever gave them."""
    return list_ndcg(-np.tile(np.arange(item_ids.shape[1], dtype=float), (len(item_ids), 1)), item_ids, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--retrievers", default="cascade,generative-aligned")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-test", type=int, default=0, help="seeded sample of test requests (0: all)")
    parser.add_argument("--epochs", type=int, default=LLM4PRConfig.epochs)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began, began_cpu, load_before = time.perf_counter(), time.process_time(), os.getloadavg()

    def say(message: str) -> None:
        print(f"[llm4pr {time.perf_counter() - began:6.0f}s] {message}", flush=True)

    config = LLM4PRConfig(epochs=args.epochs)
    dataset = Dataset.load(args.run / "data")
    split = leave_one_out(dataset.events)
    titles = dict(zip(dataset.items["item_id"].astype(int), dataset.items["title"].astype(str)))
    counts = np.bincount(interactions(split.train)["item_id"].to_numpy(np.int64),
                         minlength=int(dataset.items["item_id"].max()) + 1)
    cascade = CascadeRetriever.from_run(args.run, dataset, split)
    language_model = LanguageModel(load_text_encoder(), config.trainable_layers)
    valid, valid_targets = build_requests(split, "valid", max_history=50)
    test, test_targets = build_requests(split, "test", max_history=50)
    if args.max_test and args.max_test < len(test):
        pick = np.sort(np.random.default_rng(0).choice(len(test), args.max_test, replace=False))
        test, test_targets = [test[i] for i in pick], test_targets[pick]
    halves = np.random.default_rng(1).permutation(len(valid))
    fit_rows, select_rows = np.sort(halves[: len(valid) // 2]), np.sort(halves[len(valid) // 2:])

    sections = []
    for name in [n.strip() for n in args.retrievers.split(",") if n.strip()]:
        base = cascade if name == "cascade" else build_retriever(name, args.run, dataset, split)

        def lists_of(requests, targets, base=base):
            ranked = base.retrieve(requests, config.candidates)
            features = candidate_features(cascade, requests, ranked, counts, config.candidates)
            lists = encode_lists(language_model, requests, ranked, features, titles, config)
            hit = lists.item_ids == np.asarray(targets)[:, None]
            return lists, np.where(hit.any(1), hit.argmax(1), -1)

        say(f"{name}: encoding validation and test lists")
        fit_lists, fit_labels = lists_of([valid[i] for i in fit_rows], valid_targets[fit_rows])
        select_lists, select_labels = lists_of([valid[i] for i in select_rows], valid_targets[select_rows])
        test_lists, test_labels = lists_of(test, test_targets)
        say(f"{name}: fitting on {int((fit_labels >= 0).sum())} lists with their item, choosing on "
            f"{len(select_rows)} validation requests")
        fit_began = time.process_time()
        post_ranker = LLM4PR(language_model, config)
        post_ranker.fit(fit_lists, fit_labels, select_lists, select_labels)
        fit_cpu = time.process_time() - fit_began
        order_ndcg = own_order_ndcg(test_lists.item_ids, test_labels)
        post_ndcg = list_ndcg(post_ranker.score(test_lists), test_lists.item_ids, test_labels)
        select_base = own_order_ndcg(select_lists.item_ids, select_labels).mean()
        is_search = np.array([bool(r.query) for r in test])
        rows = []
        for task, mask in (("search", is_search), ("recommendation", ~is_search)):
            if not mask.any():
                continue
            low, high = percentile_interval(bootstrap_means(np.c_[order_ndcg[mask], post_ndcg[mask]]))
            diff, d_low, d_high, p = paired_test(post_ndcg[mask], order_ndcg[mask])
            rows.append(f"| {task} | {int(mask.sum()):,} | {order_ndcg[mask].mean():.4f} [{low[0]:.4f}, {high[0]:.4f}] "
                        f"| {post_ndcg[mask].mean():.4f} [{low[1]:.4f}, {high[1]:.4f}] | {diff:+.4f} [{d_low:+.4f}, "
                        f"{d_high:+.4f}] | {'< 0.001' if p < 0.001 else f'{p:.3f}'} |")
        epochs = ", ".join(f"{v:.4f}" for v in post_ranker.valid_ndcg_)
        sections += [f"## {name} + LLM4PR", "",
                     f"Fitted on {int((fit_labels >= 0).sum()):,} validation lists holding their item (of "
                     f"{len(fit_rows):,}); selection half ({len(select_rows):,} requests) NDCG@10 per epoch: {epochs} "
                     f"(the retriever's own order: {select_base:.4f}); fit {fit_cpu / 60:.1f} CPU-min.", "",
                     f"| test requests | n | {name} NDCG@10 [95% CI] | + LLM4PR NDCG@10 [95% CI] | Δ [95% CI] | p |",
                     "|---|---:|---:|---:|---:|---:|", *rows, ""]
        say(f"{name}: done; test NDCG@10 {order_ndcg.mean():.4f} → {post_ndcg.mean():.4f}")

    cpu, wall, load_after = time.process_time() - began_cpu, time.perf_counter() - began, os.getloadavg()
    command = " ".join(["PYTHONPATH=src .venv/bin/python benchmarks/llm4pr.py", *sys.argv[1:]])
    lines = ["# LLM4PR: post-ranking the top 10 with MiniLM reading the ranker's features", "",
             f"- command: `{command}`",
             f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.platform()}, {os.cpu_count()} "
             f"cores (shared), {args.threads} torch threads; CPU {cpu / 60:.1f} min, wall {wall / 60:.1f} min; load "
             f"average {load_before[0]:.1f} before, {load_after[0]:.1f} after",
             f"- post-ranker: `{config}`; features: {', '.join(FEATURES)}",
             "- metric: NDCG@10 of the held-out item after re-ordering each answer's top 10 (Recall@10 cannot "
             "change); interval: 1000 bootstrap resamples of test requests; p: paired sign-flip randomization test", "",
             *sections]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    say(f"wrote {args.out}")


if __name__ == "__main__":
    main()
