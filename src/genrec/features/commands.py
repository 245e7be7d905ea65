"""`genrec embed --run RUN`: item vectors for the Semantic ID tokenizers."""

from __future__ import annotations

import argparse
import time

from genrec.features.embed import EmbedConfig, embed_run
from genrec.features.item_vectors import VIEWS


def register(subparsers: argparse._SubParsersAction) -> None:
    embed = subparsers.add_parser("embed", help="encode item text (+ precomputed views) into RUN/features")
    embed.add_argument("--run", required=True, dest="run_dir", help="run folder holding data/")
    embed.add_argument("--views", nargs="+", default=["text"], choices=VIEWS, help="views to concatenate")
    embed.add_argument("--batch-size", type=int, default=256)
    embed.add_argument("--device", default="cpu", help="where MiniLM runs: cpu (default), auto (cuda if available), cuda, cuda:1, …")
    embed.set_defaults(run=_embed)


def _embed(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    vectors = embed_run(args.run_dir, EmbedConfig(views=tuple(args.views), batch_size=args.batch_size, device=args.device))
    seconds = time.perf_counter() - start
    print(f"{len(vectors)} item vectors of width {vectors.vectors.shape[1]} in {args.run_dir}/features ({seconds:.1f} s)")
    return 0
