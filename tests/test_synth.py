"""The generated world has the structure the engine exploits, and its oracle is a real ceiling."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd
import pytest

from genrec.cli import main as genrec_main
from genrec.data.dataset import Dataset
from genrec.data.oracle import OracleRetriever
from genrec.data.splits import build_requests, leave_one_out
from genrec.data.stats import dataset_stats
from genrec.data.synth import World, WorldConfig, generate_world
from genrec.data.vocabulary import QUERY_FILLERS


@pytest.fixture(scope="module")
def world(small_world) -> World:
    return small_world


@pytest.fixture(scope="module")
def events(world) -> pd.DataFrame:
    return world.dataset.events


@pytest.fixture(scope="module")
def search_sessions(world, events) -> pd.DataFrame:
    """One row per search session: its query, user and the item the user meant."""
    truth = world.truth
    search = events[events["query"].notna()].drop_duplicates("session_id")[["session_id", "user_id", "query"]]
    target = dict(zip(truth.session_id.tolist(), truth.session_target.tolist()))
    return search.assign(target=search["session_id"].map(target))


# --- catalogue ---------------------------------------------------------------------------------


def test_category_tree_has_three_levels_and_over_fifty_leaves(world):
    paths = world.dataset.items["category"].map(tuple)
    assert set(paths.map(len)) == {3}
    assert paths.nunique() >= 50
    assert paths.map(lambda p: p[0]).nunique() >= 5


def test_brands_stay_within_their_category_group(world):
    items = world.dataset.items.dropna(subset=["brand"])
    group = items["category"].map(lambda p: p[1])
    share_in_main_group = group.groupby(items["brand"]).agg(lambda g: g.value_counts().iloc[0] / len(g))
    sizes = items.groupby("brand").size()
    assert (share_in_main_group[sizes >= 3] == 1.0).all()


def test_items_of_one_leaf_share_attribute_kinds_and_titles_use_their_words(world):
    items = world.dataset.items
    kinds = items["attributes"].map(lambda a: tuple(sorted(a)))
    assert (kinds.groupby(items["category"].map(tuple)).nunique() == 1).all()
    assert items["attributes"].map(len).min() >= 3
    words_in_title = [
        sum(v.split()[0].lower() in title.lower() for v in attrs.values()) / len(attrs)
        for title, attrs in zip(items["title"], items["attributes"])
    ]
    assert 0.4 < np.mean(words_in_title) < 0.95  # most attributes named, some left out: real title noise
    assert items["title"].nunique() > 0.95 * len(items)


def test_title_word_order_varies(world):
    titles = world.dataset.items["title"]
    assert titles.str.contains(" - ").mean() > 0.1
    assert titles.str.contains(" by ").mean() > 0.05
    starts_with_brand = [t.startswith(b) for t, b in zip(titles, world.dataset.items["brand"]) if isinstance(b, str)]
    assert 0.2 < np.mean(starts_with_brand) < 0.9


def test_titles_have_no_stray_spaces_or_empty_parts(world):
    titles = world.dataset.items["title"]
    assert (titles == titles.str.strip()).all()
    assert not titles.str.contains("  ").any()
    assert not titles.str.contains(r"^[-,(]|\s-\s,|\(\)").any()


def test_prices_follow_department_and_are_positive(world):
    items = world.dataset.items
    median = items["price"].groupby(items["category"].map(lambda p: p[0])).median()
    assert median["Grocery"] < median["Beauty"] < median["Shoes"]
    assert (items["price"] > 0).all()


def test_ai_creators_list_more_items_each_and_are_clicked_less(world, events):
    items = world.dataset.items
    per_creator = items.groupby(["origin", "creator_id"]).size().groupby("origin").mean()
    assert per_creator["ai"] > 3 * per_creator["human"]
    origin = events["item_id"].map(items.set_index("item_id")["origin"])
    shown = events["action"] == "impression"
    clicked = events["action"] == "click"
    ctr = {o: clicked[origin == o].sum() / shown[origin == o].sum() for o in ("human", "ai")}
    assert ctr["ai"] < ctr["human"]


# --- users ------------------------------------------------------------------------------------


def test_profile_fields_correlate_with_what_users_buy(world, events):
    users = world.dataset.users.set_index("user_id")
    positive = events[events["action"] != "impression"]
    department = positive["item_id"].map(world.dataset.items.set_index("item_id")["category"].map(lambda p: p[0]))
    gender = positive["user_id"].map(users["gender"])
    beauty = (department == "Beauty").groupby(gender).mean()
    assert beauty["female"] > 2 * beauty["male"]


def test_users_in_price_sensitive_city_tiers_pick_cheaper_items(world, events):
    items = world.dataset.items
    leaf = items["category"].map(tuple)
    relative_price = np.log(items["price"] / items["price"].groupby(leaf).transform("median"))
    positive = events[events["action"] != "impression"]
    price = positive["item_id"].map(pd.Series(relative_price.to_numpy(), index=items["item_id"]))
    sensitive = positive["user_id"].map(world.dataset.users.set_index("user_id")["city_tier"]) >= 3
    assert price[sensitive].mean() < price[~sensitive].mean() - 0.03


def test_cold_start_and_dormant_users_exist(world, events):
    truth = world.truth
    positive = events[events["action"] != "impression"]
    per_user = positive.groupby("user_id")["session_id"].nunique().reindex(world.dataset.users["user_id"], fill_value=0)
    cold_ids = np.flatnonzero(truth.is_cold) + 1
    assert len(cold_ids) >= 10
    assert per_user.loc[cold_ids].between(1, 2).all()
    dormant = positive["user_id"].isin(np.flatnonzero(truth.is_dormant) + 1)
    orders_per_click = positive.groupby(dormant)["action"].agg(lambda a: (a == "order").sum() / (a == "click").sum())
    assert dormant.sum() > 100  # they do browse …
    assert orders_per_click[True] < 0.3 * orders_per_click[False]  # … but rarely buy


# --- behaviour --------------------------------------------------------------------------------


def test_popularity_has_a_long_tail(world, events):
    per_item = np.sort(events["item_id"].value_counts().reindex(world.dataset.items["item_id"], fill_value=0))[::-1]
    top = int(np.ceil(0.01 * len(per_item)))
    assert per_item[:top].sum() / per_item.sum() > 5 * 0.01
    assert per_item[len(per_item) // 2:].sum() / per_item.sum() < 0.3  # uniform: 0.5


def test_funnel_narrows_impression_click_cart_order(events):
    counts = events["action"].value_counts()
    assert counts["click"] < 0.3 * counts["impression"]
    assert counts["order"] < counts["cart"] < counts["click"]
    positive = events[events["action"] != "impression"]
    assert positive.groupby("action").size().min() > 100


def test_every_click_cart_order_was_shown_first_at_the_same_slot(events):
    shown = events[events["action"] == "impression"].set_index(["session_id", "item_id"])[["ts", "position"]]
    assert not shown.index.duplicated().any()
    positive = events[events["action"] != "impression"].merge(
        shown.reset_index(), on=["session_id", "item_id"], how="left", suffixes=("", "_shown"))
    assert positive["ts_shown"].notna().all()
    assert (positive["ts_shown"] <= positive["ts"]).all()
    assert (positive["position_shown"] == positive["position"]).all()


def test_clicks_are_position_biased(events):
    shown = events[events["action"] == "impression"].groupby("position").size()
    clicked = events[events["action"] == "click"].groupby("position").size()
    ctr = (clicked / shown).to_numpy()
    assert ctr[0] > 2 * ctr[-1]


def test_timestamps_strictly_increase_within_a_user(events):
    ts = events.groupby("user_id")["ts"].diff().dropna()
    assert (ts > 0).all()


def test_all_three_scenarios_occur_and_only_search_has_queries(events):
    has_query = events["query"].notna().groupby(events["scenario"]).mean()
    assert has_query["search"] == 1.0 and has_query["home_feed"] == 0.0 and has_query["item_detail"] == 0.0
    assert (events["scenario"].value_counts(normalize=True) > 0.1).all()


# --- queries ----------------------------------------------------------------------------------


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9+\-]+", text.lower()))


def test_queries_share_words_with_the_intended_item(world, search_sessions):
    items = world.dataset.items.set_index("item_id")
    shared = []
    for query, target in zip(search_sessions["query"], search_sessions["target"]):
        item = items.loc[target]
        text = " ".join([item["title"], " ".join(item["category"]), " ".join(item["attributes"].values()), item["brand"] if isinstance(item["brand"], str) else ""])
        item_words = _words(text)
        query_words = _words(query) - set(QUERY_FILLERS)
        shared.append(any(any(w.startswith(q) for w in item_words) for q in query_words if len(q) >= 3))
    assert np.mean(shared) > 0.8


def test_queries_carry_typos_half_typed_words_and_broad_terms(world, search_sessions):
    title_words = set().union(*world.dataset.items["title"].map(_words))
    category_words = set().union(*world.dataset.items["category"].map(lambda p: _words(" ".join(p))))
    attribute_words = set().union(*world.dataset.items["attributes"].map(lambda a: _words(" ".join(a.values()))))
    known = title_words | category_words | attribute_words | set(QUERY_FILLERS)
    unknown_word = search_sessions["query"].map(lambda q: bool(_words(q) - known))
    assert 0.03 < unknown_word.mean() < 0.4
    single_word = search_sessions["query"].str.split().map(len) == 1
    assert single_word.mean() > 0.15


def test_the_same_query_from_two_users_can_mean_different_items(search_sessions):
    per_query = search_sessions.groupby("query").agg(users=("user_id", "nunique"), targets=("target", "nunique"))
    assert ((per_query["users"] >= 2) & (per_query["targets"] >= 2)).sum() >= 5


def test_the_truth_reads_each_query_as_concepts_its_intended_item_carries(world, search_sessions):
    truth = world.truth
    carried = []
    for query, target in zip(search_sessions["query"], search_sessions["target"]):
        groups = truth.parse_query(query)
        concepts = set(truth.item_concepts[target - 1].tolist())
        carried.append(bool(groups) and all(concepts & set(g.tolist()) for g in groups))
    assert np.mean(carried) > 0.9


# --- the oracle --------------------------------------------------------------------------------


def test_oracle_beats_popularity_on_recall_at_10(world):
    split = leave_one_out(world.dataset.events)
    requests, targets = build_requests(split, "test")
    oracle = OracleRetriever(world.truth).retrieve(requests, 10)
    oracle_recall = np.mean([t in r.item_ids for r, t in zip(oracle, targets)])
    train_positive = split.train[split.train["action"] != "impression"]
    popular = train_positive["item_id"].value_counts().index[:10].to_numpy()
    popularity_recall = np.mean(np.isin(targets, popular))
    assert oracle_recall > 3 * popularity_recall
    assert oracle_recall > 0.3


def test_oracle_scores_are_the_preference_formula(world, search_sessions):
    truth = world.truth
    items = np.arange(truth.n_items)
    for user_id in (1, 77, 300):
        scores = truth.score_items(user_id)
        assert scores[0] == -np.inf
        np.testing.assert_allclose(scores[1:], truth.utility(np.full(truth.n_items, user_id - 1), items), rtol=1e-5, atol=1e-4)
    for query in search_sessions["query"].head(30):
        slow = sum(np.isin(truth.item_concepts, group).any(1) for group in truth.parse_query(query))
        np.testing.assert_array_equal(truth.query_matches(query), slow)


def test_oracle_loads_from_a_run_and_refuses_a_dataset_that_is_not_a_world(world, tmp_path):
    world.save(tmp_path / "run" / "data")
    split = leave_one_out(world.dataset.events)
    oracle = OracleRetriever.from_run(tmp_path / "run", world.dataset, split)
    assert oracle.name == "oracle"
    request = build_requests(split, "test")[0][0]
    ranked = oracle.retrieve([request], 5)[0]
    assert len(ranked) == 5 and 0 not in ranked.item_ids and np.all(np.diff(ranked.scores) <= 0)

    world.dataset.save(tmp_path / "plain" / "data")
    with pytest.raises(ValueError, match="not written by `genrec data synth`"):
        OracleRetriever.from_run(tmp_path / "plain", world.dataset, split)


def test_world_round_trips_through_save_and_load(world, tmp_path):
    world.save(tmp_path / "data")
    loaded = World.load(tmp_path / "data")
    assert loaded.config == world.config
    np.testing.assert_array_equal(loaded.truth.leaf_pref, world.truth.leaf_pref)
    np.testing.assert_array_equal(loaded.truth.surface_text, world.truth.surface_text)
    assert loaded.dataset.counts() == world.dataset.counts()


# --- determinism, config, CLI, stats ----------------------------------------------------------


def _file_hashes(path) -> dict[str, str]:
    """Every file but the manifest (which records when it was written)."""
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(path.iterdir()) if f.name != "manifest.json"}


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(tmp_path):
    config = WorldConfig(n_items=400, n_users=100, n_events=3_000, seed=3)
    generate_world(config).save(tmp_path / "a")
    generate_world(config).save(tmp_path / "b")
    generate_world(WorldConfig(n_items=400, n_users=100, n_events=3_000, seed=4)).save(tmp_path / "c")
    a, b, c = (_file_hashes(tmp_path / name) for name in "abc")
    assert set(a) == {"items.parquet", "users.parquet", "events.parquet", "truth.npz"} and a == b
    assert all(a[name] != c[name] for name in a)


@pytest.mark.parametrize("field,value", [("n_items", 10), ("n_events", 100), ("continue_prob", 1.5),
                                         ("scenario_mix", (0.5, 0.5, 0.5))])
def test_config_refuses_impossible_worlds_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        WorldConfig(**{field: value})


def test_event_budget_is_met_within_ten_percent(world):
    assert abs(len(world.dataset.events) - world.config.n_events) < 0.1 * world.config.n_events


def test_cli_synth_writes_a_valid_world_and_stats_describes_it(tmp_path, capsys):
    out = tmp_path / "data"
    assert genrec_main(["data", "synth", "--out", str(out), "--items", "400", "--users", "100",
                        "--events", "3000", "--seed", "1"]) == 0
    assert {"items.parquet", "users.parquet", "events.parquet", "truth.npz", "manifest.json"} <= {p.name for p in out.iterdir()}
    Dataset.load(out)
    capsys.readouterr()
    assert genrec_main(["data", "stats", str(out), "--json"]) == 0
    assert '"top_1pct_item_event_share"' in capsys.readouterr().out
    assert genrec_main(["data", "synth", "--out", str(tmp_path / "x"), "--items", "5"]) == 2


def test_dataset_stats_counts_a_hand_made_dataset():
    items = pd.DataFrame({"item_id": np.arange(1, 101), "title": [f"t{i}" for i in range(100)],
                          "category": [["a", "b", "c"]] * 100, "attributes": [{}] * 100, "brand": [None] * 100,
                          "price": [1.0] * 100, "origin": ["human"] * 50 + ["ai"] * 50})
    users = pd.DataFrame({"user_id": np.array([1, 2, 3])})
    rows = [(1, 1, "search", "x", 1, "impression"), (1, 2, "search", "x", 1, "click"),
            (1, 3, "search", "x", 1, "order"), (1, 4, "home_feed", None, 2, "impression"),
            (2, 5, "home_feed", None, 1, "impression"), (2, 6, "home_feed", None, 1, "click"),
            (2, 7, "home_feed", None, 3, "click"), (2, 8, "home_feed", None, 4, "cart")]
    events = pd.DataFrame(rows, columns=["user_id", "ts", "scenario", "query", "item_id", "action"])
    events["session_id"], events["position"] = events["user_id"], np.int32(0)
    stats = dataset_stats(Dataset(items, users, events))
    assert stats["events"] == 8 and stats["interactions"] == 5
    assert stats["funnel"] == {"impression": 3, "click": 3, "cart": 1, "order": 1}
    assert stats["search_share"] == pytest.approx(3 / 8)
    assert stats["top_1pct_item_event_share"] == pytest.approx(5 / 8)  # item 1 holds 5 of the 8 events
    assert stats["sparsity"] == pytest.approx(1 - 4 / 300)
    assert stats["cold_start_users"] == 2  # user 1 (2 interactions) and user 3 (none)
    assert stats["origin"] == {"human": 50, "ai": 50}
