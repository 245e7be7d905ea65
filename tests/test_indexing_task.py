"""The indexing task's examples: an item's text → its SID, and short pseudo-queries of that text."""

import re

import numpy as np
import pytest

from genrec.model.inputs import item_query_text
from genrec.train.generative import NO_USER, indexing_requests, pseudo_query


def test_copies_repeat_the_text_unless_pseudo_queries_are_asked_for(small_world):
    items = small_world.dataset.items
    texts = item_query_text(items)
    requests, targets = indexing_requests(items, copies=3)
    assert [r.query for r in requests] == texts * 3 and np.array_equal(targets, np.tile(items["item_id"], 3))
    assert all(r.user_id == NO_USER and r.is_search for r in requests)
    pseudo, pseudo_targets = indexing_requests(items, copies=3, pseudo_queries=True, seed=5)
    n = len(texts)
    assert [r.query for r in pseudo[:n]] == texts  # the first copy stays the whole text
    for text, query in zip(texts * 2, [r.query for r in pseudo[n:]]):
        words = query.split()
        assert 1 <= len(words) <= 4 and len(set(words)) == len(words)
        assert set(words) <= set(re.findall(r"[\w'&]+", text.lower()))
    assert np.array_equal(pseudo_targets, targets)
    again, _ = indexing_requests(items, copies=3, pseudo_queries=True, seed=5)
    other, _ = indexing_requests(items, copies=3, pseudo_queries=True, seed=6)
    assert [r.query for r in again] == [r.query for r in pseudo]
    assert [r.query for r in other] != [r.query for r in pseudo]


def test_a_pseudo_query_keeps_the_texts_word_order():
    rng = np.random.default_rng(0)
    text = "Acme Trail Shoe - Blue, Size 42 Acme trail shoe blue"
    order = {w: i for i, w in reversed(list(enumerate(re.findall(r"[\w'&]+", text.lower()))))}
    for _ in range(50):
        positions = [order[w] for w in pseudo_query(text, rng).split()]
        assert positions == sorted(positions)
    assert pseudo_query("", rng) == ""
    with pytest.raises(ValueError, match="index_copies"):
        indexing_requests(small_items(), copies=-1)


def small_items():
    import pandas as pd

    return pd.DataFrame({"item_id": [1], "title": ["x"], "category": [["a"]], "brand": [None], "attributes": [{}]})
