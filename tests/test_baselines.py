"""Each baseline does what its docstring claims, on a tiny hand-made shop."""

import numpy as np
import pandas as pd
import pytest

from genrec.baselines.bm25 import BM25Retriever
from genrec.baselines.dense import DenseRetriever, HNSWDenseRetriever
from genrec.baselines.itemcf import ItemCFRetriever
from genrec.baselines.popularity import CategoryPopularityRetriever, PopularityRetriever, item_popularity
from genrec.data.dataset import Dataset
from genrec.data.splits import leave_one_out
from genrec.retrieval import Request

ITEMS = [  # item_id, title, category path
    (1, "red trail running shoe", ["Sports", "Shoes"]),
    (2, "blue wool winter hat", ["Fashion", "Hats"]),
    (3, "green ceramic tea cup", ["Home", "Kitchen"]),
    (4, "stainless steel kettle", ["Home", "Kitchen"]),
    (5, "leather hiking boot", ["Sports", "Shoes"]),
    (6, "cotton baseball cap", ["Fashion", "Hats"]),
]


def _shop(clicks):
    """A Dataset whose events are one click per (user, item) in the given order, one visit each."""
    items = pd.DataFrame({
        "item_id": [i for i, _, _ in ITEMS], "title": [t for _, t, _ in ITEMS], "category": [c for _, _, c in ITEMS],
        "attributes": [{} for _ in ITEMS], "brand": [None] * len(ITEMS), "price": [10.0] * len(ITEMS), "origin": ["human"] * len(ITEMS),
    })
    rows = [(u, ts, ts, "home_feed", None, i, "click", 0) for ts, (u, i) in enumerate(clicks)]
    events = pd.DataFrame(rows, columns=["user_id", "ts", "session_id", "scenario", "query", "item_id", "action", "position"])
    events["position"] = events["position"].astype(np.int32)
    users = pd.DataFrame({"user_id": sorted({u for u, _ in clicks})})
    dataset = Dataset(items, users, events)
    dataset.validate()
    return dataset


# Item 4 is clicked by 3 users, item 3 by 2, others once; users 1-3 click 3 right after 4.
CLICKS = [(1, 4), (1, 3), (2, 4), (2, 3), (3, 4), (3, 6), (4, 1), (4, 5), (5, 2), (5, 2)]


def test_popularity_ranks_items_by_training_interaction_count():
    dataset = _shop(CLICKS)
    popularity = item_popularity(dataset.events, 7)
    assert popularity.tolist() == [0, 1, 2, 2, 3, 1, 1]  # user 5's two clicks on item 2 are two visits
    answer = PopularityRetriever(popularity).retrieve([Request(user_id=9)], k=3)[0]
    assert answer.item_ids[0] == 4 and set(answer.item_ids[1:]) == {2, 3}
    assert 0 not in PopularityRetriever(popularity).retrieve([Request(user_id=9)], k=10)[0].item_ids


def test_category_popularity_stays_within_the_requested_category():
    dataset = _shop(CLICKS)
    retriever = CategoryPopularityRetriever.from_run(None, dataset, leave_one_out(dataset.events))
    search = retriever.retrieve([Request(user_id=9, query="kitchen things")], k=2)[0]
    assert set(search.item_ids) == {3, 4}
    recommend = retriever.retrieve([Request(user_id=9, history=(6, 2, 1))], k=3)[0]
    assert set(recommend.item_ids[:2]) == {2, 6}, "two history items are hats: hats come first"
    assert recommend.item_ids[2] in (1, 5)


def test_bm25_finds_the_item_whose_title_matches():
    dataset = _shop(CLICKS)
    retriever = BM25Retriever().fit(dataset, item_popularity(dataset.events, 7))
    answers = retriever.retrieve([Request(user_id=1, query="wool hat"), Request(user_id=1, query="kettle")], k=3)
    assert answers[0].item_ids[0] == 2
    assert answers[1].item_ids[0] == 4
    assert len(answers[1]) == 3, "unmatched items fill the list by popularity"
    cold = retriever.retrieve([Request(user_id=1)], k=1)[0]
    assert cold.item_ids[0] == 4, "no query and no history: the popularity list"


