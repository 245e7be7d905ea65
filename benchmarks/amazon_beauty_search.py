"""Personalised product search on Amazon Beauty, under the protocol of the product search literature.

Amazon Beauty logs purchases, not queries. Following Van Gysel et al. (CIKM 2016) and
Ai et al. (SIGIR 2017, HEM), each purchase gets the query made from the purchased
item's category path (`genrec.data.category_queries`); the task is to rank, over the
whole catalogue, the item this user bought for this query. The split is the
recommendation benchmark's leave-one-out (last purchase → test, second last →
validation), so each user's test query is built from their last purchase.

    .venv/bin/python benchmarks/amazon_beauty_search.py --run runs/beauty-search --parts valid --max-requests 2000
    .venv/bin/python benchmarks/amazon_beauty_search.py --run runs/beauty-search          # valid and test tables

Writes benchmarks/results/amazon_beauty_search.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from amazon_beauty import SID_LEVELS, SID_PREFIX
from sequential import RESULTS, SHARED, _commit, _device

from genrec.data.category_queries import item_queries, with_category_queries
from genrec.data.dataset import Dataset
from genrec.data.loaders import load_p5_amazon
from genrec.data.splits import build_requests, leave_one_out, sample_requests
from genrec.eval.harness import EvalConfig, EvalReport, evaluate

NAME = "amazon_beauty_search"
MAX_HISTORY = 20
GENERATIVE = Path(__file__).parent.parent / "configs" / "amazon_beauty_search.toml"
FULL_STEPS = 6000
"""The recommendation benchmark's chosen schedule (configs/amazon_beauty.toml, ≈ 32 epochs of 128 windows)."""
ROWS = "bm25,dense,itemcf,cascade,generative"
COLUMNS = (("recall@10", "all"), ("ndcg@10", "all"), ("recall@10", "long_tail_items"))

PROTOCOL = (
    "P5/TIGER Amazon Beauty 5-core (22,363 users, 12,101 items). Every purchase is a search whose query is "
    "the purchased item's category path (Van Gysel et al., CIKM 2016; Ai et al., SIGIR 2017): the words of "
    "the path's levels, root to leaf, lowercased, stopwords (Lucene's English set) removed, a word repeated "
    "across levels kept once at its deepest level. P5's item table gives one path per item with the shared "
    "root \"Beauty\" already dropped, so each purchase has exactly one query and no path is ignored (HEM ignores "
    "one-level paths; with the root, every path here has two levels or more). Leave-one-out per user: last "
    "purchase → test, second last → validation, the rest → training, each request's history the last 20 "
    "purchases before it. Full ranking over all 12,101 items, no sampled negatives. HEM itself hid a random "
    "30% of each user's purchases and split queries, not time; the leave-one-out split is used here so the "
    "requests are the recommendation benchmark's (benchmarks/amazon_beauty.py) with a query added.")

