"""The query-vector cache: each distinct text is encoded once, memory stays bounded."""

import numpy as np
import pandas as pd
import pytest

from genrec.features.text_cache import TextVectorCache
from genrec.model.inputs import leaf_categories


class CountingEncoder:
    """A fake sentence encoder: the vector of a text is its length in every dimension."""

    def __init__(self):
        self.seen: list[str] = []

    def __call__(self, texts):
        self.seen.extend(texts)
        return np.array([[len(t)] * 3 for t in texts], dtype=np.float32)


def test_each_distinct_text_is_encoded_once_and_rows_follow_the_input_order():
    encoder = CountingEncoder()
    cache = TextVectorCache(encoder, dim=3)
    out = cache(["aa", "b", "aa"])
    np.testing.assert_array_equal(out[:, 0], [2, 1, 2])
    cache(["b", "cccc"])
    assert encoder.seen == ["aa", "b", "cccc"]


def test_primed_texts_are_never_encoded_and_wrong_shapes_are_refused():
    encoder = CountingEncoder()
    cache = TextVectorCache(encoder, dim=3)
    cache.prime(["shoe"], np.full((1, 3), 9.0))
    np.testing.assert_array_equal(cache(["shoe"]), [[9, 9, 9]])
    assert encoder.seen == []
    with pytest.raises(ValueError, match=r"\[1, 3\]"):
        cache.prime(["x"], np.zeros((1, 4)))
    with pytest.raises(ValueError, match="text encoder returned"):
        TextVectorCache(lambda texts: np.zeros((len(texts), 2)), dim=3)(["x"])


def test_the_least_recently_used_text_is_dropped_past_capacity():
    encoder = CountingEncoder()
    cache = TextVectorCache(encoder, dim=3, capacity=2)
    cache(["a", "b"])
    cache(["a"])        # "b" is now the least recently used
    cache(["c"])
    assert len(cache) == 2
    cache(["a", "b"])
    assert encoder.seen == ["a", "b", "c", "b"]


def test_leaf_categories_number_whole_paths_and_leave_uncategorised_items_at_zero():
    items = pd.DataFrame({"item_id": [3, 5, 7, 8],
                          "category": [["Home", "Oil"], ["Beauty", "Oil"], ["Home", "Oil"], []]})
    table, size = leaf_categories(items)
    assert size == 3 and len(table) == 9
    assert table[3] == table[7] != table[5]  # the same last name under another parent is another leaf
    assert table[8] == 0 and table[0] == 0 and {table[3], table[5]} == {1, 2}
