"""Personal fusion where personal weights matter: GRADE and HarmonRank against fixed weights.

On the default world every user's funnel responds to items alike, so GRADE,
HarmonRank and fixed weights rank the same (`benchmarks/results/cascade.md`).
This benchmark builds
the world variant where users weigh click, cart and order differently
(`WorldConfig(personal_objectives=β)`, `genrec.data.objectives`), trains one
per-objective ranker per funnel stage — the cascade's MMoE, fitted on every
impression for P(click), on the clicked ones for P(cart | click), on the carted
ones for P(order | cart) — and compares fusions of those three scores on each
visit's impressions, judged on orders. The rankers see the visit (query,
scenario) but not who makes it (no user id, no history), so everything personal
is left to the fusion under test; the fusions read the user's history
(`fusion_context`: how often the user carts and orders):

* fixed — `Σ_t w_t log p_t`, the weights chosen on validation from a grid;
* learned — GRADE (`PersonalizedWeightFusion`) / HarmonRank (`RelationAwareEnsemble`),
  fitted on the training hold-out, their settings chosen on validation;
* oracle weights — the same system whose weight network also reads each user's
  *true* objective weights from the world (the ceiling of personal weights).

Every candidate is scored on validation visits, the best of each system is
reported on test visits: order NDCG@10 per visit (visits with an order), mean
and 95% bootstrap interval, and a paired test (sign-flip randomization, `genrec.eval.bootstrap`)
of learned − fixed. `--control` adds the same world with everyone's weights
alike (`objective_concentration` large), where personal weights cannot help.

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/postrank.py --control
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import platform
import sys
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from genrec.cascade.ensemble import EnsembleConfig, RelationAwareEnsemble
from genrec.cascade.features import FeatureSpace
from genrec.cascade.fuse import FixedWeightFusion, FusionConfig, PersonalizedWeightFusion
from genrec.cascade.rank import MultiTaskRanker, RankerConfig
from genrec.cascade.report import visit_lists
from genrec.cascade.retriever import GAINS, CascadeConfig, fusion_context, training_windows
from genrec.cascade.samples import TASKS, ImpressionSamples, add_sampled_negatives, impression_samples
from genrec.data.splits import leave_one_out
from genrec.data.synth import WorldConfig, generate_world
from genrec.eval.bootstrap import bootstrap_means, paired_test, percentile_interval
from genrec.eval.metrics import ndcg_at_k
from genrec.features.text import item_text
from genrec.retrieval import Request

RESULTS = Path(__file__).parent / "results" / "postrank.md"
K = 10
FIXED_GRID = [w for w in itertools.product((0.0, 0.3, 1.0), repeat=3) if any(w)]
GRADE_SETTINGS = {"30 epochs": FusionConfig(epochs=30, batch_groups=64),
                  "100 epochs, lr 0.03": FusionConfig(epochs=100, lr=0.03, batch_groups=64)}
MIN_STEPS = 300
"""Training steps of a stage ranker at least (the cart and order stages have few rows)."""
HARMONRANK_SETTINGS = {f"{e} epochs": EnsembleConfig(epochs=e, batch_groups=64) for e in (3, 30)}


def hashed_text_vectors(texts: list[str], dim: int = 64) -> np.ndarray:
    """Unit bag-of-words vectors from seeded random word vectors: the ranker's text feature without MiniLM
    (this benchmark is about fusion; titles carry brand and category words either way)."""
    vocabulary: dict[str, np.ndarray] = {}
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.lower().split():
            if word not in vocabulary:
                vocabulary[word] = np.random.default_rng(zlib.crc32(word.encode())).normal(size=dim).astype(np.float32)
            out[row] += vocabulary[word]
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)


@dataclass
class Scored:
    """Ranker probabilities `[p, 3]`, fusion context `[p, d]` (+ true weights `[p, 3]`) of some visits."""

    samples: ImpressionSamples
    probs: np.ndarray
    context: np.ndarray
    oracle_context: np.ndarray


def prepare(config: WorldConfig, ranker_visits: int, say) -> tuple[Scored, Scored, Scored, dict]:
    """World → split → ranker trained on split.train; scored hold-out, validation and test visits."""
    world = generate_world(config)
    dataset, truth = world.dataset, world.truth
    split = leave_one_out(dataset.events)
    cascade = CascadeConfig(max_train_visits=ranker_visits)
    samples = impression_samples(split.train, split.interactions, cascade.history_length)
    fit_part, holdout, (feature_cut, holdout_cut) = training_windows(samples, cascade)
    texts = item_text(dataset.items)
    item_ids = dataset.items["item_id"].to_numpy(np.int64)
    space = FeatureSpace(history_length=cascade.history_length).fit(
        dataset.items, split.train, item_ids, hashed_text_vectors(texts), texts, hashed_text_vectors)
    train_ts = split.train["ts"].to_numpy()
    early = space.refit_events(dataset.items, split.train[train_ts < feature_cut])
    before_holdout = space.refit_events(dataset.items, split.train[train_ts < holdout_cut])
    known = np.flatnonzero(space.leaf_ > 0)
    fit_part = add_sampled_negatives(fit_part, known, early.popularity_, cascade.sampled_negatives, cascade.seed)
    rankers = []
    for stage, rows in enumerate(stage_rows(anonymous(fit_part))):
        say(f"{TASKS[stage]} ranker on {len(rows):,} rows")
        epochs = max(2.0, MIN_STEPS * RankerConfig.batch_size / len(rows))
        rankers.append(MultiTaskRanker(early, RankerConfig(progress=False, epochs=epochs, seed=stage)).fit(rows))

    test_sessions = set(zip(split.test["user_id"], split.test["session_id"]))
    valid_sessions = set(zip(split.valid["user_id"], split.valid["session_id"])) - test_sessions
    events = dataset.events
    keys = list(zip(events["user_id"], events["session_id"]))

    def visits(sessions: set) -> ImpressionSamples:
        rows = np.fromiter((key in sessions for key in keys), dtype=bool, count=len(keys))
        return impression_samples(events[rows].reset_index(drop=True), split.interactions, cascade.history_length)

    def scored(part: ImpressionSamples, at: FeatureSpace) -> Scored:
        req = at.requests(anonymous(part).requests)
        pair = at.pairs(req, part.request_index, part.item_ids)
        probs = np.stack([ranker.use_space(at).predict_proba(req, part.request_index, part.item_ids, pair)[:, 0]
                          for ranker in rankers], 1)
        context = fusion_context(at.requests(part.requests))[part.request_index]
        users = np.asarray([r.user_id for r in part.requests])[part.request_index] - 1
        weights = truth.objective_weight[users] if truth.has_objectives else np.zeros((len(users), 3))
        return Scored(part, probs, context, np.c_[context, weights].astype(np.float32))

    say("scoring hold-out, validation and test visits")
    parts = scored(holdout, before_holdout), scored(visits(valid_sessions), space), scored(visits(test_sessions), space)
    info = {"events": len(events), "holdout visits": len(holdout.requests),
            "valid visits": len(parts[1].samples.requests), "test visits": len(parts[2].samples.requests)}
    return *parts, info


def anonymous(samples: ImpressionSamples) -> ImpressionSamples:
    """The same visits without who made them (no user id, no history): what the per-objective
    rankers see, so that everything personal is left to the fusion under test."""
    requests = [Request(user_id=0, query=r.query, scenario=r.scenario, ts=r.ts) for r in samples.requests]
    return replace(samples, requests=requests)


def stage_rows(samples: ImpressionSamples) -> list[ImpressionSamples]:
    """One training set per funnel stage, its label in column 0: every impression (click),
    the clicked ones (cart | click), the carted ones (order | cart)."""
    out = []
    for stage in range(len(TASKS)):
        rows = np.ones(len(samples), dtype=bool) if stage == 0 else samples.labels[:, stage - 1] > 0
        labels = np.zeros((int(rows.sum()), len(TASKS)), dtype=samples.labels.dtype)
        labels[:, 0] = samples.labels[rows, stage]
        out.append(ImpressionSamples(samples.requests, samples.request_index[rows], samples.item_ids[rows],
                                     samples.position[rows], labels))
    return out


def order_ndcg(score: np.ndarray, part: Scored) -> np.ndarray:
    """NDCG@10 on orders of each visit that has an order, its impressions ordered by `score`, `[v]`."""
    ranked, judged = visit_lists(score, part.samples, part.samples.labels[:, 2])
    return ndcg_at_k(ranked, judged, K).values


def gains_of(labels: np.ndarray) -> np.ndarray:
    return (labels * (GAINS - np.r_[0, GAINS[:-1]])).sum(1)


def compare(holdout: Scored, valid: Scored, test: Scored, say) -> dict:
    """Choose each system's setting on validation; return per-visit test NDCG of every chosen row."""
    h = holdout
    candidates = {("fixed", str(w)): FixedWeightFusion(w) for w in FIXED_GRID}
    fits = {}
    for oracle in (False, True):
        ctx = h.oracle_context if oracle else h.context
        for name, cfg in GRADE_SETTINGS.items():
            fits[("grade", name, oracle)] = PersonalizedWeightFusion(cfg).fit(
                h.probs, h.samples.request_index, ctx, gains_of(h.samples.labels))
        for name, ecfg in HARMONRANK_SETTINGS.items():
            fits[("harmonrank", name, oracle)] = RelationAwareEnsemble(ecfg).fit(
                h.probs, h.samples.request_index, ctx, h.samples.labels)
    say(f"fitted {len(fits)} learned fusions")

    def run(fusion, part: Scored, oracle: bool = False) -> np.ndarray:
        return order_ndcg(fusion.score(part.probs, part.oracle_context if oracle else part.context), part)

    valid_fixed = {key: run(f, valid).mean() for key, f in candidates.items()}
    best_fixed = max(valid_fixed, key=valid_fixed.__getitem__)
    chosen = {"fixed": (best_fixed[1], candidates[best_fixed], False, valid_fixed[best_fixed])}
    for system in ("grade", "harmonrank"):
        for oracle in (False, True):
            scores = {key: run(f, valid, oracle).mean() for key, f in fits.items() if key[0] == system and key[2] == oracle}
            best = max(scores, key=scores.__getitem__)
            chosen[f"{system}{' oracle' if oracle else ''}"] = (best[1], fits[best], oracle, scores[best])
    out = {}
    for label, (setting, fusion, oracle, valid_mean) in chosen.items():
        out[label] = {"setting": setting, "valid": float(valid_mean), "test": run(fusion, test, oracle)}
    return out


