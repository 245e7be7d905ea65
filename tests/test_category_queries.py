"""Category-path queries (the personalised product search protocol) and the split they make."""

from __future__ import annotations

import pytest

from genrec.data.category_queries import ENGLISH_STOPWORDS, category_query, item_queries, with_category_queries
from genrec.data.loaders import load_p5_amazon
from genrec.data.splits import build_requests, leave_one_out

ITEMS = [
    ("1", "A1", "Shine Nail Lacquer", "OPI|Makeup|Nails|Nail Polish"),
    ("2", "A2", "Day Fluid", "Skin Care|Face|Creams & Moisturizers|Fluids & Lotions|Fluids"),
    ("3", "A3", "Bronzing Mist", "Skin Care|Sun|Self-Tanners & Bronzers"),
    ("4", "A4", "Clay Mask", "Freeman|Skin Care|Face|Treatments & Masks|Masks"),
    ("5", "A5", "Aftershave", "Fragrance|Men's|Cologne"),
]


def _folder(tmp_path, items=ITEMS, sequences=("7 1 2 3 4", "8 5 4 2", "9 3 5 1")):
    (tmp_path / "items.tsv").write_text("item_id\tasin\ttitle\tattributes\n"
                                        + "".join("\t".join(row) + "\n" for row in items))
    (tmp_path / "sequential.txt").write_text("\n".join(sequences) + "\n")
    return tmp_path


def test_the_query_follows_the_path_root_to_leaf_without_stopwords():
    assert category_query(["Makeup", "Nails", "Nail Polish"]) == "makeup nails nail polish"
    assert category_query(["Tools & Accessories", "Bags & Cases", "Toiletry Bags"]) == "tools accessories cases toiletry bags"
    assert category_query(["Hair Care", "Hair Extensions & Wigs", "Wigs"]) == "care hair extensions wigs"
    assert category_query(["Skin Care", "Sun", "Self-Tanners & Bronzers"]) == "skin care sun self tanners bronzers"
    assert category_query(["Fragrance", "Men's", "Cologne"]) == "fragrance men's cologne"


def test_a_repeated_word_is_kept_once_at_its_deepest_level():
    # HEM's rule: duplicates go from the first level towards the last, so the leaf keeps its wording
    query = category_query(["Skin Care", "Face", "Creams & Moisturizers", "Fluids & Lotions", "Fluids"])
    assert query == "skin care face creams moisturizers lotions fluids"
    assert len(query.split()) == len(set(query.split()))


def test_no_stopword_survives_and_the_query_is_deterministic():
    path = ["Bath & Body", "Bathing Accessories", "Loofahs, Sponges & Poufs"]
    queries = {category_query(path) for _ in range(3)}
    assert len(queries) == 1
    words = queries.pop().split()
    assert not set(words) & ENGLISH_STOPWORDS
    assert "and" not in words and words[-1] == "poufs"


@pytest.mark.parametrize("path", [[], ["Unknown"], ["The", "And Of"]])
def test_a_path_without_a_category_word_is_rejected(path):
    with pytest.raises(ValueError, match="category path"):
        category_query(path)


def test_an_item_without_categories_is_rejected_naming_the_item(tmp_path):
    # the P5 loader gives an item with no category names the placeholder path ["Unknown"]
    items = ITEMS + [("6", "A6", "Mystery Box", "")]
    dataset = load_p5_amazon(_folder(tmp_path, items, ("7 1 2 6",)))
    assert list(dataset.items.set_index("item_id").loc[6, "category"]) == ["Unknown"]
    with pytest.raises(ValueError, match=r"items\.category: 1 items have no category.*item_id \[6\]"):
        item_queries(dataset)
    with pytest.raises(ValueError, match=r"item_id \[6\]"):
        with_category_queries(dataset)


def test_every_purchase_becomes_a_search_for_its_items_category(tmp_path):
    dataset = with_category_queries(load_p5_amazon(_folder(tmp_path)))
    events = dataset.events
    assert (events["scenario"] == "search").all()
    path = dataset.items.set_index("item_id")["category"]
    for item, query in zip(events["item_id"], events["query"]):
        assert query == category_query(list(path[item]))
    dataset.validate()


def test_each_users_test_query_is_built_from_their_last_purchase(tmp_path):
    dataset = with_category_queries(load_p5_amazon(_folder(tmp_path)))
    queries = item_queries(dataset)
    split = leave_one_out(dataset.events)
    last = {7: 4, 8: 2, 9: 1}
    second_last = {7: 3, 8: 4, 9: 5}
    requests, targets = build_requests(split, "test")
    assert {r.user_id: int(t) for r, t in zip(requests, targets)} == last
    for request, target in zip(requests, targets):
        assert request.query == queries[last[request.user_id]] == queries[int(target)]
        assert target not in request.history
    requests, targets = build_requests(split, "valid")
    assert {r.user_id: int(t) for r, t in zip(requests, targets)} == second_last
    for request in requests:
        assert request.query == queries[second_last[request.user_id]]
    # the two users whose last items share no category get different queries: the query is the target's, not the user's
    test_queries = {r.user_id: r.query for r in build_requests(split, "test")[0]}
    assert test_queries[7] != test_queries[8]
