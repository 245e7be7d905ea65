"""Uncertainty of metric means: bootstrap intervals and paired comparisons.

A mean over a few thousand requests moves by a point or two between test
sets; these functions say how much, and whether two retrievers evaluated on
the same requests really differ. Resampling draws requests with replacement;
all columns of a matrix are resampled with the same draws, so differences
between retrievers stay paired.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK = 100
"""Resamples drawn at once: bounds memory to `CHUNK × n_requests` counts."""


def bootstrap_means(values: np.ndarray, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Means of `n_resamples` bootstrap resamples of the rows, `[n_resamples, n_columns]`.

    `values` is `[n_requests, n_columns]` (e.g. one column per retriever and
    metric); every column sees the same resampled rows.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or len(values) == 0:
        raise ValueError(f"values must be a non-empty matrix [n_requests, n_columns], got shape {values.shape}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be ≥ 1, got {n_resamples}")
    n = len(values)
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, values.shape[1]))
    for start in range(0, n_resamples, CHUNK):
        size = min(CHUNK, n_resamples - start)
        draws = rng.integers(0, n, size=(size, n)) + n * np.arange(size)[:, None]
        counts = np.bincount(draws.ravel(), minlength=size * n).reshape(size, n)
        out[start : start + size] = counts @ values / n
    return out


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper percentile bounds of bootstrap samples `[n_resamples, ...]` along axis 0."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
    return low, high


def mean_with_interval(values: np.ndarray, n_resamples: int = 1000, seed: int = 0) -> str:
    """`"mean [low, high]"` (4 decimals) of per-request `values` `[n]` with its 95% bootstrap interval:
    the cell every benchmark table writes."""
    values = np.asarray(values, dtype=np.float64)
    low, high = percentile_interval(bootstrap_means(values, n_resamples=n_resamples, seed=seed))
    return f"{values.mean():.4f} [{float(np.ravel(low)[0]):.4f}, {float(np.ravel(high)[0]):.4f}]"


@dataclass(frozen=True)
class PairedComparison:
    """`a − b` on the same requests: the mean difference, its 95% interval, and a p-value.

    `p_value` is two-sided from a sign-flip randomization test: under "no
    difference", each request's difference is as likely to have either sign.
    """

    a: str
    b: str
    metric: str
    slice: str
    n: int
    mean_a: float
    mean_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05


def paired_test(
    values_a: np.ndarray, values_b: np.ndarray, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float, float]:
    """Mean difference `a − b`, its bootstrap interval, and the randomization p-value.

    `values_a`, `values_b`: per-request metric values `[n]` on the same requests.
    """
    a = np.asarray(values_a, dtype=np.float64).reshape(-1)
    b = np.asarray(values_b, dtype=np.float64).reshape(-1)
    if len(a) != len(b) or len(a) == 0:
        raise ValueError(f"values_a and values_b must be non-empty and paired, got {len(a)} and {len(b)} entries")
    diff = a - b
    low, high = percentile_interval(bootstrap_means(diff, n_resamples, seed), level)
    observed = abs(diff.mean())
    rng = np.random.default_rng(seed + 1)
    extreme = 0
    for start in range(0, n_resamples, CHUNK):
        size = min(CHUNK, n_resamples - start)
        signs = rng.integers(0, 2, size=(size, len(diff))) * 2 - 1
        extreme += int((np.abs(signs @ diff / len(diff)) >= observed - 1e-12).sum())
    p_value = (extreme + 1) / (n_resamples + 1)
    return float(diff.mean()), float(low[0]), float(high[0]), float(p_value)
