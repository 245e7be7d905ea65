"""The baseline table on the default generated world, with intervals, search and recommendation apart.

    .venv/bin/python benchmarks/eval_baselines.py                      # runs/dev, test part
    .venv/bin/python benchmarks/eval_baselines.py --retrievers popularity,bm25,itemcf,oracle

Generates the default world into RUN/data when it is missing, runs
`genrec.eval.commands.run_evaluation` (which writes RUN/eval) and copies the
report and its two plots to benchmarks/results/eval_baselines*.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from genrec.eval.commands import run_evaluation
from genrec.eval.harness import EvalConfig

RESULTS = Path(__file__).parent / "results"
DEFAULT_RETRIEVERS = "popularity,category_popularity,bm25,dense,dense_hnsw,itemcf,oracle"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/dev")
    parser.add_argument("--retrievers", default=DEFAULT_RETRIEVERS)
    parser.add_argument("--part", default="test", choices=("test", "valid"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch/faiss threads; 1 keeps single-request latency sane on a shared machine")
    args = parser.parse_args()

    run = Path(args.run)
    if not (run / "data").exists():
        from genrec.data.synth import WorldConfig, generate_world

        generate_world(WorldConfig()).save(run / "data")
    command = "python benchmarks/eval_baselines.py " + " ".join(sys.argv[1:])
    run_evaluation(run, args.retrievers.split(","), part=args.part, config=EvalConfig(seed=args.seed),
                   command=command.strip(), threads=args.threads)

    RESULTS.mkdir(exist_ok=True)
    markdown = (run / "eval" / "report.md").read_text()
    for png in ("recall_at_k.png", "slices.png"):
        shutil.copyfile(run / "eval" / png, RESULTS / f"eval_baselines_{png}")
        markdown = markdown.replace(f"]({png})", f"](eval_baselines_{png})")
    (RESULTS / "eval_baselines.md").write_text(markdown)
    print(f"wrote {RESULTS / 'eval_baselines.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
