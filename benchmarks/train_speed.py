"""CPU training speed of the generative model: the step before and after the CPU work, interleaved.

For each world (a demo run; Amazon Beauty with `configs/amazon_beauty.toml` when
`--beauty-run` is given) the examples and the model are built by `prepare_training`
as `genrec train` builds them. Copies of the freshly initialised model take the same
batches (the loop's `batch_indices` order, `lr_at` schedule and gradient clipping)
in alternating blocks of `--block` steps, so all see the same load on a shared machine:

- **before**: fp32, `torch.bernoulli_` dropout masks (`F.dropout`, and SDPA's own
  dropout on the attention weights), cross-attention keys and values picked per target
  from the head views, AdamW's per-parameter loop: the step as the loop took it
  before this benchmark's changes;
- **fp32**: `train.cpu_bf16=false` today: the cheaper dropout mask
  (`genrec.model.dropout`), keys and values picked before the head split, and the
  fused CPU AdamW;
- **bf16**: the default on a CPU with native bf16 (`train.cpu_bf16=true`): the same
  under bf16 autocast.

Reported per variant: median wall and CPU (`time.process_time`, all threads) ms per
step, examples/s, the forward / backward / optimizer split, and the share of the
machine's measured matmul peak the step reaches: FLOPs of each step's forward and
backward (counted by `torch.utils.flop_counter`) per CPU second of the step, over the
FLOPs per CPU second of the best of five 2048³ matrix multiplies on the same threads
(fp32, or bf16 for the bf16 variant). Collating a batch is not timed (it is the same
for all; its cost is printed separately).

`--history NAME=MANIFEST` (repeatable) adds the validation history that trainings
recorded in their `RUN/train/generative/manifest.json`, for the quality comparison.

    OMP_NUM_THREADS=2 python benchmarks/train_speed.py --run RUN --beauty-run BEAUTY_RUN \\
        --history fp32=FP32_RUN/train/generative/manifest.json --history bf16=RUN/train/generative/manifest.json

Writes `benchmarks/results/train_speed.md`.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/decode.py: busy-waiting collapses on a shared CPU

import argparse  # noqa: E402
import contextlib  # noqa: E402
import copy  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Iterator  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import genrec.model.dropout as dropout_module  # noqa: E402
import genrec.model.layers as layers_module  # noqa: E402
from genrec.data.dataset import Dataset  # noqa: E402
from genrec.data.splits import leave_one_out  # noqa: E402
from genrec.train.config_file import load_train_config  # noqa: E402
from genrec.train.generative import GenerativeTrainConfig, load_sid_table, prepare_training  # noqa: E402
from genrec.train.loop import _optimizer, autocast_context, batch_indices, lr_at  # noqa: E402
from genrec.train.mixed import mixed_loss  # noqa: E402

ROOT = Path(__file__).parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "train_speed.md"
BEAUTY_CONFIG = ROOT / "configs" / "amazon_beauty.toml"
PARTS = ("forward", "backward", "optimizer")
VARIANTS = ("before", "fp32", "bf16")


def _project_memory_then_pick(self, memory, rows=None):
    """`Attention.project_memory` as it was: rows picked from the head views (a slow index_add backward)."""
    k, v = self.kv(memory).chunk(2, dim=-1)
    k, v = self.heads(k), self.heads(v)
    return (k, v) if rows is None else (k.index_select(0, rows), v.index_select(0, rows))


@contextlib.contextmanager
def step_as_before(on: bool) -> Iterator[None]:
    """The training step's kernels as they were before this benchmark's changes: `F.dropout` and
    SDPA's `dropout_p` (bernoulli_ masks), and cross-attention rows picked after the head split."""
    if not on:
        yield
        return
    saved = dropout_module.dropout, layers_module._attention_with_dropout, layers_module.Attention.project_memory
    dropout_module.dropout = lambda x, p, training: F.dropout(x, p, training)  # type: ignore[assignment]
    layers_module._attention_with_dropout = (  # type: ignore[assignment]
        lambda q, k, v, mask, causal, p: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p,
                                                                        is_causal=causal))
    layers_module.Attention.project_memory = _project_memory_then_pick  # type: ignore[method-assign]
    try:
        yield
    finally:
        (dropout_module.dropout, layers_module._attention_with_dropout,
         layers_module.Attention.project_memory) = saved  # type: ignore[method-assign]


@dataclass
class Timings:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    flops: list[float] = field(default_factory=list)  # the timed step's FLOPs (forward + backward)
    parts: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PARTS})
    losses: list[float] = field(default_factory=list)


