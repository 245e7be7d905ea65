"""`genrec load FORMAT SOURCE --out FOLDER`: bring a public data set, or your own CSV/Parquet files,
into the canonical schema."""

from __future__ import annotations

import argparse
import sys
import time

from genrec.data.loaders import LOADERS


def register(subparsers: argparse._SubParsersAction) -> None:
    load = subparsers.add_parser(
        "load", help="convert your CSV/Parquet files or a public data set (P5 Amazon, RecBole, KuaiSAR, KuaiSearch, ESCI) into a genrec dataset",
        description="csv: SOURCE is your events file (.csv, .tsv or .parquet); --items, --users, --map and --action "
                    "apply to it. Other formats: SOURCE is the folder holding the public files.")
    load.add_argument("format", choices=sorted(LOADERS))
    load.add_argument("source", help="csv: the events file; other formats: the folder holding the source files")
    load.add_argument("--out", required=True, help="dataset folder to write (e.g. runs/beauty/data)")
    own = load.add_argument_group("csv")
    own.add_argument("--items", help="items file: item id, title, category, brand, price; other columns become attributes")
    own.add_argument("--users", help="users file: user id and profile columns")
    own.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                     help="which of your columns holds a field, e.g. --map user=customer_id --map item=sku --map ts=time "
                          "(fields: user, item, ts, action, query, scenario, session, position, title, category, brand, price; "
                          "items.item=product_id or users.user=id names one file's column)")
    own.add_argument("--action", action="append", default=[], metavar="WORD=ACTION",
                     help="map one of your action words to impression, click, cart or order, e.g. --action view=impression "
                          "(purchase→order and view→click are built in)")
    own.add_argument("--ts-unit", default="s", choices=["s", "ms", "us", "ns"], help="unit of numeric timestamps")
    own.add_argument("--category-separator", default=">", help="separator of a category path such as 'Beauty > Skin'")
    load.set_defaults(run=_load)


def _load(args: argparse.Namespace) -> int:
    from genrec.data.dataset import DatasetError
    from genrec.data.loaders.csv_files import load_csv

    start = time.perf_counter()
    own = [flag for flag, value in (("--items", args.items), ("--users", args.users), ("--map", args.map),
                                    ("--action", args.action)) if value]
    try:
        if args.format == "csv":
            dataset = load_csv(args.source, args.items, args.users, columns=_pairs(args.map, "--map"),
                               actions=_pairs(args.action, "--action"), ts_unit=args.ts_unit,
                               category_separator=args.category_separator)
        elif own:
            raise ValueError(f"{', '.join(own)} apply to the csv format only")
        else:
            dataset = LOADERS[args.format](args.source)
    except (DatasetError, ValueError, FileNotFoundError) as error:
        print(f"cannot load {args.source}: {error}", file=sys.stderr)
        return 1
    dataset.save(args.out, source=str(args.source), format=args.format)
    counts = dataset.counts()
    print(f"wrote {args.out}: {counts['items']} items, {counts['users']} users, {counts['events']} events in {time.perf_counter() - start:.1f}s")
    return 0


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    """["a=b", …] → {"a": "b"}; a value without "=" is an error naming the flag."""
    out = {}
    for value in values:
        key, sep, target = value.partition("=")
        if not sep or not key.strip() or not target.strip():
            raise ValueError(f"{flag} {value!r}: expected NAME=VALUE, e.g. {flag} user=customer_id")
        out[key.strip()] = target.strip()
    return out
