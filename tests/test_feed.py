"""The immersive feed: its hidden slot model, exact replay, the learned slot model and STCRank's policies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genrec.data.synth import WorldConfig, generate_world
from genrec.feed.candidates import feed_candidates
from genrec.feed.predict import FeedFeatures, SlotOutcomeModel
from genrec.feed.stcrank import SlotPredictions, greedy_slots, moc_slots, msc_slots, oracle_predictions
from genrec.feed.truth import FeedConfig, FeedTruth, SlotProbabilities, expected_session


@pytest.fixture(scope="module")
def world():
    return generate_world(WorldConfig(n_items=600, n_users=300, n_events=9_000, seed=5))


@pytest.fixture(scope="module")
def features(world):
    return FeedFeatures(world.dataset.events, world.truth.item_leaf, world.truth.item_brand, world.truth.n_users)


def predictions(order, reach, leaf, reach_same=None) -> SlotPredictions:
    order = np.asarray(order, dtype=float)
    reach = np.asarray(reach, dtype=float)
    same = reach if reach_same is None else np.asarray(reach_same, dtype=float)
    return SlotPredictions(np.stack([order, order], 1), np.full((len(order), 2), 0.5), np.stack([reach, same], 1),
                           np.asarray(leaf))


def value_of(p: SlotPredictions, slots: np.ndarray) -> float:
    """Expected orders of showing `slots` under the predictions themselves."""
    same = np.zeros(len(slots), dtype=int)
    same[1:] = p.leaf[slots[1:]] == p.leaf[slots[:-1]]
    return float(expected_session(SlotProbabilities(p.order[slots, same], p.view[slots, same], p.reach[slots, same],
                                                    p.reach[slots, same])).orders)


def test_look_ahead_keeps_the_greedy_order_when_no_slot_changes_the_next():
    rng = np.random.default_rng(0)
    p = predictions(rng.random(12) * 0.3, np.full(12, 0.8), np.arange(12))
    greedy = greedy_slots(p, 8)
    assert np.array_equal(moc_slots(p, 8, value=1.0), greedy)
    assert np.array_equal(msc_slots(p, 8, value=1.0, shortlist=12), greedy)


def test_look_ahead_steps_around_an_item_that_ends_the_session():
    # item 0 sells best but nobody scrolls past it; item 1 sells a little less and keeps the session going
    p = predictions([0.30, 0.25, 0.20, 0.10], [0.0, 1.0, 1.0, 1.0], [0, 1, 2, 3])
    greedy = greedy_slots(p, 4)
    look_ahead = msc_slots(p, 4, value=0.0, shortlist=4)
    assert greedy[0] == 0
    assert look_ahead[0] != 0 and 0 in look_ahead
    assert value_of(p, look_ahead) > value_of(p, greedy)


def test_look_ahead_breaks_a_run_of_one_leaf_only_when_fatigue_makes_it_pay():
    order = [0.30, 0.29, 0.05, 0.04]
    leaf = [0, 0, 1, 2]
    tired = predictions(order, [0.9] * 4, leaf, reach_same=[0.1] * 4)
    fresh = predictions(order, [0.9] * 4, leaf)
    assert list(msc_slots(fresh, 2, value=0.0)) == [0, 1]
    assert list(msc_slots(tired, 3, value=0.5))[:2] != [0, 1]
    assert value_of(tired, msc_slots(tired, 3, value=0.5)) > value_of(tired, greedy_slots(tired, 3))


def test_expected_session_is_the_mean_of_sampled_sessions(world):
    truth = FeedTruth(world.truth, FeedConfig(seed=1))
    rng = np.random.default_rng(2)
    users = np.repeat(np.arange(20), 400)
    slate = np.stack([rng.choice(world.truth.n_items, 10, replace=False) for _ in range(20)])
    slates = slate[np.repeat(np.arange(20), 400)]
    logged = truth.log_sessions(users, slates, rng)
    sampled_orders = logged.ordered.sum() / len(users)
    sampled_depth = len(logged) / len(users)
    exact = truth.session_value(np.arange(20), slate)
    assert sampled_orders == pytest.approx(exact.orders.mean(), rel=0.05)
    assert sampled_depth == pytest.approx(exact.depth.mean(), rel=0.03)


def test_control_feed_reach_does_not_depend_on_what_was_shown(world):
    truth = FeedTruth(world.truth, FeedConfig().control())
    slates = np.random.default_rng(0).choice(world.truth.n_items, (5, 8))
    reach = truth.slot_probabilities(np.arange(5), slates).reach_next
    assert np.allclose(reach, reach.flat[0])
    trapped = FeedTruth(world.truth, FeedConfig()).slot_probabilities(np.arange(5), slates).reach_next
    assert trapped.std() > 0.01


def test_traits_leave_the_world_untouched(world):
    before = world.truth.utility(np.arange(3)[:, None], np.arange(5)[None, :]).copy()
    a, b = FeedTruth(world.truth, FeedConfig(seed=0)), FeedTruth(world.truth, FeedConfig(seed=0))
    assert np.array_equal(a.hook, b.hook) and np.array_equal(a.push, b.push)
    assert np.array_equal(world.truth.utility(np.arange(3)[:, None], np.arange(5)[None, :]), before)
    assert np.corrcoef(a.hook, a.push)[0, 1] < -0.2  # the conflict: what sells is often not what keeps users


def test_slot_model_learns_that_push_sells_and_ends_visits(world, features):
    truth = FeedTruth(world.truth, FeedConfig(seed=0, swipe_push=2.0))
    rng = np.random.default_rng(3)
    users = np.repeat(np.flatnonzero(features.history_length > 0), 12)
    slates = np.stack([rng.permutation(feed_candidates(features, int(u), 20, rng))[:10] for u in users])
    model = SlotOutcomeModel(features).fit(truth.log_sessions(users, slates, rng))
    items = np.arange(world.truth.n_items)
    predicted = model.predict(np.full(len(items), users[0]), items, np.zeros(len(items), dtype=bool))
    ranks = pd.DataFrame({"push": truth.push, "order": predicted[:, 0], "swipe": predicted[:, 2]}).rank()
    assert ranks["push"].corr(ranks["order"]) > 0.3
    assert ranks["push"].corr(ranks["swipe"]) < -0.3
    same_leaf = model.predict(np.full(len(items), users[0]), items, np.ones(len(items), dtype=bool))
    assert (predicted[:, 2] - same_leaf[:, 2]).mean() > 0.1  # fatigue learned from the log


def test_oracle_look_ahead_sells_more_than_greedy_in_a_feed_with_traps(world, features):
    truth = FeedTruth(world.truth, FeedConfig(seed=0))
    rng = np.random.default_rng(4)
    users = np.flatnonzero(features.history_length >= 3)[:40]
    gains = []
    for user in users:
        candidates = feed_candidates(features, int(user), 30, rng)
        p = oracle_predictions(truth, int(user), candidates)
        slates = np.stack([candidates[greedy_slots(p, 10)], candidates[msc_slots(p, 10, value=1.0)]])
        gains.append(np.diff(truth.session_value([user, user], slates).orders)[0])
    assert np.mean(gains) > 0.02 and np.mean(np.array(gains) > 0) > 0.6


def test_feed_candidates_are_distinct_items_of_the_catalogue(features):
    rng = np.random.default_rng(0)
    user = int(np.argmax(features.history_length))
    pool = feed_candidates(features, user, 40, rng)
    assert len(pool) == len(np.unique(pool)) == 40
    assert pool.min() >= 0 and pool.max() < len(features.item_leaf)
    history_leaves = np.flatnonzero(features.leaf_count[user] > 0)
    assert np.isin(features.item_leaf[pool], history_leaves).mean() >= 0.5


@pytest.mark.parametrize("bad, match", [
    (lambda w: FeedConfig(exit_after_order=1.5), "exit_after_order"),
    (lambda w: FeedConfig(fatigue=-1), "fatigue"),
    (lambda w: FeedTruth(w.truth).slot_probabilities([0], np.arange(4)), "slates must be"),
    (lambda w: FeedTruth(w.truth).slot_probabilities([0, 1], np.zeros((3, 4), dtype=int)), "one user per session"),
    (lambda w: greedy_slots(predictions([0.1], [0.5], [0]), 0), "n_slots"),
    (lambda w: msc_slots(predictions([0.1], [0.5], [0]), 2, value=-1), "value"),
    (lambda w: SlotPredictions(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((3, 2)), np.zeros(2)), "reach"),
    (lambda w: FeedFeatures(pd.DataFrame({"user_id": [1]}), np.zeros(3, int), np.zeros(3, int), 1), "item_id"),
])
def test_bad_input_is_refused_with_a_message_naming_it(world, bad, match):
    with pytest.raises(ValueError, match=match):
        bad(world)
