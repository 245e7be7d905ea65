"""`genrec embed --run RUN [--config FILE] [--set key=value] [--views …] [--device …]`: item vectors for
the Semantic ID tokenizers. An option given on the command line wins over `--set`, which wins over the file."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from genrec.features.embed import EmbedConfig, embed_run
from genrec.features.item_vectors import VIEWS


def register(subparsers: argparse._SubParsersAction) -> None:
    embed = subparsers.add_parser("embed", help="encode item text (+ precomputed views) into RUN/features")
    embed.add_argument("--run", required=True, dest="run_dir", help="run folder holding data/")
    embed.add_argument("--config", type=Path, default=None,
                       help="an EmbedConfig file (.toml, .yaml, .yml or .json; a run's features/config.json reads back)")
    embed.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override one setting, e.g. --set device=auto --set views=text,image (repeatable)")
    embed.add_argument("--views", nargs="+", default=None, choices=VIEWS, help="views to concatenate (default text)")
    embed.add_argument("--batch-size", type=int, default=None, help="default 256")
    embed.add_argument("--model", default=None, metavar="NAME_OR_FOLDER",
                       help="the sentence-transformers encoder of the text view (default: the shipped MiniLM)")
    embed.add_argument("--device", default=None, help="where MiniLM runs: cpu (default), auto (cuda if available), cuda, cuda:1, …")
    embed.set_defaults(run=_embed)


def embed_config(args: argparse.Namespace) -> EmbedConfig:
    """The defaults, then `--config`, then `--set`, then each option given; ValueError listing every bad field."""
    from genrec.config_file import load_config

    given = {"views": args.views, "batch_size": args.batch_size, "model": args.model, "device": args.device}
    return load_config(EmbedConfig, args.config, args.overrides,
                       options={name: value for name, value in given.items() if value is not None})


def _embed(args: argparse.Namespace) -> int:
    try:
        config = embed_config(args)
    except ValueError as error:
        print(f"genrec embed: {error}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    vectors = embed_run(args.run_dir, config)
    seconds = time.perf_counter() - start
    print(f"{len(vectors)} item vectors of width {vectors.vectors.shape[1]} in {args.run_dir}/features ({seconds:.1f} s)")
    return 0
