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
"""

from genrec.sid.build import METHODS, SidConfig, build_sids, make_tokenizer
from genrec.sid.codebook import adaptive_codebook_size, append_disambiguation_level, spread_last_level
from genrec.sid.keywords import KeywordScorer
from genrec.sid.last_level import BalancedLastLevel
from genrec.sid.opq import OPQLastLevel
from genrec.sid.report import sid_report, sid_report_markdown
from genrec.sid.rqkmeans import RQKMeansTokenizer
from genrec.sid.rqvae import RQVAETokenizer
from genrec.sid.table import SIDS_FILE, SidTable
from genrec.sid.tokenizer import SidTokenizer

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
    "adaptive_codebook_size",
    "append_disambiguation_level",
    "build_sids",
    "make_tokenizer",
    "sid_report",
    "sid_report_markdown",
    "spread_last_level",
]
