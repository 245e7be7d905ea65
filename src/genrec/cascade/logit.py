"""Probabilities on the log-odds scale, clipped once, for calibration and fusion alike."""

from __future__ import annotations

import numpy as np

EPS = 1e-6
"""Probabilities are clipped to [EPS, 1 - EPS] first: a ranker's 0 or 1 is overconfidence, not infinity."""


def logit(p: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """log(p / (1 - p)) elementwise, computed in `dtype`."""
    p = np.clip(np.asarray(p, dtype=dtype), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def log_probability(p: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """log(p) elementwise, computed in `dtype`, p clipped below at EPS."""
    return np.log(np.clip(np.asarray(p, dtype=dtype), EPS, 1.0))