def test_dense_and_hnsw_return_the_nearest_item_vector():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(6, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(1, 7)
    for cls in (DenseRetriever, HNSWDenseRetriever):
        retriever = cls(recency_decay=0.5).fit(ids, vectors, np.ones(7))
        answer = retriever.retrieve([Request(user_id=1, history=(3,))], k=6)[0]
        assert answer.item_ids[0] == 3
        expected = ids[np.argsort(-(vectors @ vectors[2]))]
        assert answer.item_ids.tolist() == expected.tolist()


def test_dense_encodes_each_distinct_query_once_and_searches_with_it(monkeypatch):
    """The query path, with a bag-of-words stand-in for MiniLM (loading the real model costs ~10 s)."""
    import genrec.baselines.dense as dense

    vocabulary = sorted({w for _, title, _ in ITEMS for w in title.split()})

    def bag_of_words(texts, progress=True):
        calls.append(list(texts))
        vectors = np.array([[float(w in t.split()) for w in vocabulary] for t in texts]) + 1e-3
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)

    calls = []
    items = bag_of_words([title for _, title, _ in ITEMS])
    calls.clear()
    monkeypatch.setattr(dense, "encode_texts", bag_of_words)
    retriever = DenseRetriever().fit(np.arange(1, 7), items, np.ones(7))
    queries = ["steel kettle", "hiking boot", "steel kettle"]
    answers = retriever.retrieve([Request(user_id=1, query=q) for q in queries], k=2)
    assert [a.item_ids[0] for a in answers] == [4, 5, 4]
    assert calls == [["steel kettle", "hiking boot"]], "one batched encoder call, each distinct query once"
    retriever.retrieve([Request(user_id=2, query="hiking boot")], k=2)
    assert len(calls) == 1, "a repeated query is served from the cache"
    scores = retriever.score_query("steel kettle")
    answer = retriever.retrieve([Request(user_id=3, query="steel kettle")], k=6)[0]
    assert scores.shape == (7,) and scores[0] == -np.inf, "one slot per id; 0 is padding"
    assert np.allclose(scores[answer.item_ids], answer.scores, atol=1e-6), "the pair scores are the search's scores"


def test_itemcf_recommends_the_co_occurring_item():
    dataset = _shop(CLICKS)
    retriever = ItemCFRetriever().fit(dataset.events, 7)
    answer = retriever.retrieve([Request(user_id=9, history=(4,))], k=3)[0]
    assert answer.item_ids[0] == 3, "three users clicked 3 or 6 after 4; 3 twice"
    assert answer.item_ids[1] == 6
    assert 4 not in answer.item_ids[:2]
    assert retriever.retrieve([Request(user_id=9, history=(1,))], k=1)[0].item_ids[0] == 5
    cold = retriever.retrieve([Request(user_id=9)], k=3)[0]
    assert cold.item_ids[0] == 4 and set(cold.item_ids[1:]) == {2, 3}, "no history: the popularity list"


def test_itemcf_personalises_search_among_query_matches():
    dataset = _shop(CLICKS)
    bm25 = BM25Retriever().fit(dataset, item_popularity(dataset.events, 7))
    retriever = ItemCFRetriever().fit(dataset.events, 7, bm25=bm25)
    # "hat cap" matches items 2 and 6 equally well lexically (one word each);
    # history (4,) co-occurs with 6, so 6 wins for this user.
    plain = bm25.retrieve([Request(user_id=9, query="hat cap")], k=2)[0]
    assert set(plain.item_ids) == {2, 6}
    personal = retriever.retrieve([Request(user_id=9, query="hat cap", history=(4,))], k=2)[0]
    assert personal.item_ids[0] == 6
    assert set(personal.item_ids) == {2, 6}, "re-scoring never leaves the query's matches"


def test_bad_constructor_arguments_raise_naming_the_field():
    with pytest.raises(ValueError, match="recency_decay"):
        ItemCFRetriever(recency_decay=0)
    with pytest.raises(ValueError, match="popularity"):
        PopularityRetriever(np.ones((2, 2)))
