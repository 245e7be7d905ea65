"""`genrec sid --run RUN --method rqkmeans|rqvae [--last-level balanced] [--collaborative-weight W]
[--repulsion-weight W --contrastive-weight W]`: Semantic IDs and their report."""

from __future__ import annotations

import argparse
from pathlib import Path

from genrec.features.item_vectors import VIEWS
from genrec.sid.config import LAST_LEVELS, METHODS


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
    sid.add_argument("--prefix", nargs="*", default=[], choices=("category", "brand"),
                     help="item fields whose values become the first SID levels (e.g. --prefix category brand)")
    sid.add_argument("--last-level", choices=LAST_LEVELS, default=None,
                     help="learned level before the disambiguation counter: 'balanced' splits crowded prefixes "
                          "by balanced k-means on the residual")
    sid.add_argument("--last-level-size", type=int, default=None, help="codes of the learned last level (default: adaptive)")
    sid.add_argument("--collaborative-weight", type=float, default=None,
                     help="append this weight × a co-occurrence vector (training histories only) to the text vector")
    sid.add_argument("--repulsion-weight", type=float, default=None,
                     help="rqvae: QuaSID Hamming-guided repulsion between colliding items (same-title pairs masked)")
    sid.add_argument("--contrastive-weight", type=float, default=None,
                     help="rqvae: QuaSID dual-tower contrastive pull between items co-occurring in training histories")
    sid.add_argument("--device", default="cpu",
                     help="where MiniLM embeds the items first: cpu (default), auto (cuda if available), cuda, cuda:1, …")
    sid.add_argument("--out", default=None, help="output folder (default RUN/sid)")
    sid.set_defaults(run=_sid)


def _sid(args: argparse.Namespace) -> int:
    from genrec.sid.build import build_sids

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
        device=args.device,
    )
    print(f"{len(table)} items, codebook sizes {table.codebook_sizes} → {out}/sids.parquet")
    print((out / "sid_report.md").read_text())
    return 0
