"""The `sid` stage: RUN/data (+ RUN/features) → RUN/sid.

RUN/sid holds `sids.parquet` (the `SidTable`), `sid_report.md` and
`sid_report.json`, `tokenizer.npz` (to code new items later), `config.json`
and `manifest.json`. The folder is written whole and swapped in, so a crash
never leaves SIDs from one run next to a report from another.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import TypedDict

import numpy as np
import scipy.sparse as sp

from genrec.artifacts import atomic_path, folder_sha256, write_json_atomic, write_text_atomic
from genrec.data.dataset import Dataset
from genrec.features.embed import EmbedConfig, embed_run
from genrec.sid.codebook import adaptive_codebook_size, append_disambiguation_level
from genrec.sid.collaborative import collaborative_vectors, train_cooccurrence, with_collaborative_view
from genrec.sid.config import METHODS, SidConfig
from genrec.sid.keyword_level import KEYWORD_CODES, keyword_values
from genrec.sid.keyword_vectors import keyword_vectors, with_keywords
from genrec.sid.keywords import KeywordScorer, catalogue_keywords, tokenize
from genrec.sid.last_level import BalancedLastLevel, balanced_codebook_size
from genrec.sid.opq import OPQ_SUBSPACES, OPQLastLevel
from genrec.sid.prefix import attribute_prefix, group_sizes, within_group_residual
from genrec.sid.quasid import benign_groups
from genrec.sid.report import sid_report, sid_report_markdown
from genrec.sid.rqkmeans import RQKMeansTokenizer
from genrec.sid.rqvae import RQVAETokenizer
from genrec.sid.table import SidTable
from genrec.sid.tokenizer import SidTokenizer
from genrec.sid.vrq import VRQTokenizer


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
    prefix: tuple[str, ...] = (),
    last_level: str | None = None,
    last_level_size: int | None = None,
    collaborative_weight: float | None = None,
    repulsion_weight: float | None = None,
    contrastive_weight: float | None = None,
    opq_subspaces: int | None = None,
    keyword_weight: float | None = None,
    keyword_codes: int | None = None,
    keyword_queries: bool = True,
    text_model: str | None = None,
    device: str = "cpu",
) -> SidTable:
    """Give every item of RUN/data a Semantic ID; write RUN/sid (or `out`). Same config + seed → same SIDs.

    New options default to None (off), so a run folder made before they existed still
    matches its config. `last_level="balanced"` adds the learned level of `genrec.sid.last_level` (its
    codebook size `last_level_size`, None: `balanced_codebook_size`) before the
    disambiguation level. `collaborative_weight` w > 0 appends w × the item's collaborative
    vector (`genrec.sid.collaborative`, from the training histories only) to its text vector
    before the residual levels quantize it. `repulsion_weight` and `contrastive_weight`
    (method `rqvae` only) turn on the QuaSID losses of `genrec.sid.quasid`: repulsion
    between colliding items (masking pairs with the same normalised title) and a
    contrastive pull between items co-occurring in the training histories.

    KHQE (`genrec.sid.keywords`): `keyword_weight` w > 0 mixes each item's text vector with a
    MiniLM embedding of its top keywords (`genrec.sid.keyword_vectors`); a "keyword" prefix field
    (after "category") adds the keyword level of `genrec.sid.keyword_level` with `keyword_codes`
    values per leaf (None: `KEYWORD_CODES`), the relevance constraint; `keyword_queries` lets the
    training searches' queries feed the keyword scorer where the data logs them.
    `last_level="opq"` ends the SID with `opq_subspaces` (None: `OPQ_SUBSPACES`) product-quantizer
    codes of the residual after an OPQ rotation (`genrec.sid.opq`), `last_level_size` codes each.

    `text_model` (None: the shipped MiniLM) embeds the items on `device` (RUN/features, when not
    cached already)."""
    config = SidConfig(method, levels, codebook_size, seed, tuple(views), epochs, spread_last_level, tuple(prefix),
                       last_level, last_level_size, collaborative_weight, repulsion_weight, contrastive_weight,
                       opq_subspaces, keyword_weight, keyword_codes, keyword_queries, text_model, device)
    run = Path(run)
    vectors = embed_run(run, embed_config(config), progress=progress)
    dataset = Dataset.load(run / "data")
    start = time.perf_counter()
    item_vectors = vectors.vectors
    items = dataset.items
    scorer: KeywordScorer | None = None
    ranked: dict[int, list[str]] = {}
    leaves: list[str] = []
    if config.keyword_weight or "keyword" in config.prefix:
        scorer, leaves = catalogue_keywords(dataset, vectors.item_ids, queries=config.keyword_queries)
    if config.keyword_weight and scorer is not None:
        keywords = [scorer.keywords(i) for i in range(len(vectors))]
        item_vectors = with_keywords(item_vectors, keyword_vectors(keywords, run / "features", progress), config.keyword_weight)
    if "keyword" in config.prefix and scorer is not None:
        rows = items.set_index("item_id").loc[vectors.item_ids]
        brands = [tokenize(b) for b in rows["brand"]] if "brand" in config.prefix and "brand" in rows else None
        values, ranked = keyword_values(scorer, config.keyword_codes or KEYWORD_CODES, exclude=brands)
        items = rows.assign(keyword=values).reset_index()
    view_dims = tuple(vectors.view_dims)
    if config.collaborative_weight or config.method == "vrq":  # VRQ's views: the item vector's, then behaviour
        collaborative = collaborative_vectors(train_cooccurrence(dataset, vectors.item_ids), seed=config.seed)
        item_vectors = with_collaborative_view(item_vectors, collaborative, config.collaborative_weight or 1.0)
        view_dims += (collaborative.shape[1],)
    if config.prefix:
        attributes = attribute_prefix(items, vectors.item_ids, config.prefix)
        parents, parent_sizes = attributes.codes, attributes.sizes
        x = within_group_residual(item_vectors, parents)
        sized = config
        if config.codebook_size is None:  # room for the typical group, not the whole catalog
            typical = int(np.ceil(np.percentile(group_sizes(parents), 90)))
            sized = replace(config, codebook_size=adaptive_codebook_size(max(typical, 1), levels))
    else:
        parents, parent_sizes = np.zeros((len(vectors), 0), dtype=np.int64), []
        x, sized = item_vectors, config
    tokenizer = make_tokenizer(sized, progress=progress, view_dims=view_dims)
    if isinstance(tokenizer, RQVAETokenizer) and (config.repulsion_weight or config.contrastive_weight):
        titles = dataset.items.set_index("item_id").loc[vectors.item_ids, "title"].tolist()
        benign = benign_groups(titles) if config.repulsion_weight else None
        together = sp.triu(train_cooccurrence(dataset, vectors.item_ids), k=1).tocoo() if config.contrastive_weight else None
        positive = np.stack([together.row, together.col], axis=1) if together is not None else None
        tokenizer.fit(x, parents=parents, benign=benign, positive_pairs=positive)
    else:
        tokenizer.fit(x)
    codes = tokenizer.transform(x, parents=parents)
    sizes = [*parent_sizes, *tokenizer.codebook_sizes_[:-1]]
    last: BalancedLastLevel | OPQLastLevel | None = None
    if config.last_level is not None:
        semantic = codes[:, :-1]
        residual = tokenizer.residual(x, semantic[:, parents.shape[1]:])
        size = config.last_level_size or balanced_codebook_size(group_sizes(semantic))
        if config.last_level == "balanced":
            last = BalancedLastLevel(size, seed=config.seed)
            learned = last.fit_assign(residual, semantic)[:, None]
        else:
            last = OPQLastLevel(size, config.opq_subspaces or OPQ_SUBSPACES, seed=config.seed).fit(residual)
            learned = last.assign(residual)
        codes = append_disambiguation_level(np.concatenate([semantic, learned], axis=1))
        sizes.extend([size] * learned.shape[1])
    sizes.append(int(codes[:, -1].max()) + 1)
    fit_seconds = time.perf_counter() - start
    table = SidTable(vectors.item_ids, codes, sizes)
    report = sid_report(codes, codes.shape[1] - 1, table.codebook_sizes)
    report["method"] = method
    report["prefix"] = list(attributes.fields) if config.prefix else []
    report["last_level"] = config.last_level
    report["keyword_weight"] = config.keyword_weight
    report["fit_seconds"] = fit_seconds
    with atomic_path(Path(out) if out is not None else run / "sid") as tmp:
        tmp.mkdir(parents=True)
        tokenizer.save(tmp / "tokenizer.npz")
        if isinstance(last, BalancedLastLevel):
            np.savez(tmp / "last_level.npz", centroids=last.centroids_)
        elif isinstance(last, OPQLastLevel):
            np.savez(tmp / "last_level.npz", rotation=last.rotation_, codebooks=last.codebooks_)
        if ranked:  # the keyword level's decision list per leaf, to code new items alike
            write_json_atomic(tmp / "keywords.json", {"ranked": {leaves[k]: words for k, words in ranked.items()}})
        if config.prefix:  # how attribute values map to the prefix codes, to code new items alike
            write_json_atomic(tmp / "prefix.json", {"fields": list(attributes.fields), "sizes": attributes.sizes,
                                                     "vocab": attributes.vocab})
        write_json_atomic(tmp / "config.json", config)
        write_json_atomic(tmp / "sid_report.json", report)
        write_text_atomic(tmp / "sid_report.md", sid_report_markdown(report, title=_title(config, report)))
        table.save(
            tmp,
            config=config,
            inputs={"data": folder_sha256(run / "data"), "features": folder_sha256(run / "features")},
            tokenizer=repr(tokenizer),
            collision_rate=report["collision_rate"],
        )
    return table


def embed_config(config: SidConfig) -> EmbedConfig:
    """The item vectors `config`'s SIDs are built from."""
    from genrec.features.text import TEXT_MODEL_NAME

    return EmbedConfig(views=config.views, device=config.device, model=config.text_model or TEXT_MODEL_NAME)


