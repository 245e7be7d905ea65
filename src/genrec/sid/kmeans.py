"""Residual k-means with faiss: the quantizer behind RQ-KMeans and RQ-VAE's codebook init."""

from __future__ import annotations

import faiss
import numpy as np

KMEANS_ITERATIONS = 25


def kmeans_centroids(x: np.ndarray, k: int, seed: int, iterations: int = KMEANS_ITERATIONS) -> np.ndarray:
    """k centroids `[k, d]` of the rows of `x` `[n, d]` (faiss k-means, seeded).

    With fewer distinct rows than k, the rows themselves are the first centroids
    and the rest repeat the last one (never chosen: `assign` breaks ties to the
    lowest index), so a tiny catalog still gets a valid codebook.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    distinct = np.unique(x, axis=0)
    if len(distinct) <= k:
        padding = np.repeat(distinct[-1:], k - len(distinct), axis=0)
        return np.concatenate([distinct, padding]).astype(np.float32)
    kmeans = faiss.Kmeans(
        x.shape[1],
        k,
        niter=iterations,
        seed=seed,
        verbose=False,
        min_points_per_centroid=1,
        max_points_per_centroid=1 << 20,
    )
    kmeans.train(x)
    return np.ascontiguousarray(kmeans.centroids, dtype=np.float32)


def assign(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (squared L2) for each row, int64 `[n]`."""
    return squared_distances(x, centroids).argmin(axis=1).astype(np.int64)


def squared_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Squared L2 distances `[n, k]` up to a per-row constant (`||x||²` is left out)."""
    x = np.asarray(x, dtype=np.float32)
    return (centroids * centroids).sum(1)[None, :] - 2.0 * (x @ centroids.T)


def residual_kmeans(x: np.ndarray, levels: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fit `levels` codebooks on successive residuals.

    Returns `(codebooks [levels, k, d], codes [n, levels])`: level l clusters what
    levels 0..l-1 left unexplained, so each level refines the previous one.
    """
    residual = np.array(x, dtype=np.float32, copy=True)
    codebooks, codes = [], []
    for level in range(levels):
        centroids = kmeans_centroids(residual, k, seed + level)
        level_codes = assign(residual, centroids)
        residual -= centroids[level_codes]
        codebooks.append(centroids)
        codes.append(level_codes)
    return np.stack(codebooks), np.stack(codes, axis=1)
