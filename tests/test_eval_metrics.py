"""Our vectorized metrics agree exactly with established implementations."""

import numpy as np
import pytest
from ranx import Qrels, Run, evaluate
from sklearn.metrics import roc_auc_score

from genrec.eval.metrics import auc, gauc, item_coverage, mrr, ndcg_at_k, ranked_matrix, recall_at_k


def _random_run(rng, n_requests=60, n_items=40, k=20, multi=False):
    """Random rankings (some shorter than k) with distinct scores, and random judgements."""
    ranked, run, qrels, relevance = [], {}, {}, []
    for q in range(n_requests):
        length = int(rng.integers(1, k + 1))
        ids = rng.choice(np.arange(1, n_items + 1), size=length, replace=False)
        ranked.append(ids)
        run[f"q{q:04d}"] = {f"d{i}": float(length - r) for r, i in enumerate(ids)}
        n_rel = int(rng.integers(1, 5)) if multi else 1
        rel_ids = rng.choice(np.arange(1, n_items + 1), size=n_rel, replace=False)
        gains = rng.integers(1, 4, size=n_rel) if multi else np.ones(n_rel, dtype=int)
        relevance.append({int(i): int(g) for i, g in zip(rel_ids, gains)})
        qrels[f"q{q:04d}"] = {f"d{i}": int(g) for i, g in relevance[-1].items()}
    return ranked_matrix(ranked, k), relevance, Qrels(qrels), Run(run)


@pytest.mark.parametrize("multi", [False, True])
def test_recall_ndcg_mrr_equal_ranx_on_random_runs(multi):
    rng = np.random.default_rng(7 if multi else 3)
    ranked, relevance, qrels, run = _random_run(rng, multi=multi)
    targets = relevance if multi else np.array([next(iter(r)) for r in relevance])
    ours = {
        "recall@1": recall_at_k(ranked, targets, 1), "recall@5": recall_at_k(ranked, targets, 5),
        "recall@20": recall_at_k(ranked, targets, 20), "ndcg@5": ndcg_at_k(ranked, targets, 5),
        "ndcg@10": ndcg_at_k(ranked, targets, 10), "mrr": mrr(ranked, targets),
    }
    theirs = evaluate(qrels, run, list(ours), return_mean=False)
    for name, value in ours.items():
        assert np.allclose(value.values, theirs[name], atol=1e-12), name
        assert value.mean == pytest.approx(float(np.mean(theirs[name])), abs=1e-12)
    assert 0 < ours["recall@20"].mean < 1, "the random run must exercise both hits and misses"


def test_single_target_array_and_relevance_mapping_agree():
    rng = np.random.default_rng(0)
    ranked, relevance, _, _ = _random_run(rng)
    targets = np.array([next(iter(r)) for r in relevance])
    for metric in (lambda t: recall_at_k(ranked, t, 10), lambda t: ndcg_at_k(ranked, t, 10), lambda t: mrr(ranked, t)):
        assert np.array_equal(metric(targets).values, metric(relevance).values)


def test_metrics_on_a_hand_example():
    ranked = np.array([[3, 7, 9], [5, -1, -1], [1, 2, 4]])
    targets = np.array([7, 8, 1])
    assert recall_at_k(ranked, targets, 1).values.tolist() == [0, 0, 1]
    assert recall_at_k(ranked, targets, 3).values.tolist() == [1, 0, 1]
    assert mrr(ranked, targets).values.tolist() == [0.5, 0, 1]
    assert ndcg_at_k(ranked, targets, 3).values == pytest.approx([1 / np.log2(3), 0, 1])
    assert item_coverage(ranked, n_items=10) == pytest.approx(7 / 10)
    assert item_coverage(ranked, n_items=10, k=1) == pytest.approx(3 / 10)


def test_bad_input_names_the_field():
    with pytest.raises(ValueError, match="targets"):
        recall_at_k(np.zeros((3, 2), dtype=int), np.array([1, 2]), 1)
    with pytest.raises(ValueError, match="ranked"):
        recall_at_k(np.zeros(3, dtype=int), np.array([1, 2, 3]), 1)
    with pytest.raises(ValueError, match="labels"):
        auc(np.array([0.1, 0.2]), np.array([0, 2]))


def test_auc_equals_sklearn_including_ties():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=500)
    scores = np.round(rng.normal(size=500) + labels, 1)  # rounding creates ties
    assert auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_gauc_averages_per_user_auc_and_skips_one_class_users():
    users = np.array([1, 1, 1, 2, 2, 2, 2, 3, 3])
    scores = np.array([0.9, 0.1, 0.5, 0.2, 0.4, 0.6, 0.8, 0.3, 0.7])
    labels = np.array([1, 0, 0, 1, 0, 1, 0, 1, 1])  # user 3 has only positives
    # user 1: its positive beats both negatives → 1.0; user 2: pairs (0.2 vs 0.4, 0.8), (0.6 vs 0.4, 0.8) → 1/4
    assert gauc(users, scores, labels) == pytest.approx((1.0 + 0.25) / 2)
    assert gauc(users, scores, labels, weighting="impressions") == pytest.approx((3 * 1.0 + 4 * 0.25) / 7)
    assert np.isnan(gauc(np.array([1, 1]), np.array([0.1, 0.2]), np.array([1, 1])))
