"""The `genrec` command: a thin shell over the pipeline's Python functions.

Each stage owns a `commands` module with `register(subparsers)`; this file only
lists them, so adding a stage never touches another stage's code.

Only the module of the command being run is imported: most import torch, pandas
or fastapi at the top, and `genrec --help` (or a typo) should not wait seconds for
them. `COMMAND_SUMMARIES` holds each module's command name and one-line help for
the listing; a module without a summary is simply imported (correct, only slower),
and a test keeps the summaries equal to what the modules register.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from genrec.console_log import LEVEL_ENV, LEVELS, configure_logging, log_level

COMMAND_MODULES: tuple[str, ...] = (
    "genrec.align.commands",
    "genrec.data.commands",
    "genrec.cascade.commands",
    "genrec.demo",
    "genrec.data.loaders.commands",
    "genrec.eval.commands",
    "genrec.features.commands",
    "genrec.pipeline.commands",
    "genrec.portable.commands",
    "genrec.sid.commands",
    "genrec.serve.commands",
    "genrec.train.commands",
)

COMMAND_SUMMARIES: dict[str, tuple[str, str]] = {
    "genrec.align.commands": ("align", "post-train the generative model (SFT, PARS, distillation, GRPO)"),
    "genrec.data.commands": ("data", "create, validate and describe datasets"),
    "genrec.cascade.commands": ("cascade", "the multi-stage cascade: recall → rank → fuse → calibrate → post-rank"),
    "genrec.demo": ("demo", "the whole path on the embedded default world (≤ 15 min on 2 cores)"),
    "genrec.data.loaders.commands": ("load", "convert your CSV/Parquet files or a public data set (P5 Amazon, RecBole, "
                                             "KuaiSAR, KuaiSearch, ESCI) into a genrec dataset"),
    "genrec.eval.commands": ("eval", "evaluate retrievers on a run's split; writes RUN/eval"),
    "genrec.features.commands": ("embed", "encode item text (+ precomputed views) into RUN/features"),
    "genrec.pipeline.commands": ("run", "the whole pipeline (data → SIDs → train → align → eval) from one config file"),
    "genrec.portable.commands": ("export", "save a run's generative model as a self-contained folder (safetensors, "
                                           "config, SIDs, catalog, model card) for genrec.load"),
    "genrec.sid.commands": ("sid", "give every item a Semantic ID (writes RUN/sid)"),
    "genrec.serve.commands": ("serve", "serve a run folder's retrievers over HTTP (API + web page)"),
    "genrec.train.commands": ("train", "train a model on a run folder (writes RUN/train/<model>)"),
}
"""module → (command, help): what `genrec --help` lists without importing the module."""

EXTRA_OF_MODULE: dict[str, str] = {"fastapi": "serve", "uvicorn": "serve", "pydantic": "serve", "starlette": "serve",
                                   "prometheus_client": "serve"}
"""Third-party modules that come with an optional extra (`pip install 'genrec[serve]'`), not with genrec itself."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `genrec` parser, with `command`'s full sub-parser; every other summarised command
    is a name and a help line only (`genrec COMMAND --help` shows its options)."""
    from genrec import __version__

    parser = argparse.ArgumentParser(prog="genrec", description="Generative e-commerce search and recommendation.")
    parser.add_argument("--version", action="version", version=f"genrec {__version__}")
    parser.add_argument("--log-level", dest="genrec_log_level", default=None, type=str.lower, choices=LEVELS, metavar="LEVEL",
                        help=f"what the library logs to stderr: {', '.join(LEVELS)} (default: ${LEVEL_ENV} or info)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        summary = COMMAND_SUMMARIES.get(module)
        if summary is None or summary[0] == command:
            _command_module(module).register(subparsers)
        else:
            subparsers.add_parser(summary[0], help=summary[1], add_help=False)
    return parser


def _command_module(name: str):
    """Import a command module; one that needs an uninstalled extra says which to install."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        extra = EXTRA_OF_MODULE.get((error.name or "").split(".")[0])
        if extra is None:
            raise
        command = COMMAND_SUMMARIES.get(name, (name,))[0]
        raise SystemExit(f"genrec {command} needs {error.name}, which comes with an optional extra: "
                         f"pip install 'genrec[{extra}]'") from error


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command_name(argv)).parse_args(argv)
    try:
        configure_logging(log_level(args.genrec_log_level))
    except ValueError as error:
        print(f"genrec: {error}", file=sys.stderr)
        return 2
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _command_name(argv: list[str]) -> str | None:
    """The sub-command in `argv`: its first word that is neither an option nor the value of
    the one top-level option that takes a value (`genrec --log-level debug train ...`)."""
    words = iter(argv)
    for word in words:
        if word == "--log-level":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


if __name__ == "__main__":
    sys.exit(main())
