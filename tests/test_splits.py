"""Splits are pure functions of the events and never leak a target into history."""

import numpy as np
import pandas as pd
import pytest

from genrec.data.splits import build_requests, interactions, leave_one_out, sample_requests, temporal_split


def _events(rows):
    frame = pd.DataFrame(rows, columns=["user_id", "ts", "session_id", "scenario", "query", "item_id", "action"])
    frame["position"] = np.int32(0)
    return frame


EVENTS = _events([
    (1, 10, 1, "home_feed", None, 5, "impression"),
    (1, 11, 1, "home_feed", None, 5, "click"),
    (1, 12, 1, "home_feed", None, 5, "order"),
    (1, 20, 2, "search", "red shoe", 6, "click"),
    (1, 30, 3, "home_feed", None, 7, "click"),
    (1, 40, 4, "search", "blue hat", 8, "cart"),
    (2, 15, 5, "home_feed", None, 7, "click"),
    (3, 16, 6, "home_feed", None, 5, "click"),
    (3, 17, 6, "home_feed", None, 6, "click"),
])


def test_interactions_collapse_a_visit_to_its_strongest_action():
    inter = interactions(EVENTS)
    first = inter[(inter.user_id == 1) & (inter.item_id == 5)]
    assert len(first) == 1
    assert first.iloc[0].action == "order" and first.iloc[0].ts == 11
    assert inter[inter.user_id == 1]["seq"].tolist() == [0, 1, 2, 3]


def test_leave_one_out_holds_out_last_and_second_last():
    split = leave_one_out(EVENTS)
    assert dict(zip(split.test.user_id, split.test.item_id)) == {1: 8, 2: 7, 3: 6}
    assert dict(zip(split.valid.user_id, split.valid.item_id)) == {1: 7}


def test_no_target_is_visible_as_history_or_training():
    split = leave_one_out(EVENTS)
    for part in ("valid", "test"):
        requests, targets = build_requests(split, part)
        for request, ts in zip(requests, split.targets(part).ts):
            assert all(t < ts for t in request.history_ts)
        train_keys = set(zip(split.train.user_id, split.train.ts))
        assert not any((u, t) in train_keys for u, t in zip(split.targets(part).user_id, split.targets(part).ts))
    requests, targets = build_requests(split, "test")
    by_user = {r.user_id: r for r in requests}
    assert by_user[1].history == (5, 6, 7) and by_user[1].query == "blue hat"
    assert by_user[2].history == ()


def test_split_is_deterministic_and_independent_of_row_order():
    shuffled = EVENTS.sample(frac=1.0, random_state=3)
    a, b = leave_one_out(EVENTS), leave_one_out(shuffled)
    pd.testing.assert_frame_equal(a.test.drop(columns="position"), b.test.drop(columns="position"))


def test_temporal_split_cuts_at_the_given_times():
    split = temporal_split(EVENTS, valid_start=20, test_start=35)
    assert (split.train.ts < 20).all()
    assert dict(zip(split.valid.user_id, split.valid.item_id)) == {1: 6}
    assert dict(zip(split.test.user_id, split.test.item_id)) == {1: 8}
    with pytest.raises(ValueError, match="valid_start"):
        temporal_split(EVENTS, 40, 20)


def test_a_sample_of_requests_is_seeded_ordered_and_whole_when_not_smaller():
    from genrec.retrieval import Request

    requests = [Request(user_id=u) for u in range(100)]
    targets = np.arange(100) + 1000
    picked, picked_targets = sample_requests(requests, targets, 10)
    users = [r.user_id for r in picked]
    assert users == sorted(users) and len(set(users)) == 10  # original order, no repeats
    np.testing.assert_array_equal(picked_targets, np.asarray(users) + 1000)  # targets stay with their requests
    assert [r.user_id for r in sample_requests(requests, targets, 10)[0]] == users  # the same users every time
    # the draw the benchmarks made before this function existed, so earlier results name the same users
    assert users == np.sort(np.random.default_rng(0).choice(100, 10, replace=False)).tolist()
    assert sample_requests(requests, targets, 7, seed=1)[0] != sample_requests(requests, targets, 7)[0]
    for whole in (0, 100, 500):
        assert sample_requests(requests, targets, whole)[0] is requests
