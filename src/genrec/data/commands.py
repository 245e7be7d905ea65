"""`genrec data …`: validate and describe datasets."""

from __future__ import annotations

import argparse
import sys

from genrec.data.dataset import Dataset, DatasetError


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="create, validate and describe datasets")
    commands = data.add_subparsers(dest="data_command", required=True)

    validate = commands.add_parser("validate", help="check a dataset folder against the schema")
    validate.add_argument("path")
    validate.set_defaults(run=_validate)


def _validate(args: argparse.Namespace) -> int:
    try:
        dataset = Dataset.load(args.path)
    except DatasetError as error:
        print(f"invalid dataset: {error}", file=sys.stderr)
        return 1
    counts = dataset.counts()
    print(f"valid dataset: {counts['items']} items, {counts['users']} users, {counts['events']} events")
    return 0
