"""How much a teacher could lift the generative model: its own candidates re-ranked by the teacher, on validation.

    .venv/bin/python benchmarks/teacher_headroom.py --run runs/beauty --teacher sasrec --exclude-history --item-head-candidates 20

Distillation (`genrec align`, `AlignConfig.teacher`) can only teach the model to order
what it already finds. This measures that ceiling before any training: the served
answers' whole candidate pool (the beams, plus the head's candidates, history left out
when asked) is re-ranked by the model's served score + w × the teacher's log-probability
(the softmax of its scores over the catalogue), for several w, on the same seeded
validation requests; the teacher's own top 10 (history left out the same way) is the
other yardstick. A pool re-ranked above both says the model finds the right items and
the teacher orders them better: the case distillation into the item head is for.

Writes `benchmarks/results/teacher_headroom_<run name>.md` (`..._<run name>-align.md` for `--model-dir
RUN/align/generative`; or `--out`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from validation_sample import metric_cells, validation_sample

from genrec.align.teachers import TEACHERS, load_teacher
from genrec.eval.metrics import ranked_matrix
from genrec.model.retriever import MODEL_DIR, GenerativeRetriever
from genrec.train.generative import load_sid_table

RESULTS = Path(__file__).parent / "results"
WEIGHTS = (0.5, 1.0, 2.0, 4.0)


def teacher_log_probs(teacher, requests, n_slots: int, exclude_history: bool, batch_size: int = 256) -> np.ndarray:
    """`[n, n_slots]` log-softmax of the teacher's scores over every item it ranks (-inf elsewhere and, with
    `exclude_history`, on the request's own history items)."""
    out = np.full((len(requests), n_slots), -np.inf, dtype=np.float32)
    for start in range(0, len(requests), batch_size):
        chunk = requests[start:start + batch_size]
        for row, ranked in enumerate(teacher.retrieve(chunk, n_slots - 1), start):
            scores = np.asarray(ranked.scores, dtype=np.float64)
            out[row, ranked.item_ids] = scores - np.logaddexp.reduce(scores)
            if exclude_history and requests[row].history:
                out[row, list(requests[row].history)] = -np.inf
    return out


def metrics_row(name: str, ranked: np.ndarray, targets: np.ndarray) -> str:
    return f"| {name} | {metric_cells(ranked, targets)} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", required=True, help="run folder with data/, sid/, train/generative/ and the teacher")
    parser.add_argument("--teacher", default="sasrec", choices=TEACHERS)
    parser.add_argument("--model-dir", default=None, help="the generative model's folder (default: RUN/train/generative)")
    parser.add_argument("--exclude-history", action="store_true", help="leave history items out of every answer")
    parser.add_argument("--item-head-candidates", type=int, default=None, help="the head's candidates (default: the model's)")
    parser.add_argument("--item-head-mix", type=float, default=None, help="the head's mix (default: the model's)")
    parser.add_argument("--pool", type=int, default=100, help="candidates asked of the generative model per request")
    parser.add_argument("--max-requests", type=int, default=5000, help="seeded sample of validation requests (0: all)")
    parser.add_argument("--max-history", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="results file (default: results/teacher_headroom_<run name>.md)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    dataset, split, requests, targets = validation_sample(run, args.max_requests, args.max_history)
    folder = Path(args.model_dir) if args.model_dir else run.joinpath(*MODEL_DIR)
    model = GenerativeRetriever.load(folder, load_sid_table(run))
    if args.item_head_mix is not None:
        model.item_head_mix = args.item_head_mix
    if args.item_head_candidates is not None:
        model.item_head_candidates = args.item_head_candidates
    model.exclude_history = model.exclude_history or args.exclude_history
    began = time.perf_counter()
    answers = model.retrieve(requests, args.pool)
    pool = ranked_matrix(answers, args.pool)
    served = np.full(pool.shape, -np.inf, dtype=np.float64)
    for row, answer in enumerate(answers):
        served[row, :len(answer.scores)] = answer.scores
    n_slots = max(int(dataset.items["item_id"].max()) + 1, int(pool.max()) + 1)
    teacher = teacher_log_probs(load_teacher(args.teacher, run, dataset, split), requests, n_slots,
                                args.exclude_history)
    seconds = time.perf_counter() - began
    on_pool = np.where(pool >= 0, teacher[np.arange(len(pool))[:, None], np.maximum(pool, 0)], -np.inf)
    lines = [f"# Teacher headroom on the validation split: {run.name}, teacher {args.teacher}", "",
             "Command: `.venv/bin/python benchmarks/teacher_headroom.py --run " + args.run + f" --teacher {args.teacher}"
             + (f" --model-dir {args.model_dir}" if args.model_dir else "")
             + (" --exclude-history" if args.exclude_history else "")
             + (f" --item-head-candidates {args.item_head_candidates}" if args.item_head_candidates is not None else "")
             + (f" --item-head-mix {args.item_head_mix}" if args.item_head_mix is not None else "")
             + f" --pool {args.pool} --max-requests {args.max_requests} --max-history {args.max_history}`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {len(requests)} validation requests; "
             f"model {folder}, {model.beams} beams, head candidates {model.item_head_candidates}, mix "
             f"{model.item_head_mix:g}, history items {'left out' if model.exclude_history else 'kept'}; "
             f"{torch.get_num_threads()} torch threads, CPU; {seconds:.0f} s.", "",
             f"Target among the model's {args.pool} candidates: {(pool == targets[:, None]).any(1).mean():.4f}.", "",
             "| ranking | recall@5 | ndcg@5 | recall@10 | ndcg@10 |", "|---|---:|---:|---:|---:|",
             metrics_row("generative, served order", pool[:, :10], targets),
             metrics_row(f"{args.teacher} alone (whole catalogue)", np.argsort(-teacher, axis=1)[:, :10], targets)]
    for weight in WEIGHTS:
        order = np.argsort(-(served + weight * on_pool), axis=1, kind="stable")[:, :10]
        lines.append(metrics_row(f"generative's candidates by served score + {weight:g} × {args.teacher} log p",
                                 np.take_along_axis(pool, order, 1), targets))
    order = np.argsort(-on_pool, axis=1, kind="stable")[:, :10]
    lines.append(metrics_row(f"generative's candidates by {args.teacher} alone", np.take_along_axis(pool, order, 1),
                             targets))
    print("\n".join(lines))
    suffix = f"-{folder.parent.name}" if args.model_dir else ""  # RUN/align/generative: "-align"
    out = Path(args.out) if args.out else RESULTS / f"teacher_headroom_{run.name}{suffix}.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
