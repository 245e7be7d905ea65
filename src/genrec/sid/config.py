"""`SidConfig`: how `build_sids` tokenizes, readable without the tokenizers.

`genrec sid --help`, a config file reader and `PipelineConfig` need the settings
and their checks, not torch or scipy; the stage itself is `genrec.sid.build`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LAST_LEVELS: tuple[str, ...] = ("balanced", "opq")
"""Learned last levels `build_sids(last_level=...)` offers (None there: the row-order counter only):
the balanced level of `genrec.sid.last_level`, and the OPQ product-quantizer codes of `genrec.sid.opq`."""

METHODS: tuple[str, ...] = ("rqkmeans", "rqvae", "vrq")

DEMO_SIDS: dict[str, Any] = {"prefix": ("category", "brand"), "levels": 1}
"""`build_sids` arguments of the demo, and what `genrec sid` builds by default: leaf and brand first,
one residual RQ-KMeans level (chosen on the validation split, `benchmarks/generative_variants.py`)."""


@dataclass(frozen=True)
class SidConfig:
    """How `build_sids` tokenizes. `codebook_size=None` → `adaptive_codebook_size`;
    `epochs` applies to `rqvae` only (None: the tokenizer's default); `spread_last_level`
    see `genrec.sid.codebook`. `prefix`: item fields whose values become the first
    levels (`genrec.sid.prefix`, e.g. `("category", "brand")`); the tokenizer's
    `levels` then quantize each item's offset from its prefix group's mean, with an
    adaptive codebook sized for the 90th-percentile group instead of the catalog.
    `last_level` ("balanced", "opq" or None), `last_level_size`, `opq_subspaces`,
    `collaborative_weight`, `repulsion_weight`, `contrastive_weight`, `keyword_weight`
    and `keyword_codes`: see `build_sids`; all None (off) by default, so a folder made
    before they existed still matches its config. `keyword_queries` (on by default,
    inert unless keywords are used) lets logged searches feed the keyword scorer. `text_model`:
    the sentence-transformers encoder that embeds the items first, by Hub name or local folder
    (None: the shipped MiniLM). `device`: where it runs (`genrec.device`); the SIDs do not depend on it."""

    method: str = "rqkmeans"
    levels: int = 3
    codebook_size: int | None = None
    seed: int = 0
    views: tuple[str, ...] = ("text",)
    epochs: int | None = None
    spread_last_level: bool = True
    prefix: tuple[str, ...] = ()
    last_level: str | None = None
    last_level_size: int | None = None
    collaborative_weight: float | None = None
    repulsion_weight: float | None = None
    contrastive_weight: float | None = None
    opq_subspaces: int | None = None
    keyword_weight: float | None = None
    keyword_codes: int | None = None
    keyword_queries: bool = True
    text_model: str | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:  # checked before the embedding stage, not after it
        from genrec.device import check_device

        check_device(self.device, "device")
        if self.text_model is not None and (not isinstance(self.text_model, str) or not self.text_model.strip()):
            raise ValueError(f"text_model must be None (the shipped MiniLM) or a sentence-transformers encoder's "
                             f"Hub name or folder, got {self.text_model!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.levels < 1:
            raise ValueError(f"levels must be ≥ 1, got {self.levels}")
        if self.codebook_size is not None and self.codebook_size < 2:
            raise ValueError(f"codebook_size must be ≥ 2 (or absent: sized from the catalog), got {self.codebook_size}")
        if self.last_level is not None and self.last_level not in LAST_LEVELS:
            raise ValueError(f"last_level must be None (the disambiguation counter only) or one of {LAST_LEVELS}, "
                             f"got {self.last_level!r}")
        if self.last_level_size is not None and self.last_level is None:
            raise ValueError(f"last_level_size applies to a learned last level {LAST_LEVELS}, got last_level=None")
        if self.opq_subspaces is not None and (self.last_level != "opq" or self.opq_subspaces < 1):
            raise ValueError(f"opq_subspaces must be ≥ 1 and applies to last_level='opq' only, got {self.opq_subspaces!r} "
                             f"with last_level={self.last_level!r}")
        if "keyword" in self.prefix and "category" not in self.prefix[: self.prefix.index("keyword")]:
            raise ValueError(f"prefix 'keyword' ranks keywords within a leaf category: it needs 'category' before it, "
                             f"got prefix={list(self.prefix)}")
        if self.keyword_codes is not None and ("keyword" not in self.prefix or self.keyword_codes < 2):
            raise ValueError(f"keyword_codes must be ≥ 2 and applies to a 'keyword' prefix level only, got "
                             f"{self.keyword_codes!r} with prefix={list(self.prefix)}")
        if self.keyword_weight is not None:
            if not 0 <= self.keyword_weight <= 1:
                raise ValueError(f"keyword_weight must be None or in [0, 1], got {self.keyword_weight!r}")
            if self.keyword_weight and tuple(self.views) != ("text",):
                raise ValueError(f"keyword_weight mixes a MiniLM keyword embedding into the text vector: it needs "
                                 f"views=('text',), got views={tuple(self.views)}")
        if self.collaborative_weight is not None and not self.collaborative_weight >= 0:
            raise ValueError(f"collaborative_weight must be None or ≥ 0, got {self.collaborative_weight!r}")
        for name in ("repulsion_weight", "contrastive_weight"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be None or ≥ 0, got {value!r}")
            if value and self.method not in ("rqvae", "vrq"):
                raise ValueError(f"{name} is a QuaSID loss for the trainable quantizer: it needs method='rqvae' "
                                 f"or 'vrq', got method={self.method!r}")
        if self.method == "vrq" and self.collaborative_weight == 0:
            raise ValueError("method='vrq' codes the collaborative view with the item's other views: "
                             "collaborative_weight must be > 0 or unset (1), got 0")
