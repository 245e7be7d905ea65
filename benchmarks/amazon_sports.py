"""Amazon Sports and Outdoors under the TIGER protocol, beside the published numbers.

    .venv/bin/python benchmarks/amazon_sports.py --part valid   # choose hyper-parameters here
    .venv/bin/python benchmarks/amazon_sports.py                # report test once

Writes benchmarks/results/amazon_sports.md. Every hyper-parameter is Beauty's
(benchmarks/amazon_beauty.py, configs/amazon_beauty.toml); configs/amazon_sports.toml
differs only in `item_buckets`, which must cover the larger catalogue.

The item table's `title` column is not a product title: it holds generated
item-ID keywords (shared/data/README.md), so the text the Semantic IDs are
built from is weaker than Beauty's.
"""

from __future__ import annotations

from pathlib import Path

from sequential import SHARED, Published, parse_args, run_benchmark

from genrec.data.loaders import load_p5_amazon

PUBLISHED = (
    Published("TIGER", "Rajput et al., NeurIPS 2023, Amazon Sports and Outdoors",
              {"recall@5": 0.0264, "ndcg@5": 0.0181, "recall@10": 0.0400, "ndcg@10": 0.0225}),
    Published("SASRec with sampled softmax", "as reported in the issue's sources",
              {"recall@10": 0.0569, "ndcg@10": 0.0314}),
)
PROTOCOL = ("P5/TIGER Amazon Sports and Outdoors 5-core (35,598 users, 18,357 items), leave-one-out per user "
            "(last → test, second last → validation, the rest → training; every prefix of a training sequence is "
            "an example), full ranking over all 18,357 items, history = last 20 items, Semantic IDs: leaf category "
            "and brand first, then RQ-KMeans over the item-text MiniLM vectors (keyword \"title\" + brand/category). "
            "Hyper-parameters: Beauty's, unchanged (configs/amazon_sports.toml differs only in item_buckets).")

GENERATIVE = Path(__file__).parent.parent / "configs" / "amazon_sports.toml"
"""Beauty's generative config with `item_buckets` raised to cover 18,357 items."""
SASREC_STEPS = 4000
"""Beauty's choice, unchanged: 4,000 × 128 user windows ≈ 22 epochs on Beauty, ≈ 14 on Sports' 35,598 users."""
SID_LEVELS = 1
SID_PREFIX = ("category", "brand")


def main() -> None:
    args = parse_args(__doc__, "runs/sports")
    run_benchmark("amazon_sports", args, lambda: load_p5_amazon(SHARED / "amazon-sports"), max_history=20,
                  metrics=("recall@5", "ndcg@5", "recall@10", "ndcg@10"), published=PUBLISHED,
                  generative_config=GENERATIVE, protocol=PROTOCOL, sid_levels=SID_LEVELS,
                  sid_prefix=SID_PREFIX, sasrec_steps=SASREC_STEPS)


if __name__ == "__main__":
    main()
