"""CPU cost of the opt-in backbone parts: Query-Former against full attention over a long
history, sparse MoE against the dense feed-forward, behaviour user-ID tokens, per-action fusion,
and the long view on the recommendation path.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/backbone_cost.py      # about a minute on one core

Each variant is the demo's model (`GenerativeConfig()`, d = 128) without its item head (the head's
catalogue softmax costs every variant the same) and with one option changed, on a batch
of `BATCH` search requests whose long view holds `LONG` positions (a fifth of them padding): CPU
seconds (`time.process_time`, one thread) per training step (forward + backward of `model.loss`)
and per `encode_memory` without gradients, median of `REPEATS` after a warm-up. Cost only: which
variant is better is a question for validation quality, not this table. The recommendation
path's long view (`rec_long_view`) is priced apart, on `BATCH` training windows (MovieLens'
shape: a short view of 50, histories long enough for a long view of `LONG`), per
`sequence_loss` step.
Writes `benchmarks/results/backbone_cost.md`.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from genrec.model import EncoderBatch, GenerativeConfig, GenerativeModel, InputSpec, SequenceBatch  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "backbone_cost.md"
BATCH, LONG, REPEATS, SEED = 64, 200, 7, 0
VARIANTS: dict[str, dict] = {
    f"dense, long view whole ({LONG} tokens)": {"max_long": LONG},
    f"Query-Former, {LONG} → 16 tokens": {"max_long": LONG, "long_queries": 16},
    "dense, long view of 10 (the demo)": {},
    "sparse MoE 8 experts, top-2, d_ff 512 (2x active FFN)": {"moe_experts": 8, "moe_top_k": 2},
    "sparse MoE 8 experts, top-2, d_ff 256 (equal active FFN)": {"moe_experts": 8, "moe_top_k": 2, "d_ff": 256},
    "user-ID tokens, 2 levels": {"user_id_levels": 2},
    "per-action fusion, 2 queries per action": {"action_fusion": 2},
}
REC_SHORT = 50
REC_VARIANTS: dict[str, dict] = {
    f"short view of {REC_SHORT} only (today)": {},
    f"+ long view of {LONG}, whole": {"rec_long_view": True},
    f"+ long view of {LONG} → 16 Query-Former tokens": {"rec_long_view": True, "long_queries": 16},
}
"""Recommendation-only models (`tasks="recommendation"`, max_short 50, max_long `LONG`)."""


def search_batch(spec: InputSpec, long: int, generator: torch.Generator) -> EncoderBatch:
    """Random search requests whose long view is `long` wide, about a fifth of it padding."""
    batch = EncoderBatch.random(spec, BATCH, generator)
    items = torch.randint(1, 50, (BATCH, long), generator=generator)
    items[torch.rand(BATCH, long, generator=generator) < 0.2] = 0
    batch.long_items = items
    batch.long_codes = torch.stack([torch.randint(0, v, (BATCH, long), generator=generator)
                                    for v in spec.codebook_sizes], dim=-1)
    batch.long_action = torch.randint(0, spec.n_actions, (BATCH, long), generator=generator)
    batch.long_recency = torch.randint(0, spec.n_recency, (BATCH, long), generator=generator)
    batch.query[batch.query[:, 0] == 0, 0] = 1  # every request a search
    return batch


def cpu_seconds(fn) -> float:
    fn()
    times = []
    for _ in range(REPEATS):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def measure(overrides: dict) -> tuple[int, float, float]:
    torch.manual_seed(SEED)
    spec = InputSpec()
    model = GenerativeModel(GenerativeConfig(**{"item_head": False, **overrides}), spec)
    g = torch.Generator().manual_seed(SEED)
    batch = search_batch(spec, LONG, g)
    codes = torch.stack([torch.randint(0, v, (BATCH,), generator=g) for v in spec.codebook_sizes], dim=1)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model.loss(batch, codes).backward()

    def encode() -> None:
        with torch.no_grad():
            model.encode_memory(batch)

    model.train()
    train_s = cpu_seconds(step)
    model.eval()
    return model.num_parameters(), train_s, cpu_seconds(encode)


def recommendation_windows(spec: InputSpec, generator: torch.Generator) -> SequenceBatch:
    """`BATCH` full windows of `REC_SHORT + 1` positions, every position a target, each with a full
    long view of `LONG` older interactions."""
    def codes(*shape: int) -> torch.Tensor:
        return torch.stack([torch.randint(0, v, shape, generator=generator) for v in spec.codebook_sizes], dim=-1)

    width = REC_SHORT + 1
    return SequenceBatch(
        user=torch.randint(1, spec.user_vocab_size, (BATCH, 3), generator=generator),
        items=torch.randint(1, 50, (BATCH, width), generator=generator), codes=codes(BATCH, width),
        action=torch.ones(BATCH, width, dtype=torch.long), target=torch.ones(BATCH, width, dtype=torch.bool),
        long_items=torch.randint(1, 50, (BATCH, LONG), generator=generator), long_codes=codes(BATCH, LONG),
        long_action=torch.ones(BATCH, LONG, dtype=torch.long))


def measure_recommendation(overrides: dict) -> tuple[int, float]:
    torch.manual_seed(SEED)
    spec = InputSpec()
    config = GenerativeConfig(**{"item_head": False, "tasks": "recommendation", "max_short": REC_SHORT,
                                 "max_long": LONG, **overrides})
    model = GenerativeModel(config, spec).train()
    batch = recommendation_windows(spec, torch.Generator().manual_seed(SEED))

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model.sequence_loss(batch).backward()

    return model.num_parameters(), cpu_seconds(step)


def main() -> None:
    torch.set_num_threads(1)
    rows = []
    for name, overrides in VARIANTS.items():
        params, train_s, encode_s = measure(overrides)
        rows.append((name, params, train_s, encode_s))
        print(f"{name}: {params:,} parameters, train step {train_s * 1e3:.0f} ms, encode {encode_s * 1e3:.1f} ms",
              flush=True)
    rec_rows = []
    for name, overrides in REC_VARIANTS.items():
        params, train_s = measure_recommendation(overrides)
        rec_rows.append((name, params, train_s))
        print(f"recommendation, {name}: {params:,} parameters, train step {train_s * 1e3:.0f} ms", flush=True)
    base = {name: (t, e) for name, _, t, e in rows}
    whole = base[next(iter(VARIANTS))]
    former = base[list(VARIANTS)[1]]
    lines = [
        "# Backbone parts: CPU cost",
        "",
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/backbone_cost.py`; {platform.platform()}, Python "
        f"{platform.python_version()}, torch {torch.__version__}, {date.today().isoformat()}, load average "
        f"{os.getloadavg()[0]:.1f}, one thread, seed {SEED}. {BATCH} search requests per batch, long view "
        f"{LONG} positions wide (about a fifth padding) where a row says so; CPU seconds, median of {REPEATS}.",
        "",
        "| variant | parameters | train step (ms) | encode, no grad (ms) |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {params:,} | {t * 1e3:.0f} | {e * 1e3:.1f} |" for name, params, t, e in rows),
        "",
        f"Query-Former against the whole long view, same run: train step {whole[0] / former[0]:.2f}x, "
        f"encode {whole[1] / former[1]:.2f}x faster.",
        "",
        f"The recommendation path, {BATCH} training windows of {REC_SHORT + 1} positions (every one a target), "
        f"each with {LONG} older interactions for the long view (`rec_long_view`); `sequence_loss` forward + "
        "backward:",
        "",
        "| recommendation path | parameters | train step (ms) |",
        "|---|---:|---:|",
        *(f"| {name} | {params:,} | {t * 1e3:.0f} |" for name, params, t in rec_rows),
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
