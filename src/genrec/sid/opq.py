"""An OPQ last level: the residual's fine detail as a few product-quantizer codes after a learned rotation.

Why. KHQE ends its SIDs with an optimised product quantizer (OPQ) so the last level keeps
what is distinctive about an item (a shade, a size, a scent) rather than one coarse
direction. A product quantizer cuts the residual `[n, d]` into `subspaces` slices and
gives each slice its own codebook of `codebook_size` codes: `subspaces` tokens name
K^subspaces cells, so a crowded prefix splits finely at little vocabulary cost. Plain
PQ cuts the dimensions as they come, so two correlated dimensions landing in different
slices are quantized as if independent; OPQ first learns an orthonormal rotation
(faiss `OPQMatrix`, alternating rotation and PQ updates) that spreads the variance
evenly and makes the slices near-independent, which lowers the reconstruction error
for the same codes. The rotation and codebooks are shared by every prefix group, so a
code means the same residual direction everywhere.

`rotate=False` is plain PQ, kept as the baseline OPQ must beat (tests, benchmarks).

faiss trains the rotation with multi-threaded BLAS whose summation order, and so whose
result, depends on the thread count; the training runs on one thread so that one seed gives
one rotation on every machine (about 10 s for 10k × 384 residuals).

    level = OPQLastLevel(codebook_size=16, subspaces=2, seed=0).fit(residual)   # residual [n, d]
    codes = level.assign(residual)                                              # [n, subspaces]
    error = ((level.reconstruct(codes) - residual) ** 2).sum(1).mean()
"""

from __future__ import annotations

import math

import faiss
import numpy as np

from genrec.sid.codebook import MAX_CODEBOOK_SIZE
from genrec.sid.kmeans import assign, kmeans_centroids

OPQ_SUBSPACES = 2
"""Default number of product-quantizer slices, so of tokens the OPQ last level adds."""
OPQ_ITERATIONS = 25
"""Rotation / PQ alternations of faiss's OPQ training."""


class OPQLastLevel:
    """Optimised product quantizer over residual vectors.

    Parameters: `codebook_size` K codes per slice; `subspaces` M slices; `rotate` learn the OPQ
    rotation (False: plain PQ); `seed`. Learned by `fit`: `rotation_` float32 `[d2, d2]`
    (orthonormal; d2 = d padded with zeros to a multiple of M), `codebooks_` float32
    `[M, K, d2 / M]`, `dim_` = d.
    """

    def __init__(self, codebook_size: int, subspaces: int = OPQ_SUBSPACES, rotate: bool = True, seed: int = 0):
        if not isinstance(codebook_size, (int, np.integer)) or not 2 <= codebook_size <= MAX_CODEBOOK_SIZE:
            raise ValueError(f"codebook_size must be an integer in [2, {MAX_CODEBOOK_SIZE}], got {codebook_size!r}")
        if not isinstance(subspaces, (int, np.integer)) or subspaces < 1:
            raise ValueError(f"opq_subspaces must be an integer ≥ 1, got {subspaces!r}")
        self.codebook_size = int(codebook_size)
        self.subspaces = int(subspaces)
        self.rotate = bool(rotate)
        self.seed = seed

    def fit(self, residual: np.ndarray) -> "OPQLastLevel":
        """Learn the rotation (unless `rotate=False`) and the slice codebooks from `residual [n, d]`."""
        x = self._check(residual, fitted=False)
        if x.shape[1] < self.subspaces:
            raise ValueError(f"opq_subspaces ({self.subspaces}) must not exceed the vector width ({x.shape[1]})")
        self.dim_ = int(x.shape[1])
        padded = self._pad(x)
        width = padded.shape[1]
        self.rotation_ = np.eye(width, dtype=np.float32)
        nbits = max(1, math.ceil(math.log2(self.codebook_size)))
        if self.rotate and len(padded) >= 2**nbits:  # faiss's PQ needs a point per code to train
            opq = faiss.OPQMatrix(width, self.subspaces)
            opq.niter = OPQ_ITERATIONS
            opq.verbose = False
            product = faiss.ProductQuantizer(width, self.subspaces, nbits)
            opq.pq = product  # train the rotation for codebooks of this size, not faiss's default 256
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            try:
                opq.train(padded)
            finally:
                faiss.omp_set_num_threads(threads)
            self.rotation_ = faiss.vector_to_array(opq.A).reshape(width, width).astype(np.float32)
        rotated = padded @ self.rotation_.T
        self.codebooks_ = np.stack([
            kmeans_centroids(np.ascontiguousarray(part), self.codebook_size, self.seed + m)
            for m, part in enumerate(self._slices(rotated))
        ])
        return self

    def assign(self, residual: np.ndarray) -> np.ndarray:
        """Codes int64 `[n, M]`: per slice, the nearest code of the rotated residual."""
        x = self._check(residual, fitted=True)
        rotated = self._pad(x) @ self.rotation_.T
        return np.stack([assign(np.ascontiguousarray(part), book) for part, book in zip(self._slices(rotated), self.codebooks_)], axis=1)

    def reconstruct(self, codes: np.ndarray) -> np.ndarray:
        """Residual vectors float32 `[n, d]` that `codes [n, M]` stand for (rotated back)."""
        self._check_fitted()
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[1] != self.subspaces:
            raise ValueError(f"codes must be [n, {self.subspaces}], got shape {codes.shape}")
        rotated = np.concatenate([self.codebooks_[m][codes[:, m]] for m in range(self.subspaces)], axis=1)
        return (rotated @ self.rotation_)[:, : self.dim_].astype(np.float32)

    def _pad(self, x: np.ndarray) -> np.ndarray:
        width = math.ceil(x.shape[1] / self.subspaces) * self.subspaces
        return np.ascontiguousarray(np.pad(x, ((0, 0), (0, width - x.shape[1]))), dtype=np.float32)

    def _slices(self, rotated: np.ndarray) -> list[np.ndarray]:
        return np.split(rotated, self.subspaces, axis=1)

    def _check(self, residual: np.ndarray, fitted: bool) -> np.ndarray:
        if fitted:
            self._check_fitted()
        x = np.asarray(residual, dtype=np.float32)
        if x.ndim != 2 or len(x) == 0 or not np.isfinite(x).all():
            raise ValueError(f"residual must be a finite array [n ≥ 1, d], got shape {x.shape}")
        if fitted and x.shape[1] != self.dim_:
            raise ValueError(f"residual has {x.shape[1]} columns; expected {self.dim_}, the width seen in fit")
        return x

    def _check_fitted(self) -> None:
        if not hasattr(self, "codebooks_"):
            raise ValueError("this OPQLastLevel is not fitted yet; call fit(residual) first")
