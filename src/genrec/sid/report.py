"""How good a Semantic ID assignment is, in numbers a person can compare.

All quality numbers are measured on the semantic levels, before the
disambiguation level, because that level is what the tokenizer failed to
separate: a collision there is a group of items the model can only tell apart
by an arbitrary counter.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def sid_report(codes: np.ndarray, levels: int, codebook_sizes: Sequence[int] | None = None) -> dict[str, Any]:
    """Collision, usage and balance numbers for codes `[n, levels]` or `[n, levels + 1]`.

    `levels` counts the semantic levels; a further column, if present, is the
    disambiguation level. `codebook_sizes` (per semantic level; extra entries are
    ignored) defaults to the largest code seen + 1. Returns:

    - `n_items`, `levels`
    - `collision_rate`: share of items whose semantic prefix (all `levels` codes)
      is shared with at least one other item
    - `leaf_prefixes`: distinct semantic prefixes; `items_per_leaf_max`,
      `items_per_leaf_p99`, `items_per_leaf_mean` over those prefixes
    - `disambiguation_size`: codes the disambiguation level needs (largest group)
    - `per_level`: per semantic level, `codebook_size`, `used` (distinct codes),
      `usage` (= used / codebook_size), `entropy_bits` of the code distribution
      and `normalized_entropy` (= entropy_bits / log2 codebook_size; 1 is uniform)
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or len(codes) == 0:
        raise ValueError(f"codes must be a non-empty 2-d array [n, levels (+1)], got shape {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must hold integers, got dtype {codes.dtype}")
    if not isinstance(levels, (int, np.integer)) or levels < 1 or codes.shape[1] not in (levels, levels + 1):
        raise ValueError(f"levels must be ≥ 1 and codes must have levels or levels + 1 columns; got levels={levels!r}, shape {codes.shape}")
    if (codes < 0).any():
        raise ValueError("codes holds negative values; expected codes ≥ 0")
    semantic = codes[:, :levels].astype(np.int64)
    if codebook_sizes is None:
        sizes = [int(semantic[:, level].max()) + 1 for level in range(levels)]
    else:
        sizes = [int(s) for s in list(codebook_sizes)[:levels]]
        if len(sizes) < levels:
            raise ValueError(f"codebook_sizes has {len(sizes)} entries; expected one per semantic level ({levels})")
        too_big = [level for level in range(levels) if semantic[:, level].max() >= sizes[level]]
        if too_big:
            raise ValueError(f"codes at level {too_big[0]} reach {semantic[:, too_big[0]].max()}; expected < codebook_sizes[{too_big[0]}]={sizes[too_big[0]]}")

    _, group, group_counts = np.unique(semantic, axis=0, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    per_level = []
    for level in range(levels):
        counts = np.bincount(semantic[:, level], minlength=sizes[level])
        p = counts[counts > 0] / len(semantic)
        entropy = float(-(p * np.log2(p)).sum())
        per_level.append(
            {
                "level": level,
                "codebook_size": sizes[level],
                "used": int((counts > 0).sum()),
                "usage": float((counts > 0).sum() / sizes[level]),
                "entropy_bits": entropy,
                "normalized_entropy": float(entropy / np.log2(sizes[level])) if sizes[level] > 1 else 0.0,
            }
        )
    return {
        "n_items": int(len(codes)),
        "levels": int(levels),
        "collision_rate": float((group_counts[group] > 1).mean()),
        "leaf_prefixes": int(len(group_counts)),
        "items_per_leaf_max": int(group_counts.max()),
        "items_per_leaf_p99": float(np.percentile(group_counts, 99)),
        "items_per_leaf_mean": float(group_counts.mean()),
        "disambiguation_size": int(group_counts.max()),
        "per_level": per_level,
    }


def sid_report_markdown(report: dict[str, Any], title: str = "Semantic ID report") -> str:
    """The report of `sid_report` as a markdown page."""
    lines = [
        f"# {title}",
        "",
        f"- items: {report['n_items']}, semantic levels: {report['levels']} (+1 disambiguation level)",
        f"- collision rate before disambiguation: {report['collision_rate']:.4f} "
        "(share of items whose semantic prefix another item shares)",
        f"- leaf prefixes: {report['leaf_prefixes']}; items per leaf prefix: "
        f"max {report['items_per_leaf_max']}, p99 {report['items_per_leaf_p99']:.1f}, mean {report['items_per_leaf_mean']:.2f}",
        f"- disambiguation level size: {report['disambiguation_size']}",
        "",
        "| level | codebook size | codes used | usage | entropy (bits) | normalized entropy |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["per_level"]:
        lines.append(
            f"| {row['level']} | {row['codebook_size']} | {row['used']} | {row['usage']:.3f} "
            f"| {row['entropy_bits']:.3f} | {row['normalized_entropy']:.3f} |"
        )
    return "\n".join(lines) + "\n"
