"""`genrec export --run RUN --out FOLDER`: the run's generative model as a portable folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser("export", help="save a run's generative model as a self-contained folder "
                                                  "(safetensors, config, SIDs, catalog, model card) for genrec.load")
    export.add_argument("--run", dest="run_folder", required=True, type=Path, help="run folder with train/generative")
    export.add_argument("--out", required=True, type=Path, help="folder to write")
    export.set_defaults(run=_export)


def _export(args: argparse.Namespace) -> int:
    from genrec.artifacts import MissingStageError
    from genrec.portable.folder import export_run

    try:
        folder = export_run(args.run_folder, args.out)
    except (MissingStageError, ValueError) as error:
        print(f"cannot export: {error}", file=sys.stderr)
        return 1
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"wrote {folder} ({size / 1e6:.1f} MB); load it with genrec.load({str(folder)!r})")
    return 0