def table(result: dict, system: str, title: str) -> list[str]:
    fixed = result["fixed"]["test"]
    rows = [("fixed weights", "fixed"), (f"{title} (learned)", system), (f"{title} with oracle weights", f"{system} oracle")]
    lines = ["| fusion | chosen on validation | valid order NDCG@10 | test order NDCG@10 [95% CI] | − fixed [95% CI] | p |",
             "|---|---|---:|---:|---:|---:|"]
    for name, key in rows:
        test = result[key]["test"]
        low, high = percentile_interval(bootstrap_means(test))
        cells = [name, result[key]["setting"], f"{result[key]['valid']:.4f}", f"{test.mean():.4f} [{low[0]:.4f}, {high[0]:.4f}]"]
        if key == "fixed":
            cells += ["", ""]
        else:
            diff, dlow, dhigh, p = paired_test(test, fixed)
            cells += [f"{diff:+.4f} [{dlow:+.4f}, {dhigh:+.4f}]", f"{p:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strength", type=float, default=2.0, help="WorldConfig.personal_objectives (β)")
    parser.add_argument("--n-items", type=int, default=6_000)
    parser.add_argument("--n-users", type=int, default=5_000)
    parser.add_argument("--n-events", type=int, default=300_000)
    parser.add_argument("--ranker-visits", type=int, default=8_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--control", action="store_true", help="also run the world where everyone weighs objectives alike")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    began, began_cpu, load_before = time.perf_counter(), time.process_time(), os.getloadavg()

    def say(message: str) -> None:
        print(f"[postrank {time.perf_counter() - began:6.1f}s] {message}", flush=True)

    worlds = [("personal weights", args.strength, 0.4)]
    if args.control:
        worlds.append(("control: everyone weighs objectives alike", args.strength, 1e4))
    sections = []
    for title, strength, concentration in worlds:
        config = WorldConfig(n_items=args.n_items, n_users=args.n_users, n_events=args.n_events, seed=args.seed,
                             personal_objectives=strength, objective_concentration=concentration)
        say(f"world: {title}")
        holdout, valid, test, info = prepare(config, args.ranker_visits, say)
        result = compare(holdout, valid, test, say)
        n_test = len(result["fixed"]["test"])
        sections += [f"## {title} (β = {strength}, concentration {concentration:g})", "",
                     f"{info['events']:,} events; fusions fitted on {info['holdout visits']:,} hold-out visits, "
                     f"chosen on {info['valid visits']:,} validation visits, measured on the {n_test:,} of "
                     f"{info['test visits']:,} test visits with an order.", "",
                     "### GRADE (personal fusion weights, listwise loss on click 1 / cart 2 / order 3)", "",
                     *table(result, "grade", "GRADE"), "",
                     "### HarmonRank (relation-aware two-step ensemble, rank-sum AUC loss)", "",
                     *table(result, "harmonrank", "HarmonRank"), ""]
    cpu, wall, load_after = time.process_time() - began_cpu, time.perf_counter() - began, os.getloadavg()
    command = " ".join(["PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/postrank.py", *sys.argv[1:]])
    lines = ["# Post-rank fusion where personal objective weights matter", "",
             f"- command: `{command}`",
             f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; seed {args.seed}; {platform.platform()}, "
             f"{os.cpu_count()} cores (shared), 1 torch thread",
             f"- world: {args.n_items:,} items, {args.n_users:,} users, {args.n_events:,} events; rankers: the cascade's "
             f"MMoE, one per funnel stage, anonymous (no user id or history), on {args.ranker_visits:,} training "
             "visits, hashed bag-of-words title vectors instead of MiniLM",
             f"- CPU {cpu / 60:.1f} min, wall {wall / 60:.1f} min; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after",
             "- metric: order NDCG@10 over each test visit's impressions (visits with an order); interval: 1000 bootstrap "
             "resamples of visits; p: paired sign-flip randomization test against fixed weights", "",
             *sections]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    say(f"wrote {args.out}")


if __name__ == "__main__":
    main()
