"""Item vectors: item text → MiniLM sentence vectors (+ precomputed views), cached per run.

`encode_texts` is the one text encoder of the project: queries for dense
retrieval and item texts for Semantic IDs go through it, so they share a space.
"""

from genrec.features.item_vectors import VIEWS, ItemVectors, combine_views, encode_items
from genrec.features.text import TEXT_DIM, TEXT_MODEL_NAME, encode_texts, item_text, load_text_encoder

__all__ = [
    "TEXT_DIM",
    "TEXT_MODEL_NAME",
    "VIEWS",
    "ItemVectors",
    "combine_views",
    "encode_items",
    "encode_texts",
    "item_text",
    "load_text_encoder",
]
