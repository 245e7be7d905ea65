"""Item vectors for the Semantic ID tokenizers, cached in the run folder.

Encoding a catalog takes minutes on a CPU, so `encode_items` keys a cache file
on a hash of everything the vectors depend on (the item texts, the model name,
and any extra view's values): a second call with the same items is a file read,
and a changed title, model or view makes a new file rather than a stale hit.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from genrec.artifacts import atomic_path
from genrec.data.dataset import Dataset
from genrec.features.text import TEXT_MODEL_NAME, encode_texts, item_text

VIEWS: tuple[str, ...] = ("text", "image")
"""Views an item vector can be built from. `image` reads `items.image_vector`
(any precomputed embedding: image, video frame, another encoder); more views
(OneVision-style multi-view items) are added here and in `_view_vectors`."""


@dataclass
class ItemVectors:
    """One vector per item: `item_ids` int64 `[n]`, `vectors` float32 `[n, d]`.

    `views` names the parts of `vectors` in order and `view_dims` their widths, so a
    consumer can slice one view back out (`vectors[:, :view_dims[0]]` is the first).
    """

    item_ids: np.ndarray
    vectors: np.ndarray
    views: tuple[str, ...] = ("text",)
    view_dims: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        self.item_ids = np.asarray(self.item_ids, dtype=np.int64)
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        if self.item_ids.ndim != 1:
            raise ValueError(f"item_ids must be 1-d [n], got shape {self.item_ids.shape}")
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.item_ids):
            raise ValueError(f"vectors must be [n={len(self.item_ids)}, d], got shape {self.vectors.shape}")
        if not self.view_dims:
            self.view_dims = (self.vectors.shape[1],)

    def __len__(self) -> int:
        return len(self.item_ids)


def encode_items(
    dataset: Dataset,
    cache_dir: str | os.PathLike,
    views: Sequence[str] = ("text",),
    batch_size: int = 256,
    progress: bool = True,
    device: str = "cpu",
    model: str = TEXT_MODEL_NAME,
) -> ItemVectors:
    """Vectors for every item in `dataset.items`, in row order, cached under `cache_dir`.

    Each view is L2-normalised on its own, then the views are concatenated with a
    weight of 1/sqrt(len(views)) each, so every item vector has unit norm and every
    view contributes equally to a dot product whatever its width (384 for text, any
    width for `image_vector`): dimensions need not match, they are concatenated,
    not added. An item without a value for a view gets zeros there and the row is
    re-normalised, so it is placed by its other views alone. Result:
    `vectors` float32 `[n_items, sum(view_dims)]`.

    The cache file is `cache_dir/item_vectors-<hash>.npz`, the hash covering the
    views, the model name, the item ids and texts, and the extra views' values.
    `device` is where MiniLM runs (`genrec.device`); it is not part of the hash, so
    vectors encoded on a GPU are reused on a CPU. `model`: the sentence-transformers
    encoder of the text view (`genrec.features.text.text_model_path`), part of the hash.
    """
    views = tuple(views)
    if not views:
        raise ValueError("views must name at least one view; expected a subset of " + str(VIEWS))
    unknown = [v for v in views if v not in VIEWS]
    if unknown:
        raise ValueError(f"views contains unknown view {unknown[0]!r}; expected a subset of {VIEWS}")
    if len(set(views)) != len(views):
        raise ValueError(f"views repeats a view: {views}")
    items = dataset.items
    item_ids = items["item_id"].to_numpy(dtype=np.int64)
    texts = item_text(items)
    extra = {view: _precomputed_view(items, view) for view in views if view != "text"}
    key = _cache_key(views, item_ids, texts, extra, model)
    cache_file = Path(cache_dir) / f"item_vectors-{key}.npz"
    if cache_file.exists():
        return _load(cache_file)

    parts = []
    for view in views:
        if view == "text":
            parts.append(encode_texts(texts, batch_size=batch_size, progress=progress, device=device, model=model))
        else:
            parts.append(extra[view])
    vectors = combine_views(parts)
    result = ItemVectors(item_ids, vectors, views, tuple(p.shape[1] for p in parts))
    _save(cache_file, result)
    return result


def combine_views(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate per-view matrices `[n, d_v]` into one unit-norm `[n, sum d_v]`.

    Each view is L2-normalised and weighted 1/sqrt(V); rows whose views are partly
    missing (all-zero) are re-normalised to unit norm over the views they have.
    """
    if not parts:
        raise ValueError("parts must hold at least one view matrix")
    n = len(parts[0])
    weight = 1.0 / np.sqrt(len(parts))
    scaled = []
    for index, part in enumerate(parts):
        part = np.asarray(part, dtype=np.float32)
        if part.ndim != 2 or len(part) != n:
            raise ValueError(f"parts[{index}] must be [n={n}, d], got shape {part.shape}")
        norms = np.linalg.norm(part, axis=1, keepdims=True)
        scaled.append(np.divide(part, norms, out=np.zeros_like(part), where=norms > 0) * weight)
    vectors = np.concatenate(scaled, axis=1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0).astype(np.float32)


def _precomputed_view(items: pd.DataFrame, view: str) -> np.ndarray:
    column = f"{view}_vector"
    if column not in items.columns:
        raise ValueError(f"items.{column} is missing; view {view!r} needs a precomputed vector per item")
    values = items[column].tolist()
    dims = {len(v) for v in values if v is not None}
    if not dims:
        raise ValueError(f"items.{column} is null for every item; expected vectors for at least one item")
    if len(dims) > 1:
        raise ValueError(f"items.{column} has vectors of lengths {sorted(dims)}; expected one length for every item")
    dim = dims.pop()
    matrix = np.zeros((len(values), dim), dtype=np.float32)
    for row, value in enumerate(values):
        if value is not None:
            matrix[row] = np.asarray(value, dtype=np.float32)
    if not np.isfinite(matrix).all():
        raise ValueError(f"items.{column} holds NaN or infinite values; expected finite numbers")
    return matrix


def _cache_key(views: tuple[str, ...], item_ids: np.ndarray, texts: list[str], extra: dict[str, np.ndarray],
               model: str = TEXT_MODEL_NAME) -> str:
    digest = hashlib.sha256()
    digest.update(repr(views).encode())
    if "text" in views:
        digest.update(model.encode())
        for text in texts:
            digest.update(text.encode("utf-8"))
            digest.update(b"\x00")
    digest.update(item_ids.tobytes())
    for view in sorted(extra):
        digest.update(view.encode())
        digest.update(np.ascontiguousarray(extra[view]).tobytes())
    return digest.hexdigest()[:16]


def _save(path: Path, vectors: ItemVectors) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(
                handle,
                item_ids=vectors.item_ids,
                vectors=vectors.vectors,
                views=np.asarray(vectors.views),
                view_dims=np.asarray(vectors.view_dims, dtype=np.int64),
            )


def _load(path: Path) -> ItemVectors:
    with np.load(path) as data:
        return ItemVectors(
            data["item_ids"],
            data["vectors"],
            tuple(str(v) for v in data["views"]),
            tuple(int(d) for d in data["view_dims"]),
        )
