"""Exposure by origin and creator, and the AIGC exposure control any retriever can wear."""

import numpy as np
import pandas as pd
import pytest

from genrec.eval.exposure import ItemOrigins, gini, measure_exposure, position_weights
from genrec.eval.harness import EvalConfig, evaluate
from genrec.eval.report import render_markdown
from genrec.exposure_control import AIGCControlConfig, AIGCExposureControl, cap_ai_share
from genrec.registry import build_retriever, retriever_names
from genrec.retrieval import Ranked, Request


def _items():
    """Items 1..10: 1–6 human (creators 100, 101, 102 twice each), 7–10 AI (one AI creator 200)."""
    return pd.DataFrame({
        "item_id": np.arange(1, 11),
        "origin": ["human"] * 6 + ["ai"] * 4,
        "creator_id": [100, 100, 101, 101, 102, 102, 200, 200, 200, 200],
    })


def test_gini_on_hand_made_examples():
    assert gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 8])) == pytest.approx(3 / 4)  # one of n holds all: (n−1)/n
    # [1, 2, 3, 4]: G = 2·(1·1+2·2+3·3+4·4)/(4·10) − 5/4 = 60/40 − 1.25 = 0.25
    assert gini(np.array([4, 1, 3, 2])) == pytest.approx(0.25)
    assert np.isnan(gini(np.zeros(3)))
    with pytest.raises(ValueError, match="non-negative"):
        gini(np.array([-1.0, 2.0]))


def test_exposure_counts_ai_slots_creators_and_concentration_by_hand():
    origins = ItemOrigins.from_items(_items())
    assert origins is not None and origins.catalogue_ai_share == pytest.approx(0.4) and origins.n_creators == 4
    # two requests, top 3 each; -1 pads the second answer
    ranked = np.array([[7, 8, 1], [9, 3, -1]])
    found = measure_exposure(ranked, origins, k=3)
    assert found.slots == 5
    assert found.ai_share == pytest.approx(3 / 5)  # items 7, 8, 9
    np.testing.assert_allclose(found.per_request_ai_share, [2 / 3, 1 / 2])
    w = position_weights(3)
    assert found.ai_share_weighted == pytest.approx((w[0] + w[1] + w[0]) / (2 * w[0] + 2 * w[1] + w[2]))
    # creators: 200 three slots, 100 one, 101 one, 102 none → Gini of [0, 1, 1, 3]
    assert found.creators_exposed == 3 and found.creators == 4
    assert found.creator_gini == pytest.approx(gini(np.array([0, 1, 1, 3])))
    assert found.top_creator_share == pytest.approx(3 / 5)  # top 1% of 4 creators = the top one


def test_item_origins_are_none_without_ai_items_or_creators():
    assert ItemOrigins.from_items(pd.DataFrame({"item_id": [1, 2], "origin": ["human", "human"]})) is None
    only_creators = ItemOrigins.from_items(pd.DataFrame({"item_id": [1, 2], "origin": ["human"] * 2, "creator_id": [5, 6]}))
    assert only_creators is not None and only_creators.is_ai is None
    assert np.isnan(measure_exposure(np.array([[1, 2]]), only_creators, k=2).ai_share)
    unknown = ItemOrigins.from_items(pd.DataFrame({"item_id": [1, 2], "origin": ["ai", "human"], "creator_id": [5.0, None]}))
    assert unknown is not None and unknown.n_creators == 1
    assert measure_exposure(np.array([[1, 2]]), unknown, k=2).creators_exposed == 1


def _ranked(ids):
    return Ranked(np.asarray(ids), np.linspace(1.0, 0.1, len(ids)))


def test_cap_never_exceeds_the_quota_when_enough_human_items_exist():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = 40
        answer = Ranked(np.arange(1, n + 1), np.sort(rng.random(n))[::-1])
        is_ai = rng.random(n) < rng.uniform(0.3, 0.95)
        is_ai[rng.choice(n, 20, replace=False)] = False  # ≥ 20 human items: enough for two pages
        share = float(rng.choice([0.0, 0.1, 0.2, 0.3, 0.5]))
        out = cap_ai_share(answer, is_ai, k=20, max_share=share, page_size=10)
        assert len(out) == 20
        ai = is_ai[out.item_ids - 1]
        for page in (ai[:10], ai[10:20]):
            assert page.sum() <= int(np.floor(share * 10))
        assert np.all(np.diff(out.scores) <= 0) and len(set(out.item_ids)) == 20
        # the best-scored items that fit the cap: every human of the answer's top 20 stays, in order
        humans = answer.item_ids[:20][~is_ai[:20]]
        kept = out.item_ids[~ai]
        np.testing.assert_array_equal(kept[: len(humans)], humans)


