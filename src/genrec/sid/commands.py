"""`genrec sid --run RUN [--config FILE] [--set key=value] [--method rqkmeans|rqvae|vrq] [--levels N]
[--prefix category keyword brand] [--keyword-weight W] [--last-level balanced|opq] …`: Semantic IDs and their report.

With no option it builds the demo's SIDs (`DEMO_SIDS`: leaf category and brand, then one RQ-KMeans
level), so the stage-by-stage path reproduces `genrec demo`. A `SidConfig` file (TOML, YAML or JSON,
e.g. a run's `sid/config.json`) and `--set` change that starting point, and an option given on the
command line wins over both. Every bad setting is reported at once, before any item is embedded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genrec.features.item_vectors import VIEWS
from genrec.sid.config import DEMO_SIDS, LAST_LEVELS, METHODS, SidConfig
from genrec.sid.prefix import PREFIX_FIELDS

OPTION_FIELDS: tuple[str, ...] = (
    "method", "levels", "codebook_size", "seed", "views", "epochs", "prefix", "last_level", "last_level_size",
    "collaborative_weight", "repulsion_weight", "contrastive_weight", "opq_subspaces", "keyword_weight",
    "keyword_codes", "text_model", "device",
)
"""`SidConfig` fields with an option of the same name (`--codebook-size` → codebook_size)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    sid = subparsers.add_parser(
        "sid", help="give every item a Semantic ID (writes RUN/sid)",
        description="Without options: the demo's SIDs (prefix category brand, 1 RQ-KMeans level). "
                    "An option left out keeps the value of --config/--set, else the demo's.")
    sid.add_argument("--run", required=True, dest="run_dir", help="run folder holding data/")
    sid.add_argument("--config", type=Path, default=None,
                     help="a SidConfig file (.toml, .yaml, .yml or .json; a run's sid/config.json reads back)")
    sid.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override one setting, e.g. --set levels=2 --set prefix=category (repeatable)")
    sid.add_argument("--method", choices=METHODS, default=None,
                     help="default rqkmeans; vrq: an RQ-VAE over the item vector and its behaviour view, aligned")
    sid.add_argument("--levels", type=int, default=None,
                     help=f"semantic levels after the prefix (a disambiguation level is added; default {DEMO_SIDS['levels']})")
    sid.add_argument("--codebook-size", type=int, default=None, help="codes per level (default: adaptive to the catalog)")
    sid.add_argument("--seed", type=int, default=None, help="default 0")
    sid.add_argument("--views", nargs="+", default=None, choices=VIEWS, help="default text")
    sid.add_argument("--epochs", type=int, default=None, help="RQ-VAE training epochs")
    sid.add_argument("--no-spread", action="store_true", help="plain nearest-code last level (more collisions)")
    sid.add_argument("--prefix", nargs="*", default=None, choices=PREFIX_FIELDS,
                     help="item fields whose values become the first SID levels (default: "
                          f"{' '.join(DEMO_SIDS['prefix'])}; --prefix alone: none); 'keyword' (after category) is "
                          "the KHQE keyword level: items matching a leaf's best keyword share its code")
    sid.add_argument("--keyword-codes", type=int, default=None,
                     help="values of the keyword level per leaf (best keywords + one for none; default 16)")
    sid.add_argument("--keyword-weight", type=float, default=None,
                     help="KHQE: mix this weight (0..1) of a MiniLM embedding of the item's top keywords into its text vector")
    sid.add_argument("--no-keyword-queries", action="store_true",
                     help="keywords from titles only, even where the data logs search queries")
    sid.add_argument("--last-level", choices=LAST_LEVELS, default=None,
                     help="learned level before the disambiguation counter: 'balanced' splits crowded prefixes "
                          "by balanced k-means on the residual; 'opq' adds --opq-subspaces product-quantizer codes "
                          "of the residual after an OPQ rotation")
    sid.add_argument("--last-level-size", type=int, default=None,
                     help="codes of the learned last level (per subspace for opq; default: adaptive)")
    sid.add_argument("--opq-subspaces", type=int, default=None, help="opq: product-quantizer slices, one code each (default 2)")
    sid.add_argument("--collaborative-weight", type=float, default=None,
                     help="append this weight × a co-occurrence vector (training histories only) to the text vector")
    sid.add_argument("--repulsion-weight", type=float, default=None,
                     help="rqvae: QuaSID Hamming-guided repulsion between colliding items (same-title pairs masked)")
    sid.add_argument("--contrastive-weight", type=float, default=None,
                     help="rqvae: QuaSID dual-tower contrastive pull between items co-occurring in training histories")
    sid.add_argument("--text-model", default=None, metavar="NAME_OR_FOLDER",
                     help="the sentence-transformers encoder that embeds the items (default: the shipped MiniLM)")
    sid.add_argument("--device", default=None,
                     help="where MiniLM embeds the items first: cpu (default), auto (cuda if available), cuda, cuda:1, …")
    sid.add_argument("--out", default=None, help="output folder (default RUN/sid)")
    sid.set_defaults(run=_sid)


def sid_config(args: argparse.Namespace) -> SidConfig:
    """The demo's SIDs, then `--config`, then `--set`, then each option given; ValueError listing every bad field."""
    from genrec.config_file import load_config

    given = {name: getattr(args, name) for name in OPTION_FIELDS if getattr(args, name) is not None}
    if args.no_spread:
        given["spread_last_level"] = False
    if args.no_keyword_queries:
        given["keyword_queries"] = False
    return load_config(SidConfig, args.config, args.overrides, defaults=DEMO_SIDS, options=given)


def _sid(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    try:
        config = sid_config(args)
    except ValueError as error:
        print(f"genrec sid: {error}", file=sys.stderr)
        return 2
    from genrec.sid.build import build_sids

    out = Path(args.out) if args.out else Path(args.run_dir) / "sid"
    table = build_sids(args.run_dir, out=out, **asdict(config))
    print(f"{len(table)} items, codebook sizes {table.codebook_sizes} → {out}/sids.parquet")
    print((out / "sid_report.md").read_text())
    return 0
