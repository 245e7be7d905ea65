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


def test_prepare_training_adds_one_recommendation_example_per_search_interaction(small_world, tmp_path):
    from dataclasses import replace

    from genrec.data.splits import leave_one_out
    from genrec.model.transformer import GenerativeConfig
    from genrec.sid.table import SidTable
    from genrec.train.generative import GenerativeTrainConfig, prepare_training, training_requests

    dataset = small_world.dataset
    ids = dataset.items["item_id"].to_numpy()
    index = np.arange(len(ids))
    sids = SidTable(ids, np.stack([index // 64, (index // 8) % 8, index % 8], axis=1), [10, 8, 8])
    split = leave_one_out(dataset.events)
    base = GenerativeTrainConfig(model=GenerativeConfig(d_model=32, n_heads=2, d_ff=64), query_vectors=False,
                                 index_copies=0)
    plain = prepare_training(tmp_path, base, dataset, split, sids, progress=False)
    twinned = prepare_training(tmp_path, replace(base, search_as_recommendation=True), dataset, split, sids,
                               progress=False)
    requests, _ = training_requests(split, base.max_history)
    n_search = sum(1 for r in requests if r.query)
    assert n_search > 0
    assert twinned.n_interaction_examples == plain.n_interaction_examples + n_search
    assert len(twinned.examples) == len(plain.examples) + n_search
    # the twins are recommendation rows: no query token at all
    twins = twinned.examples.batch.query[len(plain.examples):]
    assert int((twins != 0).sum()) == 0
