"""What each retriever's home-feed page would sell: expected orders per visit, replayed on the world.

    .venv/bin/python benchmarks/expected_orders.py --run runs/demo --part test \\
        --retrievers popularity,cascade,generative,generative-aligned

The offline metrics ask whether a retriever predicts the user's next
interaction — mostly a click. A shop cares what its page sells. On a generated
world the hidden funnel can say, for any slate, exactly (`genrec.rolegen.replay`:
each slot's click × cart × order chance, position bias included): every user's
held-out moment of `--part` becomes a home-feed visit (same history, no query),
each retriever fills 10 slots, and the replay sums the expected orders (and
clicks), the visit's intended item drawn as the world draws it (the last
interaction's leaf again or a preferred one, an item of it ∝ exp(U)): a page is
paid for showing what the user came for and for what sells while they browse. 95% bootstrap intervals over users; paired randomization tests against
the first retriever. The world's own logging engine (the slates it showed,
with the intended item at a geometric slot) is not a row: it knew the intent.

Writes `benchmarks/results/expected_orders_<part>.md`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from genrec.data.splits import leave_one_out
from genrec.data.synth import World
from genrec.eval.bootstrap import mean_with_interval, paired_test
from genrec.registry import build_retriever
from genrec.rolegen.replay import HomeFeedVisits

RESULTS = Path(__file__).parent / "results"
K = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"))
    parser.add_argument("--part", choices=("valid", "test"), default="test")
    parser.add_argument("--retrievers", default="popularity,cascade,generative,generative-aligned")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    world = World.load(args.run / "data")
    split = leave_one_out(world.dataset.events)
    visits = HomeFeedVisits.of(world, split, args.part)
    dormant = world.truth.is_dormant[visits.users - 1]
    awakening = world.config.trigger_awakening
    rows, reference = [], None
    for name in args.retrievers.split(","):
        outcome = visits.replay(visits.slates(build_retriever(name, args.run, world.dataset, split), K))
        orders, clicks = outcome.orders, outcome.clicks
        paired_cell = ""
        if reference is None:
            reference = orders
        else:
            diff, low, high, p = paired_test(orders, reference)
            paired_cell = f"{diff:+.4f} [{low:+.4f}, {high:+.4f}], p = {p:.3f}"
        rows.append(f"| {name} | {mean_with_interval(orders)} | {paired_cell} | {orders[dormant].mean():.4f} "
                    f"| {mean_with_interval(clicks)} |")
        print(rows[-1], flush=True)
    first = args.retrievers.split(",")[0]
    lines = [f"# Expected orders of a home-feed page, replayed on the world ({args.part})", "",
             f"Command: `.venv/bin/python benchmarks/expected_orders.py --run {args.run} --part {args.part} "
             f"--retrievers {args.retrievers}`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.threads} torch thread(s), CPU only; "
             f"{len(visits.users)} visits ({int(dormant.sum())} of dormant users); trigger awakening {awakening:g}; "
             f"{(time.perf_counter() - began) / 60:.1f} min", "",
             f"| retriever | expected orders / visit | − {first} | dormant users' | expected clicks / visit |",
             "|---|---|---|---:|---|"] + rows
    path = RESULTS / f"expected_orders_{args.part}.md"
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
