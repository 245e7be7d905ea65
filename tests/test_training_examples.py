"""What the generative model is trained on: recommendation twins of search interactions."""

import numpy as np

from genrec.retrieval import Request
from genrec.train.generative import search_as_recommendation


def test_every_search_request_gets_a_recommendation_twin_with_the_same_history_and_target():
    requests = [
        Request(user_id=1, query="red shoes", scenario="search", ts=10, history=(4, 5), history_actions=("click", "cart")),
        Request(user_id=2, scenario="home_feed", ts=11, history=(6,), history_actions=("click",)),
        Request(user_id=3, query="tea", scenario="search", ts=12, history=(), history_actions=()),
        Request(user_id=4, scenario="home_feed", ts=13, history=(7,), history_actions=("order",)),
    ]
    targets = np.array([40, 41, 42, 43])
    twins, twin_targets = search_as_recommendation(requests, targets, seed=0)
    assert twin_targets.tolist() == [40, 42]
    assert [t.user_id for t in twins] == [1, 3]
    assert all(t.query is None and not t.is_search for t in twins)
    assert [t.history for t in twins] == [(4, 5), ()]
    assert [t.ts for t in twins] == [10, 12]
    assert {t.scenario for t in twins} == {"home_feed"}  # the only recommendation scenario in the data


def test_twin_scenarios_follow_the_recommendation_mix_and_nothing_is_made_without_search():
    recs = [Request(user_id=i, scenario="home_feed" if i % 4 else "item_detail") for i in range(400)]
    searches = [Request(user_id=1000 + i, query="q", scenario="search") for i in range(2000)]
    twins, _ = search_as_recommendation(recs + searches, np.arange(2400), seed=1)
    share = np.mean([t.scenario == "item_detail" for t in twins])
    assert abs(share - 0.25) < 0.04
    assert search_as_recommendation(recs, np.arange(400))[0] == []
