"""The pipeline layer's "train what is missing": the one place where evaluating a
retriever may first train it.

Loading (`from_run`, the server, `genrec evaluate`) never trains: a model that is
absent or whose training was interrupted is a `MissingStageError` naming the
command to run. A pipeline that owns the whole run — the demo, a benchmark — calls
`train_missing` first, so a trained model is reused and only a missing one costs
training time.

    train_missing(run, ["sasrec", "cascade", "generative"], dataset, split)
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from genrec.data.dataset import Dataset
from genrec.data.splits import Split


def _generative(run: Path, dataset: Dataset, split: Split) -> None:
    from genrec.model.retriever import MODEL_DIR
    from genrec.train.generative import train_generative

    if not run.joinpath(*MODEL_DIR, "manifest.json").exists():
        train_generative(run, dataset=dataset, split=split)


def _sasrec(run: Path, dataset: Dataset, split: Split) -> None:
    from genrec.baselines.sasrec import SASRecRetriever

    SASRecRetriever.train(run, dataset, split)


def _hstu(run: Path, dataset: Dataset, split: Split) -> None:
    from genrec.baselines.hstu import HSTURetriever

    HSTURetriever.train(run, dataset, split)


def _dimerec(run: Path, dataset: Dataset, split: Split) -> None:
    from genrec.baselines.dimerec import DimeRecRetriever

    DimeRecRetriever.train(run, dataset, split)


def _cascade(run: Path, dataset: Dataset, split: Split) -> None:
    from genrec.cascade.retriever import CascadeRetriever

    CascadeRetriever.train(run, dataset, split)


TRAINING_STAGES: dict[str, Callable[[Path, Dataset, Split], None]] = {
    "generative": _generative,
    "sasrec": _sasrec,
    "hstu": _hstu,
    "dimerec": _dimerec,
    "cascade": _cascade,
}
"""Retrievers whose `from_run` loads a trained model, and the stage that trains it."""


def train_missing(run: str | Path, names: Sequence[str], dataset: Dataset, split: Split) -> None:
    """Train every retriever in `names` that needs a training stage and lacks its model.
    The cascade goes last: its recall may read the others."""
    order = sorted((n for n in names if n in TRAINING_STAGES), key=lambda n: n == "cascade")
    for name in order:
        TRAINING_STAGES[name](Path(run), dataset, split)
