"""`genrec data …`: validate and describe datasets."""

from __future__ import annotations

import argparse
import sys

from genrec.data.dataset import Dataset, DatasetError
from genrec.data.synth import WorldConfig, generate_world


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="create, validate and describe datasets")
    commands = data.add_subparsers(dest="data_command", required=True)

    validate = commands.add_parser("validate", help="check a dataset folder against the schema")
    validate.add_argument("path")
    validate.set_defaults(run=_validate)

    remap = commands.add_parser("remap", help="re-number item and user ids 1..n (old ids kept in original_item_id / original_user_id)")
    remap.add_argument("path", help="dataset folder whose ids are too sparse")
    remap.add_argument("--out", required=True, help="folder to write the re-numbered dataset to")
    remap.set_defaults(run=_remap)

    synth = commands.add_parser("synth", help="generate the embedded e-commerce world (dataset + hidden truth)")
    synth.add_argument("--out", required=True, help="folder to write, e.g. runs/demo/data")
    defaults = WorldConfig()
    synth.add_argument("--items", type=int, default=defaults.n_items)
    synth.add_argument("--users", type=int, default=defaults.n_users)
    synth.add_argument("--events", type=int, default=defaults.n_events)
    synth.add_argument("--seed", type=int, default=defaults.seed)
    synth.set_defaults(run=_synth)

    stats = commands.add_parser("stats", help="counts, sparsity, funnel, long tail and cold-start users of a dataset")
    stats.add_argument("path")
    stats.add_argument("--json", action="store_true", help="print the statistics as JSON")
    stats.set_defaults(run=_stats)


def _validate(args: argparse.Namespace) -> int:
    try:
        dataset = Dataset.load(args.path)
    except DatasetError as error:
        print(f"invalid dataset: {error}", file=sys.stderr)
        return 1
    counts = dataset.counts()
    print(f"valid dataset: {counts['items']} items, {counts['users']} users, {counts['events']} events")
    return 0


def _remap(args: argparse.Namespace) -> int:
    from genrec.data.loaders.canonical import remap_ids

    try:
        dense = remap_ids(Dataset.load(args.path, validate=False))
        dense.save(args.out)
    except DatasetError as error:
        print(f"cannot remap: {error}", file=sys.stderr)
        return 1
    counts = dense.counts()
    print(f"wrote {args.out}: {counts['items']} items and {counts['users']} users re-numbered from 1, "
          f"{counts['events']} events")
    return 0


def _synth(args: argparse.Namespace) -> int:
    import time

    from tqdm import tqdm

    try:
        config = WorldConfig(n_items=args.items, n_users=args.users, n_events=args.events, seed=args.seed)
    except ValueError as error:
        print(f"invalid world size: {error}", file=sys.stderr)
        return 2
    steps = ["catalogue", "users", "sessions", "funnel", "queries", "tables", "save"]
    started = time.perf_counter()
    with tqdm(total=len(steps), desc="synth", unit="step") as bar:
        def progress(name: str) -> None:
            bar.set_postfix_str(name, refresh=False)
            if name != steps[0]:
                bar.update(1)

        world = generate_world(config, progress=progress)
        progress("save")
        world.save(args.out)
        bar.update(1)
    counts = world.dataset.counts()
    print(f"wrote {args.out}: {counts['items']} items, {counts['users']} users, {counts['events']} events "
          f"in {time.perf_counter() - started:.1f} s (seed {config.seed})")
    return 0


def _stats(args: argparse.Namespace) -> int:
    import json

    from genrec.data.stats import dataset_stats, print_stats

    try:
        dataset = Dataset.load(args.path)
    except DatasetError as error:
        print(f"invalid dataset: {error}", file=sys.stderr)
        return 1
    stats = dataset_stats(dataset)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print_stats(stats, title=str(args.path))
    return 0
