"""The harness holds any Retriever, slices requests correctly and says when a difference is real."""

import numpy as np
import pandas as pd
import pytest

from genrec.data.splits import build_requests, leave_one_out
from genrec.eval.bootstrap import bootstrap_means, paired_test, percentile_interval
from genrec.eval.harness import EvalConfig, evaluate, paired_comparison, remove_seen
from genrec.eval.slices import dormant_users, head_items, request_slices, slice_families
from genrec.retrieval import Ranked, Request


class TargetAt:
    """A retriever that puts the item `request.ts` (the target, by construction) at `rank`, or misses it."""

    def __init__(self, name, rank):
        self.name, self.rank = name, rank

    def retrieve(self, requests, k):
        out = []
        for r in requests:
            filler = [i for i in range(1000, 1000 + k)]
            if self.rank is not None and self.rank < k:
                filler[self.rank] = r.ts
            out.append(Ranked(np.array(filler[:k])))
        return out


class Coin:
    """Finds the target at rank 0 with probability `p` (seeded per request, so paired runs are reproducible)."""

    def __init__(self, name, p, salt):
        self.name, self.p, self.salt = name, p, salt

    def retrieve(self, requests, k):
        return [Ranked(np.array([r.ts if np.random.default_rng((r.user_id, self.salt)).random() < self.p else 999])) for r in requests]


def _requests(n, search_share=0.5, seed=0):
    rng = np.random.default_rng(seed)
    requests = [Request(user_id=u, query="q" if rng.random() < search_share else None, ts=int(t), scenario="search" if u % 2 else "home_feed")
                for u, t in enumerate(rng.integers(1, 500, size=n))]
    return requests, np.array([r.ts for r in requests])


def test_harness_scores_any_retriever_object():
    requests, targets = _requests(40)
    report = evaluate([TargetAt("first", 0), TargetAt("third", 2), TargetAt("never", None)], requests, targets,
                      k=10, bootstrap=50, progress=False)
    assert report.value("first", "recall@1")[0] == 1.0
    assert report.value("third", "recall@1")[0] == 0.0 and report.value("third", "recall@5")[0] == 1.0
    assert report.value("third", "mrr")[0] == pytest.approx(1 / 3)
    assert report.value("never", "ndcg@10")[0] == 0.0
    assert report.recall_curve("third").tolist() == [0, 0] + [1.0] * 8
    assert report.results["first"].latency_ms_p99 >= report.results["first"].latency_ms_p50 > 0
    assert report.results["first"].throughput_rps > 0
    first = report.results["first"]
    assert len(first.latency_ms) == len(first.timed) == min(report.config.latency_requests, 40)
    search_p50, _ = first.latency_percentiles(report.slices["search"])
    assert search_p50 > 0 and np.isnan(first.latency_percentiles(np.zeros(40, dtype=bool))[0])


def test_harness_rejects_a_retriever_that_drops_requests():
    class Lossy:
        name = "lossy"

        def retrieve(self, requests, k):
            return [Ranked(np.array([1]))]

    requests, targets = _requests(5)
    with pytest.raises(ValueError, match="lossy"):
        evaluate([Lossy()], requests, targets, k=5, bootstrap=10, progress=False)


def test_bootstrap_interval_contains_the_mean_and_shrinks_with_more_requests():
    rng = np.random.default_rng(0)
    widths = []
    for n in (100, 1600):
        values = (rng.random(n) < 0.3).astype(float)
        low, high = percentile_interval(bootstrap_means(values, 1000, seed=1))
        assert low[0] <= values.mean() <= high[0]
        widths.append(high[0] - low[0])
    assert widths[1] < widths[0] / 2.5, "a 16× larger sample should give a ~4× narrower interval"


def test_paired_comparison_flags_a_real_difference_and_not_a_null_one():
    requests, targets = _requests(600)
    report = evaluate([Coin("strong", 0.6, 1), Coin("weak", 0.4, 2), Coin("twin", 0.6, 3)], requests, targets,
                      k=5, bootstrap=500, progress=False)
    real = paired_comparison(report, "strong", "weak", "recall@1")
    assert real.significant and real.ci_low > 0 and real.difference == pytest.approx(real.mean_a - real.mean_b)
    null = paired_comparison(report, "strong", "twin", "recall@1")
    assert not null.significant and null.ci_low < 0 < null.ci_high


