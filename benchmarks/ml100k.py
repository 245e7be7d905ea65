"""Second real-data benchmark: MovieLens-100k, chronological leave-one-out, full ranking.

    .venv/bin/python benchmarks/ml100k.py --part valid
    .venv/bin/python benchmarks/ml100k.py

Writes benchmarks/results/ml100k.md.
"""

from __future__ import annotations

from pathlib import Path

from sequential import SHARED, parse_args, run_benchmark

from genrec.data.loaders import load_recbole

PROTOCOL = ("MovieLens-100k (943 users, 1,682 items, RecBole atomic files), every rating an interaction, "
            "chronological leave-one-out per user, full ranking over all items, history = last 50 items, "
            "Semantic IDs from title + genres with MiniLM + RQ-KMeans.")

GENERATIVE = Path(__file__).parent.parent / "configs" / "ml100k.toml"
"""The generative model's training config, chosen on the validation split (docs/benchmarks.md)."""

# SASRec: 943 users are 7-8 batches of 128: 200 steps are ~27 epochs (the default 600 did not fit the shared CPU).
SASREC_STEPS = 200


def main() -> None:
    args = parse_args(__doc__, "runs/ml100k")
    run_benchmark("ml100k", args, lambda: load_recbole(SHARED / "ml-100k"), max_history=50,
                  metrics=("recall@5", "recall@10", "ndcg@5", "ndcg@10", "mrr"), published=(),
                  generative_config=GENERATIVE, protocol=PROTOCOL,
                  sasrec_steps=SASREC_STEPS)


if __name__ == "__main__":
    main()
