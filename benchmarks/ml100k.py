"""Second real-data benchmark: MovieLens-100k, chronological leave-one-out, full ranking.

    .venv/bin/python benchmarks/ml100k.py --part valid
    .venv/bin/python benchmarks/ml100k.py

Writes benchmarks/results/ml100k.md.
"""

from __future__ import annotations

from sequential import SHARED, parse_args, run_benchmark

from genrec.data.loaders import load_recbole
from genrec.train.generative import GenerativeTrainConfig

PROTOCOL = ("MovieLens-100k (943 users, 1,682 items, RecBole atomic files), every rating an interaction, "
            "chronological leave-one-out per user, full ranking over all items, history = last 50 items, "
            "Semantic IDs from title + genres with MiniLM + RQ-KMeans.")


def main() -> None:
    args = parse_args(__doc__, "runs/ml100k")
    run_benchmark("ml100k", args, lambda: load_recbole(SHARED / "ml-100k"), max_history=50,
                  metrics=("recall@5", "recall@10", "ndcg@5", "ndcg@10", "mrr"), published=(),
                  generative_config=GenerativeTrainConfig(max_history=50, index_copies=0), protocol=PROTOCOL)


if __name__ == "__main__":
    main()