def test_paired_test_on_identical_runs_has_p_value_one():
    values = np.random.default_rng(0).random(50)
    diff, low, high, p = paired_test(values, values, 200)
    assert diff == 0 and low == 0 and high == 0 and p == 1.0


def _world():
    """Three users: 1 is cold (1 training click), 2 browses (3 clicks) without ordering, 3 clicks 3 times and orders."""
    rows = [
        (1, 1, 1, "home_feed", None, 10, "click"),
        (1, 2, 2, "search", "x", 11, "click"),
        (2, 3, 3, "home_feed", None, 10, "click"), (2, 4, 3, "home_feed", None, 12, "click"),
        (2, 5, 4, "home_feed", None, 13, "click"), (2, 6, 4, "home_feed", None, 10, "click"),
        (2, 7, 5, "search", "y", 14, "click"),
        (3, 8, 6, "home_feed", None, 10, "order"), (3, 8, 6, "home_feed", None, 16, "click"),
        (3, 8, 6, "home_feed", None, 17, "click"), (3, 9, 6, "home_feed", None, 12, "click"),
        (3, 10, 7, "home_feed", None, 10, "click"), (3, 11, 8, "search", "z", 15, "cart"),
    ]
    events = pd.DataFrame(rows, columns=["user_id", "ts", "session_id", "scenario", "query", "item_id", "action"])
    events["position"] = np.int32(0)
    items = pd.DataFrame({"item_id": np.arange(10, 20), "origin": ["human"] * 5 + ["ai"] * 5})
    return events, items


def test_slices_partition_the_requests_and_follow_their_definitions():
    events, items = _world()
    split = leave_one_out(events)
    requests, targets = build_requests(split, "test")
    slices = request_slices(requests, targets, split.train, items)
    for family, members in slice_families(list(slices)).items():
        counts = np.sum([slices[m] for m in members], axis=0)
        assert (counts == 1).all(), f"{family} must put every request in exactly one slice"
    by_user = {r.user_id: i for i, r in enumerate(requests)}
    assert slices["cold_start_users"][by_user[1]] and not slices["cold_start_users"][by_user[2]]
    assert slices["search"].tolist() == [r.query is not None for r in requests]
    assert slices["target_origin=ai"][by_user[3]] and not slices["target_origin=ai"][by_user[1]]
    assert dormant_users(split.train).tolist() == [2]
    assert slices["dormant_users"][by_user[2]] and not slices["dormant_users"][by_user[3]]
    # item 10 is the most interacted-with; with 10 items the head is the top 2
    assert set(head_items(split.train.item_id.to_numpy(), items.item_id.to_numpy())) == {10, 12}


def test_exclude_seen_removes_history_items_before_cutting_to_k():
    answer = [Ranked(np.array([5, 6, 7, 8]), np.array([4.0, 3, 2, 1]))]
    kept = remove_seen(answer, [Request(user_id=1, history=(6, 8))], k=2)[0]
    assert kept.item_ids.tolist() == [5, 7] and kept.scores.tolist() == [4.0, 2.0]

    class Echo:
        name = "echo"

        def retrieve(self, requests, k):
            return [Ranked(np.array(list(r.history) + [r.ts])[:k]) for r in requests]

    requests = [Request(user_id=1, ts=42, history=(1, 2, 3))]
    keep = evaluate([Echo()], requests, [42], k=2, bootstrap=10, progress=False)
    drop = evaluate([Echo()], requests, [42], config=EvalConfig(k=2, bootstrap=10, exclude_seen=True), progress=False)
    assert keep.value("echo", "recall@1")[0] == 0 and drop.value("echo", "recall@1")[0] == 1


def test_a_table_cell_is_the_mean_inside_its_bootstrap_interval():
    from genrec.eval.bootstrap import mean_with_interval

    values = np.r_[np.zeros(80), np.ones(20)]
    mean, low, high = (float(x) for x in mean_with_interval(values).replace("[", "").replace("]", "").replace(",", "").split())
    assert mean == 0.2 and low < 0.2 < high and 0.1 < low and high < 0.3
    assert mean_with_interval(np.full(5, 0.5)) == "0.5000 [0.5000, 0.5000]"
