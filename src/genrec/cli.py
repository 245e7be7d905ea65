"""The `genrec` command: a thin shell over the pipeline's Python functions.

Each stage owns a `commands` module with `register(subparsers)`; this file only
lists them, so adding a stage never touches another stage's code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES: tuple[str, ...] = (
    "genrec.align.commands",
    "genrec.data.commands",
    "genrec.cascade.commands",
    "genrec.demo",
    "genrec.data.loaders.commands",
    "genrec.eval.commands",
    "genrec.features.commands",
    "genrec.sid.commands",
    "genrec.serve.commands",
    "genrec.train.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genrec", description="Generative e-commerce search and recommendation.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
