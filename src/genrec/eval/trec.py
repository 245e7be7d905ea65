"""An evaluation's rankings as TREC files, so trec_eval, ranx or pytrec_eval can check or extend it.

Run file: one line per ranked item, `qid Q0 docid rank score tag`, one tag per
retriever (the retriever's name); qrels file: `qid 0 docid relevance`. `qid` is
the request's 0-based position in the evaluated part (with `--max-requests`, in
the sampled subset), `docid` genrec's item id.

The score column is `k − rank + 1`, not the retriever's own score: TREC tools
order a query's documents by score and break ties by docid, so writing raw scores
(BM25 and popularity tie often) would let them re-order what the harness
measured. The written order is the harness's order, exactly.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from genrec.artifacts import write_text_atomic
from genrec.eval.metrics import PADDING


def write_trec_run(report: Any, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write `report`'s rankings (an `EvalReport`) to `path` and its targets to `path` with suffix
    `.qrels`; returns both paths. Every retriever's lines share the file, tagged by name."""
    path = Path(path)
    qrels = path.with_suffix(".qrels")
    if qrels == path:
        raise ValueError(f"trec run path {path} ends in .qrels; name the run file differently (e.g. run.trec)")
    lines = []
    for name, result in report.results.items():
        tag = run_tag(name)
        k = result.ranked.shape[1]
        for qid, row in enumerate(result.ranked):
            for rank, item in enumerate(row[row != PADDING], start=1):
                lines.append(f"{qid} Q0 {int(item)} {rank} {k - rank + 1} {tag}")
    write_text_atomic(path, "\n".join(lines) + "\n" if lines else "")
    write_text_atomic(qrels, "".join(f"{qid} 0 {item} {gain}\n" for qid, item, gain in judgements(report.targets)))
    return path, qrels


def judgements(targets: Any) -> list[tuple[int, int, int | float]]:
    """(qid, item, relevance) for each request's relevant items: one target (relevance 1) or an item → gain mapping."""
    if isinstance(targets, np.ndarray) or (len(targets) and np.isscalar(targets[0])):
        return [(qid, int(item), 1) for qid, item in enumerate(np.asarray(targets, dtype=np.int64))]
    out = []
    for qid, mapping in enumerate(targets):
        for item, gain in mapping.items():
            value = float(gain)
            out.append((qid, int(item), int(value) if value.is_integer() else value))
    return out


def run_tag(name: str) -> str:
    """A retriever name as a TREC tag: one token, no spaces."""
    return re.sub(r"\s+", "_", name.strip()) or "run"
