"""Compare generative training variants on the validation split of a prepared run.

    .venv/bin/python benchmarks/generative_variants.py --source runs/demo

Copies `data/`, `features/` and `sid/` of `--source` into one run folder per
variant (so each variant trains from identical inputs), trains it with
`train_generative`, and writes the validation history (search / recommendation
Recall@10 and NDCG@10 at each evaluation) to
`benchmarks/results/generative_variants.md`. Only the validation split is read:
this is how the demo's default training was chosen.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

from genrec.sid.build import build_sids
from genrec.train.generative import GenerativeTrainConfig, train_generative

RESULTS = Path(__file__).parent / "results" / "generative_variants.md"
METRICS = ("search_recall@10", "search_ndcg@10", "rec_recall@10", "rec_ndcg@10")


PREFIXED_SIDS = {"prefix": ("category", "brand"), "levels": 1}
"""`build_sids` arguments of the attribute-prefixed SIDs (leaf, brand, one residual level)."""


def variants(base: GenerativeTrainConfig) -> dict[str, tuple[GenerativeTrainConfig, dict | None]]:
    """name → (training config, `build_sids` arguments or None to reuse the source's SIDs)."""
    def with_steps(config: GenerativeTrainConfig, steps: int) -> GenerativeTrainConfig:
        every = max(steps // 3, 50)
        return replace(config, train=replace(config.train, steps=steps, eval_every=every, checkpoint_every=every))

    plain = replace(base, query_vectors=False, categories=False)  # the session-1 model
    summary = replace(base, model=replace(base.model, memory_summary=True))
    tied = replace(base, model=replace(base.model, tie_heads=True))
    loud = replace(base, model=replace(base.model, memory_summary=True, input_init_std=1.0))
    causal = replace(loud, model=replace(loud.model, causal_recommendation=True))
    configs = {
        "plain, 500 steps": with_steps(plain, 500),
        "plain, 500 steps, 3x indexing, item buckets": with_steps(
            replace(plain, index_copies=3, model=replace(plain.model, item_buckets=16384)), 500),
        "plain, 800 steps": with_steps(plain, 800),
        "query vectors, 500 steps": with_steps(replace(base, categories=False), 500),
        "query vectors + categories, 500 steps": with_steps(base, 500),
        "categories, 850 steps": with_steps(replace(base, query_vectors=False), 850),
        "query vectors + categories, 850 steps": with_steps(base, 850),
        "category+brand SIDs, query vectors + categories, 500 steps": with_steps(base, 500),
        "category+brand SIDs, categories, 500 steps": with_steps(replace(base, query_vectors=False), 500),
        "category+brand SIDs, query vectors + categories, 850 steps": with_steps(base, 850),
        "category+brand SIDs, query vectors + categories + summary, 500 steps": with_steps(summary, 500),
        "query vectors + categories + summary, 500 steps": with_steps(summary, 500),
        "query vectors + categories + tied heads, 500 steps": with_steps(tied, 500),
        "category+brand SIDs, query vectors + categories + tied heads, 500 steps": with_steps(tied, 500),
        "category+brand SIDs, query vectors + categories + summary + loud inputs, 500 steps": with_steps(loud, 500),
        "query vectors + categories + summary + loud inputs, 500 steps": with_steps(loud, 500),
        "category+brand SIDs, categories + summary + loud inputs, 500 steps": with_steps(
            replace(loud, query_vectors=False), 500),
        "category+brand SIDs, query vectors + categories + summary + loud inputs + item buckets, 500 steps":
            with_steps(replace(loud, model=replace(loud.model, item_buckets=16384)), 500),
        "category+brand SIDs, query vectors + categories + summary + loud inputs, 20 recent items, 500 steps":
            with_steps(replace(loud, model=replace(loud.model, max_short=20)), 500),
        "category+brand SIDs, query vectors + categories + summary + loud inputs, dropout 0.2, 500 steps":
            with_steps(replace(loud, model=replace(loud.model, dropout=0.2)), 500),
        "category+brand SIDs, query vectors + categories + summary + loud inputs, search as recommendation, 500 steps":
            with_steps(replace(loud, search_as_recommendation=True), 500),
        "category+brand SIDs, query vectors + categories + summary + loud inputs, search as recommendation, 650 steps":
            with_steps(replace(loud, search_as_recommendation=True), 650),
        "category+brand SIDs, query vectors + categories + summary + loud inputs, causal recommendation, 500 steps":
            with_steps(causal, 500),
        "category+brand SIDs, query vectors + categories + summary + loud inputs, causal recommendation "
        "(recommendation targets only), 500 steps": with_steps(replace(causal, sequence_targets="recommendation"), 500),
        "category+brand SIDs, query vectors + categories + summary + loud inputs, causal recommendation, "
        "20 recent items, 500 steps": with_steps(replace(causal, model=replace(causal.model, max_short=20)), 500),
        "category+brand SIDs, query vectors + categories + summary + loud inputs, causal recommendation, "
        "latest in summary, 500 steps": with_steps(replace(causal, model=replace(causal.model, latest_in_summary=True)), 500),
        "category+brand SIDs, query vectors + categories + summary + loud inputs, causal recommendation, "
        "latest in summary with its age, 500 steps": with_steps(
            replace(causal, model=replace(causal.model, latest_in_summary=True, latest_age=True)), 500),
        "category+brand SIDs, query vectors + categories + summary + loud inputs, causal recommendation, 700 steps":
            with_steps(causal, 700),
        "category+brand SIDs, query vectors + categories + summary + loud inputs, causal recommendation, "
        "copy the 3 newest leaves, 500 steps": with_steps(replace(causal, model=replace(causal.model, copy_recent=3)), 500),
        "category+brand SIDs, query vectors + categories + summary + loud inputs, causal recommendation, "
        "copy the 3 newest leaves, 700 steps": with_steps(replace(causal, model=replace(causal.model, copy_recent=3)), 700),
    }
    sids = {name: PREFIXED_SIDS if name.startswith("category+brand SIDs") else None for name in configs}
    return {name: (config, sids[name]) for name, config in configs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", default="runs/demo", help="run with data/, features/ and sid/ built")
    parser.add_argument("--out", default="runs/variants", help="folder for one run per variant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated variant numbers to run (default: all)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file to write")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    chosen = {int(v) for v in args.only.split(",") if v.strip()}

    lines = ["# Generative training variants (validation split)", "",
             f"Command: `.venv/bin/python benchmarks/generative_variants.py --source {args.source}`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; seed 0; {args.threads} torch threads", "",
             "| variant | step | " + " | ".join(METRICS) + " | train s |", "|---|---:|" + "---:|" * (len(METRICS) + 1)]
    defaults = GenerativeTrainConfig()
    # variants 0–21 predate causal recommendation: they start from the per-request model
    per_request = replace(defaults, model=replace(defaults.model, causal_recommendation=False))
    for number, (name, (config, sid_arguments)) in enumerate(variants(per_request).items()):
        if chosen and number not in chosen:
            continue
        run = Path(args.out) / f"variant-{number}"
        if not run.exists():
            for part in ("data", "features") if sid_arguments else ("data", "features", "sid"):
                shutil.copytree(Path(args.source) / part, run / part)
            if sid_arguments:
                build_sids(run, progress=False, **sid_arguments)
        began = time.perf_counter()
        out = train_generative(run, config, progress=False)
        seconds = time.perf_counter() - began
        history = json.loads((out / "manifest.json").read_text())["result"]["history"]
        for point in history:
            lines.append(f"| {name} | {point['step']} | " + " | ".join(f"{point[m]:.4f}" for m in METRICS)
                         + f" | {seconds:.0f} |")
    args.results.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
