"""How fast does the generative model start reading its input? The first-level probe.

Trains the default `GenerativeModel` on the indexing task alone (each item's text
→ its SID; no users, no history) for a few steps, and prints the first SID
level's training-batch accuracy every 25 steps for four set-ups: neither, only
the decoder summary path, only unit-scale inputs, both. A model that ignores its
encoder stays at chance (about 1/112 on attribute-prefixed SIDs) however low its
loss on the later levels gets; this probe is how that plateau was found.

    .venv/bin/python benchmarks/first_level_probe.py --run runs/demo

Needs RUN/data, RUN/features and RUN/sid (the demo's). Writes
`benchmarks/results/first_level_probe.md`.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genrec.data.dataset import Dataset
from genrec.features import TEXT_DIM
from genrec.model.inputs import RequestEncoder, item_query_text
from genrec.model.transformer import GenerativeConfig, GenerativeModel
from genrec.train.generative import ExampleTable, _primed_query_vectors, indexing_requests, load_sid_table

RESULTS = Path(__file__).parent / "results" / "first_level_probe.md"
SETUPS = {
    "neither (0.02 inputs, no summary)": dict(memory_summary=False, input_init_std=0.02),
    "summary only": dict(memory_summary=True, input_init_std=0.02),
    "unit-scale inputs only": dict(memory_summary=False, input_init_std=1.0),
    "both (the default)": dict(memory_summary=True, input_init_std=1.0),
}


def probe(run: Path, setup: dict, steps: int, batch_size: int, seed: int) -> list[float]:
    """First-level accuracy on each logged training batch (every 25 steps)."""
    dataset, sids = Dataset.load(run / "data"), load_sid_table(run)
    config = replace(GenerativeConfig(codebook_sizes=tuple(sids.codebook_sizes), query_vector_dim=TEXT_DIM), **setup)
    requests, targets = indexing_requests(dataset.items, 1)
    encoder = RequestEncoder(config, sids.item_ids, sids.codes, query_vectors=_primed_query_vectors(run, dataset))
    examples = ExampleTable.build(encoder.fit(item_query_text(dataset.items)), sids, requests, targets, progress=False)
    torch.manual_seed(seed)
    model = GenerativeModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    accuracy = []
    for step in range(1, steps + 1):
        batch, codes = examples.collate(rng.integers(0, len(examples), batch_size).tolist())
        logits = model(batch, codes)
        loss = torch.stack([F.cross_entropy(lg, codes[:, lv]) for lv, lg in enumerate(logits)]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 25 == 0:
            accuracy.append(float((logits[0].argmax(1) == codes[:, 0]).float().mean()))
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoints = list(range(25, args.steps + 1, 25))
    lines = ["# First-level probe: text → SID, first-level accuracy on the training batch", "",
             f"Command: `.venv/bin/python benchmarks/first_level_probe.py --run {args.run} --steps {args.steps}`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; seed {args.seed}; batch {args.batch_size}; "
             f"SID codebook sizes {load_sid_table(args.run).codebook_sizes}", "",
             "| set-up | " + " | ".join(f"step {s}" for s in checkpoints) + " |", "|---|" + "---:|" * len(checkpoints)]
    for name, setup in SETUPS.items():
        accuracy = probe(args.run, setup, args.steps, args.batch_size, args.seed)
        lines.append(f"| {name} | " + " | ".join(f"{a:.3f}" for a in accuracy) + " |")
        print(lines[-1], flush=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
