"""`genrec load FORMAT SOURCE --out FOLDER`: bring a public data set into the canonical schema."""

from __future__ import annotations

import argparse
import time

from genrec.data.loaders import LOADERS


def register(subparsers: argparse._SubParsersAction) -> None:
    load = subparsers.add_parser("load", help="convert a public data set (P5 Amazon, RecBole, KuaiSAR, ESCI) into a genrec dataset")
    load.add_argument("format", choices=sorted(LOADERS))
    load.add_argument("source", help="folder holding the source files")
    load.add_argument("--out", required=True, help="dataset folder to write (e.g. runs/beauty/data)")
    load.set_defaults(run=_load)


def _load(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    dataset = LOADERS[args.format](args.source)
    dataset.save(args.out, source=str(args.source), format=args.format)
    counts = dataset.counts()
    print(f"wrote {args.out}: {counts['items']} items, {counts['users']} users, {counts['events']} events in {time.perf_counter() - start:.1f}s")
    return 0
