"""Retrievers by name, so the CLI, the evaluation harness and the server build
them the same way.

Each entry points at a class with `from_run(run, dataset, split) -> Retriever`
that fits a cheap retriever on `split.train` (counts, an index) or loads what a
training stage saved in the run folder; it never trains a model (`genrec.stages`
does). Imports are lazy: naming one retriever never imports the others.

`NAME+aigc` is retriever NAME behind the AIGC exposure control
(`genrec.exposure_control`): the AI-generated share of each page capped.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from genrec.data.dataset import Dataset
from genrec.data.splits import Split
from genrec.exposure_control import SUFFIX as AIGC_SUFFIX
from genrec.retrieval import Retriever

RETRIEVERS: dict[str, str] = {
    "popularity": "genrec.baselines.popularity:PopularityRetriever",
    "category_popularity": "genrec.baselines.popularity:CategoryPopularityRetriever",
    "bm25": "genrec.baselines.bm25:BM25Retriever",
    "dense": "genrec.baselines.dense:DenseRetriever",
    "dense_hnsw": "genrec.baselines.dense:HNSWDenseRetriever",
    "itemcf": "genrec.baselines.itemcf:ItemCFRetriever",
    "sasrec": "genrec.baselines.sasrec:SASRecRetriever",
    "hstu": "genrec.baselines.hstu:HSTURetriever",
    "dimerec": "genrec.baselines.dimerec:DimeRecRetriever",
    "oracle": "genrec.data.oracle:OracleRetriever",
    "generative": "genrec.model.retriever:GenerativeRetriever",
    "generative-aligned": "genrec.align.retriever:AlignedGenerativeRetriever",
    "cascade": "genrec.cascade.retriever:CascadeRetriever",
    "rolegen": "genrec.rolegen.retriever:RoleGenRetriever",
}


def retriever_names() -> list[str]:
    return list(RETRIEVERS) + [name + AIGC_SUFFIX for name in RETRIEVERS]


def build_retriever(name: str, run: str | Path, dataset: Dataset, split: Split, aigc=None) -> Retriever:
    """Build the retriever called `name` for the run folder `run`.

    `aigc` (an `AIGCControlConfig`, default one when None) configures a `NAME+aigc` retriever.
    """
    if name.endswith(AIGC_SUFFIX) and name[: -len(AIGC_SUFFIX)] in RETRIEVERS:
        from genrec.exposure_control import AIGCExposureControl

        inner = build_retriever(name[: -len(AIGC_SUFFIX)], run, dataset, split)
        return AIGCExposureControl.for_items(inner, dataset.items, aigc)
    if name not in RETRIEVERS:
        raise ValueError(f"unknown retriever {name!r}; expected one of {retriever_names()}")
    module_name, class_name = RETRIEVERS[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls.from_run(Path(run), dataset, split)
