"""STCRank in an immersive feed: orders and depth per session against greedy per-slot ranking.

The default world (`WorldConfig()`) gets a hidden slot model (`genrec.feed.truth`):
in each slot the user may order the item, watch it, and swipe on or leave; an
item's *push* sells now and ends visits, its *hook* keeps them going, and two
slots of one leaf in a row tire the user. Users with a history are split
60 / 20 / 20 into *logging*, *validation* and *test* users:

1. logging users' feed sessions are sampled under a random slot order (the log
   a feed collects while exploring), and the slot model (`SlotOutcomeModel`:
   P(order), P(view), P(swipe on)) is fitted on them;
2. each validation and test user gets one pool of candidates (`feed_candidates`),
   which every policy orders into the session's slots;
3. `value` (MOC, MSC) and `shortlist` (MSC) are chosen on validation users by
   expected orders per session; the chosen settings are replayed on test users.

A session is judged by its *expected* orders, views and depth under the hidden
slot model (exact: the replay's mean over infinitely many draws), so the only
sampling noise left is which users are in the test set: 95% bootstrap interval
over test users, paired randomization test against greedy. "Oracle" rows run the
same policies on the world's true slot probabilities — the ceiling of the
learned model. `--control` adds the same world where a slot cannot change the
chance to go on (`FeedConfig.control()`), where greedy is optimal and MOC / MSC
must not lose.

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/feed.py --control
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genrec.data.synth import WorldConfig, generate_world
from genrec.eval.bootstrap import bootstrap_means, paired_test, percentile_interval
from genrec.feed.candidates import feed_candidates
from genrec.feed.predict import FeedFeatures, SlotOutcomeModel
from genrec.feed.stcrank import SlotPredictions, greedy_slots, moc_slots, model_predictions, msc_slots, oracle_predictions
from genrec.feed.truth import FeedConfig, FeedTruth

RESULTS = Path(__file__).parent / "results" / "feed.md"
VALUES = (0.0, 0.1, 0.3, 1.0, 2.0, 4.0)
SHORTLISTS = (4, 8)
Policy = Callable[[SlotPredictions], np.ndarray]


@dataclass
class Pools:
    users: np.ndarray          # [n] 0-based
    candidates: np.ndarray     # [n, size] 0-based item indices


def make_pools(features: FeedFeatures, users: np.ndarray, size: int, seed: int) -> Pools:
    rng = np.random.default_rng([seed, 11])
    return Pools(users, np.stack([feed_candidates(features, int(u), size, rng) for u in users]))


def replay(truth: FeedTruth, pools: Pools, predictions: list[SlotPredictions], policy: Policy) -> tuple[np.ndarray, float]:
    """Expected orders, views, depth per session `[n, 3]`, and the policy's CPU ms per session."""
    began = time.process_time()
    slates = np.stack([pools.candidates[row][policy(p)] for row, p in enumerate(predictions)])
    cpu_ms = (time.process_time() - began) * 1000 / len(predictions)
    value = truth.session_value(pools.users, slates)
    return np.stack([value.orders, value.views, value.depth], axis=1), cpu_ms


def policies(n_slots: int) -> dict[str, Policy]:
    """Every candidate policy, named by its settings."""
    out: dict[str, Policy] = {"greedy": lambda p: greedy_slots(p, n_slots)}
    for value in VALUES:
        out[f"MOC, value {value:g}"] = lambda p, v=value: moc_slots(p, n_slots, v)
        for shortlist in SHORTLISTS:
            out[f"MOC + MSC, value {value:g}, shortlist {shortlist}"] = \
                lambda p, v=value, s=shortlist: msc_slots(p, n_slots, v, s)
    return out


