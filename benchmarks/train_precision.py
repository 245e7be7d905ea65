"""Training on a CPU in bf16 autocast against fp32: time per optimizer step, interleaved.

For each world (a demo run; Amazon Beauty with `configs/amazon_beauty.toml` when
`--beauty-run` is given) the examples and the model are built by `prepare_training`,
as `genrec train` builds them. Two copies of the freshly initialised model take the
same batches (the loop's `batch_indices` order and `lr_at` schedule, the loop's
AdamW and gradient clipping): one with `TrainConfig.cpu_bf16=False` (fp32), one with
`cpu_bf16=True` (the default on a CPU with bf16 arithmetic), in alternating blocks of `--block` steps so
both see the same load on a shared machine; the first `--warmup` steps of each
are not timed. Collating a batch is not timed (it is the same in both).

Reported per precision: median wall and CPU (`time.process_time`, all threads)
milliseconds per step, examples/s (batch / median wall), and the median split into
forward (the loss), backward, and optimizer (clipping + AdamW). CPU time is the
number to trust on a busy machine: it does not count the time other processes
held the cores.

`--history NAME=MANIFEST` (repeatable) adds the validation history that trainings
recorded in their `RUN/train/generative/manifest.json`, for the quality comparison.

    OMP_NUM_THREADS=2 python benchmarks/train_precision.py --run /tmp/demo --beauty-run /tmp/beauty \\
        --history fp32=runs/demo/train/generative/manifest.json --history bf16=/tmp/demo/train/generative/manifest.json

Writes `benchmarks/results/train_precision.md`.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/decode.py: busy-waiting collapses on a shared CPU

import argparse  # noqa: E402
import copy  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from genrec.data.dataset import Dataset  # noqa: E402
from genrec.data.splits import leave_one_out  # noqa: E402
from genrec.train.config_file import load_train_config  # noqa: E402
from genrec.train.generative import GenerativeTrainConfig, load_sid_table, prepare_training  # noqa: E402
from genrec.train.loop import _optimizer, autocast_context, batch_indices, lr_at  # noqa: E402
from genrec.train.mixed import mixed_loss  # noqa: E402

ROOT = Path(__file__).parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "train_precision.md"
BEAUTY_CONFIG = ROOT / "configs" / "amazon_beauty.toml"
PARTS = ("forward", "backward", "optimizer")


@dataclass
class Timings:
    """Per timed step: wall and CPU seconds of the whole step and of each part; the step's loss."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    parts: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PARTS})
    losses: list[float] = field(default_factory=list)


class Trainee:
    """One model copy, its optimizer and its autocast, stepping as the training loop does."""

    def __init__(self, model: nn.Module, config, cpu_bf16: bool):
        self.model = model.train()
        self.config = replace(config, cpu_bf16=cpu_bf16)
        device = torch.device("cpu")
        self.optimizer = _optimizer(model, self.config, device)
        self.autocast = autocast_context(self.config, device)
        self.timings = Timings()

    def step(self, step: int, batch, timed: bool) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(step, self.config)
        marks = [(time.perf_counter(), time.process_time())]
        with self.autocast:
            loss = mixed_loss(self.model, batch)
        marks.append((time.perf_counter(), time.process_time()))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        marks.append((time.perf_counter(), time.process_time()))
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        marks.append((time.perf_counter(), time.process_time()))
        if not timed:
            return
        t = self.timings
        t.wall.append(marks[-1][0] - marks[0][0])
        t.cpu.append(marks[-1][1] - marks[0][1])
        for name, before, after in zip(PARTS, marks, marks[1:]):
            t.parts[name].append(after[0] - before[0])
        t.losses.append(float(loss.detach()))


def measure_world(name: str, run: Path, config: GenerativeTrainConfig, blocks: int, block: int,
                  warmup: int) -> dict:
    """Build `run`'s training as `genrec train` does, then time fp32 and bf16 steps interleaved."""
    began, began_cpu = time.perf_counter(), time.process_time()
    dataset = Dataset.load(run / "data")
    split = leave_one_out(dataset.events)
    torch.manual_seed(config.train.seed)
    prepared = prepare_training(run, config, dataset, split, load_sid_table(run), progress=False)
    build = (time.perf_counter() - began, time.process_time() - began_cpu)
    table, train_config = prepared.examples, config.train
    n_steps = warmup + blocks * block
    batches = [table.collate([int(i) for i in batch_indices(s, len(table), train_config.batch_size, train_config.seed)])
               for s in range(n_steps)]
    trainees = {"fp32": Trainee(prepared.model, train_config, cpu_bf16=False),
                "bf16": Trainee(copy.deepcopy(prepared.model), train_config, cpu_bf16=True)}
    for s in range(warmup):
        for trainee in trainees.values():
            trainee.step(s, batches[s], timed=False)
    for b in range(blocks):
        order = list(trainees.values()) if b % 2 == 0 else list(trainees.values())[::-1]  # who goes first alternates
        for trainee in order:
            for s in range(warmup + b * block, warmup + (b + 1) * block):
                trainee.step(s, batches[s], timed=True)
    for trainee in trainees.values():  # master weights and optimizer state stay fp32 under autocast
        assert all(p.dtype == torch.float32 for p in trainee.model.parameters())
    return {"name": name, "run": str(run), "examples": len(table), "batch_size": train_config.batch_size,
            "parameters": prepared.model.num_parameters(), "build_s": build, "timed_steps": blocks * block,
            "timings": {k: t.timings for k, t in trainees.items()}}