def test_cap_at_or_above_the_current_share_returns_the_ranking_unchanged():
    answer = _ranked([5, 9, 1, 7, 2, 3, 8, 4, 6, 10])
    is_ai = np.isin(answer.item_ids, [7, 8, 9, 10])  # 4 of 10 on the page
    for share in (0.4, 0.5, 1.0):
        out = cap_ai_share(answer, is_ai, k=10, max_share=share, page_size=10)
        np.testing.assert_array_equal(out.item_ids, answer.item_ids)
        np.testing.assert_array_equal(out.scores, answer.scores)
    tighter = cap_ai_share(answer, is_ai, k=10, max_share=0.2, page_size=10)
    assert np.isin(tighter.item_ids, [7, 8, 9, 10]).sum() == 2
    np.testing.assert_array_equal(tighter.item_ids[:4], [5, 9, 1, 7])  # the first two AI items fit, in place


def test_cap_ends_the_list_rather_than_break_it_when_humans_run_out():
    answer = _ranked([7, 8, 9, 1])
    out = cap_ai_share(answer, np.array([True, True, True, False]), k=4, max_share=0.5, page_size=4)
    assert list(out.item_ids) == [7, 8, 1]


class _Fixed:
    """A retriever that always answers items 7, 8, 9, 10 (AI) then 1..6 (human), and records the k it was asked."""

    name = "fixed"

    def __init__(self):
        self.asked = []

    def retrieve(self, requests, k):
        self.asked.append(k)
        ids = np.array([7, 8, 9, 10, 1, 2, 3, 4, 5, 6])[:k]
        return [Ranked(ids, np.linspace(1, 0, len(ids))) for _ in requests]


def test_the_wrapper_asks_for_depth_times_k_and_caps_every_answer():
    inner = _Fixed()
    controlled = AIGCExposureControl.for_items(inner, _items(), AIGCControlConfig(max_share=0.2, depth=2, page_size=5))
    assert controlled.name == "fixed+aigc"
    answers = controlled.retrieve([Request(user_id=1), Request(user_id=2, query="x")], k=5)
    assert inner.asked == [10]
    for answer in answers:
        assert list(answer.item_ids) == [7, 1, 2, 3, 4]  # one AI item per page of 5
    with pytest.raises(ValueError, match="max_share"):
        AIGCControlConfig(max_share=1.5)
    with pytest.raises(ValueError, match="origin"):
        AIGCExposureControl.for_items(inner, pd.DataFrame({"item_id": [1]}))


def test_registry_builds_name_plus_aigc_for_every_retriever(small_world, tmp_path):
    assert "generative+aigc" in retriever_names() and "cascade+aigc" in retriever_names()
    dataset = small_world.dataset
    from genrec.data.splits import leave_one_out

    split = leave_one_out(dataset.events)
    built = build_retriever("popularity+aigc", tmp_path, dataset, split, aigc=AIGCControlConfig(max_share=0.0))
    assert built.name == "popularity+aigc"
    answer = built.retrieve([Request(user_id=1)], 10)[0]
    ai = set(dataset.items.loc[dataset.items.origin == "ai", "item_id"])
    assert len(answer) == 10 and not ai & set(answer.item_ids.tolist())
    with pytest.raises(ValueError, match="unknown retriever"):
        build_retriever("nothing+aigc", tmp_path, dataset, split)


def _report(items):
    requests = [Request(user_id=i) for i in range(4)]
    return evaluate([_Fixed()], requests, np.array([7, 1, 2, 3]), config=EvalConfig(k=10, bootstrap=20, latency_requests=0),
                    dataset=type("D", (), {"items": items})(), progress=False)


def test_report_has_the_exposure_table_with_origins_and_skips_it_without():
    markdown = render_markdown(_report(_items()))
    assert "## Exposure by origin and creator" in markdown
    section = markdown.split("## Exposure by origin and creator")[1].split("## ")[0]
    row = next(line for line in section.splitlines() if line.startswith("| fixed |"))
    assert row.split(" | ")[1].startswith("0.400")  # 4 AI items in 10 slots, every request
    assert "3 / 4" not in row and "4 / 4" in row  # all four creators shown

    human_only = pd.DataFrame({"item_id": np.arange(1, 11), "origin": ["human"] * 10})
    skipped = render_markdown(_report(human_only))
    assert "## Exposure by origin and creator" in skipped and "Not measured" in skipped
    assert "creator Gini" not in skipped
