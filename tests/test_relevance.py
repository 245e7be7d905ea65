"""The relevance-judgement task: graded NDCG, a classifier's accuracy / F1, and where judgements come from."""

import math

import numpy as np
import pytest
from ranx import Qrels, Run, evaluate
from sklearn.metrics import accuracy_score, f1_score

from genrec.data.loaders import load_esci, load_kuaisearch
from genrec.eval.metrics import ranked_matrix
from genrec.eval.relevance import (
    best_threshold,
    binarise,
    classification_scores,
    confusion_matrix,
    exponential_gain,
    graded_ndcg_at_k,
    judgements_from_events,
)
from tests.test_loaders import FIXTURES


def test_graded_ndcg_uses_exponential_gains_over_the_judged_items():
    # gains 2^g - 1: item 10 → 1, item 30 → 7, unjudged 20 → 0; the ideal list is 40-less: 7, 3 (item 40), 1
    ranked = np.array([[10, 20, 30]])
    value = graded_ndcg_at_k(ranked, [{10: 1, 30: 3, 40: 2}], k=3)
    dcg = 1 / math.log2(2) + 7 / math.log2(4)
    ideal = 7 / math.log2(2) + 3 / math.log2(3) + 1 / math.log2(4)
    assert value.mean == pytest.approx(dcg / ideal) == pytest.approx(0.4790909148596985)
    linear = (1 + 3 / 2) / (3 + 2 / math.log2(3) + 1 / 2)  # what rel/log2 gains would give
    assert abs(value.mean - linear) > 0.04


def test_graded_ndcg_equals_ranx_burges_ndcg_on_random_runs():
    rng = np.random.default_rng(11)
    ranked, judgements, run, qrels = [], [], {}, {}
    for q in range(50):
        ids = rng.choice(np.arange(1, 41), size=int(rng.integers(1, 15)), replace=False)
        ranked.append(ids)
        run[f"q{q:04d}"] = {f"d{i}": float(len(ids) - r) for r, i in enumerate(ids)}
        judged = rng.choice(np.arange(1, 41), size=8, replace=False)
        grades = rng.integers(0, 4, size=8)
        grades[0] = max(grades[0], 1)
        judgements.append({int(i): int(g) for i, g in zip(judged, grades)})
        qrels[f"q{q:04d}"] = {f"d{i}": int(g) for i, g in judgements[-1].items()}
    ours = graded_ndcg_at_k(ranked_matrix(ranked, 10), judgements, k=10)
    theirs = evaluate(Qrels(qrels), Run(run), "ndcg_burges@10", return_mean=False)
    assert np.allclose(ours.values, theirs, atol=1e-12)


def test_graded_ndcg_rejects_a_negative_grade():
    with pytest.raises(ValueError, match=r"judgements\[1\].*non-negative integers"):
        graded_ndcg_at_k(np.array([[1], [2]]), [{1: 1}, {2: -1}], k=1)


def test_exponential_gain_of_the_four_grades():
    assert exponential_gain(np.array([0, 1, 2, 3])).tolist() == [0, 1, 3, 7]


def test_f1_on_a_tiny_confusion_matrix():
    true = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    predicted = np.array([1, 1, 0, 0, 0, 1, 0, 0])
    scores = classification_scores(true, predicted)
    assert scores.confusion.tolist() == [[3, 1], [2, 2]]  # rows true 0/1, columns predicted 0/1
    assert scores.accuracy == pytest.approx(5 / 8)
    assert scores.per_class[1].precision == pytest.approx(2 / 3) and scores.per_class[1].recall == pytest.approx(1 / 2)
    assert scores.per_class[1].f1 == pytest.approx(4 / 7)
    assert scores.per_class[0].f1 == pytest.approx(2 / 3)
    assert scores.macro_f1 == pytest.approx((4 / 7 + 2 / 3) / 2)
    assert scores.per_class[0].support == 4 and scores.per_class[1].support == 4


def test_classification_scores_equal_sklearn_on_four_grades():
    rng = np.random.default_rng(5)
    true, predicted = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    predicted[predicted == 2] = 3  # a class never predicted: its F1 is 0, as sklearn's zero_division=0
    scores = classification_scores(true, predicted, labels=(0, 1, 2, 3))
    assert scores.accuracy == pytest.approx(accuracy_score(true, predicted))
    assert scores.macro_f1 == pytest.approx(f1_score(true, predicted, average="macro", labels=[0, 1, 2, 3], zero_division=0))
    per_class = f1_score(true, predicted, average=None, labels=[0, 1, 2, 3], zero_division=0)
    assert [scores.per_class[c].f1 for c in range(4)] == pytest.approx(per_class.tolist())


def test_a_label_outside_the_classes_is_rejected():
    with pytest.raises(ValueError, match=r"predicted holds labels \[2\]"):
        confusion_matrix(np.array([0, 1]), np.array([0, 2]), labels=(0, 1))


def test_best_threshold_separates_scores_that_can_be_separated():
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.9, 0.2])
    labels = np.array([0, 0, 1, 1, 1, 0])
    threshold = best_threshold(scores, labels)
    assert threshold == pytest.approx(0.35)
    assert classification_scores(labels, (scores >= threshold).astype(int)).accuracy == pytest.approx(5 / 6)


def test_binarise_keeps_grades_at_or_above_the_cut():
    assert binarise(np.array([0, 1, 2, 3]), relevant_grade=2).tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="relevant_grade"):
        binarise(np.array([0]), relevant_grade=0)


def test_esci_judgements_come_from_the_relevance_column():
    dataset = load_esci(FIXTURES / "esci")
    queries, judgements = judgements_from_events(dataset.events)
    titles = dict(zip(dataset.items.item_id, dataset.items.title))
    by_query = {q: {titles[i]: g for i, g in j.items()} for q, j in zip(queries, judgements)}
    assert by_query["red nail polish"] == {"OPI Red Nail Lacquer": 3, "Essie Crimson Polish": 2, "Garden Hose 50ft": 0}
    assert by_query["nail file"] == {"Glass Nail File": 3, "OPI Red Nail Lacquer": 1}


def test_kuaisearch_judgements_keep_the_0_to_3_labels():
    queries, judgements = judgements_from_events(load_kuaisearch(FIXTURES / "kuaisearch").events)
    assert sorted(sorted(j.values()) for j in judgements) == [[0, 1, 2, 3], [0, 3]]
    assert set(queries) == {"红色指甲油", "保温杯316"}


def test_judgements_need_a_relevance_column(small_world):
    with pytest.raises(ValueError, match="no 'relevance' column"):
        judgements_from_events(small_world.dataset.events)


def test_world_grades_follow_the_share_of_query_concepts_an_item_carries(small_world):
    truth = small_world.truth
    search = small_world.dataset.events
    query = next(q for q in search["query"].dropna() if len(truth.parse_query(q)) >= 2)
    grades = truth.graded_relevance(query)
    named, matched = len(truth.parse_query(query)), truth.query_matches(query)
    assert grades.shape == (truth.n_items,) and set(np.unique(grades)) <= {0, 1, 2, 3}
    assert (grades[matched == named] == 3).all() and (grades[matched == 0] == 0).all()
    partial = (matched > 0) & (matched < named)
    assert ((grades[partial] >= 1) & (grades[partial] <= 2)).all()
    assert (grades == 3).any()  # the query was written from some item's concepts
    assert (truth.graded_relevance("zzzz qqqq") == 0).all()