class Trainee:
    """One model copy stepping as the training loop does, in one of `VARIANTS`."""

    def __init__(self, model: nn.Module, config, variant: str):
        self.model, self.variant = model.train(), variant
        self.config = replace(config, cpu_bf16=variant == "bf16")
        device = torch.device("cpu")
        optimizer = _optimizer(model, self.config, device)
        if variant == "before":  # AdamW as the loop built it on a CPU: no fused kernel, one loop per tensor
            groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in optimizer.param_groups]
            optimizer = torch.optim.AdamW(groups, lr=self.config.lr, betas=(0.9, 0.98), foreach=False)
        self.optimizer = optimizer
        self.autocast = autocast_context(self.config, device)
        self.timings = Timings()

    def step(self, step: int, batch, flops: float | None) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(step, self.config)
        with step_as_before(self.variant == "before"):
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
        if flops is None:
            return
        t = self.timings
        t.wall.append(marks[-1][0] - marks[0][0])
        t.cpu.append(marks[-1][1] - marks[0][1])
        t.flops.append(flops)
        for name, before, after in zip(PARTS, marks, marks[1:]):
            t.parts[name].append(after[0] - before[0])
        t.losses.append(float(loss.detach()))


def step_flops(model: nn.Module, batch) -> float:
    """FLOPs of one fp32 forward and backward on `batch` (matmuls and attention, as flop_counter counts)."""
    scratch = copy.deepcopy(model).train()
    with FlopCounterMode(display=False) as counter:
        mixed_loss(scratch, batch).backward()
    return float(counter.get_total_flops())


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """FLOPs per wall second and per CPU second (all threads) of the best of `repeats` n×n×n matrix
    multiplies: the machine's practical peak. Per CPU second does not count time other processes held
    the cores, so it is the one to divide by on a shared machine."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        began, began_cpu = time.perf_counter(), time.process_time()
        a @ b
        wall, cpu = min(wall, time.perf_counter() - began), min(cpu, time.process_time() - began_cpu)
    return {"wall": 2 * n**3 / wall, "cpu": 2 * n**3 / cpu}


def measure_world(name: str, run: Path, config: GenerativeTrainConfig, blocks: int, block: int, warmup: int) -> dict:
    began, began_cpu = time.perf_counter(), time.process_time()
    dataset = Dataset.load(run / "data")
    split = leave_one_out(dataset.events)
    torch.manual_seed(config.train.seed)
    prepared = prepare_training(run, config, dataset, split, load_sid_table(run), progress=False)
    build = (time.perf_counter() - began, time.process_time() - began_cpu)
    table, train_config = prepared.examples, config.train
    n_steps = warmup + blocks * block
    collate_began = time.process_time()
    batches = [table.collate([int(i) for i in batch_indices(s, len(table), train_config.batch_size, train_config.seed)])
               for s in range(n_steps)]
    collate_ms = (time.process_time() - collate_began) / n_steps * 1e3
    flops = [step_flops(prepared.model, batch) for batch in batches]
    trainees = {v: Trainee(copy.deepcopy(prepared.model), train_config, v) for v in VARIANTS}
    for s in range(warmup):
        for trainee in trainees.values():
            trainee.step(s, batches[s], None)
    for b in range(blocks):
        order = list(trainees.values()) if b % 2 == 0 else list(trainees.values())[::-1]
        for trainee in order:
            for s in range(warmup + b * block, warmup + (b + 1) * block):
                trainee.step(s, batches[s], flops[s])
    for trainee in trainees.values():  # master weights stay fp32 under autocast
        assert all(p.dtype == torch.float32 for p in trainee.model.parameters())
    return {"name": name, "examples": len(table), "batch_size": train_config.batch_size, "steps": train_config.steps,
            "parameters": prepared.model.num_parameters(), "build_s": build, "collate_ms": collate_ms,
            "timed_steps": blocks * block, "timings": {k: t.timings for k, t in trainees.items()}}


def _median_ms(values: list[float]) -> float:
    return float(np.median(values)) * 1e3


def world_table(world: dict, peaks: dict[str, dict[str, float]]) -> list[str]:
    timings: dict[str, Timings] = world["timings"]
    before = timings["before"]
    gflop = float(np.mean(before.flops)) / 1e9
    lines = [
        f"### {world['name']}: {world['parameters']:,} parameters, batch {world['batch_size']}, "
        f"{world['examples']:,} examples, {world['timed_steps']} timed steps each",
        "",
        f"Building the examples and model: {world['build_s'][0]:.0f} s wall; collating a batch: "
        f"{world['collate_ms']:.1f} ms CPU (not timed below); {gflop:.1f} GFLOP per step (forward + backward, mean).",
        "",
        "| variant | wall ms/step | CPU ms/step | examples/s | speed-up (wall / CPU) | forward ms | backward ms "
        "| optimizer ms | GFLOP/s | share of matmul peak | mean loss | "
        f"{world['steps']} steps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in timings.items():
        wall, cpu = _median_ms(t.wall), _median_ms(t.cpu)
        rate = float(np.median(np.array(t.flops) / np.array(t.wall)))
        share = float(np.median(np.array(t.flops) / np.array(t.cpu))) / peaks["bf16" if name == "bf16" else "fp32"]["cpu"]
        lines.append(
            f"| {name} | {wall:.0f} | {cpu:.0f} | {world['batch_size'] / wall * 1e3:.0f} | "
            f"{_median_ms(before.wall) / wall:.2f}× / {_median_ms(before.cpu) / cpu:.2f}× | "
            + " | ".join(f"{_median_ms(t.parts[p]):.0f}" for p in PARTS)
            + f" | {rate / 1e9:.0f} | {share:.1%} | {np.mean(t.losses):.4f} | "
            f"{wall * world['steps'] / 6e4:.1f} min |")
    return lines + [""]


def history_table(histories: list[tuple[str, Path]]) -> list[str]:
    """Validation history (the seeded validation sample the training evaluates) of each manifest."""
    keys = ("search_recall@10", "search_ndcg@10", "rec_recall@10", "rec_ndcg@10", "ndcg@10")
    lines = ["| training | step | loss | " + " | ".join(keys) + " |", "|---|---:|---:|" + "---:|" * len(keys)]
    for name, path in histories:
        for entry in json.loads(path.read_text())["result"]["history"]:
            lines.append(f"| {name} | {entry['step']} | {entry['loss']:.4f} | "
                         + " | ".join(f"{entry[k]:.4f}" if k in entry else "–" for k in keys) + " |")
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
    parser.add_argument("--blocks", type=int, default=6, help="alternating blocks per variant")
    parser.add_argument("--block", type=int, default=3, help="steps per block")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--history", action="append", default=[], metavar="NAME=MANIFEST")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = "OMP_NUM_THREADS=2 python benchmarks/train_speed.py " + " ".join(sys.argv[1:])
    load_before = os.getloadavg()
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    worlds = []
    if args.beauty_run:
        worlds.append(measure_world("Amazon Beauty (`configs/amazon_beauty.toml`)", args.beauty_run,
                                    load_train_config(BEAUTY_CONFIG), args.blocks, args.block, args.warmup))
    worlds.append(measure_world("demo (default world, `GenerativeTrainConfig()`)", args.run, GenerativeTrainConfig(),
                                args.blocks, args.block, args.warmup))
    load_after = os.getloadavg()
    lines = [
        "# Training on a CPU: step time before and after",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs ({_cpu_flags()}), shared with other jobs; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}  ",
        f"Load average (1/5/15 min) before: {' / '.join(f'{v:.1f}' for v in load_before)}, after: "
        f"{' / '.join(f'{v:.1f}' for v in load_after)}  ",
        f"Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}; blocks of {args.block} steps alternate "
        f"between the variants ({args.blocks} each, after {args.warmup} untimed steps each), same batches.  ",
        f"Matmul peak on these threads (best 2048³ multiply): fp32 {peaks['fp32']['wall'] / 1e9:.0f} GFLOP/s "
        f"({peaks['fp32']['cpu'] / 1e9:.0f} per CPU second), bf16 {peaks['bf16']['wall'] / 1e9:.0f} GFLOP/s "
        f"({peaks['bf16']['cpu'] / 1e9:.0f} per CPU second).",
        "",
        "Medians per optimizer step. **before**: fp32 with `bernoulli_` dropout masks, each target's keys and "
        "values picked from the head views, and the per-parameter AdamW loop; **fp32**: `train.cpu_bf16=false` now "
        "(cheaper dropout mask, rows picked before the head split, fused AdamW); **bf16**: the default on a CPU "
        "with native bf16. Speed-up: before / variant. GFLOP/s: per wall second. The share of the matmul "
        "peak compares FLOPs per CPU second (steadier on a shared machine) with the fp32 matmul's for before and "
        "fp32, the bf16 matmul's for bf16. The last column is the run's steps at the median.",
        "",
    ]
    for world in worlds:
        lines += world_table(world, peaks)
    if args.history:
        pairs = [(h.split("=", 1)[0], Path(h.split("=", 1)[1])) for h in args.history]
        lines += ["## Quality: the demo's validation during training (seeded 1000-request validation sample)", "",
                  *history_table(pairs)]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
