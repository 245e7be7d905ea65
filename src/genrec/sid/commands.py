"""`genrec sid --run RUN --method rqkmeans|rqvae [--prefix category keyword brand] [--keyword-weight W]
[--last-level balanced|opq] [--collaborative-weight W] [--repulsion-weight W --contrastive-weight W]`:
Semantic IDs and their report."""

from __future__ import annotations

import argparse
from pathlib import Path

from genrec.features.item_vectors import VIEWS
from genrec.sid.build import METHODS, build_sids
from genrec.sid.last_level import LAST_LEVELS
from genrec.sid.prefix import PREFIX_FIELDS


def register(subparsers: argparse._SubParsersAction) -> None:
    sid = subparsers.add_parser("sid", help="give every item a Semantic ID (writes RUN/sid)")
    sid.add_argument("--run", required=True, dest="run_dir", help="run folder holding data/")
    sid.add_argument("--method", choices=METHODS, default="rqkmeans")
    sid.add_argument("--levels", type=int, default=3, help="semantic levels (a disambiguation level is added)")
    sid.add_argument("--codebook-size", type=int, default=None, help="codes per level (default: adaptive to the catalog)")
    sid.add_argument("--seed", type=int, default=0)
    sid.add_argument("--views", nargs="+", default=["text"], choices=VIEWS)
    sid.add_argument("--epochs", type=int, default=None, help="RQ-VAE training epochs")
    sid.add_argument("--no-spread", action="store_true", help="plain nearest-code last level (more collisions)")
    sid.add_argument("--prefix", nargs="*", default=[], choices=PREFIX_FIELDS,
                     help="item fields whose values become the first SID levels (e.g. --prefix category brand); "
                          "'keyword' (after category) is the KHQE keyword level: items matching a leaf's best "
                          "keyword share its code")
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
    sid.add_argument("--out", default=None, help="output folder (default RUN/sid)")
    sid.set_defaults(run=_sid)


def _sid(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else Path(args.run_dir) / "sid"
    table = build_sids(
        args.run_dir,
        method=args.method,
        levels=args.levels,
        codebook_size=args.codebook_size,
        seed=args.seed,
        views=tuple(args.views),
        epochs=args.epochs,
        out=out,
        spread_last_level=not args.no_spread,
        prefix=tuple(args.prefix),
        last_level=args.last_level,
        last_level_size=args.last_level_size,
        collaborative_weight=args.collaborative_weight,
        repulsion_weight=args.repulsion_weight,
        contrastive_weight=args.contrastive_weight,
        opq_subspaces=args.opq_subspaces,
        keyword_weight=args.keyword_weight,
        keyword_codes=args.keyword_codes,
        keyword_queries=not args.no_keyword_queries,
    )
    print(f"{len(table)} items, codebook sizes {table.codebook_sizes} → {out}/sids.parquet")
    print((out / "sid_report.md").read_text())
    return 0
