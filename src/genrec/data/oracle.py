"""The oracle: ranks by the generated world's true preference model.

On a generated world we know why every user clicked, so the ranking by the
true model is the ceiling any learned retriever can reach; evaluation reports
it beside every result. It only exists for worlds written by
`genrec data synth` (their `truth.npz`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from genrec.data.dataset import Dataset
from genrec.data.splits import Split
from genrec.data.truth import TRUTH_FILE, WorldTruth
from genrec.retrieval import Ranked, Request, top_k


class OracleRetriever:
    """Scores every item with `WorldTruth.score_items(user, query, last history item)`."""

    name = "oracle"

    def __init__(self, truth: WorldTruth):
        self.truth = truth

    @classmethod
    def from_run(cls, run: str | Path, dataset: Dataset, split: Split | None = None) -> "OracleRetriever":
        """Load the truth saved next to the dataset in `run/data`."""
        path = Path(run) / "data" / TRUTH_FILE
        if not path.exists():
            raise ValueError(
                f"the oracle needs a generated world: {path} does not exist, so the dataset in "
                f"{Path(run) / 'data'} was not written by `genrec data synth` (only generated worlds know the truth)"
            )
        truth = WorldTruth.load(path)
        ids = dataset.items["item_id"].to_numpy()
        if len(ids) != truth.n_items or ids.min() != 1 or ids.max() != truth.n_items:
            raise ValueError(
                f"{path} describes {truth.n_items} items but the dataset has {len(ids)} "
                f"(ids {ids.min()}..{ids.max()}); expected the world's own dataset, unchanged"
            )
        return cls(truth)

    def retrieve(self, requests: Sequence[Request], k: int) -> list[Ranked]:
        ranked = []
        for request in requests:
            last = request.history[-1] if request.history else None
            ranked.append(top_k(self.truth.score_items(request.user_id, request.query, last), k))
        return ranked