WEAKER = (
    "**Where this protocol is weaker than real query logs.** The queries are category paths, not what shoppers "
    "type: {n_queries} distinct queries for {n_items:,} items (a median of {median:.0f} items share one query, "
    "the largest {largest} items), so the query alone narrows the catalogue to a category and the rest of the "
    "task is personalisation — which item of that category this user buys. The protocol therefore rewards "
    "category match plus a good user model, and it cannot show what real logs test: lexical variety (synonyms, "
    "brand and product names, attributes such as size or shade), misspellings and partial queries, vague or "
    "multi-intent queries, and the heavy skew of query frequency (a head of very frequent queries and a long "
    "tail seen once). The query is also built from the target itself, so it is never wrong about the "
    "category, which real queries often are. Numbers here measure personalised ranking within a known "
    "category; they are not evidence about query understanding.")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/beauty-search", help="run folder (data, features, sid, cascade, train/*)")
    parser.add_argument("--parts", default="valid,test", help="split parts to evaluate, comma-separated")
    parser.add_argument("--retrievers", default=ROWS)
    parser.add_argument("--steps", type=int, default=None, help="generative training steps (default: the config's)")
    parser.add_argument("--max-requests", type=int, default=None, help="evaluate a seeded subset of each part (screening only)")
    parser.add_argument("--device", default="auto", help="training device for the generative model (cpu, cuda, auto)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--config", type=Path, default=GENERATIVE, help="generative training config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one field of the generative config, dotted (repeatable)")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: rewrite the results file from the run folder's stored rows")
    parser.add_argument("--out", default=None, help="results file (default: benchmarks/results/amazon_beauty_search.md)")
    return parser.parse_args()


def load_search_dataset() -> Dataset:
    """Amazon Beauty with every purchase a search for its item's category query."""
    return with_category_queries(load_p5_amazon(SHARED / "amazon-beauty"))


def main() -> None:
    from genrec.registry import build_retriever
    from genrec.stages import train_missing

    args = parse_args()
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    began, began_cpu = time.perf_counter(), time.process_time()
    commit = _commit()
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def stage(label: str, action: Callable[[], object]) -> object:
        start, start_cpu = time.perf_counter(), time.process_time()
        print(f"== {label}", file=sys.stderr, flush=True)
        result = action()
        seconds[label], cpu[label] = time.perf_counter() - start, time.process_time() - start_cpu
        print(f"== {label}: {seconds[label]:.0f}s wall, {cpu[label]:.0f}s CPU", file=sys.stderr, flush=True)
        return result

    out = Path(args.out) if args.out else RESULTS / f"{NAME}.md"
    if args.render:
        dataset = Dataset.load(run / "data")
        split = leave_one_out(dataset.events)
        store = json.loads((run / f"{NAME}_rows.json").read_text())
        out.write_text(_markdown(dataset, store, {part: len(split.targets(part)) for part in ("valid", "test")}))
        print(f"wrote {out}", file=sys.stderr)
        return
    if not (run / "data" / "manifest.json").exists():
        stage("load data, build queries", lambda: load_search_dataset().save(run / "data", source=NAME))
    dataset = Dataset.load(run / "data")
    split = leave_one_out(dataset.events)
    names = [n.strip() for n in args.retrievers.split(",") if n.strip()]

    steps = None
    if "generative" in names:
        from genrec.model.retriever import MODEL_DIR
        from genrec.sid.build import build_sids
        from genrec.train.config_file import load_train_config
        from genrec.train.generative import train_generative

        if not (run / "sid" / "manifest.json").exists():
            stage("Semantic IDs", lambda: build_sids(run, levels=SID_LEVELS, prefix=SID_PREFIX))
        if not (run.joinpath(*MODEL_DIR) / "manifest.json").exists():
            config = load_train_config(args.config, args.overrides)
            config.train = replace(config.train, device=args.device, **({"steps": args.steps} if args.steps else {}))
            stage("train the generative retriever", lambda: train_generative(run, config, dataset=dataset, split=split))
        saved = json.loads((run.joinpath(*MODEL_DIR) / "config.json").read_text())
        steps = (int(saved["train"]["steps"]), int(saved["train"]["batch_size"]))

    def build(name: str):
        train_missing(run, [name], dataset, split)
        return build_retriever(name, run, dataset, split)

    retrievers = [stage(f"build {n}", lambda n=n: build(n)) for n in names]
    measured: dict[str, tuple[EvalReport, int]] = {}
    for part in [p.strip() for p in args.parts.split(",") if p.strip()]:
        requests, targets = build_requests(split, part, max_history=MAX_HISTORY)
        requests, targets = sample_requests(requests, targets, args.max_requests)
        report = stage(f"evaluate {part}", lambda r=requests, t=targets: evaluate(
            retrievers, r, t, dataset=dataset, split=split, config=EvalConfig(k=10, bootstrap=1000)))
        measured[part] = (report, len(requests))
        (run / f"{NAME}_{part}_{'+'.join(names)}.json").write_text(json.dumps(report.to_dict(), default=float, indent=1))

    invocation = {
        "command": " ".join([".venv/bin/python"] + sys.argv), "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load": list(_load()),
        "wall_s": time.perf_counter() - began, "cpu_s": time.process_time() - began_cpu,
        "stages": {k: [seconds[k], cpu[k]] for k in seconds}, "machine": f"{platform.machine()}, "
        f"{torch.get_num_threads()} torch thread(s), {_device(args)}"}
    store = _update_store(run / f"{NAME}_rows.json", measured, invocation, steps)
    text = _markdown(dataset, store, {part: len(split.targets(part)) for part in ("valid", "test")})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"wrote {out}", file=sys.stderr)


def _update_store(path: Path, measured: dict[str, tuple[EvalReport, int]], invocation: dict, steps) -> dict:
    """Add this invocation's rows to the run's row store and return it.

    Rows measured by separate invocations on the same run folder and the same requests
    (same part, same request count, seeded) belong in one table: the expensive generative
    row can then be trained and measured on its own. A part measured on another request
    count replaces the part's rows, so one table never mixes request sets."""
    store = json.loads(path.read_text()) if path.exists() else {"invocations": [], "parts": {}}
    store["invocations"].append(invocation)
    number = len(store["invocations"])
    if steps is not None:
        store["generative_batch"] = steps[1]
    for part, (report, n) in measured.items():
        entry = store["parts"].get(part)
        if entry is None or entry["requests"] != n:
            entry = store["parts"][part] = {"requests": n, "rows": {}}
        entry["long_tail"] = int(report.slices["long_tail_items"].sum())
        for name in report.retrievers:
            label = f"{name}, {steps[0]:,} steps" if name == "generative" and steps is not None else name
            entry["rows"][label] = {"cells": [list(report.value(name, metric, slice_name)) for metric, slice_name in COLUMNS],
                                    "invocation": number}
    path.write_text(json.dumps(store, indent=1))
    return store


def _markdown(dataset, store: dict, totals: dict[str, int]) -> str:
    """The results file from the row store; `totals`: each part's full request count."""
    per_query = np.bincount(np.unique(list(item_queries(dataset).values()), return_inverse=True)[1])
    lines = [
        f"# {NAME}: personalised product search on Amazon Beauty (category-path queries)",
        "",
        f"Protocol: {PROTOCOL}",
        "",
        "Invocations (on one run folder; a row's cells come from the invocation numbered beside it). CPU time is "
        "this process's, all threads; stages cached in the run folder from an earlier invocation are not counted, "
        "and the machine was shared with other jobs, so wall time is inflated:",
        "",
    ]
    for number, run in enumerate(store["invocations"], 1):
        stages = ", ".join(f"{k} {v[1]:.0f}s" for k, v in run["stages"].items())
        lines.append(f"{number}. `{run['command']}` — {run['date']}, commit {run['commit']}, {run['machine']}, "
                     f"load average {' / '.join(f'{x:.1f}' for x in run['load'])}; wall {run['wall_s'] / 60:.1f} min, "
                     f"CPU {run['cpu_s'] / 60:.1f} min ({stages})")
    lines += ["", "Seed 0 everywhere. History items in answers: kept (a row may rank an item the user already has).", ""]
    if "generative_batch" in store:
        lines += [
            "Generative model: `configs/amazon_beauty_search.toml`, tasks search+recommendation, trained for the "
            f"steps its row names × {store['generative_batch']} windows: **a bounded schedule** to fit the CPU budget. "
            f"The recommendation benchmark's full schedule is {FULL_STEPS:,} steps × 128 windows (≈ 32 epochs), so "
            "these rows are under-trained: lower bounds on the model under this protocol, not its measure.",
            "",
        ]
    for part in ("valid", "test"):
        if part not in store["parts"]:
            continue
        entry = store["parts"][part]
        total = totals[part]
        size = (f"{entry['requests']:,} requests" if entry["requests"] == total else
                f"a seeded subsample of {entry['requests']:,} of its {total:,} requests, `--max-requests`")
        lines += [f"## {'Validation' if part == 'valid' else 'Test'} ({size})", "",
                  "| row | R@10 | N@10 | R@10, long-tail targets | invocation |", "|---|---|---|---|---|"]
        order = sorted(entry["rows"], key=_row_order)
        for name in order:
            row = entry["rows"][name]
            cells = " | ".join(f"{mean:.4f} [{low:.4f}, {high:.4f}]" for mean, low, high in row["cells"])
            lines.append(f"| {name} | {cells} | {row['invocation']} |")
        lines += ["", f"Mean [95% bootstrap interval] over the requests; long-tail: the {entry['long_tail']:,} requests "
                  "whose target is outside the top 20% of items by training purchases.", ""]
    lines += [WEAKER.format(n_queries=len(per_query), n_items=len(dataset.items), median=float(np.median(per_query)),
                            largest=int(per_query.max())), ""]
    return "\n".join(lines)


def _row_order(label: str) -> tuple[int, int, str]:
    """Rows in `ROWS` order, others after; generative rows ("generative, 400 steps") by step count."""
    rows = ROWS.split(",")
    name, _, steps = label.partition(", ")
    return (rows.index(name) if name in rows else len(rows), int(steps.split()[0].replace(",", "")) if steps else 0, label)


def _load() -> tuple[float, ...]:
    try:
        return os.getloadavg()
    except OSError:  # not available on this platform
        return ()


if __name__ == "__main__":
    main()
