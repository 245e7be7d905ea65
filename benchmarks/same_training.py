"""Does a change leave training exactly as it was? Train the Amazon Beauty model for a few
steps with two checkouts of genrec on the same prepared run, and compare the weights.

    .venv/bin/python benchmarks/same_training.py --run runs/beauty --old ../genrec-before

`--run` must hold `data/`, `sid/` (e.g. from `benchmarks/amazon_beauty.py`); each checkout
trains in its own copy (`RUN-same-old`, `RUN-same-new`) with its own Beauty config: the
config file `configs/amazon_beauty.toml` where the checkout has it, else the Python config
of its `benchmarks/amazon_beauty.py`. Weights saved before the model was split into parts are
renamed on load. Writes benchmarks/results/same_training.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "same_training.md"
SETTINGS = {"valid_requests": 500, "steps": 40, "eval_every": 20}


def worker(checkout: Path, run: Path) -> None:
    """Train in this process with the genrec on sys.path (the checkout's `src`)."""
    import torch

    torch.set_num_threads(1)
    from genrec.train.generative import train_generative

    train = {"steps": SETTINGS["steps"], "eval_every": SETTINGS["eval_every"],
             "checkpoint_every": SETTINGS["eval_every"], "progress": False}
    if (checkout / "configs" / "amazon_beauty.toml").exists():
        from genrec.train.config_file import load_train_config

        config = load_train_config(checkout / "configs" / "amazon_beauty.toml",
                                   [f"valid_requests={SETTINGS['valid_requests']}"] + [f"train.{k}={v}" for k, v in train.items()])
    else:  # a checkout from before config files
        from dataclasses import replace

        sys.path.insert(0, str(checkout / "benchmarks"))
        from amazon_beauty import GENERATIVE  # type: ignore[import-not-found]

        config = replace(GENERATIVE, valid_requests=SETTINGS["valid_requests"], train=replace(GENERATIVE.train, **train))
    folder = train_generative(run, config, progress=False)
    print(json.dumps(json.loads((folder / "manifest.json").read_text())["result"]["history"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a prepared Beauty run (data/, sid/)")
    parser.add_argument("--old", type=Path, required=True, help="the other checkout (its src/ is imported)")
    parser.add_argument("--new", type=Path, default=ROOT, help="this checkout by default")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.run)
        return
    import torch

    from genrec.model.checkpoint import migrate_state_dict

    histories, weights, seconds = {}, {}, {}
    for name, checkout in (("old", args.old.resolve()), ("new", args.new.resolve())):
        run = args.run.with_name(f"{args.run.name}-same-{name}")
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir(parents=True)
        for part in ("data", "sid", "features"):
            if (args.run / part).exists():
                shutil.copytree(args.run / part, run / part)
        began = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--run", str(run), "--old", str(args.old), "--worker", str(checkout)],
                              env={**os.environ, "PYTHONPATH": str(checkout / "src"), "OMP_NUM_THREADS": "1"},
                              capture_output=True, text=True, check=True)
        seconds[name] = time.perf_counter() - began
        histories[name] = json.loads(done.stdout.strip().splitlines()[-1])
        weights[name] = {f: migrate_state_dict(torch.load(run / "train" / "generative" / f, weights_only=True)["model"])
                         for f in ("best.pt", "last.pt")}
    rows = []
    for f in ("best.pt", "last.pt"):
        old, new = weights["old"][f], weights["new"][f]
        same_names = old.keys() == new.keys()
        differ = max(((old[k].float() - new[k].float()).abs().max().item() for k in old), default=0.0) if same_names else float("nan")
        rows.append(f"| {f} | {same_names} | {sum(torch.equal(old[k], new[k]) for k in old) if same_names else 0} / {len(old)} | {differ:.3g} |")
    lines = [
        "# Same training before and after a change",
        "",
        f"Command: `{' '.join(['.venv/bin/python', 'benchmarks/same_training.py'] + sys.argv[1:])}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; Amazon Beauty config, {SETTINGS['steps']} steps, "
        f"validation on {SETTINGS['valid_requests']} requests every {SETTINGS['eval_every']}, one thread, seed 0  ",
        f"Wall time: old {seconds['old']:.0f} s, new {seconds['new']:.0f} s",
        "",
        "| checkpoint | same parameter names | tensors bit-identical | largest difference |",
        "|---|---|---|---|",
        *rows,
        "",
        "Validation history (old, then new):",
        "",
        "```",
        json.dumps(histories["old"]),
        json.dumps(histories["new"]),
        "```",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
