"""RoleGen against its backbone on a world with trigger items: a home-feed slate for every user, replayed.

    .venv/bin/python benchmarks/rolegen_replay.py --run runs/trig --part valid
    .venv/bin/python benchmarks/rolegen_replay.py --run runs/trig --part test --weights 1 --per-leaf 2

RUN is a pipeline run of the default world with trigger items
(`genrec run --config configs/demo.yaml --set data.world.trigger_awakening=1.0 --run RUN`):
its data, its trained generative model (the backbone) and its cascade. Every
user's held-out interaction of `--part` becomes a home-feed visit at that moment
(the same history, no query); each retriever fills its 10 slots, and the world's
hidden funnel replays the slate exactly (`genrec.rolegen.replay`): expected
orders in the visit, and for dormant users the awake share of their later visits.
Dormant = the world's hidden flag (the retrievers see behaviour only: RoleGen's
roles and its low-converting users are learned from the training events).
Rows: the cascade, the backbone, RoleGen at each setting; 95% bootstrap
intervals over users, paired randomization tests against the backbone. Settings
are chosen on `valid`; `test` is run once with the chosen one. Also the offline
metric the logs allow: Recall@10 of the logged target when it was an order,
for dormant users (few such targets: it cannot separate the rows). `--true-roles`
adds RoleGen reading the world's hidden trigger flags instead of learned roles:
the ceiling of the role learner, not a method.

Writes `benchmarks/results/rolegen_replay_<part>.md`.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import torch

from genrec.data.splits import leave_one_out
from genrec.data.synth import World
from genrec.eval.bootstrap import mean_with_interval, paired_test
from genrec.model.retriever import GenerativeRetriever
from genrec.registry import build_retriever
from genrec.rolegen import ItemRoles
from genrec.rolegen.replay import HomeFeedVisits
from genrec.rolegen.retriever import RoleGenRetriever

RESULTS = Path(__file__).parent / "results"
K = 10


class CachedBackbone:
    """The backbone, answering each batch of requests once however many RoleGen settings ask."""

    def __init__(self, backbone: GenerativeRetriever):
        self.inner, self.answers = backbone, {}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def retrieve(self, requests, k):
        key = (id(requests), k)
        if key not in self.answers:
            self.answers[key] = self.inner.retrieve(requests, k)
        return self.answers[key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/trig"))
    parser.add_argument("--part", choices=("valid", "test"), default="valid")
    parser.add_argument("--weights", default="0,1,2,4")
    parser.add_argument("--per-leaf", default="1,2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--true-roles", action="store_true",
                        help="also RoleGen reading the world's hidden trigger flags as roles (a ceiling, not a method)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    world = World.load(args.run / "data")
    dataset, truth = world.dataset, world.truth
    split = leave_one_out(dataset.events)
    visits = HomeFeedVisits.of(world, split, args.part)
    targets = split.targets(args.part)["item_id"].to_numpy(dtype=np.int64)
    dormant = truth.is_dormant[visits.users - 1]
    ordered = split.targets(args.part)["action"].to_numpy() == "order"

    roles = ItemRoles.learn(split.train, dataset.items)
    backbone = CachedBackbone(GenerativeRetriever.from_run(args.run))
    retrievers: list[tuple[str, object]] = [("cascade", build_retriever("cascade", args.run, dataset, split)),
                                            ("generative (backbone)", backbone)]
    for weight, per_leaf in itertools.product([float(w) for w in args.weights.split(",")],
                                              [int(p) for p in args.per_leaf.split(",")]):
        retrievers.append((f"RoleGen: weight {weight:g}, {per_leaf} per leaf",
                           RoleGenRetriever(backbone, roles, dataset.items, weight=weight, per_leaf=per_leaf)))
    if args.true_roles:  # the roles a perfect learner would find: uplift 1 for the hidden triggers, the same users
        hidden = ItemRoles(roles.item_ids, truth.item_is_trigger[roles.item_ids - 1].astype(float), roles.clicks,
                           roles.hesitant_users)
        for weight, per_leaf in itertools.product([float(w) for w in args.weights.split(",")],
                                                  [int(p) for p in args.per_leaf.split(",")]):
            retrievers.append((f"RoleGen with the hidden trigger flags as roles (ceiling): weight {weight:g}, "
                               f"{per_leaf} per leaf",
                               RoleGenRetriever(backbone, hidden, dataset.items, weight=weight, per_leaf=per_leaf)))
    rows, reference = [], None
    for name, retriever in retrievers:
        slates = visits.slates(retriever, K)
        outcome = visits.replay(slates)
        hit = (slates == targets[:, None]).any(1).astype(float)
        values = np.stack([outcome.orders, outcome.awake_share], 1)
        if name.startswith("generative"):
            reference = values
        paired_cells = ["", ""]
        if reference is not None and not name.startswith("generative"):
            for column, rows_of in ((0, dormant), (1, dormant)):
                diff, low, high, p = paired_test(values[rows_of, column], reference[rows_of, column])
                paired_cells[column] = f"{diff:+.4f} [{low:+.4f}, {high:+.4f}], p = {p:.3f}"
            diff, low, high, p = paired_test(values[:, 0], reference[:, 0])
            paired_cells.append(f"{diff:+.4f}, p = {p:.3f}")
        else:
            paired_cells.append("")
        rows.append(f"| {name} | {mean_with_interval(outcome.orders[dormant])} | {paired_cells[0]} "
                    f"| {mean_with_interval(outcome.awake_share[dormant])} | {paired_cells[1]} | {outcome.orders.mean():.4f} "
                    f"| {paired_cells[2]} | {hit[dormant & ordered].mean():.3f} |")
        print(rows[-1], flush=True)
    lines = [f"# RoleGen on the world with trigger items ({args.part})", "",
             f"Command: `.venv/bin/python benchmarks/rolegen_replay.py --run {args.run} --part {args.part} "
             f"--weights {args.weights} --per-leaf {args.per_leaf}{' --true-roles' if args.true_roles else ''}`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.threads} torch thread(s), CPU only; "
             f"{len(visits.users)} {args.part} visits, {int(dormant.sum())} of hidden dormant users "
             f"({int((dormant & ordered).sum())} of them with a logged order target); roles: "
             f"{len(roles.hesitant_users)} low-converting users; {(time.perf_counter() - began) / 60:.1f} min", "",
             "| retriever | dormant: expected orders / visit | − backbone | dormant: awake share of later visits "
             "| − backbone | all users: expected orders / visit | − backbone | dormant: order-target Recall@10 |",
             "|---|---|---|---|---|---:|---|---:|"] + rows
    path = RESULTS / f"rolegen_replay_{args.part}.md"
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
