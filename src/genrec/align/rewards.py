"""Rewards behind one interface: `score(requests, item_ids [B, K]) -> rewards [B, K]`.

* `RankerReward` — the cascade's multi-task ranker scores the items the generative
  model proposes: click/cart/order heads, fused by the cascade's fusion weights,
  calibrated (OneMall: the ranking model as the reward of the retriever).
* `PARSReward` — preference-aware reward from the logs (OneSearch PARS): what the
  user actually did with an item in that visit, weighted by behaviour depth
  (order > cart > click > impression) and by the slot it was shown in
  (`PreferenceWeights`, both fitted on the logged events).
* `MixedReward` — a weighted sum, so no single conversion signal is optimised
  alone (OneSearch-V2's behaviour-preference alignment against reward hacking).
* `OracleUtility` — the generated world's true choice probability of an item. It
  exists to *measure* reward hacking (does the ranker reward rise while the true
  utility falls?) and `build_reward` refuses it as a training reward.

Padding (`item_ids == -1`) always scores 0.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd

from genrec.data.schema import ACTIONS
from genrec.retrieval import Request

TRAINING_REWARDS: tuple[str, ...] = ("ranker", "pars", "ranker+pars")
"""Reward sources an alignment run may train on; "oracle" only measures."""


@runtime_checkable
class RewardSource(Protocol):
    name: str

    def score(self, requests: Sequence[Request], item_ids: np.ndarray) -> np.ndarray:
        """Rewards `[B, K]` float32 for the candidate items `[B, K]` of each request (-1 = padding → 0)."""
        ...


# ---- the cascade's ranker ------------------------------------------------------------


@contextmanager
def judge_precision() -> Iterator[None]:
    """The reward model scores in its own precision, without gradients, whatever the caller runs in.

    GRPO scores its rollouts inside the student's training step, where bf16 autocast is on by
    default on CPUs with bf16 arithmetic: without this the ranker and the fusion net would run
    in bf16 too, rounding the calibrated rewards the advantages are built from (and the fusion's
    NumPy hand-off refuses a bf16 tensor outright)."""
    import torch

    with ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        stack.enter_context(torch.autocast("cpu", enabled=False))
        if torch.cuda.is_available():
            stack.enter_context(torch.autocast("cuda", enabled=False))
        yield


class RankerReward:
    """Calibrated, fused multi-task ranker score of each (request, item): P(click)-like, in [0, 1]."""

    name = "ranker"

    def __init__(self, cascade_model, fusion: str | None = None):
        from genrec.cascade.retriever import CascadeRetriever

        self.cascade = CascadeRetriever(cascade_model, sources={}, fusion=fusion)

    @classmethod
    def from_run(cls, run: str | Path) -> "RankerReward":
        from genrec.cascade.retriever import MODEL_FOLDER, load_cascade

        folder = Path(run) / "cascade" / MODEL_FOLDER
        if not (folder / "manifest.json").exists():
            raise ValueError(f"reward 'ranker' needs a trained cascade at {folder} (missing); "
                             f"make it with: genrec cascade train --run {run}")
        return cls(load_cascade(Path(run)))

    def score(self, requests: Sequence[Request], item_ids: np.ndarray) -> np.ndarray:
        item_ids = _check(requests, item_ids)
        real = item_ids >= 0
        model = self.cascade.model
        request_index = np.nonzero(real)[0]
        flat = item_ids[real]
        out = np.zeros(item_ids.shape, dtype=np.float32)
        if not len(flat):
            return out
        req = model.space.requests(list(requests))
        from genrec.cascade.retriever import fusion_context

        with judge_precision():
            ranked = {"sizes": real.sum(1).astype(np.int64), "item_ids": flat,
                      "probs": model.ranker.predict_proba(req, request_index, flat),
                      "context": fusion_context(req)[request_index]}
            calibrated = np.concatenate([c for _, _, c in self.cascade.fuse(ranked, self.cascade.fusion)])
        out[real] = calibrated  # row-major order, as `ranked` was built
        return out


# ---- PARS: what the user did, by depth and position ------------------------------------


@dataclass
class PreferenceWeights:
    """Behaviour-depth and position weights fitted on logged events.

    `depth_[a]` for a in ACTIONS: the surprisal −log P(action ≥ a | shown), divided by
    the click's, so a click is worth 1 and deeper, rarer behaviour more (0 for a bare
    impression). `propensity_[p]`: P(click | slot p) / P(click | slot 0), how much less
    a lower slot is looked at; an interaction at slot p is weighted 1 / propensity
    (clipped at `max_position_weight`), the inverse-propensity correction of
    position bias. Both are read off the logs, nothing is hand-set but the clip.
    """

    max_position_weight: float = 3.0
    depth_: np.ndarray | None = None
    propensity_: np.ndarray | None = None

    def fit(self, events: pd.DataFrame) -> "PreferenceWeights":
        for column in ("action", "position"):
            if column not in events:
                raise ValueError(f"events needs a {column!r} column to fit PARS weights")
        rank = events["action"].map({a: i for i, a in enumerate(ACTIONS)}).to_numpy()
        if np.isnan(rank.astype(float)).any():
            raise ValueError(f"events.action holds values outside {ACTIONS}")
        shown = len(rank)
        at_least = np.array([(rank >= a).sum() for a in range(len(ACTIONS))], dtype=np.float64)
        surprisal = -np.log(np.clip(at_least / max(shown, 1), 1e-9, 1.0))
        self.depth_ = (surprisal / max(surprisal[1], 1e-9)).astype(np.float32)
        position = events["position"].to_numpy()
        known = position >= 0
        slots = int(position[known].max()) + 1 if known.any() else 1
        clicks = np.bincount(position[known], weights=(rank[known] >= 1), minlength=slots)
        shown_at = np.bincount(position[known], minlength=slots).astype(np.float64)
        ctr = clicks / np.maximum(shown_at, 1)
        self.propensity_ = np.clip(ctr / max(ctr[0], 1e-9), 1.0 / self.max_position_weight, 1.0).astype(np.float32)
        return self

    def weight(self, actions: Sequence[str] | np.ndarray, positions: np.ndarray) -> np.ndarray:
        """PARS weight `[n]` of interactions: depth[action] / propensity[position] (unknown slot: 1)."""
        if self.depth_ is None or self.propensity_ is None:
            raise ValueError("PreferenceWeights is not fitted; call fit(events) first")
        index = {a: i for i, a in enumerate(ACTIONS)}
        depth = self.depth_[[index[str(a)] for a in actions]]
        positions = np.asarray(positions, dtype=np.int64)
        known = (positions >= 0) & (positions < len(self.propensity_))
        propensity = np.where(known, self.propensity_[np.where(known, positions, 0)], 1.0)
        return (depth / propensity).astype(np.float32)


class PARSReward:
    """Reward of an item = its PARS weight in the visit the request came from (0 if the user
    did nothing with it). Visits are found by (user_id, ts) of the request."""

    name = "pars"

    def __init__(self, weights: PreferenceWeights, feedback: dict[tuple[int, int], dict[int, float]]):
        self.weights = weights
        self.feedback = feedback

    @classmethod
    def from_events(cls, events: pd.DataFrame, visits: pd.DataFrame,
                    weights: PreferenceWeights | None = None) -> "PARSReward":
        """`visits`: (user_id, ts, session_id) of the requests to reward; `events` the logs they index."""
        weights = weights or PreferenceWeights().fit(events)
        keys = visits[["user_id", "session_id"]].drop_duplicates()
        rows = events.merge(keys, on=["user_id", "session_id"])
        rows = rows.assign(value=weights.weight(rows["action"].to_numpy(), rows["position"].to_numpy()))
        best = rows.groupby(["user_id", "session_id", "item_id"])["value"].max()
        per_session: dict[tuple[int, int], dict[int, float]] = {}
        for (user, session, item), value in best.items():
            if value > 0:
                per_session.setdefault((int(user), int(session)), {})[int(item)] = float(value)
        feedback = {(int(u), int(t)): per_session.get((int(u), int(s)), {})
                    for u, t, s in visits[["user_id", "ts", "session_id"]].itertuples(index=False)}
        return cls(weights, feedback)

    def score(self, requests: Sequence[Request], item_ids: np.ndarray) -> np.ndarray:
        item_ids = _check(requests, item_ids)
        out = np.zeros(item_ids.shape, dtype=np.float32)
        for row, request in enumerate(requests):
            seen = self.feedback.get((request.user_id, request.ts))
            if seen:
                out[row] = [seen.get(int(i), 0.0) for i in item_ids[row]]
        return out


class MixedReward:
    """Σ_s weight_s · reward_s: several behaviour signals at once, so none is hacked alone."""

    def __init__(self, parts: Sequence[tuple[RewardSource, float]]):
        if not parts:
            raise ValueError("MixedReward needs at least one (source, weight)")
        self.parts = list(parts)
        self.name = "+".join(source.name for source, _ in self.parts)

    def score(self, requests: Sequence[Request], item_ids: np.ndarray) -> np.ndarray:
        total = np.zeros(np.shape(item_ids), dtype=np.float64)
        for source, weight in self.parts:
            total += weight * source.score(requests, item_ids)
        return total.astype(np.float32)


# ---- the oracle: measurement only ------------------------------------------------------


class OracleUtility:
    """The generated world's probability that the user picks an item: softmax of the oracle's
    scores over the whole catalogue. Σ over a top-10 is the *true* expected Recall@10."""

    name = "oracle"

    def __init__(self, truth):
        self.truth = truth

    @classmethod
    def from_run(cls, run: str | Path) -> "OracleUtility":
        from genrec.data.truth import TRUTH_FILE, WorldTruth

        path = Path(run) / "data" / TRUTH_FILE
        if not path.exists():
            raise ValueError(f"reward 'oracle' needs a generated world's truth at {path} (missing): "
                             f"only `genrec data synth` worlds know the true utility")
        return cls(WorldTruth.load(path))

    def score(self, requests: Sequence[Request], item_ids: np.ndarray) -> np.ndarray:
        item_ids = _check(requests, item_ids)
        out = np.zeros(item_ids.shape, dtype=np.float32)
        for row, request in enumerate(requests):
            last = request.history[-1] if request.history else None
            scores = self.truth.score_items(request.user_id, request.query, last).astype(np.float64)
            p = np.exp(scores - scores.max())
            p /= p.sum()
            real = (item_ids[row] >= 0) & (item_ids[row] < len(p))
            out[row, real] = p[item_ids[row, real]]
        return out


def build_reward(name: str, run: str | Path, *, pars: PARSReward | None = None,
                 pars_weight: float = 0.1, training: bool = True, ranker: RankerReward | None = None) -> RewardSource:
    """The reward source called `name` for `run`. `pars` supplies the logged visits PARS rewards
    look up; `ranker`, a ranker already loaded (else the run's cascade is read). With
    `training`, only `TRAINING_REWARDS` are accepted."""
    allowed = TRAINING_REWARDS if training else (*TRAINING_REWARDS, "oracle")
    if name not in allowed:
        why = " ('oracle' only measures reward hacking; it never trains the reported model)" \
            if name == "oracle" else ""
        raise ValueError(f"reward must be one of {list(allowed)}, got {name!r}{why}")
    if name == "oracle":
        return OracleUtility.from_run(run)
    if "pars" not in name:
        return ranker if ranker is not None else RankerReward.from_run(run)
    if pars is None:
        raise ValueError(f"reward {name!r} needs the logged visits (pars=PARSReward.from_events(...))")
    if name == "pars":
        return pars
    ranker = ranker if ranker is not None else RankerReward.from_run(run)
    return MixedReward([(ranker, 1.0), (pars, pars_weight)])


def _check(requests: Sequence[Request], item_ids: np.ndarray) -> np.ndarray:
    item_ids = np.asarray(item_ids, dtype=np.int64)
    if item_ids.ndim != 2 or item_ids.shape[0] != len(requests):
        raise ValueError(f"item_ids must be [len(requests)={len(requests)}, K], got shape {item_ids.shape}")
    return item_ids
