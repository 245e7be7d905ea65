"""The relevance-judgement task: graded (query, item) judgements scored two ways.

Recall metrics ask "was the one item the user took found?". Search data sets
with human judgements (ESCI's E/S/C/I, KuaiSearch's 0–3 scores) and the
generated world's truth say more: how relevant *every* judged item is to the
query. That supports two measurements, as in KuaiSearch's relevance task:

- **ranking**: NDCG@k with exponential gains `2^grade − 1` (Burges et al.,
  2005), so one Exact item outweighs three Complements. Unjudged items gain 0
  (the TREC convention) and the ideal list orders the judged items by grade.
- **classification**: a scorer with a threshold says relevant / not for each
  judged pair; accuracy, macro-F1 and each class's precision, recall and F1
  against the grades binarised at `relevant_grade`.

Judgements are one mapping per query `{item_id: grade}` (grades non-negative
integers); `judgements_from_events` reads them from a dataset whose search
events carry a `relevance` column (the ESCI and KuaiSearch loaders write it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from genrec.eval.metrics import PerRequest, ndcg_at_k

Judgements = Sequence[Mapping[int, int]]


def exponential_gain(grades: np.ndarray) -> np.ndarray:
    """`2^grade − 1`: 0 for an irrelevant item, 1, 3, 7 for grades 1, 2, 3."""
    return np.power(2.0, np.asarray(grades, dtype=np.float64)) - 1.0


def graded_ndcg_at_k(ranked: np.ndarray, judgements: Judgements, k: int) -> PerRequest:
    """NDCG@k of `ranked` `[n_requests, ≥k]` item ids against graded `judgements` (one mapping per row).

    A request whose judgements hold no positive grade scores 0; callers that
    average should keep only requests with something relevant to find.
    """
    gains = []
    for row, judged in enumerate(judgements):
        grades = np.fromiter(judged.values(), dtype=np.float64, count=len(judged))
        if len(grades) and (grades.min() < 0 or not np.all(grades == np.floor(grades))):
            raise ValueError(f"judgements[{row}]: grades must be non-negative integers, got {sorted(set(grades.tolist()))}")
        gains.append(dict(zip((int(i) for i in judged), exponential_gain(grades).tolist())))
    return ndcg_at_k(ranked, gains, k)


@dataclass(frozen=True)
class ClassScores:
    """One class's precision, recall and F1 (0 where undefined) and its number of true pairs."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ClassificationScores:
    """Accuracy, macro-F1 (the mean of the classes' F1) and per-class scores of a classifier.

    `confusion` is `[n_labels, n_labels]`, rows the true label, columns the
    predicted one, in the order of `labels`.
    """

    accuracy: float
    macro_f1: float
    per_class: dict[int, ClassScores]
    confusion: np.ndarray
    labels: tuple[int, ...]


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """Counts `[n_labels, n_labels]` of (true, predicted) pairs; a label outside `labels` is an error."""
    true, predicted = _check_labels(true, predicted, labels)
    index = {label: i for i, label in enumerate(labels)}
    rows = np.fromiter((index[v] for v in true.tolist()), dtype=np.int64, count=len(true))
    cols = np.fromiter((index[v] for v in predicted.tolist()), dtype=np.int64, count=len(predicted))
    n = len(labels)
    return np.bincount(rows * n + cols, minlength=n * n).reshape(n, n)


def classification_scores(true: np.ndarray, predicted: np.ndarray, labels: Sequence[int] = (0, 1)) -> ClassificationScores:
    """Accuracy, macro-F1 and per-class precision / recall / F1 of `predicted` against `true` `[n]`."""
    labels = tuple(int(label) for label in labels)
    matrix = confusion_matrix(true, predicted, labels)
    hits = np.diag(matrix).astype(np.float64)
    predicted_count, true_count = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(hits, predicted_count, out=np.zeros(len(labels)), where=predicted_count > 0)
    recall = np.divide(hits, true_count, out=np.zeros(len(labels)), where=true_count > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros(len(labels)), where=total > 0)
    per_class = {label: ClassScores(float(p), float(r), float(f), int(s))
                 for label, p, r, f, s in zip(labels, precision, recall, f1, true_count)}
    n = int(matrix.sum())
    return ClassificationScores(accuracy=float(hits.sum() / n) if n else 0.0, macro_f1=float(f1.mean()),
                                per_class=per_class, confusion=matrix, labels=labels)


def binarise(grades: np.ndarray, relevant_grade: int) -> np.ndarray:
    """1 where `grade ≥ relevant_grade`, else 0 `[n]`."""
    if relevant_grade < 1:
        raise ValueError(f"relevant_grade must be ≥ 1 (grade 0 is irrelevant by definition), got {relevant_grade}")
    return (np.asarray(grades) >= relevant_grade).astype(np.int64)


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold on `scores` (relevant when `score ≥ threshold`) with the highest macro-F1 on `labels`.

    Chosen on held-out judgements (a validation part) and then applied
    unchanged to the test part, so the test numbers are not tuned on test.
    Candidates are the distinct scores and one above the largest (all
    irrelevant); ties go to the lowest threshold.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if len(scores) != len(labels) or not len(scores):
        raise ValueError(f"scores and labels must be non-empty and equally long, got {len(scores)} and {len(labels)}")
    candidates = np.r_[np.unique(scores), np.inf]
    f1s = [classification_scores(labels, (scores >= t).astype(np.int64)).macro_f1 for t in candidates]
    return float(candidates[int(np.argmax(f1s))])


def judgements_from_events(events: pd.DataFrame) -> tuple[list[str], list[dict[int, int]]]:
    """The queries and `{item_id: grade}` judgements of the search sessions in `events`.

    Each search session is one query (ESCI and KuaiSearch make one per query);
    the grade is the event's `relevance`. A session judging one item twice
    keeps the highest grade.
    """
    if "relevance" not in events.columns:
        raise ValueError("events have no 'relevance' column; load a judged data set (ESCI, KuaiSearch) or build "
                         "judgements from the world's truth (WorldTruth.graded_relevance)")
    search = events[(events["scenario"] == "search") & events["query"].notna()]
    queries, judgements = [], []
    for _, session in search.groupby("session_id", sort=True):
        judged: dict[int, int] = {}
        for item, grade in zip(session["item_id"].to_numpy(), session["relevance"].to_numpy()):
            judged[int(item)] = max(int(grade), judged.get(int(item), 0))
        queries.append(str(session["query"].iloc[0]))
        judgements.append(judged)
    return queries, judgements


def _check_labels(true: np.ndarray, predicted: np.ndarray, labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(true).reshape(-1).astype(np.int64)
    predicted = np.asarray(predicted).reshape(-1).astype(np.int64)
    if len(true) != len(predicted):
        raise ValueError(f"true has {len(true)} labels, predicted has {len(predicted)}")
    for name, values in (("true", true), ("predicted", predicted)):
        unknown = sorted(set(np.unique(values).tolist()) - set(labels))
        if unknown:
            raise ValueError(f"{name} holds labels {unknown[:5]}; expected only {list(labels)}")
    return true, predicted
