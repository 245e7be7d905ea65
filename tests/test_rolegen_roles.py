"""Item roles learned from trajectories (`genrec.rolegen.roles.ItemRoles`)."""

import numpy as np
import pandas as pd
import pytest

from genrec.rolegen import ItemRoles, RoleConfig

ITEMS = pd.DataFrame({
    "item_id": [1, 2, 3, 4, 5, 6, 7, 8, 9],
    "category": [["a", "shoes"]] * 4 + [["a", "bags"]] * 3 + [["a", "shoes"]] * 2,
    "brand": ["Trig", "Plain", "Plain", None, "Other", "Other", "Other", "Trig", None],
})


def hesitant_user(user: int, start: int, steps: list[tuple[int, str]]) -> list[dict]:
    return [{"user_id": user, "ts": start + i, "item_id": item, "action": action} for i, (item, action) in enumerate(steps)]


def log(extra: list[dict] = ()) -> pd.DataFrame:
    rows: list[dict] = []
    for user in range(1, 11):
        # Clicking 1 is followed by a cart of another shoe; clicking 2 comes last and leads nowhere;
        # the cart of item 3 right after clicking 3 is the clicked item's own, not a later one.
        rows += hesitant_user(user, 100 * user, [(1, "click"), (4, "click"), (4, "cart"), (3, "click"), (3, "cart"),
                                                 (2, "click"), (5, "click"), (6, "click"), (7, "click")])
    return pd.DataFrame(rows + list(extra))


def test_the_item_whose_click_precedes_a_conversion_of_its_kind_gets_the_top_uplift():
    roles = ItemRoles.learn(log(), ITEMS, RoleConfig(max_conversion=0.35, prior_clicks=1.0))
    uplift = dict(zip(roles.item_ids.tolist(), roles.uplift))
    assert roles.top_triggers(1).tolist() == [1]
    assert uplift[1] > 0 > uplift[2]
    assert uplift[3] < uplift[1]  # converting on the clicked item itself is not a later conversion
    assert roles.clicks[roles.item_ids == 1].item() == 10 and len(roles.hesitant_users) == 10


def test_users_who_convert_often_do_not_teach_roles():
    # Active users (every click carted) whose trajectories would make item 2 look like a trigger.
    active = []
    for user in range(50, 60):
        active += hesitant_user(user, 100 * user, [(2, "click"), (2, "cart"), (3, "click"), (3, "cart"),
                                                   (4, "click"), (4, "cart")])
    config = RoleConfig(max_conversion=0.35, prior_clicks=1.0)
    assert np.allclose(ItemRoles.learn(log(active), ITEMS, config).uplift, ItemRoles.learn(log(), ITEMS, config).uplift)


def test_an_item_nobody_clicked_takes_its_brands_estimate():
    roles = ItemRoles.learn(log(), ITEMS, RoleConfig(max_conversion=0.35, prior_clicks=5.0))
    uplift = dict(zip(roles.item_ids.tolist(), roles.uplift))
    assert roles.clicks[roles.item_ids == 8].item() == 0 and uplift[8] > 0  # brand Trig's: item 1's trajectory
    assert uplift[9] == 0.0  # no brand, no clicks: no evidence either way


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="lack columns"):
        ItemRoles.learn(log().drop(columns="ts"), ITEMS)
    with pytest.raises(ValueError, match="max_conversion"):
        RoleConfig(max_conversion=1.0)
    with pytest.raises(ValueError, match="prior_clicks"):
        RoleConfig(prior_clicks=0)
    with pytest.raises(ValueError, match="n must be"):
        ItemRoles.learn(log(), ITEMS).top_triggers(-1)
