"""RoleGen's replay of a slate on the trigger world, and its retriever over a generative backbone."""

import numpy as np
import pandas as pd
import pytest
from tiny_generative import tiny_generative

from genrec.data.funnel import cart_logit, click_logit, order_logit, position_bias, sigmoid
from genrec.data.synth import World, WorldConfig, generate_world
from genrec.data.triggers import conversion_scales
from genrec.model.retriever import GenerativeRetriever
from genrec.retrieval import Request
from genrec.rolegen import ItemRoles
from genrec.rolegen.replay import awake_before, replay_slates
from genrec.rolegen.retriever import RoleGenRetriever


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(WorldConfig(n_items=2_000, n_users=600, n_events=20_000, seed=3, trigger_awakening=1.0,
                                      dormant_share=0.5))


def a_trigger_and_a_plain_item_of_one_leaf(truth) -> tuple[int, int]:
    for leaf in range(truth.leaf_pref.shape[1]):
        members = np.flatnonzero(truth.item_leaf == leaf)
        triggers, plain = members[truth.item_is_trigger[members]], members[~truth.item_is_trigger[members]]
        if len(triggers) and len(plain):
            return int(triggers[0]) + 1, int(plain[0]) + 1
    raise AssertionError("no leaf with both kinds")


def test_a_trigger_shown_first_sells_the_item_after_it(world):
    truth = world.truth
    user = int(np.flatnonzero(truth.is_dormant)[0]) + 1
    trigger, plain = a_trigger_and_a_plain_item_of_one_leaf(truth)
    asleep = np.zeros((1, truth.leaf_pref.shape[1]), dtype=bool)
    first = replay_slates(truth, np.array([user]), np.array([[trigger, plain]]), asleep, 1.0)
    alone = replay_slates(truth, np.array([user]), np.array([[-1, plain]]), asleep, 1.0)
    assert first.orders[0] > alone.orders[0]  # the trigger's click lifts the plain item's sale
    assert first.awake_share[0] > 0 and alone.awake_share[0] == 0
    active = int(np.flatnonzero(~truth.is_dormant)[0]) + 1
    assert replay_slates(truth, np.array([active]), np.array([[trigger, plain]]), asleep, 1.0).awake_share[0] == 1


def test_the_exact_replay_matches_sampling_the_funnel(world):
    truth = world.truth
    rng = np.random.default_rng(0)
    user = int(np.flatnonzero(truth.is_dormant)[1])
    trigger, plain = a_trigger_and_a_plain_item_of_one_leaf(truth)
    slate = np.array([trigger, plain, plain + 1 if plain + 1 <= truth.n_items else plain - 1]) - 1
    draws = 200_000
    awake = np.zeros(draws, dtype=bool)
    orders = np.zeros(draws)
    for slot, item in enumerate(slate):
        taste = truth.taste(np.array([user]), np.array([item]))
        clicked = rng.random(draws) < position_bias(np.array(slot)) * sigmoid(click_logit(truth, np.array([user]),
                                                                                          np.array([item]), taste, False))
        lit = awake & (truth.item_leaf[item] == truth.item_leaf[slate[0]])
        cart_scale, order_scale = conversion_scales(np.ones(draws, dtype=bool), lit, 1.0)
        bought = clicked & (rng.random(draws) < sigmoid(cart_logit(taste, False)) * cart_scale) \
            & (rng.random(draws) < sigmoid(order_logit(taste)) * order_scale)
        orders += bought
        awake |= clicked & truth.item_is_trigger[item]
    exact = replay_slates(truth, np.array([user + 1]), (slate + 1)[None], np.zeros((1, truth.leaf_pref.shape[1]), bool), 1.0)
    assert exact.orders[0] == pytest.approx(orders.mean(), rel=0.05, abs=2e-4)


def test_awake_before_counts_only_earlier_trigger_clicks(world):
    events, truth = world.dataset.events, world.truth
    clicks = events[(events["action"] == "click") & truth.item_is_trigger[events["item_id"].to_numpy() - 1]]
    clicks = clicks.assign(leaf=truth.item_leaf[clicks["item_id"].to_numpy() - 1])
    first = clicks.sort_values("ts").drop_duplicates(["user_id", "leaf"]).iloc[0]  # a user's first in its leaf
    user, leaf, ts = np.array([first["user_id"]]), int(first["leaf"]), np.array([first["ts"]])
    assert not awake_before(truth, events, user, ts)[0, leaf]  # at the click itself: not yet
    assert awake_before(truth, events, user, ts + 1)[0, leaf]
    other_leaves = np.delete(awake_before(truth, events, user, ts + 1)[0], leaf)
    earlier = clicks[(clicks["user_id"] == first["user_id"]) & (clicks["ts"] <= first["ts"])]
    assert other_leaves.sum() == earlier["leaf"].nunique() - 1


# --- the retriever ------------------------------------------------------------------------------


def roles_for(small_world, hesitant: list[int], strong: dict[int, float]) -> ItemRoles:
    ids = small_world.dataset.items["item_id"].to_numpy()
    uplift = np.array([strong.get(int(i), 0.0) for i in ids])
    return ItemRoles(ids, uplift, np.zeros(len(ids), dtype=np.int64), np.array(hesitant))


