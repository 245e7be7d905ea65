"""The `sid` stage: RUN/data (+ RUN/features) → RUN/sid.

RUN/sid holds `sids.parquet` (the `SidTable`), `sid_report.md` and
`sid_report.json`, `tokenizer.npz` (to code new items later), `config.json`
and `manifest.json`. The folder is written whole and swapped in, so a crash
never leaves SIDs from one run next to a report from another.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from genrec.artifacts import atomic_path, folder_sha256, write_json_atomic, write_text_atomic
from genrec.features.embed import EmbedConfig, embed_run
from genrec.sid.report import sid_report, sid_report_markdown
from genrec.sid.rqkmeans import RQKMeansTokenizer
from genrec.sid.rqvae import RQVAETokenizer
from genrec.sid.table import SidTable
from genrec.sid.tokenizer import SidTokenizer

METHODS: tuple[str, ...] = ("rqkmeans", "rqvae")


@dataclass(frozen=True)
class SidConfig:
    """How `build_sids` tokenizes. `codebook_size=None` → `adaptive_codebook_size`;
    `epochs` applies to `rqvae` only (None: the tokenizer's default); `spread_last_level`
    see `genrec.sid.codebook`."""

    method: str = "rqkmeans"
    levels: int = 3
    codebook_size: int | None = None
    seed: int = 0
    views: tuple[str, ...] = ("text",)
    epochs: int | None = None
    spread_last_level: bool = True


def build_sids(
    run: str | os.PathLike,
    method: str = "rqkmeans",
    levels: int = 3,
    codebook_size: int | None = None,
    seed: int = 0,
    views: tuple[str, ...] = ("text",),
    epochs: int | None = None,
    progress: bool = True,
    out: str | os.PathLike | None = None,
    spread_last_level: bool = True,
) -> SidTable:
    """Give every item of RUN/data a Semantic ID; write RUN/sid (or `out`). Same config + seed → same SIDs."""
    config = SidConfig(method, levels, codebook_size, seed, tuple(views), epochs, spread_last_level)
    tokenizer = make_tokenizer(config, progress=progress)
    run = Path(run)
    vectors = embed_run(run, EmbedConfig(views=config.views), progress=progress)
    start = time.perf_counter()
    codes = tokenizer.fit_transform(vectors.vectors)
    fit_seconds = time.perf_counter() - start
    table = SidTable(vectors.item_ids, codes, tokenizer.codebook_sizes_)
    report = sid_report(codes, levels, table.codebook_sizes)
    report["method"] = method
    report["fit_seconds"] = fit_seconds
    with atomic_path(Path(out) if out is not None else run / "sid") as tmp:
        tmp.mkdir(parents=True)
        tokenizer.save(tmp / "tokenizer.npz")
        write_json_atomic(tmp / "config.json", config)
        write_json_atomic(tmp / "sid_report.json", report)
        write_text_atomic(tmp / "sid_report.md", sid_report_markdown(report, title=f"Semantic IDs: {method}, {levels} levels"))
        table.save(
            tmp,
            config=config,
            inputs={"data": folder_sha256(run / "data"), "features": folder_sha256(run / "features")},
            tokenizer=repr(tokenizer),
            collision_rate=report["collision_rate"],
        )
    return table


def make_tokenizer(config: SidConfig, progress: bool = False) -> SidTokenizer:
    if config.method == "rqkmeans":
        return RQKMeansTokenizer(config.levels, config.codebook_size, config.seed, config.spread_last_level)
    if config.method == "rqvae":
        extra = {"epochs": config.epochs} if config.epochs is not None else {}
        return RQVAETokenizer(
            config.levels, config.codebook_size, seed=config.seed, progress=progress, spread_last_level=config.spread_last_level, **extra
        )
    raise ValueError(f"method must be one of {METHODS}, got {config.method!r}")
