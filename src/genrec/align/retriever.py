"""`generative-aligned`: the post-trained model, served alone like the unaligned one."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from genrec.data.dataset import Dataset
from genrec.data.splits import Split
from genrec.model.retriever import GenerativeRetriever


class AlignedGenerativeRetriever(GenerativeRetriever):
    """RUN/align/generative through the same constrained beam search: no ranker at inference,
    so its serving cost is the unaligned model's."""

    name = "generative-aligned"

    @classmethod
    def from_run(cls, run: str | Path, dataset: Dataset | None = None,
                 split: Split | None = None) -> "AlignedGenerativeRetriever":
        """Load RUN/align/generative (loading never trains: `genrec align --run RUN` makes it)."""
        from genrec.align.stage import ALIGN_CODE, ALIGNED_DIR, _sid_table
        from genrec.artifacts import code_fingerprint

        folder = Path(run).joinpath(*ALIGNED_DIR)
        if not (folder / "manifest.json").exists():
            raise ValueError(f"no aligned generative model at {folder}; make it with: genrec align --run {run}")
        if json.loads((folder / "manifest.json").read_text()).get("code") != code_fingerprint(*ALIGN_CODE):
            warnings.warn(f"{folder} was aligned by other genrec.align code; using it as it is "
                          f"(re-align: genrec align --run {run} --fresh)", stacklevel=2)
        return cls.load(folder, _sid_table(Path(run)))