def test_a_hesitant_users_feed_gets_its_leafs_strongest_trigger_first(small_world):
    model, encoder, trie = tiny_generative(small_world, seed=0, decoder_scale=3.0)
    backbone = GenerativeRetriever(model, encoder, trie, beams=16)
    items = small_world.dataset.items
    requests = [Request(user_id=1, history=(3, 4)), Request(user_id=2, history=(5,)),
                Request(user_id=1, query=str(items["title"].iloc[0]), history=(3, 4))]
    plain = backbone.retrieve(requests, 5)
    leaf = pd.Series([p[-1] for p in items["category"]], index=items["item_id"])
    first_leaf = leaf[int(plain[0].item_ids[0])]
    proposed = set(backbone.retrieve(requests[:1], 16)[0].item_ids.tolist())
    outside = [int(i) for i in items["item_id"] if leaf[i] == first_leaf and int(i) not in proposed]
    assert outside, "the test needs an item of the first leaf the backbone did not propose"
    roles = roles_for(small_world, hesitant=[1], strong={outside[0]: 5.0})
    rolegen = RoleGenRetriever(backbone, roles, items, weight=100.0, per_leaf=1)
    answers = rolegen.retrieve(requests, 5)
    assert int(answers[0].item_ids[0]) == outside[0]  # reasoned in, scored by the backbone, put first
    assert answers[1].item_ids.tolist() == plain[1].item_ids.tolist()  # user 2 converts: the backbone's answer
    assert answers[2].item_ids.tolist() == plain[2].item_ids.tolist()  # a search: the backbone's answer
    assert (np.diff(answers[0].scores) <= 1e-6).all()


def test_a_negative_weight_is_refused(small_world):
    model, encoder, trie = tiny_generative(small_world, seed=0)
    with pytest.raises(ValueError, match="weight"):
        RoleGenRetriever(GenerativeRetriever(model, encoder, trie), roles_for(small_world, [1], {}),
                         small_world.dataset.items, weight=-1.0)


def test_rolegen_is_built_by_name_from_a_run_with_a_generative_model(small_sid_run, small_world, monkeypatch):
    from genrec.data.splits import leave_one_out
    from genrec.registry import build_retriever

    model, encoder, trie = tiny_generative(small_world, seed=0)
    backbone = GenerativeRetriever(model, encoder, trie, beams=8)
    monkeypatch.setattr(GenerativeRetriever, "from_run", classmethod(lambda cls, run: backbone))
    split = leave_one_out(small_world.dataset.events)
    rolegen = build_retriever("rolegen", small_sid_run, small_world.dataset, split)
    assert isinstance(rolegen, RoleGenRetriever) and rolegen.backbone is backbone
    assert rolegen.hesitant  # the small world has users who browse without buying
    assert len(rolegen.retrieve([Request(user_id=1, history=(3,))], 5)[0]) == 5


def test_on_a_world_without_triggers_the_replay_is_the_plain_funnel(small_world):
    truth = small_world.truth
    assert len(truth.item_is_trigger) == 0
    users = np.array([1, 2, 3])
    items = np.array([[5], [6], [7]])
    outcome = replay_slates(truth, users, items, np.zeros((3, truth.leaf_pref.shape[1]), dtype=bool), 0.0)
    u, i = users - 1, items[:, 0] - 1
    taste = truth.taste(u, i)
    cart, order = conversion_scales(truth.is_dormant[u], None, 0.0)
    expected = sigmoid(click_logit(truth, u, i, taste, False)) * sigmoid(cart_logit(taste, False)) \
        * sigmoid(order_logit(taste)) * cart * order
    np.testing.assert_allclose(outcome.orders, expected)


def test_intent_is_a_distribution_over_the_catalogue_and_showing_it_sells(world):
    from genrec.rolegen.replay import intent_probabilities, leaf_intent

    truth = world.truth
    users = np.array([1, 2])
    everything = np.tile(np.arange(1, truth.n_items + 1), (2, 1))
    last = np.array([0, 17])
    intent = intent_probabilities(truth, users, last, everything, leaf_intent(truth, users, last, rows_per_chunk=1))
    np.testing.assert_allclose(intent.sum(1), 1.0, rtol=1e-6)  # leaf preferences are float32
    stay = truth.item_leaf == truth.item_leaf[16]
    assert intent[1, stay].sum() >= float(truth.continue_prob)  # the last leaf again, at least as often as it stays
    likely = np.argsort(-intent[:, :], 1)[:, :3] + 1
    asleep = np.zeros((2, truth.leaf_pref.shape[1]), dtype=bool)
    with_intent = replay_slates(truth, users, likely, asleep, 1.0, intent_probabilities(truth, users, last, likely))
    without = replay_slates(truth, users, likely, asleep, 1.0)
    assert (with_intent.orders > without.orders).all()
    with pytest.raises(ValueError, match="intent"):
        replay_slates(truth, users, likely, asleep, 1.0, np.zeros((2, 2)))


def test_a_cold_start_user_clicks_only_what_they_came_for(world):
    truth = world.truth
    cold = int(np.flatnonzero(truth.is_cold)[0]) + 1
    slate = np.array([[5, 6, 7]])
    asleep = np.zeros((1, truth.leaf_pref.shape[1]), dtype=bool)
    assert replay_slates(truth, np.array([cold]), slate, asleep, 1.0).clicks[0] == 0.0
    intent = np.array([[0.2, 0.0, 0.1]])
    outcome = replay_slates(truth, np.array([cold]), slate, asleep, 1.0, intent)
    assert outcome.clicks[0] == pytest.approx(0.3)  # wherever the slot, no position bias
