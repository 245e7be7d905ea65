"""Semantic IDs: item vectors → short unique codes a generative model can emit.

`RQKMeansTokenizer` and `RQVAETokenizer` share one scikit-learn shape
(`fit`, `transform` → int64 `[n, levels + 1]`, `save`, `load`); `build_sids`
runs the pipeline stage and writes a `SidTable` and a report (`sid_report`).
The codebook-size rule and the disambiguation level are in `genrec.sid.codebook`;
the learned last level in `genrec.sid.last_level`, the collaborative input view in
`genrec.sid.collaborative`, and QuaSID's plug-in losses for the RQ-VAE in
`genrec.sid.quasid`. KHQE's parts: keywords (`genrec.sid.keywords`), keyword-enhanced
vectors (`genrec.sid.keyword_vectors`), the keyword level that keeps query–item
relevance (`genrec.sid.keyword_level`) and the OPQ last level (`genrec.sid.opq`).

Only the settings (`SidConfig`, `genrec.sid.config`) are imported with the package;
everything else on first use, so `genrec sid --help` and a config reader do not
wait for torch and scipy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from genrec.lazy import lazy_getattr
from genrec.sid.config import METHODS, SidConfig

if TYPE_CHECKING:  # what the lazy names are, for type checkers
    from genrec.sid.build import build_sids, make_tokenizer
    from genrec.sid.codebook import adaptive_codebook_size, append_disambiguation_level, spread_last_level
    from genrec.sid.keywords import KeywordScorer
    from genrec.sid.last_level import BalancedLastLevel
    from genrec.sid.opq import OPQLastLevel
    from genrec.sid.report import sid_report, sid_report_markdown
    from genrec.sid.rqkmeans import RQKMeansTokenizer
    from genrec.sid.rqvae import RQVAETokenizer
    from genrec.sid.table import SIDS_FILE, SidTable
    from genrec.sid.tokenizer import SidTokenizer
    from genrec.sid.vrq import VRQTokenizer

_LAZY: dict[str, str] = {
    "BalancedLastLevel": "genrec.sid.last_level",
    "KeywordScorer": "genrec.sid.keywords",
    "OPQLastLevel": "genrec.sid.opq",
    "RQKMeansTokenizer": "genrec.sid.rqkmeans",
    "RQVAETokenizer": "genrec.sid.rqvae",
    "SIDS_FILE": "genrec.sid.table",
    "SidTable": "genrec.sid.table",
    "SidTokenizer": "genrec.sid.tokenizer",
    "VRQTokenizer": "genrec.sid.vrq",
    "adaptive_codebook_size": "genrec.sid.codebook",
    "append_disambiguation_level": "genrec.sid.codebook",
    "build_sids": "genrec.sid.build",
    "make_tokenizer": "genrec.sid.build",
    "sid_report": "genrec.sid.report",
    "sid_report_markdown": "genrec.sid.report",
    "spread_last_level": "genrec.sid.codebook",
}
"""name → the module that defines it, imported when the name is first read."""

__all__ = [
    "BalancedLastLevel",
    "KeywordScorer",
    "METHODS",
    "OPQLastLevel",
    "SIDS_FILE",
    "RQKMeansTokenizer",
    "RQVAETokenizer",
    "SidConfig",
    "SidTable",
    "SidTokenizer",
    "VRQTokenizer",
    "adaptive_codebook_size",
    "append_disambiguation_level",
    "build_sids",
    "make_tokenizer",
    "sid_report",
    "sid_report_markdown",
    "spread_last_level",
]


__getattr__ = lazy_getattr(__name__, _LAZY)