def _median_ms(values: list[float]) -> float:
    return float(np.median(values)) * 1e3


def world_table(world: dict) -> list[str]:
    timings: dict[str, Timings] = world["timings"]
    lines = [
        f"### {world['name']}: {world['parameters']:,} parameters, batch {world['batch_size']}, "
        f"{world['examples']:,} examples, {world['timed_steps']} timed steps each",
        "",
        f"Building the examples and model (`prepare_training`): {world['build_s'][0]:.0f} s wall, "
        f"{world['build_s'][1]:.0f} s CPU.",
        "",
        "| precision | wall ms/step | CPU ms/step | examples/s | forward ms | backward ms | optimizer ms | mean loss |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in timings.items():
        wall = _median_ms(t.wall)
        lines.append(f"| {name} | {wall:.0f} | {_median_ms(t.cpu):.0f} | {world['batch_size'] / wall * 1e3:.0f} | "
                     + " | ".join(f"{_median_ms(t.parts[p]):.0f}" for p in PARTS)
                     + f" | {np.mean(t.losses):.4f} |")
    fp32, bf16 = timings["fp32"], timings["bf16"]
    lines.append("| **bf16 / fp32** | " + f"{_median_ms(bf16.wall) / _median_ms(fp32.wall):.2f} | "
                 f"{_median_ms(bf16.cpu) / _median_ms(fp32.cpu):.2f} | "
                 f"{_median_ms(fp32.wall) / _median_ms(bf16.wall):.2f}× | "
                 + " | ".join(f"{_median_ms(bf16.parts[p]) / _median_ms(fp32.parts[p]):.2f}" for p in PARTS) + " | |")
    return lines + [""]


def history_table(histories: list[tuple[str, Path]]) -> list[str]:
    """Validation history (the seeded validation sample the training evaluates) of each manifest."""
    keys = ("search_recall@10", "search_ndcg@10", "rec_recall@10", "rec_ndcg@10", "ndcg@10")
    lines = ["| training | step | loss | " + " | ".join(keys) + " | train s |",
             "|---|---:|---:|" + "---:|" * len(keys) + "---:|"]
    for name, path in histories:
        result = json.loads(path.read_text())["result"]
        for entry in result["history"]:
            lines.append(f"| {name} | {entry['step']} | {entry['loss']:.4f} | "
                         + " | ".join(f"{entry[k]:.4f}" if k in entry else "–" for k in keys)
                         + f" | {result['train_seconds']:.0f} |")
    return lines + [""]


def _cpu_flags() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    wanted = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return ", ".join(f for f in wanted if f in flags) or "none of avx512f/avx512_bf16/amx"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a run folder with data/, features/, sid/ (the demo's)")
    parser.add_argument("--beauty-run", type=Path, help="an Amazon Beauty run folder (data/, sid/ as "
                        "benchmarks/amazon_beauty.py prepares it); trained with configs/amazon_beauty.toml")
    parser.add_argument("--blocks", type=int, default=8, help="alternating blocks per precision")
    parser.add_argument("--block", type=int, default=3, help="steps per block")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per precision first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--history", action="append", default=[], metavar="NAME=MANIFEST")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = "OMP_NUM_THREADS=2 python benchmarks/train_precision.py " + " ".join(sys.argv[1:])
    load_before = os.getloadavg()

    worlds = [measure_world("demo (default world, `GenerativeTrainConfig()`)", args.run, GenerativeTrainConfig(),
                            args.blocks, args.block, args.warmup)]
    if args.beauty_run:
        worlds.append(measure_world("Amazon Beauty (`configs/amazon_beauty.toml`)", args.beauty_run,
                                    load_train_config(BEAUTY_CONFIG), args.blocks, args.block, args.warmup))
    load_after = os.getloadavg()

    lines = [
        "# Training on a CPU: bf16 autocast against fp32",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs ({_cpu_flags()}), shared with other jobs; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}  ",
        f"Load average (1/5/15 min) before: {' / '.join(f'{v:.1f}' for v in load_before)}, after: "
        f"{' / '.join(f'{v:.1f}' for v in load_after)}  ",
        f"Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}; blocks of {args.block} steps alternate "
        f"between the precisions ({args.blocks} each, after {args.warmup} untimed steps each), same batches.",
        "",
        "Medians per optimizer step. CPU ms counts every thread of this process and not the time other "
        "processes held the cores, so it is the steadier number here; the ratio row is bf16 / fp32 "
        "(examples/s: speed-up).",
        "",
    ]
    for world in worlds:
        lines += world_table(world)
    if args.history:
        pairs = [(h.split("=", 1)[0], Path(h.split("=", 1)[1])) for h in args.history]
        lines += ["## Quality: validation during training (seeded 1000-request validation sample)", "",
                  *history_table(pairs)]
    text = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
