"""`genrec align --run RUN`: post-train the generative model into RUN/align/generative."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields


def register(subparsers: argparse._SubParsersAction) -> None:
    from genrec.align.config import AlignConfig

    parser = subparsers.add_parser("align", help="post-train the generative model (SFT, PARS, distillation, GRPO)")
    parser.add_argument("--run", required=True, dest="run_dir", help="run folder with train/generative (and cascade/model)")
    parser.add_argument("--config", default=None, help="TOML, YAML or JSON file of AlignConfig fields (the rest keep their defaults)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help=f"override one AlignConfig field, e.g. --set grpo_steps=100 (fields: "
                             f"{', '.join(f.name for f in fields(AlignConfig))})")
    parser.add_argument("--fresh", action="store_true", help="discard RUN/align/work and start over")
    parser.set_defaults(run=_align)


def _align(args: argparse.Namespace) -> int:
    from genrec.align.config import AlignConfig
    from genrec.align.stage import align_generative
    from genrec.config_file import load_config

    try:
        folder = align_generative(args.run_dir, load_config(AlignConfig, args.config, args.set), resume=not args.fresh)
    except ValueError as error:
        print(f"genrec align: {error}", file=sys.stderr)
        return 2
    result = json.loads((folder / "manifest.json").read_text())["result"]
    print(json.dumps({"folder": str(folder), "validation": result["validation"],
                      "phases": {k: {"kept": v["kept"], "best_step": v["best_step"], "cpu_seconds": v["cpu_seconds"]}
                                 for k, v in result["phases"].items()},
                      "head_mix": {k: v for k, v in (result.get("head_mix") or {}).items() if k != "table"} or None},
                     indent=2))
    return 0

