"""The teacher whose lists the distill phase teaches: the cascade, the run's SASRec, or item-CF,
alone or re-ranking the student's own candidates.

Why more than the cascade: a teacher helps only where it is the stronger model, and
which model that is depends on the data. On the default world's searches it is the
cascade; on Amazon Beauty, under the policy that leaves history items out of every
answer, it is SASRec (validation N@10 0.069 against the generative model's 0.060),
and the generative model's own candidates re-ranked by its served score + 4 × SASRec's
log-probability would reach 0.072 (`benchmarks/teacher_headroom.py`,
`benchmarks/results/align_teacher.md`). The generative model finds the right items;
its item head orders them worse than an item-level model does. So the distill phase
can take that model's lists, and the aligned model still answers alone: the teacher
is read while aligning, never while serving.

A stronger teacher still is the student and an item-level model together: on
MovieLens-100k the model's own candidates re-ranked by served score + 1 × item-CF's
log-probability reach validation N@10 0.112 against 0.102 served and 0.100 for item-CF
alone (`benchmarks/results/align_pool_teacher.md`). `PoolTeacher` is that ensemble, the
OneSearch-V2 idea of a stronger teacher internalised into the student: it is read
while aligning only, so serving still pays for one model.

A teacher is a `Retriever` whose `retrieve` scores are logits (softmaxed with
`AlignConfig.teacher_temperature` into the lists' weights). The cascade and SASRec are
loaded from what the run already trained, never trained here: a missing one is a
`ValueError` naming the command that makes it. Item-CF is counted afresh from the
training split (seconds; it has nothing to save).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from genrec.retrieval import Ranked, Request

if TYPE_CHECKING:  # the config reader imports TEACHERS; loading a teacher is the stage's business
    from genrec.data.dataset import Dataset
    from genrec.data.splits import Split

TEACHERS = ("cascade", "sasrec", "itemcf")
"""What `AlignConfig.teacher` may name: the cascade, the SASRec the run trained, or item-CF."""


def load_teacher(name: str, run: str | Path, dataset: Dataset, split: Split):
    """The trained retriever `name` (one of `TEACHERS`) of `run`, as the run saved it."""
    run = Path(run)
    if name == "cascade":
        from genrec.cascade.retriever import CascadeRetriever

        if not (run / "cascade" / "model" / "manifest.json").exists():
            raise ValueError(f"the distill phase's teacher, the cascade, is missing at {run / 'cascade' / 'model'}; "
                             f"make it with: genrec cascade train --run {run} (or set distill_steps=0)")
        return CascadeRetriever.from_run(run, dataset, split)  # loads; never trains
    if name == "sasrec":
        return _saved_sasrec(run, dataset, split)
    if name == "itemcf":
        from genrec.baselines.itemcf import ItemCFRetriever

        return ItemCFRetriever.from_run(run, dataset, split)
    raise ValueError(f"teacher must be one of {list(TEACHERS)}, got {name!r}")


def _saved_sasrec(run: Path, dataset: Dataset, split: Split):
    """SASRec with the config it was trained with (RUN/train/sasrec/config.json): a benchmark trains it
    with its own history length and schedule, and the default config would not match that model."""
    from genrec.baselines.sasrec import SASRecConfig, SASRecRetriever
    from genrec.config_file import load_config

    saved = run / "train" / SASRecRetriever.name / "config.json"
    if not saved.exists():
        raise ValueError(f"the distill phase's teacher, SASRec, is missing at {saved.parent}; "
                         f"make it with: genrec train --run {run} --model sasrec (or set teacher='cascade')")
    config = load_config(SASRecConfig, None, defaults=json.loads(saved.read_text()))
    return SASRecRetriever.from_run(run, dataset, split, config)


class PoolTeacher:
    """The student's own served candidates re-ranked by served score + `mix` × the teacher's log-probability.

    Why: a teacher's whole-catalogue list teaches the student items it would never find,
    and leaves out what the student knows that the teacher does not. Where the two models
    disagree their sum is stronger than either (`benchmarks/teacher_headroom.py`), and
    that sum, over exactly the candidates the student serves, is what this teacher ranks.
    The teacher's log-probability is the log-softmax of its scores over every item it
    ranks (the catalogue); a candidate it does not rank is dropped.
    """

    name = "pool"

    def __init__(self, student, teacher, mix: float, pool: int, n_slots: int):
        if not mix >= 0:
            raise ValueError(f"the pool teacher's mix must be ≥ 0, got {mix}")
        if pool < 1:
            raise ValueError(f"the pool teacher's pool must be ≥ 1 candidates, got {pool}")
        self.student, self.teacher, self.mix, self.pool, self.n_slots = student, teacher, mix, pool, n_slots

    def retrieve(self, requests: Sequence[Request], k: int) -> list[Ranked]:
        served = self.student.retrieve(requests, self.pool)
        taught = self.teacher.retrieve(requests, self.n_slots - 1)  # every item but the padding slot
        answers = []
        for candidates, ranked in zip(served, taught):
            log_p = np.full(self.n_slots, -np.inf)
            scores = np.asarray(ranked.scores, dtype=np.float64)
            if len(scores):
                log_p[ranked.item_ids] = scores - np.logaddexp.reduce(scores)
            ids = np.asarray(candidates.item_ids, dtype=np.int64)
            keep = np.isfinite(log_p[ids])  # before the product: 0 × -inf is NaN
            ids = ids[keep]
            combined = np.asarray(candidates.scores, dtype=np.float64)[keep] + self.mix * log_p[ids]
            order = np.argsort(-combined, kind="stable")[:k]
            answers.append(Ranked(ids[order], combined[order].astype(np.float32)))
        return answers


__all__ = ["TEACHERS", "PoolTeacher", "load_teacher"]
