"""Slot policies for an immersive feed: greedy per slot, STCRank's MOC and its MSC look-ahead.

Each policy orders one session's candidates into slots from `SlotPredictions`:
per candidate, P(order), P(view) and P(reach the next slot), each twice —
after a slot of another leaf (column 0) and after a slot of the same leaf
(column 1), because what the previous slot showed changes the next (fatigue).

* `greedy_slots` — every slot takes the candidate most likely to be bought:
  the per-slot ranking a list ranker gives a feed.
* `moc_slots` — multi-objective collaboration inside a slot: a slot is worth
  its order plus `value` × the chance the user goes on to the next slot, where
  `value` is what one more slot is worth in orders (chosen on validation). A
  candidate that converts but ends the visit no longer wins by its conversion.
* `msc_slots` — multi-slot collaboration, STCRank's two-stage look-ahead:
  stage 1 keeps the `shortlist` best candidates by the MOC score; stage 2 scores
  each by its own order plus its chance to go on times the best MOC score the
  *following* slot could then reach (fatigue and the remaining candidates
  included). It only departs from MOC where the next slot gains.

The policies are deterministic and do not react to what the user did; a slot
sequence is judged by `genrec.feed.truth.expected_session`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genrec.feed.predict import SlotOutcomeModel
from genrec.feed.truth import FeedTruth


@dataclass(frozen=True)
class SlotPredictions:
    """One session's candidates: `order`, `view`, `reach` `[n, 2]` (column 1: after a slot of the same leaf),
    `leaf` `[n]`."""

    order: np.ndarray
    view: np.ndarray
    reach: np.ndarray
    leaf: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.leaf)
        for name in ("order", "view", "reach"):
            if getattr(self, name).shape != (n, 2):
                raise ValueError(f"SlotPredictions.{name} must be [{n}, 2], got {getattr(self, name).shape}")


def model_predictions(model: SlotOutcomeModel, user: int, candidates: np.ndarray) -> SlotPredictions:
    """The learned slot model's predictions for one user's candidates (0-based item indices)."""
    candidates = np.asarray(candidates, dtype=np.int64)
    n = len(candidates)
    rows = model.predict(np.full(2 * n, user), np.tile(candidates, 2), np.repeat([False, True], n))
    by_column = rows.reshape(2, n, 3).transpose(1, 0, 2)  # [n, same leaf, objective]
    return SlotPredictions(by_column[..., 0], by_column[..., 1], by_column[..., 2],
                           model.features.item_leaf[candidates])


def oracle_predictions(truth: FeedTruth, user: int, candidates: np.ndarray) -> SlotPredictions:
    """The world's own slot model for one user's candidates: the ceiling of any learned predictions."""
    candidates = np.asarray(candidates, dtype=np.int64)
    p = truth.shown(np.array(user), candidates[:, None], np.array([[False, True]]))
    return SlotPredictions(p.order, p.view, p.reach_next, truth.world.item_leaf[candidates])


def greedy_slots(p: SlotPredictions, n_slots: int) -> np.ndarray:
    """Candidate positions `[min(n_slots, n)]` by P(order) alone, best first."""
    _check_slots(n_slots)
    return np.argsort(-p.order[:, 0], kind="stable")[:n_slots]


def moc_slots(p: SlotPredictions, n_slots: int, value: float) -> np.ndarray:
    """Fill slot after slot with the candidate of the best order + `value` × P(reach the next slot)."""
    _check_slots(n_slots)
    if value < 0:
        raise ValueError(f"value must be ≥ 0, got {value}")
    remaining = np.ones(len(p.leaf), dtype=bool)
    picked: list[int] = []
    for slot in range(min(n_slots, len(p.leaf))):
        last = slot == n_slots - 1
        score = _moc_score(p, _after(p, picked), 0.0 if last else value)
        picked.append(_best(score, remaining))
        remaining[picked[-1]] = False
    return np.asarray(picked, dtype=np.int64)


def msc_slots(p: SlotPredictions, n_slots: int, value: float, shortlist: int = 8) -> np.ndarray:
    """MOC with STCRank's two-stage look-ahead: among the `shortlist` best candidates by the MOC score, take
    the one whose order plus P(reach the next slot) × the next slot's best MOC score is largest."""
    _check_slots(n_slots)
    if value < 0 or shortlist < 1:
        raise ValueError(f"value must be ≥ 0 and shortlist ≥ 1, got {value} and {shortlist}")
    n = len(p.leaf)
    remaining = np.ones(n, dtype=bool)
    picked: list[int] = []
    for slot in range(min(n_slots, n)):
        slots_left = n_slots - slot
        same = _after(p, picked)
        if slots_left == 1:
            choice = _best(_moc_score(p, same, 0.0), remaining)
        else:
            first = _moc_score(p, same, value)
            first[~remaining] = -np.inf
            short = np.argsort(-first, kind="stable")[:min(shortlist, int(remaining.sum()))]
            next_value = 0.0 if slots_left == 2 else value
            gains = np.empty(len(short))
            for row, candidate in enumerate(short):
                after = p.leaf == p.leaf[candidate]
                following = _moc_score(p, after, next_value)
                following[~remaining] = -np.inf
                following[candidate] = -np.inf
                best_next = following.max() if np.isfinite(following).any() else 0.0
                gains[row] = p.order[candidate, int(same[candidate])] + p.reach[candidate, int(same[candidate])] * best_next
            choice = int(short[int(np.argmax(gains))])
        picked.append(choice)
        remaining[choice] = False
    return np.asarray(picked, dtype=np.int64)


def _check_slots(n_slots: int) -> None:
    if n_slots < 1:
        raise ValueError(f"n_slots must be ≥ 1, got {n_slots}")


def _after(p: SlotPredictions, picked: list[int]) -> np.ndarray:
    """Whether each candidate would follow a slot of its own leaf `[n]` (never on the first slot)."""
    if not picked:
        return np.zeros(len(p.leaf), dtype=bool)
    return p.leaf == p.leaf[picked[-1]]


def _moc_score(p: SlotPredictions, same_leaf: np.ndarray, value: float) -> np.ndarray:
    column = same_leaf.astype(np.int64)
    rows = np.arange(len(p.leaf))
    return p.order[rows, column] + value * p.reach[rows, column]


def _best(score: np.ndarray, remaining: np.ndarray) -> int:
    return int(np.argmax(np.where(remaining, score, -np.inf)))
