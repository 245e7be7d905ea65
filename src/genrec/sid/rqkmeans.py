"""RQ-KMeans: residual k-means Semantic IDs (the OneRec / OneSearch default).

Level 0 clusters the item vectors; level l clusters what levels 0..l-1 left
unexplained (the residual), so the first code says roughly what an item is and
later codes refine it. No training loop, deterministic given the seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genrec.sid.kmeans import assign, residual_kmeans, squared_distances
from genrec.sid.tokenizer import SidTokenizer


class RQKMeansTokenizer(SidTokenizer):
    """Residual k-means tokenizer.

    Parameters: `levels` semantic levels; `codebook_size` codes per level, or None
    for the adaptive rule of `genrec.sid.codebook.adaptive_codebook_size`; `seed`;
    `spread_last_level` lets siblings under one parent prefix take distinct
    last-level codes where the codebook allows (`genrec.sid.codebook`).
    Learned: `codebooks_` float32 `[levels, codebook_size_, d]`, `codebook_size_`,
    `dim_`, `disambiguation_size_`.
    """

    def __init__(self, levels: int = 3, codebook_size: int | None = None, seed: int = 0, spread_last_level: bool = True):
        self.levels = levels
        self.codebook_size = codebook_size
        self.seed = seed
        self.spread_last_level = spread_last_level

    def get_params(self) -> dict[str, Any]:
        return {
            "levels": self.levels,
            "codebook_size": self.codebook_size,
            "seed": self.seed,
            "spread_last_level": self.spread_last_level,
        }

    def _fit(self, x: np.ndarray) -> None:
        self.codebooks_, _ = residual_kmeans(x, self.levels, self.codebook_size_, self.seed)

    def _semantic_codes(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        residual = x.copy()
        codes = np.empty((len(x), self.levels), dtype=np.int64)
        for level, centroids in enumerate(self.codebooks_[:-1]):
            codes[:, level] = assign(residual, centroids)
            residual -= centroids[codes[:, level]]
        last_distances = squared_distances(residual, self.codebooks_[-1])
        codes[:, -1] = last_distances.argmin(axis=1)
        return codes, last_distances

    def _reconstruct(self, codes: np.ndarray) -> np.ndarray:
        return sum((self.codebooks_[level][codes[:, level]] for level in range(self.levels)), np.zeros((len(codes), self.dim_), np.float32))

    def _learned_arrays(self) -> dict[str, np.ndarray]:
        return {"codebooks_": self.codebooks_}

    def _restore(self, arrays: dict[str, np.ndarray], scalars: dict[str, Any]) -> None:
        self.codebooks_ = arrays["codebooks_"].astype(np.float32)
