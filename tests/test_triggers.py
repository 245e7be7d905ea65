"""Trigger items that awaken dormant users (`genrec.data.triggers`), and the world built with them."""

import zipfile

import numpy as np
import pandas as pd
import pytest

from genrec.data.synth import World, WorldConfig, generate_world
from genrec.data.triggers import DORMANT_CART, DORMANT_ORDER, awakened, conversion_scales
from genrec.data.truth import TRUTH_FILE
from genrec.rolegen.roles import CONVERSIONS, converts_later


def test_an_event_is_awake_only_after_its_users_first_trigger_click_in_its_leaf():
    user = np.array([1, 1, 1, 1, 1, 2])
    leaf = np.array([0, 0, 0, 1, 0, 0])
    time = np.array([1, 5, 9, 9, 5, 9])
    trigger_click = np.array([False, True, False, False, True, False])  # user 1 clicks triggers in leaf 0 at 5 (twice)
    assert awakened(user, leaf, time, trigger_click).tolist() == [False, False, True, False, False, False]
    assert not awakened(user, leaf, time, np.zeros(6, dtype=bool)).any()


def test_awakening_zero_keeps_the_dormant_scales_and_one_makes_an_awake_dormant_user_active():
    dormant, awake = np.array([True, True, False]), np.array([True, False, True])
    assert [s.tolist() for s in conversion_scales(dormant, None, 0.0)] == [[DORMANT_CART, DORMANT_CART, 1.0],
                                                                         [DORMANT_ORDER, DORMANT_ORDER, 1.0]]
    cart, order = conversion_scales(dormant, awake, 1.0)
    assert cart.tolist() == [1.0, DORMANT_CART, 1.0] and order.tolist() == [1.0, DORMANT_ORDER, 1.0]
    with pytest.raises(ValueError, match="trigger_awakening"):
        WorldConfig(trigger_awakening=1.5)


@pytest.fixture(scope="module")
def trigger_world() -> World:
    return generate_world(WorldConfig(n_items=2_000, n_users=3_000, n_events=120_000, seed=2, trigger_awakening=1.0,
                                      dormant_share=0.3))


def test_dormant_users_convert_in_a_leaf_after_clicking_one_of_its_triggers(trigger_world):
    events, truth, items = trigger_world.dataset.events, trigger_world.truth, trigger_world.dataset.items
    assert 0.05 < truth.item_is_trigger.mean() < 0.3
    leaf = pd.Series([path[-1] for path in items["category"]], index=items["item_id"])
    dormant = events[events["user_id"].isin(np.flatnonzero(truth.is_dormant) + 1)
                     & events["action"].isin(("click",) + CONVERSIONS)]
    dormant = dormant.assign(leaf=leaf.reindex(dormant["item_id"]).to_numpy())
    clicks = dormant[dormant["action"] == "click"]
    later = converts_later(clicks, dormant[dormant["action"].isin(CONVERSIONS)])
    on_trigger = truth.item_is_trigger[clicks["item_id"].to_numpy() - 1]
    assert later[on_trigger].mean() > 2 * later[~on_trigger].mean()


def test_the_trigger_flag_is_saved_only_by_worlds_that_have_it(trigger_world, tmp_path):
    trigger_world.save(tmp_path / "on")
    assert np.array_equal(World.load(tmp_path / "on").truth.item_is_trigger, trigger_world.truth.item_is_trigger)
    plain = generate_world(WorldConfig(n_items=2_000, n_users=500, n_events=10_000, seed=2))
    plain.save(tmp_path / "off")
    with zipfile.ZipFile(tmp_path / "off" / TRUTH_FILE) as archive:
        assert "item_is_trigger.npy" not in archive.namelist()
    assert len(World.load(tmp_path / "off").truth.item_is_trigger) == 0
