"""QuaSID's plug-in losses for a trainable quantizer (`RQVAETokenizer`), and the pairs they read.

Why. A reconstruction loss is indifferent to two items landing on one code: the
decoder reconstructs both about as well. The generative model is not — a shared
code is a coin flip at decode time. QuaSID adds three things to any learned SID:

* **Hamming-guided margin repulsion** (`hamming_margin_repulsion`): a pair of
  items whose codes agree on all but ≤ h positions is pushed apart in the
  encoder's latent space until their distance reaches a margin, and the margin
  grows with how many positions agree (a full collision is repelled hardest;
  one differing code less; more differing codes not at all).
* **Conflict-aware masking**: some overlaps are benign — the same text twice, or
  variants of one product (`benign_groups`: identical normalised title). Those
  pairs are dropped before the loss, so the tokenizer never tears apart items
  that should share a code (the disambiguation level separates them).
* **Dual-tower contrastive** (`cooccurrence_contrastive`): items bought or viewed
  together (training co-occurrence) are pulled together with an in-batch InfoNCE
  between two projection towers over the shared encoder, so codes also follow
  behaviour, not only text.

Shapes: latents `[m, d]`, codes `[m, L]` (the full code, attribute prefix
included), one row per pair side.
"""

from __future__ import annotations

import itertools
import re
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def hamming_margin_repulsion(latent_a: torch.Tensor, latent_b: torch.Tensor, codes_a: torch.Tensor,
                             codes_b: torch.Tensor, max_differing: int, margin: float | torch.Tensor,
                             valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over colliding, valid pairs of `relu(margin × severity − ‖a − b‖)²` (0 when none collide).

    A pair collides when its codes differ in at most `max_differing` of the L positions;
    its severity is (agreeing − (L − max_differing) + 1) / (max_differing + 1): 1 for a full
    collision, 1 / (max_differing + 1) for the loosest. `valid` bool `[m]` (None: all) masks
    benign pairs out: they add nothing to the loss and get no gradient.
    """
    if codes_a.shape != codes_b.shape or codes_a.ndim != 2 or len(codes_a) != len(latent_a) or latent_a.shape != latent_b.shape:
        raise ValueError(f"codes must be [m, L] and latents [m, d] for both sides; got codes {tuple(codes_a.shape)}, "
                         f"{tuple(codes_b.shape)}, latents {tuple(latent_a.shape)}, {tuple(latent_b.shape)}")
    positions = codes_a.shape[1]
    if not 0 <= max_differing < positions:
        raise ValueError(f"max_differing must be in [0, {positions}) for {positions}-position codes, got {max_differing}")
    agree = (codes_a == codes_b).sum(dim=1)
    severity = (agree - (positions - max_differing) + 1).clamp(min=0).to(latent_a.dtype) / (max_differing + 1)
    mask = severity > 0
    if valid is not None:
        mask = mask & valid.to(torch.bool)
    distance = ((latent_a - latent_b) ** 2).sum(dim=1).add(1e-12).sqrt()
    per_pair = F.relu(margin * severity - distance).pow(2) * mask  # a masked pair's term and gradient are exactly 0
    return per_pair.sum() / mask.sum().clamp(min=1)


def cooccurrence_contrastive(tower_a: torch.Tensor, tower_b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric in-batch InfoNCE: row i of `tower_a [m, d]` should pick row i of `tower_b [m, d]`
    (its co-occurring item) among all m, and back. Cosine similarity / `temperature`."""
    if tower_a.shape != tower_b.shape or tower_a.ndim != 2:
        raise ValueError(f"towers must both be [m, d], got {tuple(tower_a.shape)} and {tuple(tower_b.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    logits = F.normalize(tower_a, dim=1) @ F.normalize(tower_b, dim=1).T / temperature
    target = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def colliding_pairs(codes: np.ndarray, max_differing: int, rng: np.random.Generator, neighbours: int = 8) -> np.ndarray:
    """Pairs `[m, 2]` (i < j, each once) of rows of `codes [n, L]` that differ in ≤ `max_differing` positions.

    For every choice of positions to ignore, rows with equal remaining codes form a group;
    each row is paired with the next `neighbours` rows of its group in a random order, so a
    group of g rows gives every pair when g ≤ neighbours + 1 and about g × neighbours otherwise.
    """
    codes = np.asarray(codes, dtype=np.int64)
    n, positions = codes.shape
    found = []
    for ignored in itertools.combinations(range(positions), max_differing):
        kept = codes[:, [p for p in range(positions) if p not in ignored]]
        key = np.unique(kept, axis=0, return_inverse=True)[1].reshape(-1) if kept.shape[1] else np.zeros(n, np.int64)
        order = np.lexsort((rng.permutation(n), key))
        for shift in range(1, neighbours + 1):
            if shift >= n:
                break
            same = key[order[shift:]] == key[order[:-shift]]
            found.append(np.stack([order[:-shift][same], order[shift:][same]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.sort(np.concatenate(found), axis=1)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def benign_groups(titles: Sequence[str | None]) -> np.ndarray:
    """Group id int64 `[n]` per item; items whose titles are equal after lower-casing and
    dropping punctuation and extra spaces share one (the same product listed twice, or a
    variant with the same name). A missing title is its own group."""
    seen: dict[str, int] = {}
    groups = np.empty(len(titles), dtype=np.int64)
    for row, title in enumerate(titles):
        key = " ".join(re.sub(r"[^\w]+", " ", str(title).lower()).split()) if isinstance(title, str) else ""
        groups[row] = seen.setdefault(key, len(seen)) if key else -1 - row
    return groups
