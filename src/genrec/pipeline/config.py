"""`PipelineConfig`: every stage of `genrec run`, one section each, in one file.

    data  → RUN/data      generated world (`[data.world]`) or a loader reading `source`
    sid   → RUN/sid       `build_sids` arguments (RUN/features is embedded on the way)
    train → RUN/train/generative   `GenerativeTrainConfig` (`[train.model]`, `[train.train]`)
    cascade → RUN/cascade/model    `CascadeConfig` (trained when evaluated or when align reads it)
    align → RUN/align/generative   `AlignConfig`
    eval  → RUN/eval      which retrievers, which split, `[eval.harness]` = `EvalConfig`

The defaults are `genrec demo`'s, section by section (its world, its SIDs, its
model, its post-training, its nine retrievers): `configs/demo.yaml` spells them
out and a test keeps the two equal. A config file names only what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from genrec.align.config import AlignConfig
from genrec.cascade.retriever import CascadeConfig
from genrec.data.synth import WorldConfig
from genrec.eval.harness import EvalConfig
from genrec.sid.config import DEMO_SIDS, SidConfig
from genrec.train.generative import GenerativeTrainConfig

SYNTH = "synth"

DEMO_RETRIEVERS: tuple[str, ...] = (
    "popularity", "bm25", "dense", "itemcf", "sasrec", "cascade", "generative", "generative-aligned", "oracle",
)
"""What `genrec demo` evaluates: every baseline, the cascade, the generative model before and after
post-training, and the oracle ceiling."""



@dataclass(frozen=True)
class DataConfig:
    """Where RUN/data comes from. `loader` "synth": the generated world `world`; any other
    name of `genrec.data.loaders.LOADERS` ("p5-amazon", "recbole", "kuaisar", "esci", "csv")
    reads `source` (the folder of the public files; for "csv", the events file with the
    canonical column names — other layouts: `genrec load csv … --out RUN/data` first)."""

    loader: str = SYNTH
    source: str = ""
    world: WorldConfig = field(default_factory=WorldConfig)

    def __post_init__(self) -> None:
        from genrec.data.loaders import LOADERS

        known = (SYNTH, *LOADERS)
        if self.loader not in known:
            raise ValueError(f"loader must be one of {list(known)}, got {self.loader!r}")
        if self.loader != SYNTH and not self.source:
            raise ValueError(f"loader {self.loader!r} needs source: the folder (or csv file) it reads")


@dataclass(frozen=True)
class EvalStageConfig:
    """What the last stage evaluates: `retrievers` (names of `genrec.registry`) on the
    leave-one-out `part`, all requests or a seeded `max_requests` sample. A generative
    retriever in the list is what makes the run train it ("generative") and post-train it
    ("generative-aligned"); SASRec and the cascade are trained when listed and missing."""

    retrievers: tuple[str, ...] = DEMO_RETRIEVERS
    part: str = "test"
    max_requests: int | None = None
    harness: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        from genrec.registry import retriever_names

        unknown = [name for name in self.retrievers if name not in retriever_names()]
        if not self.retrievers or unknown:
            raise ValueError(f"retrievers must be names from {retriever_names()}, got {list(self.retrievers)}")
        if self.part not in ("valid", "test"):
            raise ValueError(f"part must be 'valid' or 'test', got {self.part!r}")
        if self.max_requests is not None and self.max_requests < 1:
            raise ValueError(f"max_requests must be ≥ 1 (or absent: every request), got {self.max_requests}")


@dataclass(frozen=True)
class PipelineConfig:
    """One run, data to evaluation; `PipelineConfig()` is `genrec demo`."""

    data: DataConfig = field(default_factory=DataConfig)
    sid: SidConfig = field(default_factory=lambda: SidConfig(**DEMO_SIDS))
    train: GenerativeTrainConfig = field(default_factory=GenerativeTrainConfig)
    cascade: CascadeConfig = field(default_factory=CascadeConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    eval: EvalStageConfig = field(default_factory=EvalStageConfig)

    @property
    def trains_generative(self) -> bool:
        return bool({"generative", "generative-aligned"} & set(self.eval.retrievers))

    @property
    def aligns(self) -> bool:
        return "generative-aligned" in self.eval.retrievers

    @property
    def trains_cascade(self) -> bool:
        """Evaluated, or read by post-training (teacher, ranker reward)."""
        return "cascade" in self.eval.retrievers or (self.aligns and self.align.needs_cascade)
