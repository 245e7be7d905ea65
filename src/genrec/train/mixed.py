"""Training examples of the generative model: search requests one at a time (the
full encoder reads the query beside the whole history) and recommendation as windows of each user's history (the causal encoder trains
every prefix in one pass), drawn from one index space so that every step holds
both in proportion to how many there are.

    table = MixedTable(requests, windows)     # ExampleTable, SequenceTable
    train(model, mixed_loss, range(len(table)), table.collate, ...)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genrec.model.batches import EncoderBatch, SequenceBatch
from genrec.model.model import GenerativeModel
from genrec.model.self_distill import self_distillation_loss
from genrec.train.examples import ExampleTable
from genrec.train.sequences import SequenceTable


@dataclass
class MixedBatch:
    """A step's search examples (`EncoderBatch`, target codes, target items) and windows; either may be None.
    `teacher`: the same search examples as self-distillation's teacher reads them (None without it)."""

    requests: tuple[EncoderBatch, torch.Tensor, torch.Tensor] | None
    windows: SequenceBatch | None
    teacher: EncoderBatch | None = None


@dataclass
class MixedTable:
    """Indices `[0, len(requests))` are requests, the rest windows; `requests` is
    None when there are no searches (data without queries, no indexing task).
    `teacher`: row for row the requests with thought-augmented queries (self-distillation)."""

    requests: ExampleTable | None
    windows: SequenceTable
    teacher: ExampleTable | None = None

    def __post_init__(self) -> None:
        if self.teacher is not None and (self.requests is None or len(self.teacher) != len(self.requests)):
            raise ValueError("MixedTable.teacher must hold one row per request "
                             f"({self.n_requests}), got {len(self.teacher)}")

    def __len__(self) -> int:
        return self.n_requests + len(self.windows)

    @property
    def n_requests(self) -> int:
        return 0 if self.requests is None else len(self.requests)

    @property
    def n_targets(self) -> int:
        return self.n_requests + self.windows.n_targets

    def collate(self, indices: list[int]) -> MixedBatch:
        n = self.n_requests
        requests = [i for i in indices if i < n]  # always empty without a request table (n == 0)
        windows = [i - n for i in indices if i >= n]
        teacher = self.teacher.collate(requests)[0] if requests and self.teacher is not None else None
        return MixedBatch(self.requests.collate(requests) if requests and self.requests is not None else None,
                          self.windows.collate(windows) if windows else None, teacher)


def batch_targets(batch: MixedBatch) -> int:
    """How many targets a step trains: one per request, one per marked window position."""
    requests = 0 if batch.requests is None else len(batch.requests[1])
    return requests + (0 if batch.windows is None else _window_targets(batch.windows))


def _window_targets(windows: SequenceBatch) -> int:
    return int((windows.target & (windows.items > 0)).sum())


def mixed_loss(model: GenerativeModel, batch: MixedBatch) -> torch.Tensor:
    """Mean over every target of the step, searches and window positions alike:
    each part's mean loss weighted by how many targets it has."""
    if batch.requests is None and batch.windows is None:
        raise ValueError("MixedBatch holds neither requests nor windows")
    losses, weights = [], []
    if batch.requests is not None and batch.teacher is not None:
        losses.append(self_distillation_loss(model, batch.requests[0], batch.teacher,
                                             *batch.requests[1:], weight=model.config.self_distill))
        weights.append(len(batch.requests[1]))
    elif batch.requests is not None:
        losses.append(model.loss(*batch.requests))
        weights.append(len(batch.requests[1]))
    if batch.windows is not None:
        losses.append(model.sequence_loss(batch.windows))
        weights.append(_window_targets(batch.windows))
    total = sum(weights)
    terms = [loss * (weight / total) for loss, weight in zip(losses, weights)]
    return sum(terms[1:], start=terms[0])  # starting from the first term (not 0) keeps the sum a tensor