def _title(config: SidConfig, report: dict) -> str:
    prefix = f"{' + '.join(report['prefix'])} prefix, then " if report["prefix"] else ""
    last = f", then a learned {config.last_level} last level" if config.last_level else ""
    keywords = f", keyword-enhanced vectors (weight {config.keyword_weight})" if config.keyword_weight else ""
    return f"Semantic IDs: {prefix}{config.method}, {config.levels} levels{last}{keywords}"


class _RQVAEOverrides(TypedDict, total=False):
    """`RQVAETokenizer` arguments set only when the config names them, so the tokenizer keeps its own defaults."""

    epochs: int
    repulsion_weight: float
    contrastive_weight: float


def make_tokenizer(config: SidConfig, progress: bool = False, view_dims: tuple[int, ...] = ()) -> SidTokenizer:
    """The tokenizer `config` names; `view_dims` (method "vrq") are the widths of the views the vectors hold."""
    if config.method == "rqkmeans":
        return RQKMeansTokenizer(config.levels, config.codebook_size, config.seed, config.spread_last_level)
    if config.method in ("rqvae", "vrq"):
        extra: _RQVAEOverrides = {"epochs": config.epochs} if config.epochs is not None else {}
        if config.repulsion_weight:
            extra["repulsion_weight"] = config.repulsion_weight
        if config.contrastive_weight:
            extra["contrastive_weight"] = config.contrastive_weight
        if config.method == "vrq":
            return VRQTokenizer(view_dims, levels=config.levels, codebook_size=config.codebook_size, seed=config.seed,
                                progress=progress, spread_last_level=config.spread_last_level, **extra)
        return RQVAETokenizer(
            config.levels, config.codebook_size, seed=config.seed, progress=progress, spread_last_level=config.spread_last_level, **extra
        )
    raise ValueError(f"method must be one of {METHODS}, got {config.method!r}")
