"""The teacher whose lists the distill phase teaches: the cascade, or the run's SASRec.

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

A teacher is a `Retriever` whose `retrieve` scores are logits (softmaxed with
`AlignConfig.teacher_temperature` into the lists' weights). It is loaded from what
the run already trained, never trained here: a missing one is a `ValueError` naming
the command that makes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the config reader imports TEACHERS; loading a teacher is the stage's business
    from genrec.data.dataset import Dataset
    from genrec.data.splits import Split

TEACHERS = ("cascade", "sasrec")
"""What `AlignConfig.teacher` may name: the cascade, or the SASRec the run trained."""


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


__all__ = ["TEACHERS", "load_teacher"]
