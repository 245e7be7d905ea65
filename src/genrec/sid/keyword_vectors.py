"""Keyword-enhanced item vectors: the item's text vector pulled toward an embedding of its keywords.

Why. A MiniLM vector of a whole title weighs every word, the colour and the size as much as
what the product is and what sets it apart, so the residual levels split items on whatever
varies most. KHQE quantizes vectors that stress the item's keywords. Here the keyword
embedding of an item is the score-weighted mean of the MiniLM vectors of its top keywords
(`genrec.sid.keywords`), and the enhanced vector mixes the two, unit length:

    enhanced = normalise((1 - w) · text + w · keywords)

w = 0 is the text vector, w = 1 the keyword embedding alone. An item without keywords keeps
its text vector. Each distinct keyword is encoded once (single words: a few seconds for a
catalogue's vocabulary) and cached under the run's `features/` keyed by the word list.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from genrec.artifacts import atomic_path
from genrec.features import text as text_module


def keyword_vectors(keywords: Sequence[Sequence[tuple[str, float]]], cache_dir: str | os.PathLike | None = None,
                    progress: bool = False) -> np.ndarray:
    """Unit keyword embeddings float32 `[n, 384]` (zero rows for items without keywords) from each
    item's `(word, score)` keywords; word vectors come from `encode_texts`, cached in `cache_dir`."""
    words = sorted({w for item in keywords for w, _ in item})
    word_vectors = _encode_words(words, cache_dir, progress)
    column = {w: j for j, w in enumerate(words)}
    dim = word_vectors.shape[1] if len(words) else text_module.TEXT_DIM
    out = np.zeros((len(keywords), dim), dtype=np.float32)
    for row, item in enumerate(keywords):
        if item:
            weights = np.array([max(s, 0.0) for _, s in item]) + 1e-12
            out[row] = weights @ word_vectors[[column[w] for w, _ in item]] / weights.sum()
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0).astype(np.float32)


def with_keywords(text: np.ndarray, keywords: np.ndarray, weight: float) -> np.ndarray:
    """`[n, d]`: unit rows of (1 - weight) · text + weight · keywords; a zero keyword row keeps the text row."""
    if not 0 <= weight <= 1:
        raise ValueError(f"keyword_weight must be in [0, 1], got {weight!r}")
    text = np.asarray(text, dtype=np.float32)
    keywords = np.asarray(keywords, dtype=np.float32)
    if text.shape != keywords.shape:
        raise ValueError(f"keyword vectors must have the text vectors' shape {text.shape}, got {keywords.shape}")
    has = np.linalg.norm(keywords, axis=1) > 0
    mixed = text.copy()
    mixed[has] = (1.0 - weight) * text[has] + weight * keywords[has]
    norms = np.linalg.norm(mixed, axis=1, keepdims=True)
    return np.divide(mixed, norms, out=mixed.copy(), where=norms > 0).astype(np.float32)


def _encode_words(words: list[str], cache_dir: str | os.PathLike | None, progress: bool) -> np.ndarray:
    if not words:
        return np.zeros((0, text_module.TEXT_DIM), dtype=np.float32)
    key = hashlib.sha256("\n".join([text_module.TEXT_MODEL_NAME, *words]).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"keyword_vectors-{key}.npz" if cache_dir is not None else None
    if cache is not None and cache.exists():
        with np.load(cache) as data:
            return data["vectors"]
    vectors = text_module.encode_texts(words, progress=progress)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, vectors=vectors)
    return vectors