def run_world(title: str, config: FeedConfig, args: argparse.Namespace, say: Callable[[str], None]) -> list[str]:
    world = generate_world(WorldConfig(seed=args.seed))
    truth = FeedTruth(world.truth, config)
    features = FeedFeatures(world.dataset.events, world.truth.item_leaf, world.truth.item_brand, world.truth.n_users)
    users = np.flatnonzero(features.history_length >= 3)
    np.random.default_rng([args.seed, 10]).shuffle(users)
    n_log, n_valid = int(0.6 * len(users)), int(0.2 * len(users))
    log_users, valid_users, test_users = users[:n_log], users[n_log:n_log + n_valid], users[n_log + n_valid:]

    rng = np.random.default_rng([args.seed, 12])
    session_users = np.repeat(log_users, args.sessions_per_user)
    slates = np.stack([rng.permutation(feed_candidates(features, int(u), args.candidates, rng))[:args.slots]
                       for u in session_users])
    logged = truth.log_sessions(session_users, slates, rng)
    say(f"{title}: {len(session_users):,} logged sessions, {len(logged):,} slots seen; fitting the slot model")
    began = time.process_time()
    model = SlotOutcomeModel(features).fit(logged)
    fit_cpu = time.process_time() - began

    split_pools = {"valid": make_pools(features, valid_users, args.candidates, args.seed),
                   "test": make_pools(features, test_users, args.candidates, args.seed + 1)}
    predictions = {(part, source): [make(u, c) for u, c in zip(pools.users, pools.candidates)]
                   for part, pools in split_pools.items()
                   for source, make in (("model", lambda u, c: model_predictions(model, int(u), c)),
                                        ("oracle", lambda u, c: oracle_predictions(truth, int(u), c)))}
    candidates = policies(args.slots)
    chosen: dict[tuple[str, str], str] = {}
    valid_orders: dict[tuple[str, str], float] = {}
    for source in ("model", "oracle"):
        scores = {name: replay(truth, split_pools["valid"], predictions["valid", source], policy)[0][:, 0].mean()
                  for name, policy in candidates.items()}
        valid_orders.update({(source, name): score for name, score in scores.items()})
        for family in ("greedy", "MOC,", "MOC + MSC"):
            names = [name for name in scores if name.startswith(family)]
            chosen[source, family] = max(names, key=lambda name: scores[name])
        chosen[source, "any"] = max(scores, key=lambda name: scores[name])
    say(f"{title}: chosen on validation {chosen}")

    rows: list[tuple[str, str, np.ndarray, float, str]] = []  # label, choice, values, CPU ms, probability source
    greedy: dict[str, np.ndarray] = {}
    test = split_pools["test"]
    rng_random = np.random.default_rng([args.seed, 13])
    random_slates = np.stack([rng_random.permutation(c)[:args.slots] for c in test.candidates])
    random_value = truth.session_value(test.users, random_slates)
    rows.append(("random order (the logging policy)", "—",
                 np.stack([random_value.orders, random_value.views, random_value.depth], axis=1), 0.0, "model"))
    for source in ("model", "oracle"):
        for family in ("greedy", "MOC,", "MOC + MSC", "any"):
            name = chosen[source, family]
            values, cpu_ms = replay(truth, test, predictions["test", source], candidates[name])
            if family == "greedy":
                greedy[source] = values
            label = {"greedy": "greedy per slot (P(order))", "MOC,": "STCRank MOC", "MOC + MSC": "STCRank MOC + MSC",
                     "any": "deployed: the best policy on validation"}[family]
            rows.append((label + (" — oracle probabilities" if source == "oracle" else ""),
                         name + f" (valid {valid_orders[source, name]:.4f})", values, cpu_ms, source))

    table = ["| policy | chosen on validation (valid orders / session) | orders / session [95% CI] | − greedy [95% CI] | p "
             "| depth (slots seen) | − greedy | views / session | CPU ms / session |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, name, values, cpu_ms, source in rows:
        low, high = percentile_interval(bootstrap_means(values[:, 0], seed=args.seed))
        base = greedy[source]
        diff_cells = ("", "") if label.startswith("greedy") else _diff(values, base, args.seed)
        depth_diff = "" if label.startswith("greedy") else f"{values[:, 2].mean() - base[:, 2].mean():+.3f}"
        table.append(f"| {label} | {name} | {values[:, 0].mean():.4f} [{low[0]:.4f}, {high[0]:.4f}] | {diff_cells[0]} "
                     f"| {diff_cells[1]} | {values[:, 2].mean():.3f} | {depth_diff} | {values[:, 1].mean():.3f} "
                     f"| {cpu_ms:.2f} |")
    stats = (f"{len(session_users):,} logged sessions of {len(log_users):,} logging users ({len(logged):,} slots seen: "
             f"order rate {logged.ordered.mean():.3f}, view rate {logged.viewed.mean():.3f}, swipe-on rate "
             f"{logged.swiped.mean():.3f}); slot model fitted in {fit_cpu:.1f} CPU-s; {len(valid_users):,} validation "
             f"and {len(test_users):,} test users, one session each: {args.candidates} candidates, {args.slots} slots.")
    return [f"## {title}", "", stats, "", *table, ""]


def _diff(values: np.ndarray, base: np.ndarray, seed: int) -> tuple[str, str]:
    """Orders per session `values − base` on the same users: mean [95% interval], and p."""
    diff, low, high, p = paired_test(values[:, 0], base[:, 0], seed=seed)
    return f"{diff:+.4f} [{low:+.4f}, {high:+.4f}]", f"{p:.3f}" if p >= 0.001 else "< 0.001"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sessions-per-user", type=int, default=4, help="logged feed sessions per logging user")
    parser.add_argument("--candidates", type=int, default=40, help="candidates per session")
    parser.add_argument("--slots", type=int, default=20, help="slots per session at most")
    parser.add_argument("--control", action="store_true", help="also run the feed where slots cannot change the chance to go on")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    began, began_cpu, load_before = time.perf_counter(), time.process_time(), os.getloadavg()

    def say(message: str) -> None:
        print(f"[feed {time.perf_counter() - began:6.1f}s] {message}", flush=True)

    sections = run_world("feed with greedy traps (`FeedConfig()`)", FeedConfig(seed=args.seed), args, say)
    if args.control:
        sections += run_world("control: a slot cannot change the chance to go on (`FeedConfig().control()`)",
                              FeedConfig(seed=args.seed).control(), args, say)
    cpu, wall, load_after = time.process_time() - began_cpu, time.perf_counter() - began, os.getloadavg()
    command = " ".join(["PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/feed.py", *sys.argv[1:]])
    lines = ["# STCRank in an immersive feed: orders and depth per session against greedy per-slot ranking", "",
             f"- command: `{command}`",
             f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; seed {args.seed}; {platform.platform()}, "
             f"{os.cpu_count()} cores (shared), 1 torch thread",
             "- world: the default `WorldConfig()` (10,000 items, 5,000 users) with the hidden slot model of "
             "`genrec.feed.truth`; policies order each session's candidates from the learned slot model "
             "(`genrec.feed.predict`) or, in the oracle rows, from the world's true slot probabilities",
             f"- CPU {cpu / 60:.1f} min, wall {wall / 60:.1f} min; load average {load_before[0]:.1f} before, "
             f"{load_after[0]:.1f} after",
             "- metric: expected orders, views and depth of each test user's session under the hidden slot model "
             "(exact); interval: 1000 bootstrap resamples of test users; p: paired sign-flip randomization test "
             "against greedy with the same probabilities; CPU ms: ordering the slots, predictions excluded", "",
             *sections]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    say(f"wrote {args.out}")


if __name__ == "__main__":
    main()
